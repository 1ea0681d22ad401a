//! The operator's approved map for the console (issue 15, R7): GeoJSON (RFC 7946) read once at
//! start into polylines. Publishing a map of China with borders needs an approved map (审图号),
//! so borders come only from a file the operator supplies, with its approval number; without
//! one the console draws a schematic.

use serde_json::Value;
use suanwang_api::console::MapLayer;

/// Points a map may hold (a detailed national map has a few hundred thousand).
pub const MAX_POINTS: u64 = 2_000_000;

/// A file that is not a usable map: where in it, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{at}: {why}")]
pub struct MapError {
    /// A JSON path into the file (`features[3].geometry.coordinates[0][12]`), or `file`.
    pub at: String,
    pub why: String,
}

fn err(at: &str, why: impl Into<String>) -> MapError {
    MapError { at: if at.is_empty() { "file".into() } else { at.to_string() }, why: why.into() }
}

/// Reads a GeoJSON FeatureCollection, Feature or geometry: every ring of its (multi)polygons
/// and every (multi)line string becomes a polyline; points are ignored.
pub fn parse(text: &str, approval: &str, source: &str) -> Result<MapLayer, MapError> {
    let approval = approval.trim();
    if approval.is_empty() {
        return Err(err("--map-approval", "a map with borders needs its approval number (审图号)"));
    }
    let doc: Value = serde_json::from_str(text).map_err(|e| err("", format!("not JSON: {e}")))?;
    let mut layer =
        MapLayer { approval: Some(approval.to_string()), source: Some(source.to_string()), lines: vec![], points: 0 };
    object(&doc, "", &mut layer)?;
    if layer.lines.is_empty() {
        return Err(err("", "no line string or polygon: nothing to draw"));
    }
    Ok(layer)
}

fn kind<'a>(v: &'a Value, at: &str) -> Result<&'a str, MapError> {
    v.get("type").and_then(Value::as_str).ok_or_else(|| err(at, "an object with a string \"type\" is expected"))
}

fn object(v: &Value, at: &str, out: &mut MapLayer) -> Result<(), MapError> {
    match kind(v, at)? {
        "FeatureCollection" => {
            let fs =
                v.get("features").and_then(Value::as_array).ok_or_else(|| err(at, "\"features\" must be an array"))?;
            for (i, f) in fs.iter().enumerate() {
                let here = format!("{}features[{i}]", prefix(at));
                if kind(f, &here)? != "Feature" {
                    return Err(err(&here, "a FeatureCollection holds Features"));
                }
                object(f, &here, out)?;
            }
            Ok(())
        }
        "Feature" => match v.get("geometry") {
            None => Err(err(at, "a Feature needs \"geometry\" (null for none)")),
            Some(Value::Null) => Ok(()),
            Some(g) => geometry(g, &format!("{}geometry", prefix(at)), out),
        },
        _ => geometry(v, at, out),
    }
}

fn prefix(at: &str) -> String {
    if at.is_empty() { String::new() } else { format!("{at}.") }
}

fn geometry(g: &Value, at: &str, out: &mut MapLayer) -> Result<(), MapError> {
    let t = kind(g, at)?;
    if t == "GeometryCollection" {
        let gs =
            g.get("geometries").and_then(Value::as_array).ok_or_else(|| err(at, "\"geometries\" must be an array"))?;
        for (i, x) in gs.iter().enumerate() {
            geometry(x, &format!("{}geometries[{i}]", prefix(at)), out)?;
        }
        return Ok(());
    }
    let at = format!("{}coordinates", prefix(at));
    let c = g.get("coordinates").ok_or_else(|| err(&at, "missing"))?;
    // how deep the arrays of positions sit: 1 a line, 2 lines, 3 polygons
    let depth = match t {
        "Point" | "MultiPoint" => return Ok(()),
        "LineString" => 0,
        "MultiLineString" | "Polygon" => 1,
        "MultiPolygon" => 2,
        other => return Err(err(&at, format!("unknown geometry type {other:?}"))),
    };
    lines(c, depth, &at, out)
}

fn lines(c: &Value, depth: u32, at: &str, out: &mut MapLayer) -> Result<(), MapError> {
    let items = c.as_array().ok_or_else(|| err(at, "an array is expected"))?;
    if depth > 0 {
        for (i, x) in items.iter().enumerate() {
            lines(x, depth - 1, &format!("{at}[{i}]"), out)?;
        }
        return Ok(());
    }
    if items.len() < 2 {
        return Err(err(at, format!("a line needs at least 2 positions, it has {}", items.len())));
    }
    let mut line = Vec::with_capacity(items.len());
    for (i, p) in items.iter().enumerate() {
        let here = format!("{at}[{i}]");
        let xy =
            p.as_array().filter(|a| a.len() >= 2).ok_or_else(|| err(&here, "a position is [longitude, latitude]"))?;
        let (Some(lon), Some(lat)) = (xy[0].as_f64(), xy[1].as_f64()) else {
            return Err(err(&here, "longitude and latitude must be numbers"));
        };
        if !(-180.0..=180.0).contains(&lon) {
            return Err(err(&here, format!("longitude {lon} is outside -180..180")));
        }
        if !(-90.0..=90.0).contains(&lat) {
            return Err(err(&here, format!("latitude {lat} is outside -90..90")));
        }
        line.push([lon, lat]);
    }
    out.points += line.len() as u64;
    if out.points > MAX_POINTS {
        return Err(err(at, format!("the map holds more than {MAX_POINTS} points: simplify it first")));
    }
    out.lines.push(line);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SQUARE: &str = r#"{"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"name": "a"}, "geometry": {"type": "Polygon",
            "coordinates": [[[100, 30], [110, 30], [110, 40], [100, 30]]]}},
        {"type": "Feature", "properties": {}, "geometry": null},
        {"type": "Feature", "properties": {}, "geometry": {"type": "MultiLineString",
            "coordinates": [[[120, 20], [121, 21]], [[122, 22], [123, 23], [124, 24]]]}},
        {"type": "Feature", "properties": {}, "geometry": {"type": "Point", "coordinates": [116, 40]}}]}"#;

    #[test]
    fn polygons_and_lines_become_polylines() {
        let m = parse(SQUARE, "GS(2024)0650号", "china.json").expect("map");
        assert_eq!(m.lines.len(), 3);
        assert_eq!(m.points, 9);
        assert_eq!(format!("{:?}", m.lines[0][1]), "[110.0, 30.0]");
        assert_eq!(m.approval.as_deref(), Some("GS(2024)0650号"));
    }

    #[test]
    fn a_bad_map_is_refused_naming_where_and_why() {
        let cases = [
            ("[1, 2]", "file", "\"type\""),
            (r#"{"type": "FeatureCollection"}"#, "file", "\"features\""),
            (
                r#"{"type": "FeatureCollection", "features": [{"type": "Feature", "geometry": {"type": "LineString", "coordinates": [[100, 30], [200, 30]]}}]}"#,
                "features[0].geometry.coordinates[1]",
                "longitude 200",
            ),
            (r#"{"type": "Polygon", "coordinates": [[[100, 30]]]}"#, "coordinates[0]", "at least 2"),
            (r#"{"type": "Circle", "coordinates": []}"#, "coordinates", "unknown geometry"),
            (r#"{"type": "Point", "coordinates": [1, 2]}"#, "file", "nothing to draw"),
            (r#"{"type": "LineString", "coordinates": [[1, "x"], [2, 3]]}"#, "coordinates[0]", "numbers"),
            ("{", "file", "not JSON"),
        ];
        for (text, at, why) in cases {
            let e = parse(text, "GS(2024)1号", "x.json").expect_err(text);
            assert_eq!(e.at, at, "{text}: {e}");
            assert!(e.why.contains(why), "{text}: {e}");
        }
        let e = parse(SQUARE, " ", "x.json").expect_err("no approval");
        assert_eq!(e.at, "--map-approval");
    }
}

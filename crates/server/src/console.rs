//! The web console (issue 15, R7/R8): a single page and its assets, embedded in the binary
//! (`include_bytes!`: no CDN, works offline) and served at `/` and `/console/…`. It calls the
//! same API as the CLI with the token the user signs in with.

use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;

/// Apache ECharts (vendored from npm, Apache-2.0), gzipped: the console's charts, and the twin's
/// report's. Served as it is to browsers (all accept gzip).
const ECHARTS_GZ: &[u8] = include_bytes!("../console/vendor/echarts.min.js.gz");
pub const ECHARTS_LICENSE: &str = include_str!("../console/vendor/ECHARTS-LICENSE");
/// The digital twin's charts: the console's Twin page and the twin's `--report` draw with it.
pub const TWIN_CHARTS_JS: &str = include_str!("../console/twin-charts.js");

/// ECharts' script, unzipped (for the twin's report, which writes it beside its page).
pub fn echarts() -> std::io::Result<String> {
    use std::io::Read as _;
    let mut out = String::with_capacity(1 << 21);
    flate2::read::GzDecoder::new(ECHARTS_GZ).read_to_string(&mut out)?;
    Ok(out)
}

/// (path under /console/, media type, bytes, whether the bytes are gzipped)
const ASSETS: &[(&str, &str, &[u8], bool)] = &[
    ("app.js", "text/javascript; charset=utf-8", include_bytes!("../console/app.js"), false),
    ("style.css", "text/css; charset=utf-8", include_bytes!("../console/style.css"), false),
    ("twin-charts.js", "text/javascript; charset=utf-8", TWIN_CHARTS_JS.as_bytes(), false),
    ("vendor/echarts.min.js", "text/javascript; charset=utf-8", ECHARTS_GZ, true),
    ("vendor/ECHARTS-LICENSE", "text/plain; charset=utf-8", ECHARTS_LICENSE.as_bytes(), false),
    ("vendor/ECHARTS-NOTICE", "text/plain; charset=utf-8", include_bytes!("../console/vendor/ECHARTS-NOTICE"), false),
];

const INDEX: &[u8] = include_bytes!("../console/index.html");

/// Bytes the console adds to the binary.
pub fn embedded_bytes() -> usize {
    INDEX.len() + ASSETS.iter().map(|(_, _, b, _)| b.len()).sum::<usize>()
}

/// The page's headers: no framing by other sites, no inline scripts from elsewhere.
fn secured(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(header::X_FRAME_OPTIONS, header::HeaderValue::from_static("DENY"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, header::HeaderValue::from_static("nosniff"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        header::HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'",
        ),
    );
    r
}

pub async fn index() -> Response {
    secured(
        ([(header::CONTENT_TYPE, "text/html; charset=utf-8"), (header::CACHE_CONTROL, "no-cache")], INDEX)
            .into_response(),
    )
}

pub async fn asset(Path(path): Path<String>) -> Result<Response, ApiError> {
    let (_, media, bytes, gzipped) = ASSETS.iter().find(|(p, _, _, _)| *p == path).ok_or_else(|| {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("no console asset {path:?}")).field("path")
    })?;
    let mut r = ([(header::CONTENT_TYPE, *media), (header::CACHE_CONTROL, "no-cache")], *bytes).into_response();
    if *gzipped {
        r.headers_mut().insert(header::CONTENT_ENCODING, header::HeaderValue::from_static("gzip"));
    }
    Ok(secured(r))
}

type S = axum::extract::State<std::sync::Arc<crate::Inner>>;

/// `GET /v1/map`: the operator's approved borders, or none (serialised per request from the
/// layer read at start).
pub async fn map(axum::extract::State(inner): S, headers: axum::http::HeaderMap) -> Result<Response, ApiError> {
    crate::routes::authenticate(&inner, &headers).await?;
    let body = serde_json::to_vec(&*inner.map).map_err(|e| ApiError::unavailable("the map").detail(e.to_string()))?;
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

fn reports_dir(inner: &crate::Inner) -> Result<std::path::PathBuf, ApiError> {
    inner.twin_reports.clone().ok_or_else(|| {
        ApiError::not_found("twin reports: this server was started without --twin-reports DIR")
            .hint("suanwang twin … --report DIR/NAME, then suanwang serve --twin-reports DIR")
    })
}

/// twin.json as `suanwang twin --report` writes it: the part the console draws.
#[derive(serde::Deserialize)]
struct TwinFile {
    trace: String,
    capacity_scale: f64,
    policies: Vec<suanwang_api::console::TwinPolicy>,
}

/// A report's twin.json, or why it cannot be read. Files above 512 MiB are refused.
fn read_report(dir: &std::path::Path, name: &str) -> Result<(TwinFile, i64), String> {
    let path = dir.join(name).join("twin.json");
    let meta = std::fs::metadata(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    if meta.len() > 512 << 20 {
        return Err(format!("{}: {} bytes is more than 512 MiB", path.display(), meta.len()));
    }
    let modified = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    let text = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let file: TwinFile = serde_json::from_slice(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok((file, modified))
}

fn readers(p: &crate::auth::Principal) -> Result<(), ApiError> {
    crate::routes::require(p, &[crate::auth::Role::Operator, crate::auth::Role::Regulator], "read the twin's reports")
}

/// `GET /v1/twin/reports`: every report directory under `--twin-reports`, newest first.
pub async fn twin_reports(
    axum::extract::State(inner): S,
    headers: axum::http::HeaderMap,
) -> Result<axum::Json<suanwang_api::console::TwinReportList>, ApiError> {
    let p = crate::routes::authenticate(&inner, &headers).await?;
    readers(&p)?;
    let dir = reports_dir(&inner)?;
    let list = tokio::task::spawn_blocking(move || -> Result<_, String> {
        use suanwang_api::console::{TwinReportList, TwinReportProblem, TwinReportSummary};
        let mut out = TwinReportList::default();
        for e in std::fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?.flatten() {
            if !e.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let Ok(name) = e.file_name().into_string() else { continue };
            match read_report(&dir, &name) {
                Ok((f, modified_ms)) => out.reports.push(TwinReportSummary {
                    name,
                    trace: f.trace,
                    policies: f.policies.len() as u64,
                    modified_ms,
                }),
                Err(reason) => out.unreadable.push(TwinReportProblem { name, reason }),
            }
        }
        out.reports.sort_by(|a, b| b.modified_ms.cmp(&a.modified_ms).then_with(|| a.name.cmp(&b.name)));
        out.unreadable.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    })
    .await
    .map_err(|e| ApiError::unavailable("reading the reports").detail(e.to_string()))?
    .map_err(|e| ApiError::unavailable("the twin reports' directory cannot be read").detail(e))?;
    Ok(axum::Json(list))
}

/// `GET /v1/twin/reports/{name}`: one report's figures.
pub async fn twin_report(
    axum::extract::State(inner): S,
    headers: axum::http::HeaderMap,
    Path(name): Path<String>,
) -> Result<axum::Json<suanwang_api::console::TwinReport>, ApiError> {
    let p = crate::routes::authenticate(&inner, &headers).await?;
    readers(&p)?;
    let dir = reports_dir(&inner)?;
    // a name is one directory below DIR, never a path out of it
    if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\\', '\0']) {
        return Err(ApiError::not_found(&format!("twin report {name:?}")).field("name"));
    }
    let n = name.clone();
    let (f, _) = tokio::task::spawn_blocking(move || {
        if !dir.join(&n).is_dir() {
            return Err(None);
        }
        read_report(&dir, &n).map_err(Some)
    })
    .await
    .map_err(|e| ApiError::unavailable("reading the report").detail(e.to_string()))?
    .map_err(|why| match why {
        None => ApiError::not_found(&format!("twin report {name:?}")).field("name"),
        Some(why) => ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("twin report {name:?} cannot be read"))
            .detail(why)
            .field("name"),
    })?;
    Ok(axum::Json(suanwang_api::console::TwinReport {
        name,
        trace: f.trace,
        capacity_scale: f.capacity_scale,
        policies: f.policies,
    }))
}

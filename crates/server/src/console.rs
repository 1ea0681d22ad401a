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

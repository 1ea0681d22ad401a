//! API errors: every failure is a JSON `{code, message, detail, hint, field}` with a 4xx
//! status (5xx only when the store fails, never for bad input).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use suanwang_api::ErrorBody;

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    /// Boxed: errors travel through every handler's `Result`; keep the `Ok` path small.
    pub body: Box<ErrorBody>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            body: Box::new(ErrorBody {
                code: code.into(),
                message: message.into(),
                detail: String::new(),
                hint: String::new(),
                field: None,
            }),
        }
    }

    #[must_use]
    pub fn detail(mut self, d: impl Into<String>) -> ApiError {
        self.body.detail = d.into();
        self
    }

    #[must_use]
    pub fn hint(mut self, h: impl Into<String>) -> ApiError {
        self.body.hint = h.into();
        self
    }

    #[must_use]
    pub fn field(mut self, f: impl Into<String>) -> ApiError {
        self.body.field = Some(f.into());
        self
    }

    pub fn unauthorized(why: &str) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", why)
            .hint("send `Authorization: Bearer TOKEN`; `suanwang token create` makes one")
    }

    pub fn forbidden(why: &str) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, "forbidden", why)
    }

    pub fn not_found(what: &str) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("no {what}"))
    }

    pub fn unavailable(why: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", why).hint("retry with the same Idempotency-Key")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, axum::Json(*self.body)).into_response()
    }
}

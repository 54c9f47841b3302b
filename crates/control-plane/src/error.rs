//! Argo Server's error responses: the gRPC status as JSON (`{"code": 5, "message": "..."}`,
//! grpc-gateway's shape) with the HTTP status grpc-gateway maps that code to.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    TooLarge(String),
    #[error("{0}")]
    Internal(String),
    /// No server can take the request now (a standby with no leader to forward it to).
    #[error("{0}")]
    Unavailable(String),
}

impl ApiError {
    /// The gRPC code and the HTTP status grpc-gateway answers with.
    pub fn codes(&self) -> (u16, StatusCode) {
        match self {
            ApiError::InvalidArgument(_) => (3, StatusCode::BAD_REQUEST),
            ApiError::NotFound(_) => (5, StatusCode::NOT_FOUND),
            ApiError::AlreadyExists(_) => (6, StatusCode::CONFLICT),
            ApiError::FailedPrecondition(_) => (9, StatusCode::BAD_REQUEST),
            ApiError::Internal(_) => (13, StatusCode::INTERNAL_SERVER_ERROR),
            ApiError::Unauthenticated(_) => (16, StatusCode::UNAUTHORIZED),
            ApiError::Forbidden(_) => (7, StatusCode::FORBIDDEN),
            ApiError::TooLarge(_) => (8, StatusCode::PAYLOAD_TOO_LARGE),
            ApiError::Unavailable(_) => (14, StatusCode::SERVICE_UNAVAILABLE),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (code, status) = self.codes();
        if status.is_server_error() {
            tracing::error!("{self}");
        }
        (
            status,
            Json(json!({"code": code, "message": self.to_string()})),
        )
            .into_response()
    }
}

impl From<store::StoreError> for ApiError {
    fn from(e: store::StoreError) -> Self {
        match e {
            store::StoreError::AlreadyExists(m) => ApiError::AlreadyExists(m),
            store::StoreError::NotFound(m) => ApiError::NotFound(m),
            store::StoreError::BadContinue => {
                ApiError::InvalidArgument("listOptions.continue: invalid continue token".into())
            }
            e @ store::StoreError::Fenced { .. } => ApiError::Unavailable(e.to_string()),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl From<workflow_runtime::RuntimeError> for ApiError {
    fn from(e: workflow_runtime::RuntimeError) -> Self {
        use workflow_runtime::RuntimeError;
        match e {
            RuntimeError::Invalid(m) => ApiError::InvalidArgument(m),
            RuntimeError::Precondition(m) => ApiError::FailedPrecondition(m),
            e @ RuntimeError::Corrupt(_) => ApiError::Internal(e.to_string()),
            RuntimeError::Store(e) => e.into(),
        }
    }
}

//! The HTTP API's errors: a status and Kuma's error body
//! ([`crate::wire::ErrorBody`], the one definition of that shape).

use crate::manager::ManagerError;
use crate::resource::DecodeError;
use crate::store::StoreError;
use crate::validation::Violation;
use crate::wire::ErrorBody;
use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// An HTTP error: a status and the fields of Kuma's error body, which it
/// answers as [`ErrorBody`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// What failed, e.g. `Could not process resource`.
    pub title: String,
    /// Why, in one line.
    pub details: String,
    /// Field-level causes, if any.
    pub causes: Vec<Violation>,
}

impl ApiError {
    /// An error without causes.
    pub fn new(status: StatusCode, title: impl Into<String>, details: impl Into<String>) -> Self {
        Self {
            status,
            title: title.into(),
            details: details.into(),
            causes: Vec::new(),
        }
    }

    /// A 400 with one field cause.
    pub fn bad_field(field: &str, message: impl Into<String>) -> Self {
        Self {
            causes: vec![Violation {
                field: field.to_string(),
                message: message.into(),
            }],
            ..Self::new(
                StatusCode::BAD_REQUEST,
                "Could not process resource",
                "Resource is not valid",
            )
        }
    }

    /// 405 for a write the server's mode or settings forbid.
    pub fn not_allowed(details: impl Into<String>) -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "Operation not allowed",
            details.into(),
        )
    }

    /// 404 for a path that names no resource type.
    pub fn unknown_path(path: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "Not found",
            format!("no such endpoint: {path}"),
        )
    }
}

impl From<DecodeError> for ApiError {
    fn from(e: DecodeError) -> Self {
        match e {
            DecodeError::Syntax { .. } => Self::new(
                StatusCode::BAD_REQUEST,
                "Could not process resource",
                e.to_string(),
            ),
            DecodeError::Shape(v) => Self {
                causes: v.violations,
                ..Self::new(
                    StatusCode::BAD_REQUEST,
                    "Could not process resource",
                    "Resource is not valid",
                )
            },
            #[allow(unreachable_patterns)]
            other => Self::new(
                StatusCode::BAD_REQUEST,
                "Could not process resource",
                other.to_string(),
            ),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        let (status, title) = match &e {
            StoreError::NotFound(_) => (StatusCode::NOT_FOUND, "Could not retrieve a resource"),
            StoreError::AlreadyExists(_) | StoreError::Conflict { .. } => {
                (StatusCode::CONFLICT, "Could not update a resource")
            }
            StoreError::MissingVersion(_) | StoreError::InvalidOffset(_) => {
                (StatusCode::BAD_REQUEST, "Bad request")
            }
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "Store error"),
        };
        let details = match &e {
            StoreError::NotFound(_) => "Not found".to_string(),
            other => other.to_string(),
        };
        let mut err = Self::new(status, title, details);
        if let StoreError::InvalidOffset(o) = &e {
            err.causes.push(Violation {
                field: "offset".into(),
                message: format!("invalid offset {o:?}: use the `next` URL of the previous page"),
            });
        }
        err
    }
}

impl From<ManagerError> for ApiError {
    fn from(e: ManagerError) -> Self {
        match e {
            ManagerError::Validation(v) => Self {
                causes: v.violations,
                ..Self::new(
                    StatusCode::BAD_REQUEST,
                    "Could not process resource",
                    "Resource is not valid",
                )
            },
            ManagerError::MeshNotFound(m) => Self {
                causes: vec![Violation {
                    field: "mesh".into(),
                    message: format!("mesh {m:?} does not exist: create it first"),
                }],
                ..Self::new(
                    StatusCode::BAD_REQUEST,
                    "Could not process resource",
                    format!("Mesh {m:?} does not exist"),
                )
            },
            ManagerError::Store(s) => s.into(),
            #[allow(unreachable_patterns)]
            other => Self::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Internal error",
                other.to_string(),
            ),
        }
    }
}

impl From<ApiError> for ErrorBody {
    fn from(e: ApiError) -> Self {
        ErrorBody {
            title: e.title,
            details: e.details,
            causes: e.causes,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(ErrorBody::from(self))).into_response()
    }
}

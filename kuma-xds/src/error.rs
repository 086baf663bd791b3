//! The crate's errors: [`Error`], which answers an HTTP request with Kuma's
//! error body ([`ErrorBody`]) or fails a gRPC call with a [`tonic::Status`],
//! and [`ProxyTemplateError`], why a part of a ProxyTemplate could not be
//! applied. See docs/architecture.md, "Errors".

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use kuma_core::manager::ManagerError;
use kuma_core::resource::DecodeError;
use kuma_core::tokens::TokenError;
use kuma_core::validation::{ValidationError, Violation};
use kuma_core::wire::ErrorBody;

/// The `title` of the error bodies of the bootstrap server.
const BOOTSTRAP_TITLE: &str = "Could not generate a bootstrap";

/// What went wrong in this crate.
///
/// Every error has an HTTP status ([`Error::status`]) and answers as Kuma's
/// error body (`IntoResponse`); it also converts into a [`tonic::Status`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The bootstrap request is not JSON of the request's shape (400).
    #[error("malformed bootstrap request: {0}")]
    MalformedBootstrapRequest(#[source] serde_json::Error),
    /// Required fields of the bootstrap request are missing (400; the
    /// violations are the causes).
    #[error("bad bootstrap request")]
    InvalidBootstrapRequest(#[source] ValidationError),
    /// The requested mesh does not exist (404).
    #[error("mesh {0:?} does not exist")]
    MeshNotFound(String),
    /// The Dataplane is neither stored nor given in the request (404).
    #[error(
        "Dataplane {name:?} in mesh {mesh:?} does not exist: apply it first, or pass it to kuma-dp with --dataplane-file"
    )]
    DataplaneNotFound {
        /// The requested mesh.
        mesh: String,
        /// The requested Dataplane name.
        name: String,
    },
    /// The resource store failed (503).
    #[error(transparent)]
    Store(ManagerError),
    /// The dataplane token was refused (401), does not allow the Dataplane
    /// (403) or could not be checked (503), as
    /// [`TokenError::is_unauthenticated`] and [`TokenError::is_forbidden`]
    /// say.
    #[error(transparent)]
    Token(TokenError),
    /// The request's `dataplaneResource` is not a resource (400).
    #[error("dataplaneResource: {0}")]
    DataplaneResourceDecode(#[source] DecodeError),
    /// The request's `dataplaneResource` is another type of resource (400).
    #[error("dataplaneResource must be a Dataplane")]
    NotADataplane,
    /// The request's `dataplaneResource` names another Dataplane than the
    /// request's `mesh` and `name` (400).
    #[error("dataplaneResource names another Dataplane than the request")]
    DataplaneMismatch {
        /// The request's mesh.
        mesh: String,
        /// The request's name.
        name: String,
    },
    /// The request's `dataplaneResource` breaks the Dataplane's rules (400;
    /// the violations are the causes).
    #[error("dataplaneResource is not valid")]
    InvalidDataplane(#[source] ValidationError),
    /// The bootstrap could not be rendered as YAML (500).
    #[error("{0}")]
    RenderBootstrap(#[source] serde_yaml_ng::Error),
    /// A part of a ProxyTemplate could not be applied (400).
    #[error(transparent)]
    ProxyTemplate(#[from] ProxyTemplateError),
}

impl Error {
    /// The HTTP status the error answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            Error::MalformedBootstrapRequest(_)
            | Error::InvalidBootstrapRequest(_)
            | Error::DataplaneResourceDecode(_)
            | Error::NotADataplane
            | Error::DataplaneMismatch { .. }
            | Error::InvalidDataplane(_)
            | Error::ProxyTemplate(_) => StatusCode::BAD_REQUEST,
            Error::MeshNotFound(_) | Error::DataplaneNotFound { .. } => StatusCode::NOT_FOUND,
            Error::Token(e) if e.is_unauthenticated() => StatusCode::UNAUTHORIZED,
            Error::Token(e) if e.is_forbidden() => StatusCode::FORBIDDEN,
            Error::Store(_) | Error::Token(_) => StatusCode::SERVICE_UNAVAILABLE,
            Error::RenderBootstrap(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The field-level causes of the error body: which request fields are
    /// wrong and how.
    pub fn causes(&self) -> Vec<Violation> {
        match self {
            Error::InvalidBootstrapRequest(v) => v.violations.clone(),
            Error::MeshNotFound(_) => vec![cause("mesh", "no such mesh")],
            Error::DataplaneNotFound { .. } => vec![cause("name", "no such Dataplane")],
            Error::Token(e) if e.is_unauthenticated() || e.is_forbidden() => {
                vec![cause("dataplaneToken", e.to_string())]
            }
            Error::DataplaneResourceDecode(e) => in_dataplane_resource(e.violations()),
            Error::NotADataplane => vec![cause("dataplaneResource.type", "must be Dataplane")],
            Error::DataplaneMismatch { mesh, name } => vec![cause(
                "dataplaneResource.name",
                format!("must be {name:?} in mesh {mesh:?}"),
            )],
            Error::InvalidDataplane(v) => in_dataplane_resource(&v.violations),
            Error::MalformedBootstrapRequest(_)
            | Error::Store(_)
            | Error::Token(_)
            | Error::RenderBootstrap(_)
            | Error::ProxyTemplate(_) => Vec::new(),
        }
    }

    /// Kuma's error body for the error.
    pub fn body(&self) -> ErrorBody {
        let title = match self {
            Error::ProxyTemplate(_) => "Could not apply a ProxyTemplate",
            _ => BOOTSTRAP_TITLE,
        };
        ErrorBody {
            causes: self.causes(),
            ..ErrorBody::new(title, self.to_string())
        }
    }
}

fn cause(field: &str, message: impl Into<String>) -> Violation {
    Violation {
        field: field.into(),
        message: message.into(),
    }
}

/// Violations of the request's Dataplane, as paths of the request.
fn in_dataplane_resource(violations: &[Violation]) -> Vec<Violation> {
    violations
        .iter()
        .map(|v| cause(&format!("dataplaneResource.{}", v.field), v.message.clone()))
        .collect()
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        (self.status(), Json(self.body())).into_response()
    }
}

impl From<Error> for tonic::Status {
    fn from(e: Error) -> Self {
        let code = match e.status() {
            StatusCode::BAD_REQUEST => tonic::Code::InvalidArgument,
            StatusCode::NOT_FOUND => tonic::Code::NotFound,
            StatusCode::UNAUTHORIZED => tonic::Code::Unauthenticated,
            StatusCode::FORBIDDEN => tonic::Code::PermissionDenied,
            StatusCode::SERVICE_UNAVAILABLE => tonic::Code::Unavailable,
            _ => tonic::Code::Internal,
        };
        tonic::Status::new(code, e.to_string())
    }
}

/// Why a raw resource or a modification of a ProxyTemplate could not be
/// applied (it is skipped; the rest of the template still applies).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProxyTemplateError {
    /// The compiled-in Envoy descriptor set does not decode (a broken
    /// build).
    #[error("Envoy descriptors: {0}")]
    Descriptors(#[source] &'static prost_reflect::DescriptorError),
    /// The descriptor set has no message of this name.
    #[error("unknown message type {0:?}")]
    UnknownMessageType(String),
    /// The value is neither YAML nor JSON.
    #[error("not valid YAML or JSON: {0}")]
    Syntax(#[source] serde_yaml_ng::Error),
    /// The value does not read as the expected Envoy message.
    #[error("not a valid {message}: {source}")]
    InvalidMessage {
        /// The full name of the message, e.g. `envoy.config.cluster.v3.Cluster`.
        message: String,
        /// What the proto3 JSON mapping reported.
        #[source]
        source: serde_json::Error,
    },
    /// The value's `@type` names another message than the expected one.
    #[error("'@type' {found:?} is not {expected}")]
    WrongType {
        /// The `@type` of the value.
        found: String,
        /// The type URL expected.
        expected: String,
    },
    /// Protobuf bytes do not decode as the message.
    #[error("{message}: {source}")]
    Decode {
        /// The full name of the message.
        message: String,
        /// What prost reported.
        #[source]
        source: prost::DecodeError,
    },
    /// A typed config was to be merged into one of another type.
    #[error("cannot merge a {from} into a {into}")]
    MergeMismatch {
        /// The message type of the patch.
        from: String,
        /// The message type patched.
        into: String,
    },
    /// A raw resource of a type the template cannot add.
    #[error("resource {name:?}: type {type_url} is not supported (only clusters and listeners)")]
    UnsupportedResource {
        /// The resource's name in the template.
        name: String,
        /// Its type URL.
        type_url: String,
    },
    /// A modification with an unknown `operation`.
    #[error("unknown {kind} operation {operation:?}")]
    UnknownOperation {
        /// What the modification edits: `cluster`, `listener`, `filter`,
        /// `virtual host`.
        kind: &'static str,
        /// The operation given.
        operation: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn errors_answer_kuma_error_bodies() {
        let e = Error::MeshNotFound("m".into());
        let response = e.into_response();
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        assert_eq!(
            std::str::from_utf8(&bytes).unwrap(),
            r#"{"title":"Could not generate a bootstrap","details":"mesh \"m\" does not exist","causes":[{"field":"mesh","message":"no such mesh"}]}"#
        );
        let body = Error::NotADataplane.body();
        assert_eq!(body.causes[0].field, "dataplaneResource.type");
    }

    #[test]
    fn errors_convert_into_grpc_statuses() {
        let s = tonic::Status::from(Error::Token(TokenError::Missing));
        assert_eq!(s.code(), tonic::Code::Unauthenticated);
        assert!(s.message().contains("dataplane token is missing"));
        let s = tonic::Status::from(Error::from(ProxyTemplateError::UnknownOperation {
            kind: "cluster",
            operation: "replace".into(),
        }));
        assert_eq!(s.code(), tonic::Code::InvalidArgument);
        assert_eq!(s.message(), r#"unknown cluster operation "replace""#);
    }

    #[test]
    fn sources_are_kept() {
        use std::error::Error as _;
        let json = serde_json::from_str::<serde_json::Value>("{").unwrap_err();
        let e = Error::MalformedBootstrapRequest(json);
        assert!(e.source().is_some());
        let v = ValidationError::single("mesh", "must be set");
        let e = Error::InvalidBootstrapRequest(v.clone());
        assert_eq!(e.causes(), v.violations);
    }
}

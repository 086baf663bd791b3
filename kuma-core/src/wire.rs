//! Wire contracts of the control plane's HTTP servers, defined once for
//! both ends: the servers that answer them and the clients (kuma-dp,
//! kumactl) that read them.
//!
//! These are plain serde types: this module is compiled without the
//! `http-api` feature, so a client uses them without linking an HTTP server
//! framework. The axum response impls live with the servers. See
//! docs/architecture.md, "Wire contracts".
//!
//! - [`ErrorBody`]: Kuma's error body, `{"title", "details", "causes":
//!   [{"field", "message"}]}`, answered by the HTTP API and the bootstrap
//!   server.
//! - [`BootstrapRequest`]: the body kuma-dp posts to `POST /bootstrap`.
//!
//! ```
//! use kuma_core::wire::ErrorBody;
//!
//! let body = ErrorBody::new("Could not process resource", "Resource is not valid")
//!     .with_cause("networking.address", "must be set");
//! let json = serde_json::to_string(&body).unwrap();
//! assert_eq!(
//!     json,
//!     r#"{"title":"Could not process resource","details":"Resource is not valid","causes":[{"field":"networking.address","message":"must be set"}]}"#
//! );
//! assert_eq!(serde_json::from_str::<ErrorBody>(&json).unwrap(), body);
//! ```

use crate::validation::Violation;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use std::fmt;

/// Kuma's error body: what failed (`title`), why (`details`) and, for
/// request errors, which fields (`causes`, left out when empty).
///
/// Reading is lenient, as a client must be: every field may be missing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ErrorBody {
    /// What failed, e.g. `Could not process resource`.
    pub title: String,
    /// Why, in one line, e.g. `Resource is not valid`.
    pub details: String,
    /// Field-level causes, if any.
    #[serde(
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "lenient_causes"
    )]
    pub causes: Vec<Violation>,
}

impl ErrorBody {
    /// A body without causes.
    pub fn new(title: impl Into<String>, details: impl Into<String>) -> Self {
        Self {
            title: title.into(),
            details: details.into(),
            causes: Vec::new(),
        }
    }

    /// The body with one more field cause.
    #[must_use]
    pub fn with_cause(mut self, field: impl Into<String>, message: impl Into<String>) -> Self {
        self.causes.push(Violation {
            field: field.into(),
            message: message.into(),
        });
        self
    }

    /// Whether the body says nothing at all (no title, details or causes):
    /// what a client reading an answer that is not Kuma's error JSON gets.
    pub fn is_empty(&self) -> bool {
        self.title.is_empty() && self.details.is_empty() && self.causes.is_empty()
    }
}

/// A cause as a client reads it: both fields may be missing.
#[derive(Default, Deserialize)]
#[serde(default)]
struct LenientCause {
    field: String,
    message: String,
}

fn lenient_causes<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Violation>, D::Error> {
    let causes = Option::<Vec<LenientCause>>::deserialize(d)?.unwrap_or_default();
    Ok(causes
        .into_iter()
        .map(|c| Violation {
            field: c.field,
            message: c.message,
        })
        .collect())
}

/// The body of `POST /bootstrap`: which Dataplane a kuma-dp runs and what
/// it needs. `Debug` leaves the token out.
///
/// On the wire every field is camelCase (`adminPort`, `dataplaneToken`,
/// ...). Missing fields read as empty; unknown fields are refused.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct BootstrapRequest {
    /// The Dataplane's mesh.
    pub mesh: String,
    /// The Dataplane's name.
    pub name: String,
    /// Port of Envoy's admin interface, chosen by kuma-dp.
    pub admin_port: u16,
    /// The dataplane token (the content of kuma-dp's token file), or empty.
    pub dataplane_token: String,
    /// Path of the dataplane token file on the proxy's host, or empty
    /// (informational: the token itself travels in `dataplane_token`).
    pub dataplane_token_path: String,
    /// The Dataplane to register (JSON or YAML text), or empty.
    pub dataplane_resource: String,
    /// Ask for incremental (delta) ADS.
    pub delta_xds: bool,
    /// Versions of the requesting components, e.g.
    /// `{"kumaDp": {"version": "1.2.3"}}` (see [`Self::versions`]); any
    /// JSON is accepted, only `kumaDp.version` is read.
    pub version: Value,
}

impl BootstrapRequest {
    /// The `version` block of a kuma-dp of version `kuma_dp_version`.
    pub fn versions(kuma_dp_version: &str) -> Value {
        serde_json::json!({"kumaDp": {"version": kuma_dp_version}})
    }

    /// The kuma-dp version the request names, if any.
    pub fn kuma_dp_version(&self) -> Option<&str> {
        self.version["kumaDp"]["version"].as_str()
    }
}

impl fmt::Debug for BootstrapRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BootstrapRequest")
            .field("mesh", &self.mesh)
            .field("name", &self.name)
            .field("admin_port", &self.admin_port)
            .field("dataplane_token", &redacted(&self.dataplane_token))
            .field("dataplane_token_path", &self.dataplane_token_path)
            .field("dataplane_resource", &self.dataplane_resource)
            .field("delta_xds", &self.delta_xds)
            .field("version", &self.version)
            .finish()
    }
}

/// What `Debug` shows for a token.
fn redacted(token: &str) -> &'static str {
    if token.is_empty() { "" } else { "<redacted>" }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_body_leaves_out_empty_causes_and_reads_leniently() {
        let body = ErrorBody::new("Not found", "no such endpoint: /x");
        assert_eq!(
            serde_json::to_string(&body).unwrap(),
            r#"{"title":"Not found","details":"no such endpoint: /x"}"#
        );
        let read: ErrorBody =
            serde_json::from_str(r#"{"title":"t","causes":[{"message":"m"},{}]}"#).unwrap();
        assert_eq!(read.details, "");
        assert_eq!(
            read.causes,
            vec![
                Violation {
                    field: String::new(),
                    message: "m".into()
                },
                Violation {
                    field: String::new(),
                    message: String::new()
                }
            ]
        );
        let read: ErrorBody = serde_json::from_str(r#"{"causes":null}"#).unwrap();
        assert!(read.is_empty());
    }

    #[test]
    fn bootstrap_request_round_trips_and_hides_the_token() {
        let req = BootstrapRequest {
            mesh: "default".into(),
            name: "web-1".into(),
            admin_port: 30001,
            dataplane_token: "a.b.c".into(),
            version: BootstrapRequest::versions("1.2.3"),
            ..BootstrapRequest::default()
        };
        let json = serde_json::to_value(&req).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "mesh": "default",
                "name": "web-1",
                "adminPort": 30001,
                "dataplaneToken": "a.b.c",
                "dataplaneTokenPath": "",
                "dataplaneResource": "",
                "deltaXds": false,
                "version": {"kumaDp": {"version": "1.2.3"}}
            })
        );
        let back: BootstrapRequest = serde_json::from_value(json).unwrap();
        assert_eq!(back, req);
        assert_eq!(back.kuma_dp_version(), Some("1.2.3"));
        assert!(!format!("{req:?}").contains("a.b.c"));
        let sparse: BootstrapRequest = serde_json::from_str(r#"{"mesh":"m"}"#).unwrap();
        assert_eq!(sparse.kuma_dp_version(), None);
        assert!(serde_json::from_str::<BootstrapRequest>(r#"{"meshh":"m"}"#).is_err());
    }
}

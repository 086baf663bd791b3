//! The `Mesh` resource type: mTLS, metrics, logging, tracing and routing
//! settings of one mesh.
//!
//! Each section declares named backends; `conf` of a backend is free-form in
//! Kuma's API, so it is kept as a JSON value (it reads back exactly as
//! written) and checked against the typed configuration of its backend type
//! ([`BuiltinCaConfig`], [`ProvidedCaConfig`], [`PrometheusConfig`],
//! [`FileLoggingConfig`], [`TcpLoggingConfig`], [`ZipkinConfig`],
//! [`DatadogConfig`]), which the typed accessors (e.g.
//! [`MetricsBackend::prometheus_config`]) return.

mod mtls;
mod observability;
#[cfg(test)]
mod tests;

pub use mtls::*;
pub use observability::*;

use crate::validation::{FieldPath, Validator};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::HashSet;

/// Spec of a `Mesh` resource.
///
/// ```
/// use kuma_core::resource::{MeshSpec, Resource};
///
/// let res = Resource::from_yaml(
///     "type: Mesh\nname: default\nmtls:\n  enabledBackend: ca-1\n  backends:\n  - name: ca-1\n    type: builtin\n",
/// ).unwrap();
/// res.validate().unwrap();
/// assert_eq!(res.spec_as::<MeshSpec>().unwrap().enabled_ca().unwrap().name, "ca-1");
/// ```
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MeshSpec {
    /// Certificate authorities; mTLS is on when `enabledBackend` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtls: Option<Mtls>,
    /// Tracing backends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracing: Option<Tracing>,
    /// Access-log backends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logging: Option<Logging>,
    /// Metrics backends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<Metrics>,
    /// Mesh-wide networking settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub networking: Option<MeshNetworking>,
    /// Mesh-wide routing settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routing: Option<Routing>,
}

/// `networking` of a Mesh.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MeshNetworking {
    /// Outbound settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outbound: Option<MeshOutboundNetworking>,
}

/// `networking.outbound` of a Mesh.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MeshOutboundNetworking {
    /// Whether traffic to destinations outside the mesh passes through
    /// transparent proxies (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passthrough: Option<bool>,
}

/// `routing` of a Mesh.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Routing {
    /// Prefer endpoints in the caller's zone.
    #[serde(default)]
    pub locality_aware_load_balancing: bool,
}

/// Decodes `conf` as `T` (absent `conf` = `T::default()`), or `None` when
/// it does not have that shape.
fn typed_conf<T: DeserializeOwned + Default>(conf: &Option<Value>) -> Option<T> {
    match conf {
        None | Some(Value::Null) => Some(T::default()),
        Some(v) => serde_json::from_value(v.clone()).ok(),
    }
}

/// Decodes `conf` as `T`, reporting a shape error under `path` (the `conf`
/// field) with the path inside `conf`.
fn check_conf<T: DeserializeOwned + Default>(
    conf: &Option<Value>,
    path: &FieldPath,
    v: &mut Validator,
) -> Option<T> {
    let value = match conf {
        None | Some(Value::Null) => return Some(T::default()),
        Some(v) => v.clone(),
    };
    match serde_path_to_error::deserialize::<_, T>(value) {
        Ok(t) => Some(t),
        Err(e) => {
            let mut p = path.clone();
            for seg in e.path().iter() {
                p = match seg {
                    serde_path_to_error::Segment::Seq { index } => p.index(*index),
                    serde_path_to_error::Segment::Map { key } => p.field(key),
                    serde_path_to_error::Segment::Enum { variant } => p.field(variant),
                    serde_path_to_error::Segment::Unknown => p,
                };
            }
            v.violation(&p, format!("invalid configuration: {}", e.into_inner()));
            None
        }
    }
}

fn check_type(path: &FieldPath, ty: &str, known: &[&str], v: &mut Validator) {
    if !known.contains(&ty) {
        let got = if ty.is_empty() {
            "is not set".to_string()
        } else {
            format!("{ty:?} is not a known backend type")
        };
        v.violation(path, format!("{got}: must be one of {}", known.join(", ")));
    }
}

/// Checks backend names (non-empty, unique) and that `selected` (the
/// `enabledBackend`/`defaultBackend` at `selected_path`) names one of them.
fn check_backend_names<'a>(
    path: &FieldPath,
    names: impl Iterator<Item = &'a str>,
    selected: Option<&str>,
    selected_path: &FieldPath,
    v: &mut Validator,
) {
    let mut seen = HashSet::new();
    for (i, name) in names.enumerate() {
        let np = path.field("backends").index(i).field("name");
        if name.is_empty() {
            v.violation(&np, "must not be empty");
        } else if !seen.insert(name) {
            v.violation(
                &np,
                format!("{name:?} is already used by another backend: names must be unique"),
            );
        }
    }
    if let Some(sel) = selected.filter(|s| !s.is_empty())
        && !seen.contains(sel)
    {
        let known = if seen.is_empty() {
            "no backends are declared".to_string()
        } else {
            let mut names: Vec<_> = seen.into_iter().collect();
            names.sort_unstable();
            format!("declared backends: {}", names.join(", "))
        };
        v.violation(
            selected_path,
            format!("{sel:?} does not name a backend of this section; {known}"),
        );
    }
}

fn find_backend<'a, B>(
    backends: &'a [B],
    name: Option<&str>,
    get: impl Fn(&B) -> &str,
) -> Option<&'a B> {
    let name = name.filter(|n| !n.is_empty())?;
    backends.iter().find(|b| get(b) == name)
}

impl MeshSpec {
    /// The enabled CA backend; `None` when mTLS is off.
    pub fn enabled_ca(&self) -> Option<&CertificateAuthorityBackend> {
        let m = self.mtls.as_ref()?;
        find_backend(&m.backends, m.enabled_backend.as_deref(), |b| &b.name)
    }

    /// Whether mTLS is on.
    pub fn mtls_enabled(&self) -> bool {
        self.enabled_ca().is_some()
    }

    /// The enabled metrics backend; `None` when metrics are off.
    pub fn enabled_metrics(&self) -> Option<&MetricsBackend> {
        let m = self.metrics.as_ref()?;
        find_backend(&m.backends, m.enabled_backend.as_deref(), |b| &b.name)
    }

    /// The logging backend called `name`, or the default one for `None`.
    pub fn logging_backend(&self, name: Option<&str>) -> Option<&LoggingBackend> {
        let l = self.logging.as_ref()?;
        find_backend(&l.backends, name.or(l.default_backend.as_deref()), |b| {
            &b.name
        })
    }

    /// The tracing backend called `name`, or the default one for `None`.
    pub fn tracing_backend(&self, name: Option<&str>) -> Option<&TracingBackend> {
        let t = self.tracing.as_ref()?;
        find_backend(&t.backends, name.or(t.default_backend.as_deref()), |b| {
            &b.name
        })
    }

    /// Whether `networking.outbound.passthrough` is on (the default).
    pub fn passthrough(&self) -> bool {
        self.networking
            .as_ref()
            .and_then(|n| n.outbound.as_ref())
            .and_then(|o| o.passthrough)
            .unwrap_or(true)
    }

    /// Whether locality-aware load balancing is on.
    pub fn locality_aware_load_balancing(&self) -> bool {
        self.routing
            .as_ref()
            .is_some_and(|r| r.locality_aware_load_balancing)
    }

    pub(crate) fn check(&self, path: &FieldPath, v: &mut Validator) {
        if let Some(m) = &self.mtls {
            let p = path.field("mtls");
            check_backend_names(
                &p,
                m.backends.iter().map(|b| b.name.as_str()),
                m.enabled_backend.as_deref(),
                &p.field("enabledBackend"),
                v,
            );
            for (i, b) in m.backends.iter().enumerate() {
                b.check(&p.field("backends").index(i), v);
            }
        }
        if let Some(t) = &self.tracing {
            let p = path.field("tracing");
            check_backend_names(
                &p,
                t.backends.iter().map(|b| b.name.as_str()),
                t.default_backend.as_deref(),
                &p.field("defaultBackend"),
                v,
            );
            for (i, b) in t.backends.iter().enumerate() {
                b.check(&p.field("backends").index(i), v);
            }
        }
        if let Some(l) = &self.logging {
            let p = path.field("logging");
            check_backend_names(
                &p,
                l.backends.iter().map(|b| b.name.as_str()),
                l.default_backend.as_deref(),
                &p.field("defaultBackend"),
                v,
            );
            for (i, b) in l.backends.iter().enumerate() {
                b.check(&p.field("backends").index(i), v);
            }
        }
        if let Some(m) = &self.metrics {
            let p = path.field("metrics");
            check_backend_names(
                &p,
                m.backends.iter().map(|b| b.name.as_str()),
                m.enabled_backend.as_deref(),
                &p.field("enabledBackend"),
                v,
            );
            for (i, b) in m.backends.iter().enumerate() {
                b.check_conf(&p.field("backends").index(i), v);
            }
        }
    }
}

//! The resource model: every Kuma resource type, its universal YAML/JSON form,
//! and the one [`Resource`] value that stores, the API and sync code handle.
//!
//! A resource is [`Meta`] (type, mesh, name, times, store version) plus a typed
//! spec. In Kuma's universal form meta and spec are flattened into one object:
//!
//! ```
//! use kuma_core::resource::{Resource, ResourceType};
//!
//! let yaml = "type: TrafficPermission\nmesh: default\nname: allow-all\n\
//!             sources:\n- match:\n    kuma.io/service: '*'\n\
//!             destinations:\n- match:\n    kuma.io/service: '*'\n";
//! let res = Resource::from_yaml(yaml).unwrap();
//! assert_eq!(res.resource_type(), ResourceType::TrafficPermission);
//! assert_eq!(res.meta.mesh.as_deref(), Some("default"));
//! res.validate().unwrap();
//! ```

mod common;
mod config;
mod dataplane;
mod external_service;
mod insight;
mod kind;
mod mesh;
mod policies;
mod secret;
mod universal;
mod zone;

pub use common::*;
pub use config::*;
pub use dataplane::*;
pub use external_service::*;
pub use insight::*;
pub use kind::{PolicyKind, ResourceKind};
pub use mesh::*;
pub use policies::*;
pub use secret::*;
pub use universal::DecodeError;
pub use zone::*;

use crate::validation::{FieldPath, ValidationError, Validator};
use serde::{Serialize, de::DeserializeOwned};
use std::fmt;
use time::OffsetDateTime;

/// Whether a type lives inside a mesh or beside meshes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    /// Not inside a mesh (Mesh, Zone, Config).
    Global,
    /// Inside exactly one mesh.
    Mesh,
}

/// A typed resource spec: the fields of a resource beside its [`Meta`].
pub trait Spec:
    Serialize + DeserializeOwned + Clone + fmt::Debug + PartialEq + Send + Sync + 'static
{
    /// The resource type this spec belongs to.
    const TYPE: ResourceType;

    /// Checks the rules of this type, reporting every violation under `path`.
    fn validate(&self, path: &FieldPath, v: &mut Validator);

    /// Wraps the spec in the type-erased [`ResourceSpec`].
    fn into_resource_spec(self) -> ResourceSpec;

    /// Borrows this spec type out of a [`ResourceSpec`], if it is one.
    fn from_resource_spec(spec: &ResourceSpec) -> Option<&Self>;
}

/// The table of resource types. Each entry is
/// `Variant => "TypeName", Scope, "rest-path", SpecType, Kind;` where `Kind`
/// is a [`ResourceKind`] variant, `Policy(PolicyKind)` for policies. Every
/// per-type list (names, paths, scopes, which types are policies and how they
/// select Dataplanes) is generated from it.
macro_rules! resource_types {
    ($( $(#[$doc:meta])* $variant:ident => $name:literal, $scope:ident, $path:literal, $spec:ty,
        $kind:ident $(($policy:ident))?; )*) => {
        /// Every resource type the control plane knows.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[non_exhaustive]
        pub enum ResourceType {
            $( $(#[$doc])* $variant, )*
        }

        impl ResourceType {
            /// All types, in declaration order.
            pub const ALL: &'static [ResourceType] = &[ $( ResourceType::$variant, )* ];

            /// The `type` field value, e.g. `TrafficRoute`.
            pub fn name(self) -> &'static str {
                match self { $( ResourceType::$variant => $name, )* }
            }

            /// What the type is (a policy and how it selects, an insight, ...).
            pub const fn kind(self) -> ResourceKind {
                match self { $( ResourceType::$variant => ResourceKind::$kind $((PolicyKind::$policy))?, )* }
            }

            /// Whether the type is mesh-scoped or global.
            pub fn scope(self) -> Scope {
                match self { $( ResourceType::$variant => Scope::$scope, )* }
            }

            /// The REST collection path, e.g. `traffic-routes`.
            pub fn path(self) -> &'static str {
                match self { $( ResourceType::$variant => $path, )* }
            }

            /// Looks a type up by its `type` field value.
            pub fn from_name(name: &str) -> Option<Self> {
                match name { $( $name => Some(ResourceType::$variant), )* _ => None }
            }

            /// Looks a type up by its REST collection path.
            pub fn from_path(path: &str) -> Option<Self> {
                match path { $( $path => Some(ResourceType::$variant), )* _ => None }
            }
        }

        /// A spec of any type.
        #[derive(Debug, Clone, PartialEq)]
        #[non_exhaustive]
        pub enum ResourceSpec {
            $( $(#[$doc])* $variant($spec), )*
        }

        impl ResourceSpec {
            /// The type of this spec.
            pub fn resource_type(&self) -> ResourceType {
                match self { $( ResourceSpec::$variant(_) => ResourceType::$variant, )* }
            }

            /// Checks the rules of the spec's type.
            pub fn validate(&self, path: &FieldPath, v: &mut Validator) {
                match self { $( ResourceSpec::$variant(s) => s.validate(path, v), )* }
            }

            /// What the spec selects, if its type is a policy.
            pub fn policy_targets(&self) -> Option<PolicyTargets<'_>> {
                match self {
                    $( $( ResourceSpec::$variant(p) => {
                        let _: PolicyKind = PolicyKind::$policy;
                        Some(Policy::targets(p))
                    } )? )*
                    #[allow(unreachable_patterns)]
                    _ => None,
                }
            }

            pub(crate) fn to_json(&self) -> Result<serde_json::Value, serde_json::Error> {
                match self { $( ResourceSpec::$variant(s) => serde_json::to_value(s), )* }
            }

            pub(crate) fn from_json(
                ty: ResourceType,
                value: serde_json::Value,
            ) -> Result<Self, serde_path_to_error::Error<serde_json::Error>> {
                match ty {
                    $( ResourceType::$variant => {
                        serde_path_to_error::deserialize::<_, $spec>(value).map(ResourceSpec::$variant)
                    } )*
                }
            }
        }

        $(
            impl Spec for $spec {
                const TYPE: ResourceType = ResourceType::$variant;

                fn validate(&self, path: &FieldPath, v: &mut Validator) {
                    <$spec>::check(self, path, v)
                }

                fn into_resource_spec(self) -> ResourceSpec {
                    ResourceSpec::$variant(self)
                }

                fn from_resource_spec(spec: &ResourceSpec) -> Option<&Self> {
                    match spec { ResourceSpec::$variant(s) => Some(s), #[allow(unreachable_patterns)] _ => None }
                }
            }

            impl From<$spec> for ResourceSpec {
                fn from(s: $spec) -> Self { ResourceSpec::$variant(s) }
            }
        )*
    };
}

resource_types! {
    /// A mesh: an isolated group of Dataplanes and policies.
    Mesh => "Mesh", Global, "meshes", MeshSpec, Mesh;
    /// A data-plane proxy and the services behind it.
    Dataplane => "Dataplane", Mesh, "dataplanes", DataplaneSpec, Dataplane;
    /// Runtime status of a Dataplane's xDS connections.
    DataplaneInsight => "DataplaneInsight", Mesh, "dataplane-insights", DataplaneInsightSpec, Insight;
    /// A service outside the mesh, reachable through it.
    ExternalService => "ExternalService", Mesh, "external-services", ExternalServiceSpec, ExternalService;
    /// Which services may talk to which (mTLS RBAC).
    TrafficPermission => "TrafficPermission", Mesh, "traffic-permissions", TrafficPermissionSpec, Policy(Inbound);
    /// How traffic to a service is split across its instances.
    TrafficRoute => "TrafficRoute", Mesh, "traffic-routes", TrafficRouteSpec, Policy(Outbound);
    /// Active health checking of upstream endpoints.
    HealthCheck => "HealthCheck", Mesh, "health-checks", HealthCheckSpec, Policy(Outbound);
    /// Outlier detection and connection thresholds.
    CircuitBreaker => "CircuitBreaker", Mesh, "circuit-breakers", CircuitBreakerSpec, Policy(Outbound);
    /// Injected delays, aborts and bandwidth limits.
    FaultInjection => "FaultInjection", Mesh, "fault-injections", FaultInjectionSpec, Policy(Inbound);
    /// Access logging to a backend declared on the Mesh.
    TrafficLog => "TrafficLog", Mesh, "traffic-logs", TrafficLogSpec, Policy(Outbound);
    /// Tracing to a backend declared on the Mesh.
    TrafficTrace => "TrafficTrace", Mesh, "traffic-traces", TrafficTraceSpec, Policy(Dataplane);
    /// Raw Envoy resources and modifications of generated ones.
    ProxyTemplate => "ProxyTemplate", Mesh, "proxytemplates", ProxyTemplateSpec, Policy(Dataplane);
    /// Retries of failed requests and connections.
    Retry => "Retry", Mesh, "retries", RetrySpec, Policy(Outbound);
    /// Connect, idle and request timeouts.
    Timeout => "Timeout", Mesh, "timeouts", TimeoutSpec, Policy(Outbound);
    /// Opaque secret data (CA keys, certificates); admin only.
    Secret => "Secret", Mesh, "secrets", SecretSpec, Secret;
    /// A zone of a multi-zone deployment.
    Zone => "Zone", Global, "zones", ZoneSpec, Zone;
    /// Runtime status of a zone's KDS connections.
    ZoneInsight => "ZoneInsight", Global, "zone-insights", ZoneInsightSpec, Insight;
    /// Internal configuration data (for example the DNS VIP map).
    Config => "Config", Global, "configs", ConfigSpec, Config;
}

impl fmt::Display for ResourceType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A store version used for optimistic concurrency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Version(pub u64);

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The identity and bookkeeping of a resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meta {
    /// Name, unique per type and mesh.
    pub name: String,
    /// Mesh of a mesh-scoped resource; `None` for global types.
    pub mesh: Option<String>,
    /// Store version; `None` before the resource is stored.
    pub version: Option<Version>,
    /// When the resource was created.
    pub creation_time: Option<OffsetDateTime>,
    /// When the resource was last changed.
    pub modification_time: Option<OffsetDateTime>,
}

impl Meta {
    /// Meta of a resource not stored yet.
    pub fn new(mesh: Option<&str>, name: &str) -> Self {
        Self {
            name: name.to_string(),
            mesh: mesh.map(str::to_string),
            version: None,
            creation_time: None,
            modification_time: None,
        }
    }
}

/// Identifies one resource in a store.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResourceKey {
    /// The type.
    pub resource_type: ResourceType,
    /// The mesh (`None` for global types).
    pub mesh: Option<String>,
    /// The name.
    pub name: String,
}

impl ResourceKey {
    /// A key for `name` of type `ty` in `mesh`.
    pub fn new(ty: ResourceType, mesh: Option<&str>, name: &str) -> Self {
        Self {
            resource_type: ty,
            mesh: mesh.map(str::to_string),
            name: name.to_string(),
        }
    }
}

impl fmt::Display for ResourceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.mesh {
            Some(m) => write!(f, "{} {}/{}", self.resource_type, m, self.name),
            None => write!(f, "{} {}", self.resource_type, self.name),
        }
    }
}

/// A resource of any type: meta plus spec.
#[derive(Debug, Clone, PartialEq)]
pub struct Resource {
    /// Identity and bookkeeping.
    pub meta: Meta,
    /// The typed spec.
    pub spec: ResourceSpec,
}

impl Resource {
    /// A new resource of a spec's type, not stored yet.
    pub fn new(mesh: Option<&str>, name: &str, spec: impl Into<ResourceSpec>) -> Self {
        Self {
            meta: Meta::new(mesh, name),
            spec: spec.into(),
        }
    }

    /// The resource's type.
    pub fn resource_type(&self) -> ResourceType {
        self.spec.resource_type()
    }

    /// The resource's store key.
    pub fn key(&self) -> ResourceKey {
        ResourceKey {
            resource_type: self.resource_type(),
            mesh: self.meta.mesh.clone(),
            name: self.meta.name.clone(),
        }
    }

    /// Borrows the spec as a concrete type.
    pub fn spec_as<S: Spec>(&self) -> Option<&S> {
        S::from_resource_spec(&self.spec)
    }

    /// Checks meta and spec, reporting every violation.
    pub fn validate(&self) -> Result<(), ValidationError> {
        let mut v = Validator::new();
        let root = FieldPath::root();
        common::validate_name(&root.field("name"), &self.meta.name, &mut v);
        match (self.resource_type().scope(), &self.meta.mesh) {
            (Scope::Mesh, Some(mesh)) => common::validate_name(&root.field("mesh"), mesh, &mut v),
            (Scope::Mesh, None) => v.violation(&root.field("mesh"), "must be set for this type"),
            (Scope::Global, Some(_)) => v.violation(
                &root.field("mesh"),
                format!(
                    "must not be set: {} is not mesh-scoped",
                    self.resource_type()
                ),
            ),
            (Scope::Global, None) => {}
        }
        self.spec.validate(&root, &mut v);
        v.finish()
    }
}

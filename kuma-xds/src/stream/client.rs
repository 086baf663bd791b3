//! Who is at the other end of a stream: the node of its first request
//! ([`Client::identify`]) and the dataplane token of its `authorization`
//! metadata ([`Credentials`]), checked once for every service.

use crate::cache::NodeId;
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::config::core::v3::node::UserAgentVersionType;
use envoy_types::pb::google::protobuf::value::Kind;
use kuma_core::tokens::DataplaneAuth;
use std::sync::Arc;
use tonic::Status;
use tonic::metadata::MetadataMap;
use tracing::warn;

/// Node metadata key carrying a Dataplane to register (JSON text).
pub const DATAPLANE_RESOURCE_KEY: &str = "dataplane.resource";
/// Node metadata key carrying kuma-dp's version.
pub const KUMA_DP_VERSION_KEY: &str = "version.kumaDp";

/// The gRPC metadata key carrying a proxy's dataplane token (with or
/// without `Bearer `).
pub const TOKEN_METADATA: &str = crate::generate::names::SDS_TOKEN_METADATA;

/// How a stream authenticates: the server's token checking and the token
/// the stream presented. Deliberately not `Debug`: the token is a
/// credential.
pub struct Credentials {
    auth: DataplaneAuth,
    token: Option<String>,
}

impl Credentials {
    /// The credentials of a stream whose request carried `metadata`
    /// (`Bearer ` removed, an empty token is none).
    pub fn from_metadata(auth: &DataplaneAuth, metadata: &MetadataMap) -> Self {
        let token = metadata
            .get(TOKEN_METADATA)
            .and_then(|v| v.to_str().ok())
            .map(kuma_core::tokens::strip_bearer)
            .filter(|t| !t.is_empty())
            .map(str::to_string);
        Self {
            auth: auth.clone(),
            token,
        }
    }

    /// Checks the token for `node`; the error is the status to end the
    /// stream with (`UNAUTHENTICATED` naming the failed check, never the
    /// token; `UNAVAILABLE` when the check itself failed). On success, the
    /// checked token (`None` when checks are off).
    async fn check(self, node: &NodeId, service: &str) -> Result<Option<Arc<str>>, Status> {
        match self
            .auth
            .check(self.token.as_deref(), &node.mesh, &node.name)
            .await
        {
            Ok(()) if self.auth.is_on() => Ok(self.token.as_deref().map(Arc::from)),
            Ok(()) => Ok(None),
            Err(e) if e.is_unauthenticated() => {
                warn!(node = %node, error = %e, "refused a proxy's {service} stream");
                Err(Status::unauthenticated(e.to_string()))
            }
            Err(e) => {
                warn!(node = %node, error = %e, "could not check a proxy's dataplane token for {service}");
                Err(Status::unavailable(e.to_string()))
            }
        }
    }
}

/// An identified, authenticated client of one stream. Its `Debug` leaves
/// the token out.
#[derive(Clone)]
pub struct Client {
    /// The proxy (`<mesh>.<name>` of its node id).
    pub node: NodeId,
    /// Envoy's version, from the node's user agent.
    pub envoy_version: Option<String>,
    /// kuma-dp's version, from the node metadata.
    pub kuma_dp_version: Option<String>,
    /// The dataplane token the client presented and that was checked
    /// (`None` when token checks are off). It goes to the proxy's own SDS
    /// config sources.
    pub token: Option<Arc<str>>,
}

impl Client {
    /// Identifies the client of a stream from the node of its first
    /// request and checks its credentials for that node, for `service`
    /// (named in logs). The error is the status to end the stream with:
    /// `INVALID_ARGUMENT` without a node or with a node id that is not
    /// `<mesh>.<name>`, else as [`Credentials`] checks.
    pub async fn identify(
        node: Option<&Node>,
        credentials: Credentials,
        service: &str,
    ) -> Result<Self, Status> {
        let node_pb =
            node.ok_or_else(|| Status::invalid_argument("the first request must carry the node"))?;
        let node = NodeId::parse(&node_pb.id).ok_or_else(|| {
            Status::invalid_argument(format!("node id {:?} is not <mesh>.<name>", node_pb.id))
        })?;
        let token = credentials.check(&node, service).await?;
        Ok(Self {
            node,
            envoy_version: envoy_version(node_pb),
            kuma_dp_version: metadata_string(node_pb, KUMA_DP_VERSION_KEY),
            token,
        })
    }
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("node", &self.node)
            .field("envoy_version", &self.envoy_version)
            .field("kuma_dp_version", &self.kuma_dp_version)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// A non-empty string value of the node's metadata.
pub fn metadata_string(node: &Node, key: &str) -> Option<String> {
    let fields = &node.metadata.as_ref()?.fields;
    match fields.get(key)?.kind.as_ref()? {
        Kind::StringValue(s) if !s.is_empty() => Some(s.clone()),
        _ => None,
    }
}

fn envoy_version(node: &Node) -> Option<String> {
    match node.user_agent_version_type.as_ref()? {
        UserAgentVersionType::UserAgentVersion(v) => Some(v.clone()),
        UserAgentVersionType::UserAgentBuildVersion(b) => b
            .version
            .as_ref()
            .map(|v| format!("{}.{}.{}", v.major_number, v.minor_number, v.patch)),
    }
}

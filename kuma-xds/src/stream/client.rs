//! Who is at the other end of a stream: the node of its first request
//! ([`Client::identify`]) and the dataplane token of its `authorization`
//! metadata ([`Credentials`]), checked once for every service.

use crate::cache::NodeId;
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::config::core::v3::node::UserAgentVersionType;
use envoy_types::pb::google::protobuf::value::Kind;
use kuma_core::resource::DataplaneSpec;
use kuma_core::tokens::{DataplaneAuth, TokenClaims};
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
    /// checked token and its claims (`None` when checks are off).
    async fn check(self, node: &NodeId, service: &str) -> Result<Checked, Status> {
        match self
            .auth
            .authenticate(self.token.as_deref(), &node.mesh, &node.name)
            .await
        {
            Ok(Some(claims)) => Ok(Checked {
                token: self.token.as_deref().map(Arc::from),
                claims: Some(Arc::new(claims)),
            }),
            Ok(None) => Ok(Checked::default()),
            Err(e) => Err(refusal(node, service, &e)),
        }
    }
}

/// A checked token and its claims.
#[derive(Default)]
struct Checked {
    token: Option<Arc<str>>,
    claims: Option<Arc<TokenClaims>>,
}

/// The status that refuses a proxy's `service` stream for a token error
/// (logged): `UNAUTHENTICATED` for a bad token, `PERMISSION_DENIED` for a
/// valid token that does not allow the Dataplane, `UNAVAILABLE` when the
/// check itself failed. It names the failed check, never the token.
pub fn refusal(node: &NodeId, service: &str, e: &kuma_core::tokens::TokenError) -> Status {
    if e.is_unauthenticated() {
        warn!(node = %node, error = %e, "refused a proxy's {service} stream");
        Status::unauthenticated(e.to_string())
    } else if e.is_forbidden() {
        warn!(node = %node, error = %e, "refused a proxy's {service} stream: its token does not allow its Dataplane");
        Status::permission_denied(e.to_string())
    } else {
        warn!(node = %node, error = %e, "could not check a proxy's dataplane token for {service}");
        Status::unavailable(e.to_string())
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
    /// The verified claims of that token (`None` when token checks are
    /// off): what the Dataplane the client runs as must fit
    /// ([`Client::authorize`]).
    pub claims: Option<Arc<TokenClaims>>,
    /// Whether the stream's first request shows that the client already
    /// holds configuration from an earlier stream ([`Service::resumes`]:
    /// a reconnect, after a control-plane restart say), rather than a proxy
    /// that just started.
    ///
    /// [`Service::resumes`]: crate::stream::Service::resumes
    pub resumed: bool,
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
        let Checked { token, claims } = credentials.check(&node, service).await?;
        Ok(Self {
            node,
            envoy_version: envoy_version(node_pb),
            kuma_dp_version: metadata_string(node_pb, KUMA_DP_VERSION_KEY),
            token,
            claims,
            resumed: false,
        })
    }

    /// Whether the client's token allows it to run as `dataplane` (see
    /// [`TokenClaims::authorize`]; always when checks are off). The error
    /// is the status to end the stream with (`PERMISSION_DENIED` naming the
    /// tag or type that is not allowed), logged for `service`.
    pub fn authorize(&self, dataplane: &DataplaneSpec, service: &str) -> Result<(), Status> {
        authorize_claims(self.claims.as_deref(), &self.node, dataplane, service)
    }
}

/// [`Client::authorize`] for the claims of a client.
pub fn authorize_claims(
    claims: Option<&TokenClaims>,
    node: &NodeId,
    dataplane: &DataplaneSpec,
    service: &str,
) -> Result<(), Status> {
    kuma_core::tokens::authorize(claims, &node.name, dataplane)
        .map_err(|e| refusal(node, service, &e))
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("node", &self.node)
            .field("envoy_version", &self.envoy_version)
            .field("kuma_dp_version", &self.kuma_dp_version)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("claims", &self.claims)
            .field("resumed", &self.resumed)
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

//! Mutual TLS between a mesh's proxies (docs/security.md, "Generated config
//! with mTLS on").
//!
//! Every TLS context takes the proxy's identity from the SDS secret
//! `identity_cert` and validates peers with the mesh CA of the SDS secret
//! `mesh_ca`, both served by the control plane's SDS server through the
//! bootstrap's `kuma:sds` cluster. Inbound listeners accept any identity of
//! the mesh (`spiffe://<mesh>/` prefix; TrafficPermission narrows it down
//! with RBAC); outbound clusters require the exact identity of the service
//! they call.

use super::{ProxyInput, names};
use envoy_types::pb::envoy::config::core::v3::api_config_source::ApiType;
use envoy_types::pb::envoy::config::core::v3::config_source::ConfigSourceSpecifier;
use envoy_types::pb::envoy::config::core::v3::grpc_service::{EnvoyGrpc, TargetSpecifier};
use envoy_types::pb::envoy::config::core::v3::transport_socket::ConfigType as SocketConfig;
use envoy_types::pb::envoy::config::core::v3::{
    ApiConfigSource, ApiVersion, BackoffStrategy, ConfigSource, GrpcService, HeaderValue,
    RetryPolicy, TransportSocket,
};
use envoy_types::pb::envoy::config::listener::v3::listener_filter::ConfigType as ListenerFilterConfig;
use envoy_types::pb::envoy::config::listener::v3::{FilterChainMatch, Listener, ListenerFilter};
use envoy_types::pb::envoy::extensions::filters::listener::tls_inspector::v3::TlsInspector;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::common_tls_context::{
    CombinedCertificateValidationContext, ValidationContextType,
};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::subject_alt_name_matcher::SanType;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    CertificateValidationContext, CommonTlsContext, DownstreamTlsContext, SdsSecretConfig,
    SubjectAltNameMatcher, UpstreamTlsContext,
};
use envoy_types::pb::envoy::r#type::matcher::v3::StringMatcher;
use envoy_types::pb::envoy::r#type::matcher::v3::string_matcher::MatchPattern;
use envoy_types::pb::google::protobuf::BoolValue;
use envoy_types::pb::google::protobuf::Duration as ProtoDuration;
use envoy_types::util::pack_any;
use kuma_core::resource::MtlsMode;

/// `transport_protocol` Envoy's TLS inspector reports for TLS connections.
const TLS_PROTOCOL: &str = "tls";
/// `transport_protocol` of connections the TLS inspector found not to be
/// TLS.
const PLAIN_PROTOCOL: &str = "raw_buffer";

/// The SDS stream's reconnect backoff: the bootstrap's ADS one
/// ([`crate::bootstrap::XDS_RETRY_BASE`] to
/// [`crate::bootstrap::XDS_RETRY_MAX`]), so that certificates come back as
/// fast as the rest of the config after a control-plane restart.
fn sds_retry_policy() -> RetryPolicy {
    let duration = |d: std::time::Duration| ProtoDuration {
        seconds: d.as_secs() as i64,
        nanos: d.subsec_nanos() as i32,
    };
    RetryPolicy {
        retry_back_off: Some(BackoffStrategy {
            base_interval: Some(duration(crate::bootstrap::XDS_RETRY_BASE)),
            max_interval: Some(duration(crate::bootstrap::XDS_RETRY_MAX)),
        }),
        ..Default::default()
    }
}

/// How a proxy's mesh secures traffic between proxies; exists only when
/// the mesh has mTLS on.
#[derive(Clone, Copy)]
pub(super) struct MeshTls<'a> {
    /// The mesh (the authority of its SPIFFE ids).
    pub mesh: &'a str,
    /// `PERMISSIVE`: inbounds accept plain text too.
    pub permissive: bool,
    /// The proxy's dataplane token, sent to the SDS server.
    sds_token: Option<&'a str>,
}

impl std::fmt::Debug for MeshTls<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the token.
        f.debug_struct("MeshTls")
            .field("mesh", &self.mesh)
            .field("permissive", &self.permissive)
            .field("sds_token", &self.sds_token.map(|_| "<redacted>"))
            .finish()
    }
}

impl<'a> MeshTls<'a> {
    /// The mTLS settings of the proxy's mesh; `None` when mTLS is off (or
    /// the Mesh is unknown).
    pub(super) fn of(input: &ProxyInput<'a>) -> Option<Self> {
        let ca = input.mesh_spec?.enabled_ca()?;
        Some(Self {
            mesh: input.mesh,
            permissive: ca.mode == Some(MtlsMode::Permissive),
            sds_token: input.sds_token,
        })
    }

    /// The SDS reference to the secret `name`.
    fn sds_secret(&self, name: &str) -> SdsSecretConfig {
        let initial_metadata = self
            .sds_token
            .map(|token| HeaderValue {
                key: names::SDS_TOKEN_METADATA.into(),
                value: token.into(),
                ..Default::default()
            })
            .into_iter()
            .collect();
        SdsSecretConfig {
            name: name.into(),
            sds_config: Some(ConfigSource {
                resource_api_version: ApiVersion::V3 as i32,
                config_source_specifier: Some(ConfigSourceSpecifier::ApiConfigSource(
                    ApiConfigSource {
                        api_type: ApiType::Grpc as i32,
                        transport_api_version: ApiVersion::V3 as i32,
                        grpc_services: vec![GrpcService {
                            target_specifier: Some(TargetSpecifier::EnvoyGrpc(EnvoyGrpc {
                                cluster_name: names::SDS_CLUSTER.into(),
                                retry_policy: Some(sds_retry_policy()),
                                ..Default::default()
                            })),
                            initial_metadata,
                            ..Default::default()
                        }],
                        ..Default::default()
                    },
                )),
                ..Default::default()
            }),
        }
    }

    /// The proxy's identity, and peers validated by the mesh CA and a URI
    /// SAN matching `peer`.
    fn common_context(&self, peer: MatchPattern) -> CommonTlsContext {
        CommonTlsContext {
            tls_certificate_sds_secret_configs: vec![self.sds_secret(names::IDENTITY_CERT_SECRET)],
            validation_context_type: Some(ValidationContextType::CombinedValidationContext(
                CombinedCertificateValidationContext {
                    default_validation_context: Some(CertificateValidationContext {
                        match_typed_subject_alt_names: vec![SubjectAltNameMatcher {
                            san_type: SanType::Uri as i32,
                            matcher: Some(StringMatcher {
                                match_pattern: Some(peer),
                                ..Default::default()
                            }),
                            ..Default::default()
                        }],
                        ..Default::default()
                    }),
                    validation_context_sds_secret_config: Some(
                        self.sds_secret(names::MESH_CA_SECRET),
                    ),
                    ..Default::default()
                },
            )),
            ..Default::default()
        }
    }

    /// The server side of an inbound: a client certificate is required and
    /// any identity of the mesh is accepted (RBAC decides which).
    pub(super) fn downstream_socket(&self) -> TransportSocket {
        let context = DownstreamTlsContext {
            require_client_certificate: Some(BoolValue { value: true }),
            common_tls_context: Some(
                self.common_context(MatchPattern::Prefix(names::spiffe_prefix(self.mesh))),
            ),
            ..Default::default()
        };
        TransportSocket {
            name: names::TLS_TRANSPORT_SOCKET.into(),
            config_type: Some(SocketConfig::TypedConfig(pack_any(context))),
        }
    }

    /// The client side of a connection to `service`: only that service's
    /// identity is accepted; SNI is the service name.
    pub(super) fn upstream_socket(&self, service: &str) -> TransportSocket {
        let context = UpstreamTlsContext {
            sni: service.into(),
            common_tls_context: Some(
                self.common_context(MatchPattern::Exact(names::spiffe_id(self.mesh, service))),
            ),
            ..Default::default()
        };
        TransportSocket {
            name: names::TLS_TRANSPORT_SOCKET.into(),
            config_type: Some(SocketConfig::TypedConfig(pack_any(context))),
        }
    }

    /// Makes an inbound listener (one plain filter chain, as
    /// [`super::listeners::inbound`] builds it) terminate mTLS.
    ///
    /// `STRICT`: the chain gets the TLS transport socket. `PERMISSIVE`: a
    /// TLS inspector tells TLS from plain text; the TLS chain (matching
    /// transport protocol `tls`) comes first, followed by a copy of the
    /// plain chain for `raw_buffer` connections. TrafficPermission's RBAC
    /// is added to the TLS chain only, later (see
    /// `policies::traffic_permission`).
    pub(super) fn secure_inbound(&self, listener: &mut Listener) {
        let socket = self.downstream_socket();
        if !self.permissive {
            for chain in &mut listener.filter_chains {
                chain.transport_socket = Some(socket.clone());
            }
            return;
        }
        let mut plain = std::mem::take(&mut listener.filter_chains);
        let mut secure = plain.clone();
        for chain in &mut secure {
            chain.filter_chain_match = Some(FilterChainMatch {
                transport_protocol: TLS_PROTOCOL.into(),
                ..Default::default()
            });
            chain.transport_socket = Some(socket.clone());
        }
        for chain in &mut plain {
            chain.filter_chain_match = Some(FilterChainMatch {
                transport_protocol: PLAIN_PROTOCOL.into(),
                ..Default::default()
            });
        }
        listener.filter_chains = secure;
        listener.filter_chains.append(&mut plain);
        listener.listener_filters.push(ListenerFilter {
            name: names::TLS_INSPECTOR.into(),
            config_type: Some(ListenerFilterConfig::TypedConfig(pack_any(
                TlsInspector::default(),
            ))),
            ..Default::default()
        });
    }
}

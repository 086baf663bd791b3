//! Wires the library components into servers: store, manager, default mesh,
//! the HTTP API, the admin server (dataplane tokens and Secrets, loopback
//! only) and the diagnostics server; binds every port and shuts down
//! gracefully on SIGINT/SIGTERM.

use crate::config::{DpAuthType, HttpLimitsConfig, KumaCpConfig, Mode};
use crate::diagnostics::{Diagnostics, RequestLabels};
use anyhow::{Context, Result};
use axum::Router;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use kuma_core::api::auth::{ApiAuth, PeerAddr};
use kuma_core::api::{self, ApiConfig, ApiMode, Catalog};
use kuma_core::manager::{ManagerError, ResourceManager};
use kuma_core::resource::Resource;
use kuma_core::store::StoreError;
use kuma_core::tokens::{DataplaneAuth, DataplaneTokens};
use kuma_core::user_tokens::UserTokens;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tower::ServiceExt;
use tracing::info;

const VERSION: &str = env!("CARGO_PKG_VERSION");

/// How long shutdown waits for open connections and tasks to finish.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// The listen backlog asked for: room for every proxy of a large mesh
/// reconnecting at once after a restart (tokio's default of 1,024 let
/// about 15% of 10,000 simultaneous connects fail, see
/// docs/performance.md). The kernel clamps it to `net.core.somaxconn`
/// (4,096 on the machines measured; raise that sysctl to go further).
const LISTEN_BACKLOG: i32 = 65_535;

/// A listening socket on `addr` with [`LISTEN_BACKLOG`] and `SO_REUSEADDR`
/// (as tokio's `TcpListener::bind` sets on Unix, so that a restarted
/// control plane gets its ports back while old connections linger in
/// TIME_WAIT).
fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    #[cfg(unix)]
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    TcpListener::from_std(socket.into())
}

/// Binds `port` on every IPv4 address (0: an ephemeral port).
pub(crate) async fn bind(key: &str, port: u16) -> Result<(TcpListener, SocketAddr)> {
    let listener = listen(SocketAddr::from(([0, 0, 0, 0], port)))
        .with_context(|| format!("cannot listen on {key} {port}"))?;
    let addr = listener.local_addr()?;
    Ok((listener, addr))
}

/// Binds `port` on 127.0.0.1 only (the admin server hands out credentials).
async fn bind_loopback(key: &str, port: u16) -> Result<(TcpListener, SocketAddr)> {
    let listener = listen(SocketAddr::from(([127, 0, 0, 1], port)))
        .with_context(|| format!("cannot listen on {key} 127.0.0.1:{port}"))?;
    let addr = listener.local_addr()?;
    Ok((listener, addr))
}

/// What every HTTP port allows one client (`limits.http`, see
/// docs/security.md, "Limits").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HttpLimits {
    /// Open connections per port; further clients wait in the backlog.
    pub max_connections: usize,
    /// Time to send a whole request head (from the connection's start, or
    /// from the previous response on a kept-alive connection).
    pub header_read_timeout: Duration,
    /// Time to answer a request (reading its body included): 408 after.
    pub request_timeout: Duration,
    /// Largest request body: 413 above.
    pub max_body_bytes: usize,
}

impl From<&HttpLimitsConfig> for HttpLimits {
    fn from(c: &HttpLimitsConfig) -> Self {
        Self {
            max_connections: c.max_connections,
            header_read_timeout: c.header_read_timeout,
            request_timeout: c.request_timeout,
            max_body_bytes: c.max_body_bytes,
        }
    }
}

/// Serves `app` on `listener` (plain TCP, or [`crate::tls::TlsListener`])
/// within `limits` until `shutdown` turns true:
/// at most `max_connections` connections at once (the accept loop waits
/// for a free slot, so further clients queue in the listen backlog),
/// HTTP/1.1 with a header-read timeout, and [`limit_requests`] around
/// every request. Each request carries its peer address as a
/// [`PeerAddr`].
pub(crate) fn serve<L>(
    name: &'static str,
    mut listener: L,
    app: Router,
    limits: HttpLimits,
    shutdown: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()>
where
    L: axum::serve::Listener<Addr = SocketAddr>,
{
    let app = app.layer(middleware::from_fn_with_state(limits, limit_requests));
    tokio::spawn(async move {
        let permits = Arc::new(Semaphore::new(limits.max_connections));
        let mut stop = shutdown.clone();
        loop {
            let permit = tokio::select! {
                p = permits.clone().acquire_owned() => match p {
                    Ok(p) => p,
                    Err(_) => break,
                },
                () = stopped(&mut stop) => break,
            };
            // The listener handles accept errors itself (axum's waits a
            // little on running out of file descriptors, say).
            let (stream, peer) = tokio::select! {
                accepted = listener.accept() => accepted,
                () = stopped(&mut stop) => break,
            };
            tokio::spawn(serve_connection(
                stream,
                peer,
                app.clone(),
                limits,
                shutdown.clone(),
                permit,
            ));
        }
        tracing::debug!(
            server = name,
            "stopped accepting; waiting for open connections"
        );
        // Wait for open connections: each holds a permit until it is done
        // (they finish their request and close once `shutdown` is set).
        let _ = permits
            .acquire_many(u32::try_from(limits.max_connections).unwrap_or(u32::MAX))
            .await;
    })
}

/// Serves one connection (any byte stream: plain TCP here, TLS where a
/// port adds it) with the header-read timeout of `limits`, closing it
/// gracefully once `shutdown` turns true; `permit` is its connection slot.
pub(crate) async fn serve_connection<I>(
    io: I,
    peer: SocketAddr,
    app: Router,
    limits: HttpLimits,
    mut shutdown: watch::Receiver<bool>,
    permit: OwnedSemaphorePermit,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(PeerAddr(peer));
        app.clone().oneshot(req.map(axum::body::Body::new))
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .serve_connection(TokioIo::new(io), service);
    let mut conn = std::pin::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        () = stopped(&mut shutdown) => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
    drop(permit);
}

/// Resolves once `stop` is true (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// The request half of the limits: a body above `max_body_bytes` gets 413
/// (at once when `Content-Length` says so, else when the handler reads
/// past the limit), and a request not answered within `request_timeout`
/// gets 408. Both bodies are Kuma's error shape and name the limit.
async fn limit_requests(State(limits): State<HttpLimits>, req: Request, next: Next) -> Response {
    let max = limits.max_body_bytes;
    let declared = req
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(len) = declared.filter(|len| *len > max as u64) {
        // Read (and drop) a body of up to twice the limit first, so that
        // a client still sending it (kumactl, ureq) gets to read the 413
        // instead of a reset; a larger one is not worth reading.
        if len <= 2 * max as u64 {
            let mut body = req.into_body();
            let drain = async {
                while let Some(Ok(_)) = http_body_util::BodyExt::frame(&mut body).await {}
            };
            let _ = tokio::time::timeout(limits.request_timeout, drain).await;
        }
        return limit_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "Request body too large",
            format!(
                "the request body is larger than the limit of {max} bytes (limits.http.maxBodyBytes)"
            ),
        );
    }
    let req = req.map(|body| axum::body::Body::new(http_body_util::Limited::new(body, max)));
    match tokio::time::timeout(limits.request_timeout, next.run(req)).await {
        Ok(resp) => resp,
        Err(_) => limit_error(
            StatusCode::REQUEST_TIMEOUT,
            "Request timeout",
            format!(
                "the request was not answered within {:?} (limits.http.requestTimeout)",
                limits.request_timeout
            ),
        ),
    }
}

fn limit_error(status: StatusCode, title: &str, details: String) -> Response {
    let body = kuma_core::wire::ErrorBody {
        title: title.to_string(),
        details,
        causes: Vec::new(),
    };
    let mut resp = (status, axum::Json(body)).into_response();
    // The request may not have been read: do not reuse the connection.
    resp.headers_mut().insert(
        axum::http::header::CONNECTION,
        axum::http::HeaderValue::from_static("close"),
    );
    resp
}

async fn count_requests(State(d): State<Arc<Diagnostics>>, req: Request, next: Next) -> Response {
    let method = req.method().to_string();
    let resp = next.run(req).await;
    d.api_requests
        .get_or_create(&RequestLabels {
            method,
            code: resp.status().as_u16().to_string(),
        })
        .inc();
    resp
}

async fn create_default_mesh(manager: &ResourceManager) -> Result<()> {
    let mesh = Resource::from_yaml("type: Mesh\nname: default\n")
        .map_err(|e| anyhow::anyhow!("default mesh: {e}"))?;
    match manager.create(mesh).await {
        Ok(_) => {
            info!(mesh = "default", "created the default mesh");
            Ok(())
        }
        Err(ManagerError::Store(StoreError::AlreadyExists(_))) => Ok(()),
        Err(e) => Err(e).context("creating the default mesh"),
    }
}

/// Waits for SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

/// Runs the control plane until a shutdown signal.
pub async fn run(config: KumaCpConfig) -> Result<()> {
    for key in &config.ignored_env {
        tracing::warn!(env = %key, "ignoring unknown KUMA_* environment variable");
    }
    let crate::store::OpenStore {
        store,
        leadership,
        healthy,
    } = crate::store::open(&config).await?;
    let manager = ResourceManager::new(store.clone());
    // Kuma DNS runs in standalone and remote modes, not in global.
    let dns = match config.mode {
        Mode::Global => None,
        _ => Some(crate::dns::prepare(&config)?),
    };
    let diagnostics = Diagnostics::new(VERSION, |registry| {
        if let Some(dns) = &dns {
            dns.metrics().register(registry);
        }
    });
    tokio::spawn(diagnostics.clone().follow_store(store.clone()));
    tokio::spawn(diagnostics.clone().follow_store_health(healthy));

    let (diag_listener, diag_addr) = bind(
        "xdsServer.diagnosticsPort",
        config.xds_server.diagnostics_port,
    )
    .await?;
    let (api_listener, api_addr) = bind("apiServer.port", config.api_server.port).await?;
    let (admin_listener, admin_addr) =
        bind_loopback("adminServer.local.port", config.admin_server.local.port).await?;
    let tokens = DataplaneTokens::new(manager.clone());
    let dp_auth = match config.dp_server.auth.auth_type {
        DpAuthType::DpToken => DataplaneAuth::Tokens(tokens.clone()),
        DpAuthType::None => {
            tracing::warn!(
                "dpServer.auth.type is none: proxies are not authenticated and may connect as any Dataplane"
            );
            DataplaneAuth::Off
        }
    };
    // The data-plane servers (ADS, bootstrap) run in standalone and remote modes.
    let xds_listeners = match config.mode {
        Mode::Global => None,
        _ => Some(crate::xds::bind(&config, &*store).await?),
    };
    let bootstrap_port = xds_listeners
        .as_ref()
        .map_or(config.bootstrap_server.port, |l| l.bootstrap_addr.port());

    if !config.defaults.skip_mesh_creation {
        create_default_mesh(&manager).await?;
    }

    let host = &config.general.advertised_hostname;
    let api_config = ApiConfig {
        mode: match config.mode {
            Mode::Standalone => ApiMode::Standalone,
            Mode::Global => ApiMode::Global,
            Mode::Remote => ApiMode::Remote,
        },
        read_only: config.api_server.read_only,
        hostname: host.clone(),
        version: VERSION.to_string(),
        catalog: Catalog {
            bootstrap_url: format!("https://{host}:{bootstrap_port}"),
            admin_local_url: format!("http://localhost:{}", admin_addr.port()),
            admin_public_url: String::new(),
            monitoring_assignment_url: format!(
                "grpc://{host}:{}",
                config.monitoring_assignment_server.grpc_port
            ),
        },
        effective_config: serde_yaml_ng::from_str(&config.to_yaml())
            .context("rendering the effective configuration")?,
        max_body_bytes: config.limits.http.max_body_bytes,
    };
    let users = UserTokens::new(manager.clone());
    // Kuma's admin user token: created at the first start, kept in the
    // store, readable by admins (localhost) at
    // /global-secrets/admin-user-token.
    users
        .ensure_admin_token()
        .await
        .context("creating the admin user token (apiServer.auth)")?;
    let api_auth = ApiAuth {
        users,
        allow_from_localhost: config.api_server.auth.allow_from_localhost,
    };
    let api_app = api::router_with_auth(manager.clone(), api_config, api_auth).layer(
        middleware::from_fn_with_state(diagnostics.clone(), count_requests),
    );
    let limits = HttpLimits::from(&config.limits.http);

    let (stop_tx, stop_rx) = watch::channel(false);
    let servers = [
        serve(
            "diagnostics",
            diag_listener,
            diagnostics.router(),
            limits,
            stop_rx.clone(),
        ),
        serve("api", api_listener, api_app, limits, stop_rx.clone()),
        serve(
            "admin",
            admin_listener,
            api::admin_router_with_ca(
                manager.clone(),
                tokens,
                xds_listeners
                    .as_ref()
                    .map(|l| l.trusted_ca_pem().to_string()),
            ),
            limits,
            stop_rx.clone(),
        ),
    ];
    info!(server = "diagnostics", address = %diag_addr, "listening");
    info!(server = "api", address = %api_addr, "listening");
    info!(server = "admin", address = %admin_addr, "listening");
    let mut tasks = Vec::new();
    if let Some(listeners) = xds_listeners {
        tasks.extend(crate::xds::start(
            listeners,
            &config,
            &manager,
            store.clone(),
            dp_auth,
            stop_rx.clone(),
        )?);
    }
    if let Some(dns) = dns {
        let port = config.dns_server.port;
        // VIPs are allocated by the leader only; the other replicas serve
        // the VIPs it stored.
        let (_, dns_tasks) = crate::dns::start(
            dns,
            port,
            store.clone(),
            leadership.clone(),
            stop_rx.clone(),
        )
        .await?;
        tasks.extend(dns_tasks);
    }
    diagnostics.set_ready();
    info!(
        mode = config.mode.as_str(),
        version = VERSION,
        "kuma-cp is ready"
    );

    shutdown_signal().await;
    info!("shutting down");
    let _ = stop_tx.send(true);
    let drain = async {
        for s in servers.into_iter().chain(tasks) {
            let _ = s.await;
        }
    };
    // Graceful shutdown waits for open requests; a client that never
    // finishes its request must not keep the process alive.
    if tokio::time::timeout(SHUTDOWN_GRACE, drain).await.is_err() {
        tracing::warn!(
            grace = ?SHUTDOWN_GRACE,
            "connections still open after the shutdown grace period; closing them"
        );
    }
    info!("stopped");
    Ok(())
}

//! Fetching the Envoy bootstrap from the control plane.
//!
//! `POST {cp}/bootstrap` on the bootstrap server named by `--cp-address`
//! (`https://HOST:5682`) returns the Envoy v3 bootstrap as YAML. The
//! connection is always TLS: verified against `--ca-cert-file` when given,
//! else unverified with one warning (Kuma's behaviour). The dataplane token
//! goes to that address only; nothing the control plane answers can send
//! it elsewhere (no catalog is consulted, redirects are not followed).
//! While the control plane is unreachable or answers 5xx, attempts are
//! retried with exponential backoff (200 ms doubling up to 5 s) until they
//! succeed or a signal arrives. A 4xx answer, or a certificate the CA file
//! does not vouch for, is final: kuma-dp exits 1 saying why.

pub use kuma_core::wire::BootstrapRequest;
use kuma_core::wire::ErrorBody;
use std::fmt;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// First retry delay.
pub const BACKOFF_START: Duration = Duration::from_millis(200);
/// Longest retry delay.
pub const BACKOFF_CAP: Duration = Duration::from_secs(5);

/// Delay before retry number `retry` (0-based): 200 ms, 400 ms, 800 ms, ...,
/// capped at 5 s.
pub fn backoff_delay(retry: u32) -> Duration {
    let factor = 1u32.checked_shl(retry.min(31)).unwrap_or(u32::MAX);
    BACKOFF_START
        .checked_mul(factor)
        .map_or(BACKOFF_CAP, |d| d.min(BACKOFF_CAP))
}

/// The `version` block for this build of kuma-dp.
pub fn current_version() -> serde_json::Value {
    BootstrapRequest::versions(env!("CARGO_PKG_VERSION"))
}

/// An error answer of the control plane: its status, what the request was
/// and Kuma's error body.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KumaError {
    /// HTTP status code.
    pub status: u16,
    /// What the request was, e.g. `bootstrap request`.
    pub request: String,
    /// The body: title, details and field-level causes.
    pub body: ErrorBody,
    /// Whether the request carried a Dataplane resource (for the 404 hint).
    pub with_resource: bool,
}

const MAX_BODY_IN_ERROR: usize = 1000;

impl KumaError {
    /// Reads an error body: Kuma's `{"title","details","causes"}` JSON, or
    /// any other text, which becomes the title.
    pub fn from_response(request: &str, status: u16, body: &str) -> Self {
        let parsed = match serde_json::from_str::<ErrorBody>(body) {
            Ok(e) if !e.is_empty() => e,
            _ => {
                let text = body.trim();
                let title = if text.is_empty() {
                    "empty response".to_string()
                } else if text.len() > MAX_BODY_IN_ERROR {
                    let mut end = MAX_BODY_IN_ERROR;
                    while !text.is_char_boundary(end) {
                        end -= 1;
                    }
                    format!("{}...", &text[..end])
                } else {
                    text.to_string()
                };
                ErrorBody::new(title, "")
            }
        };
        KumaError {
            status,
            request: request.to_string(),
            body: parsed,
            with_resource: false,
        }
    }
}

impl fmt::Display for KumaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the control plane rejected the {} (HTTP {}): {}",
            self.request, self.status, self.body.title
        )?;
        if !self.body.details.is_empty() && self.body.details != self.body.title {
            write!(f, "\n{}", self.body.details)?;
        }
        for c in &self.body.causes {
            if c.field.is_empty() {
                write!(f, "\n  * {}", c.message)?;
            } else {
                write!(f, "\n  * {}: {}", c.field, c.message)?;
            }
        }
        if self.status == 404 && !self.with_resource && self.request.starts_with("bootstrap") {
            write!(
                f,
                "\nhint: without --dataplane or --dataplane-file the Dataplane must already \
                 exist in the control plane"
            )?;
        }
        Ok(())
    }
}

impl std::error::Error for KumaError {}

/// Outcome of one failed attempt.
#[derive(Debug)]
pub enum AttemptError {
    /// Worth retrying: unreachable, timed out, 5xx.
    Retry(String),
    /// Final: 4xx, malformed answers, bad URLs.
    Fatal(anyhow::Error),
}

/// Blocking HTTPS client for the bootstrap endpoint.
#[derive(Clone)]
pub struct Client {
    agent: ureq::Agent,
    /// `https://host:port`, as given.
    cp_address: String,
    /// The CA file the server's certificate is verified against.
    ca_file: Option<PathBuf>,
}

/// The `rustls` error under a ureq error, if the failure was TLS's (a
/// certificate not vouched for, a peer that does not speak TLS...).
fn tls_failure(err: &ureq::Error) -> Option<String> {
    match err {
        ureq::Error::Rustls(e) => Some(e.to_string()),
        ureq::Error::Tls(e) => Some((*e).to_string()),
        ureq::Error::Io(e) => e
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
            .map(ToString::to_string),
        _ => None,
    }
}

impl Client {
    fn transport_error(&self, what: &str, url: &str, err: ureq::Error) -> AttemptError {
        if let Some(tls) = tls_failure(&err) {
            let why = match &self.ca_file {
                Some(ca) => format!(
                    "the TLS connection to {url} failed: {tls}; the control plane's certificate \
                     must be issued by the CA in --ca-cert-file {} (KUMA_CONTROL_PLANE_CA_CERT_FILE), \
                     and --cp-address must be the bootstrap server's https address (port 5682)",
                    ca.display()
                ),
                None => format!(
                    "the TLS connection to {url} failed: {tls}; --cp-address must be the \
                     bootstrap server's https address (port 5682)"
                ),
            };
            return AttemptError::Fatal(anyhow::anyhow!("{what}: {why}"));
        }
        match err {
            ureq::Error::BadUri(_)
            | ureq::Error::Http(_)
            | ureq::Error::InvalidProxyUrl
            | ureq::Error::BodyExceedsLimit(_) => {
                AttemptError::Fatal(anyhow::anyhow!("{what} to {url} failed: {err}"))
            }
            other => AttemptError::Retry(format!("{what} to {url} failed: {other}")),
        }
    }

    /// A client for the bootstrap server at `cp_address`
    /// (`https://host:port`), trusting the CA certificates (PEM) in
    /// `ca_file` or, without one, any certificate (with a warning, once).
    pub fn new(cp_address: &str, ca_file: Option<&Path>) -> anyhow::Result<Self> {
        let cp_address = check_address(cp_address)?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = ureq::tls::TlsConfig::builder()
            .provider(ureq::tls::TlsProvider::Rustls)
            .unversioned_rustls_crypto_provider(provider);
        let tls = match ca_file {
            Some(path) => {
                tls.root_certs(ureq::tls::RootCerts::new_with_certs(&read_ca_file(path)?))
            }
            None => {
                tracing::warn!(
                    cp = %cp_address,
                    "the control plane's certificate is not verified: the connection is encrypted \
                     but anyone on the path could pose as the control plane and take the dataplane \
                     token; pass --ca-cert-file (KUMA_CONTROL_PLANE_CA_CERT_FILE) with the control \
                     plane's CA certificate"
                );
                tls.disable_verification(true)
            }
        };
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .proxy(None)
            // The token goes to the address given, nowhere else.
            .max_redirects(0)
            .tls_config(tls.build())
            .timeout_connect(Some(Duration::from_secs(3)))
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .into();
        Ok(Self {
            agent,
            cp_address,
            ca_file: ca_file.map(Path::to_path_buf),
        })
    }

    /// The URL of the bootstrap endpoint.
    pub fn bootstrap_url(&self) -> String {
        format!("{}/bootstrap", self.cp_address)
    }

    /// One attempt: `POST /bootstrap`; the bootstrap YAML.
    pub fn fetch(&self, req: &BootstrapRequest) -> Result<String, AttemptError> {
        let url = self.bootstrap_url();
        let body = serde_json::to_string(req)
            .map_err(|e| AttemptError::Fatal(anyhow::anyhow!("encoding the request: {e}")))?;
        // Not the body: it carries the token.
        tracing::debug!(%url, mesh = %req.mesh, name = %req.name, "requesting bootstrap");
        let mut resp = self
            .agent
            .post(&url)
            .header("Content-Type", "application/json")
            .header("Accept", "application/x-yaml")
            .send(body.as_str())
            .map_err(|e| self.transport_error("bootstrap request", &url, e))?;
        let status = resp.status().as_u16();
        let text = resp
            .body_mut()
            .read_to_string()
            .map_err(|e| self.transport_error("reading the bootstrap", &url, e))?;
        if (200..300).contains(&status) {
            if text.trim().is_empty() {
                return Err(AttemptError::Retry(format!(
                    "bootstrap request to {url} answered HTTP {status} with an empty body"
                )));
            }
            return Ok(text);
        }
        let mut err = KumaError::from_response("bootstrap request", status, &text);
        err.with_resource = !req.dataplane_resource.is_empty();
        if status >= 500 {
            Err(AttemptError::Retry(err.to_string()))
        } else {
            Err(AttemptError::Fatal(err.into()))
        }
    }
}

/// `--cp-address` without a trailing `/`; it must be an `https://` URL
/// with a host and no path. `http://` is refused: kuma-dp sends its token
/// over TLS only.
pub fn check_address(cp_address: &str) -> anyhow::Result<String> {
    let cp_address = cp_address.trim().trim_end_matches('/').to_string();
    if let Some(rest) = cp_address.strip_prefix("http://") {
        anyhow::bail!(
            "--cp-address {cp_address}: kuma-dp reaches the control plane over TLS only, so that \
             its dataplane token is never sent in cleartext; give the bootstrap server's https \
             address instead, e.g. https://{}:5682",
            rest.split([':', '/']).next().unwrap_or("HOST")
        );
    }
    let Some(authority) = cp_address.strip_prefix("https://") else {
        anyhow::bail!(
            "--cp-address {cp_address:?} is not an https:// URL; expected the bootstrap server's \
             address, for example https://127.0.0.1:5682"
        );
    };
    if authority.is_empty() || authority.contains(['/', '?', '#', '@']) {
        anyhow::bail!(
            "--cp-address {cp_address:?} must be https://HOST[:PORT] with no path, \
             for example https://127.0.0.1:5682"
        );
    }
    Ok(cp_address)
}

/// The CA certificates of `--ca-cert-file`; a file that cannot be read or
/// holds no PEM certificate is an error naming it.
pub fn read_ca_file(path: &Path) -> anyhow::Result<Vec<ureq::tls::Certificate<'static>>> {
    let pem = std::fs::read(path).map_err(|e| {
        anyhow::anyhow!(
            "cannot read --ca-cert-file {} (KUMA_CONTROL_PLANE_CA_CERT_FILE): {e}",
            path.display()
        )
    })?;
    let mut certs = Vec::new();
    for item in ureq::tls::parse_pem(&pem) {
        match item {
            Ok(ureq::tls::PemItem::Certificate(c)) => certs.push(c),
            Ok(_) => {}
            Err(e) => anyhow::bail!(
                "--ca-cert-file {} (KUMA_CONTROL_PLANE_CA_CERT_FILE) is not valid PEM: {e}",
                path.display()
            ),
        }
    }
    if certs.is_empty() {
        anyhow::bail!(
            "--ca-cert-file {} (KUMA_CONTROL_PLANE_CA_CERT_FILE) holds no PEM certificate; \
             it must hold the control plane's CA certificate (GET /control-plane/ca-cert on its \
             admin server, or the CA of general.tlsCertFile)",
            path.display()
        );
    }
    Ok(certs)
}

/// How the retry loop ended without an error.
#[derive(Debug)]
pub enum Fetched {
    /// The bootstrap YAML.
    Bootstrap(String),
    /// A signal arrived first.
    Interrupted,
}

/// Runs attempts until one succeeds, one fails for good, or `interrupt`
/// completes.
pub async fn fetch_with_retries(
    client: &Client,
    req: &BootstrapRequest,
    interrupt: impl Future<Output = ()>,
) -> anyhow::Result<Fetched> {
    tokio::pin!(interrupt);
    let mut retry = 0u32;
    loop {
        let (c, r) = (client.clone(), req.clone());
        let attempt = tokio::task::spawn_blocking(move || c.fetch(&r));
        let result = tokio::select! {
            () = &mut interrupt => return Ok(Fetched::Interrupted),
            res = attempt => res?,
        };
        match result {
            Ok(yaml) => return Ok(Fetched::Bootstrap(yaml)),
            Err(AttemptError::Fatal(e)) => return Err(e),
            Err(AttemptError::Retry(reason)) => {
                let delay = backoff_delay(retry);
                retry = retry.saturating_add(1);
                tracing::warn!(
                    retry,
                    delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                    "control plane not ready, retrying: {reason}"
                );
                tokio::select! {
                    () = &mut interrupt => return Ok(Fetched::Interrupted),
                    () = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_200ms_and_caps_at_5s() {
        let ms: Vec<u128> = (0..8).map(|i| backoff_delay(i).as_millis()).collect();
        assert_eq!(ms, vec![200, 400, 800, 1600, 3200, 5000, 5000, 5000]);
        assert_eq!(backoff_delay(40), BACKOFF_CAP);
        assert_eq!(backoff_delay(u32::MAX), BACKOFF_CAP);
    }

    fn request() -> BootstrapRequest {
        BootstrapRequest {
            mesh: "default".into(),
            name: "web-1".into(),
            admin_port: 30001,
            dataplane_token: "a.b.c".into(),
            dataplane_token_path: String::new(),
            dataplane_resource: String::new(),
            delta_xds: false,
            version: current_version(),
        }
    }

    #[test]
    fn request_json_has_the_contract_fields() {
        let req = BootstrapRequest {
            mesh: "default".into(),
            name: "web-1".into(),
            admin_port: 30001,
            dataplane_token: "a.b.c".into(),
            dataplane_token_path: String::new(),
            dataplane_resource: String::new(),
            delta_xds: false,
            version: current_version(),
        };
        let v: serde_json::Value = serde_json::to_value(&req).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "mesh": "default",
                "name": "web-1",
                "adminPort": 30001,
                "dataplaneToken": "a.b.c",
                "dataplaneTokenPath": "",
                "dataplaneResource": "",
                "deltaXds": false,
                "version": {"kumaDp": {"version": env!("CARGO_PKG_VERSION")}}
            })
        );
        assert!(!format!("{req:?}").contains("a.b.c"));
    }

    #[test]
    fn kuma_error_is_rendered_with_causes() {
        let body = r#"{"title":"Could not bootstrap","details":"Resource not valid","causes":[{"field":"networking.address","message":"must be set"},{"field":"","message":"general"}]}"#;
        let e = KumaError::from_response("bootstrap request", 422, body);
        assert_eq!(
            e.to_string(),
            "the control plane rejected the bootstrap request (HTTP 422): Could not bootstrap\n\
             Resource not valid\n  * networking.address: must be set\n  * general"
        );
    }

    #[test]
    fn not_found_without_resource_has_a_hint() {
        let body = r#"{"title":"Not found","details":"Dataplane default/web-1 not found"}"#;
        let mut e = KumaError::from_response("bootstrap request", 404, body);
        let s = e.to_string();
        assert!(s.contains("Dataplane default/web-1 not found"), "{s}");
        assert!(s.contains("hint: without --dataplane"), "{s}");
        e.with_resource = true;
        assert!(!e.to_string().contains("hint"));
    }

    #[test]
    fn non_json_error_bodies_become_the_title() {
        let e = KumaError::from_response("bootstrap request", 400, "plain text\n");
        assert_eq!(
            e.to_string(),
            "the control plane rejected the bootstrap request (HTTP 400): plain text"
        );
        let e = KumaError::from_response("bootstrap request", 400, "");
        assert!(e.to_string().ends_with("empty response"));
        let long = "é".repeat(2000);
        let e = KumaError::from_response("bootstrap request", 400, &long);
        assert!(e.body.title.ends_with("..."));
        assert!(e.body.title.len() <= MAX_BODY_IN_ERROR + 3);
        let e = KumaError::from_response("bootstrap request", 400, "{}");
        assert_eq!(e.body.title, "{}");
    }

    #[test]
    fn addresses_must_be_https_without_a_path() {
        let err = check_address("http://cp:5681").unwrap_err().to_string();
        assert!(err.contains("over TLS only"), "{err}");
        assert!(err.contains("https://cp:5682"), "{err}");
        assert!(check_address("cp:5682").is_err());
        assert!(check_address("https://").is_err());
        assert!(check_address("https://cp:5682/catalog").is_err());
        assert!(check_address("https://user@cp:5682").is_err());
        assert_eq!(
            check_address("https://cp:5682/").unwrap(),
            "https://cp:5682"
        );
        assert!(Client::new("http://cp:5681", None).is_err());
    }

    #[test]
    fn ca_files_must_hold_a_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let err = read_ca_file(&missing).unwrap_err().to_string();
        assert!(
            err.contains("--ca-cert-file") && err.contains("missing.pem"),
            "{err}"
        );
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let err = read_ca_file(&empty).unwrap_err().to_string();
        assert!(
            err.contains("holds no PEM certificate") && err.contains("empty.pem"),
            "{err}"
        );
        let err = Client::new("https://127.0.0.1:5682", Some(&empty))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("empty.pem"), "{err}");
    }

    #[test]
    fn unreachable_control_plane_is_retryable() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        drop(l);
        let c = Client::new(&format!("https://127.0.0.1:{port}"), None).unwrap();
        match c.fetch(&request()) {
            Err(AttemptError::Retry(reason)) => assert!(reason.contains("bootstrap"), "{reason}"),
            other => panic!("expected a retryable error, got {other:?}"),
        }
    }
}

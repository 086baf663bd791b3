//! Fetching the Envoy bootstrap from the control plane.
//!
//! `GET {cp}/catalog` names the bootstrap server; `POST {bootstrap}/bootstrap`
//! returns the Envoy v3 bootstrap as YAML. While the control plane is
//! unreachable or answers 5xx, attempts are retried with exponential backoff
//! (200 ms doubling up to 5 s) until they succeed or a signal arrives. A 4xx
//! answer is final: its Kuma error body is rendered and kuma-dp exits 1.

pub use kuma_core::wire::BootstrapRequest;
use kuma_core::wire::ErrorBody;
use serde::Deserialize;
use std::fmt;
use std::future::Future;
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

#[derive(Debug, Deserialize)]
struct Catalog {
    apis: CatalogApis,
}

#[derive(Debug, Deserialize)]
struct CatalogApis {
    bootstrap: CatalogUrl,
}

#[derive(Debug, Deserialize)]
struct CatalogUrl {
    url: String,
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

/// Blocking HTTP client for the catalog and bootstrap endpoints.
#[derive(Clone)]
pub struct Client {
    agent: ureq::Agent,
    cp_address: String,
}

fn transport_error(what: &str, url: &str, err: ureq::Error) -> AttemptError {
    match err {
        ureq::Error::BadUri(_)
        | ureq::Error::Http(_)
        | ureq::Error::InvalidProxyUrl
        | ureq::Error::BodyExceedsLimit(_)
        | ureq::Error::Tls(_) => {
            AttemptError::Fatal(anyhow::anyhow!("{what} to {url} failed: {err}"))
        }
        other => AttemptError::Retry(format!("{what} to {url} failed: {other}")),
    }
}

impl Client {
    /// A client for the control plane at `cp_address` (`http://host:port`).
    pub fn new(cp_address: &str) -> anyhow::Result<Self> {
        let cp_address = cp_address.trim().trim_end_matches('/').to_string();
        if cp_address.starts_with("https://") {
            anyhow::bail!(
                "--cp-address {cp_address}: https is not supported by this kuma-dp; \
                 use the control plane's plain HTTP API address (http://HOST:5681)"
            );
        }
        if !cp_address.starts_with("http://") || cp_address.len() <= "http://".len() {
            anyhow::bail!(
                "--cp-address {cp_address:?} is not an http:// URL; \
                 expected for example http://127.0.0.1:5681"
            );
        }
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .proxy(None)
            .timeout_connect(Some(Duration::from_secs(3)))
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .into();
        Ok(Self { agent, cp_address })
    }

    /// The URL of the bootstrap endpoint, from the catalog.
    pub fn bootstrap_url(&self) -> Result<String, AttemptError> {
        let url = format!("{}/catalog", self.cp_address);
        let mut resp = self
            .agent
            .get(&url)
            .call()
            .map_err(|e| transport_error("catalog request", &url, e))?;
        let status = resp.status().as_u16();
        let body = resp
            .body_mut()
            .read_to_string()
            .map_err(|e| transport_error("reading the catalog", &url, e))?;
        if status >= 500 {
            return Err(AttemptError::Retry(format!(
                "catalog request to {url} answered HTTP {status}"
            )));
        }
        if !(200..300).contains(&status) {
            let mut err = KumaError::from_response("catalog request", status, &body);
            err.body.title = format!(
                "{} (is {} Kuma's HTTP API?)",
                err.body.title, self.cp_address
            );
            return Err(AttemptError::Fatal(err.into()));
        }
        let catalog: Catalog = serde_json::from_str(&body).map_err(|e| {
            AttemptError::Fatal(anyhow::anyhow!(
                "the catalog at {url} has no usable apis.bootstrap.url: {e}"
            ))
        })?;
        let base = catalog.apis.bootstrap.url.trim().trim_end_matches('/');
        if base.is_empty() {
            return Err(AttemptError::Fatal(anyhow::anyhow!(
                "the catalog at {url} has an empty apis.bootstrap.url"
            )));
        }
        Ok(format!("{base}/bootstrap"))
    }

    /// One attempt: catalog, then `POST /bootstrap`; the bootstrap YAML.
    pub fn fetch(&self, req: &BootstrapRequest) -> Result<String, AttemptError> {
        let url = self.bootstrap_url()?;
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
            .map_err(|e| transport_error("bootstrap request", &url, e))?;
        let status = resp.status().as_u16();
        let text = resp
            .body_mut()
            .read_to_string()
            .map_err(|e| transport_error("reading the bootstrap", &url, e))?;
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
    fn client_rejects_bad_addresses() {
        assert!(Client::new("https://cp:5681").is_err());
        assert!(Client::new("cp:5681").is_err());
        assert!(Client::new("http://").is_err());
        assert_eq!(
            Client::new("http://cp:5681/").unwrap().cp_address,
            "http://cp:5681"
        );
    }

    #[test]
    fn unreachable_control_plane_is_retryable() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        drop(l);
        let c = Client::new(&format!("http://127.0.0.1:{port}")).unwrap();
        match c.bootstrap_url() {
            Err(AttemptError::Retry(reason)) => assert!(reason.contains("catalog"), "{reason}"),
            other => panic!("expected a retryable error, got {other:?}"),
        }
    }
}

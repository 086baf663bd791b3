//! HTTP helpers: calls that panic on transport errors (`http_*`), calls
//! that return them (`try_http_*`, for polling), and raw requests through a
//! proxy's listener ([`request`], [`get`], [`send`]).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use crate::process::EXIT_LIMIT;

/// The agent of the `http_*` calls: answers of any status, at most
/// [`EXIT_LIMIT`] per call.
fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(EXIT_LIMIT))
        .build()
        .into()
}

fn finish(resp: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> (u16, String) {
    let mut resp = resp.expect("HTTP request");
    let status = resp.status().as_u16();
    let body = resp
        .body_mut()
        .with_config()
        .limit(64 * 1024 * 1024)
        .read_to_string()
        .expect("read body");
    (status, body)
}

/// `GET url` -> (status, body); `(0, "")` when nothing listens (yet, or
/// any more). Panics on other errors.
pub fn http_get(url: &str) -> (u16, String) {
    match agent().get(url).call() {
        Ok(r) => finish(Ok(r)),
        // Not listening yet, or already gone.
        Err(ureq::Error::Io(_)) | Err(ureq::Error::ConnectionFailed) => (0, String::new()),
        Err(e) => panic!("GET {url}: {e}"),
    }
}

/// `PUT url` with `body` of `content_type` -> (status, body).
pub fn http_put(url: &str, content_type: &str, body: &[u8]) -> (u16, String) {
    finish(
        agent()
            .put(url)
            .header("content-type", content_type)
            .send(body),
    )
}

/// `POST url` with `body` of `content_type` -> (status, body).
pub fn http_post(url: &str, content_type: &str, body: &[u8]) -> (u16, String) {
    finish(
        agent()
            .post(url)
            .header("content-type", content_type)
            .send(body),
    )
}

/// `DELETE url` -> (status, body).
pub fn http_delete(url: &str) -> (u16, String) {
    finish(agent().delete(url).call())
}

/// Parses a JSON body, panicking with the body if it is not JSON.
pub fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

/// The `field`s of an error body's `causes`.
pub fn cause_fields(body: &str) -> Vec<String> {
    json(body)["causes"]
        .as_array()
        .map(|c| {
            c.iter()
                .map(|v| v["field"].as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// The agent of the `try_http_*` calls: answers of any status, at most 5 s
/// per call.
fn try_agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(5)))
        .http_status_as_error(false)
        .build()
        .into()
}

fn status_and_body(
    resp: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
) -> Result<(u16, String), String> {
    let mut resp = resp.map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let body = resp
        .body_mut()
        .read_to_string()
        .map_err(|e| e.to_string())?;
    Ok((status, body))
}

/// `GET url` -> (status, body), or the transport error.
pub fn try_http_get(url: &str) -> Result<(u16, String), String> {
    status_and_body(try_agent().get(url).call())
}

/// `DELETE url` -> (status, body), or the transport error.
pub fn try_http_delete(url: &str) -> Result<(u16, String), String> {
    status_and_body(try_agent().delete(url).call())
}

/// `POST url` with a JSON body -> (status, body), or the transport error.
pub fn try_http_post_json(url: &str, json: &str) -> Result<(u16, String), String> {
    status_and_body(
        try_agent()
            .post(url)
            .header("Content-Type", "application/json")
            .send(json),
    )
}

/// `POST url` with a JSON body over HTTPS, trusting only the CA
/// certificates (PEM) in `ca_file` -> (status, body), or the transport
/// error (a certificate the CA does not vouch for is one).
pub fn try_https_post_json(
    url: &str,
    ca_file: &std::path::Path,
    json: &str,
) -> Result<(u16, String), String> {
    let pem = std::fs::read(ca_file).map_err(|e| format!("{}: {e}", ca_file.display()))?;
    let roots: Vec<_> = ureq::tls::parse_pem(&pem)
        .filter_map(|item| match item {
            Ok(ureq::tls::PemItem::Certificate(c)) => Some(c),
            _ => None,
        })
        .collect();
    let tls = ureq::tls::TlsConfig::builder()
        .provider(ureq::tls::TlsProvider::Rustls)
        .unversioned_rustls_crypto_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .root_certs(ureq::tls::RootCerts::new_with_certs(&roots))
        .build();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(5)))
        .http_status_as_error(false)
        .tls_config(tls)
        .build()
        .into();
    status_and_body(
        agent
            .post(url)
            .header("Content-Type", "application/json")
            .send(json),
    )
}

/// `PUT url` with a JSON body -> (status, body), or the transport error.
pub fn try_http_put_json(url: &str, json: &str) -> Result<(u16, String), String> {
    status_and_body(
        try_agent()
            .put(url)
            .header("Content-Type", "application/json")
            .send(json),
    )
}

/// A raw response: status, headers (names lower-cased), body.
#[derive(Debug, Clone)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The headers in order, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: String,
}

impl Response {
    /// The first header named `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// One `GET /` on its own connection (`Connection: close`, so every request
/// sees the proxy's current listener) -> (status, body).
pub fn request(port: u16) -> Result<(u16, String), String> {
    get(port).map(|r| (r.status, r.body))
}

/// One `GET /` on its own connection, as [`request`], with the headers.
pub fn get(port: u16) -> Result<Response, String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut s =
        TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    s.write_all(b"GET / HTTP/1.1\r\nHost: backend\r\nConnection: close\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("no complete response: {text:?}"))?;
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line: {head:?}"))?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Ok(Response {
        status,
        headers,
        body: body.to_string(),
    })
}

/// What a batch of requests got back.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    /// 200 responses per body (the instance that answered).
    pub ok: BTreeMap<String, usize>,
    /// Everything else: transport errors and non-200 responses.
    pub errors: Vec<String>,
}

impl Tally {
    /// Counts one response (or error).
    pub fn add(&mut self, r: Result<(u16, String), String>) {
        match r {
            Ok((200, body)) => *self.ok.entry(body).or_default() += 1,
            Ok((status, body)) => self.errors.push(format!("{status}: {}", body.trim())),
            Err(e) => self.errors.push(e),
        }
    }

    /// The 200 responses `instance` gave.
    pub fn count(&self, instance: &str) -> usize {
        self.ok.get(instance).copied().unwrap_or(0)
    }

    /// All 200 responses.
    pub fn total_ok(&self) -> usize {
        self.ok.values().sum()
    }
}

/// Sends `n` requests to the outbound listener on `port`, one at a time.
pub fn send(port: u16, n: usize) -> Tally {
    let mut t = Tally::default();
    for _ in 0..n {
        t.add(request(port));
    }
    t
}

/// A TLS connection to `127.0.0.1:port` that trusts only the CA
/// certificates (PEM) in `ca_file` and names the server `localhost` (the
/// control plane's certificate covers it): for tests that speak raw
/// HTTP/1.1 to a TLS port. The handshake is done when this returns.
pub fn tls_connect(
    port: u16,
    ca_file: &std::path::Path,
) -> Result<rustls::StreamOwned<rustls::ClientConnection, TcpStream>, String> {
    let pem = std::fs::read(ca_file).map_err(|e| format!("{}: {e}", ca_file.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    for item in ureq::tls::parse_pem(&pem) {
        if let Ok(ureq::tls::PemItem::Certificate(c)) = item {
            roots
                .add(rustls::pki_types::CertificateDer::from(c.der().to_vec()))
                .map_err(|e| format!("a CA certificate in {}: {e}", ca_file.display()))?;
        }
    }
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("a valid name");
    let conn = rustls::ClientConnection::new(std::sync::Arc::new(config), name)
        .map_err(|e| e.to_string())?;
    let tcp = TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect: {e}"))?;
    tcp.set_nodelay(true).ok();
    let mut stream = rustls::StreamOwned::new(conn, tcp);
    while stream.conn.is_handshaking() {
        stream
            .conn
            .complete_io(&mut stream.sock)
            .map_err(|e| format!("TLS handshake: {e}"))?;
    }
    Ok(stream)
}

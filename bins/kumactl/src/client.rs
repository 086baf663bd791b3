//! A small blocking client for kuma-cp's HTTP API (port 5681).
//!
//! It speaks the API's JSON: resources in universal form, lists as
//! `{"total", "items", "next"}` (pages are followed through `next` until it is
//! `null`), and errors as `{"title", "details", "causes"}`, which become a typed
//! [`ApiError`] so callers can print them the way Kuma's kumactl does.

use kuma_core::wire::ErrorBody;
use serde::Deserialize;
use serde_json::Value;
use std::fmt;
use std::time::Duration;

/// How long one request may take, connect to last byte.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Upper bound on pages followed for one list, so that a server handing out
/// the same `next` forever cannot hang the CLI.
const MAX_PAGES: usize = 100_000;

/// Why a call to the API failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// Nothing answered at the address (refused, DNS, timeout...).
    #[error("could not reach the Control Plane API Server at {url}: {message}")]
    Connect {
        /// The URL requested.
        url: String,
        /// What the transport reported.
        message: String,
    },
    /// The server answered with an error in the API's error format.
    #[error("{0}")]
    Api(ApiError),
    /// The server answered something that is not what the API promises.
    #[error("unexpected response from {url} (HTTP {status}): {message}")]
    Unexpected {
        /// The URL requested.
        url: String,
        /// The HTTP status (0 when the status itself was fine).
        status: u16,
        /// What was wrong with it.
        message: String,
    },
}

/// An error answered by the API: its status and Kuma's error body
/// `{"title", "details", "causes"}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status it came with.
    pub status: u16,
    /// The body: title, details and field-level causes.
    pub body: ErrorBody,
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let body = &self.body;
        match (body.title.is_empty(), body.details.is_empty()) {
            (false, false) => write!(f, "{} ({})", body.title, body.details)?,
            (false, true) => f.write_str(&body.title)?,
            (true, false) => f.write_str(&body.details)?,
            (true, true) => write!(f, "request failed with HTTP {}", self.status)?,
        }
        for cause in &body.causes {
            if cause.field.is_empty() {
                write!(f, "\n* {}", cause.message)?;
            } else {
                write!(f, "\n* {}: {}", cause.field, cause.message)?;
            }
        }
        Ok(())
    }
}

/// What a PUT did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    /// 201: the resource did not exist.
    Created,
    /// 200: an existing resource was replaced.
    Updated,
}

/// A client bound to one control plane's API base URL.
pub struct Client {
    base: String,
    agent: ureq::Agent,
    /// `Authorization` header value sent with every request, if any.
    authorization: Option<String>,
}

impl Client {
    /// A client for the API at `base_url`, e.g. `http://localhost:5681`.
    pub fn new(base_url: &str) -> Self {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(REQUEST_TIMEOUT))
            .build()
            .new_agent();
        Self {
            base: base_url.trim_end_matches('/').to_string(),
            agent,
            authorization: None,
        }
    }

    /// Sends `token` (a user token) as `Authorization: Bearer <token>`
    /// with every request; `None` sends nothing.
    pub fn with_token(mut self, token: Option<&str>) -> Self {
        self.authorization = token.map(|t| format!("Bearer {}", t.trim()));
        self
    }

    fn auth<B>(&self, request: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        match &self.authorization {
            Some(value) => request.header("Authorization", value),
            None => request,
        }
    }

    /// `GET /`: hostname, tagline and version of the control plane.
    pub fn index(&self) -> Result<Value, ClientError> {
        self.get("/")
    }

    /// `GET` a path (starting with `/`) and decode the JSON answer.
    pub fn get(&self, path: &str) -> Result<Value, ClientError> {
        let url = self.url(path);
        let (status, body) = self.send(&url, self.auth(self.agent.get(&url)).call())?;
        expect_ok(&url, status, &body)?;
        parse_json(&url, status, &body)
    }

    /// `GET` a list path and follow `next` until every item is read.
    pub fn list(&self, path: &str) -> Result<Vec<Value>, ClientError> {
        let mut items = Vec::new();
        let mut url = self.url(path);
        for _ in 0..MAX_PAGES {
            let (status, body) = self.send(&url, self.auth(self.agent.get(&url)).call())?;
            expect_ok(&url, status, &body)?;
            let page: Page = serde_json::from_str(&body).map_err(|e| ClientError::Unexpected {
                url: url.clone(),
                status: 0,
                message: format!("not a list page: {e}"),
            })?;
            items.extend(page.items);
            match page.next.filter(|n| !n.is_empty()) {
                Some(next) => url = self.rebase(&next),
                None => return Ok(items),
            }
        }
        Err(ClientError::Unexpected {
            url,
            status: 0,
            message: format!("gave more than {MAX_PAGES} pages"),
        })
    }

    /// `PUT` a resource (JSON body) to a path.
    pub fn put(&self, path: &str, body: &Value) -> Result<PutOutcome, ClientError> {
        let url = self.url(path);
        let request = self
            .auth(self.agent.put(&url))
            .header("Content-Type", "application/json")
            .send(body.to_string());
        let (status, text) = self.send(&url, request)?;
        expect_ok(&url, status, &text)?;
        Ok(if status == 201 {
            PutOutcome::Created
        } else {
            PutOutcome::Updated
        })
    }

    /// `POST` a JSON body to a path; the answer's text (e.g. a token).
    pub fn post_text(&self, path: &str, body: &Value) -> Result<String, ClientError> {
        let url = self.url(path);
        let request = self
            .auth(self.agent.post(&url))
            .header("Content-Type", "application/json")
            .send(body.to_string());
        let (status, text) = self.send(&url, request)?;
        expect_ok(&url, status, &text)?;
        Ok(text)
    }

    /// `DELETE` a path.
    pub fn delete(&self, path: &str) -> Result<(), ClientError> {
        let url = self.url(path);
        let (status, body) = self.send(&url, self.auth(self.agent.delete(&url)).call())?;
        expect_ok(&url, status, &body)
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Points a `next` link at the address this client uses: the server may
    /// know itself under another host name than the one the user configured.
    fn rebase(&self, next: &str) -> String {
        let rest = match next.split_once("://") {
            Some((_, after_scheme)) => after_scheme.find('/').map_or("/", |i| &after_scheme[i..]),
            None => next,
        };
        format!("{}{}", origin(&self.base), rest)
    }

    fn send(
        &self,
        url: &str,
        result: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<(u16, String), ClientError> {
        let mut response = result.map_err(|e| ClientError::Connect {
            url: url.to_string(),
            message: e.to_string(),
        })?;
        let status = response.status().as_u16();
        let body = response
            .body_mut()
            .read_to_string()
            .map_err(|e| ClientError::Unexpected {
                url: url.to_string(),
                status,
                message: format!("could not read the body: {e}"),
            })?;
        Ok((status, body))
    }
}

/// One page of a list answer.
#[derive(Deserialize)]
struct Page {
    #[serde(default)]
    items: Vec<Value>,
    #[serde(default)]
    next: Option<String>,
}

/// `scheme://authority` of a URL (the whole string if it has no path).
fn origin(url: &str) -> &str {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url;
    };
    match rest.find('/') {
        Some(i) => &url[..scheme.len() + 3 + i],
        None => url,
    }
}

fn expect_ok(url: &str, status: u16, body: &str) -> Result<(), ClientError> {
    if (200..300).contains(&status) {
        return Ok(());
    }
    match serde_json::from_str::<ErrorBody>(body) {
        Ok(e) if !e.title.is_empty() || !e.details.is_empty() => {
            Err(ClientError::Api(ApiError { status, body: e }))
        }
        _ => Err(ClientError::Unexpected {
            url: url.to_string(),
            status,
            message: if body.trim().is_empty() {
                "empty body".to_string()
            } else {
                body.trim().to_string()
            },
        }),
    }
}

fn parse_json(url: &str, status: u16, body: &str) -> Result<Value, ClientError> {
    serde_json::from_str(body).map_err(|e| ClientError::Unexpected {
        url: url.to_string(),
        status,
        message: format!("not JSON: {e}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_errors_print_title_details_and_causes() {
        let body = r#"{"title":"Could not process resource","details":"Resource is not valid",
            "causes":[{"field":"networking.inbound[0].port","message":"port 70000 is out of range"}]}"#;
        let err = expect_ok("http://x/", 400, body).unwrap_err();
        assert!(matches!(&err, ClientError::Api(e) if e.status == 400));
        assert_eq!(
            err.to_string(),
            "Could not process resource (Resource is not valid)\n\
             * networking.inbound[0].port: port 70000 is out of range"
        );
    }

    #[test]
    fn non_api_error_bodies_are_unexpected() {
        let err = expect_ok("http://x/a", 404, "").unwrap_err();
        assert!(matches!(err, ClientError::Unexpected { status: 404, .. }));
        assert!(err.to_string().contains("http://x/a"), "{err}");
    }

    #[test]
    fn next_links_are_rebased_on_the_configured_origin() {
        let c = Client::new("http://127.0.0.1:5681/");
        assert_eq!(
            c.rebase("http://localhost:5681/meshes?offset=abc&size=2"),
            "http://127.0.0.1:5681/meshes?offset=abc&size=2"
        );
        assert_eq!(
            c.rebase("/meshes?offset=1"),
            "http://127.0.0.1:5681/meshes?offset=1"
        );
        assert_eq!(origin("http://h:1/prefix"), "http://h:1");
        assert_eq!(origin("http://h:1"), "http://h:1");
    }

    #[test]
    fn unreachable_servers_name_the_url() {
        // Port 1 on loopback is essentially never listening.
        let c = Client::new("http://127.0.0.1:1");
        let err = c.index().unwrap_err();
        assert!(matches!(err, ClientError::Connect { .. }), "{err}");
        assert!(err.to_string().contains("http://127.0.0.1:1/"), "{err}");
    }
}

//! ACK bookkeeping of one resource type on one stream.
//!
//! Every xDS response carries a nonce; the client's next request of that
//! type echoes it in `response_nonce`, with `error_detail` when it rejected
//! the response. [`AckTracker`] remembers what was last sent (version and
//! nonce), what was last acknowledged and a rejection still standing, and
//! sorts each request into [`Reply`]: a first request, a stale one, an ACK
//! or a NACK. [`Nonces`] hands out a stream's nonces.

use std::sync::Arc;

/// The nonces of one stream: `1`, `2`, ..., shared by every type of the
/// stream so that a nonce names exactly one response.
#[derive(Debug, Default)]
pub struct Nonces {
    last: u64,
}

impl Nonces {
    /// The nonce of the next response.
    pub fn next_nonce(&mut self) -> String {
        self.last += 1;
        self.last.to_string()
    }
}

/// What a request says about the responses of its type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// No `response_nonce`: the client's first request of the type (or
    /// one that only changes its subscription).
    Initial,
    /// The nonce is not the last one sent: the request answers a response
    /// a later one replaced. The xDS protocol says not to answer it.
    Stale,
    /// The last response was accepted.
    Ack,
    /// The last response was rejected ([`AckTracker::nack`] has the
    /// version and Envoy's error).
    Nack,
}

/// The longest NACK error detail kept (in the tracker and in insights), in
/// bytes: a client's `error_detail` is bounded before it is stored.
pub const MAX_NACK_DETAIL: usize = 4096;

/// `detail` cut to at most [`MAX_NACK_DETAIL`] bytes (on a character
/// boundary), with ` [truncated]` appended when it was cut.
pub fn truncate_detail(detail: &str) -> std::borrow::Cow<'_, str> {
    if detail.len() <= MAX_NACK_DETAIL {
        return std::borrow::Cow::Borrowed(detail);
    }
    let mut end = MAX_NACK_DETAIL;
    while !detail.is_char_boundary(end) {
        end -= 1;
    }
    std::borrow::Cow::Owned(format!("{} [truncated]", &detail[..end]))
}

/// A rejection still standing: the version the client refused and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nack {
    /// The rejected version (the one sent with the echoed nonce).
    pub version: Arc<str>,
    /// The client's error message.
    pub error: String,
}

/// The last response sent.
#[derive(Debug)]
struct Sent {
    version: Arc<str>,
    nonce: String,
}

/// Per-type ACK state of one stream: the last version and nonce sent, the
/// last version acknowledged, and a pending NACK.
///
/// A NACKed version stays the last one sent, so a stream comparing the
/// version it would send with [`AckTracker::sent_version`] does not send the
/// rejected version again; the next different version is sent.
#[derive(Debug, Default)]
pub struct AckTracker {
    sent: Option<Sent>,
    acked: Option<Arc<str>>,
    /// Boxed: rare, and the tracker is kept per type of every stream.
    nack: Option<Box<Nack>>,
}

impl AckTracker {
    /// Sorts a request by its `response_nonce` and `error_detail` message,
    /// and records an ACK or a NACK.
    pub fn on_request(&mut self, response_nonce: &str, error: Option<&str>) -> Reply {
        if response_nonce.is_empty() {
            return Reply::Initial;
        }
        let Some(sent) = self
            .sent
            .as_ref()
            .filter(|s| s.nonce.as_str() == response_nonce)
        else {
            return Reply::Stale;
        };
        match error {
            Some(error) => {
                self.nack = Some(Box::new(Nack {
                    version: sent.version.clone(),
                    error: truncate_detail(error).into_owned(),
                }));
                Reply::Nack
            }
            None => {
                self.acked = Some(sent.version.clone());
                self.nack = None;
                Reply::Ack
            }
        }
    }

    /// Records a response of `version` sent with `nonce`.
    pub fn sent(&mut self, version: impl Into<Arc<str>>, nonce: String) {
        self.sent = Some(Sent {
            version: version.into(),
            nonce,
        });
    }

    /// The version of the last response sent.
    pub fn sent_version(&self) -> Option<&str> {
        self.sent.as_ref().map(|s| &*s.version)
    }

    /// Whether the last response sent has had no ACK or NACK yet.
    pub fn awaiting_reply(&self) -> bool {
        let Some(sent) = &self.sent else {
            return false;
        };
        self.acked.as_deref() != Some(&*sent.version)
            && self.nack.as_ref().is_none_or(|n| n.version != sent.version)
    }

    /// The nonce of the last response sent.
    pub fn nonce(&self) -> Option<&str> {
        self.sent.as_ref().map(|s| s.nonce.as_str())
    }

    /// The last version the client acknowledged.
    pub fn acked_version(&self) -> Option<&str> {
        self.acked.as_deref()
    }

    /// The rejection standing since the last NACK, until the next ACK.
    pub fn nack(&self) -> Option<&Nack> {
        self.nack.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nack_details_are_bounded() {
        assert_eq!(truncate_detail("short"), "short");
        // Multi-byte characters across the limit: cut on a boundary.
        let long = "é".repeat(MAX_NACK_DETAIL);
        let cut = truncate_detail(&long);
        assert!(
            cut.len() <= MAX_NACK_DETAIL + " [truncated]".len(),
            "{}",
            cut.len()
        );
        assert!(cut.ends_with(" [truncated]"));
        let mut acks = AckTracker::default();
        acks.sent("v1", "n1".into());
        assert_eq!(acks.on_request("n1", Some(&long)), Reply::Nack);
        assert!(acks.nack().unwrap().error.len() <= MAX_NACK_DETAIL + 12);
    }

    #[test]
    fn requests_are_sorted_by_their_nonce() {
        let mut nonces = Nonces::default();
        let mut t = AckTracker::default();
        assert_eq!(t.on_request("", None), Reply::Initial);
        assert_eq!(t.on_request("1", None), Reply::Stale, "nothing sent yet");
        t.sent("v1", nonces.next_nonce());
        assert_eq!((t.sent_version(), t.nonce()), (Some("v1"), Some("1")));
        assert_eq!(t.on_request("0", None), Reply::Stale);
        assert_eq!(t.on_request("1", Some("bad")), Reply::Nack);
        let nack = t.nack().unwrap();
        assert_eq!((&*nack.version, nack.error.as_str()), ("v1", "bad"));
        assert_eq!(t.acked_version(), None);
        assert_eq!(t.sent_version(), Some("v1"), "a NACKed version stays sent");
        t.sent("v2", nonces.next_nonce());
        assert_eq!(t.on_request("1", None), Reply::Stale);
        assert_eq!(t.on_request("2", None), Reply::Ack);
        assert_eq!(t.acked_version(), Some("v2"));
        assert!(t.nack().is_none(), "an ACK resolves the NACK");
    }
}

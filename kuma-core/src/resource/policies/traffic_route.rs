//! The `TrafficRoute` resource type: where traffic from some services to a
//! service goes (weighted splits, load balancing, HTTP routes).
//!
//! Both forms Kuma has documented are accepted and written back as written:
//!
//! - the 1.0 form, `conf` as a list of weighted destinations:
//!   `conf: [{weight: 90, destination: {kuma.io/service: backend, version: v1}}]`;
//! - the later form, `conf` as an object with `split` or `destination`, an
//!   optional `loadBalancer` and optional L7 `http` routes.
//!
//! Destination tag values may be `*` (as in Kuma's default `route-all` route,
//! where `kuma.io/service: '*'` means "the service being called"); every
//! destination must name `kuma.io/service`.

use super::util::check_connection;
use crate::resource::{
    Policy, PolicyTargets, SERVICE_TAG, Selector, SelectorKeys, Tags, validate_tags,
};
use crate::validation::{FieldPath, Validator};
use serde::de::value::{MapAccessDeserializer, SeqAccessDeserializer};
use serde::de::{MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// Spec of a `TrafficRoute` resource.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TrafficRouteSpec {
    /// The clients the route applies to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<Selector>,
    /// The services the route applies to (`kuma.io/service` only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub destinations: Vec<Selector>,
    /// Where the traffic goes; required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conf: Option<TrafficRouteConf>,
}

/// The `conf` of a `TrafficRoute`, in either of Kuma's forms.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum TrafficRouteConf {
    /// Kuma 1.0: a bare list of weighted destinations.
    Split(Vec<Split>),
    /// Later Kuma: `split`/`destination`, `loadBalancer`, `http`.
    Route(RouteConf),
}

impl<'de> Deserialize<'de> for TrafficRouteConf {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ConfVisitor;

        impl<'de> Visitor<'de> for ConfVisitor {
            type Value = TrafficRouteConf;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "a list of {weight, destination} entries, or an object with \
                     split/destination, loadBalancer and http",
                )
            }

            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
                Vec::<Split>::deserialize(SeqAccessDeserializer::new(seq))
                    .map(TrafficRouteConf::Split)
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                RouteConf::deserialize(MapAccessDeserializer::new(map)).map(TrafficRouteConf::Route)
            }
        }

        d.deserialize_any(ConfVisitor)
    }
}

/// One weighted destination of a split.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Split {
    /// Relative weight; required, all weights of a split must not be 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<u32>,
    /// Tags of the endpoints receiving this share; needs `kuma.io/service`.
    #[serde(default)]
    pub destination: Tags,
}

/// The object form of a `TrafficRoute` `conf`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RouteConf {
    /// Weighted destinations (exclusive with `destination`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub split: Vec<Split>,
    /// How endpoints are picked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancer: Option<LoadBalancer>,
    /// A single destination (exclusive with `split`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<Tags>,
    /// L7 routes, tried in order before the default split/destination.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub http: Vec<HttpRoute>,
}

/// A load balancer of a `TrafficRoute`: exactly one kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub enum LoadBalancer {
    /// `roundRobin: {}`.
    RoundRobin(NoOptions),
    /// `leastRequest: {choiceCount}`.
    LeastRequest(LeastRequest),
    /// `ringHash: {hashFunction, minRingSize, maxRingSize}`.
    RingHash(RingHash),
    /// `random: {}`.
    Random(NoOptions),
    /// `maglev: {}`.
    Maglev(NoOptions),
}

/// An empty options object (`{}`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoOptions {}

/// Options of the least-request load balancer.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LeastRequest {
    /// How many random endpoints to compare; at least 2 when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub choice_count: Option<u32>,
}

/// Options of the ring-hash load balancer.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RingHash {
    /// `XX_HASH` or `MURMUR_HASH_2`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash_function: Option<String>,
    /// Minimum ring size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_ring_size: Option<u64>,
    /// Maximum ring size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_ring_size: Option<u64>,
}

/// The hash functions a ring-hash load balancer may use.
pub const RING_HASH_FUNCTIONS: &[&str] = &["XX_HASH", "MURMUR_HASH_2"];

/// One L7 route of a `TrafficRoute`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpRoute {
    /// Which requests the route takes; required.
    #[serde(rename = "match", default, skip_serializing_if = "Option::is_none")]
    pub match_: Option<HttpMatch>,
    /// Changes made to matched requests and their responses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modify: Option<HttpModify>,
    /// Weighted destinations (exclusive with `destination`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub split: Vec<Split>,
    /// A single destination (exclusive with `split`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<Tags>,
}

/// The request match of an L7 route.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpMatch {
    /// The request method.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<StringMatcher>,
    /// The request path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<StringMatcher>,
    /// Request headers by name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<BTreeMap<String, StringMatcher>>,
}

/// How a string is matched: exactly one of `prefix`, `exact`, `regex`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub enum StringMatcher {
    /// Starts with the text (non-empty).
    Prefix(String),
    /// Equals the text.
    Exact(String),
    /// Matches the regular expression (non-empty).
    Regex(String),
}

/// Changes an L7 route makes.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpModify {
    /// Rewrites the path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathModify>,
    /// Rewrites the host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<HostModify>,
    /// Adds or removes request headers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_headers: Option<HeadersModify>,
    /// Adds or removes response headers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_headers: Option<HeadersModify>,
}

/// A path rewrite: exactly one of `rewritePrefix` or `regex`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub enum PathModify {
    /// Replaces the matched `match.path.prefix`.
    RewritePrefix(String),
    /// Regex substitution on the path.
    Regex(RegexReplace),
}

/// A host rewrite: exactly one of `value` or `fromPath`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub enum HostModify {
    /// A fixed host.
    Value(String),
    /// A host computed from the path by regex substitution.
    FromPath(RegexReplace),
}

/// A regex substitution.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RegexReplace {
    /// The regular expression.
    #[serde(default)]
    pub pattern: String,
    /// Its replacement.
    #[serde(default)]
    pub substitution: String,
}

/// Header additions and removals.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HeadersModify {
    /// Headers to add.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub add: Vec<HeaderAdd>,
    /// Headers to remove.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove: Vec<HeaderRemove>,
}

/// A header to add.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HeaderAdd {
    /// Header name.
    #[serde(default)]
    pub name: String,
    /// Header value.
    #[serde(default)]
    pub value: String,
    /// Append to an existing value instead of replacing it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub append: Option<bool>,
}

/// A header to remove.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HeaderRemove {
    /// Header name.
    #[serde(default)]
    pub name: String,
}

impl TrafficRouteSpec {
    pub(crate) fn check(&self, path: &FieldPath, v: &mut Validator) {
        check_connection(
            path,
            &self.sources,
            SelectorKeys::Any,
            &self.destinations,
            SelectorKeys::ServiceOnly,
            v,
        );
        let cp = path.field("conf");
        match &self.conf {
            None => v.violation(&cp, "must be set: a split or a destination"),
            Some(TrafficRouteConf::Split(split)) => check_split(&cp, split, v),
            Some(TrafficRouteConf::Route(conf)) => conf.check(&cp, v),
        }
    }
}

impl RouteConf {
    fn check(&self, path: &FieldPath, v: &mut Validator) {
        check_split_or_destination(path, &self.split, self.destination.as_ref(), v);
        if let Some(lb) = &self.load_balancer {
            lb.check(&path.field("loadBalancer"), v);
        }
        for (i, route) in self.http.iter().enumerate() {
            route.check(&path.field("http").index(i), v);
        }
    }
}

impl LoadBalancer {
    fn check(&self, path: &FieldPath, v: &mut Validator) {
        match self {
            LoadBalancer::LeastRequest(lr) => {
                if let Some(n) = lr.choice_count
                    && n < 2
                {
                    v.violation(
                        &path.field("leastRequest").field("choiceCount"),
                        format!("must be at least 2, got {n}"),
                    );
                }
            }
            LoadBalancer::RingHash(rh) => {
                let rp = path.field("ringHash");
                if let Some(f) = &rh.hash_function
                    && !RING_HASH_FUNCTIONS.contains(&f.as_str())
                {
                    v.violation(
                        &rp.field("hashFunction"),
                        format!(
                            "unknown hash function {f:?}: must be one of {}",
                            RING_HASH_FUNCTIONS.join(", ")
                        ),
                    );
                }
                if let (Some(min), Some(max)) = (rh.min_ring_size, rh.max_ring_size)
                    && min > max
                {
                    v.violation(
                        &rp.field("minRingSize"),
                        format!("must not exceed maxRingSize ({min} > {max})"),
                    );
                }
            }
            LoadBalancer::RoundRobin(_) | LoadBalancer::Random(_) | LoadBalancer::Maglev(_) => {}
        }
    }
}

impl HttpRoute {
    fn check(&self, path: &FieldPath, v: &mut Validator) {
        let mp = path.field("match");
        match &self.match_ {
            None => v.violation(
                &mp,
                "must be set with at least one of method, path or headers",
            ),
            Some(m) => m.check(&mp, v),
        }
        if let Some(modify) = &self.modify {
            let prefix_match = matches!(
                self.match_.as_ref().and_then(|m| m.path.as_ref()),
                Some(StringMatcher::Prefix(_))
            );
            modify.check(&path.field("modify"), prefix_match, v);
        }
        check_split_or_destination(path, &self.split, self.destination.as_ref(), v);
    }
}

impl HttpMatch {
    fn check(&self, path: &FieldPath, v: &mut Validator) {
        if self.method.is_none() && self.path.is_none() && self.headers.is_none() {
            v.violation(path, "must have at least one of method, path or headers");
        }
        if let Some(m) = &self.method {
            m.check(&path.field("method"), v);
        }
        if let Some(m) = &self.path {
            m.check(&path.field("path"), v);
        }
        if let Some(headers) = &self.headers {
            let hp = path.field("headers");
            if headers.is_empty() {
                v.violation(&hp, "must have at least one header when set");
            }
            for (name, m) in headers {
                let p = hp.key(name);
                if name.is_empty() {
                    v.violation(&p, "header name must not be empty");
                }
                m.check(&p, v);
            }
        }
    }
}

impl StringMatcher {
    fn check(&self, path: &FieldPath, v: &mut Validator) {
        match self {
            StringMatcher::Prefix(s) if s.is_empty() => {
                v.violation(&path.field("prefix"), "must not be empty")
            }
            StringMatcher::Regex(s) if s.is_empty() => {
                v.violation(&path.field("regex"), "must not be empty")
            }
            _ => {}
        }
    }
}

impl HttpModify {
    fn check(&self, path: &FieldPath, prefix_match: bool, v: &mut Validator) {
        match &self.path {
            Some(PathModify::RewritePrefix(p)) => {
                let pp = path.field("path").field("rewritePrefix");
                if p.is_empty() {
                    v.violation(&pp, "must not be empty");
                } else if !prefix_match {
                    v.violation(&pp, "can only be used when match.path is a prefix match");
                }
            }
            Some(PathModify::Regex(r)) => r.check(&path.field("path").field("regex"), v),
            None => {}
        }
        match &self.host {
            Some(HostModify::Value(h)) if h.is_empty() => {
                v.violation(&path.field("host").field("value"), "must not be empty")
            }
            Some(HostModify::FromPath(r)) => r.check(&path.field("host").field("fromPath"), v),
            _ => {}
        }
        if let Some(h) = &self.request_headers {
            h.check(&path.field("requestHeaders"), v);
        }
        if let Some(h) = &self.response_headers {
            h.check(&path.field("responseHeaders"), v);
        }
    }
}

impl RegexReplace {
    fn check(&self, path: &FieldPath, v: &mut Validator) {
        if self.pattern.is_empty() {
            v.violation(&path.field("pattern"), "must not be empty");
        }
        if self.substitution.is_empty() {
            v.violation(&path.field("substitution"), "must not be empty");
        }
    }
}

impl HeadersModify {
    fn check(&self, path: &FieldPath, v: &mut Validator) {
        for (i, add) in self.add.iter().enumerate() {
            let ap = path.field("add").index(i);
            check_header_name(&ap.field("name"), &add.name, v);
            if add.value.is_empty() {
                v.violation(&ap.field("value"), "must not be empty");
            }
        }
        for (i, rm) in self.remove.iter().enumerate() {
            check_header_name(&path.field("remove").index(i).field("name"), &rm.name, v);
        }
    }
}

fn check_header_name(path: &FieldPath, name: &str, v: &mut Validator) {
    if name.is_empty() {
        v.violation(path, "must not be empty");
    } else if name.starts_with(':') || name.eq_ignore_ascii_case("host") {
        v.violation(
            path,
            format!("{name:?} cannot be modified: the host header and HTTP/2 pseudo-headers are reserved"),
        );
    }
}

fn check_split_or_destination(
    path: &FieldPath,
    split: &[Split],
    destination: Option<&Tags>,
    v: &mut Validator,
) {
    match (split.is_empty(), destination) {
        (true, None) => v.violation(path, "must have either \"split\" or \"destination\""),
        (false, Some(_)) => v.violation(path, "\"split\" and \"destination\" cannot both be set"),
        _ => {}
    }
    if !split.is_empty() {
        check_split(&path.field("split"), split, v);
    }
    if let Some(d) = destination {
        check_destination(&path.field("destination"), d, v);
    }
}

fn check_split(path: &FieldPath, split: &[Split], v: &mut Validator) {
    if split.is_empty() {
        v.violation(path, "must have at least one weighted destination");
        return;
    }
    let mut total: u64 = 0;
    for (i, s) in split.iter().enumerate() {
        let sp = path.index(i);
        match s.weight {
            None => v.violation(&sp.field("weight"), "must be set"),
            Some(w) => total += u64::from(w),
        }
        check_destination(&sp.field("destination"), &s.destination, v);
    }
    if total == 0 {
        v.violation(
            path,
            "the weights must not all be 0: at least one entry needs a weight above 0",
        );
    }
}

fn check_destination(path: &FieldPath, tags: &Tags, v: &mut Validator) {
    validate_tags(path, tags, true, v);
    if !tags.contains_key(SERVICE_TAG) {
        v.violation(&path.key(SERVICE_TAG), "tag has to exist");
    }
}

impl Policy for TrafficRouteSpec {
    fn targets(&self) -> PolicyTargets<'_> {
        PolicyTargets::Connection {
            sources: &self.sources,
            destinations: &self.destinations,
        }
    }
}

#[cfg(test)]
mod tests;

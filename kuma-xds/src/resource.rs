//! Encoded xDS resources and per-proxy snapshots.
//!
//! A resource is encoded once into protobuf bytes and shared (`Arc`) by every
//! snapshot that contains it; its hash is its version. A type's version in a
//! snapshot is a hash over the (name, hash) pairs of its resources, so it
//! changes exactly when the set changes.

use bytes::Bytes;
use prost::{Message, Name};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;

/// The xDS resource types this control plane serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum XdsType {
    /// CDS: `envoy.config.cluster.v3.Cluster`.
    Cluster,
    /// EDS: `envoy.config.endpoint.v3.ClusterLoadAssignment`.
    Endpoint,
    /// LDS: `envoy.config.listener.v3.Listener`.
    Listener,
    /// RDS: `envoy.config.route.v3.RouteConfiguration`.
    Route,
    /// SDS: `envoy.extensions.transport_sockets.tls.v3.Secret`.
    Secret,
}

impl XdsType {
    /// Every type, in the order a change is pushed: clusters and their
    /// endpoints before the listeners and routes that use them.
    pub const PUSH_ORDER: [XdsType; 5] = [
        XdsType::Cluster,
        XdsType::Endpoint,
        XdsType::Listener,
        XdsType::Route,
        XdsType::Secret,
    ];

    /// The type URL.
    pub fn type_url(self) -> &'static str {
        match self {
            XdsType::Cluster => "type.googleapis.com/envoy.config.cluster.v3.Cluster",
            XdsType::Endpoint => {
                "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
            }
            XdsType::Listener => "type.googleapis.com/envoy.config.listener.v3.Listener",
            XdsType::Route => "type.googleapis.com/envoy.config.route.v3.RouteConfiguration",
            XdsType::Secret => {
                "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"
            }
        }
    }

    /// The type of a type URL.
    pub fn from_type_url(url: &str) -> Option<Self> {
        Self::PUSH_ORDER.into_iter().find(|t| t.type_url() == url)
    }

    /// Short name, as in Kuma's insights (`cds`, `eds`, `lds`, `rds`, `sds`).
    pub fn short(self) -> &'static str {
        match self {
            XdsType::Cluster => "cds",
            XdsType::Endpoint => "eds",
            XdsType::Listener => "lds",
            XdsType::Route => "rds",
            XdsType::Secret => "sds",
        }
    }

    /// Whether Envoy subscribes to this type by wildcard (all resources)
    /// rather than by name.
    pub fn is_wildcard(self) -> bool {
        matches!(self, XdsType::Cluster | XdsType::Listener)
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// An encoded resource's bytes: one buffer, or parts of which some are
/// shared with other resources.
///
/// Most of an outbound listener is its connection manager, the same for
/// every proxy calling the service under the same policies (see
/// `generate::BatchCache`); only a few hundred bytes around it (the
/// listener's name and address, the proxy's access logs) are its own. Such
/// a listener's body is its own bytes in one buffer with the shared
/// connection manager as a part between them, so 10,000 proxies do not
/// each hold a copy. The parts are written out one after the other (see
/// the gRPC framing), and compare and hash as the bytes they make up.
#[derive(Debug, Clone)]
pub struct Body(Repr);

#[derive(Debug, Clone)]
enum Repr {
    One(Bytes),
    Parts(Box<[Bytes]>),
}

impl Body {
    /// The bytes, in the order they are sent.
    pub fn parts(&self) -> &[Bytes] {
        match &self.0 {
            Repr::One(b) => std::slice::from_ref(b),
            Repr::Parts(p) => p,
        }
    }

    /// How many bytes.
    pub fn len(&self) -> usize {
        self.parts().iter().map(Bytes::len).sum()
    }

    /// Whether there are no bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bytes in one buffer (a copy, if in parts).
    pub fn to_bytes(&self) -> Bytes {
        match &self.0 {
            Repr::One(b) => b.clone(),
            Repr::Parts(p) => Bytes::from(p.concat()),
        }
    }

    /// `bytes`, with the first occurrence of `shared` (if any) held as
    /// that very buffer and the rest copied into one buffer of its own.
    pub(crate) fn sharing(bytes: &[u8], shared: &Bytes) -> Self {
        // Candidates by a short prefix (a searcher for the whole of a
        // large needle costs more to build than the search), each checked
        // in full.
        let probe = &shared[..shared.len().min(16)];
        let found = (!shared.is_empty())
            .then(|| {
                memchr::memmem::find_iter(bytes, probe).find(|&at| bytes[at..].starts_with(shared))
            })
            .flatten();
        let Some(at) = found else {
            return Self::from(Bytes::copy_from_slice(bytes));
        };
        let end = at + shared.len();
        let mut own = Vec::with_capacity(bytes.len() - shared.len());
        own.extend_from_slice(&bytes[..at]);
        own.extend_from_slice(&bytes[end..]);
        let own = Bytes::from(own);
        Self(Repr::Parts(Box::new([
            own.slice(..at),
            shared.clone(),
            own.slice(at..),
        ])))
    }
}

impl From<Bytes> for Body {
    fn from(b: Bytes) -> Self {
        Self(Repr::One(b))
    }
}

impl PartialEq for Body {
    fn eq(&self, other: &Self) -> bool {
        if self.len() != other.len() {
            return false;
        }
        let mut a = self.parts().iter().flat_map(|p| p.chunks(64));
        let mut b = other.parts().iter().flat_map(|p| p.chunks(64));
        // Compare chunk by chunk, realigning when the parts' boundaries
        // differ.
        let (mut x, mut y): (&[u8], &[u8]) = (&[], &[]);
        loop {
            if x.is_empty() {
                x = a.next().unwrap_or_default();
            }
            if y.is_empty() {
                y = b.next().unwrap_or_default();
            }
            if x.is_empty() || y.is_empty() {
                return x.is_empty() && y.is_empty();
            }
            let n = x.len().min(y.len());
            if x[..n] != y[..n] {
                return false;
            }
            (x, y) = (&x[n..], &y[n..]);
        }
    }
}

impl Eq for Body {}

/// One encoded resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XdsResource {
    /// Resource name (listener name, cluster name...).
    pub name: String,
    /// Its type.
    pub xds_type: XdsType,
    /// The encoded message (the `value` of a `google.protobuf.Any`).
    pub body: Body,
    /// Hash of `body`: the resource's version.
    pub hash: u64,
}

impl XdsResource {
    /// Encodes a message once.
    pub fn encode<M: Message + Name>(
        xds_type: XdsType,
        name: impl Into<String>,
        msg: &M,
    ) -> Arc<Self> {
        Self::encode_sharing(xds_type, name, msg, None)
    }

    /// Encodes a message once; its body holds `shared` (bytes other
    /// resources hold too, such as a shared connection manager) as a part
    /// of its own where the encoding contains them (see [`Body`]).
    pub fn encode_sharing<M: Message + Name>(
        xds_type: XdsType,
        name: impl Into<String>,
        msg: &M,
        shared: Option<&Bytes>,
    ) -> Arc<Self> {
        debug_assert_eq!(M::type_url(), xds_type.type_url());
        let bytes = msg.encode_to_vec();
        let mut h = DefaultHasher::new();
        bytes.hash(&mut h);
        let body = match shared {
            Some(shared) => Body::sharing(&bytes, shared),
            None => Body::from(Bytes::from(bytes)),
        };
        Arc::new(Self {
            name: name.into(),
            xds_type,
            hash: h.finish(),
            body,
        })
    }
}

/// The resources of one type in a snapshot, one per name, in name order.
///
/// A sorted vector of the shared resources rather than a `BTreeMap` keyed
/// by a copy of each name: a pointer per resource instead of a tree node
/// and a name copy, in every connected proxy's snapshot (see
/// docs/performance.md). Names are looked up by binary search.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResourceMap {
    items: Vec<Arc<XdsResource>>,
}

impl ResourceMap {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// A map of `resources`; of two with the same name the later one stays.
    pub fn from_resources(resources: impl IntoIterator<Item = Arc<XdsResource>>) -> Self {
        let mut items: Vec<Arc<XdsResource>> = resources.into_iter().collect();
        // Stable: equal names keep their order, so the last one is the
        // later one.
        items.sort_by(|a, b| a.name.cmp(&b.name));
        let mut deduped: Vec<Arc<XdsResource>> = Vec::with_capacity(items.len());
        for r in items {
            match deduped.last_mut() {
                Some(last) if last.name == r.name => *last = r,
                _ => deduped.push(r),
            }
        }
        deduped.shrink_to_fit();
        Self { items: deduped }
    }

    fn position(&self, name: &str) -> Result<usize, usize> {
        self.items.binary_search_by(|r| r.name.as_str().cmp(name))
    }

    /// Adds a resource, returning the one of that name it replaces.
    pub fn insert(&mut self, r: Arc<XdsResource>) -> Option<Arc<XdsResource>> {
        match self.position(&r.name) {
            Ok(i) => Some(std::mem::replace(&mut self.items[i], r)),
            Err(i) => {
                self.items.insert(i, r);
                None
            }
        }
    }

    /// The resource of a name.
    pub fn get(&self, name: &str) -> Option<&Arc<XdsResource>> {
        self.position(name).ok().map(|i| &self.items[i])
    }

    /// Whether a resource of that name is there.
    pub fn contains_key(&self, name: &str) -> bool {
        self.position(name).is_ok()
    }

    /// How many resources.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The resources, in name order.
    pub fn values(&self) -> std::slice::Iter<'_, Arc<XdsResource>> {
        self.items.iter()
    }

    /// (name, resource) pairs, in name order.
    pub fn iter(&self) -> Iter<'_> {
        Iter(self.items.iter())
    }
}

impl std::ops::Index<&str> for ResourceMap {
    type Output = Arc<XdsResource>;

    fn index(&self, name: &str) -> &Arc<XdsResource> {
        self.get(name)
            .unwrap_or_else(|| panic!("no resource named {name:?}"))
    }
}

/// The (name, resource) pairs of a [`ResourceMap`], in name order.
#[derive(Debug, Clone)]
pub struct Iter<'a>(std::slice::Iter<'a, Arc<XdsResource>>);

impl<'a> Iterator for Iter<'a> {
    type Item = (&'a String, &'a Arc<XdsResource>);

    fn next(&mut self) -> Option<Self::Item> {
        self.0.next().map(|r| (&r.name, r))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.0.size_hint()
    }
}

impl ExactSizeIterator for Iter<'_> {}

impl<'a> IntoIterator for &'a ResourceMap {
    type Item = (&'a String, &'a Arc<XdsResource>);
    type IntoIter = Iter<'a>;

    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

/// Version over a set of resources: changes iff the set changes.
pub fn version_of<'a>(items: impl IntoIterator<Item = &'a Arc<XdsResource>>) -> String {
    let mut h = DefaultHasher::new();
    let mut n = 0usize;
    for r in items {
        r.name.hash(&mut h);
        r.hash.hash(&mut h);
        n += 1;
    }
    n.hash(&mut h);
    format!("{:016x}", h.finish())
}

/// Everything one proxy should have, per type.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    types: [ResourceMap; 5],
    versions: [String; 5],
}

impl Snapshot {
    /// A snapshot from resources (any order, any types).
    pub fn new(resources: impl IntoIterator<Item = Arc<XdsResource>>) -> Self {
        let mut per_type: [Vec<Arc<XdsResource>>; 5] = Default::default();
        for r in resources {
            per_type[r.xds_type.index()].push(r);
        }
        let mut s = Self::default();
        for (t, items) in XdsType::PUSH_ORDER.into_iter().zip(per_type) {
            s.set_type(t, ResourceMap::from_resources(items));
        }
        s
    }

    /// Replaces every resource of one type.
    pub fn set_type(&mut self, t: XdsType, items: ResourceMap) {
        self.versions[t.index()] = version_of(items.values());
        self.types[t.index()] = items;
    }

    /// The resources of a type.
    pub fn resources(&self, t: XdsType) -> &ResourceMap {
        &self.types[t.index()]
    }

    /// The version of a type (all its resources).
    pub fn version(&self, t: XdsType) -> &str {
        &self.versions[t.index()]
    }

    /// The resources of a type a client asked for, and their version. For
    /// wildcard types (or an empty name list) that is every resource.
    pub fn select(
        &self,
        t: XdsType,
        names: &std::collections::BTreeSet<String>,
    ) -> (String, Vec<Arc<XdsResource>>) {
        let all = &self.types[t.index()];
        if t.is_wildcard() || names.is_empty() {
            return (
                self.versions[t.index()].clone(),
                all.values().cloned().collect(),
            );
        }
        let items: Vec<_> = names.iter().filter_map(|n| all.get(n).cloned()).collect();
        (version_of(items.iter()), items)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::envoy::config::cluster::v3::Cluster;

    fn cluster(name: &str, timeout: i64) -> Arc<XdsResource> {
        let c = Cluster {
            name: name.into(),
            connect_timeout: Some(envoy_types::pb::google::protobuf::Duration {
                seconds: timeout,
                nanos: 0,
            }),
            ..Default::default()
        };
        XdsResource::encode(XdsType::Cluster, name, &c)
    }

    #[test]
    fn versions_follow_content() {
        let a = Snapshot::new([cluster("a", 1), cluster("b", 1)]);
        let b = Snapshot::new([cluster("b", 1), cluster("a", 1)]);
        assert_eq!(a.version(XdsType::Cluster), b.version(XdsType::Cluster));
        let c = Snapshot::new([cluster("a", 2), cluster("b", 1)]);
        assert_ne!(a.version(XdsType::Cluster), c.version(XdsType::Cluster));
        assert_eq!(a.version(XdsType::Listener), c.version(XdsType::Listener));
    }

    #[test]
    fn resource_maps_are_sorted_by_name_and_later_wins() {
        let m = ResourceMap::from_resources([
            cluster("b", 1),
            cluster("a", 1),
            cluster("c", 1),
            cluster("a", 2),
        ]);
        let names: Vec<&String> = m.iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["a", "b", "c"]);
        assert_eq!(m["a"], cluster("a", 2));
        assert!(m.contains_key("c") && !m.contains_key("d") && m.get("d").is_none());
        let mut m2 = m.clone();
        assert_eq!(m2.insert(cluster("bb", 1)), None);
        assert_eq!(m2.insert(cluster("b", 3)), Some(cluster("b", 1)));
        let names: Vec<&str> = m2.values().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["a", "b", "bb", "c"]);
        assert_eq!(m2.len(), 4);
    }

    #[test]
    fn bodies_in_parts_hold_the_shared_buffer_and_compare_by_content() {
        let shared = Bytes::from_static(b"SHARED-CONNECTION-MANAGER");
        let whole = [&b"name+address:"[..], &shared, &b":access-log"[..]].concat();
        let body = Body::sharing(&whole, &shared);
        assert_eq!(body.parts().len(), 3);
        assert_eq!(body.parts()[1].as_ptr(), shared.as_ptr(), "not a copy");
        assert_eq!(&body.to_bytes()[..], &whole[..]);
        assert_eq!(body.len(), whole.len());
        // The same bytes in one buffer, or split elsewhere, are equal.
        let one = Body::from(Bytes::from(whole.clone()));
        assert_eq!(body, one);
        assert_eq!(one, body);
        let elsewhere = Body::sharing(&whole, &Bytes::from_static(b"address:SHARED"));
        assert_eq!(elsewhere.parts().len(), 3);
        assert_eq!(body, elsewhere);
        // One byte differs, at the end or inside the shared part.
        let mut other = whole.clone();
        *other.last_mut().unwrap() ^= 1;
        assert_ne!(body, Body::from(Bytes::from(other)));
        let mut other = whole.clone();
        other[20] ^= 1;
        assert_ne!(body, Body::from(Bytes::from(other)));
        assert_ne!(body, Body::from(Bytes::from(whole[1..].to_vec())));
        // Bytes the encoding does not contain: one buffer.
        let absent = Body::sharing(&whole, &Bytes::from_static(b"nowhere"));
        assert_eq!(absent.parts().len(), 1);
        assert_eq!(absent, one);
    }

    #[test]
    fn named_selection_versions_only_the_subset() {
        let mut s = Snapshot::default();
        let eds = |n: &str| XdsResource {
            name: n.into(),
            xds_type: XdsType::Endpoint,
            body: Bytes::from(n.to_string()).into(),
            hash: n.len() as u64,
        };
        let mut m = ResourceMap::new();
        for n in ["x", "yy"] {
            m.insert(Arc::new(eds(n)));
        }
        s.set_type(XdsType::Endpoint, m);
        let only_x: std::collections::BTreeSet<String> = ["x".to_string()].into();
        let (v1, items) = s.select(XdsType::Endpoint, &only_x);
        assert_eq!(items.len(), 1);
        let mut m2 = s.resources(XdsType::Endpoint).clone();
        m2.insert(Arc::new(XdsResource {
            hash: 99,
            ..eds("yy")
        }));
        s.set_type(XdsType::Endpoint, m2);
        assert_eq!(
            s.select(XdsType::Endpoint, &only_x).0,
            v1,
            "x's version ignores yy"
        );
    }
}

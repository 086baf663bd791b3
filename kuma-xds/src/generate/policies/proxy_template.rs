//! ProxyTemplate: raw Envoy resources for the selected proxies and
//! modifications of the generated ones, applied last (after every other
//! policy), as in Kuma.
//!
//! - `conf.imports`: with `default-proxy` the generated listeners and
//!   clusters are kept; without it (as in Kuma) the proxy gets only the
//!   template's own resources.
//! - `conf.resources`: raw resources, YAML or JSON with an `@type`.
//!   Clusters and listeners are supported (a resource of the same name is
//!   replaced); other types are skipped with a warning.
//! - `conf.modifications`, in order:
//!   - `cluster` / `listener`: `add` (replaces one of the same name),
//!     `patch` (proto merge of the value into every matching resource),
//!     `remove`; matched by `name`, `origin` (and listener `tags`);
//!   - `networkFilter` / `httpFilter`: `addFirst`, `addLast` (every filter
//!     chain / HTTP connection manager of the matched listeners),
//!     `addBefore`, `addAfter` (the first filter named `match.name`),
//!     `patch` (merges the value's typed config into that of the filters
//!     named `match.name`), `remove` (the filters named `match.name`, all
//!     without a name); listeners matched by `listenerName`, `origin`,
//!     `listenerTags`;
//!   - `virtualHost`: `add`, `patch`, `remove` in the route configurations
//!     (inline in HTTP connection managers) matched by
//!     `routeConfigurationName` and `origin`, virtual hosts by `name`.
//!
//! Origins: generated resources are `inbound` (inbound listeners and the
//! `localhost:<port>` clusters) or `outbound`; raw resources are
//! `proxy-template-raw`, those added by modifications
//! `proxy-template-modifications` (Kuma's names).
//!
//! Values are converted with [`super::envoy_json`]. A resource or
//! modification whose value is not a valid Envoy message is skipped and
//! logged (the rest of the template still applies); a config Envoy itself
//! rejects is NACKed and shows in the Dataplane's insight (`lastNack`).

use super::super::{ProxyConfig, ProxyInput, names, outbound_service};
use super::envoy_json::{decode, merge_any, parse, parse_any};
use crate::ProxyTemplateError as Error;
use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::core::v3::TrafficDirection;
use envoy_types::pb::envoy::config::listener::v3::filter::ConfigType as FilterConfig;
use envoy_types::pb::envoy::config::listener::v3::{Filter, Listener};
use envoy_types::pb::envoy::config::route::v3::{RouteConfiguration, VirtualHost};
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::http_connection_manager::RouteSpecifier;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::http_filter::ConfigType as HttpFilterConfig;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, HttpFilter,
};
use envoy_types::pb::google::protobuf::Any;
use envoy_types::util::pack_any;
use kuma_core::resource::{
    ClusterMatch, FilterMatch, ListenerMatch, Modification, Operation, ProxyTemplateConf, RawResource,
    ResourceModification, SERVICE_TAG, Tags, VirtualHostMatch, WILDCARD,
};
use prost::{Message, Name};
use std::collections::HashMap;
use tracing::warn;

/// The profile that keeps the generated resources.
const DEFAULT_PROXY: &str = "default-proxy";
/// Origin of generated inbound resources.
const ORIGIN_INBOUND: &str = "inbound";
/// Origin of generated outbound resources.
const ORIGIN_OUTBOUND: &str = "outbound";
/// Origin of `conf.resources`.
const ORIGIN_RAW: &str = "proxy-template-raw";
/// Origin of resources added by `conf.modifications`.
const ORIGIN_MODIFICATIONS: &str = "proxy-template-modifications";

/// Applies the selected ProxyTemplate, if any.
pub(crate) fn apply(config: &mut ProxyConfig, input: &ProxyInput<'_>) {
    let Some(spec) = input.dataplane_policies.proxy_template else {
        return;
    };
    // The template sees (and patches) the listeners' filters packed, as
    // Envoy would.
    config.pack();
    let empty = ProxyTemplateConf::default();
    let conf = spec.conf.as_ref().unwrap_or(&empty);
    let mut ctx = Context::new(input);
    if !conf.imports.iter().any(|i| i == DEFAULT_PROXY) {
        config.clusters.clear();
        config.listeners.clear();
    }
    for (i, raw) in conf.resources.iter().enumerate() {
        if let Err(error) = add_raw(config, raw, &mut ctx) {
            warn!(mesh = input.mesh, proxy = input.name, index = i, %error,
                "ProxyTemplate resource skipped");
        }
    }
    for (i, m) in conf.modifications.iter().enumerate() {
        if let Err(error) = modify(config, m, &mut ctx) {
            warn!(mesh = input.mesh, proxy = input.name, index = i, %error,
                "ProxyTemplate modification skipped");
        }
    }
}

/// Origins and tags of the proxy's listeners and clusters.
#[derive(Debug, Default)]
struct Context {
    /// Origins of clusters added by the template.
    cluster_origins: HashMap<String, &'static str>,
    /// Origins of listeners added by the template.
    listener_origins: HashMap<String, &'static str>,
    /// Tags of generated listeners (inbound tags, called service's tags).
    listener_tags: HashMap<String, Tags>,
}

impl Context {
    fn new(input: &ProxyInput<'_>) -> Self {
        let dp = input.dataplane;
        let mut listener_tags = HashMap::new();
        for inbound in &dp.networking.inbound {
            let address = inbound.address.as_deref().unwrap_or(&dp.networking.address);
            listener_tags.insert(
                names::inbound_listener(address, inbound.port),
                inbound.tags.clone(),
            );
        }
        for outbound in &dp.networking.outbound {
            let Some(service) = outbound_service(outbound) else {
                continue;
            };
            let mut tags = outbound.tags.clone();
            tags.insert(SERVICE_TAG.to_string(), service.to_string());
            let address = outbound.address.as_deref().unwrap_or("127.0.0.1");
            listener_tags.insert(names::outbound_listener(address, outbound.port), tags);
        }
        for (service, vip) in input.vips {
            let tags: Tags = [(SERVICE_TAG.to_string(), service.clone())]
                .into_iter()
                .collect();
            listener_tags
                .entry(names::outbound_listener(vip, super::super::VIP_PORT))
                .or_insert(tags);
        }
        Self {
            listener_tags,
            ..Default::default()
        }
    }

    fn cluster_origin(&self, c: &Cluster) -> &str {
        match self.cluster_origins.get(&c.name) {
            Some(o) => o,
            None if c.name.starts_with("localhost:") => ORIGIN_INBOUND,
            None => ORIGIN_OUTBOUND,
        }
    }

    fn listener_origin(&self, l: &Listener) -> &str {
        match self.listener_origins.get(&l.name) {
            Some(o) => o,
            None if l.traffic_direction == TrafficDirection::Inbound as i32 => ORIGIN_INBOUND,
            None => ORIGIN_OUTBOUND,
        }
    }

    /// Whether `l` matches a listener name, origin and tags.
    fn listener_matches(
        &self,
        l: &Listener,
        name: Option<&str>,
        origin: Option<&str>,
        tags: Option<&Tags>,
    ) -> bool {
        name.is_none_or(|n| n.is_empty() || n == l.name)
            && origin.is_none_or(|o| o.is_empty() || o == self.listener_origin(l))
            && tags.is_none_or(|want| {
                let have = self.listener_tags.get(&l.name);
                want.iter().all(|(k, v)| {
                    have.and_then(|h| h.get(k))
                        .is_some_and(|h| v == WILDCARD || h == v)
                })
            })
    }
}

/// Adds one raw resource.
fn add_raw(config: &mut ProxyConfig, raw: &RawResource, ctx: &mut Context) -> Result<(), Error> {
    let any = parse_any(&raw.resource)?;
    if any.type_url == Cluster::type_url() {
        let c = decode_any::<Cluster>(&any)?;
        ctx.cluster_origins.insert(c.name.clone(), ORIGIN_RAW);
        upsert(&mut config.clusters, c, |c| &c.name);
    } else if any.type_url == Listener::type_url() {
        let l = decode_any::<Listener>(&any)?;
        ctx.listener_origins.insert(l.name.clone(), ORIGIN_RAW);
        upsert(&mut config.listeners, l, |l| &l.name);
    } else {
        return Err(Error::UnsupportedResource {
            name: raw.name.clone(),
            type_url: any.type_url,
        });
    }
    Ok(())
}

fn decode_any<T: Message + Name + Default>(any: &Any) -> Result<T, Error> {
    decode(&any.value)
}

/// Replaces the item named like `item`, or appends it.
fn upsert<T>(items: &mut Vec<T>, item: T, name: fn(&T) -> &String) {
    match items.iter_mut().find(|i| name(i) == name(&item)) {
        Some(existing) => *existing = item,
        None => items.push(item),
    }
}

/// The value of a modification, parsed.
fn value<T: Message + Name + Default>(text: Option<&str>) -> Result<T, Error> {
    parse(text.unwrap_or_default())
}

/// Proto merge of `patch` into `dst`.
fn merge<T: Message + Name>(dst: &mut T, patch: &T) -> Result<(), Error> {
    dst.merge(patch.encode_to_vec().as_slice())
        .map_err(|source| Error::Decode {
            message: T::full_name(),
            source,
        })
}

fn modify(config: &mut ProxyConfig, m: &Modification, ctx: &mut Context) -> Result<(), Error> {
    match m {
        Modification::Cluster(m) => modify_clusters(config, m, ctx),
        Modification::Listener(m) => modify_listeners(config, m, ctx),
        Modification::NetworkFilter(m) => modify_network_filters(config, m, ctx),
        Modification::HttpFilter(m) => modify_http_filters(config, m, ctx),
        Modification::VirtualHost(m) => modify_virtual_hosts(config, m, ctx),
    }
}

fn modify_clusters(
    config: &mut ProxyConfig,
    m: &ResourceModification<ClusterMatch>,
    ctx: &mut Context,
) -> Result<(), Error> {
    let matches = |ctx: &Context, c: &Cluster| {
        m.match_.as_ref().is_none_or(|mm| {
            mm.name
                .as_deref()
                .is_none_or(|n| n.is_empty() || n == c.name)
                && mm
                    .origin
                    .as_deref()
                    .is_none_or(|o| o.is_empty() || o == ctx.cluster_origin(c))
        })
    };
    match &m.operation {
        Operation::Add => {
            let c: Cluster = value(m.value.as_deref())?;
            ctx.cluster_origins
                .insert(c.name.clone(), ORIGIN_MODIFICATIONS);
            upsert(&mut config.clusters, c, |c| &c.name);
        }
        Operation::Patch => {
            let patch: Cluster = value(m.value.as_deref())?;
            for c in &mut config.clusters {
                if matches(ctx, c) {
                    merge(c, &patch)?;
                }
            }
        }
        Operation::Remove => config.clusters.retain(|c| !matches(ctx, c)),
        op => return Err(unknown_operation("cluster", op.as_str())),
    }
    Ok(())
}

fn modify_listeners(
    config: &mut ProxyConfig,
    m: &ResourceModification<ListenerMatch>,
    ctx: &mut Context,
) -> Result<(), Error> {
    let matches = |ctx: &Context, l: &Listener| {
        m.match_.as_ref().is_none_or(|mm| {
            ctx.listener_matches(
                l,
                mm.name.as_deref(),
                mm.origin.as_deref(),
                mm.tags.as_ref(),
            )
        })
    };
    match &m.operation {
        Operation::Add => {
            let l: Listener = value(m.value.as_deref())?;
            ctx.listener_origins
                .insert(l.name.clone(), ORIGIN_MODIFICATIONS);
            upsert(&mut config.listeners, l, |l| &l.name);
        }
        Operation::Patch => {
            let patch: Listener = value(m.value.as_deref())?;
            for l in &mut config.listeners {
                if matches(ctx, l) {
                    merge(l, &patch)?;
                }
            }
        }
        Operation::Remove => config.listeners.retain(|l| !matches(ctx, l)),
        op => return Err(unknown_operation("listener", op.as_str())),
    }
    Ok(())
}

/// A network or HTTP filter: a name and a typed config.
trait NamedFilter: Message + Name + Default + Clone {
    fn name(&self) -> &str;
    /// Takes the typed config out (to merge it separately).
    fn take_typed_config(&mut self) -> Option<Any>;
    /// The typed config, if the filter has one.
    fn typed_config_mut(&mut self) -> Option<&mut Any>;
    fn set_typed_config(&mut self, any: Any);
}

impl NamedFilter for Filter {
    fn name(&self) -> &str {
        &self.name
    }
    fn take_typed_config(&mut self) -> Option<Any> {
        match self.config_type.take() {
            Some(FilterConfig::TypedConfig(any)) => Some(any),
            other => {
                self.config_type = other;
                None
            }
        }
    }
    fn typed_config_mut(&mut self) -> Option<&mut Any> {
        match &mut self.config_type {
            Some(FilterConfig::TypedConfig(any)) => Some(any),
            _ => None,
        }
    }
    fn set_typed_config(&mut self, any: Any) {
        self.config_type = Some(FilterConfig::TypedConfig(any));
    }
}

impl NamedFilter for HttpFilter {
    fn name(&self) -> &str {
        &self.name
    }
    fn take_typed_config(&mut self) -> Option<Any> {
        match self.config_type.take() {
            Some(HttpFilterConfig::TypedConfig(any)) => Some(any),
            other => {
                self.config_type = other;
                None
            }
        }
    }
    fn typed_config_mut(&mut self) -> Option<&mut Any> {
        match &mut self.config_type {
            Some(HttpFilterConfig::TypedConfig(any)) => Some(any),
            _ => None,
        }
    }
    fn set_typed_config(&mut self, any: Any) {
        self.config_type = Some(HttpFilterConfig::TypedConfig(any));
    }
}

/// Patches `filter` with `patch`: its typed config is merged into the
/// filter's (Kuma's `MergeAnys`), other fields proto-merged.
fn patch_filter<F: NamedFilter>(filter: &mut F, patch: &F) -> Result<(), Error> {
    let mut patch = patch.clone();
    let config = patch.take_typed_config();
    merge(filter, &patch)?;
    if let Some(config) = config {
        match filter.typed_config_mut() {
            Some(existing) => merge_any(existing, &config)?,
            None => filter.set_typed_config(config),
        }
    }
    Ok(())
}

/// Applies a filter operation to one list of filters.
fn edit_filter_list<F: NamedFilter>(
    filters: &mut Vec<F>,
    op: &Operation,
    name: Option<&str>,
    value: Option<&F>,
) -> Result<(), Error> {
    let position = || name.and_then(|n| filters.iter().position(|f| f.name() == n));
    match (op, value) {
        (Operation::AddFirst, Some(v)) => filters.insert(0, v.clone()),
        (Operation::AddLast, Some(v)) => filters.push(v.clone()),
        (Operation::AddBefore, Some(v)) => {
            if let Some(i) = position() {
                filters.insert(i, v.clone());
            }
        }
        (Operation::AddAfter, Some(v)) => {
            if let Some(i) = position() {
                filters.insert(i + 1, v.clone());
            }
        }
        (Operation::Patch, Some(v)) => {
            for f in filters.iter_mut() {
                if name.is_some_and(|n| f.name() == n) {
                    patch_filter(f, v)?;
                }
            }
        }
        (Operation::Remove, _) => {
            filters.retain(|f| name.is_some_and(|n| !n.is_empty() && f.name() != n))
        }
        (op, _) => return Err(unknown_operation("filter", op.as_str())),
    }
    Ok(())
}

/// The filter value of a modification (none for `remove`).
fn filter_value<F: NamedFilter>(m: &ResourceModification<FilterMatch>) -> Result<Option<F>, Error> {
    if m.operation == Operation::Remove {
        return Ok(None);
    }
    value(m.value.as_deref()).map(Some)
}

fn matching_listeners<'a>(
    config: &'a mut ProxyConfig,
    mm: Option<&'a FilterMatch>,
    ctx: &'a Context,
) -> impl Iterator<Item = &'a mut Listener> + 'a {
    config.listeners.iter_mut().filter(move |l| {
        mm.is_none_or(|mm| {
            ctx.listener_matches(
                l,
                mm.listener_name.as_deref(),
                mm.origin.as_deref(),
                mm.listener_tags.as_ref(),
            )
        })
    })
}

fn modify_network_filters(
    config: &mut ProxyConfig,
    m: &ResourceModification<FilterMatch>,
    ctx: &Context,
) -> Result<(), Error> {
    let v = filter_value::<Filter>(m)?;
    let mm = m.match_.as_ref();
    let name = mm.and_then(|mm| mm.name.as_deref());
    for l in matching_listeners(config, mm, ctx) {
        for chain in &mut l.filter_chains {
            edit_filter_list(&mut chain.filters, &m.operation, name, v.as_ref())?;
        }
    }
    Ok(())
}

/// Runs `edit` on every HTTP connection manager of `listener`, packing the
/// edited one back.
fn edit_managers(
    listener: &mut Listener,
    mut edit: impl FnMut(&mut HttpConnectionManager) -> Result<(), Error>,
) -> Result<(), Error> {
    for chain in &mut listener.filter_chains {
        for filter in &mut chain.filters {
            let Some(FilterConfig::TypedConfig(any)) = &filter.config_type else {
                continue;
            };
            if any.type_url != HttpConnectionManager::type_url() {
                continue;
            }
            let mut hcm = decode_any::<HttpConnectionManager>(any)?;
            edit(&mut hcm)?;
            filter.config_type = Some(FilterConfig::TypedConfig(pack_any(hcm)));
        }
    }
    Ok(())
}

fn modify_http_filters(
    config: &mut ProxyConfig,
    m: &ResourceModification<FilterMatch>,
    ctx: &Context,
) -> Result<(), Error> {
    let v = filter_value::<HttpFilter>(m)?;
    let mm = m.match_.as_ref();
    let name = mm.and_then(|mm| mm.name.as_deref());
    for l in matching_listeners(config, mm, ctx) {
        edit_managers(l, |hcm| {
            edit_filter_list(&mut hcm.http_filters, &m.operation, name, v.as_ref())
        })?;
    }
    Ok(())
}

fn modify_virtual_hosts(
    config: &mut ProxyConfig,
    m: &ResourceModification<VirtualHostMatch>,
    ctx: &Context,
) -> Result<(), Error> {
    let v: Option<VirtualHost> = match &m.operation {
        Operation::Remove => None,
        Operation::Add | Operation::Patch => Some(value(m.value.as_deref())?),
        op => return Err(unknown_operation("virtual host", op.as_str())),
    };
    let mm = m.match_.as_ref();
    let route_name = mm.and_then(|mm| mm.route_configuration_name.as_deref());
    let origin = mm.and_then(|mm| mm.origin.as_deref());
    let host = mm
        .and_then(|mm| mm.name.as_deref())
        .filter(|n| !n.is_empty());
    let host_matches = |h: &VirtualHost| host.is_none_or(|n| h.name == n);
    for l in &mut config.listeners {
        if !ctx.listener_matches(l, None, origin, None) {
            continue;
        }
        edit_managers(l, |hcm| {
            let Some(RouteSpecifier::RouteConfig(routes)) = &mut hcm.route_specifier else {
                return Ok(());
            };
            if route_name.is_some_and(|n| !n.is_empty() && n != routes.name) {
                return Ok(());
            }
            edit_virtual_hosts(routes, &m.operation, v.as_ref(), &host_matches)
        })?;
    }
    Ok(())
}

fn edit_virtual_hosts(
    routes: &mut RouteConfiguration,
    op: &Operation,
    value: Option<&VirtualHost>,
    host_matches: &dyn Fn(&VirtualHost) -> bool,
) -> Result<(), Error> {
    match (op, value) {
        (Operation::Add, Some(v)) => routes.virtual_hosts.push(v.clone()),
        (Operation::Patch, Some(v)) => {
            for h in &mut routes.virtual_hosts {
                if host_matches(h) {
                    merge(h, v)?;
                }
            }
        }
        (Operation::Remove, _) => routes.virtual_hosts.retain(|h| !host_matches(h)),
        (op, _) => return Err(unknown_operation("virtual host", op.as_str())),
    }
    Ok(())
}

fn unknown_operation(kind: &'static str, operation: &str) -> Error {
    Error::UnknownOperation {
        kind,
        operation: operation.to_string(),
    }
}

#[cfg(test)]
mod tests;

//! FaultInjection: `envoy.filters.http.fault` on the inbound listener of
//! every HTTP inbound a FaultInjection was selected for, before the router.
//!
//! As in Kuma, there is one fault filter per source selector. A source whose
//! tags are all `*` affects every caller (no header match); a more specific
//! source matches the `x-kuma-tags` request header against Kuma's regex of
//! the source tags (`&key=value&` per tag of the caller). Limitation: our
//! outbound listeners do not add `x-kuma-tags` (yet), so today only `*`
//! sources inject faults; specific sources stay inert until callers send
//! the header.
//!
//! Percentages map like Kuma's: a whole number -> `n/HUNDRED`, otherwise
//! `round(p * 10000)/MILLION`.

use super::super::{ProxyConfig, ProxyInput, names};
use super::edit::listener_filter;
use envoy_types::pb::envoy::config::route::v3::HeaderMatcher;
use envoy_types::pb::envoy::config::route::v3::header_matcher::HeaderMatchSpecifier;
use envoy_types::pb::envoy::extensions::filters::common::fault::v3::fault_delay::FaultDelaySecifier;
use envoy_types::pb::envoy::extensions::filters::common::fault::v3::fault_rate_limit::{
    FixedLimit, LimitType,
};
use envoy_types::pb::envoy::extensions::filters::common::fault::v3::{FaultDelay, FaultRateLimit};
use envoy_types::pb::envoy::extensions::filters::http::fault::v3::fault_abort::ErrorType;
use envoy_types::pb::envoy::extensions::filters::http::fault::v3::{FaultAbort, HttpFault};
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::http_filter::ConfigType as HttpFilterConfig;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, HttpFilter,
};
use envoy_types::pb::envoy::r#type::matcher::v3::string_matcher::MatchPattern;
use envoy_types::pb::envoy::r#type::matcher::v3::{RegexMatcher, StringMatcher};
use envoy_types::pb::envoy::r#type::v3::FractionalPercent;
use envoy_types::pb::envoy::r#type::v3::fractional_percent::DenominatorType;
use envoy_types::pb::google::protobuf::Duration as PbDuration;
use envoy_types::util::pack_any;
use kuma_core::resource::{
    FaultInjectionConf, FaultInjectionSpec, Tags, WILDCARD, parse_bandwidth_kbps,
};

/// The fault filter's name.
pub(crate) const FAULT_FILTER: &str = "envoy.filters.http.fault";
/// The router filter's name.
const ROUTER: &str = "envoy.filters.http.router";
/// The header carrying the caller's tags.
const TAGS_HEADER: &str = "x-kuma-tags";

/// Adds the fault filters of every inbound's selected FaultInjection.
pub(crate) fn apply(config: &mut ProxyConfig, input: &ProxyInput<'_>) {
    let dp = input.dataplane;
    for (inbound, policies) in dp.networking.inbound.iter().zip(input.inbound_policies) {
        let Some(spec) = policies.fault_injection else {
            continue;
        };
        let filters = fault_filters(spec);
        if filters.is_empty() {
            continue;
        }
        let address = inbound.address.as_deref().unwrap_or(&dp.networking.address);
        let name = names::inbound_listener(address, inbound.port);
        // Listeners without a connection manager (TCP) are left alone.
        if let Some(hcm) = listener_filter(config, &name).and_then(|f| f.http_mut()) {
            add_before_router(hcm, filters);
        }
    }
}

/// The fault filters of a FaultInjection: one per source selector (none
/// without a usable `conf`).
pub(crate) fn fault_filters(spec: &FaultInjectionSpec) -> Vec<HttpFilter> {
    let Some(conf) = &spec.conf else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut seen_all = false;
    for source in &spec.sources {
        let headers = source_headers(&source.match_tags);
        if headers.is_empty() {
            // One match-all filter is enough.
            if seen_all {
                continue;
            }
            seen_all = true;
        }
        if let Some(fault) = http_fault(conf, headers) {
            out.push(HttpFilter {
                name: FAULT_FILTER.into(),
                config_type: Some(HttpFilterConfig::TypedConfig(pack_any(fault))),
                ..Default::default()
            });
        }
    }
    out
}

/// The `x-kuma-tags` match of a source, or nothing for an all-`*` source.
fn source_headers(tags: &Tags) -> Vec<HeaderMatcher> {
    if tags.values().all(|v| v == WILDCARD) {
        return Vec::new();
    }
    vec![HeaderMatcher {
        name: TAGS_HEADER.into(),
        header_match_specifier: Some(HeaderMatchSpecifier::StringMatch(StringMatcher {
            match_pattern: Some(MatchPattern::SafeRegex(RegexMatcher {
                regex: tags_regex(tags),
                ..Default::default()
            })),
            ..Default::default()
        })),
        ..Default::default()
    }]
}

/// Kuma's regex matching an `x-kuma-tags` value (`&k=v1,v2&&k2=v&`, keys
/// sorted) that carries `tags` (`*`: any value of the key).
pub(crate) fn tags_regex(tags: &Tags) -> String {
    let mut re = String::from(".*");
    for (key, value) in tags {
        re.push('&');
        re.push_str(&escape(key));
        re.push('=');
        if value != WILDCARD {
            re.push_str("[^&]*");
            re.push_str(&escape(value));
            re.push_str("[,&]");
        }
        re.push_str(".*");
    }
    re
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Kuma's percentage: whole numbers out of a hundred, otherwise out of a
/// million.
pub(crate) fn percentage(p: f64) -> FractionalPercent {
    let p = p.clamp(0.0, 100.0);
    if p == p.trunc() {
        FractionalPercent {
            numerator: p as u32,
            denominator: DenominatorType::Hundred as i32,
        }
    } else {
        FractionalPercent {
            numerator: (p * 10_000.0).round() as u32,
            denominator: DenominatorType::Million as i32,
        }
    }
}

fn http_fault(conf: &FaultInjectionConf, headers: Vec<HeaderMatcher>) -> Option<HttpFault> {
    let delay = conf.delay.as_ref().and_then(|d| {
        let value = d.value.as_ref()?.as_duration();
        Some(FaultDelay {
            percentage: Some(percentage(d.percentage?)),
            fault_delay_secifier: Some(FaultDelaySecifier::FixedDelay(PbDuration {
                seconds: i64::try_from(value.as_secs()).unwrap_or(i64::MAX),
                nanos: i32::try_from(value.subsec_nanos()).unwrap_or(0),
            })),
        })
    });
    let abort = conf.abort.as_ref().and_then(|a| {
        Some(FaultAbort {
            percentage: Some(percentage(a.percentage?)),
            error_type: Some(ErrorType::HttpStatus(a.http_status?)),
            ..Default::default()
        })
    });
    let response_rate_limit = conf.response_bandwidth.as_ref().and_then(|b| {
        Some(FaultRateLimit {
            percentage: Some(percentage(b.percentage?)),
            limit_type: Some(LimitType::FixedLimit(FixedLimit {
                limit_kbps: parse_bandwidth_kbps(b.limit.as_deref()?)?,
            })),
        })
    });
    if delay.is_none() && abort.is_none() && response_rate_limit.is_none() {
        return None;
    }
    Some(HttpFault {
        delay,
        abort,
        response_rate_limit,
        headers,
        ..Default::default()
    })
}

/// Inserts `filters` into the HTTP connection manager just before the
/// router.
fn add_before_router(hcm: &mut HttpConnectionManager, filters: Vec<HttpFilter>) {
    let at = hcm
        .http_filters
        .iter()
        .position(|f| f.name == ROUTER)
        .unwrap_or(hcm.http_filters.len());
    hcm.http_filters.splice(at..at, filters);
}

#[cfg(test)]
mod tests;

//! Cell formatting shared by the tables: ages like kubectl's, tag sets,
//! counters and on/off flags read out of API JSON.

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};

/// What an age cell shows when the time is missing or unreadable.
pub const UNKNOWN: &str = "<unknown>";

/// Parses an RFC 3339 time as the API writes it.
pub fn parse_time(value: Option<&Value>) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(value?.as_str()?, &Rfc3339).ok()
}

/// How long ago `then` was, as of `now`, like kubectl's AGE column.
pub fn age(then: Option<OffsetDateTime>, now: OffsetDateTime) -> String {
    match then {
        Some(then) => human_duration(now - then),
        None => UNKNOWN.to_string(),
    }
}

/// kubectl's short duration form: `45s`, `3m20s`, `3h`, `4d`, `2y30d`.
///
/// Precision drops as durations grow: seconds up to two minutes, minutes and
/// seconds below ten minutes, minutes below three hours, and so on.
pub fn human_duration(d: Duration) -> String {
    let secs = d.whole_seconds();
    if secs < -1 {
        return "<invalid>".to_string();
    }
    if secs < 0 {
        return "0s".to_string();
    }
    if secs < 60 * 2 {
        return format!("{secs}s");
    }
    let mins = secs / 60;
    if mins < 10 {
        return match secs % 60 {
            0 => format!("{mins}m"),
            s => format!("{mins}m{s}s"),
        };
    }
    if mins < 60 * 3 {
        return format!("{mins}m");
    }
    let hours = mins / 60;
    if hours < 8 {
        return match mins % 60 {
            0 => format!("{hours}h"),
            m => format!("{hours}h{m}m"),
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    let days = hours / 24;
    if hours < 24 * 8 {
        return match hours % 24 {
            0 => format!("{days}d"),
            h => format!("{days}d{h}h"),
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{days}d");
    }
    let years = days / 365;
    if hours < 24 * 365 * 8 {
        return match days % 365 {
            0 => format!("{years}y"),
            d => format!("{years}y{d}d"),
        };
    }
    format!("{years}y")
}

/// Merges tag maps into `key=value` pairs sorted by key, several values of
/// one key joined by commas: `kuma.io/service=backend version=v1,v2`.
pub fn tag_set<'a>(tag_maps: impl IntoIterator<Item = &'a Value>) -> String {
    let mut merged: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for tags in tag_maps {
        let Some(tags) = tags.as_object() else {
            continue;
        };
        for (k, v) in tags {
            let v = v.as_str().map_or_else(|| v.to_string(), str::to_string);
            merged.entry(k).or_default().insert(v);
        }
    }
    merged
        .into_iter()
        .map(|(k, vs)| format!("{k}={}", vs.into_iter().collect::<Vec<_>>().join(",")))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A counter that the API may write as a number or (protobuf style) a string.
pub fn counter(value: Option<&Value>) -> u64 {
    match value {
        Some(Value::Number(n)) => n.as_u64().unwrap_or(0),
        Some(Value::String(s)) => s.parse().unwrap_or(0),
        _ => 0,
    }
}

/// `on` or `off`.
pub fn on_off(on: bool) -> &'static str {
    if on { "on" } else { "off" }
}

/// A string field, or `""`.
pub fn text<'a>(value: &'a Value, pointer: &str) -> &'a str {
    value.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn durations_read_like_kubectl() {
        let cases = [
            (-5, "<invalid>"),
            (-1, "0s"),
            (0, "0s"),
            (5, "5s"),
            (119, "119s"),
            (120, "2m"),
            (200, "3m20s"),
            (180, "3m"),
            (60 * 45, "45m"),
            (3600 * 2, "120m"),
            (3600 * 3, "3h"),
            (3600 * 5 + 60 * 30, "5h30m"),
            (3600 * 20, "20h"),
            (86400 * 4, "4d"),
            (86400 * 4 + 3600 * 5, "4d5h"),
            (86400 * 30, "30d"),
            (86400 * 365 * 3, "3y"),
            (86400 * (365 * 3 + 10), "3y10d"),
            (86400 * 365 * 9, "9y"),
        ];
        for (secs, want) in cases {
            assert_eq!(human_duration(Duration::seconds(secs)), want, "{secs}s");
        }
    }

    #[test]
    fn age_is_measured_from_an_rfc3339_time() {
        let now = OffsetDateTime::parse("2024-01-02T00:00:00Z", &Rfc3339).unwrap();
        let then = parse_time(Some(&json!("2024-01-01T23:57:00Z")));
        assert_eq!(age(then, now), "3m");
        assert_eq!(age(parse_time(Some(&json!("garbage"))), now), UNKNOWN);
        assert_eq!(age(parse_time(None), now), UNKNOWN);
    }

    #[test]
    fn tags_merge_sorted_with_values_joined() {
        let a = json!({"version": "v1", "kuma.io/service": "backend"});
        let b = json!({"version": "v2", "kuma.io/service": "backend"});
        assert_eq!(tag_set([&a, &b]), "kuma.io/service=backend version=v1,v2");
        assert_eq!(tag_set([&json!(null)]), "");
    }

    #[test]
    fn counters_accept_numbers_and_strings() {
        assert_eq!(counter(Some(&json!(3))), 3);
        assert_eq!(counter(Some(&json!("7"))), 7);
        assert_eq!(counter(None), 0);
    }
}

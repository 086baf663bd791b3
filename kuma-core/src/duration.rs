//! Durations as Kuma writes them: `100ms`, `5s`, `1h30m`, `1d`, `10y`.
//!
//! Kuma's YAML uses Go-style duration strings (a sequence of decimal numbers
//! each followed by a unit), and its Mesh backends also use `d` (24 h) and `y`
//! (365 d). A [`KumaDuration`] remembers the text it was parsed from so that a
//! resource reads back exactly as it was written; equality compares the value.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// A duration parsed from (and written back as) Kuma's text form.
#[derive(Clone)]
pub struct KumaDuration {
    value: Duration,
    text: String,
}

/// Why a duration string did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid duration {text:?}: {reason}; expected a value like \"100ms\", \"5s\", \"1h30m\" or \"1d\""
)]
pub struct DurationError {
    text: String,
    reason: &'static str,
}

impl KumaDuration {
    /// A duration written in the most natural unit (`1500ms` -> `1.5s`).
    pub fn from_duration(value: Duration) -> Self {
        Self {
            value,
            text: format_duration(value),
        }
    }

    /// The duration value.
    pub fn as_duration(&self) -> Duration {
        self.value
    }

    /// The text form, as written by the user.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl PartialEq for KumaDuration {
    fn eq(&self, other: &Self) -> bool {
        self.value == other.value
    }
}

impl Eq for KumaDuration {}

impl std::hash::Hash for KumaDuration {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.value.hash(state)
    }
}

impl fmt::Debug for KumaDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.text)
    }
}

impl fmt::Display for KumaDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl From<Duration> for KumaDuration {
    fn from(d: Duration) -> Self {
        Self::from_duration(d)
    }
}

fn unit_nanos(unit: &str) -> Option<u128> {
    const S: u128 = 1_000_000_000;
    Some(match unit {
        "ns" => 1,
        "us" | "µs" | "μs" => 1_000,
        "ms" => 1_000_000,
        "s" => S,
        "m" => 60 * S,
        "h" => 3_600 * S,
        "d" => 86_400 * S,
        "y" => 365 * 86_400 * S,
        _ => return None,
    })
}

impl FromStr for KumaDuration {
    type Err = DurationError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let err = |reason| DurationError {
            text: text.to_string(),
            reason,
        };
        if text.is_empty() {
            return Err(err("it is empty"));
        }
        if text == "0" {
            return Ok(Self {
                value: Duration::ZERO,
                text: text.to_string(),
            });
        }
        let mut rest = text;
        let mut total: u128 = 0;
        while !rest.is_empty() {
            let num_len = rest
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .ok_or_else(|| err("a number has no unit"))?;
            if num_len == 0 {
                return Err(err("expected a number"));
            }
            let (num, after) = rest.split_at(num_len);
            let unit_len = after
                .find(|c: char| c.is_ascii_digit() || c == '.')
                .unwrap_or(after.len());
            let (unit, after) = after.split_at(unit_len);
            let per = unit_nanos(unit).ok_or_else(|| err("unknown unit"))?;
            let (int, frac) = match num.split_once('.') {
                Some((i, f)) => (i, f),
                None => (num, ""),
            };
            if (int.is_empty() && frac.is_empty()) || frac.contains('.') {
                return Err(err("malformed number"));
            }
            let int: u128 = if int.is_empty() {
                0
            } else {
                int.parse().map_err(|_| err("number too large"))?
            };
            let mut part = int.checked_mul(per).ok_or_else(|| err("value too large"))?;
            let mut scale = per;
            for d in frac.chars() {
                scale /= 10;
                part += u128::from(d.to_digit(10).unwrap_or(0)) * scale;
            }
            total = total
                .checked_add(part)
                .ok_or_else(|| err("value too large"))?;
            rest = after;
        }
        let secs = u64::try_from(total / 1_000_000_000).map_err(|_| err("value too large"))?;
        let nanos = (total % 1_000_000_000) as u32;
        Ok(Self {
            value: Duration::new(secs, nanos),
            text: text.to_string(),
        })
    }
}

/// Writes a duration the way Go's `time.Duration.String` would, minus the
/// units Kuma does not print: `1h30m0s` becomes `1h30m`.
fn format_duration(d: Duration) -> String {
    if d.is_zero() {
        return "0s".to_string();
    }
    let nanos = d.as_nanos();
    if nanos < 1_000_000_000 {
        if nanos.is_multiple_of(1_000_000) {
            return format!("{}ms", nanos / 1_000_000);
        }
        if nanos.is_multiple_of(1_000) {
            return format!("{}us", nanos / 1_000);
        }
        return format!("{nanos}ns");
    }
    let mut out = String::new();
    let total_secs = d.as_secs();
    let (h, m, s) = (total_secs / 3600, (total_secs / 60) % 60, total_secs % 60);
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    let sub = d.subsec_nanos();
    if s > 0 || sub > 0 {
        if sub == 0 {
            out.push_str(&format!("{s}s"));
        } else {
            let frac = format!("{sub:09}");
            out.push_str(&format!("{s}.{}s", frac.trim_end_matches('0')));
        }
    }
    out
}

impl serde::Serialize for KumaDuration {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> serde::Deserialize<'de> for KumaDuration {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Duration {
        s.parse::<KumaDuration>().unwrap().as_duration()
    }

    #[test]
    fn parses_go_style_and_kuma_units() {
        assert_eq!(p("100ms"), Duration::from_millis(100));
        assert_eq!(p("5s"), Duration::from_secs(5));
        assert_eq!(p("1h30m"), Duration::from_secs(5400));
        assert_eq!(p("1.5s"), Duration::from_millis(1500));
        assert_eq!(p("1d"), Duration::from_secs(86_400));
        assert_eq!(p("10y"), Duration::from_secs(10 * 365 * 86_400));
        assert_eq!(p("0"), Duration::ZERO);
        assert_eq!(p("250us"), Duration::from_micros(250));
    }

    #[test]
    fn rejects_bad_text() {
        for bad in [
            "",
            "5",
            "s",
            "5x",
            "1..5s",
            "-5s",
            "5 s",
            "99999999999999999999999y",
        ] {
            assert!(bad.parse::<KumaDuration>().is_err(), "{bad:?} should fail");
        }
    }

    #[test]
    fn keeps_the_written_text() {
        let d: KumaDuration = "90m".parse().unwrap();
        assert_eq!(d.as_str(), "90m");
        assert_eq!(d, "1h30m".parse().unwrap());
    }

    #[test]
    fn formats_naturally() {
        assert_eq!(format_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(format_duration(Duration::from_secs(5400)), "1h30m");
        assert_eq!(format_duration(Duration::from_millis(100)), "100ms");
        for d in [1u64, 999, 1000, 1001, 60_000, 3_600_000, 86_400_000] {
            let dur = Duration::from_millis(d);
            assert_eq!(p(&format_duration(dur)), dur);
        }
    }
}

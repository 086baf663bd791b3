//! Rules shared by several policy types: connection selectors, durations,
//! percentages and HTTP status codes.

use crate::duration::KumaDuration;
use crate::resource::{Selector, SelectorKeys, validate_selectors};
use crate::validation::{FieldPath, Validator};

/// Checks `sources` and `destinations` of a connection policy.
pub(crate) fn check_connection(
    path: &FieldPath,
    sources: &[Selector],
    source_keys: SelectorKeys,
    destinations: &[Selector],
    destination_keys: SelectorKeys,
    v: &mut Validator,
) {
    validate_selectors(&path.field("sources"), sources, source_keys, v);
    validate_selectors(
        &path.field("destinations"),
        destinations,
        destination_keys,
        v,
    );
}

/// Checks a required duration that must be greater than zero.
pub(crate) fn required_positive(path: &FieldPath, d: Option<&KumaDuration>, v: &mut Validator) {
    match d {
        None => v.violation(path, "must be set, e.g. \"5s\""),
        Some(d) => positive(path, d, v),
    }
}

/// Checks an optional duration: when set, it must be greater than zero.
pub(crate) fn optional_positive(path: &FieldPath, d: Option<&KumaDuration>, v: &mut Validator) {
    if let Some(d) = d {
        positive(path, d, v);
    }
}

fn positive(path: &FieldPath, d: &KumaDuration, v: &mut Validator) {
    if d.as_duration().is_zero() {
        v.violation(
            path,
            format!("must be greater than 0, got {:?}", d.as_str()),
        );
    }
}

/// Checks a percentage: a number in `0..=100`.
pub(crate) fn percentage(path: &FieldPath, p: f64, v: &mut Validator) {
    if !(0.0..=100.0).contains(&p) {
        v.violation(path, format!("must be in the range 0..=100, got {p}"));
    }
}

/// Checks a required percentage.
pub(crate) fn required_percentage(path: &FieldPath, p: Option<f64>, v: &mut Validator) {
    match p {
        None => v.violation(path, "must be set to a number in the range 0..=100"),
        Some(p) => percentage(path, p, v),
    }
}

/// Checks an HTTP status code: `100..=599`.
pub(crate) fn http_status(path: &FieldPath, code: u32, v: &mut Validator) {
    if !(100..=599).contains(&code) {
        v.violation(
            path,
            format!("{code} is not an HTTP status code: must be in the range 100..=599"),
        );
    }
}

/// Checks a count that, when set, must be greater than zero.
pub(crate) fn optional_nonzero(path: &FieldPath, n: Option<u32>, v: &mut Validator) {
    if n == Some(0) {
        v.violation(path, "must be greater than 0 when set");
    }
}

/// Test helpers shared by the policy tests.
#[cfg(test)]
pub(crate) mod testing {
    use crate::resource::Resource;

    /// Parses, validates and round-trips a resource, asserting that the
    /// output reads back equal and has the same content as the input.
    pub(crate) fn round_trip(yaml: &str) -> Resource {
        let res = Resource::from_yaml(yaml).unwrap_or_else(|e| panic!("parse: {e}\n{yaml}"));
        if let Err(e) = res.validate() {
            panic!("validate: {e}\n{yaml}");
        }
        let out = res.to_yaml();
        let back = Resource::from_yaml(&out).unwrap_or_else(|e| panic!("reparse: {e}\n{out}"));
        assert_eq!(back, res, "{out}");
        let input: serde_json::Value = serde_yaml_ng::from_str(yaml).unwrap();
        let output: serde_json::Value = serde_yaml_ng::from_str(&out).unwrap();
        assert_eq!(output, input, "written back differently:\n{out}");
        res
    }

    /// The field paths of every violation of a resource that parses but
    /// does not validate.
    pub(crate) fn violations(yaml: &str) -> Vec<String> {
        let res = Resource::from_yaml(yaml).unwrap_or_else(|e| panic!("parse: {e}\n{yaml}"));
        match res.validate() {
            Ok(()) => Vec::new(),
            Err(e) => e.violations.into_iter().map(|v| v.field).collect(),
        }
    }

    /// Asserts that a resource has exactly these violation paths.
    #[track_caller]
    pub(crate) fn assert_violations(yaml: &str, expected: &[&str]) {
        let got = violations(yaml);
        assert_eq!(got, expected, "for:\n{yaml}");
    }

    /// The field path of the decode error of a resource that does not parse.
    pub(crate) fn decode_error_path(yaml: &str) -> String {
        match Resource::from_yaml(yaml) {
            Ok(r) => panic!("unexpectedly parsed: {r:?}"),
            Err(e) => e
                .violations()
                .first()
                .map(|v| v.field.clone())
                .unwrap_or_default(),
        }
    }
}

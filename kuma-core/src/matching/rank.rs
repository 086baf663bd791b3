//! Selector ranks: whether a selector matches a tag set, and how specific the
//! match is.

use crate::resource::{Selector, Tags, WILDCARD};
use std::cmp::Ordering;
use std::ops::Add;

/// How specific a selector match is: the number of keys matched by an equal
/// value (`exact`) and by `*` (`wildcard`).
///
/// Ranks compare by the total number of matched keys first, then by the
/// number of exact matches, so `{service: web, version: *}` (2 keys) beats
/// `{service: web}` (1 key), and `{service: web}` beats `{service: *}`.
///
/// ```
/// use kuma_core::matching::Rank;
///
/// assert!(Rank::new(1, 1) > Rank::new(1, 0)); // more keys
/// assert!(Rank::new(1, 0) > Rank::new(0, 1)); // same keys, more exact
/// assert!(Rank::new(0, 2) > Rank::new(1, 0)); // keys count before exactness
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Rank {
    /// Keys matched by an equal value.
    pub exact: u32,
    /// Keys matched by `*`.
    pub wildcard: u32,
}

impl Rank {
    /// A rank of `exact` exact and `wildcard` wildcard matches.
    pub const fn new(exact: u32, wildcard: u32) -> Self {
        Self { exact, wildcard }
    }

    /// All matched keys.
    pub const fn total(self) -> u32 {
        self.exact.saturating_add(self.wildcard)
    }

    /// The rank a selector has when it matches: every key of a matching
    /// selector is matched, so the rank only depends on the selector.
    pub fn of_selector(selector: &Tags) -> Self {
        let mut rank = Rank::default();
        for v in selector.values() {
            if v == WILDCARD {
                rank.wildcard = rank.wildcard.saturating_add(1);
            } else {
                rank.exact = rank.exact.saturating_add(1);
            }
        }
        rank
    }
}

impl Ord for Rank {
    fn cmp(&self, other: &Self) -> Ordering {
        self.total()
            .cmp(&other.total())
            .then(self.exact.cmp(&other.exact))
    }
}

impl PartialOrd for Rank {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Add for Rank {
    type Output = Rank;

    /// Combines two ranks (a source rank and a destination rank).
    fn add(self, rhs: Rank) -> Rank {
        Rank {
            exact: self.exact.saturating_add(rhs.exact),
            wildcard: self.wildcard.saturating_add(rhs.wildcard),
        }
    }
}

/// Whether `selector` matches `tags`: every key of the selector is present in
/// `tags` with an equal value, or the selector's value is `*`.
///
/// An empty selector matches every tag set.
pub fn selector_matches(selector: &Tags, tags: &Tags) -> bool {
    selector.iter().all(|(k, v)| match tags.get(k) {
        Some(tv) => v == WILDCARD || v == tv,
        None => false,
    })
}

/// The rank of `selector` against `tags`, or `None` if it does not match.
///
/// ```
/// use kuma_core::matching::{match_rank, Rank};
/// use kuma_core::resource::Tags;
///
/// let tags: Tags = [("kuma.io/service".into(), "web".into()), ("version".into(), "v1".into())].into_iter().collect();
/// let sel: Tags = [("kuma.io/service".into(), "web".into()), ("version".into(), "*".into())].into_iter().collect();
/// assert_eq!(match_rank(&sel, &tags), Some(Rank::new(1, 1)));
/// let sel: Tags = [("region".into(), "*".into())].into_iter().collect();
/// assert_eq!(match_rank(&sel, &tags), None); // `*` needs the key to exist
/// ```
pub fn match_rank(selector: &Tags, tags: &Tags) -> Option<Rank> {
    let mut rank = Rank::default();
    for (k, v) in selector {
        let tv = tags.get(k)?;
        if v == WILDCARD {
            rank.wildcard = rank.wildcard.saturating_add(1);
        } else if v == tv {
            rank.exact = rank.exact.saturating_add(1);
        } else {
            return None;
        }
    }
    Some(rank)
}

/// The best rank of any of `selectors` against any of `tag_sets`, or `None`
/// if no selector matches any tag set.
///
/// This is how a Dataplane (whose tag sets are its inbounds' tags, or its
/// gateway's tags — see [`DataplaneSpec::tag_sets`]) is ranked against a
/// policy's selectors.
///
/// [`DataplaneSpec::tag_sets`]: crate::resource::DataplaneSpec::tag_sets
pub fn best_rank(selectors: &[Selector], tag_sets: &[&Tags]) -> Option<Rank> {
    selectors
        .iter()
        .flat_map(|s| tag_sets.iter().filter_map(|t| match_rank(&s.match_tags, t)))
        .max()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::matching::testutil::{Pairs, tags};

    #[test]
    fn rank_order() {
        let cases = [
            (Rank::new(2, 0), Rank::new(1, 0), Ordering::Greater),
            (Rank::new(1, 0), Rank::new(0, 1), Ordering::Greater),
            (Rank::new(0, 2), Rank::new(1, 0), Ordering::Greater),
            (Rank::new(1, 1), Rank::new(2, 0), Ordering::Less),
            (Rank::new(1, 1), Rank::new(1, 1), Ordering::Equal),
            (Rank::new(0, 0), Rank::new(0, 1), Ordering::Less),
        ];
        for (a, b, want) in cases {
            assert_eq!(a.cmp(&b), want, "{a:?} vs {b:?}");
        }
        assert_eq!(Rank::new(1, 2) + Rank::new(3, 4), Rank::new(4, 6));
    }

    #[test]
    fn match_table() {
        let t = tags(&[("kuma.io/service", "web"), ("version", "v1")]);
        let cases: &[(Pairs<'_>, Option<Rank>)] = &[
            (&[("kuma.io/service", "web")], Some(Rank::new(1, 0))),
            (&[("kuma.io/service", "*")], Some(Rank::new(0, 1))),
            (
                &[("kuma.io/service", "web"), ("version", "v1")],
                Some(Rank::new(2, 0)),
            ),
            (
                &[("kuma.io/service", "web"), ("version", "*")],
                Some(Rank::new(1, 1)),
            ),
            (&[("kuma.io/service", "api")], None),
            (&[("kuma.io/service", "web"), ("version", "v2")], None),
            // `*` requires the key to be present.
            (&[("region", "*")], None),
            (&[("kuma.io/service", "web"), ("region", "*")], None),
            // The empty selector matches everything, with rank 0.
            (&[], Some(Rank::new(0, 0))),
        ];
        for (sel, want) in cases {
            let sel = tags(sel);
            assert_eq!(match_rank(&sel, &t), *want, "{sel:?}");
            assert_eq!(selector_matches(&sel, &t), want.is_some(), "{sel:?}");
            if want.is_some() {
                assert_eq!(Rank::of_selector(&sel), want.unwrap_or_default());
            }
        }
    }

    #[test]
    fn best_rank_over_selectors_and_tag_sets() {
        let a = tags(&[("kuma.io/service", "web"), ("version", "v1")]);
        let b = tags(&[("kuma.io/service", "api")]);
        let sels = [
            Selector::new([("kuma.io/service", "*")]),
            Selector::new([("kuma.io/service", "api")]),
            Selector::new([("kuma.io/service", "web"), ("version", "v2")]),
        ];
        assert_eq!(best_rank(&sels, &[&a]), Some(Rank::new(0, 1)));
        assert_eq!(best_rank(&sels, &[&a, &b]), Some(Rank::new(1, 0)));
        assert_eq!(best_rank(&sels[2..], &[&a, &b]), None);
        assert_eq!(best_rank(&[], &[&a]), None);
        assert_eq!(best_rank(&sels, &[]), None);
    }
}

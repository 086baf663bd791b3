//! Property tests: determinism, order independence, `*` semantics, and that
//! the index agrees with the linear selection.

use super::testutil::{TestPolicy, dataplane, gateway};
use super::*;
use crate::resource::{DataplaneSpec, ResourceType, Selector, Tags, WILDCARD};
use proptest::prelude::*;

const SVC: &str = "kuma.io/service";
const KEYS: [&str; 3] = [SVC, "version", "region"];
const VALUES: [&str; 3] = ["a", "b", "c"];
/// A key no generated Dataplane has.
const ABSENT: &str = "absent";

fn all_types() -> Vec<ResourceType> {
    let mut v = PolicyKind::DATAPLANE_TYPES.to_vec();
    v.extend(PolicyKind::OUTBOUND_TYPES);
    v.extend(PolicyKind::INBOUND_TYPES);
    v
}

/// Tags with `kuma.io/service` and optionally other keys.
fn tag_set() -> impl Strategy<Value = Tags> {
    (
        0..3usize,
        prop::collection::vec((1..3usize, 0..3usize), 0..3),
    )
        .prop_map(|(svc, rest)| {
            let mut t = Tags::new();
            t.insert(SVC.into(), VALUES[svc].into());
            for (k, v) in rest {
                t.insert(KEYS[k].into(), VALUES[v].into());
            }
            t
        })
}

/// Tags over any keys, some possibly missing.
fn any_tags() -> impl Strategy<Value = Tags> {
    prop::collection::vec((0..3usize, 0..3usize), 0..4).prop_map(|kv| {
        kv.into_iter()
            .map(|(k, v)| (KEYS[k].to_string(), VALUES[v].to_string()))
            .collect()
    })
}

/// A selector with 1-2 keys; value index 3 is `*`.
fn selector() -> impl Strategy<Value = Selector> {
    prop::collection::vec((0..3usize, 0..4usize), 1..3).prop_map(|kv| Selector {
        match_tags: kv
            .into_iter()
            .map(|(k, v)| {
                (
                    KEYS[k].to_string(),
                    VALUES.get(v).copied().unwrap_or(WILDCARD).to_string(),
                )
            })
            .collect(),
    })
}

fn policy() -> impl Strategy<Value = TestPolicy> {
    (
        prop::sample::select(all_types()),
        prop::collection::vec(selector(), 1..3),
        prop::collection::vec(selector(), 1..3),
        prop::option::of(0..3i64),
    )
        .prop_map(|(ty, sources, destinations, created)| {
            let p = TestPolicy {
                ty,
                name: String::new(),
                created: None,
                selectors: sources.clone(),
                sources,
                destinations,
            };
            match created {
                Some(t) => p.at(t),
                None => p,
            }
        })
}

/// Policies with unique names (names unrelated to the order).
fn policies() -> impl Strategy<Value = Vec<TestPolicy>> {
    prop::collection::vec(policy(), 0..25).prop_map(|mut ps| {
        for (i, p) in ps.iter_mut().enumerate() {
            // Unique (37 is coprime with 1000), not in generation order.
            p.name = format!("p{:03}", (i * 37 + 11) % 1000);
        }
        ps
    })
}

fn dp() -> impl Strategy<Value = DataplaneSpec> {
    let services = prop::collection::vec(prop::sample::select(VALUES.to_vec()), 0..4);
    prop_oneof![
        3 => (prop::collection::vec(tag_set(), 1..4), services.clone()).prop_map(|(inbounds, outs)| {
            let mut d = dataplane(&[], &outs);
            d.networking.inbound = inbounds
                .into_iter()
                .zip(8080..)
                .map(|(tags, port)| crate::resource::Inbound { port, tags, ..Default::default() })
                .collect();
            d
        }),
        1 => (tag_set(), services).prop_map(|(t, outs)| {
            let mut d = gateway(&[], &outs);
            if let Some(g) = d.networking.gateway.as_mut() {
                g.tags = t;
            }
            d
        }),
    ]
}

/// A policy of `ty` that can never match a generated Dataplane: every
/// selector it has needs the absent key.
fn never_matching(ty: ResourceType, base: &TestPolicy) -> TestPolicy {
    let poison = |sels: &[Selector]| -> Vec<Selector> {
        sels.iter()
            .map(|s| {
                let mut s = s.clone();
                s.match_tags.insert(ABSENT.into(), WILDCARD.into());
                s
            })
            .collect()
    };
    let mut p = base.clone();
    p.ty = ty;
    p.name = "never".into();
    p.selectors = poison(&base.selectors);
    p.destinations = poison(&base.destinations);
    // Outbound policies are excluded by sources; inbound ones by
    // destinations (outbound destinations with extra keys never match
    // either).
    p.sources = poison(&base.sources);
    p
}

fn of_type(ps: &[TestPolicy], ty: ResourceType) -> Vec<TestPolicy> {
    ps.iter().filter(|p| p.ty == ty).cloned().collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn index_agrees_with_linear_selection(dp in dp(), ps in policies()) {
        let m = match_dataplane(&dp, &ps);
        prop_assert_eq!(&match_dataplane(&dp, &ps), &m, "deterministic");
        for ty in PolicyKind::DATAPLANE_TYPES {
            let sub = of_type(&ps, ty);
            prop_assert_eq!(select_dataplane_policy(&dp, &sub), m.dataplane_policy(ty));
        }
        for ty in PolicyKind::OUTBOUND_TYPES {
            let sub = of_type(&ps, ty);
            let linear = select_outbound_policies(&dp, &sub);
            prop_assert_eq!(Some(&linear), m.outbound_policies(ty));
        }
        for ty in PolicyKind::INBOUND_TYPES {
            let sub = of_type(&ps, ty);
            let linear = select_inbound_policies(&dp, &sub);
            prop_assert_eq!(Some(&linear[..]), m.inbound_policies(ty));
        }
    }

    #[test]
    fn order_independent(
        dp in dp(),
        (ps, shuffled) in policies().prop_flat_map(|ps| (Just(ps.clone()), Just(ps).prop_shuffle())),
    ) {
        prop_assert_eq!(match_dataplane(&dp, &ps), match_dataplane(&dp, &shuffled));
        for ty in PolicyKind::DATAPLANE_TYPES {
            let (a, b) = (of_type(&ps, ty), of_type(&shuffled, ty));
            prop_assert_eq!(select_dataplane_policy(&dp, &a), select_dataplane_policy(&dp, &b));
        }
        for ty in PolicyKind::OUTBOUND_TYPES {
            let (a, b) = (of_type(&ps, ty), of_type(&shuffled, ty));
            prop_assert_eq!(select_outbound_policies(&dp, &a), select_outbound_policies(&dp, &b));
        }
        for ty in PolicyKind::INBOUND_TYPES {
            let (a, b) = (of_type(&ps, ty), of_type(&shuffled, ty));
            prop_assert_eq!(select_inbound_policies(&dp, &a), select_inbound_policies(&dp, &b));
        }
    }

    #[test]
    fn wildcard_matches_exactly_tag_sets_with_the_keys(
        keys in prop::collection::btree_set(0..3usize, 1..4),
        tag_sets in prop::collection::vec(any_tags(), 0..4),
    ) {
        let sel: Tags = keys.iter().map(|k| (KEYS[*k].to_string(), WILDCARD.to_string())).collect();
        for t in &tag_sets {
            let has_keys = sel.keys().all(|k| t.contains_key(k));
            prop_assert_eq!(selector_matches(&sel, t), has_keys);
            prop_assert_eq!(
                match_rank(&sel, t),
                has_keys.then(|| Rank::new(0, u32::try_from(sel.len()).unwrap_or(u32::MAX)))
            );
        }
        let refs: Vec<&Tags> = tag_sets.iter().collect();
        let any = tag_sets.iter().any(|t| sel.keys().all(|k| t.contains_key(k)));
        prop_assert_eq!(best_rank(&[Selector { match_tags: sel.clone() }], &refs).is_some(), any);
    }

    #[test]
    fn wildcard_value_matches_like_any_value(
        t in any_tags(),
        sel in selector(),
    ) {
        // Replacing a `*` by the tag set's own value keeps the match and
        // turns a wildcard match into an exact one.
        let r = match_rank(&sel.match_tags, &t);
        let concrete: Tags = sel.match_tags.iter().map(|(k, v)| {
            let v = if v == WILDCARD { t.get(k).cloned().unwrap_or_else(|| v.clone()) } else { v.clone() };
            (k.clone(), v)
        }).collect();
        let rc = match_rank(&concrete, &t);
        prop_assert_eq!(r.is_some(), rc.is_some());
        if let (Some(r), Some(rc)) = (r, rc) {
            prop_assert_eq!(r.total(), rc.total());
            prop_assert_eq!(rc.wildcard, 0);
        }
    }

    #[test]
    fn adding_a_non_matching_policy_changes_nothing(
        dp in dp(),
        ps in policies(),
        base in policy(),
        ty in prop::sample::select(all_types()),
        at in 0..=25usize,
    ) {
        let before = match_dataplane(&dp, &ps);
        let mut more = ps.clone();
        more.insert(at.min(more.len()), never_matching(ty, &base));
        let after = match_dataplane(&dp, &more);
        prop_assert_eq!(before, after);
    }
}

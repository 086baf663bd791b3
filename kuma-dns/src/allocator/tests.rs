use super::*;
use proptest::prelude::*;
use std::collections::HashSet;

const DELAY: Duration = Duration::from_secs(60);

fn cidr(s: &str) -> Ipv4Net {
    s.parse().unwrap()
}

fn names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("svc-{i}")).collect()
}

/// Checks the invariants that must hold after every step.
fn check_invariants(a: &VipAllocator) {
    let mut seen = HashSet::new();
    for (service, vip) in a.vips() {
        assert!(a.cidr().contains(vip), "{vip} outside {}", a.cidr());
        assert!(a.offset(*vip).is_some(), "{vip} is not a usable address");
        assert!(seen.insert(*vip), "duplicate VIP {vip}");
        assert_eq!(a.by_vip.get(vip), Some(service));
        assert!(!a.cooling_set.contains_key(vip), "{vip} in use and cooling");
    }
    assert_eq!(a.by_vip.len(), a.by_service.len());
}

#[test]
fn sizes_of_small_and_large_ranges() {
    assert_eq!(VipAllocator::new(cidr("10.0.0.0/30"), DELAY).capacity(), 2);
    assert_eq!(VipAllocator::new(cidr("10.0.0.0/31"), DELAY).capacity(), 2);
    assert_eq!(VipAllocator::new(cidr("10.0.0.7/32"), DELAY).capacity(), 1);
    assert_eq!(
        VipAllocator::new(cidr("240.0.0.0/4"), DELAY).capacity(),
        (1 << 28) - 2
    );
    assert_eq!(
        VipAllocator::new(cidr("0.0.0.0/0"), DELAY).capacity(),
        (1 << 32) - 2
    );
}

#[test]
fn first_vips_are_sequential_and_stable() {
    let mut a = VipAllocator::new(cidr("240.0.0.0/4"), DELAY);
    let now = Instant::now();
    let out = a.sync(["web", "backend"], now);
    assert_eq!(
        out.assigned,
        [
            ("backend".to_string(), Ipv4Addr::new(240, 0, 0, 1)),
            ("web".to_string(), Ipv4Addr::new(240, 0, 0, 2))
        ]
    );
    let again = a.sync(["web", "backend", "redis"], now);
    assert_eq!(
        again.assigned,
        [("redis".to_string(), Ipv4Addr::new(240, 0, 0, 3))]
    );
    assert_eq!(a.get("backend"), Some(Ipv4Addr::new(240, 0, 0, 1)));
}

#[test]
fn tiny_range_exhausts_without_panicking_and_recovers_after_the_delay() {
    let mut a = VipAllocator::new(cidr("10.0.0.0/30"), DELAY);
    let t0 = Instant::now();
    let out = a.sync(["a", "b", "c"], t0);
    assert_eq!(out.assigned.len(), 2);
    assert_eq!(out.unallocated, ["c"]);
    // `a` goes away: its VIP cools down, so `c` still waits.
    let out = a.sync(["b", "c"], t0 + Duration::from_secs(1));
    assert_eq!(out.released.len(), 1);
    assert_eq!(out.unallocated, ["c"]);
    assert_eq!(a.next_reuse_at(), Some(t0 + Duration::from_secs(1) + DELAY));
    let out = a.sync(["b", "c"], t0 + Duration::from_secs(60));
    assert_eq!(out.unallocated, ["c"]);
    let out = a.sync(["b", "c"], t0 + Duration::from_secs(61));
    assert_eq!(
        out.assigned,
        [("c".to_string(), Ipv4Addr::new(10, 0, 0, 1))]
    );
    check_invariants(&a);
}

#[test]
fn restore_keeps_vips_and_refuses_conflicts() {
    let mut a = VipAllocator::new(cidr("240.0.0.0/4"), DELAY);
    let vip = Ipv4Addr::new(240, 0, 0, 9);
    assert_eq!(a.restore("web", vip), Ok(()));
    assert_eq!(a.restore("web", vip), Ok(()));
    assert_eq!(a.restore("api", vip), Err(RestoreRefused::Taken));
    assert_eq!(
        a.restore("web", Ipv4Addr::new(240, 0, 0, 10)),
        Err(RestoreRefused::ServiceHasVip)
    );
    assert_eq!(
        a.restore("db", Ipv4Addr::new(10, 0, 0, 1)),
        Err(RestoreRefused::OutsideCidr)
    );
    assert_eq!(
        a.restore("db", Ipv4Addr::new(240, 0, 0, 0)),
        Err(RestoreRefused::OutsideCidr)
    );
    let out = a.sync(["web", "db"], Instant::now());
    assert_eq!(
        out.assigned,
        [("db".to_string(), Ipv4Addr::new(240, 0, 0, 10))]
    );
    assert_eq!(a.get("web"), Some(vip));
}

#[test]
fn adopt_takes_over_entries_and_displaces_what_was_here() {
    let mut a = VipAllocator::new(cidr("240.0.0.0/4"), DELAY);
    let t0 = Instant::now();
    a.sync(["api", "web"], t0);
    let (api, web) = (a.get("api").unwrap(), a.get("web").unwrap());
    // Another process gave `web` api's address: `web` takes it, its own
    // address cools down and `api` is left without a VIP.
    assert_eq!(a.adopt("web", api, t0), Ok(true));
    assert_eq!(a.adopt("web", api, t0), Ok(false));
    check_invariants(&a);
    assert_eq!(a.get("api"), None);
    assert_eq!(a.cooling(), 1);
    let out = a.sync(["api", "web"], t0);
    assert_eq!(out.assigned.len(), 1);
    assert_ne!(a.get("api"), Some(web), "a cooling VIP was reused");
    // A cooling address can be adopted: it is in use again at once.
    assert_eq!(a.adopt("db", web, t0), Ok(true));
    assert_eq!(a.cooling(), 0);
    check_invariants(&a);
    assert_eq!(
        a.adopt("db", Ipv4Addr::new(10, 0, 0, 1), t0),
        Err(RestoreRefused::OutsideCidr)
    );
    // Releasing allocates nothing.
    let released = a.release_unless(|s| s == "db", t0);
    assert_eq!(released.len(), 2);
    assert_eq!(a.vips().len(), 1);
    assert_eq!(a.cooling(), 2);
    check_invariants(&a);
}

/// One step of a random history: the services that exist and how much
/// time passed since the previous step.
fn history(universe: usize) -> impl Strategy<Value = Vec<(Vec<bool>, u64)>> {
    prop::collection::vec(
        (prop::collection::vec(any::<bool>(), universe), 0u64..90),
        1..40,
    )
}

fn run_history(range: &str, universe: usize, steps: &[(Vec<bool>, u64)]) {
    let all = names(universe);
    let mut a = VipAllocator::new(cidr(range), DELAY);
    let start = Instant::now();
    let mut now = start;
    let mut freed_at: HashMap<Ipv4Addr, Instant> = HashMap::new();
    let mut previous: BTreeMap<String, Ipv4Addr> = BTreeMap::new();
    for (present, secs) in steps {
        now += Duration::from_secs(*secs);
        let wanted: Vec<&str> = all
            .iter()
            .zip(present)
            .filter(|(_, p)| **p)
            .map(|(s, _)| s.as_str())
            .collect();
        let busy_before = a.vips().len() + a.cooling();
        let out = a.sync(wanted.iter().copied(), now);
        check_invariants(&a);
        // Stable: a service that stays keeps its VIP.
        for s in &wanted {
            if let (Some(old), Some(new)) = (previous.get(*s), a.get(s)) {
                assert_eq!(old, &new, "{s} changed its VIP");
            }
        }
        // Freed VIPs are not reused before the delay.
        for (_, vip) in &out.released {
            freed_at.insert(*vip, now);
        }
        for (s, vip) in &out.assigned {
            if let Some(t) = freed_at.get(vip) {
                assert!(
                    now.duration_since(*t) >= DELAY,
                    "{vip} reused for {s} after {:?}",
                    now.duration_since(*t)
                );
            }
        }
        // Everyone is served while there is room; exhaustion only when full.
        if !out.unallocated.is_empty() {
            assert_eq!(
                (a.vips().len() + a.cooling()) as u64,
                a.capacity(),
                "unallocated with room left (busy before: {busy_before})"
            );
        }
        for s in &wanted {
            assert!(a.get(s).is_some() || out.unallocated.iter().any(|u| u == s));
        }
        previous = a.vips().clone();
    }
}

proptest! {
    #[test]
    fn tiny_cidr_histories(steps in history(6)) {
        run_history("192.168.7.4/30", 6, &steps);
    }

    #[test]
    fn small_cidr_histories(steps in history(20)) {
        run_history("10.1.0.0/28", 20, &steps);
    }

    #[test]
    fn huge_cidr_histories(steps in history(30)) {
        run_history("240.0.0.0/4", 30, &steps);
    }

    #[test]
    fn whole_ipv4_space_histories(steps in history(10)) {
        run_history("0.0.0.0/0", 10, &steps);
    }

    /// A follower that adopts the leader's map after every step holds the
    /// same VIPs, and when it takes over it keeps them and does not hand
    /// out a VIP the leader freed less than the reuse delay ago.
    #[test]
    fn a_follower_mirrors_the_leader_and_takes_over(steps in history(12), last in prop::collection::vec(any::<bool>(), 12)) {
        let all = names(12);
        let range = cidr("10.9.0.0/28");
        let mut leader = VipAllocator::new(range, DELAY);
        let mut follower = VipAllocator::new(range, DELAY);
        let mut now = Instant::now();
        let mut freed_at: HashMap<Ipv4Addr, Instant> = HashMap::new();
        for (present, secs) in &steps {
            now += Duration::from_secs(*secs);
            let wanted: Vec<&str> = all.iter().zip(present).filter(|(_, p)| **p).map(|(s, _)| s.as_str()).collect();
            for (_, vip) in leader.sync(wanted.iter().copied(), now).released {
                freed_at.insert(vip, now);
            }
            for (s, vip) in leader.vips() {
                let changes = follower.get(s) != Some(*vip);
                prop_assert_eq!(follower.adopt(s, *vip, now), Ok(changes));
            }
            follower.release_unless(|s| leader.vips().contains_key(s), now);
            prop_assert_eq!(follower.vips(), leader.vips());
            check_invariants(&follower);
        }
        let wanted: Vec<&str> = all.iter().zip(&last).filter(|(_, p)| **p).map(|(s, _)| s.as_str()).collect();
        let before = follower.vips().clone();
        let out = follower.sync(wanted.iter().copied(), now);
        check_invariants(&follower);
        for s in &wanted {
            if let Some(vip) = before.get(*s) {
                prop_assert_eq!(follower.get(s), Some(*vip));
            }
        }
        for (s, vip) in &out.assigned {
            if let Some(t) = freed_at.get(vip) {
                prop_assert!(now.duration_since(*t) >= DELAY, "{} reused for {}", vip, s);
            }
        }
    }

    /// A restart restores the persisted map and changes nothing.
    #[test]
    fn restart_keeps_every_vip(steps in history(12)) {
        let all = names(12);
        let mut a = VipAllocator::new(cidr("10.9.0.0/28"), DELAY);
        let mut now = Instant::now();
        let mut wanted: Vec<&str> = vec![];
        for (present, secs) in &steps {
            now += Duration::from_secs(*secs);
            wanted = all.iter().zip(present).filter(|(_, p)| **p).map(|(s, _)| s.as_str()).collect();
            a.sync(wanted.iter().copied(), now);
        }
        let mut b = VipAllocator::new(cidr("10.9.0.0/28"), DELAY);
        for (s, vip) in a.vips() {
            prop_assert_eq!(b.restore(s, *vip), Ok(()));
        }
        let out = b.sync(wanted.iter().copied(), now);
        prop_assert!(out.released.is_empty());
        for (s, vip) in a.vips() {
            prop_assert_eq!(b.get(s), Some(*vip));
        }
        check_invariants(&b);
    }
}

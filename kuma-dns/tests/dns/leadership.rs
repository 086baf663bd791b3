//! Several VIP controllers on one store, as several kuma-cp replicas on one
//! database: only the leader allocates and writes, every replica answers
//! the same VIPs, and leadership moves without changing any VIP.

use super::{dataplane, eventually, manager_with_meshes, query, serve, udp_exchange};
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{RData, RecordType};
use kuma_core::resource::{ResourceKey, ResourceType, Version};
use kuma_core::store::ResourceStore;
use kuma_dns::{
    DnsConfig, DnsError, KumaDns, MeshVips, PersistedVips, Saved, StorePersistence, VipPersistence,
};
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

/// One replica: its own table, its own controller, its leadership switch.
struct Replica {
    dns: KumaDns,
    lead: watch::Sender<bool>,
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), DnsError>>,
}

impl Replica {
    fn start(store: &Arc<dyn ResourceStore>, leading: bool) -> Self {
        let dns = KumaDns::new(DnsConfig::default()).unwrap();
        let (lead, leadership) = watch::channel(leading);
        let (stop, stopped) = oneshot::channel::<()>();
        let controller = dns
            .controller(store.clone(), StorePersistence::new(store.clone()))
            .with_leadership(leadership);
        let task = tokio::spawn(controller.run(async {
            let _ = stopped.await;
        }));
        Self {
            dns,
            lead,
            stop,
            task,
        }
    }

    /// What this replica's table answers for `services`.
    fn answers(&self, services: &[&str]) -> BTreeMap<String, Ipv4Addr> {
        services
            .iter()
            .filter_map(|s| Some((s.to_string(), self.dns.table().lookup(s)?)))
            .collect()
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        self.task.await.unwrap().unwrap();
    }
}

/// Every persisted service -> VIP, over all meshes.
async fn persisted(store: &Arc<dyn ResourceStore>) -> BTreeMap<String, Ipv4Addr> {
    let maps = StorePersistence::new(store.clone()).load().await.unwrap();
    maps.into_values().flat_map(|p| p.vips).collect()
}

/// The version of every persisted VIP Config.
async fn versions(store: &Arc<dyn ResourceStore>) -> BTreeMap<String, Version> {
    let maps = StorePersistence::new(store.clone()).load().await.unwrap();
    maps.into_iter().map(|(m, p)| (m, p.version)).collect()
}

/// Waits until `f` holds (async condition).
async fn until<F, Fut>(mut f: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    for _ in 0..2000 {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("condition not reached");
}

fn assert_unique(vips: &BTreeMap<String, Ipv4Addr>) {
    let distinct: BTreeSet<_> = vips.values().collect();
    assert_eq!(distinct.len(), vips.len(), "a VIP is shared: {vips:?}");
}

async fn delete_dataplane(store: &Arc<dyn ResourceStore>, mesh: &str, name: &str) {
    store
        .delete(&ResourceKey::new(ResourceType::Dataplane, Some(mesh), name))
        .await
        .unwrap();
}

#[tokio::test]
async fn one_leader_allocates_followers_answer_the_same_and_leadership_moves() {
    let (store, manager) = manager_with_meshes(&["default", "other"]).await;
    let a = Replica::start(&store, true);
    let b = Replica::start(&store, false);
    for (mesh, name, service) in [
        ("default", "web-1", "web"),
        ("default", "api-1", "api"),
        ("other", "web-2", "web"),
        ("other", "db-1", "db"),
    ] {
        manager
            .create(dataplane(mesh, name, service))
            .await
            .unwrap();
    }
    let first = ["web", "api", "db"];
    eventually(|| a.answers(&first).len() == 3 && b.answers(&first) == a.answers(&first)).await;
    let vips = a.answers(&first);
    assert_unique(&vips);
    until(|| async { persisted(&store).await == vips }).await;

    // The follower's DNS server, on real sockets, answers the leader's VIP.
    let server = serve(b.dns.clone()).await;
    let q = query("web.mesh.", RecordType::A, false).to_vec().unwrap();
    let answer = Message::from_vec(&udp_exchange(server.addr, &q).await.unwrap()).unwrap();
    assert_eq!(answer.metadata.response_code, ResponseCode::NoError);
    assert_eq!(answer.answers.len(), 1);
    assert_eq!(answer.answers[0].data, RData::A(A(vips["web"])));

    // Nobody leads: services come and go, but no replica allocates,
    // releases or writes, and both keep answering what is persisted.
    a.lead.send(false).unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let before = versions(&store).await;
    assert_eq!(before.len(), 2);
    manager
        .create(dataplane("default", "cache-1", "cache"))
        .await
        .unwrap();
    delete_dataplane(&store, "default", "api-1").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(versions(&store).await, before, "a follower wrote");
    assert_eq!(persisted(&store).await, vips);
    let all = ["web", "api", "db", "cache", "queue"];
    assert_eq!(a.answers(&all), vips);
    assert_eq!(b.answers(&all), vips);

    // `b` takes over: it keeps every VIP, releases `api`, gives `cache` a
    // new VIP (not the one `api` just freed), and `a` follows.
    b.lead.send(true).unwrap();
    eventually(|| b.answers(&all).contains_key("cache") && !b.answers(&all).contains_key("api"))
        .await;
    let after = b.answers(&all);
    assert_eq!(after["web"], vips["web"]);
    assert_eq!(after["db"], vips["db"]);
    assert!(
        !vips.values().any(|v| *v == after["cache"]),
        "cache got a VIP in use or cooling: {after:?} {vips:?}"
    );
    assert_unique(&after);
    eventually(|| a.answers(&all) == after).await;
    until(|| async { persisted(&store).await == after }).await;

    // And back to `a`, which allocates for a new service without collision.
    b.lead.send(false).unwrap();
    a.lead.send(true).unwrap();
    manager
        .create(dataplane("other", "queue-1", "queue"))
        .await
        .unwrap();
    eventually(|| a.answers(&all).contains_key("queue")).await;
    let last = a.answers(&all);
    for (service, vip) in &after {
        assert_eq!(last.get(service), Some(vip), "{service} changed its VIP");
    }
    assert!(!vips.values().any(|v| *v == last["queue"]));
    assert_unique(&last);
    eventually(|| b.answers(&all) == last).await;
    until(|| async { persisted(&store).await == last }).await;

    drop(server);
    a.stop().await;
    b.stop().await;
}

/// Two leaders at once (a failover's overlap), on two threads so their
/// writes interleave: conditional saves and adoption make them agree.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlapping_leaders_converge_on_one_map() {
    let (store, manager) = manager_with_meshes(&["default", "other"]).await;
    let a = Replica::start(&store, true);
    let b = Replica::start(&store, true);
    let services: Vec<String> = (0..30).map(|i| format!("svc-{i}")).collect();
    for (i, service) in services.iter().enumerate() {
        let mesh = if i % 2 == 0 { "default" } else { "other" };
        manager
            .create(dataplane(mesh, &format!("{service}-1"), service))
            .await
            .unwrap();
        tokio::task::yield_now().await;
    }
    let names: Vec<&str> = services.iter().map(String::as_str).collect();
    until(|| async {
        let vips = a.answers(&names);
        vips.len() == names.len() && b.answers(&names) == vips && persisted(&store).await == vips
    })
    .await;
    assert_unique(&a.answers(&names));
    a.stop().await;
    b.stop().await;
}

/// Store persistence whose first save loses a race: another leader saves
/// its own VIPs for the same services just before.
#[derive(Clone)]
struct LosesFirstRace {
    inner: StorePersistence,
    raced: Arc<AtomicBool>,
}

const RIVAL_BASE: u32 = u32::from_be_bytes([240, 0, 1, 0]);

impl VipPersistence for LosesFirstRace {
    async fn load(&self) -> Result<BTreeMap<String, PersistedVips>, DnsError> {
        self.inner.load().await
    }

    async fn save(
        &self,
        mesh: &str,
        vips: &MeshVips,
        expected: Option<Version>,
    ) -> Result<Saved, DnsError> {
        if !self.raced.swap(true, Ordering::SeqCst) {
            let rival: MeshVips = vips
                .keys()
                .enumerate()
                .map(|(i, s)| (s.clone(), Ipv4Addr::from(RIVAL_BASE + 1 + i as u32)))
                .collect();
            let won = self.inner.save(mesh, &rival, expected).await?;
            assert!(matches!(won, Saved::Written(Some(_))), "{won:?}");
        }
        self.inner.save(mesh, vips, expected).await
    }
}

#[tokio::test]
async fn a_lost_race_adopts_the_winners_vips() {
    let (store, manager) = manager_with_meshes(&["default"]).await;
    manager
        .create(dataplane("default", "api-1", "api"))
        .await
        .unwrap();
    manager
        .create(dataplane("default", "web-1", "web"))
        .await
        .unwrap();
    let persistence = LosesFirstRace {
        inner: StorePersistence::new(store.clone()),
        raced: Arc::new(AtomicBool::new(false)),
    };
    let dns = KumaDns::new(DnsConfig::default()).unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(
        dns.controller(store.clone(), persistence.clone())
            .run(async {
                let _ = stopped.await;
            }),
    );
    // The winner's VIPs (sorted services: api, web) stand, in the store
    // and in the table; ours were never written over them.
    let rival = BTreeMap::from([
        ("api".to_string(), Ipv4Addr::new(240, 0, 1, 1)),
        ("web".to_string(), Ipv4Addr::new(240, 0, 1, 2)),
    ]);
    let table = dns.table().clone();
    eventually(|| table.lookup("api") == Some(rival["api"])).await;
    assert_eq!(table.lookup("web"), Some(rival["web"]));
    assert!(persistence.raced.load(Ordering::SeqCst));
    until(|| async { persisted(&store).await == rival }).await;

    // A new service gets a VIP that neither side handed out.
    manager
        .create(dataplane("default", "db-1", "db"))
        .await
        .unwrap();
    eventually(|| table.lookup("db").is_some()).await;
    let db = table.lookup("db").unwrap();
    let ours = [Ipv4Addr::new(240, 0, 0, 1), Ipv4Addr::new(240, 0, 0, 2)];
    assert!(
        !rival.values().any(|v| *v == db) && !ours.contains(&db),
        "db got {db}"
    );
    until(|| async { persisted(&store).await.get("db") == Some(&db) }).await;
    let _ = stop.send(());
    task.await.unwrap().unwrap();
}

//! Library-level end-to-end tests: the VIP controller over a memory store,
//! and the DNS server on real UDP and TCP sockets on 127.0.0.1, queried
//! with hickory-proto as the client library. `leadership` runs several
//! controllers on one store, one of them leading.

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{Name, RData, RecordType};
use kuma_core::manager::ResourceManager;
use kuma_core::resource::{ConfigSpec, Resource, ResourceKey, ResourceType};
use kuma_core::store::{MemoryStore, ResourceStore};
use kuma_dns::{DnsConfig, KumaDns, MemoryPersistence, QueryResult, StorePersistence};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::oneshot;

#[path = "dns/leadership.rs"]
mod leadership;

fn dataplane(mesh: &str, name: &str, service: &str) -> Resource {
    Resource::from_yaml(&format!(
        "type: Dataplane\nmesh: {mesh}\nname: {name}\nnetworking:\n  address: 10.0.0.1\n  \
         inbound:\n  - port: 8080\n    tags: {{kuma.io/service: {service}}}\n"
    ))
    .unwrap()
}

async fn manager_with_meshes(meshes: &[&str]) -> (Arc<dyn ResourceStore>, ResourceManager) {
    let store: Arc<dyn ResourceStore> = Arc::new(MemoryStore::new());
    let manager = ResourceManager::new(store.clone());
    for m in meshes {
        manager
            .create(Resource::from_yaml(&format!("type: Mesh\nname: {m}")).unwrap())
            .await
            .unwrap();
    }
    (store, manager)
}

/// Waits (in tokio time) until `f` holds.
async fn eventually(mut f: impl FnMut() -> bool) {
    for _ in 0..2000 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("condition not reached");
}

#[tokio::test]
async fn controller_follows_the_store_and_persists() {
    let (store, manager) = manager_with_meshes(&["default", "other"]).await;
    manager
        .create(dataplane("default", "web-1", "web"))
        .await
        .unwrap();
    let dns = KumaDns::new(DnsConfig::default()).unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(
        dns.controller(store.clone(), StorePersistence::new(store.clone()))
            .run(async {
                let _ = stopped.await;
            }),
    );
    let table = dns.table().clone();
    eventually(|| table.lookup("web").is_some()).await;
    let web = table.lookup("web").unwrap();

    // The same service in another mesh shares the VIP.
    manager
        .create(dataplane("other", "web-2", "web"))
        .await
        .unwrap();
    manager
        .create(dataplane("other", "api-1", "api"))
        .await
        .unwrap();
    manager
        .create(
            Resource::from_yaml(
                "type: ExternalService\nmesh: other\nname: httpbin\nnetworking:\n  address: httpbin.org:80\n\
                 tags: {kuma.io/service: httpbin}\n",
            )
            .unwrap(),
        )
        .await
        .unwrap();
    eventually(|| table.lookup("api").is_some() && table.lookup("httpbin").is_some()).await;
    assert_eq!(table.lookup("web"), Some(web));

    // Persisted per mesh, as Kuma does.
    let key = ResourceKey::new(ResourceType::Config, None, "kuma-other-dns-vips");
    let mut persisted = String::new();
    for _ in 0..200 {
        if let Ok(r) = store.get(&key).await {
            persisted = r.spec_as::<ConfigSpec>().unwrap().config.clone();
            if persisted.contains("httpbin") {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let map: serde_json::Value = serde_json::from_str(&persisted).unwrap();
    assert_eq!(map["web"], web.to_string());
    assert_eq!(map.as_object().unwrap().len(), 3);

    // A removed service stops resolving.
    manager
        .delete(&ResourceKey::new(
            ResourceType::Dataplane,
            Some("other"),
            "api-1",
        ))
        .await
        .unwrap();
    eventually(|| table.lookup("api").is_none()).await;
    // Deleting a mesh removes its services (web stays: default has it).
    manager
        .delete(&ResourceKey::new(ResourceType::Mesh, None, "other"))
        .await
        .unwrap();
    eventually(|| table.lookup("httpbin").is_none()).await;
    assert_eq!(table.lookup("web"), Some(web));
    let _ = stop.send(());
    task.await.unwrap().unwrap();

    // A restart over the same store keeps every VIP.
    let again = KumaDns::new(DnsConfig::default()).unwrap();
    manager
        .create(dataplane("default", "zzz-1", "aaa-new"))
        .await
        .unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(
        again
            .controller(store.clone(), StorePersistence::new(store.clone()))
            .run(async {
                let _ = stopped.await;
            }),
    );
    eventually(|| again.table().lookup("aaa-new").is_some()).await;
    assert_eq!(again.table().lookup("web"), Some(web));
    assert_ne!(again.table().lookup("aaa-new"), Some(web));
    let _ = stop.send(());
    task.await.unwrap().unwrap();
}

#[tokio::test(start_paused = true)]
async fn freed_vips_wait_out_the_ttl_and_exhaustion_is_reported() {
    let (store, manager) = manager_with_meshes(&["default"]).await;
    // A /30 has two VIPs.
    let dns = KumaDns::new(DnsConfig::new("mesh", "10.0.0.0/30".parse().unwrap())).unwrap();
    let persistence = MemoryPersistence::new();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(
        dns.controller(store.clone(), persistence.clone())
            .run(async {
                let _ = stopped.await;
            }),
    );
    manager
        .create(dataplane("default", "a-1", "a"))
        .await
        .unwrap();
    manager
        .create(dataplane("default", "b-1", "b"))
        .await
        .unwrap();
    manager
        .create(dataplane("default", "c-1", "c"))
        .await
        .unwrap();
    let table = dns.table().clone();
    eventually(|| table.load().len() == 2).await;
    assert!(dns.metrics().exhaustions() > 0);
    let (a, b) = (table.lookup("a"), table.lookup("b"));
    assert!(a.is_some() && b.is_some() && table.lookup("c").is_none());

    // `a` goes away; `c` must wait the full 60 s for its VIP.
    let freed_at = tokio::time::Instant::now();
    manager
        .delete(&ResourceKey::new(
            ResourceType::Dataplane,
            Some("default"),
            "a-1",
        ))
        .await
        .unwrap();
    eventually(|| table.lookup("a").is_none()).await;
    tokio::time::sleep(Duration::from_secs(59)).await;
    assert_eq!(table.lookup("c"), None);
    eventually(|| table.lookup("c").is_some()).await;
    assert!(freed_at.elapsed() >= Duration::from_secs(60));
    assert_eq!(table.lookup("c"), a);
    assert_eq!(
        persistence.snapshot()["default"].get("c").copied(),
        a,
        "persisted"
    );
    let _ = stop.send(());
    task.await.unwrap().unwrap();
}

struct Server {
    addr: SocketAddr,
    dns: KumaDns,
    _stop: oneshot::Sender<()>,
}

async fn server(services: &[(&str, Ipv4Addr)]) -> Server {
    let dns = KumaDns::new(DnsConfig::default()).unwrap();
    dns.table().publish(
        &services
            .iter()
            .map(|(s, ip)| (s.to_string(), *ip))
            .collect(),
    );
    serve(dns).await
}

/// Serves `dns`'s table on 127.0.0.1 (UDP and TCP on one port) until the
/// returned [`Server`] is dropped.
async fn serve(dns: KumaDns) -> Server {
    // The UDP port is ephemeral; its TCP twin may belong to another process,
    // so try fresh ports until both halves bind.
    let mut attempt = 0;
    let (udp, tcp, addr) = loop {
        let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = udp.local_addr().unwrap();
        match TcpListener::bind(addr).await {
            Ok(tcp) => break (udp, tcp, addr),
            Err(e) if attempt < 50 => {
                attempt += 1;
                eprintln!("tcp {addr} taken ({e}); retrying");
            }
            Err(e) => panic!("no free udp+tcp port pair: {e}"),
        }
    };
    let (stop, stopped) = oneshot::channel::<()>();
    let srv = dns.server().unwrap();
    tokio::spawn(srv.serve(udp, tcp, async {
        let _ = stopped.await;
    }));
    Server {
        addr,
        dns,
        _stop: stop,
    }
}

fn query(name: &str, ty: RecordType, edns: bool) -> Message {
    let mut m = Message::new(7, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), ty));
    if edns {
        let mut e = Edns::new();
        e.set_max_payload(4096);
        m.set_edns(e);
    }
    m
}

async fn udp_exchange(addr: SocketAddr, bytes: &[u8]) -> Option<Vec<u8>> {
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    sock.send_to(bytes, addr).await.unwrap();
    let mut buf = vec![0u8; 4096];
    match tokio::time::timeout(Duration::from_millis(500), sock.recv(&mut buf)).await {
        Ok(Ok(n)) => Some(buf[..n].to_vec()),
        _ => None,
    }
}

async fn tcp_exchange(stream: &mut TcpStream, bytes: &[u8]) -> Message {
    stream
        .write_all(&(bytes.len() as u16).to_be_bytes())
        .await
        .unwrap();
    stream.write_all(bytes).await.unwrap();
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).await.unwrap();
    let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
    stream.read_exact(&mut buf).await.unwrap();
    Message::from_vec(&buf).unwrap()
}

#[tokio::test]
async fn every_answer_kind_over_udp_and_tcp() {
    let vip = Ipv4Addr::new(240, 0, 0, 1);
    let s = server(&[("backend", vip)]).await;
    let mut tcp = TcpStream::connect(s.addr).await.unwrap();
    let cases = [
        (
            "backend.mesh.",
            RecordType::A,
            ResponseCode::NoError,
            1,
            0,
            true,
        ),
        (
            "BACKEND.Mesh.",
            RecordType::A,
            ResponseCode::NoError,
            1,
            0,
            true,
        ),
        (
            "nope.mesh.",
            RecordType::A,
            ResponseCode::NXDomain,
            0,
            1,
            true,
        ),
        (
            "backend.mesh.",
            RecordType::AAAA,
            ResponseCode::NoError,
            0,
            1,
            true,
        ),
        (
            "backend.example.",
            RecordType::A,
            ResponseCode::Refused,
            0,
            0,
            false,
        ),
    ];
    for (name, ty, code, answers, authorities, aa) in cases {
        for edns in [false, true] {
            let q = query(name, ty, edns).to_vec().unwrap();
            let udp = Message::from_vec(&udp_exchange(s.addr, &q).await.unwrap()).unwrap();
            let tcp = tcp_exchange(&mut tcp, &q).await;
            for m in [udp, tcp] {
                assert_eq!(m.metadata.response_code, code, "{name} {ty}");
                assert_eq!(m.answers.len(), answers, "{name} {ty}");
                assert_eq!(m.authorities.len(), authorities, "{name} {ty}");
                assert_eq!(m.metadata.authoritative, aa, "{name} {ty}");
                assert_eq!(m.edns.is_some(), edns);
                if answers == 1 {
                    assert_eq!(m.answers[0].data, RData::A(A(vip)));
                    assert_eq!(m.answers[0].ttl, 60);
                }
            }
        }
    }
    // Answers follow the table immediately.
    s.dns.table().publish(&Default::default());
    let q = query("backend.mesh.", RecordType::A, false)
        .to_vec()
        .unwrap();
    let m = Message::from_vec(&udp_exchange(s.addr, &q).await.unwrap()).unwrap();
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    assert!(s.dns.metrics().queries(QueryResult::NoError) >= 8);
}

#[tokio::test]
async fn garbage_does_not_stop_the_server() {
    let s = server(&[("backend", Ipv4Addr::new(240, 0, 0, 1))]).await;
    let good = query("backend.mesh.", RecordType::A, false)
        .to_vec()
        .unwrap();
    // Too short for a header: dropped.
    assert_eq!(udp_exchange(s.addr, b"\x01\x02\x03").await, None);
    // A header and a broken question: FORMERR.
    let formerr = udp_exchange(s.addr, &good[..good.len() - 2]).await.unwrap();
    assert_eq!(
        Message::from_vec(&formerr).unwrap().metadata.response_code,
        ResponseCode::FormErr
    );
    for junk in [vec![0xffu8; 512], vec![0u8; 12], vec![0x80; 40]] {
        let _ = udp_exchange(s.addr, &junk).await;
    }
    // Garbage over TCP closes that connection only.
    let mut bad = TcpStream::connect(s.addr).await.unwrap();
    bad.write_all(&[0, 3, 1, 2, 3]).await.unwrap();
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(2), bad.read(&mut buf))
        .await
        .unwrap()
        .unwrap_or(0);
    assert_eq!(n, 0);
    // Still serving both transports.
    let m = Message::from_vec(&udp_exchange(s.addr, &good).await.unwrap()).unwrap();
    assert_eq!(m.answers.len(), 1);
    let mut tcp = TcpStream::connect(s.addr).await.unwrap();
    assert_eq!(tcp_exchange(&mut tcp, &good).await.answers.len(), 1);
    assert!(s.dns.metrics().queries(QueryResult::Dropped) >= 1);
}

#[tokio::test]
async fn one_client_gets_a_bounded_number_of_tcp_connections() {
    let s = server(&[("backend", Ipv4Addr::new(240, 0, 0, 1))]).await;
    let good = query("backend.mesh.", RecordType::A, false)
        .to_vec()
        .unwrap();
    let max = DnsConfig::default().max_tcp_connections_per_client;
    let mut open = Vec::new();
    for _ in 0..max {
        let mut c = TcpStream::connect(s.addr).await.unwrap();
        assert_eq!(tcp_exchange(&mut c, &good).await.answers.len(), 1);
        open.push(c);
    }
    // One more from the same address is closed at once.
    let mut extra = TcpStream::connect(s.addr).await.unwrap();
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(2), extra.read(&mut buf))
        .await
        .expect("closed at once")
        .unwrap_or(0);
    assert_eq!(n, 0);
    // A slot freed is a slot to use again.
    drop(open.pop());
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut again = TcpStream::connect(s.addr).await.unwrap();
    assert_eq!(tcp_exchange(&mut again, &good).await.answers.len(), 1);
}

#[tokio::test]
async fn a_client_that_never_reads_blocks_nobody() {
    let dns = KumaDns::new(DnsConfig {
        tcp_idle_timeout: Duration::from_secs(1),
        ..DnsConfig::default()
    })
    .unwrap();
    dns.table().publish(
        &[("backend".to_string(), Ipv4Addr::new(240, 0, 0, 1))]
            .into_iter()
            .collect(),
    );
    let s = serve(dns).await;
    let good = query("backend.mesh.", RecordType::A, false)
        .to_vec()
        .unwrap();
    // Queries enough that their answers fill every socket buffer, never read.
    let mut flood = Vec::new();
    for _ in 0..200_000 {
        flood.extend_from_slice(&(good.len() as u16).to_be_bytes());
        flood.extend_from_slice(&good);
    }
    let stalled = TcpStream::connect(s.addr).await.unwrap();
    let (mut reader, mut writer) = stalled.into_split();
    let writing = tokio::spawn(async move { writer.write_all(&flood).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Meanwhile others are answered.
    let mut other = TcpStream::connect(s.addr).await.unwrap();
    assert_eq!(tcp_exchange(&mut other, &good).await.answers.len(), 1);
    // The stalled connection is closed once an answer could not be written
    // for the idle timeout: the flood stops being accepted, and what was
    // answered ends with EOF.
    let _ = tokio::time::timeout(Duration::from_secs(10), writing)
        .await
        .expect("the server stopped taking the flood");
    let mut answers = Vec::new();
    let ended =
        tokio::time::timeout(Duration::from_secs(10), reader.read_to_end(&mut answers)).await;
    assert!(ended.is_ok(), "the connection stayed open");
}

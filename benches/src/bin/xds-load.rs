//! xDS load: thousands of Envoy-like ADS streams against a real kuma-cp.
//!
//! Starts `kuma-cp run` itself (every port ephemeral, read from its log),
//! registers a mesh of `--services` x `--instances` Dataplanes with
//! `--outbounds` outbounds each (plus a few policies of every kind, see
//! `kuma_benches::fixture`) through the HTTP API, opens one state-of-the-world
//! ADS stream per Dataplane (node id `default.<name>`, one HTTP/2 connection
//! per stream as Envoy has), and behaves like Envoy: subscribes to CDS and
//! LDS by wildcard, to EDS for the EDS clusters it received, and ACKs every
//! response with its version and nonce. It reports:
//!
//! - time to first full config (CDS, EDS of every cluster, LDS all ACKed)
//!   per stream, p50/p99, and how many stream attempts failed before it
//!   (refused or reset at connect; retried as Envoy does, 250 ms doubling
//!   up to 1 s; `--connect-concurrency 10000` opens all at once);
//! - after one Dataplane's inbound port changes: the time until every
//!   stream calling its service has ACKed endpoints with the new port;
//! - after the mesh-wide Timeout changes: the time until every stream has
//!   ACKed clusters with the new connect timeout, and the CPU time kuma-cp
//!   and this tool used meanwhile (both share the machine's cores: the
//!   change cannot reach every stream sooner than their CPU time over the
//!   cores);
//! - kuma-cp's RSS (`VmRSS`) empty, after registration, with every stream
//!   served, and at the end; per Dataplane, and per connected proxy (RSS
//!   serving minus RSS registered, over the streams served).
//!
//! `--no-changes` stops after the streams are served (RSS measured), which
//! is the state to look at under a heap profiler (`--kuma-cp` may name a
//! script that runs kuma-cp under one).
//!
//! Everything is on loopback and bounded by `--deadline` seconds per phase;
//! the tool stops kuma-cp and exits by itself. Use `benches/xds-load.sh`,
//! which raises the open-file limit.

use anyhow::{Context, Result, anyhow, bail};
use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::cluster::v3::cluster::{ClusterDiscoveryType, DiscoveryType};
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::config::core::v3::address::Address as AddressKind;
use envoy_types::pb::envoy::config::core::v3::socket_address::PortSpecifier;
use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use envoy_types::pb::envoy::config::endpoint::v3::lb_endpoint::HostIdentifier;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use envoy_types::pb::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};
use kuma_benches::fixture::{MESH, Shape, mesh_yaml, policies_yaml, timeout_all_yaml};
use prost::Message;
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, mpsc as std_mpsc};
use std::time::{Duration, Instant};
use tokio::sync::{Semaphore, mpsc};
use tokio_stream::wrappers::ReceiverStream;

const CDS: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
const EDS: &str = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";
const LDS: &str = "type.googleapis.com/envoy.config.listener.v3.Listener";

/// The port the changed Dataplane's inbound moves to.
const NEW_PORT: u32 = 8181;
/// The mesh-wide Timeout's new connect timeout, in seconds.
const NEW_CONNECT_TIMEOUT: i64 = 7;

struct Args {
    shape: Shape,
    kuma_cp: String,
    deadline: Duration,
    connect_concurrency: usize,
    no_changes: bool,
}

fn usage() -> ! {
    eprintln!(
        "usage: xds-load [--services N(1000)] [--instances N(10)] [--outbounds N(20)] \
         [--kuma-cp PATH(target/release/kuma-cp)] [--deadline SECS(300)] \
         [--connect-concurrency N(256)] [--no-changes]"
    );
    std::process::exit(2)
}

fn args() -> Result<Args> {
    let mut a = Args {
        shape: Shape::LARGE,
        kuma_cp: "target/release/kuma-cp".into(),
        deadline: Duration::from_secs(300),
        connect_concurrency: 256,
        no_changes: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| usage());
        match flag.as_str() {
            "--services" => a.shape.services = value().parse()?,
            "--instances" => a.shape.instances = value().parse()?,
            "--outbounds" => a.shape.outbounds = value().parse()?,
            "--kuma-cp" => a.kuma_cp = value(),
            "--deadline" => a.deadline = Duration::from_secs(value().parse()?),
            "--connect-concurrency" => a.connect_concurrency = value().parse()?,
            "--no-changes" => a.no_changes = true,
            _ => usage(),
        }
    }
    if a.shape.services < a.shape.outbounds + 1 {
        bail!("need more services than outbounds");
    }
    Ok(a)
}

/// A kuma-cp child process, killed on drop.
struct KumaCp {
    child: Child,
    xds: String,
    api: String,
    admin: String,
}

impl Drop for KumaCp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_kuma_cp(bin: &str) -> Result<KumaCp> {
    let mut cmd = Command::new(bin);
    cmd.arg("run")
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for v in [
        "KUMA_API_SERVER_PORT",
        "KUMA_XDS_SERVER_GRPC_PORT",
        "KUMA_BOOTSTRAP_SERVER_PORT",
        "KUMA_XDS_SERVER_DIAGNOSTICS_PORT",
        "KUMA_DNS_SERVER_PORT",
        "KUMA_SDS_SERVER_GRPC_PORT",
        "KUMA_ADMIN_SERVER_LOCAL_PORT",
        "KUMA_MONITORING_ASSIGNMENT_SERVER_GRPC_PORT",
    ] {
        cmd.env(v, "0");
    }
    // The load streams measure ADS, not dataplane token checks, nor the
    // durable writes of the registration (and a run leaves nothing behind).
    cmd.env("KUMA_DP_SERVER_AUTH_TYPE", "none")
        .env("KUMA_STORE_TYPE", "memory");
    let mut child = cmd.spawn().with_context(|| format!("starting {bin}"))?;
    let stderr = child.stderr.take().context("kuma-cp stderr")?;
    let (tx, rx) = std_mpsc::channel::<(String, String)>();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            for server in ["xds", "api", "admin"] {
                let tag = format!("server=\"{server}\" address=");
                if let Some(rest) = line.split_once(&tag).map(|(_, r)| r) {
                    let addr = rest.split_whitespace().next().unwrap_or("");
                    let _ = tx.send((server.to_string(), addr.to_string()));
                }
            }
            if line.contains("ERROR") || line.contains("WARN") {
                eprintln!("kuma-cp: {line}");
            }
        }
    });
    let (mut xds, mut api, mut admin) = (None, None, None);
    let started = Instant::now();
    while xds.is_none() || api.is_none() || admin.is_none() {
        let left = Duration::from_secs(30).saturating_sub(started.elapsed());
        let (server, addr) = rx
            .recv_timeout(left)
            .map_err(|_| anyhow!("kuma-cp did not log its xds, api and admin addresses in 30 s"))?;
        let port = addr
            .rsplit(':')
            .next()
            .context("address without port")?
            .to_string();
        let local = format!("127.0.0.1:{port}");
        match server.as_str() {
            "xds" => xds = Some(local),
            "admin" => admin = Some(local),
            _ => api = Some(local),
        }
    }
    Ok(KumaCp {
        child,
        xds: xds.context("xds")?,
        api: api.context("api")?,
        admin: admin.context("admin")?,
    })
}

fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

/// CPU time (user + system) the process `pid` (`None`: this one) has
/// used so far, from `/proc/<pid>/stat` (clock ticks of 10 ms on Linux).
fn cpu_time(pid: Option<u32>) -> Duration {
    let path = pid.map_or("/proc/self/stat".to_string(), |p| format!("/proc/{p}/stat"));
    let stat = std::fs::read_to_string(path).unwrap_or_default();
    // Fields after the command name (which may hold spaces) ends with `)`:
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after it.
    let ticks: u64 = stat
        .rsplit_once(')')
        .map(|(_, rest)| {
            rest.split_whitespace()
                .skip(11)
                .take(2)
                .filter_map(|t| t.parse::<u64>().ok())
                .sum()
        })
        .unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

fn put(agent: &ureq::Agent, api: &str, path: &str, yaml: &str) -> Result<()> {
    let url = format!("http://{api}{path}");
    let mut r = agent
        .put(&url)
        .header("content-type", "application/yaml")
        .send(yaml)
        .with_context(|| format!("PUT {url}"))?;
    let status = r.status();
    if !status.is_success() {
        let body = r.body_mut().read_to_string().unwrap_or_default();
        bail!("PUT {url}: {status}: {body}");
    }
    Ok(())
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into()
}

fn register(api: &str, shape: Shape) -> Result<()> {
    let a = agent();
    put(&a, api, &format!("/meshes/{MESH}"), &mesh_yaml())?;
    for p in policies_yaml() {
        let r = kuma_benches::core::resource::Resource::from_yaml(&p)?;
        let path = format!(
            "/meshes/{MESH}/{}/{}",
            r.resource_type().path(),
            r.meta.name
        );
        put(&a, api, &path, &p)?;
    }
    let next = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let next = next.clone();
            let api = api.to_string();
            std::thread::spawn(move || -> Result<()> {
                let a = agent();
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= shape.dataplanes() {
                        return Ok(());
                    }
                    let path = format!("/meshes/{MESH}/dataplanes/{}", shape.dataplane_name(n));
                    put(&a, &api, &path, &shape.dataplane_yaml(n, 8080))?;
                }
            })
        })
        .collect();
    for t in threads {
        t.join()
            .map_err(|_| anyhow!("registration thread panicked"))??;
    }
    Ok(())
}

/// When each stream reached each milestone, in µs since `base` (+1; 0:
/// not yet).
struct Milestones {
    base: Instant,
    first_config: Vec<AtomicU64>,
    endpoint: Vec<AtomicU64>,
    policy: Vec<AtomicU64>,
    errors: AtomicUsize,
    /// Stream attempts that failed before their stream's first full config
    /// (refused or reset at connect, typically) and were retried.
    early_failures: AtomicUsize,
    /// Those of them whose error says the connection was reset.
    resets: AtomicUsize,
    /// Set before kuma-cp is stopped: stream errors are expected then.
    stopping: std::sync::atomic::AtomicBool,
}

impl Milestones {
    fn mark(&self, which: &[AtomicU64], i: usize) {
        let us = self.base.elapsed().as_micros() as u64 + 1;
        let _ = which[i].compare_exchange(0, us, Ordering::Relaxed, Ordering::Relaxed);
    }
}

fn at(v: &AtomicU64) -> Option<u64> {
    match v.load(Ordering::Relaxed) {
        0 => None,
        us => Some(us - 1),
    }
}

fn request(
    node: Option<&Node>,
    type_url: &str,
    names: Vec<String>,
    version: &str,
    nonce: &str,
) -> DiscoveryRequest {
    DiscoveryRequest {
        node: node.cloned(),
        type_url: type_url.into(),
        resource_names: names,
        version_info: version.into(),
        response_nonce: nonce.into(),
        ..Default::default()
    }
}

/// One Envoy-like ADS stream; `changed_service` is the service whose
/// endpoints move to [`NEW_PORT`].
async fn stream(
    channel: tonic::transport::Channel,
    i: usize,
    name: String,
    changed_service: String,
    m: Arc<Milestones>,
    connect: Arc<Semaphore>,
) -> Result<()> {
    let permit = connect.acquire_owned().await?;
    let opened = m.base.elapsed().as_micros() as u64;
    let node = Node {
        id: format!("{MESH}.{name}"),
        cluster: name.clone(),
        ..Default::default()
    };
    let (tx, rx) = mpsc::channel::<DiscoveryRequest>(16);
    tx.send(request(Some(&node), CDS, vec![], "", "")).await?;
    tx.send(request(None, LDS, vec![], "", "")).await?;
    let mut client =
        AggregatedDiscoveryServiceClient::new(channel).max_decoding_message_size(64 << 20);
    let mut responses = client
        .stream_aggregated_resources(ReceiverStream::new(rx))
        .await?
        .into_inner();
    let mut permit = Some(permit);
    let mut eds_names: Vec<String> = Vec::new();
    let (mut eds_version, mut eds_nonce) = (String::new(), String::new());
    let (mut cds_ok, mut eds_ok, mut lds_ok) = (false, false, false);
    while let Some(r) = responses.message().await? {
        let DiscoveryResponse {
            version_info,
            nonce,
            type_url,
            resources,
            ..
        } = r;
        match type_url.as_str() {
            CDS => {
                let mut names = BTreeSet::new();
                let mut policy_seen = false;
                for any in &resources {
                    let c = Cluster::decode(any.value.as_slice())?;
                    if c.cluster_discovery_type
                        == Some(ClusterDiscoveryType::Type(DiscoveryType::Eds as i32))
                    {
                        policy_seen |= c
                            .connect_timeout
                            .as_ref()
                            .is_some_and(|d| d.seconds == NEW_CONNECT_TIMEOUT);
                        names.insert(c.name);
                    }
                }
                let names: Vec<String> = names.into_iter().collect();
                if names != eds_names {
                    // Like Envoy: the new clusters subscribe to their
                    // endpoints before the CDS response is ACKed.
                    eds_names = names;
                    tx.send(request(
                        None,
                        EDS,
                        eds_names.clone(),
                        &eds_version,
                        &eds_nonce,
                    ))
                    .await?;
                }
                tx.send(request(None, CDS, vec![], &version_info, &nonce))
                    .await?;
                cds_ok = true;
                if policy_seen {
                    m.mark(&m.policy, i);
                }
            }
            EDS => {
                let mut changed_seen = false;
                for any in &resources {
                    let cla = ClusterLoadAssignment::decode(any.value.as_slice())?;
                    if cla.cluster_name != changed_service {
                        continue;
                    }
                    changed_seen |= cla.endpoints.iter().flat_map(|l| &l.lb_endpoints).any(|e| {
                        match &e.host_identifier {
                            Some(HostIdentifier::Endpoint(ep)) => matches!(
                                ep.address.as_ref().and_then(|a| a.address.as_ref()),
                                Some(AddressKind::SocketAddress(s))
                                    if s.port_specifier == Some(PortSpecifier::PortValue(NEW_PORT))
                            ),
                            _ => false,
                        }
                    });
                }
                eds_version = version_info.clone();
                eds_nonce = nonce.clone();
                tx.send(request(None, EDS, eds_names.clone(), &version_info, &nonce))
                    .await?;
                eds_ok = resources.len() >= eds_names.len();
                if changed_seen {
                    m.mark(&m.endpoint, i);
                }
            }
            LDS => {
                tx.send(request(None, LDS, vec![], &version_info, &nonce))
                    .await?;
                lds_ok = true;
            }
            other => {
                tx.send(request(None, other, vec![], &version_info, &nonce))
                    .await?;
            }
        }
        if cds_ok && eds_ok && lds_ok && permit.is_some() {
            permit = None;
            let us = m.base.elapsed().as_micros() as u64 - opened + 1;
            let _ = m.first_config[i].compare_exchange(0, us, Ordering::Relaxed, Ordering::Relaxed);
        }
    }
    Ok(())
}

fn percentiles(mut v: Vec<u64>) -> String {
    if v.is_empty() {
        return "n/a".into();
    }
    v.sort_unstable();
    let p = |q: usize| v[(v.len() * q / 100).min(v.len() - 1)] as f64 / 1000.0;
    format!(
        "p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms (n={})",
        p(50),
        p(99),
        v[v.len() - 1] as f64 / 1000.0,
        v.len()
    )
}

async fn wait_for(which: &[AtomicU64], expected: &[usize], deadline: Duration) -> Duration {
    let t = Instant::now();
    while t.elapsed() < deadline {
        if expected.iter().all(|&i| at(&which[i]).is_some()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    t.elapsed()
}

fn main() -> Result<()> {
    let args = args()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(run(args))
}

async fn run(args: Args) -> Result<()> {
    let shape = args.shape;
    let n = shape.dataplanes();
    let cp = start_kuma_cp(&args.kuma_cp)?;
    let pid = cp.child.id();
    println!(
        "kuma-cp pid {pid}: xds {}, api {}; mesh: {} services x {} instances = {n} Dataplanes, {} outbounds each",
        cp.xds, cp.api, shape.services, shape.instances, shape.outbounds
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rss_empty = rss_kb(pid);

    let t = Instant::now();
    let api = cp.api.clone();
    tokio::task::spawn_blocking(move || register(&api, shape)).await??;
    let register_time = t.elapsed();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_registered = rss_kb(pid);
    println!("registered {n} Dataplanes in {register_time:.1?}");

    let m = Arc::new(Milestones {
        base: Instant::now(),
        first_config: (0..n).map(|_| AtomicU64::new(0)).collect(),
        endpoint: (0..n).map(|_| AtomicU64::new(0)).collect(),
        policy: (0..n).map(|_| AtomicU64::new(0)).collect(),
        errors: AtomicUsize::new(0),
        early_failures: AtomicUsize::new(0),
        resets: AtomicUsize::new(0),
        stopping: std::sync::atomic::AtomicBool::new(false),
    });
    // The Dataplane whose port changes: the first instance of the middle
    // service; the streams calling it: the instances of the services
    // before it.
    let changed = (shape.services / 2) * shape.instances;
    let changed_service = shape.service(shape.services / 2);
    let consumers: Vec<usize> = (0..n)
        .filter(|&k| {
            let s = k / shape.instances;
            (1..=shape.outbounds).any(|o| (s + o) % shape.services == shape.services / 2)
        })
        .collect();

    let connect = Arc::new(Semaphore::new(args.connect_concurrency));
    // ADS speaks TLS only: trust the control plane's CA, as kuma-dp's
    // bootstrap tells Envoy to.
    let ca_url = format!("http://{}/control-plane/ca-cert", cp.admin);
    let ca_pem = tokio::task::spawn_blocking(move || -> Result<String> {
        let mut r = agent()
            .get(&ca_url)
            .call()
            .with_context(|| format!("GET {ca_url}"))?;
        Ok(r.body_mut().read_to_string()?)
    })
    .await??;
    let tls = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(ca_pem))
        .domain_name("localhost");
    let endpoint = tonic::transport::Endpoint::from_shared(format!("https://{}", cp.xds))?
        .tls_config(tls)?
        .tcp_nodelay(true);
    for i in 0..n {
        let endpoint = endpoint.clone();
        let (m, connect, changed_service) = (m.clone(), connect.clone(), changed_service.clone());
        let name = shape.dataplane_name(i);
        tokio::spawn(async move {
            // Like Envoy, a stream that fails before it has its config is
            // opened again, waiting as kuma-cp's bootstrap tells Envoy to
            // (250 ms doubling up to 1 s).
            let mut retry = Duration::from_millis(250);
            loop {
                let result = stream(
                    endpoint.connect_lazy(),
                    i,
                    name.clone(),
                    changed_service.clone(),
                    m.clone(),
                    connect.clone(),
                )
                .await;
                let Err(e) = result else { return };
                if m.stopping.load(Ordering::Relaxed) {
                    return;
                }
                if at(&m.first_config[i]).is_none() {
                    let text = format!("{e:#}");
                    if text.to_ascii_lowercase().contains("reset") {
                        m.resets.fetch_add(1, Ordering::Relaxed);
                    }
                    if m.early_failures.fetch_add(1, Ordering::Relaxed) < 3 {
                        eprintln!("stream {name} failed before its config (retrying): {text}");
                    }
                    tokio::time::sleep(retry).await;
                    retry = (retry * 2).min(Duration::from_secs(1));
                    continue;
                }
                if m.errors.fetch_add(1, Ordering::Relaxed) < 5 {
                    eprintln!("stream {name}: {e:#}");
                }
                return;
            }
        });
    }
    let all: Vec<usize> = (0..n).collect();
    let took = wait_for(&m.first_config, &all, args.deadline).await;
    let first: Vec<u64> = m.first_config.iter().filter_map(at).collect();
    let reached = first.len();
    println!(
        "first full config: {reached}/{n} streams in {took:.1?} (connect concurrency {}); per stream {}",
        args.connect_concurrency,
        percentiles(first)
    );
    println!(
        "stream attempts failed before their first config (retried): {} ({} connection resets)",
        m.early_failures.load(Ordering::Relaxed),
        m.resets.load(Ordering::Relaxed)
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_served = rss_kb(pid);
    let per_connected =
        rss_served.saturating_sub(rss_registered) as f64 * 1024.0 / reached.max(1) as f64 / 1000.0;
    println!(
        "kuma-cp RSS: registered {} MB, serving {reached} streams {} MB: {per_connected:.1} KB per connected proxy",
        rss_registered / 1024,
        rss_served / 1024
    );
    if args.no_changes {
        m.stopping.store(true, Ordering::Relaxed);
        drop(cp);
        std::process::exit(0);
    }

    // An endpoint change.
    let api = cp.api.clone();
    let yaml = shape.dataplane_yaml(changed, NEW_PORT);
    let path = format!(
        "/meshes/{MESH}/dataplanes/{}",
        shape.dataplane_name(changed)
    );
    let t0 = m.base.elapsed().as_micros() as u64;
    tokio::task::spawn_blocking(move || put(&agent(), &api, &path, &yaml)).await??;
    let took = wait_for(
        &m.endpoint,
        &consumers,
        args.deadline.min(Duration::from_secs(120)),
    )
    .await;
    let lat: Vec<u64> = consumers
        .iter()
        .filter_map(|&i| at(&m.endpoint[i]))
        .map(|t| t.saturating_sub(t0))
        .collect();
    println!(
        "endpoint change ({changed_service}): {}/{} calling streams ACKed the new port in {took:.1?}; {}",
        lat.len(),
        consumers.len(),
        percentiles(lat)
    );
    tokio::time::sleep(Duration::from_secs(1)).await;

    // A mesh-wide policy change.
    let api = cp.api.clone();
    let yaml = timeout_all_yaml(&format!("{NEW_CONNECT_TIMEOUT}s"));
    let t0 = m.base.elapsed().as_micros() as u64;
    let cpu0 = (cpu_time(Some(pid)), cpu_time(None));
    tokio::task::spawn_blocking(move || {
        put(
            &agent(),
            &api,
            &format!("/meshes/{MESH}/timeouts/timeout-all"),
            &yaml,
        )
    })
    .await??;
    let connected: Vec<usize> = (0..n)
        .filter(|&i| at(&m.first_config[i]).is_some())
        .collect();
    let took = wait_for(&m.policy, &connected, args.deadline).await;
    let lat: Vec<u64> = connected
        .iter()
        .filter_map(|&i| at(&m.policy[i]))
        .map(|t| t.saturating_sub(t0))
        .collect();
    let cpu = (
        cpu_time(Some(pid)).saturating_sub(cpu0.0),
        cpu_time(None).saturating_sub(cpu0.1),
    );
    println!(
        "policy change (Timeout * -> *): {}/{} streams ACKed the new clusters in {took:.1?}; {}",
        lat.len(),
        connected.len(),
        percentiles(lat)
    );
    println!(
        "  CPU time until all ACKed: kuma-cp {:.2?}, xds-load {:.2?} ({} cores)",
        cpu.0,
        cpu.1,
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    // As for "serving": let the pushes that follow the ACKed clusters
    // (endpoints, listeners) finish before measuring.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_end = rss_kb(pid);
    let per = |kb: u64| kb.saturating_sub(rss_empty) as f64 * 1024.0 / n as f64 / 1000.0;
    println!(
        "kuma-cp RSS: empty {} MB, registered {} MB ({:.1} KB/Dataplane), serving {} streams {} MB ({:.1} KB/Dataplane), end {} MB ({:.1} KB/Dataplane)",
        rss_empty / 1024,
        rss_registered / 1024,
        per(rss_registered),
        reached,
        rss_served / 1024,
        per(rss_served),
        rss_end / 1024,
        per(rss_end)
    );
    let errors = m.errors.load(Ordering::Relaxed);
    if errors > 0 {
        println!("{errors} streams failed");
    }
    m.stopping.store(true, Ordering::Relaxed);
    drop(cp);
    // Streams end with the control plane; do not wait for them.
    std::process::exit(0)
}

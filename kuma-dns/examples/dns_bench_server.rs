//! Serves N synthetic services (`svc-0` .. `svc-<N-1>`) on one thread, for
//! `benches/dns/run.sh` (dnsperf against kuma-dns, unbound and NSD).
//!
//! `cargo run --release -p kuma-dns --example dns-bench-server -- PORT N`

use kuma_dns::{DnsConfig, KumaDns, VipAllocator};
use std::net::{Ipv4Addr, SocketAddr};
use tokio::net::{TcpListener, UdpSocket};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let port: u16 = args.next().as_deref().unwrap_or("5653").parse()?;
    let count: usize = args.next().as_deref().unwrap_or("1000").parse()?;
    let config = DnsConfig::default();
    let dns = KumaDns::new(config.clone())?;
    let mut allocator = VipAllocator::new(config.cidr, config.reuse_delay);
    let names: Vec<String> = (0..count).map(|i| format!("svc-{i}")).collect();
    // Allocation only needs a clock reading; no runtime is running yet.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        allocator.sync(
            names.iter().map(String::as_str),
            tokio::time::Instant::now(),
        );
        dns.table().publish(allocator.vips());
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let udp = UdpSocket::bind(addr).await?;
        let tcp = TcpListener::bind(udp.local_addr()?).await?;
        eprintln!("kuma-dns serving {count} services on {}", udp.local_addr()?);
        dns.server()?
            .serve(udp, tcp, async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await?;
        Ok(())
    })
}

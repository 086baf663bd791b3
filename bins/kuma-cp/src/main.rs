//! `kuma-cp`: the control plane binary. Wiring of config, store, HTTP API and
//! xDS servers lands with the kuma-cp milestone; today it only reports that.

fn main() {
    eprintln!("kuma-cp {}: servers are not wired yet", env!("CARGO_PKG_VERSION"));
    std::process::exit(2);
}

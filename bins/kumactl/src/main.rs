//! `kumactl`: the CLI over kuma-cp's HTTP API. Lands with the kuma-cp
//! milestone; today it only reports that.

fn main() {
    eprintln!("kumactl {}: not implemented yet", env!("CARGO_PKG_VERSION"));
    std::process::exit(2);
}

//! `kuma-dp`: fetches an Envoy bootstrap from kuma-cp and supervises Envoy.
//! Lands with the xDS milestone; today it only reports that.

fn main() {
    eprintln!("kuma-dp {}: not implemented yet", env!("CARGO_PKG_VERSION"));
    std::process::exit(2);
}

// Shared by the `dns` fuzz target and the corpus replay test in
// kuma-dns/tests/fuzz_corpus.rs (both `include!` this file).
//
// Property: whatever bytes arrive, request handling never panics; whatever
// it sends parses again as a response with the request's id, fits the UDP
// limit, and encoding the parsed answer reproduces it byte for byte.

/// Feeds `data` to the DNS request handler over UDP and TCP and checks the
/// answers round trip.
pub fn check_dns(data: &[u8]) {
    use hickory_proto::op::{Message, MessageType};
    use std::sync::OnceLock;

    static HANDLER: OnceLock<kuma_dns::DnsHandler> = OnceLock::new();
    let handler = HANDLER.get_or_init(|| {
        let table = kuma_dns::VipTable::new();
        let mut vips = std::collections::BTreeMap::new();
        vips.insert("backend".to_string(), std::net::Ipv4Addr::new(240, 0, 0, 1));
        vips.insert("web.ns".to_string(), std::net::Ipv4Addr::new(240, 0, 0, 2));
        table.publish(&vips);
        kuma_dns::DnsHandler::new(
            &kuma_dns::DnsConfig::default(),
            table,
            kuma_dns::DnsMetrics::new(),
        )
        .expect("default config is valid")
    });
    for transport in [kuma_dns::Transport::Udp, kuma_dns::Transport::Tcp] {
        let Some(out) = handler.answer(data, transport) else {
            continue;
        };
        let parsed = Message::from_vec(&out)
            .unwrap_or_else(|e| panic!("our answer does not parse: {e}: {out:?}"));
        assert_eq!(parsed.metadata.message_type, MessageType::Response);
        assert_eq!(&out[..2], &data[..2], "answer id differs from the request id");
        if transport == kuma_dns::Transport::Udp {
            assert!(out.len() <= 1232, "UDP answer of {} bytes", out.len());
        }
        let again = parsed.to_vec().expect("re-encoding a parsed answer");
        let reparsed = Message::from_vec(&again).expect("re-parsing a re-encoded answer");
        assert_eq!(reparsed, parsed, "answer changed in a parse/encode round trip");
    }
}

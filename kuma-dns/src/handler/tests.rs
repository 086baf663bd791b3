use super::*;
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

fn handler() -> DnsHandler {
    let table = VipTable::new();
    table.publish(&BTreeMap::from([
        ("backend".to_string(), Ipv4Addr::new(240, 0, 0, 1)),
        ("web.ns".to_string(), Ipv4Addr::new(240, 0, 0, 2)),
    ]));
    DnsHandler::new(&DnsConfig::default(), table, DnsMetrics::new()).unwrap()
}

fn query(name: &str, ty: RecordType, edns: Option<Edns>) -> Vec<u8> {
    let mut m = Message::new(4242, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), ty));
    if let Some(e) = edns {
        m.set_edns(e);
    }
    m.to_vec().unwrap()
}

fn ask(h: &DnsHandler, name: &str, ty: RecordType) -> (Message, QueryResult) {
    let mut out = Vec::new();
    let r = h.handle(&query(name, ty, None), Transport::Udp, &mut out);
    (Message::from_vec(&out).unwrap(), r)
}

#[test]
fn known_service_gets_one_authoritative_a_record() {
    let h = handler();
    for name in ["backend.mesh.", "BackEnd.MESH.", "backend.mesh"] {
        let (m, r) = ask(&h, name, RecordType::A);
        assert_eq!(r, QueryResult::NoError);
        assert_eq!(m.metadata.id, 4242);
        assert_eq!(m.metadata.message_type, MessageType::Response);
        assert!(m.metadata.authoritative && m.metadata.recursion_desired);
        assert!(!m.metadata.recursion_available);
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert_eq!(m.answers.len(), 1);
        assert_eq!(m.answers[0].ttl, 60);
        assert_eq!(m.answers[0].data, RData::A(A(Ipv4Addr::new(240, 0, 0, 1))));
        assert_eq!(m.queries.len(), 1);
    }
    let (m, _) = ask(&h, "web.ns.mesh.", RecordType::A);
    assert_eq!(m.answers[0].data, RData::A(A(Ipv4Addr::new(240, 0, 0, 2))));
}

#[test]
fn every_negative_answer_kind() {
    let h = handler();
    let (m, r) = ask(&h, "nope.mesh.", RecordType::A);
    assert_eq!(
        (r, m.metadata.response_code),
        (QueryResult::NxDomain, ResponseCode::NXDomain)
    );
    assert!(m.metadata.authoritative && m.answers.is_empty());
    assert_eq!(m.authorities[0].record_type(), RecordType::SOA);
    assert_eq!(m.authorities[0].name.to_ascii(), "mesh.");

    let (m, r) = ask(&h, "backend.mesh.", RecordType::AAAA);
    assert_eq!(
        (r, m.metadata.response_code),
        (QueryResult::NoData, ResponseCode::NoError)
    );
    assert!(m.answers.is_empty());
    assert_eq!(m.authorities[0].record_type(), RecordType::SOA);

    let (m, r) = ask(&h, "example.com.", RecordType::A);
    assert_eq!(
        (r, m.metadata.response_code),
        (QueryResult::Refused, ResponseCode::Refused)
    );
    assert!(!m.metadata.authoritative && m.authorities.is_empty());
    let (_, r) = ask(&h, "mesh.example.com.", RecordType::A);
    assert_eq!(r, QueryResult::Refused);

    let (m, r) = ask(&h, "mesh.", RecordType::SOA);
    assert_eq!(r, QueryResult::NoError);
    assert_eq!(m.answers[0].record_type(), RecordType::SOA);
    let (_, r) = ask(&h, "mesh.", RecordType::A);
    assert_eq!(r, QueryResult::NoData);
    let (_, r) = ask(&h, "mesh.", RecordType::AXFR);
    assert_eq!(r, QueryResult::Refused);
}

#[test]
fn edns_is_answered_in_kind() {
    let h = handler();
    let mut e = Edns::new();
    e.set_max_payload(4096);
    let out = h.answer(
        &query("backend.mesh.", RecordType::A, Some(e.clone())),
        Transport::Udp,
    );
    let m = Message::from_vec(&out.unwrap()).unwrap();
    assert_eq!(m.edns.as_ref().unwrap().max_payload(), 1232);
    assert_eq!(m.answers.len(), 1);
    e.set_version(1);
    let out = h.answer(
        &query("backend.mesh.", RecordType::A, Some(e)),
        Transport::Udp,
    );
    let m = Message::from_vec(&out.unwrap()).unwrap();
    // BADVERS and BADSIG share the code 16; hickory decodes it as BADSIG.
    assert!(matches!(
        m.metadata.response_code,
        ResponseCode::BADVERS | ResponseCode::BADSIG
    ));
    assert!(m.edns.is_some());
    let plain = h.answer(&query("backend.mesh.", RecordType::A, None), Transport::Udp);
    assert!(Message::from_vec(&plain.unwrap()).unwrap().edns.is_none());
}

#[test]
fn malformed_packets_get_formerr_or_nothing() {
    let h = handler();
    let good = query("backend.mesh.", RecordType::A, None);
    let out = h.answer(&good[..good.len() - 3], Transport::Udp).unwrap();
    let m = Message::from_vec(&out).unwrap();
    assert_eq!(m.metadata.response_code, ResponseCode::FormErr);
    assert_eq!(m.metadata.id, 4242);
    assert_eq!(h.answer(&good[..5], Transport::Udp), None);
    assert_eq!(h.answer(&[], Transport::Udp), None);
    // A response is never answered (no reflection loops).
    let resp = h.answer(&good, Transport::Udp).unwrap();
    assert_eq!(h.answer(&resp, Transport::Udp), None);
    // Two questions.
    let mut m = Message::from_vec(&good).unwrap();
    m.add_query(Query::query(
        Name::from_ascii("web.ns.mesh.").unwrap(),
        RecordType::A,
    ));
    let out = h.answer(&m.to_vec().unwrap(), Transport::Udp).unwrap();
    assert_eq!(
        Message::from_vec(&out).unwrap().metadata.response_code,
        ResponseCode::FormErr
    );
    // Other opcodes.
    let mut m = Message::from_vec(&good).unwrap();
    m.metadata.op_code = OpCode::Status;
    let out = h.answer(&m.to_vec().unwrap(), Transport::Udp).unwrap();
    assert_eq!(
        Message::from_vec(&out).unwrap().metadata.response_code,
        ResponseCode::NotImp
    );
}

#[test]
fn answers_follow_the_table_and_are_counted() {
    let h = handler();
    h.table.publish(&BTreeMap::from([(
        "db".to_string(),
        Ipv4Addr::new(240, 0, 0, 9),
    )]));
    assert_eq!(
        ask(&h, "backend.mesh.", RecordType::A).1,
        QueryResult::NxDomain
    );
    assert_eq!(ask(&h, "db.mesh.", RecordType::A).1, QueryResult::NoError);
    assert_eq!(h.metrics().queries(QueryResult::NxDomain), 1);
    assert_eq!(h.metrics().queries(QueryResult::NoError), 1);
}

#[test]
fn custom_domain_with_several_labels() {
    let c = DnsConfig::new("Svc.Cluster.", "240.0.0.0/4".parse().unwrap());
    let table = VipTable::new();
    table.publish(&BTreeMap::from([(
        "api".to_string(),
        Ipv4Addr::new(240, 0, 0, 3),
    )]));
    let h = DnsHandler::new(&c, table, DnsMetrics::new()).unwrap();
    assert_eq!(
        ask(&h, "api.svc.cluster.", RecordType::A).1,
        QueryResult::NoError
    );
    assert_eq!(ask(&h, "api.mesh.", RecordType::A).1, QueryResult::Refused);
    assert_eq!(ask(&h, "cluster.", RecordType::A).1, QueryResult::Refused);
    assert!(domain_name("").is_err());
    assert!(domain_name("a..b").is_err());
}

proptest! {
    /// Whatever arrives, the handler does not panic, and whatever it sends
    /// parses back as a response to the same id.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        let h = handler();
        for t in [Transport::Udp, Transport::Tcp] {
            if let Some(out) = h.answer(&bytes, t) {
                let m = Message::from_vec(&out).unwrap();
                prop_assert_eq!(m.metadata.message_type, MessageType::Response);
                prop_assert_eq!(&out[..2], &bytes[..2]);
                if t == Transport::Udp { prop_assert!(out.len() <= 1232); }
            }
        }
    }

    /// Mutations of a valid query are answered or dropped, never panic.
    #[test]
    fn mutated_queries_never_panic(pos in 0usize..40, byte in any::<u8>(), cut in 0usize..40) {
        let h = handler();
        let mut q = query("backend.mesh.", RecordType::A, Some(Edns::new()));
        let p = pos % q.len();
        q[p] = byte;
        q.truncate(q.len() - cut.min(q.len()));
        if let Some(out) = h.answer(&q, Transport::Udp) {
            prop_assert!(Message::from_vec(&out).is_ok());
        }
    }
}

/// A query as a client would send it, with the header's flag bytes and
/// the OPT record's fields given.
fn raw_query(name: &str, qtype: u16, flags: [u8; 2], opt: Option<(u16, u8, u8, u8)>) -> Vec<u8> {
    let mut q = vec![
        0x12,
        0x34,
        flags[0],
        flags[1],
        0,
        1,
        0,
        0,
        0,
        0,
        0,
        u8::from(opt.is_some()),
    ];
    for label in name.split('.').filter(|l| !l.is_empty()) {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&[0, 1]);
    if let Some((payload, rcode, version, flags_hi)) = opt {
        q.extend_from_slice(&[0, 0, 41]);
        q.extend_from_slice(&payload.to_be_bytes());
        q.extend_from_slice(&[rcode, version, flags_hi, 0, 0, 0]);
    }
    q
}

#[test]
fn direct_answers_match_decoded_answers_for_every_flag() {
    let h = handler();
    let mut hits = 0;
    for name in ["backend.mesh", "BACKEND.mesh", "web.NS.Mesh"] {
        for qtype in [1, 255] {
            for flags0 in 0u8..8 {
                for flags1 in [0u8, 0x10, 0x20, 0x40, 0x80, 0x0F, 0xFF] {
                    let opts = [
                        None,
                        Some((0, 0, 0, 0)),
                        Some((512, 0, 0, 0x80)),
                        Some((4096, 0, 0, 0)),
                        Some((65535, 0, 0, 0x80)),
                    ];
                    for opt in opts {
                        let q = raw_query(name, qtype, [flags0, flags1], opt);
                        let mut fast = Vec::new();
                        let r = h.answer_plain_a(&q, &mut fast);
                        assert_eq!(r, Some(QueryResult::NoError), "{q:?}");
                        for t in [Transport::Udp, Transport::Tcp] {
                            let mut slow = Vec::new();
                            assert_eq!(h.respond_decoded(&q, t, &mut slow), QueryResult::NoError);
                            assert_eq!(fast, slow, "{q:?}");
                        }
                        hits += 1;
                    }
                }
            }
        }
    }
    assert_eq!(hits, 3 * 2 * 8 * 7 * 5);
}

#[test]
fn plain_a_queries_take_the_direct_path() {
    let h = handler();
    let mut out = Vec::new();
    for q in [
        query("backend.mesh.", RecordType::A, None),
        query("BackEnd.Mesh.", RecordType::ANY, Some(Edns::new())),
        query("web.ns.mesh.", RecordType::A, None),
    ] {
        assert_eq!(h.answer_plain_a(&q, &mut out), Some(QueryResult::NoError));
    }
    for q in [
        query("nope.mesh.", RecordType::A, None),
        query("backend.mesh.", RecordType::AAAA, None),
        query("mesh.", RecordType::A, None),
        query("backend.cluster.", RecordType::A, None),
    ] {
        assert_eq!(h.answer_plain_a(&q, &mut out), None);
    }
}

proptest! {
    /// Whenever the direct path answers, it answers byte for byte what
    /// the hickory-proto path does, over both transports.
    #[test]
    fn direct_answers_match_decoded_answers(
        name in prop::sample::select(vec![
            "backend.mesh", "web.ns.mesh", "nope.mesh", "mesh", "backend.other", "a-b_c.mesh",
        ]),
        upper in prop::collection::vec(any::<bool>(), 12),
        qtype in prop::sample::select(vec![1u16, 28, 255, 6]),
        flags0 in prop_oneof![3 => 0u8..8, 1 => any::<u8>()],
        flags1 in any::<u8>(),
        opt in prop::option::of((
            any::<u16>(),
            prop_oneof![3 => Just(0u8), 1 => any::<u8>()],
            prop_oneof![3 => Just(0u8), 1 => any::<u8>()],
            prop_oneof![Just(0u8), Just(0x80), any::<u8>()],
        )),
        tail in prop_oneof![3 => Just(None), 1 => any::<u8>().prop_map(Some)],
    ) {
        let h = handler();
        let name: String = name
            .chars()
            .zip(upper.iter().cycle())
            .map(|(c, &u)| if u { c.to_ascii_uppercase() } else { c })
            .collect();
        let mut q = raw_query(&name, qtype, [flags0, flags1], opt);
        if let Some(b) = tail {
            q.push(b);
        }
        let mut fast = Vec::new();
        if let Some(r) = h.answer_plain_a(&q, &mut fast) {
            for t in [Transport::Udp, Transport::Tcp] {
                let mut slow = Vec::new();
                prop_assert_eq!(h.respond_decoded(&q, t, &mut slow), r);
                prop_assert_eq!(&fast, &slow);
            }
        }
    }
}

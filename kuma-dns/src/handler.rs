//! Answers one DNS request: bytes in, bytes out, no I/O.
//!
//! Parsing and encoding are hickory-proto's; this file only decides what
//! the answer is:
//! - `<service>.<domain>` (any case), type A or ANY: one A record with the
//!   VIP, TTL 60, authoritative;
//! - a known service with another type: NOERROR, no answer, the SOA in the
//!   authority section (NODATA);
//! - an unknown name in the domain: NXDOMAIN with the SOA;
//! - the domain itself: its SOA for type SOA, NODATA otherwise;
//! - a name outside the domain, a class other than IN, or a zone
//!   transfer: REFUSED;
//! - a packet that does not parse: FORMERR when at least its header does,
//!   nothing otherwise; responses are never answered;
//! - EDNS(0): an OPT record is answered with an OPT record, a version
//!   other than 0 with BADVERS; UDP answers fit the client's buffer size
//!   (512 bytes without EDNS), or are truncated with TC set.

use crate::config::DnsConfig;
use crate::error::DnsError;
use crate::metrics::{DnsMetrics, QueryResult};
use crate::table::VipTable;
use hickory_proto::op::{
    Edns, Header, Message, MessageType, Metadata, OpCode, Query, ResponseCode, emit_message_parts,
};
use hickory_proto::rr::rdata::{A, SOA};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder, BinEncoder};

/// The transport a request came over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// UDP: answers are limited to the client's buffer size.
    Udp,
    /// TCP: answers up to 65,535 bytes.
    Tcp,
}

/// Parses a domain such as `mesh` or `mesh.` into a lowercase FQDN.
pub fn domain_name(domain: &str) -> Result<Name, DnsError> {
    let bad = |message: String| DnsError::InvalidConfig {
        field: "dnsServer.domain",
        message,
    };
    let trimmed = domain.trim().trim_end_matches('.');
    if trimmed.is_empty() {
        return Err(bad("must not be empty (e.g. mesh)".to_string()));
    }
    let name = Name::from_ascii(format!("{trimmed}."))
        .map_err(|e| bad(format!("{domain:?} is not a DNS name: {e}")))?;
    Ok(name.to_lowercase())
}

/// Decides and encodes answers for the configured domain.
#[derive(Debug, Clone)]
pub struct DnsHandler {
    apex: Name,
    apex_labels: Vec<Vec<u8>>,
    mname: Name,
    rname: Name,
    ttl: u32,
    max_udp_payload: u16,
    table: VipTable,
    metrics: DnsMetrics,
}

impl DnsHandler {
    /// A handler answering from `table` and counting into `metrics`.
    pub fn new(config: &DnsConfig, table: VipTable, metrics: DnsMetrics) -> Result<Self, DnsError> {
        config.validate()?;
        let apex = domain_name(&config.domain)?;
        let apex_labels = apex.iter().map(|l| l.to_ascii_lowercase()).collect();
        let child = |label: &str| {
            Name::from_ascii(label)
                .and_then(|n| n.append_domain(&apex))
                .map_err(|e| DnsError::InvalidConfig {
                    field: "dnsServer.domain",
                    message: format!("{:?} is too long: {e}", config.domain),
                })
        };
        Ok(Self {
            mname: child("ns")?,
            rname: child("hostmaster")?,
            apex,
            apex_labels,
            ttl: config.ttl,
            max_udp_payload: config.max_udp_payload,
            table,
            metrics,
        })
    }

    /// The metrics this handler counts into.
    pub fn metrics(&self) -> &DnsMetrics {
        &self.metrics
    }

    /// Answers `request` into `out` (cleared first) and counts the result.
    /// An empty `out` means: send nothing.
    pub fn handle(&self, request: &[u8], transport: Transport, out: &mut Vec<u8>) -> QueryResult {
        let result = self.respond(request, transport, out);
        self.metrics.query(result);
        result
    }

    /// [`handle`](Self::handle) into a new buffer; `None` when nothing is
    /// to be sent.
    pub fn answer(&self, request: &[u8], transport: Transport) -> Option<Vec<u8>> {
        let mut out = Vec::with_capacity(512);
        self.handle(request, transport, &mut out);
        (!out.is_empty()).then_some(out)
    }

    fn respond(&self, bytes: &[u8], transport: Transport, out: &mut Vec<u8>) -> QueryResult {
        out.clear();
        if let Some(result) = self.answer_plain_a(bytes, out) {
            return result;
        }
        self.respond_decoded(bytes, transport, out)
    }

    /// The common query, answered without decoding into hickory types: one
    /// question of type A or ANY, class IN, for a known service, with at
    /// most a bare EDNS(0) OPT record (no options). The question is copied
    /// as it came (same case) and the answer's name points at it, exactly
    /// as the general path encodes it; every other request returns `None`
    /// and goes the general way. The answer is at most 298 bytes, below
    /// every size limit, so it is never truncated.
    fn answer_plain_a(&self, req: &[u8], out: &mut Vec<u8>) -> Option<QueryResult> {
        const QUESTION: usize = 12;
        let header = req.get(..QUESTION)?;
        // QR clear and opcode QUERY; one question, no answer or authority,
        // at most one additional (the OPT record).
        if header[2] & 0xF8 != 0 || header[4..11] != [0, 1, 0, 0, 0, 0, 0] || header[11] > 1 {
            return None;
        }
        let edns = header[11] == 1;
        // The question name: plain labels only (no compression), of
        // letters, digits, '-' and '_', at most 255 bytes on the wire.
        let mut starts = [0usize; 128];
        let mut labels = 0;
        let mut pos = QUESTION;
        loop {
            let len = usize::from(*req.get(pos)?);
            if len == 0 {
                pos += 1;
                break;
            }
            if len > 63 || labels == starts.len() {
                return None;
            }
            let label = req.get(pos + 1..pos + 1 + len)?;
            if !label
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
            {
                return None;
            }
            starts[labels] = pos;
            labels += 1;
            pos += 1 + len;
        }
        if pos - QUESTION > 255 {
            return None;
        }
        let question_end = pos + 4;
        let qtype = req.get(pos..pos + 2)?;
        let qclass = req.get(pos + 2..question_end)?;
        if !matches!(qtype, [0, 1] | [0, 255]) || qclass != [0, 1] {
            return None;
        }
        // A bare OPT record: root name, type 41, any payload size,
        // extended rcode 0, version 0, no flags but DO, no options.
        let end = if edns {
            let opt = req.get(question_end..question_end + 11)?;
            if opt[..3] != [0, 0, 41] || opt[5..7] != [0, 0] || opt[7] & 0x7F != 0 {
                return None;
            }
            if opt[8..11] != [0, 0, 0] {
                return None;
            }
            question_end + 11
        } else {
            question_end
        };
        if end != req.len() {
            return None;
        }
        // `<service>.<domain>`: the domain's labels last, the service (one
        // label or more) before them.
        let d = self.apex_labels.len();
        if labels <= d {
            return None;
        }
        let label_at = |i: usize| {
            let start = starts[i];
            let len = usize::from(req[start]);
            &req[start + 1..start + 1 + len]
        };
        let in_domain = (labels - d..labels)
            .zip(&self.apex_labels)
            .all(|(i, apex)| label_at(i).eq_ignore_ascii_case(apex));
        if !in_domain {
            return None;
        }
        let mut service = [0u8; 255];
        let mut len = 0;
        for i in 0..labels - d {
            if i > 0 {
                service[len] = b'.';
                len += 1;
            }
            for &b in label_at(i) {
                service[len] = b.to_ascii_lowercase();
                len += 1;
            }
        }
        let service = std::str::from_utf8(&service[..len]).ok()?;
        let vip = self.table.lookup_lowercase(service)?;

        out.clear();
        out.extend_from_slice(&header[..2]);
        // QR, AA, RD as asked; CD as asked; NOERROR.
        out.push(0x84 | (header[2] & 0x01));
        out.push(header[3] & 0x10);
        out.extend_from_slice(&[0, 1, 0, 1, 0, 0, 0, u8::from(edns)]);
        out.extend_from_slice(&req[QUESTION..question_end]);
        // The answer: a pointer to the question's name, A, IN, TTL, VIP.
        out.extend_from_slice(&[0xC0, 0x0C, 0, 1, 0, 1]);
        out.extend_from_slice(&self.ttl.to_be_bytes());
        out.extend_from_slice(&[0, 4]);
        out.extend_from_slice(&vip.octets());
        if edns {
            out.extend_from_slice(&[0, 0, 41]);
            out.extend_from_slice(&self.max_udp_payload.to_be_bytes());
            out.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
        }
        Some(QueryResult::NoError)
    }

    /// The general path: hickory-proto decodes the request and encodes
    /// the answer.
    fn respond_decoded(
        &self,
        bytes: &[u8],
        transport: Transport,
        out: &mut Vec<u8>,
    ) -> QueryResult {
        out.clear();
        let mut decoder = BinDecoder::new(bytes);
        let Ok(header) = Header::read(&mut decoder) else {
            return QueryResult::Dropped;
        };
        if header.metadata.message_type != MessageType::Query {
            return QueryResult::Dropped;
        }
        let Some(request) = Request::read(&header, &mut decoder) else {
            return self.header_only_error(&header, out);
        };
        let mut reply = Reply {
            metadata: Metadata::response_from_request(&header.metadata),
            query: None,
            answer: None,
            authority: None,
            edns: None,
        };
        let limit = match transport {
            Transport::Tcp => usize::from(u16::MAX),
            Transport::Udp => match &request.edns {
                Some(e) => usize::from(e.max_payload().clamp(512, self.max_udp_payload)),
                None => 512,
            },
        };
        let result = self.resolve(&header, request, &mut reply);
        reply.encode(limit, out);
        result
    }

    fn resolve(&self, header: &Header, request: Request, reply: &mut Reply) -> QueryResult {
        if let Some(req_edns) = &request.edns {
            let mut edns = Edns::new();
            edns.set_max_payload(self.max_udp_payload);
            reply.edns = Some(edns);
            if req_edns.version() > 0 {
                reply.metadata.response_code = ResponseCode::BADVERS;
                return QueryResult::BadVers;
            }
        }
        if header.metadata.op_code != OpCode::Query {
            reply.metadata.response_code = ResponseCode::NotImp;
            return QueryResult::NotImp;
        }
        let (Some(query), 1) = (request.query, header.counts.queries) else {
            reply.metadata.response_code = ResponseCode::FormErr;
            return QueryResult::FormErr;
        };
        let result = self.resolve_query(&query, reply);
        reply.query = Some(query);
        result
    }

    fn resolve_query(&self, query: &Query, reply: &mut Reply) -> QueryResult {
        let refused = |reply: &mut Reply| {
            reply.metadata.response_code = ResponseCode::Refused;
            QueryResult::Refused
        };
        if !matches!(query.query_class(), DNSClass::IN | DNSClass::ANY)
            || matches!(query.query_type(), RecordType::AXFR | RecordType::IXFR)
        {
            return refused(reply);
        }
        let name = query.name();
        let n = usize::from(name.num_labels());
        let d = self.apex_labels.len();
        let in_domain = n >= d
            && name
                .iter()
                .skip(n - d)
                .zip(&self.apex_labels)
                .all(|(l, a)| l.eq_ignore_ascii_case(a));
        if !in_domain {
            return refused(reply);
        }
        reply.metadata.authoritative = true;
        let snapshot = self.table.load();
        let qtype = query.query_type();
        if n == d {
            if qtype == RecordType::SOA {
                reply.answer = Some(self.soa(snapshot.serial()));
                return QueryResult::NoError;
            }
            reply.authority = Some(self.soa(snapshot.serial()));
            return QueryResult::NoData;
        }
        // The service is the labels before the domain, lowercased into a
        // stack buffer (no allocation on the hot path).
        let mut buf = [0u8; 256];
        let mut len = 0;
        for (i, label) in name.iter().take(n - d).enumerate() {
            let need = label.len() + usize::from(i > 0);
            if len + need > buf.len() {
                len = 0;
                break;
            }
            if i > 0 {
                buf[len] = b'.';
                len += 1;
            }
            for b in label {
                buf[len] = b.to_ascii_lowercase();
                len += 1;
            }
        }
        let vip = std::str::from_utf8(&buf[..len])
            .ok()
            .filter(|s| !s.is_empty())
            .and_then(|s| snapshot.get(s));
        match vip {
            Some(vip) if matches!(qtype, RecordType::A | RecordType::ANY) => {
                reply.answer = Some(Record::from_rdata(name.clone(), self.ttl, RData::A(A(vip))));
                QueryResult::NoError
            }
            Some(_) => {
                reply.authority = Some(self.soa(snapshot.serial()));
                QueryResult::NoData
            }
            None => {
                reply.metadata.response_code = ResponseCode::NXDomain;
                reply.authority = Some(self.soa(snapshot.serial()));
                QueryResult::NxDomain
            }
        }
    }

    fn soa(&self, serial: u32) -> Record {
        Record::from_rdata(
            self.apex.clone(),
            self.ttl,
            RData::SOA(SOA::new(
                self.mname.clone(),
                self.rname.clone(),
                serial,
                3600,
                600,
                86400,
                self.ttl,
            )),
        )
    }

    /// FORMERR for a request whose header parses but whose body does not.
    fn header_only_error(&self, header: &Header, out: &mut Vec<u8>) -> QueryResult {
        let mut metadata = Metadata::response_from_request(&header.metadata);
        metadata.response_code = ResponseCode::FormErr;
        let reply = Reply {
            metadata,
            query: None,
            answer: None,
            authority: None,
            edns: None,
        };
        reply.encode(512, out);
        QueryResult::FormErr
    }
}

/// The parts of a request the answer depends on, decoded by hickory-proto
/// without building a whole `Message` (fewer allocations per query).
struct Request {
    /// The first question (the only one in a valid query).
    query: Option<Query>,
    edns: Option<Edns>,
}

impl Request {
    /// The body after `header`; `None` when it does not parse (FORMERR).
    fn read(header: &Header, decoder: &mut BinDecoder<'_>) -> Option<Self> {
        let op = header.metadata.op_code;
        let mut query = None;
        for _ in 0..header.counts.queries {
            let q = Query::read(decoder).ok()?;
            query.get_or_insert(q);
        }
        Message::read_records(decoder, usize::from(header.counts.answers), false, op).ok()?;
        Message::read_records(decoder, usize::from(header.counts.authorities), false, op).ok()?;
        let (_, edns, _) =
            Message::read_records(decoder, usize::from(header.counts.additionals), true, op)
                .ok()?;
        Some(Self { query, edns })
    }
}

/// A response with at most one record per section.
struct Reply {
    metadata: Metadata,
    query: Option<Query>,
    answer: Option<Record>,
    authority: Option<Record>,
    edns: Option<Edns>,
}

impl Reply {
    /// Encodes into `out`; when the result exceeds `limit`, only the
    /// header, the question and the OPT record, with TC set.
    fn encode(&self, limit: usize, out: &mut Vec<u8>) {
        out.clear();
        let none: Option<&Record> = None;
        let ok = emit_message_parts(
            &self.metadata,
            &mut self.query.iter(),
            &mut self.answer.iter(),
            &mut self.authority.iter(),
            &mut none.into_iter(),
            self.edns.as_ref(),
            None,
            &mut BinEncoder::new(out),
        )
        .is_ok();
        if ok && out.len() <= limit {
            return;
        }
        out.clear();
        let mut metadata = self.metadata;
        metadata.truncation = true;
        let truncated = emit_message_parts(
            &metadata,
            &mut self.query.iter(),
            &mut none.into_iter(),
            &mut none.into_iter(),
            &mut none.into_iter(),
            self.edns.as_ref(),
            None,
            &mut BinEncoder::new(out),
        );
        if truncated.is_err() {
            out.clear();
        }
    }
}

#[cfg(test)]
mod tests;

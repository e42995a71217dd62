//! The DNS wire format (RFC 1035), only as much as the cluster DNS needs: parse a query's header
//! and question (and its EDNS OPT record), encode answers with name compression, and walk a
//! forwarded response to find its TTLs. Hand-written instead of hickory-proto: see
//! docs/adr/0003-dns-wire-codec.md.

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr};

pub const TYPE_A: u16 = 1;
pub const TYPE_NS: u16 = 2;
pub const TYPE_CNAME: u16 = 5;
pub const TYPE_SOA: u16 = 6;
pub const TYPE_PTR: u16 = 12;
pub const TYPE_AAAA: u16 = 28;
pub const TYPE_SRV: u16 = 33;
pub const TYPE_OPT: u16 = 41;
pub const TYPE_ANY: u16 = 255;
pub const CLASS_IN: u16 = 1;

pub const RCODE_NOERROR: u8 = 0;
pub const RCODE_FORMERR: u8 = 1;
pub const RCODE_SERVFAIL: u8 = 2;
pub const RCODE_NXDOMAIN: u8 = 3;
pub const RCODE_NOTIMP: u8 = 4;

/// The UDP payload size we advertise and honour at most (the DNS flag day 2020 value).
pub const EDNS_UDP_SIZE: u16 = 1232;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("dns message truncated at byte {0}")]
    Truncated(usize),
    #[error("dns name compression loop or forward pointer at byte {0}")]
    BadPointer(usize),
    #[error("dns name longer than 255 bytes")]
    NameTooLong,
    #[error("dns label type {0:#x} is not supported")]
    BadLabel(u8),
    #[error("dns message has {0} questions, not one")]
    QuestionCount(u16),
    #[error("dns message is a response, not a query")]
    NotQuery,
}

/// A parsed query: what the server needs to answer it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    pub id: u16,
    pub opcode: u8,
    /// Recursion desired: echoed in the response.
    pub rd: bool,
    /// The question name in lower case, without the trailing dot (`""` is the root).
    pub name: String,
    pub qtype: u16,
    pub qclass: u16,
    /// The question's bytes as sent (name, type, class), echoed so the client's letter case
    /// (0x20 randomisation) comes back unchanged.
    pub question: Vec<u8>,
    /// The client's EDNS UDP payload size, if it sent an OPT record.
    pub edns: Option<u16>,
    /// Whether the name had a label we cannot represent as text (a dot or a non-ASCII byte
    /// inside a label): such a name never matches a cluster record.
    pub opaque: bool,
}

impl Query {
    /// The largest response the client accepts over UDP.
    pub fn udp_limit(&self) -> usize {
        match self.edns {
            Some(size) => usize::from(size.clamp(512, EDNS_UDP_SIZE)),
            None => 512,
        }
    }
}

fn u16_at(buf: &[u8], at: usize) -> Result<u16, Error> {
    let b = buf.get(at..at + 2).ok_or(Error::Truncated(at))?;
    Ok(u16::from_be_bytes([b[0], b[1]]))
}

fn u32_at(buf: &[u8], at: usize) -> Result<u32, Error> {
    let b = buf.get(at..at + 4).ok_or(Error::Truncated(at))?;
    Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// Reads the name at `at`; returns its labels (raw bytes) and the offset after it in the
/// message (after the first pointer, if it used compression).
fn read_name(buf: &[u8], mut at: usize) -> Result<(Vec<Vec<u8>>, usize), Error> {
    let mut labels = Vec::new();
    let mut end = None;
    let mut total = 0usize;
    // A pointer must point backwards, so a chain of them ends; the bound is the message length.
    let mut jumps = 0;
    loop {
        let len = *buf.get(at).ok_or(Error::Truncated(at))?;
        match len & 0xC0 {
            0x00 => {
                if len == 0 {
                    return Ok((labels, end.unwrap_or(at + 1)));
                }
                let l = usize::from(len);
                let label = buf.get(at + 1..at + 1 + l).ok_or(Error::Truncated(at))?;
                total += l + 1;
                if total > 255 {
                    return Err(Error::NameTooLong);
                }
                labels.push(label.to_vec());
                at += 1 + l;
            }
            0xC0 => {
                let target = usize::from(u16_at(buf, at)? & 0x3FFF);
                if target >= at || jumps > buf.len() {
                    return Err(Error::BadPointer(at));
                }
                jumps += 1;
                end.get_or_insert(at + 2);
                at = target;
            }
            other => return Err(Error::BadLabel(other)),
        }
    }
}

/// Skips the name at `at` without decoding it.
fn skip_name(buf: &[u8], at: usize) -> Result<usize, Error> {
    read_name(buf, at).map(|(_, end)| end)
}

/// Lower-case dotted text of `labels`, and whether a label could not be represented.
fn labels_to_text(labels: &[Vec<u8>]) -> (String, bool) {
    let mut opaque = false;
    let parts: Vec<String> = labels
        .iter()
        .map(|l| {
            if l.iter().any(|b| !b.is_ascii_graphic() || *b == b'.') {
                opaque = true;
            }
            String::from_utf8_lossy(l).to_ascii_lowercase()
        })
        .collect();
    (parts.join("."), opaque)
}

/// Parses a query: header, one question, and the EDNS OPT record among the additionals.
pub fn parse_query(buf: &[u8]) -> Result<Query, Error> {
    if buf.len() < 12 {
        return Err(Error::Truncated(buf.len()));
    }
    let id = u16_at(buf, 0)?;
    let flags = u16_at(buf, 2)?;
    if flags & 0x8000 != 0 {
        return Err(Error::NotQuery);
    }
    let qdcount = u16_at(buf, 4)?;
    if qdcount != 1 {
        return Err(Error::QuestionCount(qdcount));
    }
    let (ancount, nscount, arcount) = (u16_at(buf, 6)?, u16_at(buf, 8)?, u16_at(buf, 10)?);
    let (labels, after) = read_name(buf, 12)?;
    let qtype = u16_at(buf, after)?;
    let qclass = u16_at(buf, after + 2)?;
    let question = buf[12..after + 4].to_vec();
    let (name, opaque) = labels_to_text(&labels);
    let mut at = after + 4;
    for _ in 0..(u32::from(ancount) + u32::from(nscount)) {
        at = skip_record(buf, at)?.1;
    }
    let mut edns = None;
    for _ in 0..arcount {
        let (rtype, next) = skip_record(buf, at)?;
        if rtype == TYPE_OPT {
            // The OPT record's class field carries the requestor's UDP payload size.
            let name_end = skip_name(buf, at)?;
            edns = Some(u16_at(buf, name_end + 2)?);
        }
        at = next;
    }
    Ok(Query {
        id,
        opcode: ((flags >> 11) & 0xF) as u8,
        rd: flags & 0x0100 != 0,
        name,
        qtype,
        qclass,
        question,
        edns,
        opaque,
    })
}

/// Skips one resource record at `at`; returns its type and the offset after it.
fn skip_record(buf: &[u8], at: usize) -> Result<(u16, usize), Error> {
    let name_end = skip_name(buf, at)?;
    let rtype = u16_at(buf, name_end)?;
    let rdlen = usize::from(u16_at(buf, name_end + 8)?);
    let end = name_end + 10 + rdlen;
    if end > buf.len() {
        return Err(Error::Truncated(end));
    }
    Ok((rtype, end))
}

/// What a forwarded response says about caching: the byte offsets of its TTL fields (to age
/// them when served from the cache) and how long it may be cached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ttls {
    pub offsets: Vec<usize>,
    /// The smallest TTL of the answer and authority records; for a negative answer, the SOA's
    /// TTL capped by its MINIMUM field (RFC 2308 §5). `None` when nothing says how long.
    pub min: Option<u32>,
    pub rcode: u8,
    pub truncated: bool,
}

/// A message's flags, its four section counts, and the offset after its question section.
fn message_header(buf: &[u8]) -> Result<(u16, [u16; 4], usize), Error> {
    if buf.len() < 12 {
        return Err(Error::Truncated(buf.len()));
    }
    let flags = u16_at(buf, 2)?;
    let counts = [
        u16_at(buf, 4)?,
        u16_at(buf, 6)?,
        u16_at(buf, 8)?,
        u16_at(buf, 10)?,
    ];
    let mut at = 12;
    for _ in 0..counts[0] {
        at = skip_name(buf, at)? + 4;
    }
    Ok((flags, counts, at))
}

/// Walks a response (from an upstream) to find its TTLs.
pub fn response_ttls(buf: &[u8]) -> Result<Ttls, Error> {
    let (flags, counts, mut at) = message_header(buf)?;
    let mut offsets = Vec::new();
    let mut min: Option<u32> = None;
    for (section, &count) in counts.iter().enumerate().skip(1) {
        for _ in 0..count {
            let name_end = skip_name(buf, at)?;
            let rtype = u16_at(buf, name_end)?;
            let (_, next) = skip_record(buf, at)?;
            if rtype != TYPE_OPT {
                offsets.push(name_end + 4);
                let mut ttl = u32_at(buf, name_end + 4)?;
                if rtype == TYPE_SOA && section == 2 {
                    // The MINIMUM field is the last 4 bytes of the SOA rdata.
                    ttl = ttl.min(u32_at(buf, next - 4)?);
                }
                if section < 3 {
                    min = Some(min.map_or(ttl, |m| m.min(ttl)));
                }
            }
            at = next;
        }
    }
    Ok(Ttls {
        offsets,
        min,
        rcode: (flags & 0xF) as u8,
        truncated: flags & 0x0200 != 0,
    })
}

/// The data of a record we serve.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Data {
    A(Ipv4Addr),
    Aaaa(Ipv6Addr),
    Cname(String),
    Ptr(String),
    Ns(String),
    Srv {
        priority: u16,
        weight: u16,
        port: u16,
        target: String,
    },
    Soa {
        mname: String,
        rname: String,
        serial: u32,
        refresh: u32,
        retry: u32,
        expire: u32,
        minimum: u32,
    },
}

impl Data {
    pub fn rtype(&self) -> u16 {
        match self {
            Data::A(_) => TYPE_A,
            Data::Aaaa(_) => TYPE_AAAA,
            Data::Cname(_) => TYPE_CNAME,
            Data::Ptr(_) => TYPE_PTR,
            Data::Ns(_) => TYPE_NS,
            Data::Srv { .. } => TYPE_SRV,
            Data::Soa { .. } => TYPE_SOA,
        }
    }
}

/// A resource record: owner name (lower case, no trailing dot), TTL, data.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Record {
    pub name: String,
    pub ttl: u32,
    pub data: Data,
}

/// The sections of a response we build.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sections {
    pub answer: Vec<Record>,
    pub authority: Vec<Record>,
    pub additional: Vec<Record>,
}

/// Encodes responses, compressing names against those already written.
struct Writer {
    buf: Vec<u8>,
    names: HashMap<String, u16>,
}

impl Writer {
    fn u16(&mut self, v: u16) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    /// Writes `name`, pointing at an earlier copy of its longest known suffix. Labels longer
    /// than 63 bytes cannot occur: the names come from validated Kubernetes objects, and an
    /// over-long one is cut rather than corrupting the message.
    fn name(&mut self, name: &str) {
        let mut rest = name.trim_end_matches('.');
        while !rest.is_empty() {
            if let Some(&at) = self.names.get(rest) {
                self.u16(0xC000 | at);
                return;
            }
            if let Ok(at) = u16::try_from(self.buf.len())
                && at < 0x4000
            {
                self.names.insert(rest.to_string(), at);
            }
            let (label, tail) = rest.split_once('.').unwrap_or((rest, ""));
            let label = &label.as_bytes()[..label.len().min(63)];
            self.buf.push(label.len() as u8);
            self.buf.extend_from_slice(label);
            rest = tail;
        }
        self.buf.push(0);
    }

    fn record(&mut self, r: &Record) {
        self.name(&r.name);
        self.u16(r.data.rtype());
        self.u16(CLASS_IN);
        self.u32(r.ttl);
        let len_at = self.buf.len();
        self.u16(0);
        match &r.data {
            Data::A(ip) => self.buf.extend_from_slice(&ip.octets()),
            Data::Aaaa(ip) => self.buf.extend_from_slice(&ip.octets()),
            Data::Cname(n) | Data::Ptr(n) | Data::Ns(n) => self.name(n),
            Data::Srv {
                priority,
                weight,
                port,
                target,
            } => {
                self.u16(*priority);
                self.u16(*weight);
                self.u16(*port);
                // RFC 2782 forbids compressing the SRV target; write it in full.
                for label in target.trim_end_matches('.').split('.') {
                    let label = &label.as_bytes()[..label.len().min(63)];
                    self.buf.push(label.len() as u8);
                    self.buf.extend_from_slice(label);
                }
                self.buf.push(0);
            }
            Data::Soa {
                mname,
                rname,
                serial,
                refresh,
                retry,
                expire,
                minimum,
            } => {
                self.name(mname);
                self.name(rname);
                for v in [serial, refresh, retry, expire, minimum] {
                    self.u32(*v);
                }
            }
        }
        let len = (self.buf.len() - len_at - 2) as u16;
        self.buf[len_at..len_at + 2].copy_from_slice(&len.to_be_bytes());
    }
}

/// Encodes the response to `q`: authoritative (`aa`) for our zone's answers, with `rcode`, and
/// an OPT record if the query had one. If the result exceeds `limit` bytes, the records are
/// dropped and TC is set so the client retries over TCP (RFC 1035 §4.2.1).
pub fn encode_response(
    q: &Query,
    aa: bool,
    ra: bool,
    rcode: u8,
    s: &Sections,
    limit: usize,
) -> Vec<u8> {
    let full = encode(q, aa, ra, rcode, s, false);
    if full.len() <= limit {
        return full;
    }
    encode(q, aa, ra, rcode, &Sections::default(), true)
}

/// An empty response with TC set: the answer does not fit, retry over TCP.
pub fn truncated(q: &Query, rcode: u8) -> Vec<u8> {
    encode(q, false, true, rcode, &Sections::default(), true)
}

fn encode(q: &Query, aa: bool, ra: bool, rcode: u8, s: &Sections, tc: bool) -> Vec<u8> {
    let mut w = Writer {
        buf: Vec::with_capacity(512),
        names: HashMap::new(),
    };
    w.u16(q.id);
    let mut flags = 0x8000 | (u16::from(q.opcode & 0xF) << 11) | u16::from(rcode & 0xF);
    if aa {
        flags |= 0x0400;
    }
    if tc {
        flags |= 0x0200;
    }
    if q.rd {
        flags |= 0x0100;
    }
    if ra {
        flags |= 0x0080;
    }
    w.u16(flags);
    let has_question = !q.question.is_empty();
    w.u16(u16::from(has_question));
    w.u16(s.answer.len() as u16);
    w.u16(s.authority.len() as u16);
    w.u16((s.additional.len() + usize::from(q.edns.is_some())) as u16);
    if has_question {
        // The name in the echoed question is a compression target for the answers: register it
        // under its lower-case text (compression is case-insensitive in practice and the
        // answers use our lower-case names).
        if !q.opaque && !q.name.is_empty() {
            w.names.insert(q.name.clone(), 12);
        }
        w.buf.extend_from_slice(&q.question);
    }
    for r in s.answer.iter().chain(&s.authority).chain(&s.additional) {
        w.record(r);
    }
    if q.edns.is_some() {
        w.buf.push(0);
        w.u16(TYPE_OPT);
        w.u16(EDNS_UDP_SIZE);
        w.u32(0);
        w.u16(0);
    }
    w.buf
}

/// A minimal query message (used by the tests, the bench and health checks): one question,
/// recursion desired.
pub fn encode_query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
    let mut w = Writer {
        buf: Vec::with_capacity(64),
        names: HashMap::new(),
    };
    w.u16(id);
    w.u16(0x0100);
    w.u16(1);
    w.u16(0);
    w.u16(0);
    w.u16(0);
    w.name(name);
    w.u16(qtype);
    w.u16(CLASS_IN);
    w.buf
}

/// A decoded response, for clients (tests and the bench) that check what the server said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub id: u16,
    pub rcode: u8,
    pub aa: bool,
    pub tc: bool,
    pub answer: Vec<Record>,
    pub authority: Vec<Record>,
    pub additional: Vec<Record>,
}

/// Decodes a response's records of the types this module knows (others are skipped).
pub fn parse_response(buf: &[u8]) -> Result<Response, Error> {
    let (flags, counts, mut at) = message_header(buf)?;
    let mut sections: [Vec<Record>; 3] = Default::default();
    for (i, section) in sections.iter_mut().enumerate() {
        for _ in 0..counts[i + 1] {
            let (labels, name_end) = read_name(buf, at)?;
            let rtype = u16_at(buf, name_end)?;
            let ttl = u32_at(buf, name_end + 4)?;
            let rd = name_end + 10;
            let (_, next) = skip_record(buf, at)?;
            let text = |at| read_name(buf, at).map(|(l, _)| labels_to_text(&l).0);
            let data = match rtype {
                TYPE_A => buf
                    .get(rd..rd + 4)
                    .map(|b| Data::A(Ipv4Addr::new(b[0], b[1], b[2], b[3]))),
                TYPE_AAAA => buf.get(rd..rd + 16).and_then(|b| {
                    let o: [u8; 16] = b.try_into().ok()?;
                    Some(Data::Aaaa(Ipv6Addr::from(o)))
                }),
                TYPE_CNAME => Some(Data::Cname(text(rd)?)),
                TYPE_PTR => Some(Data::Ptr(text(rd)?)),
                TYPE_NS => Some(Data::Ns(text(rd)?)),
                TYPE_SRV => Some(Data::Srv {
                    priority: u16_at(buf, rd)?,
                    weight: u16_at(buf, rd + 2)?,
                    port: u16_at(buf, rd + 4)?,
                    target: text(rd + 6)?,
                }),
                TYPE_SOA => {
                    let (m, after_m) = read_name(buf, rd)?;
                    let (r, after_r) = read_name(buf, after_m)?;
                    Some(Data::Soa {
                        mname: labels_to_text(&m).0,
                        rname: labels_to_text(&r).0,
                        serial: u32_at(buf, after_r)?,
                        refresh: u32_at(buf, after_r + 4)?,
                        retry: u32_at(buf, after_r + 8)?,
                        expire: u32_at(buf, after_r + 12)?,
                        minimum: u32_at(buf, after_r + 16)?,
                    })
                }
                _ => None,
            };
            if let Some(data) = data {
                section.push(Record {
                    name: labels_to_text(&labels).0,
                    ttl,
                    data,
                });
            }
            at = next;
        }
    }
    let [answer, authority, additional] = sections;
    Ok(Response {
        id: u16_at(buf, 0)?,
        rcode: (flags & 0xF) as u8,
        aa: flags & 0x0400 != 0,
        tc: flags & 0x0200 != 0,
        answer,
        authority,
        additional,
    })
}

/// A SERVFAIL/FORMERR/NOTIMP answer to a message we could only partly read: the header's id
/// and the question if it parsed.
pub fn error_response(buf: &[u8], rcode: u8) -> Option<Vec<u8>> {
    let id = u16_at(buf, 0).ok()?;
    let flags = u16_at(buf, 2).ok()?;
    if flags & 0x8000 != 0 {
        // Never answer a response: that is how reflection loops start.
        return None;
    }
    let mut out = Vec::with_capacity(12);
    out.extend_from_slice(&id.to_be_bytes());
    let opcode = flags & 0x7800;
    let rd = flags & 0x0100;
    out.extend_from_slice(&(0x8000 | opcode | rd | u16::from(rcode)).to_be_bytes());
    out.extend_from_slice(&[0; 8]);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(name: &str, qtype: u16) -> Query {
        parse_query(&encode_query(7, name, qtype)).unwrap()
    }

    #[test]
    fn query_round_trips_with_lower_case_name() {
        let q = query("Web.Default.svc.cluster.local", TYPE_SRV);
        assert_eq!(q.id, 7);
        assert!(q.rd);
        assert_eq!(q.name, "web.default.svc.cluster.local");
        assert_eq!(q.qtype, TYPE_SRV);
        assert_eq!(q.qclass, CLASS_IN);
        assert_eq!(q.edns, None);
        assert!(!q.opaque);
    }

    #[test]
    fn response_round_trips_every_record_type() {
        let q = query("a.b", TYPE_ANY);
        let s = Sections {
            answer: vec![
                Record {
                    name: "a.b".into(),
                    ttl: 5,
                    data: Data::A(Ipv4Addr::new(10, 0, 0, 1)),
                },
                Record {
                    name: "a.b".into(),
                    ttl: 5,
                    data: Data::Aaaa("fd00::1".parse().unwrap()),
                },
                Record {
                    name: "a.b".into(),
                    ttl: 5,
                    data: Data::Srv {
                        priority: 0,
                        weight: 100,
                        port: 80,
                        target: "x.a.b".into(),
                    },
                },
                Record {
                    name: "a.b".into(),
                    ttl: 5,
                    data: Data::Cname("example.com".into()),
                },
                Record {
                    name: "1.0.0.10.in-addr.arpa".into(),
                    ttl: 5,
                    data: Data::Ptr("a.b".into()),
                },
            ],
            authority: vec![Record {
                name: "b".into(),
                ttl: 5,
                data: Data::Soa {
                    mname: "ns.dns.b".into(),
                    rname: "hostmaster.b".into(),
                    serial: 9,
                    refresh: 7200,
                    retry: 1800,
                    expire: 86400,
                    minimum: 5,
                },
            }],
            additional: vec![Record {
                name: "b".into(),
                ttl: 5,
                data: Data::Ns("ns.dns.b".into()),
            }],
        };
        let bytes = encode_response(&q, true, true, RCODE_NOERROR, &s, 65535);
        let r = parse_response(&bytes).unwrap();
        assert_eq!(r.id, 7);
        assert!(r.aa && !r.tc);
        assert_eq!(r.answer, s.answer);
        assert_eq!(r.authority, s.authority);
        assert_eq!(r.additional, s.additional);
        let ttls = response_ttls(&bytes).unwrap();
        assert_eq!(ttls.offsets.len(), 7);
        assert_eq!(ttls.min, Some(5));
    }

    #[test]
    fn oversized_udp_answers_are_truncated() {
        let q = query("many.b", TYPE_A);
        let answer = (0..100)
            .map(|i| Record {
                name: "many.b".into(),
                ttl: 5,
                data: Data::A(Ipv4Addr::new(10, 0, 0, i)),
            })
            .collect();
        let s = Sections {
            answer,
            ..Default::default()
        };
        let small = encode_response(&q, true, true, 0, &s, q.udp_limit());
        let r = parse_response(&small).unwrap();
        assert!(r.tc);
        assert!(r.answer.is_empty());
        let big = encode_response(&q, true, true, 0, &s, 65535);
        assert_eq!(parse_response(&big).unwrap().answer.len(), 100);
    }

    #[test]
    fn malformed_messages_are_errors_not_panics() {
        assert_eq!(parse_query(&[0; 5]), Err(Error::Truncated(5)));
        // A compression pointer to itself.
        let mut m = vec![0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        m.extend_from_slice(&[0xC0, 12, 0, 1, 0, 1]);
        assert_eq!(parse_query(&m), Err(Error::BadPointer(12)));
        let mut two = encode_query(1, "a", TYPE_A);
        two[5] = 2;
        assert_eq!(parse_query(&two), Err(Error::QuestionCount(2)));
        let mut resp = encode_query(1, "a", TYPE_A);
        resp[2] |= 0x80;
        assert_eq!(parse_query(&resp), Err(Error::NotQuery));
        assert_eq!(error_response(&resp, RCODE_FORMERR), None);
    }

    #[test]
    fn edns_size_is_read_from_the_opt_record() {
        let mut m = encode_query(3, "x.y", TYPE_A);
        m[11] = 1;
        m.extend_from_slice(&[0, 0, 41, 0x10, 0, 0, 0, 0, 0, 0, 0]);
        let q = parse_query(&m).unwrap();
        assert_eq!(q.edns, Some(4096));
        assert_eq!(q.udp_limit(), usize::from(EDNS_UDP_SIZE));
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            let _ = parse_query(&bytes);
            let _ = parse_response(&bytes);
            let _ = response_ttls(&bytes);
            let _ = error_response(&bytes, RCODE_SERVFAIL);
        }
    }
}

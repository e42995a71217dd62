//! Forwarding to the host's resolvers, with a small cache: everything outside the cluster zone
//! goes to the nameservers of the host's resolv.conf, like CoreDNS's `forward . /etc/resolv.conf`
//! behind `cache 30` in k3s's Corefile.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ring::rand::SecureRandom;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use super::wire::{self, Query};

/// systemd-resolved's stub listener: forwarding to it from a pod's point of view is useless,
/// so, like the kubelet, we read the real upstreams from resolved's own file.
const RESOLVED_STUB: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 53));
const RESOLVED_CONF: &str = "/run/systemd/resolve/resolv.conf";

/// The cap on cached TTLs (k3s's Corefile: `cache 30`).
pub const MAX_TTL: u32 = 30;
/// The most responses the cache holds.
pub const MAX_ENTRIES: usize = 10_000;
/// How long one upstream gets to answer before the next is tried.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading {path}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// The upstream resolvers in `resolv_conf` (port 53), skipping `exclude` (our own addresses:
/// never forward to ourselves). If the file names only systemd-resolved's stub, the upstreams
/// come from /run/systemd/resolve/resolv.conf instead, as the kubelet does.
pub fn upstreams(resolv_conf: &Path, exclude: &[IpAddr]) -> Result<Vec<SocketAddr>, Error> {
    let read = |p: &Path| {
        std::fs::read_to_string(p).map_err(|source| Error::Read {
            path: p.display().to_string(),
            source,
        })
    };
    let mut servers = nameservers(&read(resolv_conf)?);
    if !servers.is_empty() && servers.iter().all(|s| *s == RESOLVED_STUB) {
        servers = nameservers(&read(Path::new(RESOLVED_CONF))?);
    }
    servers.retain(|s| !exclude.contains(s) && *s != RESOLVED_STUB);
    servers.dedup();
    Ok(servers
        .into_iter()
        .map(|ip| SocketAddr::new(ip, 53))
        .collect())
}

/// The `nameserver` addresses of a resolv.conf text (IPv6 zone suffixes are not supported and
/// such lines are skipped).
fn nameservers(text: &str) -> Vec<IpAddr> {
    text.lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            (w.next() == Some("nameserver"))
                .then(|| w.next())
                .flatten()
                .and_then(|a| a.parse().ok())
        })
        .collect()
}

/// A cached response: the upstream's bytes, where its TTLs are, and when it was stored.
struct Entry {
    bytes: Vec<u8>,
    ttl_offsets: Vec<usize>,
    question_len: usize,
    stored: Instant,
    expires: Instant,
}

/// The cache key: lower-case name, type, class.
type Key = (String, u16, u16);

/// Forwards queries to the upstreams and caches their answers.
pub struct Forwarder {
    upstreams: Vec<SocketAddr>,
    cache: Mutex<HashMap<Key, Entry>>,
    rng: ring::rand::SystemRandom,
}

impl Forwarder {
    pub fn new(upstreams: Vec<SocketAddr>) -> Forwarder {
        Forwarder {
            upstreams,
            cache: Mutex::new(HashMap::new()),
            rng: ring::rand::SystemRandom::new(),
        }
    }

    pub fn upstreams(&self) -> &[SocketAddr] {
        &self.upstreams
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Entry>> {
        // A panic while holding the lock cannot leave the map inconsistent (single inserts and
        // removes), so a poisoned lock is still usable.
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The cached answer to `q`, rewritten for it (id, question letter case, aged TTLs).
    pub fn cached(&self, q: &Query) -> Option<Vec<u8>> {
        let key = (q.name.clone(), q.qtype, q.qclass);
        let now = Instant::now();
        let cache = self.lock();
        let e = cache.get(&key)?;
        if now >= e.expires || e.question_len != q.question.len() {
            return None;
        }
        let mut out = e.bytes.clone();
        out[0..2].copy_from_slice(&q.id.to_be_bytes());
        out[12..12 + e.question_len].copy_from_slice(&q.question);
        let age = now.duration_since(e.stored).as_secs() as u32;
        for &at in &e.ttl_offsets {
            let ttl = u32::from_be_bytes([out[at], out[at + 1], out[at + 2], out[at + 3]]);
            out[at..at + 4].copy_from_slice(&ttl.saturating_sub(age).to_be_bytes());
        }
        Some(out)
    }

    /// Stores a response if it says how long it may be kept: positive answers for their
    /// smallest TTL, negative ones (NXDOMAIN, NODATA) for their SOA's (RFC 2308), both capped.
    fn store(&self, q: &Query, bytes: &[u8]) {
        let Ok(ttls) = wire::response_ttls(bytes) else {
            return;
        };
        if ttls.truncated
            || !matches!(ttls.rcode, wire::RCODE_NOERROR | wire::RCODE_NXDOMAIN)
            || bytes.len() < 12 + q.question.len()
        {
            return;
        }
        let Some(ttl) = ttls.min.map(|t| t.min(MAX_TTL)).filter(|t| *t > 0) else {
            return;
        };
        let now = Instant::now();
        let mut cache = self.lock();
        if cache.len() >= MAX_ENTRIES {
            cache.retain(|_, e| e.expires > now);
        }
        if cache.len() >= MAX_ENTRIES {
            // Still full of live entries: drop the tenth that expires soonest.
            let mut expiries: Vec<Instant> = cache.values().map(|e| e.expires).collect();
            expiries.sort();
            let cut = expiries[MAX_ENTRIES / 10];
            cache.retain(|_, e| e.expires > cut);
        }
        // Served TTLs never exceed how long the entry lives.
        let mut bytes = bytes.to_vec();
        for &at in &ttls.offsets {
            let t = u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
            bytes[at..at + 4].copy_from_slice(&t.min(MAX_TTL).to_be_bytes());
        }
        cache.insert(
            (q.name.clone(), q.qtype, q.qclass),
            Entry {
                bytes,
                ttl_offsets: ttls.offsets,
                question_len: q.question.len(),
                stored: now,
                expires: now + Duration::from_secs(u64::from(ttl)),
            },
        );
    }

    pub fn cache_len(&self) -> usize {
        self.lock().len()
    }

    /// Asks the upstreams, in order, for the answer to `raw` (the client's query `q`); returns
    /// the response with the client's id, or `None` if none answered.
    pub async fn forward(&self, q: &Query, raw: &[u8]) -> Option<Vec<u8>> {
        if let Some(hit) = self.cached(q) {
            return Some(hit);
        }
        let mut id = [0u8; 2];
        if self.rng.fill(&mut id).is_err() {
            return None;
        }
        let mut msg = raw.to_vec();
        msg[0..2].copy_from_slice(&id);
        for upstream in &self.upstreams {
            let answer = match ask_udp(*upstream, &msg).await {
                Ok(a) if a.len() > 2 && a[2] & 0x02 != 0 => ask_tcp(*upstream, &msg).await,
                other => other,
            };
            match answer {
                Ok(mut a) if a.len() >= 12 && a[0..2] == id => {
                    a[0..2].copy_from_slice(&q.id.to_be_bytes());
                    self.store(q, &a);
                    return Some(a);
                }
                Ok(_) => tracing::debug!(%upstream, "upstream answered garbage"),
                Err(e) => tracing::debug!(%upstream, error = %e, "upstream did not answer"),
            }
        }
        None
    }
}

async fn ask_udp(upstream: SocketAddr, msg: &[u8]) -> std::io::Result<Vec<u8>> {
    let bind: SocketAddr = if upstream.is_ipv4() {
        "0.0.0.0:0".parse().expect("a literal socket address")
    } else {
        "[::]:0".parse().expect("a literal socket address")
    };
    let socket = UdpSocket::bind(bind).await?;
    socket.connect(upstream).await?;
    socket.send(msg).await?;
    let mut buf = vec![0u8; 65535];
    // A connected socket only receives from the upstream; a reply with another id (a late
    // answer, or a spoof) is skipped until the deadline.
    let deadline = tokio::time::Instant::now() + UPSTREAM_TIMEOUT;
    loop {
        let n = tokio::time::timeout_at(deadline, socket.recv(&mut buf))
            .await
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
        if n >= 12 && buf[0..2] == msg[0..2] {
            buf.truncate(n);
            return Ok(buf);
        }
    }
}

async fn ask_tcp(upstream: SocketAddr, msg: &[u8]) -> std::io::Result<Vec<u8>> {
    let exchange = async {
        let mut s = TcpStream::connect(upstream).await?;
        let len = u16::try_from(msg.len()).map_err(|_| std::io::ErrorKind::InvalidInput)?;
        let mut framed = len.to_be_bytes().to_vec();
        framed.extend_from_slice(msg);
        s.write_all(&framed).await?;
        let n = s.read_u16().await?;
        let mut buf = vec![0u8; usize::from(n)];
        s.read_exact(&mut buf).await?;
        Ok(buf)
    };
    tokio::time::timeout(UPSTREAM_TIMEOUT, exchange)
        .await
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))?
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::wire::{Data, Record, Sections, TYPE_A, encode_query, parse_query};

    #[test]
    fn upstreams_skip_ourselves_and_the_resolved_stub() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("resolv.conf");
        std::fs::write(
            &path,
            "# comment\nsearch example.com\nnameserver 10.43.0.10\nnameserver 192.0.2.1\nnameserver fe80::1%eth0\nnameserver 2001:db8::1\n",
        )
        .unwrap();
        let got = upstreams(&path, &["10.43.0.10".parse().unwrap()]).unwrap();
        assert_eq!(
            got,
            [
                "192.0.2.1:53".parse::<SocketAddr>().unwrap(),
                "[2001:db8::1]:53".parse().unwrap()
            ]
        );
        assert!(upstreams(&dir.path().join("missing"), &[]).is_err());
    }

    fn answer_bytes(q: &Query, ttl: u32) -> Vec<u8> {
        let s = Sections {
            answer: vec![Record {
                name: q.name.clone(),
                ttl,
                data: Data::A("192.0.2.7".parse().unwrap()),
            }],
            ..Default::default()
        };
        wire::encode_response(q, false, true, 0, &s, 65535)
    }

    #[test]
    fn cache_rewrites_id_and_question_and_honours_ttl() {
        let f = Forwarder::new(vec![]);
        let q1 = parse_query(&encode_query(1, "Example.com", TYPE_A)).unwrap();
        f.store(&q1, &answer_bytes(&q1, 300));
        let q2 = parse_query(&encode_query(2, "EXAMPLE.COM", TYPE_A)).unwrap();
        let hit = f.cached(&q2).unwrap();
        assert_eq!(&hit[0..2], &[0, 2]);
        assert_eq!(&hit[12..12 + q2.question.len()], &q2.question[..]);
        let r = wire::parse_response(&hit).unwrap();
        // Capped at 30 s.
        assert!(r.answer[0].ttl <= MAX_TTL && r.answer[0].ttl >= MAX_TTL - 1);
        // Zero TTL: never cached.
        let q3 = parse_query(&encode_query(3, "zero.example", TYPE_A)).unwrap();
        f.store(&q3, &answer_bytes(&q3, 0));
        assert!(f.cached(&q3).is_none());
        assert_eq!(f.cache_len(), 1);
    }

    #[test]
    fn cache_is_bounded() {
        let f = Forwarder::new(vec![]);
        for i in 0..(MAX_ENTRIES + 5) {
            let q = parse_query(&encode_query(1, &format!("n{i}.example"), TYPE_A)).unwrap();
            f.store(&q, &answer_bytes(&q, 30));
        }
        assert!(f.cache_len() <= MAX_ENTRIES);
    }

    #[tokio::test]
    async fn forward_asks_the_upstream_and_caches() {
        let upstream = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = upstream.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let mut buf = [0u8; 512];
            let (n, from) = upstream.recv_from(&mut buf).await.unwrap();
            let q = parse_query(&buf[..n]).unwrap();
            upstream.send_to(&answer_bytes(&q, 60), from).await.unwrap();
        });
        let f = Forwarder::new(vec![addr]);
        let raw = encode_query(77, "up.example", TYPE_A);
        let q = parse_query(&raw).unwrap();
        let a = f.forward(&q, &raw).await.unwrap();
        let r = wire::parse_response(&a).unwrap();
        assert_eq!(r.id, 77);
        assert_eq!(r.answer[0].data, Data::A("192.0.2.7".parse().unwrap()));
        server.await.unwrap();
        // The upstream is gone; the second answer comes from the cache.
        let raw2 = encode_query(78, "up.example", TYPE_A);
        let q2 = parse_query(&raw2).unwrap();
        let b = f.forward(&q2, &raw2).await.unwrap();
        assert_eq!(wire::parse_response(&b).unwrap().id, 78);
    }
}

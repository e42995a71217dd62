//! The DNS server loops: UDP and TCP on one address, each query answered from the cluster zone
//! or forwarded. Local answers are computed on the receiving task (no allocation of a task per
//! query); only forwarded queries get a task of their own, so a slow upstream never delays the
//! cluster's own names.

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

use super::forward::Forwarder;
use super::records::{Answer, Records};
use super::wire::{self, Query, Sections};

/// How long an idle TCP connection stays open (RFC 7766 suggests seconds, CoreDNS uses 10 s).
const TCP_IDLE: Duration = Duration::from_secs(10);

/// Answers queries: the zone (swapped whole on every rebuild) and the forwarder.
pub struct Handler {
    records: RwLock<Arc<Records>>,
    forwarder: Forwarder,
}

/// What a query needs: an answer now, or a trip to the upstreams.
enum Step {
    Done(Option<Vec<u8>>),
    Forward(Query),
    /// A CNAME out of the zone: resolve the target upstream and append its records.
    Chase(Query, Sections),
}

impl Handler {
    pub fn new(records: Records, forwarder: Forwarder) -> Handler {
        Handler {
            records: RwLock::new(Arc::new(records)),
            forwarder,
        }
    }

    /// Replaces the zone; queries in flight keep the one they started with.
    pub fn set_records(&self, records: Records) {
        *self.records.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(records);
    }

    pub fn records(&self) -> Arc<Records> {
        self.records
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn forwarder(&self) -> &Forwarder {
        &self.forwarder
    }

    /// Answers `buf` (over UDP when `udp`: answers are truncated to the client's size).
    /// `None`: no answer at all (the message was a response or too short to carry an id).
    pub async fn handle(&self, buf: &[u8], udp: bool) -> Option<Vec<u8>> {
        match self.step(buf, udp) {
            Step::Done(out) => out,
            Step::Forward(q) => Some(self.forward(&q, buf, udp).await),
            Step::Chase(q, s) => Some(self.chase(&q, s, udp).await),
        }
    }

    fn step(&self, buf: &[u8], udp: bool) -> Step {
        let q = match wire::parse_query(buf) {
            Ok(q) => q,
            Err(e) => {
                tracing::debug!(error = %e, "malformed dns query");
                return Step::Done(wire::error_response(buf, wire::RCODE_FORMERR));
            }
        };
        if q.opcode != 0 {
            return Step::Done(wire::error_response(buf, wire::RCODE_NOTIMP));
        }
        let records = self.records();
        let answer = if q.opaque && records.in_zone(&q.name) {
            Answer::NxDomain(Sections::default())
        } else {
            records.lookup(&q.name, q.qtype)
        };
        let limit = if udp { q.udp_limit() } else { 65535 };
        let encode = |rcode, s: &Sections| wire::encode_response(&q, true, true, rcode, s, limit);
        match answer {
            Answer::Found(s) => {
                let cname_out = match s.answer.last().map(|r| &r.data) {
                    Some(wire::Data::Cname(t)) => !records.in_zone(t),
                    _ => false,
                };
                if cname_out && !matches!(q.qtype, wire::TYPE_CNAME | wire::TYPE_ANY) {
                    return Step::Chase(q, s);
                }
                Step::Done(Some(encode(wire::RCODE_NOERROR, &s)))
            }
            Answer::NxDomain(s) => Step::Done(Some(encode(wire::RCODE_NXDOMAIN, &s))),
            Answer::Forward => {
                if let Some(hit) = self.forwarder.cached(&q) {
                    return Step::Done(Some(fit(&q, hit, udp)));
                }
                Step::Forward(q)
            }
        }
    }

    async fn forward(&self, q: &Query, raw: &[u8], udp: bool) -> Vec<u8> {
        match self.forwarder.forward(q, raw).await {
            Some(a) => fit(q, a, udp),
            None => {
                let limit = if udp { q.udp_limit() } else { 65535 };
                let s = Sections::default();
                wire::encode_response(q, false, true, wire::RCODE_SERVFAIL, &s, limit)
            }
        }
    }

    /// Completes an ExternalName CNAME with the target's records from upstream, as CoreDNS's
    /// kubernetes plugin does, so stub resolvers that do not chase CNAMEs get the addresses.
    async fn chase(&self, q: &Query, mut s: Sections, udp: bool) -> Vec<u8> {
        if let Some(wire::Data::Cname(target)) = s.answer.last().map(|r| r.data.clone()) {
            let raw = wire::encode_query(q.id, &target, q.qtype);
            if let Ok(tq) = wire::parse_query(&raw)
                && let Some(a) = self.forwarder.forward(&tq, &raw).await
                && let Ok(r) = wire::parse_response(&a)
            {
                s.answer.extend(r.answer);
            }
        }
        let limit = if udp { q.udp_limit() } else { 65535 };
        wire::encode_response(q, true, true, wire::RCODE_NOERROR, &s, limit)
    }
}

/// An upstream answer that does not fit the client's UDP size becomes a truncated one.
fn fit(q: &Query, answer: Vec<u8>, udp: bool) -> Vec<u8> {
    if udp && answer.len() > q.udp_limit() {
        let rcode = answer.get(3).map_or(0, |b| b & 0xF);
        return wire::truncated(q, rcode);
    }
    answer
}

/// Serves UDP on `socket` until the task is aborted.
pub async fn serve_udp(socket: Arc<UdpSocket>, handler: Arc<Handler>) {
    let mut buf = vec![0u8; 4096];
    loop {
        let (n, from) = match socket.recv_from(&mut buf).await {
            Ok(x) => x,
            Err(e) => {
                // ICMP errors from earlier sends surface here; they concern one client only.
                tracing::debug!(error = %e, "dns udp receive");
                continue;
            }
        };
        match handler.step(&buf[..n], true) {
            Step::Done(Some(out)) => send(&socket, &out, from).await,
            Step::Done(None) => {}
            Step::Forward(q) => {
                let (socket, handler, raw) = (socket.clone(), handler.clone(), buf[..n].to_vec());
                tokio::spawn(async move {
                    let out = handler.forward(&q, &raw, true).await;
                    send(&socket, &out, from).await;
                });
            }
            Step::Chase(q, s) => {
                let (socket, handler) = (socket.clone(), handler.clone());
                tokio::spawn(async move {
                    let out = handler.chase(&q, s, true).await;
                    send(&socket, &out, from).await;
                });
            }
        }
    }
}

async fn send(socket: &UdpSocket, out: &[u8], to: SocketAddr) {
    if let Err(e) = socket.send_to(out, to).await {
        tracing::debug!(%to, error = %e, "dns udp send");
    }
}

/// Serves TCP on `listener` until the task is aborted.
pub async fn serve_tcp(listener: TcpListener, handler: Arc<Handler>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(serve_connection(stream, handler.clone()));
            }
            Err(e) => {
                tracing::warn!(error = %e, "dns tcp accept");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// One TCP connection: length-prefixed queries, answered in order, until idle or closed.
async fn serve_connection(mut stream: TcpStream, handler: Arc<Handler>) {
    loop {
        let len = match tokio::time::timeout(TCP_IDLE, stream.read_u16()).await {
            Ok(Ok(len)) => usize::from(len),
            _ => return,
        };
        let mut msg = vec![0u8; len];
        match tokio::time::timeout(TCP_IDLE, stream.read_exact(&mut msg)).await {
            Ok(Ok(_)) => {}
            _ => return,
        }
        let Some(out) = handler.handle(&msg, false).await else {
            return;
        };
        let Ok(n) = u16::try_from(out.len()) else {
            return;
        };
        let mut framed = Vec::with_capacity(out.len() + 2);
        framed.extend_from_slice(&n.to_be_bytes());
        framed.extend_from_slice(&out);
        if stream.write_all(&framed).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::records::{self, Zone};
    use crate::dns::wire::{Data, TYPE_A, encode_query, parse_response};
    use k8s_openapi::api::core::v1::Service;
    use k8s_openapi::api::discovery::v1::EndpointSlice;

    fn zone() -> Records {
        let services: Vec<Service> = vec![
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": "big", "namespace": "default"},
                "spec": {"clusterIP": "None"}
            }))
            .unwrap(),
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": "ext", "namespace": "default"},
                "spec": {"type": "ExternalName", "externalName": "target.example"}
            }))
            .unwrap(),
        ];
        let endpoints: Vec<serde_json::Value> = (0..100)
            .map(|i| serde_json::json!({"addresses": [format!("10.42.1.{i}")]}))
            .collect();
        let slices: Vec<EndpointSlice> = vec![
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": "big-1", "namespace": "default",
                             "labels": {"kubernetes.io/service-name": "big"}},
                "addressType": "IPv4",
                "endpoints": endpoints
            }))
            .unwrap(),
        ];
        let z = Zone {
            domain: "cluster.local".into(),
            cluster_dns: None,
            serial: 1,
        };
        records::build(&z, &services, &slices)
    }

    #[tokio::test]
    async fn large_answers_are_truncated_over_udp_and_whole_over_tcp() {
        let h = Handler::new(zone(), Forwarder::new(vec![]));
        let q = encode_query(5, "big.default.svc.cluster.local", TYPE_A);
        let udp = parse_response(&h.handle(&q, true).await.unwrap()).unwrap();
        assert!(udp.tc);
        assert!(udp.answer.is_empty());
        let tcp = parse_response(&h.handle(&q, false).await.unwrap()).unwrap();
        assert!(!tcp.tc);
        assert_eq!(tcp.answer.len(), 100);
    }

    #[tokio::test]
    async fn outside_names_without_upstreams_are_servfail() {
        let h = Handler::new(zone(), Forwarder::new(vec![]));
        let q = encode_query(6, "example.com", TYPE_A);
        let r = parse_response(&h.handle(&q, true).await.unwrap()).unwrap();
        assert_eq!(r.rcode, wire::RCODE_SERVFAIL);
        // A response is never answered.
        let mut resp = q.clone();
        resp[2] |= 0x80;
        assert_eq!(h.handle(&resp, true).await, None);
    }

    #[tokio::test]
    async fn external_names_are_completed_from_upstream_over_the_sockets() {
        let upstream = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let up_addr = upstream.local_addr().unwrap();
        tokio::spawn(async move {
            let mut buf = [0u8; 512];
            while let Ok((n, from)) = upstream.recv_from(&mut buf).await {
                let q = wire::parse_query(&buf[..n]).unwrap();
                let s = Sections {
                    answer: vec![wire::Record {
                        name: q.name.clone(),
                        ttl: 60,
                        data: Data::A("192.0.2.9".parse().unwrap()),
                    }],
                    ..Default::default()
                };
                let out = wire::encode_response(&q, true, false, 0, &s, 512);
                upstream.send_to(&out, from).await.unwrap();
            }
        });
        let h = Arc::new(Handler::new(zone(), Forwarder::new(vec![up_addr])));
        let (addr, task) = crate::dns::bind("127.0.0.1:0".parse().unwrap(), h)
            .await
            .unwrap();
        let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        client
            .send_to(
                &encode_query(8, "ext.default.svc.cluster.local", TYPE_A),
                addr,
            )
            .await
            .unwrap();
        let mut buf = [0u8; 512];
        let (n, _) = tokio::time::timeout(Duration::from_secs(5), client.recv_from(&mut buf))
            .await
            .unwrap()
            .unwrap();
        let r = parse_response(&buf[..n]).unwrap();
        let data: Vec<Data> = r.answer.into_iter().map(|r| r.data).collect();
        assert_eq!(
            data,
            [
                Data::Cname("target.example".into()),
                Data::A("192.0.2.9".parse().unwrap())
            ]
        );
        // Over TCP, through the same listener port.
        let mut s = TcpStream::connect(addr).await.unwrap();
        let q = encode_query(9, "big.default.svc.cluster.local", TYPE_A);
        let mut framed = (q.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(&q);
        s.write_all(&framed).await.unwrap();
        let len = s.read_u16().await.unwrap();
        let mut body = vec![0u8; usize::from(len)];
        s.read_exact(&mut body).await.unwrap();
        assert_eq!(parse_response(&body).unwrap().answer.len(), 100);
        task.abort();
    }
}

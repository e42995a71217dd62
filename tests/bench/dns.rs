//! Cluster DNS benchmark: the DNS server in-process on loopback, with a fixed zone of 1,000
//! ClusterIP services and 100 headless services of 3 endpoints each, queried by a few
//! concurrent UDP clients (each sends one query and waits for its answer, as a stub resolver
//! does). The queries cycle through A, SRV, headless A, PTR and NXDOMAIN names. Prints
//! `dns_qps` (answers per second over all clients) and `dns_p99_ms` (per query, send to
//! answer), and merges them into `target/bench/services.json` (other keys in the file are
//! kept: the proxy benchmark writes its own). Run it with `tests/bench/run.sh services`.
//!
//! Environment: BENCH_DNS_CLIENTS (4), BENCH_DNS_SECS (5), BENCH_OUT (default
//! target/bench/services.json).

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use rk3s::dns::{self, forward, records, wire};
use serde_json::json;
use tokio::net::UdpSocket;

const SERVICES: u32 = 1000;
const HEADLESS: u32 = 100;

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The fixed zone: `svc-N.bench` ClusterIP services with a named port, `hl-N.bench` headless
/// services with three endpoints each.
fn zone() -> anyhow::Result<records::Records> {
    let mut services: Vec<Service> = Vec::new();
    let mut slices: Vec<EndpointSlice> = Vec::new();
    for i in 0..SERVICES {
        services.push(serde_json::from_value(json!({
            "metadata": {"name": format!("svc-{i}"), "namespace": "bench"},
            "spec": {"clusterIP": format!("10.43.{}.{}", 1 + i / 250, 1 + i % 250),
                     "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}
        }))?);
    }
    for i in 0..HEADLESS {
        services.push(serde_json::from_value(json!({
            "metadata": {"name": format!("hl-{i}"), "namespace": "bench"},
            "spec": {"clusterIP": "None", "ports": [{"name": "http", "port": 80}]}
        }))?);
        let endpoints: Vec<_> = (0..3)
            .map(|e| {
                json!({"addresses": [format!("10.42.{}.{}", i, 10 + e)],
                       "hostname": format!("hl-{i}-{e}"), "conditions": {"ready": true}})
            })
            .collect();
        slices.push(serde_json::from_value(json!({
            "metadata": {"name": format!("hl-{i}-x"), "namespace": "bench",
                         "labels": {"kubernetes.io/service-name": format!("hl-{i}")}},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 80, "protocol": "TCP"}],
            "endpoints": endpoints
        }))?);
    }
    let z = records::Zone {
        domain: "cluster.local".into(),
        cluster_dns: Some(Ipv4Addr::new(10, 43, 0, 10)),
        serial: 1,
    };
    Ok(records::build(&z, &services, &slices))
}

/// The query mix: `(name, type, expected rcode)`.
fn queries() -> Vec<(String, u16, u8)> {
    let mut q = Vec::new();
    for i in (0..SERVICES).step_by(7) {
        q.push((
            format!("svc-{i}.bench.svc.cluster.local"),
            wire::TYPE_A,
            wire::RCODE_NOERROR,
        ));
        q.push((
            format!("_http._tcp.svc-{i}.bench.svc.cluster.local"),
            wire::TYPE_SRV,
            wire::RCODE_NOERROR,
        ));
        q.push((
            format!("{}.{}.43.10.in-addr.arpa", 1 + i % 250, 1 + i / 250),
            wire::TYPE_PTR,
            wire::RCODE_NOERROR,
        ));
        q.push((
            format!("missing-{i}.bench.svc.cluster.local"),
            wire::TYPE_A,
            wire::RCODE_NXDOMAIN,
        ));
    }
    for i in 0..HEADLESS {
        q.push((
            format!("hl-{i}.bench.svc.cluster.local"),
            wire::TYPE_A,
            wire::RCODE_NOERROR,
        ));
    }
    q
}

/// One client: queries in turn until `until`; returns its latencies in microseconds.
async fn client(
    server: SocketAddr,
    queries: Arc<Vec<(String, u16, u8)>>,
    offset: usize,
    until: Instant,
) -> anyhow::Result<Vec<u32>> {
    let socket = UdpSocket::bind("127.0.0.1:0").await?;
    socket.connect(server).await?;
    let mut latencies = Vec::new();
    let mut buf = vec![0u8; 4096];
    let mut i = offset;
    let mut id: u16 = offset as u16;
    while Instant::now() < until {
        let (name, qtype, rcode) = &queries[i % queries.len()];
        i += 1;
        id = id.wrapping_add(1);
        let msg = wire::encode_query(id, name, *qtype);
        let start = Instant::now();
        socket.send(&msg).await?;
        let n = tokio::time::timeout(Duration::from_secs(2), socket.recv(&mut buf))
            .await
            .with_context(|| format!("no answer for {name}"))??;
        latencies.push(start.elapsed().as_micros() as u32);
        let r = wire::parse_response(&buf[..n])?;
        if r.id != id || r.rcode != *rcode {
            bail!(
                "{name}: id {} rcode {} (wanted {id}, {rcode})",
                r.id,
                r.rcode
            );
        }
    }
    Ok(latencies)
}

fn main() -> anyhow::Result<()> {
    let clients = env_num("BENCH_DNS_CLIENTS", 4) as usize;
    let secs = env_num("BENCH_DNS_SECS", 5);
    let rt = tokio::runtime::Runtime::new()?;
    let records = zone()?;
    println!("zone: {} names", records.len());
    let (qps, p99, p50) = rt.block_on(async {
        let handler = Arc::new(dns::Handler::new(records, forward::Forwarder::new(vec![])));
        let (addr, server) = dns::bind("127.0.0.1:0".parse()?, handler).await?;
        let queries = Arc::new(queries());
        let start = Instant::now();
        let until = start + Duration::from_secs(secs);
        let mut tasks = Vec::new();
        for c in 0..clients {
            let offset = c * queries.len() / clients.max(1);
            tasks.push(tokio::spawn(client(addr, queries.clone(), offset, until)));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await??);
        }
        let elapsed = start.elapsed().as_secs_f64();
        server.abort();
        all.sort_unstable();
        if all.is_empty() {
            bail!("no query was answered");
        }
        let pct = |p: f64| f64::from(all[((all.len() - 1) as f64 * p) as usize]) / 1000.0;
        anyhow::Ok((all.len() as f64 / elapsed, pct(0.99), pct(0.50)))
    })?;
    println!("{:<16} {:>10}", "figure", "value");
    println!("{:<16} {:>10.0}", "dns_qps", qps);
    println!("{:<16} {:>10.3}", "dns_p99_ms", p99);
    println!("{:<16} {:>10.3}", "dns_p50_ms", p50);
    println!("({clients} clients, {secs} s, UDP on loopback)");
    let path = std::env::var("BENCH_OUT").unwrap_or_else(|_| "target/bench/services.json".into());
    if let Some(dir) = std::path::Path::new(&path).parent() {
        std::fs::create_dir_all(dir)?;
    }
    // Merge: the proxy benchmark writes its own keys into the same file.
    let mut out: BTreeMap<String, serde_json::Value> = std::fs::read_to_string(&path)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default();
    out.insert("dns_qps".into(), json!(qps.round()));
    out.insert("dns_p99_ms".into(), json!((p99 * 1000.0).round() / 1000.0));
    out.insert("dns_p50_ms".into(), json!((p50 * 1000.0).round() / 1000.0));
    std::fs::write(&path, serde_json::to_string_pretty(&out)?)?;
    println!("wrote {path}");
    Ok(())
}

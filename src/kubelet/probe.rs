//! Container probes (startup, liveness, readiness) and lifecycle hook handlers (postStart,
//! preStop), as upstream's kubelet prober runs them.
//!
//! A probe is one check (`exec` inside the container, `httpGet`, `tcpSocket` or `grpc` from the
//! node to the pod) repeated every `periodSeconds` after `initialDelaySeconds`, each bounded by
//! `timeoutSeconds`; the result flips only after `successThreshold` successes or
//! `failureThreshold` failures in a row. Each probe runs in its own task ([`spawn`]) that
//! reports failures and result changes to the pod worker, which owns the container state: it
//! marks readiness, flips `started`, and kills a container whose liveness or startup probe
//! failed. Checks are plain async functions ([`check`], [`run_handler`]) so hooks share them.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use k8s_openapi::api::core::v1::{
    Container, GRPCAction, HTTPGetAction, LifecycleHandler, Probe, TCPSocketAction,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

/// Runs a command inside the container: (exit code, combined output). Dropping the future
/// must end the process (a timed-out exec probe is abandoned).
pub type ExecFn =
    Arc<dyn Fn(Vec<String>) -> BoxFuture<'static, Result<(i32, Vec<u8>), String>> + Send + Sync>;

/// The `User-Agent` upstream's prober sends (`kube-probe/<major>.<minor>`).
const USER_AGENT: &str = "kube-probe/1.33";
/// Upstream reads at most this much of an HTTP probe's body, and of an exec probe's output.
const MAX_OUTPUT: usize = 10 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    Startup,
    Liveness,
    Readiness,
}

impl Kind {
    /// As upstream's event messages spell it: `Liveness probe failed: …`.
    pub fn title(self) -> &'static str {
        match self {
            Kind::Startup => "Startup",
            Kind::Liveness => "Liveness",
            Kind::Readiness => "Readiness",
        }
    }

    pub fn of(self, c: &Container) -> Option<&Probe> {
        match self {
            Kind::Startup => c.startup_probe.as_ref(),
            Kind::Liveness => c.liveness_probe.as_ref(),
            Kind::Readiness => c.readiness_probe.as_ref(),
        }
    }
}

/// Where checks go: the pod's address, the container's named ports, and exec into it.
#[derive(Clone)]
pub struct Target {
    pub pod_ip: String,
    pub ports: HashMap<String, i32>,
    pub exec: ExecFn,
}

impl Target {
    pub fn new(pod_ip: String, c: &Container, exec: ExecFn) -> Target {
        let ports = c
            .ports
            .iter()
            .flatten()
            .filter_map(|p| p.name.clone().map(|n| (n, p.container_port)))
            .collect();
        Target {
            pod_ip,
            ports,
            exec,
        }
    }

    /// A probe port: a number, or the name of one of the container's ports.
    fn port(&self, port: &IntOrString) -> Result<u16, String> {
        let n = match port {
            IntOrString::Int(n) => *n,
            IntOrString::String(s) => match s.parse::<i32>() {
                Ok(n) => n,
                Err(_) => *self
                    .ports
                    .get(s)
                    .ok_or_else(|| format!("couldn't find port: {s} in container"))?,
            },
        };
        u16::try_from(n)
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| format!("invalid port number: {n}"))
    }

    fn host<'a>(&'a self, host: Option<&'a str>) -> &'a str {
        host.filter(|h| !h.is_empty()).unwrap_or(&self.pod_ip)
    }
}

/// What a probe task tells the pod worker.
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    pub container: String,
    /// The container instance probed; reports about an older instance are stale.
    pub id: String,
    pub kind: Kind,
    pub event: ReportEvent,
}

#[derive(Clone, Debug, PartialEq)]
pub enum ReportEvent {
    /// One failed attempt (upstream records an `Unhealthy` event for each).
    Failed(String),
    /// The result changed: `true` once successThreshold successes in a row, `false` once
    /// failureThreshold failures in a row.
    Result(bool),
}

/// The probe's timing with upstream's defaults.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Timing {
    pub initial_delay: Duration,
    pub period: Duration,
    pub timeout: Duration,
    pub success_threshold: u32,
    pub failure_threshold: u32,
}

impl Timing {
    pub fn of(p: &Probe) -> Timing {
        let secs = |v: Option<i32>, default: u64, min: u64| {
            Duration::from_secs(v.map(|v| v.max(0) as u64).unwrap_or(default).max(min))
        };
        Timing {
            initial_delay: secs(p.initial_delay_seconds, 0, 0),
            period: secs(p.period_seconds, 10, 1),
            timeout: secs(p.timeout_seconds, 1, 1),
            success_threshold: p.success_threshold.unwrap_or(1).max(1) as u32,
            failure_threshold: p.failure_threshold.unwrap_or(3).max(1) as u32,
        }
    }
}

/// Consecutive-result bookkeeping: returns the new result when a threshold is crossed.
#[derive(Debug)]
pub struct Counter {
    timing: Timing,
    result: Option<bool>,
    successes: u32,
    failures: u32,
}

impl Counter {
    /// `initial` is the result before any attempt (readiness starts false, liveness true,
    /// startup unknown).
    pub fn new(timing: Timing, initial: Option<bool>) -> Counter {
        Counter {
            timing,
            result: initial,
            successes: 0,
            failures: 0,
        }
    }

    pub fn observe(&mut self, ok: bool) -> Option<bool> {
        if ok {
            self.failures = 0;
            self.successes += 1;
            if self.successes >= self.timing.success_threshold && self.result != Some(true) {
                self.result = Some(true);
                return Some(true);
            }
        } else {
            self.successes = 0;
            self.failures += 1;
            if self.failures >= self.timing.failure_threshold && self.result != Some(false) {
                self.result = Some(false);
                // Upstream's liveness worker starts counting afresh after a failure verdict,
                // as the container is restarted.
                self.failures = 0;
                return Some(false);
            }
        }
        None
    }
}

/// Runs one probe of one container instance until the task is aborted (startup probes end
/// after their first success, as upstream's do).
pub fn spawn(
    kind: Kind,
    probe: Probe,
    container: String,
    id: String,
    target: Target,
    tx: mpsc::UnboundedSender<Report>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let timing = Timing::of(&probe);
        let initial = match kind {
            Kind::Startup => None,
            Kind::Liveness => Some(true),
            Kind::Readiness => Some(false),
        };
        let mut counter = Counter::new(timing, initial);
        tokio::time::sleep(timing.initial_delay).await;
        let mut tick = tokio::time::interval(timing.period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let outcome = check(&probe, &target, timing.timeout).await;
            let send = |event| {
                tx.send(Report {
                    container: container.clone(),
                    id: id.clone(),
                    kind,
                    event,
                })
            };
            if let Err(msg) = &outcome
                && send(ReportEvent::Failed(msg.clone())).is_err()
            {
                return;
            }
            if let Some(result) = counter.observe(outcome.is_ok()) {
                if send(ReportEvent::Result(result)).is_err() {
                    return;
                }
                if kind == Kind::Startup && result {
                    return;
                }
            }
        }
    })
}

/// One attempt of `probe`: `Err` carries upstream's failure message.
pub async fn check(probe: &Probe, target: &Target, timeout: Duration) -> Result<(), String> {
    if let Some(e) = &probe.exec {
        let cmd = e.command.clone().unwrap_or_default();
        return exec(target, cmd, timeout).await;
    }
    if let Some(h) = &probe.http_get {
        return http_get(h, target, timeout).await;
    }
    if let Some(t) = &probe.tcp_socket {
        return tcp_socket(t, target, timeout).await;
    }
    if let Some(g) = &probe.grpc {
        return grpc(g, target, timeout).await;
    }
    Err("missing probe handler".into())
}

/// Runs a postStart or preStop handler, bounded by `deadline` when given.
pub async fn run_handler(
    h: &LifecycleHandler,
    target: &Target,
    deadline: Option<Duration>,
) -> Result<(), String> {
    // Hooks have no timeout of their own; an unbounded one is bounded by a day.
    let limit = deadline.unwrap_or(Duration::from_secs(24 * 3600));
    if let Some(e) = &h.exec {
        let cmd = e.command.clone().unwrap_or_default();
        return exec(target, cmd, limit).await;
    }
    if let Some(g) = &h.http_get {
        return http_get(g, target, limit).await;
    }
    if let Some(t) = &h.tcp_socket {
        return tcp_socket(t, target, limit).await;
    }
    if let Some(s) = &h.sleep {
        tokio::time::sleep(Duration::from_secs(s.seconds.max(0) as u64).min(limit)).await;
        return Ok(());
    }
    Err("a lifecycle handler needs exec, httpGet, tcpSocket or sleep".into())
}

async fn exec(target: &Target, cmd: Vec<String>, timeout: Duration) -> Result<(), String> {
    if cmd.is_empty() {
        return Err("exec probe has an empty command".into());
    }
    let shown = cmd.join(" ");
    match tokio::time::timeout(timeout, (target.exec)(cmd)).await {
        Err(_) => Err(format!(
            "command \"{shown}\" timed out after {}s",
            timeout.as_secs()
        )),
        Ok(Err(e)) => Err(e),
        Ok(Ok((0, _))) => Ok(()),
        Ok(Ok((code, out))) => {
            let out = String::from_utf8_lossy(&out[..out.len().min(MAX_OUTPUT)]).into_owned();
            if out.trim().is_empty() {
                Err(format!("command '{shown}' exited with {code}"))
            } else {
                Err(format!("command '{shown}' exited with {code}: {out}"))
            }
        }
    }
}

async fn tcp_socket(t: &TCPSocketAction, target: &Target, timeout: Duration) -> Result<(), String> {
    let port = target.port(&t.port)?;
    let host = target.host(t.host.as_deref());
    connect(host, port, timeout).await.map(drop)
}

/// Dials `host:port` as Go's dialer words its failures (`dial tcp …: connect: …`).
async fn connect(host: &str, port: u16, timeout: Duration) -> Result<TcpStream, String> {
    let addr = join_host_port(host, port);
    match tokio::time::timeout(timeout, TcpStream::connect(&addr)).await {
        Err(_) => Err(format!("dial tcp {addr}: i/o timeout")),
        Ok(Err(e)) => Err(format!("dial tcp {addr}: connect: {}", io_text(&e))),
        Ok(Ok(s)) => {
            let _ = s.set_nodelay(true);
            Ok(s)
        }
    }
}

fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Go's lower-case errno text (`connection refused`), not Rust's (`Connection refused (os
/// error 111)`).
fn io_text(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused => "connection refused".into(),
        std::io::ErrorKind::ConnectionReset => "connection reset by peer".into(),
        std::io::ErrorKind::TimedOut => "connection timed out".into(),
        _ => {
            let s = e.to_string();
            let s = s.split(" (os error").next().unwrap_or(&s).to_string();
            let mut c = s.chars();
            match c.next() {
                Some(f) => f.to_lowercase().chain(c).collect(),
                None => s,
            }
        }
    }
}

async fn http_get(h: &HTTPGetAction, target: &Target, timeout: Duration) -> Result<(), String> {
    let port = target.port(&h.port)?;
    let host = target.host(h.host.as_deref()).to_string();
    let https = h
        .scheme
        .as_deref()
        .is_some_and(|s| s.eq_ignore_ascii_case("HTTPS"));
    let mut path = h.path.clone().unwrap_or_default();
    if !path.starts_with('/') {
        path.insert(0, '/');
    }
    let url = format!(
        "{}://{}{path}",
        if https { "https" } else { "http" },
        join_host_port(&host, port)
    );
    let attempt = async {
        let tcp = connect(&host, port, timeout).await?;
        let mut req = format!("GET {path} HTTP/1.1\r\n");
        let headers: Vec<(String, String)> = h
            .http_headers
            .iter()
            .flatten()
            .map(|x| (x.name.clone(), x.value.clone()))
            .collect();
        let has = |n: &str| headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(n));
        if !has("host") {
            req.push_str(&format!("Host: {}\r\n", join_host_port(&host, port)));
        }
        if !has("user-agent") {
            req.push_str(&format!("User-Agent: {USER_AGENT}\r\n"));
        }
        if !has("accept") {
            req.push_str("Accept: */*\r\n");
        }
        for (k, v) in &headers {
            if k.contains(['\r', '\n', ':']) || v.contains(['\r', '\n']) {
                return Err(format!("invalid header {k:?}"));
            }
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("Connection: close\r\n\r\n");
        if https {
            let tls = tls_connect(tcp, &host).await?;
            http_exchange(tls, req.as_bytes()).await
        } else {
            http_exchange(tcp, req.as_bytes()).await
        }
    };
    let code = match tokio::time::timeout(timeout, attempt).await {
        Err(_) => {
            return Err(format!(
                "Get \"{url}\": context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
            ));
        }
        Ok(Err(e)) => return Err(format!("Get \"{url}\": {e}")),
        Ok(Ok(code)) => code,
    };
    // Upstream: 200 ≤ code < 400 is success (a redirect it does not follow counts as one).
    if (200..400).contains(&code) {
        Ok(())
    } else {
        Err(format!("HTTP probe failed with statuscode: {code}"))
    }
}

/// Sends a request and returns the response's status code.
async fn http_exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    request: &[u8],
) -> Result<u16, String> {
    s.write_all(request).await.map_err(|e| io_text(&e))?;
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 512];
    while !buf.windows(2).any(|w| w == b"\r\n") {
        let n = s.read(&mut chunk).await.map_err(|e| io_text(&e))?;
        if n == 0 {
            return Err("EOF".into());
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.len() > MAX_OUTPUT {
            return Err("malformed HTTP response".into());
        }
    }
    let line = String::from_utf8_lossy(&buf);
    let line = line.lines().next().unwrap_or_default();
    let mut parts = line.split_whitespace();
    match (parts.next(), parts.next().map(str::parse::<u16>)) {
        (Some(v), Some(Ok(code))) if v.starts_with("HTTP/") => Ok(code),
        _ => Err(format!("malformed HTTP response {line:?}")),
    }
}

/// TLS as upstream's HTTPS probes do it: the certificate is not verified.
async fn tls_connect(
    tcp: TcpStream,
    host: &str,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from(host.to_string())
        .map_err(|e| format!("invalid server name {host:?}: {e}"))?;
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| format!("tls: {e}"))
}

/// Accepts any server certificate (upstream's probes set InsecureSkipVerify), while still
/// checking that the handshake signatures are sound.
#[derive(Debug)]
struct NoVerify(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `grpc.health.v1.Health/Check` over plaintext HTTP/2, as upstream's gRPC probe.
async fn grpc(g: &GRPCAction, target: &Target, timeout: Duration) -> Result<(), String> {
    let port = u16::try_from(g.port)
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| format!("invalid port number: {}", g.port))?;
    let addr = join_host_port(&target.pod_ip, port);
    let tcp = match connect(&target.pod_ip, port, timeout).await {
        Ok(t) => t,
        Err(e) => {
            return Err(format!(
                "timeout: failed to connect service \"{addr}\" within {}s: {e}",
                timeout.as_secs()
            ));
        }
    };
    let service = g.service.clone().unwrap_or_default();
    match tokio::time::timeout(timeout, health_check(tcp, &addr, &service)).await {
        Err(_) => Err(format!(
            "timeout: health rpc did not complete within {}s",
            timeout.as_secs()
        )),
        Ok(Err(e)) => Err(e),
        Ok(Ok(1)) => Ok(()),
        Ok(Ok(status)) => Err(format!(
            "service unhealthy (responded with \"{}\")",
            serving_status(status)
        )),
    }
}

fn serving_status(n: u64) -> &'static str {
    match n {
        0 => "UNKNOWN",
        1 => "SERVING",
        2 => "NOT_SERVING",
        3 => "SERVICE_UNKNOWN",
        _ => "UNKNOWN",
    }
}

/// One unary `Check` call: returns the `status` enum of the HealthCheckResponse.
async fn health_check(tcp: TcpStream, authority: &str, service: &str) -> Result<u64, String> {
    let rpc_err = |e: &dyn std::fmt::Display| format!("error: health rpc probe failed: {e}");
    let (client, conn) = h2::client::handshake(tcp).await.map_err(|e| rpc_err(&e))?;
    let conn = tokio::spawn(conn);
    let result = async {
        let mut client = client.ready().await.map_err(|e| rpc_err(&e))?;
        let req = http::Request::post(format!(
            "http://{authority}/grpc.health.v1.Health/Check"
        ))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("user-agent", USER_AGENT)
        .body(())
        .map_err(|e| rpc_err(&e))?;
        let (response, mut body) = client.send_request(req, false).map_err(|e| rpc_err(&e))?;
        body.send_data(grpc_frame(&health_request(service)).into(), true)
            .map_err(|e| rpc_err(&e))?;
        let response = response.await.map_err(|e| rpc_err(&e))?;
        let (parts, mut recv) = response.into_parts();
        if parts.status != http::StatusCode::OK {
            return Err(rpc_err(&format!("HTTP status {}", parts.status)));
        }
        // A trailers-only response carries grpc-status in the headers.
        let mut grpc_status = parts.headers.get("grpc-status").cloned();
        let mut grpc_message = parts.headers.get("grpc-message").cloned();
        let mut data = Vec::new();
        while let Some(chunk) = recv.data().await {
            let chunk = chunk.map_err(|e| rpc_err(&e))?;
            let _ = recv.flow_control().release_capacity(chunk.len());
            data.extend_from_slice(&chunk);
            if data.len() > MAX_OUTPUT {
                return Err(rpc_err(&"response too large"));
            }
        }
        if let Some(t) = recv.trailers().await.map_err(|e| rpc_err(&e))? {
            grpc_status = t.get("grpc-status").cloned().or(grpc_status);
            grpc_message = t.get("grpc-message").cloned().or(grpc_message);
        }
        let code = grpc_status
            .as_ref()
            .and_then(|v| v.to_str().ok())
            .and_then(|s| s.parse::<u32>().ok())
            .unwrap_or(2);
        let message = grpc_message
            .as_ref()
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        match code {
            0 => {}
            12 => {
                return Err(format!(
                    "error: this server does not implement the grpc health protocol (grpc.health.v1.Health): {message}"
                ));
            }
            _ => {
                return Err(rpc_err(&format!(
                    "rpc error: code = {code} desc = {message}"
                )));
            }
        }
        let msg = data
            .get(5..)
            .ok_or_else(|| rpc_err(&"truncated response"))?;
        Ok(health_response_status(msg))
    }
    .await;
    conn.abort();
    result
}

/// `HealthCheckRequest { string service = 1; }` in protobuf.
fn health_request(service: &str) -> Vec<u8> {
    let mut out = Vec::new();
    if !service.is_empty() {
        out.push(0x0a);
        put_varint(&mut out, service.len() as u64);
        out.extend_from_slice(service.as_bytes());
    }
    out
}

/// The gRPC length-prefixed message framing: uncompressed flag, big-endian length.
fn grpc_frame(msg: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + msg.len());
    out.push(0);
    out.extend_from_slice(&(msg.len() as u32).to_be_bytes());
    out.extend_from_slice(msg);
    out
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn get_varint(b: &[u8]) -> Option<(u64, usize)> {
    let mut v = 0u64;
    for (i, byte) in b.iter().enumerate().take(10) {
        v |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((v, i + 1));
        }
    }
    None
}

/// `HealthCheckResponse { ServingStatus status = 1; }`: field 1 as a varint, 0 when absent.
fn health_response_status(mut b: &[u8]) -> u64 {
    let mut status = 0;
    while let Some((key, n)) = get_varint(b) {
        b = &b[n..];
        let (field, wire) = (key >> 3, key & 7);
        match wire {
            0 => {
                let Some((v, n)) = get_varint(b) else { break };
                b = &b[n..];
                if field == 1 {
                    status = v;
                }
            }
            2 => {
                let Some((len, n)) = get_varint(b) else { break };
                let end = n.saturating_add(len as usize);
                if end > b.len() {
                    break;
                }
                b = &b[end..];
            }
            1 if b.len() >= 8 => b = &b[8..],
            5 if b.len() >= 4 => b = &b[4..],
            _ => break,
        }
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ContainerPort, ExecAction, HTTPHeader};
    use tokio::net::TcpListener;

    fn no_exec() -> ExecFn {
        Arc::new(|_| Box::pin(async { Err("no exec in this test".to_string()) }))
    }

    fn target() -> Target {
        Target {
            pod_ip: "127.0.0.1".into(),
            ports: HashMap::from([("http".to_string(), 8080)]),
            exec: no_exec(),
        }
    }

    /// A one-shot HTTP server answering `status` and returning the request it saw.
    async fn http_server(status: u16) -> (u16, tokio::task::JoinHandle<String>) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let h = tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut buf = vec![0u8; 4096];
            let mut got = Vec::new();
            while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = s.read(&mut buf).await.unwrap();
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
            }
            let reply = format!("HTTP/1.1 {status} X\r\nContent-Length: 2\r\n\r\nok");
            s.write_all(reply.as_bytes()).await.unwrap();
            String::from_utf8(got).unwrap()
        });
        (port, h)
    }

    fn http_probe(port: i32) -> Probe {
        Probe {
            http_get: Some(HTTPGetAction {
                path: Some("/healthz".into()),
                port: IntOrString::Int(port),
                http_headers: Some(vec![HTTPHeader {
                    name: "X-Custom".into(),
                    value: "yes".into(),
                }]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn http_probes_succeed_below_400_and_send_upstreams_headers() {
        let (port, seen) = http_server(204).await;
        let p = http_probe(port as i32);
        assert_eq!(check(&p, &target(), Duration::from_secs(2)).await, Ok(()));
        let req = seen.await.unwrap();
        assert!(req.starts_with("GET /healthz HTTP/1.1\r\n"), "{req}");
        assert!(req.contains("User-Agent: kube-probe/1.33\r\n"), "{req}");
        assert!(req.contains("X-Custom: yes\r\n"), "{req}");
        assert!(
            req.contains(&format!("Host: 127.0.0.1:{port}\r\n")),
            "{req}"
        );

        let (port, _) = http_server(302).await;
        assert_eq!(
            check(&http_probe(port as i32), &target(), Duration::from_secs(2)).await,
            Ok(())
        );
        let (port, _) = http_server(500).await;
        assert_eq!(
            check(&http_probe(port as i32), &target(), Duration::from_secs(2)).await,
            Err("HTTP probe failed with statuscode: 500".into())
        );
    }

    #[tokio::test]
    async fn refused_connections_fail_with_gos_wording() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        drop(l);
        let err = check(&http_probe(port as i32), &target(), Duration::from_secs(2))
            .await
            .unwrap_err();
        assert_eq!(
            err,
            format!(
                "Get \"http://127.0.0.1:{port}/healthz\": dial tcp 127.0.0.1:{port}: connect: connection refused"
            )
        );
        let tcp = Probe {
            tcp_socket: Some(TCPSocketAction {
                port: IntOrString::Int(port as i32),
                host: None,
            }),
            ..Default::default()
        };
        assert_eq!(
            check(&tcp, &target(), Duration::from_secs(2)).await,
            Err(format!(
                "dial tcp 127.0.0.1:{port}: connect: connection refused"
            ))
        );
    }

    #[tokio::test]
    async fn tcp_probes_resolve_named_ports() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let mut t = target();
        t.ports.insert("web".into(), port as i32);
        let tcp = Probe {
            tcp_socket: Some(TCPSocketAction {
                port: IntOrString::String("web".into()),
                host: None,
            }),
            ..Default::default()
        };
        assert_eq!(check(&tcp, &t, Duration::from_secs(2)).await, Ok(()));
        let unknown = Probe {
            tcp_socket: Some(TCPSocketAction {
                port: IntOrString::String("nope".into()),
                host: None,
            }),
            ..Default::default()
        };
        assert_eq!(
            check(&unknown, &t, Duration::from_secs(2)).await,
            Err("couldn't find port: nope in container".into())
        );
    }

    #[tokio::test]
    async fn slow_http_servers_time_out() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let _keep = tokio::spawn(async move {
            let (s, _) = l.accept().await.unwrap();
            tokio::time::sleep(Duration::from_secs(10)).await;
            drop(s);
        });
        let err = check(&http_probe(port as i32), &target(), Duration::from_secs(1))
            .await
            .unwrap_err();
        assert!(err.contains("context deadline exceeded"), "{err}");
    }

    #[tokio::test]
    async fn exec_probes_report_exit_codes_output_and_timeouts() {
        let exec: ExecFn = Arc::new(|cmd: Vec<String>| {
            Box::pin(async move {
                match cmd[0].as_str() {
                    "ok" => Ok((0, Vec::new())),
                    "bad" => Ok((3, b"not ready\n".to_vec())),
                    _ => {
                        tokio::time::sleep(Duration::from_secs(10)).await;
                        Ok((0, Vec::new()))
                    }
                }
            })
        });
        let t = Target { exec, ..target() };
        let probe = |cmd: &str| Probe {
            exec: Some(ExecAction {
                command: Some(vec![cmd.into(), "x".into()]),
            }),
            ..Default::default()
        };
        assert_eq!(
            check(&probe("ok"), &t, Duration::from_secs(1)).await,
            Ok(())
        );
        assert_eq!(
            check(&probe("bad"), &t, Duration::from_secs(1)).await,
            Err("command 'bad x' exited with 3: not ready\n".into())
        );
        assert_eq!(
            check(&probe("slow"), &t, Duration::from_secs(1)).await,
            Err("command \"slow x\" timed out after 1s".into())
        );
    }

    #[test]
    fn thresholds_flip_the_result_only_after_enough_attempts_in_a_row() {
        let timing = Timing::of(&Probe {
            success_threshold: Some(2),
            failure_threshold: Some(3),
            ..Default::default()
        });
        assert_eq!(timing.period, Duration::from_secs(10));
        assert_eq!(timing.timeout, Duration::from_secs(1));
        let mut c = Counter::new(timing, Some(false));
        assert_eq!(c.observe(true), None);
        assert_eq!(c.observe(false), None);
        assert_eq!(c.observe(true), None);
        assert_eq!(c.observe(true), Some(true));
        assert_eq!(c.observe(true), None);
        assert_eq!(c.observe(false), None);
        assert_eq!(c.observe(false), None);
        assert_eq!(c.observe(false), Some(false));
        // Liveness starts as success: failures flip it, successes alone report nothing.
        let mut live = Counter::new(Timing::of(&Probe::default()), Some(true));
        assert_eq!(live.observe(true), None);
        assert_eq!(live.observe(false), None);
        assert_eq!(live.observe(false), None);
        assert_eq!(live.observe(false), Some(false));
    }

    #[test]
    fn health_messages_encode_and_decode() {
        assert_eq!(health_request(""), Vec::<u8>::new());
        assert_eq!(health_request("db"), vec![0x0a, 2, b'd', b'b']);
        assert_eq!(grpc_frame(&[1, 2]), vec![0, 0, 0, 0, 2, 1, 2]);
        assert_eq!(health_response_status(&[0x08, 0x01]), 1);
        assert_eq!(health_response_status(&[]), 0);
        // An unknown length-delimited field before the status is skipped.
        assert_eq!(health_response_status(&[0x12, 1, b'x', 0x08, 0x02]), 2);
    }

    /// A gRPC health server on h2 answering every Check with `status`.
    async fn grpc_server(status: u8) -> u16 {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (s, _) = l.accept().await.unwrap();
            let mut conn = h2::server::handshake(s).await.unwrap();
            while let Some(Ok((req, mut respond))) = conn.accept().await {
                assert_eq!(req.uri().path(), "/grpc.health.v1.Health/Check");
                let mut body = req.into_body();
                while let Some(d) = body.data().await {
                    let _ = d.unwrap();
                }
                let resp = http::Response::builder()
                    .header("content-type", "application/grpc")
                    .body(())
                    .unwrap();
                let mut send = respond.send_response(resp, false).unwrap();
                send.send_data(grpc_frame(&[0x08, status]).into(), false)
                    .unwrap();
                let mut trailers = http::HeaderMap::new();
                trailers.insert("grpc-status", "0".parse().unwrap());
                send.send_trailers(trailers).unwrap();
            }
        });
        port
    }

    #[tokio::test]
    async fn grpc_probes_check_the_serving_status() {
        let t = target();
        let probe = |port: u16| Probe {
            grpc: Some(GRPCAction {
                port: port as i32,
                service: None,
            }),
            ..Default::default()
        };
        let port = grpc_server(1).await;
        assert_eq!(
            check(&probe(port), &t, Duration::from_secs(2)).await,
            Ok(())
        );
        let port = grpc_server(2).await;
        assert_eq!(
            check(&probe(port), &t, Duration::from_secs(2)).await,
            Err("service unhealthy (responded with \"NOT_SERVING\")".into())
        );
    }

    #[test]
    fn targets_take_named_ports_from_the_container() {
        let c = Container {
            name: "c".into(),
            ports: Some(vec![ContainerPort {
                name: Some("metrics".into()),
                container_port: 9100,
                ..Default::default()
            }]),
            ..Default::default()
        };
        let t = Target::new("10.42.0.5".into(), &c, no_exec());
        assert_eq!(t.port(&IntOrString::String("metrics".into())), Ok(9100));
        assert_eq!(t.port(&IntOrString::String("8080".into())), Ok(8080));
        assert!(t.port(&IntOrString::Int(0)).is_err());
    }
}

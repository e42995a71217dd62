//! Port-forward over SPDY streams (upstream's kubelet `portforward/httpstream.go`), shared by
//! the SPDY/3.1 upgrade and the WebSocket tunnel: for every local connection the client opens
//! an `error` stream and a `data` stream with the same `requestID` and `port` headers; once both
//! are there the kubelet dials the port inside the pod and copies bytes both ways, reporting a
//! failed dial as text on the error stream.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

/// Connects to `port` inside the pod (its network namespace, on localhost).
pub type Dial = Arc<dyn Fn(u16) -> BoxFuture<'static, std::io::Result<TcpStream>> + Send + Sync>;

/// How long the second stream of a pair may take (upstream's stream creation timeout).
const PAIR_TIMEOUT: Duration = Duration::from_secs(30);

/// One stream the client opened, with its headers (names lower case).
pub(crate) struct Incoming {
    pub headers: Vec<(String, String)>,
    pub read: Pin<Box<dyn AsyncRead + Send>>,
    pub write: Pin<Box<dyn AsyncWrite + Send>>,
}

impl Incoming {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// The `ports` query parameter(s) of the legacy WebSocket protocol: repeated and/or comma
/// separated, each a port number 1–65535.
pub(crate) fn ports_of(query: Option<&str>) -> Result<Vec<u16>, String> {
    let mut ports = Vec::new();
    for (k, v) in super::query_pairs(query) {
        if k != "ports" {
            continue;
        }
        for p in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match p.parse::<u16>() {
                Ok(n) if n > 0 => ports.push(n),
                _ => return Err(format!("invalid port value {p:?}")),
            }
        }
    }
    Ok(ports)
}

/// The text sent on the error stream when the pod's port cannot be reached (kubectl prints it).
pub(crate) fn dial_error(port: u16, e: &std::io::Error) -> String {
    format!(
        "error forwarding port {port} to pod: failed to connect to localhost:{port} inside the pod's network namespace: {e}"
    )
}

/// Pairs the incoming streams by `requestID` and forwards each pair; returns when the client
/// opens no more streams (the session ended).
pub(crate) async fn serve_pairs(mut incoming: mpsc::Receiver<Incoming>, dial: Dial) {
    struct Half {
        error: Option<Incoming>,
        data: Option<Incoming>,
        since: tokio::time::Instant,
    }
    let mut waiting: HashMap<String, Half> = HashMap::new();
    let mut tasks = Vec::new();
    loop {
        let next = tokio::time::timeout(PAIR_TIMEOUT, incoming.recv()).await;
        // Pairs whose second stream never came: drop them (closing what was opened).
        waiting.retain(|_, h| h.since.elapsed() < PAIR_TIMEOUT);
        let stream = match next {
            Ok(Some(s)) => s,
            Ok(None) => break,
            Err(_) => continue,
        };
        let kind = stream.header("streamtype").unwrap_or_default().to_string();
        let id = stream.header("requestid").unwrap_or_default().to_string();
        let half = waiting.entry(id.clone()).or_insert_with(|| Half {
            error: None,
            data: None,
            since: tokio::time::Instant::now(),
        });
        match kind.as_str() {
            "error" => half.error = Some(stream),
            "data" => half.data = Some(stream),
            _ => continue,
        }
        if half.error.is_some()
            && half.data.is_some()
            && let Some(Half {
                error: Some(error),
                data: Some(data),
                ..
            }) = waiting.remove(&id)
        {
            tasks.push(tokio::spawn(forward(error, data, dial.clone())));
        }
    }
    for t in tasks {
        t.abort();
    }
}

/// One forwarded connection.
async fn forward(error: Incoming, data: Incoming, dial: Dial) {
    let port = data
        .header("port")
        .or_else(|| error.header("port"))
        .and_then(|p| p.parse::<u16>().ok());
    let Incoming {
        write: mut error_w, ..
    } = error;
    let Some(port) = port.filter(|p| *p > 0) else {
        let _ = error_w
            .write_all(b"the port header is missing or invalid")
            .await;
        let _ = error_w.shutdown().await;
        return;
    };
    let Incoming {
        read: mut data_r,
        write: mut data_w,
        ..
    } = data;
    let conn = match dial(port).await {
        Ok(c) => c,
        Err(e) => {
            let _ = error_w.write_all(dial_error(port, &e).as_bytes()).await;
            let _ = error_w.shutdown().await;
            let _ = data_w.shutdown().await;
            return;
        }
    };
    let (mut conn_r, mut conn_w) = conn.into_split();
    let to_pod = async {
        let _ = tokio::io::copy(&mut data_r, &mut conn_w).await;
        // The client finished sending: half-close towards the pod.
        let _ = conn_w.shutdown().await;
    };
    let from_pod = async {
        let _ = tokio::io::copy(&mut conn_r, &mut data_w).await;
        let _ = data_w.shutdown().await;
    };
    // The pod closing its side ends the connection (as upstream, which then closes both
    // streams); the client closing its side only half-closes towards the pod.
    tokio::pin!(to_pod, from_pod);
    let mut sent = false;
    loop {
        tokio::select! {
            _ = &mut to_pod, if !sent => sent = true,
            _ = &mut from_pod => break,
        }
    }
    let _ = error_w.shutdown().await;
}

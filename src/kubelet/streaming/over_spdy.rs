//! The SPDY/3.1 transport of the streaming server (kubectl ≤ 1.29, and newer kubectl's fallback
//! when the WebSocket upgrade fails; port-forward's WebSocket tunnel carries it too): the
//! `POST` + `Upgrade: SPDY/3.1` handshake with `X-Stream-Protocol-Version` negotiation, then
//! one SPDY stream per channel named by its `streamType` header (codec: `spdy.rs`).

use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderValue, Request, Response as HttpResponse, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use super::portforward::{Incoming, serve_pairs};
use super::spdy::{Session, Stream};
use super::{Client, Dial, Options, Start, pump, status};

const PROTOCOL_HEADER: &str = "x-stream-protocol-version";
/// Over SPDY v5 is v4 (its close signal is a WebSocket matter: SPDY has FIN).
const EXEC_PROTOCOLS: [&str; 2] = ["v5.channel.k8s.io", "v4.channel.k8s.io"];
const PORT_FORWARD_PROTOCOL: &str = "portforward.k8s.io";
/// How long the client may take to open the streams of an exec (upstream's 30 s).
const STREAMS_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the client may take to hang up after the status was sent.
const HANGUP_TIMEOUT: Duration = Duration::from_secs(10);

/// The protocols the client offers (the header may repeat and hold comma lists).
fn offered(req: &Request<Body>) -> Vec<String> {
    req.headers()
        .get_all(PROTOCOL_HEADER)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .collect()
}

/// Negotiates, answers 101 and runs `session` on the upgraded connection.
fn upgrade<F, Fut>(mut req: Request<Body>, supported: &[&'static str], session: F) -> Response
where
    F: FnOnce(TokioIo<hyper::upgrade::Upgraded>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let offered = offered(&req);
    let Some(protocol) = supported
        .iter()
        .find(|p| offered.iter().any(|o| o == *p))
        .copied()
    else {
        return (
            StatusCode::FORBIDDEN,
            format!(
                "unable to upgrade: unable to negotiate protocol: client supports {offered:?}, server supports {supported:?}"
            ),
        )
            .into_response();
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => session(TokioIo::new(upgraded)).await,
            Err(e) => tracing::debug!(error = %e, "SPDY upgrade failed"),
        }
    });
    let mut resp = HttpResponse::new(Body::empty());
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("SPDY/3.1"));
    h.insert(PROTOCOL_HEADER, HeaderValue::from_static(protocol));
    resp
}

pub(super) fn exec(req: Request<Body>, opts: Options, start: Start) -> Response {
    upgrade(req, &EXEC_PROTOCOLS, move |io| {
        exec_session(io, opts, start)
    })
}

/// Waits for the client's streams (`error`, and `stdin`/`stdout`/`stderr`/`resize` as the
/// options ask), runs the process, then writes the status on `error` and ends the session.
async fn exec_session<IO>(io: IO, opts: Options, start: Start)
where
    IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (session, mut incoming) = Session::serve(io);
    let mut streams: [Option<Stream>; 5] = Default::default();
    let wanted = [true, opts.stdin, opts.stdout, opts.stderr, opts.tty];
    let deadline = tokio::time::Instant::now() + STREAMS_TIMEOUT;
    while (0..5).any(|i| wanted[i] && streams[i].is_none()) {
        let stream = match tokio::time::timeout_at(deadline, incoming.recv()).await {
            Ok(Some(s)) => s,
            // The client left, or never opened everything it asked for.
            _ => {
                session.close().await;
                return;
            }
        };
        let slot = match stream.header("streamtype").unwrap_or_default() {
            "error" => 0,
            "stdin" => 1,
            "stdout" => 2,
            "stderr" => 3,
            "resize" => 4,
            _ => continue,
        };
        streams[slot] = Some(stream);
    }
    let [error, stdin, stdout, stderr, resize] = streams;
    let Some(error) = error else {
        session.close().await;
        return;
    };
    let (_, mut error_w) = error.split();
    let writer = |s: Option<Stream>| s.map(|s| s.split().1);
    // Our side of stdin stays open until the end: kubectl takes a FIN on it as the end of the
    // session's input and stops sending (client-go's v2+ stdin handling).
    let (stdin, _stdin_w) = match stdin.map(Stream::split) {
        Some((r, w)) => (Some(r), Some(w)),
        None => (None, None),
    };
    let reader = |s: Option<Stream>| s.map(|s| s.split().0);
    let (resize_tx, resize_rx) = mpsc::unbounded_channel();
    if let Some(r) = reader(resize) {
        tokio::spawn(read_resizes(r, resize_tx));
    }
    let gone = session.clone();
    let client = Client {
        stdin: stdin.map(|r| Box::pin(r) as _),
        stdout: writer(stdout).map(|w| Box::pin(w) as _),
        stderr: writer(stderr).map(|w| Box::pin(w) as _),
        resize: opts.tty.then_some(resize_rx),
        gone: Box::pin(async move { gone.closed().await }),
    };
    let outcome = pump(start, client).await;
    if let Some(s) = status(&outcome, &opts.command) {
        let _ = error_w.write_all(s.to_string().as_bytes()).await;
    }
    let _ = error_w.shutdown().await;
    // The client hangs up once it has read everything; closing first could cut off output
    // it has not read yet.
    let _ = tokio::time::timeout(HANGUP_TIMEOUT, session.closed()).await;
    session.close().await;
}

/// The resize stream: JSON objects one after another (`{"Width":80,"Height":24}`).
async fn read_resizes(mut r: impl AsyncRead + Unpin, tx: mpsc::UnboundedSender<(u16, u16)>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        let n = match r.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        let mut used = 0;
        let mut values =
            serde_json::Deserializer::from_slice(&buf).into_iter::<serde_json::Value>();
        while let Some(Ok(v)) = values.next() {
            used = values.byte_offset();
            let dim = |k: &str| v[k].as_u64().and_then(|n| u16::try_from(n).ok());
            if let (Some(w), Some(h)) = (dim("Width"), dim("Height")) {
                let _ = tx.send((w, h));
            }
        }
        buf.drain(..used);
        // A client sending garbage gets no more resizes, not unbounded memory.
        if buf.len() > 64 * 1024 {
            return;
        }
    }
}

pub(super) fn portforward(req: Request<Body>, dial: Dial) -> Response {
    upgrade(req, &[PORT_FORWARD_PROTOCOL], move |io| serve(io, dial))
}

/// Port-forward inside the WebSocket tunnel (`SPDY/3.1+portforward.k8s.io`).
pub(super) async fn tunnel(io: super::websocket::Tunnel, dial: Dial) {
    serve(io, dial).await
}

/// Port-forward over a SPDY session on `io`.
async fn serve<IO>(io: IO, dial: Dial)
where
    IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (session, mut incoming) = Session::serve(io);
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(async move {
        while let Some(stream) = incoming.recv().await {
            let headers = stream.headers().to_vec();
            let (read, write) = stream.split();
            let s = Incoming {
                headers,
                read: Box::pin(read),
                write: Box::pin(write),
            };
            if tx.send(s).await.is_err() {
                break;
            }
        }
    });
    serve_pairs(rx, dial).await;
    session.close().await;
}

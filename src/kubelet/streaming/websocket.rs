//! The WebSocket transport of the streaming server (upstream's `wsstream` and KEP-4006 server
//! side): exec/attach over `v5.channel.k8s.io` or `v4.channel.k8s.io`, and port-forward over the
//! legacy channel protocol or as a tunnel carrying a SPDY session.

use axum::body::Body;
use axum::extract::FromRequestParts;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::http::Request;
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::{Client, Dial, Options, Start, bad_request, pump, status};

pub(super) const V5: &str = "v5.channel.k8s.io";
pub(super) const V4: &str = "v4.channel.k8s.io";
/// kubectl ≥ 1.31's port-forward: a SPDY/3.1 session inside binary messages.
pub(super) const PORT_FORWARD_TUNNEL: &str = "SPDY/3.1+portforward.k8s.io";

const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const ERROR: u8 = 3;
const RESIZE: u8 = 4;
/// v5: `[CLOSE, channel]` says the sender will write no more on that channel.
const CLOSE: u8 = 255;

/// How much one binary message carries at most (client-go reads messages of any size; this
/// keeps each one small enough to interleave stdout and stderr).
const CHUNK: usize = 32 * 1024;

async fn upgrade(req: Request<Body>) -> Result<WebSocketUpgrade, Response> {
    let (mut parts, _) = req.into_parts();
    WebSocketUpgrade::from_request_parts(&mut parts, &())
        .await
        .map_err(IntoResponse::into_response)
}

/// exec/attach: answers 101 with v5 or v4 (a client offering neither gets a 400, which makes
/// kubectl fall back to SPDY), then runs the session.
pub(super) async fn exec(req: Request<Body>, opts: Options, start: Start) -> Response {
    let ws = match upgrade(req).await {
        Ok(ws) => ws.protocols([V5, V4]),
        Err(r) => return r,
    };
    let Some(v5) = ws.selected_protocol().map(|p| p == V5) else {
        return bad_request(format!(
            "unable to upgrade: none of the WebSocket subprotocols offered is supported (want {V5} or {V4})"
        ));
    };
    ws.on_upgrade(move |socket| exec_session(socket, v5, opts, start))
}

async fn exec_session(socket: WebSocket, v5: bool, opts: Options, start: Start) {
    let (sink, source) = socket.split();
    let (tx, rx) = mpsc::channel::<Message>(16);
    let writer = tokio::spawn(write_loop(sink, rx));
    let (stdin_w, stdin_r) = if opts.stdin {
        let (w, r) = tokio::io::duplex(64 * 1024);
        (Some(w), Some(r))
    } else {
        (None, None)
    };
    let (resize_tx, resize_rx) = mpsc::unbounded_channel();
    let (gone_tx, gone_rx) = oneshot::channel::<()>();
    let reader = tokio::spawn(read_loop(source, v5, stdin_w, resize_tx, gone_tx));
    let (stdout, stdout_fwd) = out_channel(opts.stdout, STDOUT, &tx);
    let (stderr, stderr_fwd) = out_channel(opts.stderr, STDERR, &tx);
    let client = Client {
        stdin: stdin_r.map(|r| Box::pin(r) as _),
        stdout: stdout.map(|w| Box::pin(w) as _),
        stderr: stderr.map(|w| Box::pin(w) as _),
        resize: opts.tty.then_some(resize_rx),
        gone: Box::pin(async move {
            let _ = gone_rx.await;
        }),
    };
    let outcome = pump(start, client).await;
    // Everything the process wrote goes out before the status.
    for fwd in [stdout_fwd, stderr_fwd].into_iter().flatten() {
        let _ = fwd.await;
    }
    if let Some(s) = status(&outcome, &opts.command) {
        let mut msg = vec![ERROR];
        msg.extend_from_slice(s.to_string().as_bytes());
        let _ = tx.send(Message::Binary(msg.into())).await;
    }
    // The writer closes with 1000 once every sender is gone.
    drop(tx);
    let _ = writer.await;
    reader.abort();
}

/// Sends what the session produces, then a normal closure (client-go reads it as EOF).
async fn write_loop(mut sink: SplitSink<WebSocket, Message>, mut rx: mpsc::Receiver<Message>) {
    while let Some(msg) = rx.recv().await {
        if sink.send(msg).await.is_err() {
            return;
        }
    }
    let _ = sink
        .send(Message::Close(Some(CloseFrame {
            code: 1000,
            reason: "".into(),
        })))
        .await;
    let _ = sink.close().await;
}

/// Reads the client's messages: stdin, its v5 close signal, resizes. Pings are answered by the
/// WebSocket layer while this reads. Ends (closing stdin and signalling `gone`) when the client
/// closes the connection.
async fn read_loop(
    mut source: SplitStream<WebSocket>,
    v5: bool,
    mut stdin: Option<DuplexStream>,
    resize: mpsc::UnboundedSender<(u16, u16)>,
    gone: oneshot::Sender<()>,
) {
    while let Some(msg) = source.next().await {
        let data = match msg {
            Ok(Message::Binary(data)) => data,
            Ok(Message::Close(_)) | Err(_) => break,
            Ok(_) => continue,
        };
        match data.first() {
            Some(&STDIN) => {
                if let Some(w) = stdin.as_mut()
                    && w.write_all(&data[1..]).await.is_err()
                {
                    stdin = None;
                }
            }
            Some(&RESIZE) => {
                if let Some(size) = parse_resize(&data[1..]) {
                    let _ = resize.send(size);
                }
            }
            Some(&CLOSE) if v5 && data.get(1) == Some(&STDIN) => stdin = None,
            _ => {}
        }
    }
    drop(stdin);
    let _ = gone.send(());
}

/// A resize message: `{"Width":120,"Height":40}`.
fn parse_resize(data: &[u8]) -> Option<(u16, u16)> {
    let v: serde_json::Value = serde_json::from_slice(data).ok()?;
    let dim = |k: &str| v[k].as_u64().and_then(|n| u16::try_from(n).ok());
    Some((dim("Width")?, dim("Height")?))
}

/// A writer for output channel `ch` (when the client asked for it) and the task that turns what
/// is written into binary messages; the task ends when the writer is dropped or shut down.
fn out_channel(
    wanted: bool,
    ch: u8,
    tx: &mpsc::Sender<Message>,
) -> (Option<DuplexStream>, Option<JoinHandle<()>>) {
    if !wanted {
        return (None, None);
    }
    let (w, mut r) = tokio::io::duplex(CHUNK);
    let tx = tx.clone();
    let task = tokio::spawn(async move {
        let mut buf = BytesMut::with_capacity(CHUNK + 1);
        loop {
            buf.clear();
            buf.extend_from_slice(&[ch]);
            buf.resize(CHUNK + 1, 0);
            let n = match r.read(&mut buf[1..]).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            buf.truncate(n + 1);
            if tx
                .send(Message::Binary(buf.split().freeze()))
                .await
                .is_err()
            {
                break;
            }
        }
    });
    (Some(w), Some(task))
}

/// Port-forward: the SPDY tunnel (kubectl ≥ 1.31) or the legacy channel protocol.
pub(super) async fn portforward(req: Request<Body>, dial: Dial) -> Response {
    let ports = super::portforward::ports_of(req.uri().query());
    let ws = match upgrade(req).await {
        Ok(ws) => ws.protocols([PORT_FORWARD_TUNNEL, V4]),
        Err(r) => return r,
    };
    let tunnel = ws.selected_protocol().map(|p| p == PORT_FORWARD_TUNNEL);
    match tunnel {
        Some(true) => {
            ws.on_upgrade(move |socket| super::over_spdy::tunnel(Tunnel::new(socket), dial))
        }
        // The legacy protocol also runs without a subprotocol (older clients send none).
        _ => {
            let ports = match ports {
                Ok(p) if !p.is_empty() => p,
                Ok(_) => return bad_request("query parameter \"port\" is required"),
                Err(e) => return bad_request(e),
            };
            ws.on_upgrade(move |socket| legacy_portforward(socket, ports, dial))
        }
    }
}

/// The legacy WebSocket port-forward: for the i-th port, channel 2i carries data and 2i+1
/// errors; each channel first carries the port as two little-endian bytes. One connection per
/// port, dialled at once.
async fn legacy_portforward(socket: WebSocket, ports: Vec<u16>, dial: Dial) {
    let (sink, mut source) = socket.split();
    let (tx, rx) = mpsc::channel::<Message>(16);
    let writer = tokio::spawn(write_loop(sink, rx));
    let mut conns: Vec<Option<tokio::net::tcp::OwnedWriteHalf>> = Vec::new();
    let mut readers = Vec::new();
    for (i, port) in ports.iter().enumerate() {
        let (data_ch, err_ch) = ((2 * i) as u8, (2 * i + 1) as u8);
        let prefix = port.to_le_bytes();
        for ch in [data_ch, err_ch] {
            let _ = tx
                .send(Message::Binary(Bytes::from(vec![ch, prefix[0], prefix[1]])))
                .await;
        }
        match dial(*port).await {
            Ok(stream) => {
                let (mut r, w) = stream.into_split();
                conns.push(Some(w));
                let tx = tx.clone();
                readers.push(tokio::spawn(async move {
                    let mut buf = vec![0u8; CHUNK + 1];
                    loop {
                        buf[0] = data_ch;
                        let n = match r.read(&mut buf[1..]).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        let msg = Message::Binary(Bytes::copy_from_slice(&buf[..n + 1]));
                        if tx.send(msg).await.is_err() {
                            break;
                        }
                    }
                }));
            }
            Err(e) => {
                conns.push(None);
                let mut msg = vec![err_ch];
                msg.extend_from_slice(super::portforward::dial_error(*port, &e).as_bytes());
                let _ = tx.send(Message::Binary(msg.into())).await;
            }
        }
    }
    drop(tx);
    while let Some(Ok(msg)) = source.next().await {
        let data = match msg {
            Message::Binary(d) => d,
            Message::Close(_) => break,
            _ => continue,
        };
        let Some((&ch, payload)) = data.split_first() else {
            continue;
        };
        if ch % 2 != 0 {
            continue;
        }
        if let Some(slot) = conns.get_mut(usize::from(ch / 2))
            && let Some(w) = slot
            && w.write_all(payload).await.is_err()
        {
            *slot = None;
        }
    }
    drop(conns);
    for r in &readers {
        r.abort();
    }
    writer.abort();
}

/// A WebSocket whose binary messages carry a byte stream (the port-forward tunnel), as
/// AsyncRead + AsyncWrite for the SPDY codec.
pub(super) struct Tunnel {
    socket: WebSocket,
    pending: Bytes,
    closed: bool,
}

impl Tunnel {
    fn new(socket: WebSocket) -> Tunnel {
        Tunnel {
            socket,
            pending: Bytes::new(),
            closed: false,
        }
    }
}

impl tokio::io::AsyncRead for Tunnel {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        use std::task::Poll;
        loop {
            if !self.pending.is_empty() {
                let n = self.pending.len().min(buf.remaining());
                let chunk = self.pending.split_to(n);
                buf.put_slice(&chunk);
                return Poll::Ready(Ok(()));
            }
            if self.closed {
                return Poll::Ready(Ok(()));
            }
            match std::task::ready!(self.socket.poll_next_unpin(cx)) {
                Some(Ok(Message::Binary(data))) => self.pending = data,
                Some(Ok(Message::Close(_))) | None => self.closed = true,
                Some(Ok(_)) => {}
                Some(Err(e)) => return Poll::Ready(Err(std::io::Error::other(e))),
            }
        }
    }
}

impl tokio::io::AsyncWrite for Tunnel {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        data: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        use std::task::Poll;
        std::task::ready!(self.socket.poll_ready_unpin(cx)).map_err(std::io::Error::other)?;
        let n = data.len().min(CHUNK);
        self.socket
            .start_send_unpin(Message::Binary(Bytes::copy_from_slice(&data[..n])))
            .map_err(std::io::Error::other)?;
        Poll::Ready(Ok(n))
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        self.socket
            .poll_flush_unpin(cx)
            .map_err(std::io::Error::other)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        self.socket
            .poll_close_unpin(cx)
            .map_err(std::io::Error::other)
    }
}

//! The kubelet's streaming server: `exec`, `attach` and `portForward` sessions between a client
//! (kubectl through the API server) and a container, as upstream's kubelet serves them.
//!
//! Two transports carry the same channels:
//! - WebSocket (`websocket.rs`): kubectl ≥ 1.30 for exec/attach with `v5.channel.k8s.io`, other
//!   clients with `v4.channel.k8s.io`; every binary message is `[channel][payload]` (0 stdin,
//!   1 stdout, 2 stderr, 3 status, 4 resize, and in v5 `[0xFF, channel]` closes a channel).
//!   Port-forward: the legacy channel protocol (`?ports=`, two channels per port) and, for
//!   kubectl ≥ 1.31, SPDY/3.1 tunnelled inside binary messages (`SPDY/3.1+portforward.k8s.io`).
//! - SPDY/3.1 (`over_spdy.rs`, codec in `spdy.rs`): kubectl ≤ 1.29 and the fallback of newer ones;
//!   one SPDY stream per channel, named by its `streamType` header.
//!
//! This file holds what both share: the query options, the copy loop between the client's
//! streams and the exec'd process (`pump`), and the final status (channel 3 / the `error`
//! stream), a `metav1.Status` whose `NonZeroExitCode` cause carries the exit code.

mod over_spdy;
mod portforward;
mod routes;
pub mod spdy;
mod websocket;

use std::pin::Pin;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::future::BoxFuture;
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

pub use portforward::Dial;
pub use routes::add as add_routes;

use super::runtime::ExecProcess;

/// How long the output of an exited process may still flow (a background child can keep the
/// pipes open forever; upstream's runtimes also stop copying shortly after the exit).
const DRAIN: Duration = Duration::from_secs(2);

/// Starts the process of an exec or attach session once the client's streams are there; an
/// error is reported on the status channel.
pub type Start = Box<dyn FnOnce() -> BoxFuture<'static, Result<ExecProcess, String>> + Send>;

/// The query of `exec` and `attach` (upstream's `PodExecOptions`/`PodAttachOptions`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Options {
    pub command: Vec<String>,
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

impl Options {
    /// Parses the query and checks it as upstream's kubelet does; the error is the message of a
    /// 400 answer.
    pub fn parse(query: Option<&str>, exec: bool) -> Result<Options, String> {
        let mut o = Options::default();
        for (k, v) in query_pairs(query) {
            let flag = || matches!(v.as_str(), "true" | "1" | "True" | "TRUE");
            match k.as_str() {
                "command" => o.command.push(v),
                "stdin" | "input" => o.stdin = flag(),
                "stdout" | "output" => o.stdout = flag(),
                "stderr" | "error" => o.stderr = flag(),
                "tty" => o.tty = flag(),
                _ => {}
            }
        }
        if !(o.stdin || o.stdout || o.stderr) {
            return Err("you must specify at least 1 of stdin, stdout, stderr".into());
        }
        if exec && o.command.is_empty() {
            return Err("you must specify at least one command for the container".into());
        }
        // With a terminal there is one output stream (upstream drops stderr the same way).
        if o.tty {
            o.stderr = false;
        }
        Ok(o)
    }
}

/// The decoded `key=value` pairs of a URL query, in order.
pub fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// An exec or attach request: picks the transport by the `Upgrade` header.
pub async fn serve_exec(req: Request<Body>, opts: Options, start: Start) -> Response {
    match upgrade_kind(&req) {
        Some(Upgrade::WebSocket) => websocket::exec(req, opts, start).await,
        Some(Upgrade::Spdy) => over_spdy::exec(req, opts, start),
        None => bad_request("Upgrade request required"),
    }
}

/// A port-forward request: `dial(port)` connects to the port inside the pod.
pub async fn serve_portforward(req: Request<Body>, dial: Dial) -> Response {
    match upgrade_kind(&req) {
        Some(Upgrade::WebSocket) => websocket::portforward(req, dial).await,
        Some(Upgrade::Spdy) => over_spdy::portforward(req, dial),
        None => bad_request("Upgrade request required"),
    }
}

enum Upgrade {
    WebSocket,
    Spdy,
}

fn upgrade_kind(req: &Request<Body>) -> Option<Upgrade> {
    let up = req.headers().get(header::UPGRADE)?.to_str().ok()?;
    if up.eq_ignore_ascii_case("websocket") {
        Some(Upgrade::WebSocket)
    } else if up.to_ascii_lowercase().starts_with("spdy/3.1") {
        Some(Upgrade::Spdy)
    } else {
        None
    }
}

pub(crate) fn bad_request(message: impl Into<String>) -> Response {
    (StatusCode::BAD_REQUEST, message.into()).into_response()
}

/// The client's side of a session, whatever the transport.
pub(crate) struct Client {
    pub stdin: Option<Pin<Box<dyn AsyncRead + Send>>>,
    pub stdout: Option<Pin<Box<dyn AsyncWrite + Send>>>,
    pub stderr: Option<Pin<Box<dyn AsyncWrite + Send>>>,
    pub resize: Option<mpsc::UnboundedReceiver<(u16, u16)>>,
    /// Resolves when the client went away (the connection closed or failed).
    pub gone: BoxFuture<'static, ()>,
}

/// How a session ended.
#[derive(Debug, PartialEq)]
pub(crate) enum Outcome {
    Exited(i32),
    /// The process could not be started or waited for.
    Failed(String),
    /// The client went away first; the process was killed.
    Gone,
}

/// Starts the process and copies between it and the client until it exits (then its remaining
/// output, for at most `DRAIN`) or the client goes away (then the process is killed by dropping
/// it).
pub(crate) async fn pump(start: Start, client: Client) -> Outcome {
    let Client {
        stdin,
        stdout,
        stderr,
        resize,
        gone,
    } = client;
    let mut gone = gone;
    let process = tokio::select! {
        p = start() => p,
        _ = &mut gone => return Outcome::Gone,
    };
    let mut process = match process {
        Ok(p) => p,
        Err(e) => return Outcome::Failed(e),
    };
    let mut tasks = Vec::new();
    if let (Some(mut from), Some(mut to)) = (stdin, process.stdin.take()) {
        tasks.push(tokio::spawn(async move {
            let _ = tokio::io::copy(&mut from, &mut to).await;
            // Dropping `to` closes the process's stdin.
        }));
    }
    if let (Some(mut from), Some(to)) = (resize, process.resize.take()) {
        tasks.push(tokio::spawn(async move {
            while let Some(size) = from.recv().await {
                if to.send(size).is_err() {
                    break;
                }
            }
        }));
    }
    let mut outputs = Vec::new();
    let mut copy_out = |from: Pin<Box<dyn AsyncRead + Send>>,
                        to: Option<Pin<Box<dyn AsyncWrite + Send>>>| {
        outputs.push(tokio::spawn(async move {
            let mut from = from;
            match to {
                Some(mut to) => {
                    let _ = tokio::io::copy(&mut from, &mut to).await;
                    let _ = to.shutdown().await;
                }
                // Not wanted by the client: read it anyway so the process never blocks on it.
                None => {
                    let _ = tokio::io::copy(&mut from, &mut tokio::io::sink()).await;
                }
            }
        }));
    };
    copy_out(process.stdout, stdout);
    if let Some(err) = process.stderr {
        copy_out(err, stderr);
    } else if let Some(mut to) = stderr {
        outputs.push(tokio::spawn(async move {
            let _ = to.shutdown().await;
        }));
    }
    let outcome = tokio::select! {
        code = process.exit => match code {
            Ok(code) => Outcome::Exited(code),
            Err(e) => Outcome::Failed(e.to_string()),
        },
        _ = &mut gone => Outcome::Gone,
    };
    if outcome != Outcome::Gone {
        let drained = futures_util::future::join_all(outputs.iter_mut());
        let _ = tokio::time::timeout(DRAIN, drained).await;
    }
    for t in tasks.iter().chain(outputs.iter()) {
        t.abort();
    }
    outcome
}

/// The status sent last (channel 3 / the `error` stream): upstream's `metav1.Status` for a
/// success, a non-zero exit code (which kubectl turns into its own exit code) or a failure.
pub(crate) fn status(outcome: &Outcome, command: &[String]) -> Option<Value> {
    Some(match outcome {
        Outcome::Exited(0) => json!({"metadata": {}, "status": "Success"}),
        Outcome::Exited(code) => json!({
            "metadata": {},
            "status": "Failure",
            "message": format!(
                "command terminated with non-zero exit code: error executing command [{}], exit code {code}",
                command.join(" ")
            ),
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
        }),
        Outcome::Failed(message) => json!({
            "metadata": {},
            "status": "Failure",
            "message": format!("Internal error occurred: error executing command in container: {message}"),
            "reason": "InternalError",
            "details": {"causes": [{"message": format!("error executing command in container: {message}")}]},
            "code": 500,
        }),
        Outcome::Gone => return None,
    })
}

#[cfg(test)]
mod tests;

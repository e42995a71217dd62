//! Tests of the streaming server's pure parts and of the copy loop against the fake runtime.

use super::*;
use crate::kubelet::runtime::{ExecReply, ExecSpec, Fake, Runtime};
use axum::body::Body;
use futures_util::FutureExt;
use serde_json::Value;
use std::sync::Arc;
use tokio::io::AsyncReadExt;

#[test]
fn options_follow_upstream_validation() {
    let o = Options::parse(
        Some("command=sh&command=-c&command=echo%20hi&stdin=true&stdout=true&stderr=true&tty=true"),
        true,
    )
    .unwrap();
    assert_eq!(o.command, ["sh", "-c", "echo hi"]);
    assert!(o.stdin && o.stdout && o.tty);
    assert!(!o.stderr, "a terminal has one output stream");
    assert_eq!(
        Options::parse(Some("command=ls"), true).unwrap_err(),
        "you must specify at least 1 of stdin, stdout, stderr"
    );
    assert_eq!(
        Options::parse(Some("stdout=true"), true).unwrap_err(),
        "you must specify at least one command for the container"
    );
    assert!(Options::parse(Some("stdout=true"), false).is_ok());
}

#[test]
fn ports_are_repeated_or_comma_separated() {
    assert_eq!(
        portforward::ports_of(Some("ports=80,8080&ports=9090")).unwrap(),
        [80, 8080, 9090]
    );
    assert!(portforward::ports_of(Some("ports=http")).is_err());
    assert!(portforward::ports_of(Some("ports=0")).is_err());
    assert!(portforward::ports_of(None).unwrap().is_empty());
}

#[test]
fn status_carries_the_exit_code_as_kubectl_reads_it() {
    let cmd = vec!["sh".to_string(), "-c".into(), "exit 3".into()];
    assert_eq!(
        status(&Outcome::Exited(0), &cmd).unwrap(),
        json!({"metadata": {}, "status": "Success"})
    );
    let s = status(&Outcome::Exited(3), &cmd).unwrap();
    assert_eq!(s["reason"], "NonZeroExitCode");
    assert_eq!(s["details"]["causes"][0]["reason"], "ExitCode");
    assert_eq!(s["details"]["causes"][0]["message"], "3");
    let s = status(&Outcome::Failed("no such file".into()), &cmd).unwrap();
    assert_eq!(s["status"], "Failure");
    assert!(s["message"].as_str().unwrap().contains("no such file"));
    assert!(status(&Outcome::Gone, &cmd).is_none());
}

fn started_fake() -> Arc<Fake> {
    let fake = Arc::new(Fake::new());
    let config: crate::kubelet::runtime::ContainerConfig = serde_json::from_value(json!({
        "id": "c1", "labels": {}, "rootfs": "/", "readonly_rootfs": false, "args": ["sleep"],
        "env": [], "cwd": "", "uid": 0, "gid": 0, "additional_gids": [], "hostname": "h",
        "netns": null, "mounts": [], "cgroup_path": "/x", "resources": {}, "privileged": false,
        "capabilities_add": [], "capabilities_drop": [], "no_new_privileges": false,
        "log_path": "/dev/null", "tty": false
    }))
    .unwrap();
    fake.start(config).now_or_never().unwrap().unwrap();
    fake
}

fn start_of(fake: &Arc<Fake>, spec: ExecSpec) -> Start {
    let fake = fake.clone();
    Box::new(move || async move { fake.exec("c1", spec).await.map_err(|e| e.to_string()) }.boxed())
}

#[tokio::test]
async fn pump_copies_stdin_and_output_and_reports_the_exit_code() {
    let fake = started_fake();
    fake.on_exec(
        "cat",
        ExecReply {
            stdout: b"out:".to_vec(),
            stderr: b"err".to_vec(),
            exit_code: 3,
        },
    );
    let spec = ExecSpec {
        args: vec!["cat".into()],
        tty: false,
        stdin: true,
    };
    let (mut out_r, out_w) = tokio::io::duplex(1024);
    let (mut err_r, err_w) = tokio::io::duplex(1024);
    let client = Client {
        stdin: Some(Box::pin(&b"hello"[..])),
        stdout: Some(Box::pin(out_w)),
        stderr: Some(Box::pin(err_w)),
        resize: None,
        gone: futures_util::future::pending().boxed(),
    };
    let outcome = pump(start_of(&fake, spec.clone()), client).await;
    assert_eq!(outcome, Outcome::Exited(3));
    let mut out = String::new();
    out_r.read_to_string(&mut out).await.unwrap();
    assert_eq!(out, "out:hello");
    let mut err = String::new();
    err_r.read_to_string(&mut err).await.unwrap();
    assert_eq!(err, "err");
    assert!(fake.calls().contains(&crate::kubelet::runtime::Call::Exec {
        id: "c1".into(),
        spec
    }));
}

#[tokio::test]
async fn pump_reports_a_failed_start_and_a_vanished_client() {
    let fake = started_fake();
    let spec = ExecSpec {
        args: vec!["cat".into()],
        tty: false,
        stdin: true,
    };
    let client = || Client {
        stdin: None,
        stdout: None,
        stderr: None,
        resize: None,
        gone: futures_util::future::ready(()).boxed(),
    };
    // The stdin copy never ends (no client stdin, no EOF), so only the client leaving ends it.
    let (_keep, stdin_r) = tokio::io::duplex(16);
    let mut c = client();
    c.stdin = Some(Box::pin(stdin_r));
    c.gone = tokio::time::sleep(std::time::Duration::from_millis(50)).boxed();
    assert_eq!(pump(start_of(&fake, spec.clone()), c).await, Outcome::Gone);
    let failing: Start = Box::new(|| {
        async { Err::<crate::kubelet::runtime::ExecProcess, _>("boom".to_string()) }.boxed()
    });
    let mut c = client();
    c.gone = futures_util::future::pending().boxed();
    assert_eq!(pump(failing, c).await, Outcome::Failed("boom".into()));
}

/// A minimal WebSocket client (RFC 6455, zero masking key) for driving the server side.
struct WsClient(tokio::net::TcpStream);

impl WsClient {
    /// Connects, upgrades `path` offering `protocol`; returns the client and the answer head.
    async fn connect(addr: std::net::SocketAddr, path: &str, protocol: &str) -> (WsClient, String) {
        use tokio::io::AsyncWriteExt;
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Protocol: {protocol}\r\n\r\n"
        );
        s.write_all(req.as_bytes()).await.unwrap();
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let mut b = [0u8; 1];
            if s.read(&mut b).await.unwrap() == 0 {
                break;
            }
            head.push(b[0]);
        }
        (WsClient(s), String::from_utf8_lossy(&head).into_owned())
    }

    async fn send(&mut self, payload: &[u8]) {
        use tokio::io::AsyncWriteExt;
        let mut frame = vec![0x82u8];
        if payload.len() < 126 {
            frame.push(0x80 | payload.len() as u8);
        } else {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        }
        frame.extend_from_slice(&[0, 0, 0, 0]);
        frame.extend_from_slice(payload);
        self.0.write_all(&frame).await.unwrap();
    }

    /// The next frame: (opcode, payload).
    async fn recv(&mut self) -> (u8, Vec<u8>) {
        let mut h = [0u8; 2];
        self.0.read_exact(&mut h).await.unwrap();
        let len = match h[1] & 0x7f {
            126 => {
                let mut l = [0u8; 2];
                self.0.read_exact(&mut l).await.unwrap();
                u16::from_be_bytes(l) as usize
            }
            127 => {
                let mut l = [0u8; 8];
                self.0.read_exact(&mut l).await.unwrap();
                u64::from_be_bytes(l) as usize
            }
            n => n as usize,
        };
        let mut payload = vec![0u8; len];
        self.0.read_exact(&mut payload).await.unwrap();
        (h[0] & 0x0f, payload)
    }

    /// Binary messages until channel 3 (the status), then the close frame's code.
    async fn until_status(&mut self) -> (Vec<u8>, Vec<u8>, Value, u16) {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        loop {
            let (op, p) = self.recv().await;
            assert_eq!(op, 2, "binary messages only before the status: {p:?}");
            match p.first() {
                Some(1) => out.extend_from_slice(&p[1..]),
                Some(2) => err.extend_from_slice(&p[1..]),
                Some(3) => {
                    let status = serde_json::from_slice(&p[1..]).unwrap();
                    let (op, p) = self.recv().await;
                    assert_eq!(op, 8, "a close frame follows the status");
                    return (out, err, status, u16::from_be_bytes([p[0], p[1]]));
                }
                other => panic!("unexpected channel {other:?}"),
            }
        }
    }
}

/// Serves `serve_exec` (with the fake's container `c1`) and `serve_portforward` (dialling
/// `target`) on a loopback port.
async fn serve_streams(fake: Arc<Fake>, target: std::net::SocketAddr) -> std::net::SocketAddr {
    use axum::routing::any;
    let exec = move |req: axum::http::Request<Body>| {
        let fake = fake.clone();
        async move {
            let opts = match Options::parse(req.uri().query(), true) {
                Ok(o) => o,
                Err(e) => return bad_request(e),
            };
            let spec = ExecSpec {
                args: opts.command.clone(),
                tty: opts.tty,
                stdin: opts.stdin,
            };
            serve_exec(req, opts, start_of(&fake, spec)).await
        }
    };
    let pf = move |req: axum::http::Request<Body>| async move {
        let dial: Dial = Arc::new(move |_port| {
            async move { tokio::net::TcpStream::connect(target).await }.boxed()
        });
        serve_portforward(req, dial).await
    };
    let router = axum::Router::new()
        .route("/exec", any(exec))
        .route("/portforward", any(pf));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    addr
}

#[tokio::test]
async fn websocket_exec_speaks_v5_and_v4() {
    let fake = started_fake();
    fake.on_exec(
        "cat",
        ExecReply {
            stdout: b"first:".to_vec(),
            stderr: b"warn".to_vec(),
            exit_code: 0,
        },
    );
    fake.on_exec(
        "fail",
        ExecReply {
            exit_code: 7,
            ..ExecReply::default()
        },
    );
    let addr = serve_streams(fake, "127.0.0.1:9".parse().unwrap()).await;

    // v5: stdin, then its close signal ends it; the status says Success; close 1000.
    let path = "/exec?command=cat&stdin=true&stdout=true&stderr=true";
    let (mut ws, head) = WsClient::connect(addr, path, "v5.channel.k8s.io").await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("sec-websocket-protocol: v5.channel.k8s.io"),
        "{head}"
    );
    ws.send(b"\x00typed").await;
    ws.send(&[255, 0]).await;
    let (out, err, status, code) = ws.until_status().await;
    assert_eq!(String::from_utf8_lossy(&out), "first:typed");
    assert_eq!(String::from_utf8_lossy(&err), "warn");
    assert_eq!(status["status"], "Success");
    assert_eq!(code, 1000);

    // v4: a non-zero exit code in the status, as kubectl reads it.
    let (mut ws, head) =
        WsClient::connect(addr, "/exec?command=fail&stdout=true", "v4.channel.k8s.io").await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let (_, _, status, _) = ws.until_status().await;
    assert_eq!(status["reason"], "NonZeroExitCode");
    assert_eq!(status["details"]["causes"][0]["message"], "7");

    // An unsupported subprotocol is refused before any upgrade (kubectl then tries SPDY).
    let (_, head) = WsClient::connect(addr, path, "channel.k8s.io").await;
    assert!(head.starts_with("HTTP/1.1 400"), "{head}");
    // So is a request without any stream.
    let (_, head) = WsClient::connect(addr, "/exec?command=cat", "v5.channel.k8s.io").await;
    assert!(head.starts_with("HTTP/1.1 400"), "{head}");
}

#[tokio::test]
async fn legacy_websocket_port_forward_prefixes_ports_and_copies_bytes() {
    use tokio::io::AsyncWriteExt;
    // An echo server standing in for the pod's port.
    let echo = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = echo.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = echo.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    let addr = serve_streams(started_fake(), target).await;
    let (mut ws, head) =
        WsClient::connect(addr, "/portforward?ports=8080", "v4.channel.k8s.io").await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let port = 8080u16.to_le_bytes();
    assert_eq!(ws.recv().await, (2, vec![0, port[0], port[1]]));
    assert_eq!(ws.recv().await, (2, vec![1, port[0], port[1]]));
    ws.send(b"\x00ping").await;
    assert_eq!(ws.recv().await, (2, b"\x00ping".to_vec()));
    // Without ports there is nothing to forward.
    let (_, head) = WsClient::connect(addr, "/portforward", "v4.channel.k8s.io").await;
    assert!(head.starts_with("HTTP/1.1 400"), "{head}");
}

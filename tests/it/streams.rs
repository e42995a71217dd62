//! kubectl exec, cp and port-forward against rk3s's in-process kubelet, with kubectl 1.33
//! (WebSocket, and the SPDY tunnel for port-forward) and 1.27 (SPDY/3.1). Root only, one at a
//! time with the other node tests (nextest group `node`).

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::kubectl::Cluster;
use crate::node::{phase, start, wait_pod};

macro_rules! streams_test {
    ($name:ident) => {
        mod $name {
            #[test]
            fn kubectl_1_33() {
                if let Some((c, _r, image, _dir)) = super::start(33) {
                    super::$name(&c, &image);
                }
            }
            #[test]
            fn kubectl_1_27() {
                if let Some((c, _r, image, _dir)) = super::start(27) {
                    super::$name(&c, &image);
                }
            }
        }
    };
}

/// A running busybox pod serving `/www` over HTTP on port 8080 (localhost included).
fn web_pod(c: &Cluster, image: &str) {
    c.ok(&[
        "run",
        "web",
        &format!("--image={image}"),
        "--restart=Never",
        "--",
        "sh",
        "-c",
        "mkdir -p /www && echo hello-from-httpd > /www/index.html && exec httpd -f -p 8080 -h /www",
    ]);
    wait_pod(c, "web", "Running", |v| phase(v) == "Running");
}

fn stdout_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A file of `len` bytes that is not the same byte repeated (so a shifted or truncated copy
/// shows).
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

streams_test!(exec_with_stdin_tty_and_exit_codes);
fn exec_with_stdin_tty_and_exit_codes(c: &Cluster, image: &str) {
    web_pod(c, image);
    assert_eq!(
        c.ok(&["exec", "web", "--", "echo", "hello", "exec"]),
        "hello exec\n"
    );

    // stdout and stderr stay apart; the exit code becomes kubectl's.
    let out = c.run(
        &[
            "exec",
            "web",
            "--",
            "sh",
            "-c",
            "echo out; echo err >&2; exit 3",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert_eq!(stdout_of(&out), "out\n");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("err\n"),
        "{out:?}"
    );

    // stdin: its end reaches the process (cat ends).
    let out = c.run(&["exec", "-i", "web", "--", "cat"], Some("piped\ninput\n"));
    assert!(out.status.success(), "{out:?}");
    assert_eq!(stdout_of(&out), "piped\ninput\n");
    let out = c.run(&["exec", "-i", "web", "--", "wc", "-c"], Some(""));
    assert!(out.status.success(), "{out:?}");

    // The exec'd process is in the container: its hostname, its filesystem, its environment.
    assert_eq!(
        c.ok(&["exec", "web", "--", "cat", "/www/index.html"]),
        "hello-from-httpd\n"
    );
    assert_eq!(c.ok(&["exec", "web", "--", "hostname"]), "web\n");

    // A terminal: kubectl needs one itself, so it runs under script(1).
    let line = c.shell_line(&["exec", "-it", "web", "--", "tty"]);
    let out = Command::new("script")
        .args(["-qec", &line, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .expect("run script");
    let text = stdout_of(&out);
    assert!(text.contains("/dev/pts/"), "{out:?}");

    // Errors name the problem.
    let err = c.fails(&["exec", "web", "-c", "nope", "--", "true"], None);
    assert!(
        err.contains("container nope is not valid for pod web"),
        "{err}"
    );
    let out = c.run(&["exec", "web", "--", "/no/such/binary"], None);
    assert!(!out.status.success(), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/no/such/binary"), "{err}");

    c.ok(&["delete", "pod", "web", "--grace-period=1", "--timeout=60s"]);
}

streams_test!(cp_both_ways);
fn cp_both_ways(c: &Cluster, image: &str) {
    web_pod(c, image);
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("big.bin");
    let data = pattern(300 * 1024);
    std::fs::write(&local, &data).unwrap();
    c.ok(&["cp", local.to_str().unwrap(), "web:/tmp/big.bin"]);
    assert_eq!(
        c.ok(&["exec", "web", "--", "wc", "-c", "/tmp/big.bin"])
            .split_whitespace()
            .next(),
        Some(data.len().to_string().as_str())
    );
    let back = dir.path().join("back.bin");
    c.ok(&["cp", "web:/tmp/big.bin", back.to_str().unwrap()]);
    let got = std::fs::read(&back).unwrap();
    assert_eq!(got.len(), data.len());
    assert!(got == data, "the copied file differs");
    c.ok(&["delete", "pod", "web", "--grace-period=1", "--timeout=60s"]);
}

streams_test!(port_forward_reaches_localhost_in_the_pod);
fn port_forward_reaches_localhost_in_the_pod(c: &Cluster, image: &str) {
    web_pod(c, image);
    let mut pf = c
        .command(&["port-forward", "pod/web", ":8080"])
        .stdin(Stdio::null())
        .spawn()
        .expect("run kubectl port-forward");
    // "Forwarding from 127.0.0.1:NNNNN -> 8080"
    let mut stdout = pf.stdout.take().unwrap();
    let mut seen = String::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    let port = loop {
        let mut buf = [0u8; 256];
        let n = stdout.read(&mut buf).unwrap_or(0);
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        let port = seen
            .lines()
            .find_map(|l| l.strip_prefix("Forwarding from 127.0.0.1:"))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|p| p.parse::<u16>().ok());
        if let Some(p) = port {
            break p;
        }
        assert!(
            n > 0 && Instant::now() < deadline,
            "port-forward printed {seen:?}"
        );
    };
    // Two requests over two connections: each gets its own pair of streams.
    for _ in 0..2 {
        let mut conn = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        conn.write_all(b"GET /index.html HTTP/1.0\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut reply = String::new();
        let _ = conn.read_to_string(&mut reply);
        assert!(reply.starts_with("HTTP/1."), "{reply:?}");
        assert!(reply.contains("hello-from-httpd"), "{reply:?}");
    }
    let _ = pf.kill();
    let _ = pf.wait();
    c.ok(&["delete", "pod", "web", "--grace-period=1", "--timeout=60s"]);
}

streams_test!(attach_follows_the_output_until_the_container_ends);
fn attach_follows_the_output_until_the_container_ends(c: &Cluster, image: &str) {
    c.ok(&[
        "run",
        "ticker",
        &format!("--image={image}"),
        "--restart=Never",
        "--",
        "sh",
        "-c",
        "i=0; while [ $i -lt 30 ]; do i=$((i+1)); echo tick $i; echo tock $i >&2; sleep 0.2; done",
    ]);
    wait_pod(c, "ticker", "Running", |v| phase(v) == "Running");
    // It was not started with `stdin: true`: asking for its stdin is refused with the reason.
    let err = c.fails(&["attach", "-i", "ticker"], None);
    assert!(err.contains("stdin: true"), "{err}");
    let out = c.run(&["attach", "ticker"], None);
    assert!(out.status.success(), "{out:?}");
    let stdout = stdout_of(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // It joined while the loop ran and stayed to the end, each stream on its own side.
    assert!(stdout.ends_with("tick 30\n"), "{stdout:?}");
    assert!(!stdout.contains("tock"), "{stdout:?}");
    assert!(stderr.contains("tock 30\n"), "{stderr:?}");
    c.ok(&[
        "delete",
        "pod",
        "ticker",
        "--grace-period=1",
        "--timeout=60s",
    ]);
}

streams_test!(run_i_and_it_attach_stdin);
/// `kubectl run -i` and `run -it` (stdin, stdinOnce, and a tty) attach the session's input to
/// the container's stdin; `--rm` deletes the pod afterwards.
fn run_i_and_it_attach_stdin(c: &Cluster, image: &str) {
    let out = c.run(
        &[
            "run",
            "reader",
            "-i",
            "--rm",
            "--restart=Never",
            &format!("--image={image}"),
            "--",
            "sh",
            "-c",
            "read x; echo got $x",
        ],
        Some("hello\n"),
    );
    assert!(out.status.success(), "{out:?}");
    assert!(stdout_of(&out).contains("got hello\n"), "{out:?}");
    let gone = c.run(&["get", "pod", "reader"], None);
    assert!(!gone.status.success(), "--rm deleted the pod: {gone:?}");

    // With a terminal: kubectl needs one itself, so it runs under script(1). Input is typed
    // once kubectl says it attached.
    let line = c.shell_line(&[
        "run",
        "typist",
        "-it",
        "--restart=Never",
        &format!("--image={image}"),
        "--",
        "sh",
        "-c",
        "read x; echo got $x on $(tty)",
    ]);
    let mut script = Command::new("script")
        .args(["-qec", &line, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run script");
    let mut stdout = script.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                return;
            }
        }
    });
    let mut seen = String::new();
    let mut typed = false;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !seen.contains("got hello on /dev/pts/") {
        assert!(
            Instant::now() < deadline,
            "no answer from the tty: {seen:?}\n{}",
            c.ok(&[
                "get",
                "pod",
                "typist",
                "-o",
                "jsonpath={.spec.containers[0]}"
            ])
        );
        if let Ok(chunk) = rx.recv_timeout(Duration::from_millis(200)) {
            seen.push_str(&String::from_utf8_lossy(&chunk));
        }
        if !typed && seen.contains("try pressing enter") {
            script
                .stdin
                .as_mut()
                .unwrap()
                .write_all(b"hello\r")
                .unwrap();
            typed = true;
        }
    }
    drop(script.stdin.take());
    let _ = script.wait();
    c.ok(&[
        "delete",
        "pod",
        "typist",
        "--grace-period=1",
        "--timeout=60s",
    ]);
}

/// The kubelet's streaming server behind a stand-in API server on plain HTTP, with the recording
/// fake runtime: both kubectl transports (WebSocket and SPDY/3.1) without a node, root or the
/// node lock.
mod transports {
    use std::io::{Read, Write};
    use std::net::SocketAddr;
    use std::process::{Command, Output, Stdio};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use axum::body::Body;
    use axum::http::Request;
    use axum::response::IntoResponse;
    use axum::routing::{any, get};
    use futures_util::FutureExt;
    use rk3s::kubelet::runtime::{ContainerConfig, ExecReply, ExecSpec, Fake, Runtime};
    use rk3s::kubelet::streaming::{Dial, Options, Start, serve_exec, serve_portforward};
    use serde_json::json;

    struct Api {
        addr: SocketAddr,
        _rt: tokio::runtime::Runtime,
    }

    /// Serves discovery, the pod `web` (container `app`) and its exec/portforward, forwarding
    /// every port to `target`.
    fn start(fake: Arc<Fake>, target: SocketAddr) -> Api {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let exec = move |req: Request<Body>| {
            let fake = fake.clone();
            async move {
                let opts = match Options::parse(req.uri().query(), true) {
                    Ok(o) => o,
                    Err(e) => return (axum::http::StatusCode::BAD_REQUEST, e).into_response(),
                };
                let spec = ExecSpec {
                    args: opts.command.clone(),
                    tty: opts.tty,
                    stdin: opts.stdin,
                };
                let start: Start = Box::new(move || {
                    async move { fake.exec("app-0", spec).await.map_err(|e| e.to_string()) }.boxed()
                });
                serve_exec(req, opts, start).await
            }
        };
        let pf = move |req: Request<Body>| async move {
            let dial: Dial = Arc::new(move |_| {
                async move { tokio::net::TcpStream::connect(target).await }.boxed()
            });
            serve_portforward(req, dial).await
        };
        let json = |v: serde_json::Value| {
            (
                [(axum::http::header::CONTENT_TYPE, "application/json")],
                v.to_string(),
            )
        };
        let router = axum::Router::new()
            .route("/api", get(move || async move { json(json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []})) }))
            .route("/apis", get(move || async move { json(json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": []})) }))
            .route("/api/v1", get(move || async move { json(json!({
                "kind": "APIResourceList", "groupVersion": "v1", "resources": [
                    {"name": "pods", "singularName": "pod", "namespaced": true, "kind": "Pod",
                     "verbs": ["get", "list"], "shortNames": ["po"]},
                    {"name": "pods/exec", "singularName": "", "namespaced": true,
                     "kind": "PodExecOptions", "verbs": ["create", "get"]},
                    {"name": "pods/portforward", "singularName": "", "namespaced": true,
                     "kind": "PodPortForwardOptions", "verbs": ["create", "get"]}]})) }))
            .route("/api/v1/namespaces/default/pods/web", get(move || async move { json(json!({
                "kind": "Pod", "apiVersion": "v1",
                "metadata": {"name": "web", "namespace": "default", "uid": "u1"},
                "spec": {"containers": [{"name": "app", "image": "busybox"}]},
                "status": {"phase": "Running"}})) }))
            .route("/api/v1/namespaces/default/pods/web/exec", any(exec))
            .route("/api/v1/namespaces/default/pods/web/portforward", any(pf));
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        rt.spawn(async move { axum::serve(listener, router).await });
        Api { addr, _rt: rt }
    }

    fn fake() -> Arc<Fake> {
        let fake = Arc::new(Fake::new());
        let config: ContainerConfig = serde_json::from_value(json!({
            "id": "app-0", "labels": {}, "rootfs": "/", "readonly_rootfs": false,
            "args": ["sleep"], "env": [], "cwd": "", "uid": 0, "gid": 0, "additional_gids": [],
            "hostname": "web", "netns": null, "mounts": [], "cgroup_path": "/x",
            "resources": {}, "privileged": false, "capabilities_add": [],
            "capabilities_drop": [], "no_new_privileges": false, "log_path": "/dev/null",
            "tty": false
        }))
        .unwrap();
        futures_util::FutureExt::now_or_never(fake.start(config))
            .unwrap()
            .unwrap();
        fake.on_exec(
            "big",
            ExecReply {
                stdout: vec![b'x'; 300 * 1024],
                ..ExecReply::default()
            },
        );
        fake.on_exec(
            "report",
            ExecReply {
                stdout: b"to stdout\n".to_vec(),
                stderr: b"to stderr\n".to_vec(),
                exit_code: 3,
            },
        );
        fake
    }

    fn kubectl(
        minor: u32,
        api: &Api,
        home: &std::path::Path,
        args: &[&str],
        stdin: Option<&[u8]>,
    ) -> Output {
        let bin = crate::kubectl::kubectl_bin(minor).unwrap();
        // A hung session fails the test instead of blocking it.
        let mut cmd = Command::new("timeout");
        cmd.arg("60").arg(bin);
        cmd.env("HOME", home)
            .env("KUBECONFIG", home.join("none"))
            .arg(format!("--server=http://{}", api.addr))
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        match stdin {
            None => cmd.stdin(Stdio::null()).output().unwrap(),
            Some(input) => {
                let mut child = cmd.stdin(Stdio::piped()).spawn().unwrap();
                child.stdin.take().unwrap().write_all(input).unwrap();
                child.wait_with_output().unwrap()
            }
        }
    }

    fn exec_cp_and_port_forward(minor: u32) {
        if crate::kubectl::kubectl_bin(minor).is_none() {
            return;
        }
        // An echo server stands in for the pod's port.
        let echo = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let target = echo.local_addr().unwrap();
        std::thread::spawn(move || {
            for conn in echo.incoming().flatten() {
                std::thread::spawn(move || {
                    let mut conn = conn;
                    let mut buf = [0u8; 4096];
                    while let Ok(n) = conn.read(&mut buf) {
                        if n == 0 || conn.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                });
            }
        });
        let api = start(fake(), target);
        let home = tempfile::tempdir().unwrap();
        let home = home.path();

        let out = kubectl(minor, &api, home, &["exec", "web", "--", "report"], None);
        assert_eq!(out.status.code(), Some(3), "{out:?}");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "to stdout\n");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("to stderr\n"),
            "{out:?}"
        );

        let out = kubectl(minor, &api, home, &["exec", "web", "--", "big"], None);
        assert!(
            out.status.success(),
            "{:?}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.stdout.len(), 300 * 1024, "big output");
        // stdin, large enough to need flow control, and its end.
        let data: Vec<u8> = (0..300 * 1024).map(|i| (i * 7 + i / 251) as u8).collect();
        let out = kubectl(
            minor,
            &api,
            home,
            &["exec", "-i", "web", "--", "cat"],
            Some(&data),
        );
        assert!(
            out.status.success(),
            "{:?}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.stdout == data,
            "stdin came back with {} bytes",
            out.stdout.len()
        );

        // port-forward: two connections, each echoed.
        let mut pf = Command::new(crate::kubectl::kubectl_bin(minor).unwrap())
            .env("HOME", home)
            .env("KUBECONFIG", home.join("none"))
            .arg(format!("--server=http://{}", api.addr))
            .args(["port-forward", "pod/web", ":8080"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdout = pf.stdout.take().unwrap();
        let mut seen = String::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        let port = loop {
            let mut buf = [0u8; 256];
            let n = stdout.read(&mut buf).unwrap_or(0);
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
            if let Some(p) = seen
                .lines()
                .find_map(|l| l.strip_prefix("Forwarding from 127.0.0.1:"))
                .and_then(|r| r.split_whitespace().next())
                .and_then(|p| p.parse::<u16>().ok())
            {
                break p;
            }
            assert!(
                n > 0 && Instant::now() < deadline,
                "port-forward printed {seen:?}"
            );
        };
        for msg in [&b"first"[..], &b"second"[..]] {
            let mut conn = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
            conn.set_read_timeout(Some(Duration::from_secs(20)))
                .unwrap();
            conn.write_all(msg).unwrap();
            let mut got = vec![0u8; msg.len()];
            conn.read_exact(&mut got).unwrap();
            assert_eq!(got, msg);
        }
        let _ = pf.kill();
        let _ = pf.wait();
    }

    #[test]
    fn kubectl_1_33_over_websocket() {
        exec_cp_and_port_forward(33);
    }

    #[test]
    fn kubectl_1_27_over_spdy() {
        exec_cp_and_port_forward(27);
    }
}

//! The kubelet's streaming routes (upstream's kubelet server paths), reached by the API server's
//! `pods/exec`, `pods/attach` and `pods/portforward`: they find the pod's running container
//! and hand the upgraded request to the transports.

use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path as UrlPath, State};
use axum::http::{Request, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::FutureExt;

use super::{Options, Start, bad_request, serve_exec, serve_portforward};
use crate::kubelet::Kubelet;
use crate::kubelet::runtime::{ContainerConfig, ExecSpec, State as RunState};
use crate::kubelet::worker::{LABEL_CONTAINER, LABEL_INIT, LABEL_POD_UID, LABEL_RESTARTS};

/// Adds `/exec/{ns}/{pod}/{container}`, `/attach/{ns}/{pod}/{container}` and
/// `/portForward/{ns}/{pod}` (GET for WebSocket, POST for SPDY).
pub fn add(router: axum::Router<Arc<Kubelet>>) -> axum::Router<Arc<Kubelet>> {
    use axum::routing::get;
    router
        .route("/exec/{namespace}/{pod}/{container}", get(exec).post(exec))
        .route(
            "/attach/{namespace}/{pod}/{container}",
            get(attach).post(attach),
        )
        .route(
            "/portForward/{namespace}/{pod}",
            get(portforward).post(portforward),
        )
}

/// An answer refusing the request before any upgrade.
type Refusal = (StatusCode, String);

/// The pod's uid on this node, or a 404.
fn pod_uid(k: &Kubelet, ns: &str, pod: &str) -> Result<String, Refusal> {
    k.views
        .lock()
        .ok()
        .and_then(|v| v.get(&format!("{ns}/{pod}")).map(|v| v.uid.clone()))
        .ok_or_else(|| {
            (
                StatusCode::NOT_FOUND,
                format!("pod \"{pod}\" is not running on this node"),
            )
        })
}

/// The config of the running instance of `container`.
async fn running(
    k: &Arc<Kubelet>,
    ns: &str,
    pod: &str,
    container: &str,
) -> Result<ContainerConfig, Refusal> {
    let uid = pod_uid(k, ns, pod)?;
    let runtime = k.runtime.clone();
    let internal = |e: String| (StatusCode::INTERNAL_SERVER_ERROR, e);
    let list = tokio::task::spawn_blocking(move || runtime.list())
        .await
        .map_err(|e| internal(e.to_string()))?
        .map_err(|e| internal(e.to_string()))?;
    let found = list.into_iter().find(|(c, state)| {
        c.labels.get(LABEL_POD_UID) == Some(&uid)
            && c.labels.get(LABEL_CONTAINER).map(String::as_str) == Some(container)
            && !c.labels.contains_key(LABEL_INIT)
            && state.is_running()
    });
    match found {
        Some((c, RunState::Running { .. })) => Ok(c),
        _ => Err((
            StatusCode::BAD_REQUEST,
            format!("container {container} is not running in pod {pod}"),
        )),
    }
}

async fn exec(
    State(k): State<Arc<Kubelet>>,
    UrlPath((ns, pod, container)): UrlPath<(String, String, String)>,
    req: Request<Body>,
) -> Response {
    let opts = match Options::parse(req.uri().query(), true) {
        Ok(o) => o,
        Err(e) => return bad_request(e),
    };
    let id = match running(&k, &ns, &pod, &container).await {
        Ok(c) => c.id,
        Err(r) => return r.into_response(),
    };
    let spec = ExecSpec {
        args: opts.command.clone(),
        tty: opts.tty,
        stdin: opts.stdin,
    };
    let runtime = k.runtime.clone();
    let start: Start = Box::new(move || {
        async move { runtime.exec(&id, spec).await.map_err(|e| e.to_string()) }.boxed()
    });
    serve_exec(req, opts, start).await
}

/// `attach` streams the main process's output from now on, as the shim records it (the CRI
/// log, split back into stdout and stderr), until the container exits; with `stdin` (or a
/// tty) the session's input and resizes go to the container through its shim
/// (`Runtime::attach`), which needs the container to have been started with `stdin: true`.
async fn attach(
    State(k): State<Arc<Kubelet>>,
    UrlPath((ns, pod, container)): UrlPath<(String, String, String)>,
    req: Request<Body>,
) -> Response {
    let opts = match Options::parse(req.uri().query(), false) {
        Ok(o) => o,
        Err(e) => return bad_request(e),
    };
    let config = match running(&k, &ns, &pod, &container).await {
        Ok(c) => c,
        Err(r) => return r.into_response(),
    };
    if opts.stdin && !config.stdin {
        return bad_request(format!(
            "container {container} in pod {pod} was not started with stdin: true, so its stdin cannot be attached"
        ));
    }
    let runtime = k.runtime.clone();
    let uid = config
        .labels
        .get(LABEL_POD_UID)
        .cloned()
        .unwrap_or_default();
    let restart = config
        .labels
        .get(LABEL_RESTARTS)
        .and_then(|r| r.parse().ok())
        .unwrap_or(0);
    let id = config.id;
    let path =
        crate::kubelet::worker::log_path(&k.config.log_dir, &ns, &pod, &uid, &container, restart);
    let tty = opts.tty;
    let wants_input = opts.stdin || (opts.tty && config.tty);
    let start: Start = Box::new(move || {
        async move {
            // The output is followed from the log's current end, found before any input can
            // reach the container: what it answers to this session's input comes after it.
            let log = {
                use tokio::io::AsyncSeekExt;
                let mut f = tokio::fs::File::open(&path)
                    .await
                    .map_err(|e| format!("open the log of container {id}: {e}"))?;
                f.seek(std::io::SeekFrom::End(0))
                    .await
                    .map_err(|e| format!("read the log of container {id}: {e}"))?;
                f
            };
            let input = if wants_input {
                Some(runtime.attach(&id).await.map_err(|e| e.to_string())?)
            } else {
                None
            };
            let (out_w, out_r) = tokio::io::duplex(64 * 1024);
            let (err_w, err_r) = tokio::io::duplex(64 * 1024);
            let follow = tokio::spawn(follow_log(
                runtime.clone(),
                id.clone(),
                path,
                log,
                out_w,
                err_w,
                tty,
            ));
            let exit = async move {
                let _ = follow.await;
                Ok(0)
            }
            .boxed();
            let (stdin, resize) = match input {
                Some(i) => (Some(i.stdin), Some(i.resize)),
                None => (None, None),
            };
            Ok(crate::kubelet::runtime::ExecProcess {
                stdin,
                stdout: Box::pin(out_r),
                stderr: (!tty).then(|| Box::pin(err_r) as _),
                resize: resize.filter(|_| tty),
                exit,
            })
        }
        .boxed()
    });
    serve_exec(req, opts, start).await
}

/// Copies what the shim appends to the CRI log at `path` (open as `file`, at its end) to `out`/`err` (`out` only
/// with a tty), until the container `id` is no longer running and everything it wrote was read.
async fn follow_log(
    runtime: Arc<dyn crate::kubelet::runtime::Runtime>,
    id: String,
    path: PathBuf,
    mut file: tokio::fs::File,
    mut out: tokio::io::DuplexStream,
    mut err: tokio::io::DuplexStream,
    tty: bool,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut pending = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut chunk).await.unwrap_or(0);
        if n == 0 {
            if let Some(next) = crate::kubelet::logs::next_after_rotation(&path, &file).await {
                match tokio::fs::File::open(&next).await {
                    Ok(f) => {
                        file = f;
                        continue;
                    }
                    Err(_) => return,
                }
            }
            if !runtime.state(&id).is_ok_and(|s| s.is_running()) {
                // One last look: the shim writes the last lines before the exit is recorded.
                if file.read(&mut chunk).await.unwrap_or(0) == 0 {
                    return;
                }
                continue;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            continue;
        }
        pending.extend_from_slice(&chunk[..n]);
        while let Some(end) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            let text = String::from_utf8_lossy(&line);
            let Some(l) = crate::kubelet::logs::parse(&text) else {
                continue;
            };
            let mut data = l.text.as_bytes().to_vec();
            if !l.partial {
                data.push(b'\n');
            }
            let to = if l.stream == "stderr" && !tty {
                &mut err
            } else {
                &mut out
            };
            if to.write_all(&data).await.is_err() {
                return;
            }
        }
    }
}

async fn portforward(
    State(k): State<Arc<Kubelet>>,
    UrlPath((ns, pod)): UrlPath<(String, String)>,
    req: Request<Body>,
) -> Response {
    let uid = match pod_uid(&k, &ns, &pod) {
        Ok(u) => u,
        Err(r) => return r.into_response(),
    };
    let runtime = k.runtime.clone();
    let list = match tokio::task::spawn_blocking(move || runtime.list()).await {
        Ok(Ok(l)) => l,
        _ => return bad_request("listing containers failed"),
    };
    // Every container of the pod shares the pod's network namespace (None: host network).
    let Some(netns) = list
        .into_iter()
        .find(|(c, s)| c.labels.get(LABEL_POD_UID) == Some(&uid) && s.is_running())
        .map(|(c, _)| c.netns)
    else {
        return bad_request(format!("pod {pod} has no running container"));
    };
    let dial: super::Dial = Arc::new(move |port: u16| {
        let netns = netns.clone();
        async move { dial_in(netns, port).await }.boxed()
    });
    serve_portforward(req, dial).await
}

/// Connects to `127.0.0.1:port` from inside `netns` (on a thread that joined it, see
/// `network::netns::run_in`), then hands the socket to tokio; the host's loopback without one.
async fn dial_in(netns: Option<PathBuf>, port: u16) -> std::io::Result<tokio::net::TcpStream> {
    let connect = move || std::net::TcpStream::connect(("127.0.0.1", port));
    let std_stream = tokio::task::spawn_blocking(move || match netns {
        Some(path) => crate::network::netns::run_in(&path, connect)
            .map_err(std::io::Error::other)
            .and_then(|r| r),
        None => connect(),
    })
    .await
    .map_err(std::io::Error::other)??;
    std_stream.set_nonblocking(true)?;
    tokio::net::TcpStream::from_std(std_stream)
}

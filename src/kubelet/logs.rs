//! Container logs: reading the CRI log files the shims write, and the kubelet's HTTP endpoint
//! `GET /containerLogs/{namespace}/{pod}/{container}` that the API server's `pods/log`
//! reaches, with upstream's options (follow, tailLines, sinceSeconds, sinceTime, timestamps,
//! previous, limitBytes).

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path as UrlPath, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use k8s_openapi::jiff::Timestamp;
use tokio::io::{AsyncBufReadExt, AsyncSeekExt};

use super::Kubelet;
use super::worker;

/// One line of a CRI log file: `<RFC 3339 time> <stream> <P|F> <text>`.
#[derive(Debug, PartialEq)]
pub struct Line<'a> {
    pub time: &'a str,
    pub stream: &'a str,
    pub partial: bool,
    pub text: &'a str,
}

pub fn parse(line: &str) -> Option<Line<'_>> {
    let line = line.strip_suffix('\n').unwrap_or(line);
    let mut parts = line.splitn(4, ' ');
    let time = parts.next()?;
    let stream = parts.next()?;
    let tag = parts.next()?;
    let text = parts.next().unwrap_or("");
    Some(Line {
        time,
        stream,
        partial: tag.starts_with('P'),
        text,
    })
}

/// The query of `pods/log`, as upstream's `PodLogOptions`.
#[derive(Debug, Default)]
pub struct Options {
    pub follow: bool,
    pub previous: bool,
    pub timestamps: bool,
    pub tail_lines: Option<i64>,
    pub since_seconds: Option<i64>,
    pub since_time: Option<String>,
    pub limit_bytes: Option<i64>,
}

impl Options {
    /// Parses the URL query (the API server has validated the numbers).
    pub fn parse(query: Option<&str>) -> Options {
        let mut o = Options::default();
        for pair in query
            .unwrap_or_default()
            .split('&')
            .filter(|p| !p.is_empty())
        {
            let (k, v) = pair.split_once('=').unwrap_or((pair, "true"));
            let v = percent_decode(v);
            let flag = matches!(v.as_str(), "true" | "1" | "True");
            match k {
                "follow" => o.follow = flag,
                "previous" => o.previous = flag,
                "timestamps" => o.timestamps = flag,
                "tailLines" => o.tail_lines = v.parse().ok(),
                "sinceSeconds" => o.since_seconds = v.parse().ok(),
                "sinceTime" => o.since_time = Some(v),
                "limitBytes" => o.limit_bytes = v.parse().ok(),
                _ => {}
            }
        }
        o
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = b
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (b[i], hex) {
            (b'%', Some(x)) => {
                out.push(x);
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Renders one parsed line for the client.
fn render(l: &Line, timestamps: bool, out: &mut Vec<u8>) {
    if timestamps {
        out.extend_from_slice(l.time.as_bytes());
        out.push(b' ');
    }
    out.extend_from_slice(l.text.as_bytes());
    if !l.partial {
        out.push(b'\n');
    }
}

fn since(o: &Options) -> Option<Timestamp> {
    if let Some(t) = o
        .since_time
        .as_deref()
        .and_then(|t| t.parse::<Timestamp>().ok())
    {
        return Some(t);
    }
    o.since_seconds.map(|s| {
        Timestamp::now()
            .checked_sub(k8s_openapi::jiff::SignedDuration::from_secs(s))
            .unwrap_or(Timestamp::UNIX_EPOCH)
    })
}

/// The whole log of a finished read (no follow): the last `tailLines`, after `since`, cut at
/// `limitBytes`.
pub fn select(text: &str, o: &Options) -> Vec<u8> {
    let since = since(o);
    let mut lines: VecDeque<Line> = VecDeque::new();
    for raw in text.lines() {
        let Some(l) = parse(raw) else { continue };
        if let Some(s) = since
            && l.time.parse::<Timestamp>().is_ok_and(|t| t < s)
        {
            continue;
        }
        lines.push_back(l);
        if let Some(n) = o.tail_lines
            && n >= 0
            && lines.len() as i64 > n
        {
            lines.pop_front();
        }
    }
    let mut out = Vec::new();
    for l in &lines {
        render(l, o.timestamps, &mut out);
    }
    if let Some(limit) = o.limit_bytes
        && limit >= 0
    {
        out.truncate(limit as usize);
    }
    out
}

fn error(code: StatusCode, message: String) -> Response {
    (code, message).into_response()
}

/// The kubelet's HTTP routes (served in-process to the API server): logs here, resource usage
/// (`/stats/summary`, from `stats`), exec, attach and port-forward from `streaming`.
pub fn router(kubelet: Arc<Kubelet>) -> axum::Router {
    let router = axum::Router::new()
        .route(
            "/containerLogs/{namespace}/{pod}/{container}",
            axum::routing::get(container_logs),
        )
        .route(
            "/stats/summary",
            axum::routing::get(super::stats::summary_route),
        );
    super::streaming::add_routes(router).with_state(kubelet)
}

async fn container_logs(
    State(k): State<Arc<Kubelet>>,
    UrlPath((ns, pod, container)): UrlPath<(String, String, String)>,
    RawQuery(query): RawQuery,
) -> Response {
    let o = Options::parse(query.as_deref());
    let view = k
        .views
        .lock()
        .ok()
        .and_then(|v| v.get(&format!("{ns}/{pod}")).cloned());
    let Some(view) = view else {
        return error(
            StatusCode::NOT_FOUND,
            format!("pod \"{pod}\" is not running on this node yet"),
        );
    };
    let Some(worker::ContainerView {
        restarts,
        started,
        waiting,
        ..
    }) = view.containers.get(&container).cloned()
    else {
        return error(
            StatusCode::BAD_REQUEST,
            format!("container {container} is not valid for pod {pod}"),
        );
    };
    let restart = if o.previous {
        if restarts == 0 {
            return error(
                StatusCode::BAD_REQUEST,
                format!("previous terminated container \"{container}\" in pod \"{pod}\" not found"),
            );
        }
        restarts - 1
    } else {
        restarts
    };
    let path: PathBuf =
        worker::log_path(&k.config.log_dir, &ns, &pod, &view.uid, &container, restart);
    if !path.exists() {
        if !started || waiting.is_some() {
            let why = waiting.unwrap_or_else(|| "ContainerCreating".into());
            return error(
                StatusCode::BAD_REQUEST,
                format!("container \"{container}\" in pod \"{pod}\" is waiting to start: {why}"),
            );
        }
        return Response::new(Body::empty());
    }
    if !o.follow || o.previous {
        let text = tokio::fs::read_to_string(&path).await.unwrap_or_default();
        return Response::new(Body::from(select(&text, &o)));
    }
    // Follow: what is there now (with tail/since), then new lines as the shim appends them,
    // until this instance of the container is no longer the current running one.
    let text = tokio::fs::read_to_string(&path).await.unwrap_or_default();
    let first = select(
        &text,
        &Options {
            limit_bytes: None,
            ..o
        },
    );
    let offset = text.len() as u64;
    let limit = o.limit_bytes.filter(|l| *l >= 0).map(|l| l as usize);
    let timestamps = o.timestamps;
    let key = format!("{ns}/{pod}");
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(16);
    tokio::spawn(async move {
        let sent = std::sync::atomic::AtomicUsize::new(0);
        let send = |mut chunk: Vec<u8>| {
            if let Some(l) = limit {
                chunk.truncate(l.saturating_sub(sent.load(Relaxed)));
            }
            sent.fetch_add(chunk.len(), Relaxed);
            chunk
        };
        let c = send(first);
        if !c.is_empty() && tx.send(Ok(Bytes::from(c))).await.is_err() {
            return;
        }
        let Ok(mut file) = tokio::fs::File::open(&path).await else {
            return;
        };
        if file.seek(std::io::SeekFrom::Start(offset)).await.is_err() {
            return;
        }
        let mut reader = tokio::io::BufReader::new(file);
        let mut line = String::new();
        loop {
            if limit.is_some_and(|l| sent.load(Relaxed) >= l) {
                return;
            }
            line.clear();
            match reader.read_line(&mut line).await {
                Ok(0) => {
                    // The shim rotated the file (`runtime::log::RotatingLog`): everything of
                    // the old one has been read, go on with the file written after it.
                    if let Some(next) = next_after_rotation(&path, reader.get_ref()).await {
                        match tokio::fs::File::open(&next).await {
                            Ok(f) => {
                                reader = tokio::io::BufReader::new(f);
                                continue;
                            }
                            Err(_) => return,
                        }
                    }
                    let current = k.views.lock().ok().and_then(|v| {
                        v.get(&key)
                            .and_then(|v| v.containers.get(&container).cloned())
                    });
                    let still = current.is_some_and(|c| c.restarts == restart && c.running);
                    if !still || tx.is_closed() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Ok(_) => {
                    if !line.ends_with('\n') {
                        // A line still being written: wait for the rest.
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        let mut rest = String::new();
                        let _ = reader.read_line(&mut rest).await;
                        line.push_str(&rest);
                    }
                    if let Some(l) = parse(&line) {
                        let mut out = Vec::new();
                        render(&l, timestamps, &mut out);
                        let c = send(out);
                        if tx.send(Ok(Bytes::from(c))).await.is_err() {
                            return;
                        }
                    }
                }
                Err(_) => return,
            }
        }
    });
    Response::new(Body::from_stream(
        tokio_stream::wrappers::ReceiverStream::new(rx),
    ))
}

/// When the file now at `path` is another one than `open` (the log was rotated, maybe several
/// times), the file written after `open`: the next rotated one, else the current one.
pub(crate) async fn next_after_rotation(
    path: &std::path::Path,
    open: &tokio::fs::File,
) -> Option<PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let ours = open.metadata().await.ok()?;
    let same = |m: &std::fs::Metadata| m.ino() == ours.ino() && m.dev() == ours.dev();
    if tokio::fs::metadata(path)
        .await
        .ok()
        .is_none_or(|m| same(&m))
    {
        return None;
    }
    let rotated = crate::kubelet::runtime::log::RotatingLog::rotated(path);
    let position = rotated
        .iter()
        .position(|p| std::fs::metadata(p).is_ok_and(|m| same(&m)));
    match position {
        Some(i) if i + 1 < rotated.len() => Some(rotated[i + 1].clone()),
        // Ours was the newest rotated file, or was pruned meanwhile: the current file.
        _ => Some(path.to_path_buf()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = "2026-01-01T00:00:01.000000001Z stdout F one\n\
2026-01-01T00:00:02Z stderr F two\n\
2026-01-01T00:00:03Z stdout P thr\n\
2026-01-01T00:00:03Z stdout F ee\n";

    #[test]
    fn queries_parse_with_percent_escapes() {
        let o = Options::parse(Some(
            "follow=true&tailLines=3&sinceTime=2026-01-01T00%3A00%3A02Z&timestamps",
        ));
        assert!(o.follow && o.timestamps && !o.previous);
        assert_eq!(o.tail_lines, Some(3));
        assert_eq!(o.since_time.as_deref(), Some("2026-01-01T00:00:02Z"));
        assert_eq!(percent_decode("a%2"), "a%2");
    }

    #[test]
    fn cri_lines_parse() {
        let l = parse("2026-01-01T00:00:01Z stdout P part").unwrap();
        assert_eq!((l.stream, l.partial, l.text), ("stdout", true, "part"));
        assert_eq!(parse("2026-01-01T00:00:01Z stdout F ").unwrap().text, "");
        assert!(parse("garbage").is_none());
    }

    #[test]
    fn options_select_like_upstream() {
        assert_eq!(select(LOG, &Options::default()), b"one\ntwo\nthree\n");
        let tail = Options {
            tail_lines: Some(2),
            ..Options::default()
        };
        assert_eq!(select(LOG, &tail), b"three\n");
        let ts = Options {
            tail_lines: Some(1),
            timestamps: true,
            ..Options::default()
        };
        assert_eq!(select(LOG, &ts), b"2026-01-01T00:00:03Z ee\n");
        let since = Options {
            since_time: Some("2026-01-01T00:00:02Z".into()),
            ..Options::default()
        };
        assert_eq!(select(LOG, &since), b"two\nthree\n");
        let limit = Options {
            limit_bytes: Some(5),
            ..Options::default()
        };
        assert_eq!(select(LOG, &limit), b"one\nt");
    }
}

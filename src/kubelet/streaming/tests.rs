//! Tests of the streaming server's pure parts and of the copy loop against the fake runtime.

use super::*;
use crate::kubelet::runtime::{ExecReply, ExecSpec, Fake, Runtime};
use futures_util::FutureExt;
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

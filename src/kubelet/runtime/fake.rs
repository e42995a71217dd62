//! A recording `Runtime` for kubelet tests: containers "run" as soon as they are started, every call
//! is recorded, and the test decides when and how each container exits.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use tokio::sync::watch;

use super::{ContainerConfig, Error, ExecProcess, ExecSpec, Runtime, State, validate_id};

/// One call made on the fake, in order.
#[derive(Clone, Debug, PartialEq)]
pub enum Call {
    Start(Box<ContainerConfig>),
    Stop { id: String, grace: Duration },
    Remove(String),
    Exec { id: String, spec: ExecSpec },
}

/// What an exec on the fake does: write `stdout` and `stderr`, then copy its stdin (when it has
/// one) to stdout until stdin closes, then exit with `exit_code`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ExecReply {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub exit_code: i32,
}

#[derive(Default)]
struct Inner {
    containers: BTreeMap<String, (ContainerConfig, State)>,
    calls: Vec<Call>,
    /// args[0] → start failure message.
    start_failures: BTreeMap<String, String>,
    /// args[0] → what an exec of it does.
    exec_replies: BTreeMap<String, ExecReply>,
    next_pid: i32,
}

pub struct Fake {
    inner: Mutex<Inner>,
    /// Bumped on every state change so `wait` futures re-check.
    changed: watch::Sender<()>,
}

impl Default for Fake {
    fn default() -> Self {
        Fake::new()
    }
}

impl Fake {
    pub fn new() -> Fake {
        Fake {
            inner: Mutex::new(Inner {
                next_pid: 1000,
                ..Inner::default()
            }),
            changed: watch::channel(()).0,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panicking test thread must not hide the calls from the other assertions.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every call so far.
    pub fn calls(&self) -> Vec<Call> {
        self.lock().calls.clone()
    }

    /// From now on, starting a container whose `args[0]` is `arg0` fails with `message`, like a
    /// missing executable does in the real runtime.
    pub fn fail_start(&self, arg0: &str, message: &str) {
        self.lock()
            .start_failures
            .insert(arg0.to_string(), message.to_string());
    }

    /// From now on, an exec whose `args[0]` is `arg0` behaves as `reply` says (others write
    /// nothing and exit 0).
    pub fn on_exec(&self, arg0: &str, reply: ExecReply) {
        self.lock().exec_replies.insert(arg0.to_string(), reply);
    }

    /// Makes a running container exit with `exit_code` (128+N means killed by signal N).
    pub fn exit(&self, id: &str, exit_code: i32) {
        self.finish(id, exit_code, false);
    }

    /// Makes a running container exit as OOM killed (SIGKILL, 137).
    pub fn oom_kill(&self, id: &str) {
        self.finish(id, 137, true);
    }

    fn finish(&self, id: &str, exit_code: i32, oom_killed: bool) {
        let mut inner = self.lock();
        if let Some((_, state)) = inner.containers.get_mut(id)
            && let State::Running { started_at, .. } = *state
        {
            *state = State::Exited {
                exit_code,
                signal: (exit_code > 128).then_some(exit_code - 128),
                oom_killed,
                started_at: Some(started_at),
                finished_at: SystemTime::now(),
                message: String::new(),
            };
        }
        drop(inner);
        self.changed.send_replace(());
    }
}

impl Runtime for Fake {
    fn start(&self, config: ContainerConfig) -> BoxFuture<'_, Result<State, Error>> {
        let result = (|| {
            validate_id(&config.id)?;
            let mut inner = self.lock();
            inner.calls.push(Call::Start(Box::new(config.clone())));
            if inner.containers.contains_key(&config.id) {
                return Err(Error::AlreadyExists(config.id.clone()));
            }
            let failure = config
                .args
                .first()
                .and_then(|a| inner.start_failures.get(a))
                .cloned();
            let state = match failure {
                Some(message) => State::Exited {
                    exit_code: 128,
                    signal: None,
                    oom_killed: false,
                    started_at: None,
                    finished_at: SystemTime::now(),
                    message,
                },
                None => {
                    inner.next_pid += 1;
                    State::Running {
                        pid: inner.next_pid,
                        started_at: SystemTime::now(),
                    }
                }
            };
            inner
                .containers
                .insert(config.id.clone(), (config, state.clone()));
            Ok(state)
        })();
        self.changed.send_replace(());
        async move { result }.boxed()
    }

    fn state(&self, id: &str) -> Result<State, Error> {
        self.lock()
            .containers
            .get(id)
            .map(|(_, s)| s.clone())
            .ok_or_else(|| Error::NotFound(id.to_string()))
    }

    fn wait(&self, id: &str) -> BoxFuture<'_, Result<State, Error>> {
        let id = id.to_string();
        async move {
            let mut changed = self.changed.subscribe();
            loop {
                match self.state(&id)? {
                    State::Running { .. } => {}
                    exited => return Ok(exited),
                }
                // The sender lives in `self`, which outlives this future.
                let _ = changed.changed().await;
            }
        }
        .boxed()
    }

    fn stop(&self, id: &str, grace: Duration) -> BoxFuture<'_, Result<State, Error>> {
        self.lock().calls.push(Call::Stop {
            id: id.to_string(),
            grace,
        });
        // The fake's processes honour SIGTERM at once: 128 + 15.
        self.finish(id, 143, false);
        let state = self.state(id);
        async move { state }.boxed()
    }

    fn remove(&self, id: &str) -> BoxFuture<'_, Result<(), Error>> {
        let result = {
            let mut inner = self.lock();
            inner.calls.push(Call::Remove(id.to_string()));
            match inner.containers.get(id) {
                Some((_, State::Running { .. })) => Err(Error::StillRunning(id.to_string())),
                _ => {
                    inner.containers.remove(id);
                    Ok(())
                }
            }
        };
        async move { result }.boxed()
    }

    fn list(&self) -> Result<Vec<(ContainerConfig, State)>, Error> {
        Ok(self.lock().containers.values().cloned().collect())
    }

    fn exec(&self, id: &str, spec: ExecSpec) -> BoxFuture<'_, Result<ExecProcess, Error>> {
        let reply = {
            let mut inner = self.lock();
            inner.calls.push(Call::Exec {
                id: id.to_string(),
                spec: spec.clone(),
            });
            match inner.containers.get(id) {
                Some((_, State::Running { .. })) => Ok(spec
                    .args
                    .first()
                    .and_then(|a| inner.exec_replies.get(a))
                    .cloned()
                    .unwrap_or_default()),
                Some(_) => Err(Error::NotRunning(id.to_string())),
                None => Err(Error::NotFound(id.to_string())),
            }
        };
        async move { Ok(fake_process(reply?, &spec)) }.boxed()
    }

    /// The fake keeps no stdin: attaching input reports it like a container started without.
    fn attach(&self, id: &str) -> BoxFuture<'_, Result<super::AttachInput, Error>> {
        let result = match self.lock().containers.get(id) {
            Some((_, State::Running { .. })) => Err(Error::Exec {
                id: id.to_string(),
                reason: "the container was not started with stdin: true or tty: true".into(),
            }),
            Some(_) => Err(Error::NotRunning(id.to_string())),
            None => Err(Error::NotFound(id.to_string())),
        };
        async move { result }.boxed()
    }
}

/// An in-memory process acting out `reply` (needs a tokio runtime: it runs as a task).
fn fake_process(reply: ExecReply, spec: &ExecSpec) -> ExecProcess {
    use tokio::io::AsyncWriteExt;
    let (mut out_w, out_r) = tokio::io::duplex(64 * 1024);
    let (mut err_w, err_r) = tokio::io::duplex(64 * 1024);
    let (in_w, mut in_r) = tokio::io::duplex(64 * 1024);
    let echo = spec.stdin;
    let tty = spec.tty;
    let task = tokio::spawn(async move {
        out_w.write_all(&reply.stdout).await?;
        if tty {
            out_w.write_all(&reply.stderr).await?;
        } else {
            err_w.write_all(&reply.stderr).await?;
        }
        drop(err_w);
        if echo {
            tokio::io::copy(&mut in_r, &mut out_w).await?;
        }
        Ok::<i32, std::io::Error>(reply.exit_code)
    });
    let (resize, _) = tokio::sync::mpsc::unbounded_channel();
    ExecProcess {
        stdin: echo.then(|| Box::pin(in_w) as _),
        stdout: Box::pin(out_r),
        stderr: (!tty).then(|| Box::pin(err_r) as _),
        resize: tty.then_some(resize),
        exit: async move {
            match task.await {
                Ok(Ok(code)) => Ok(code),
                Ok(Err(source)) => Err(Error::Io {
                    action: "write",
                    path: "fake exec output".into(),
                    source,
                }),
                Err(e) => Err(Error::Join(e)),
            }
        }
        .boxed(),
    }
}

//! kubectl 1.27 and 1.33 against `rk3s server`: the everyday flows of a Kubernetes user, over
//! real HTTPS with the kubeconfig rk3s writes.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::support::{Process, have_etcdctl};

const KUBECTL_DIR: &str = "/usr/lib/google-cloud-sdk/bin";

/// The kubectl binary of a minor version, if installed.
pub(crate) fn kubectl_bin(minor: u32) -> Option<PathBuf> {
    let p = Path::new(KUBECTL_DIR).join(format!("kubectl.1.{minor}"));
    if p.exists() {
        return Some(p);
    }
    if std::env::var_os("RK3S_TESTS_STRICT").is_some_and(|v| v == "1") {
        panic!("{} is missing and RK3S_TESTS_STRICT=1", p.display());
    }
    println!("SKIP: {} is not installed", p.display());
    None
}

/// A running server and one kubectl to drive it.
pub(crate) struct Cluster {
    _dir: tempfile::TempDir,
    _server: Process,
    /// The server's extra flags, for a restart.
    extra: Vec<String>,
    kubeconfig: PathBuf,
    kubectl: PathBuf,
    home: PathBuf,
}

/// A server with its kubelet leaves containers behind by design (they outlive rk3s); a test
/// that fails before deleting its pods must not leave them to the next one. So the shims of
/// this data dir and their containers are killed and its mounts detached.
impl Drop for Cluster {
    fn drop(&mut self) {
        if !self.extra.iter().any(|a| a == "--enable-agent") {
            return;
        }
        let _ = self._server.child.kill();
        let _ = self._server.child.wait();
        let dir = self._dir.path().to_path_buf();
        let needle = format!("shim {}", dir.join("agent/containers").display());
        for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
                continue;
            };
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            if !String::from_utf8_lossy(&cmd)
                .replace('\0', " ")
                .contains(&needle)
            {
                continue;
            }
            let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
                .unwrap_or_default();
            for c in children.split_whitespace().filter_map(|c| c.parse().ok()) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(c),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        std::thread::sleep(Duration::from_millis(100));
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mut mounts: Vec<&str> = mountinfo
            .lines()
            .filter_map(|l| l.split_whitespace().nth(4))
            .filter(|m| m.starts_with(&*dir.to_string_lossy()))
            .collect();
        // Deepest first.
        mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in mounts {
            let _ = nix::mount::umount2(m, nix::mount::MntFlags::MNT_DETACH);
        }
    }
}

impl Cluster {
    pub(crate) fn start(minor: u32) -> Option<Cluster> {
        Cluster::start_with(minor, &[])
    }

    /// A server without the controller-manager and the scheduler: what is stored is exactly
    /// what clients wrote, for flows that check the API server's own output.
    pub(crate) fn start_api_only(minor: u32) -> Option<Cluster> {
        Cluster::start_with(
            minor,
            &["--disable-controller-manager", "--disable-scheduler"],
        )
    }

    pub(crate) fn start_with(minor: u32, extra: &[&str]) -> Option<Cluster> {
        Cluster::start_in(minor, tempfile::tempdir().unwrap(), extra)
    }

    /// Like [`Cluster::start_with`], with `dir` as the data dir (prepared by the test).
    pub(crate) fn start_in(minor: u32, dir: tempfile::TempDir, extra: &[&str]) -> Option<Cluster> {
        Cluster::start_wrapped(minor, dir, &[], extra)
    }

    /// Like [`Cluster::start_in`], the server run through `wrapper` (e.g. `unshare … --`).
    pub(crate) fn start_wrapped(
        minor: u32,
        dir: tempfile::TempDir,
        wrapper: &[&str],
        extra: &[&str],
    ) -> Option<Cluster> {
        let kubectl = kubectl_bin(minor)?;
        if !have_etcdctl() {
            return None;
        }
        let server = Process::server_wrapped(dir.path(), wrapper, extra);
        let kubeconfig = dir.path().join("kubeconfig.yaml");
        let home = dir.path().join("home");
        std::fs::create_dir_all(&home).unwrap();
        let c = Cluster {
            kubeconfig,
            kubectl,
            home,
            _server: server,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            _dir: dir,
        };
        c.wait_for_api();
        Some(c)
    }

    /// `kill -9` of the server, then the same server again on the same data dir.
    pub(crate) fn kill9_and_restart(&mut self) {
        let _ = self._server.child.kill();
        let _ = self._server.child.wait();
        let extra: Vec<&str> = self.extra.iter().map(String::as_str).collect();
        self._server = Process::server(self._dir.path(), &extra);
        self.wait_for_api();
    }

    fn wait_for_api(&self) {
        let c = self;
        // The API answers once the kubeconfig is there; wait for namespaces to exist.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let out = c.run(&["get", "ns", "default", "-o", "name"], None);
            if out.status.success() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the API never answered: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A shell command line running kubectl with `args` against this cluster (for script(1)).
    pub(crate) fn shell_line(&self, args: &[&str]) -> String {
        let quote = |s: &str| format!("'{}'", s.replace('\'', r"'\''"));
        let mut line = format!(
            "KUBECONFIG={} HOME={} {}",
            quote(&self.kubeconfig.to_string_lossy()),
            quote(&self.home.to_string_lossy()),
            quote(&self.kubectl.to_string_lossy())
        );
        for a in args {
            line.push(' ');
            line.push_str(&quote(a));
        }
        line
    }

    /// kubectl with this cluster's kubeconfig and home, stdout and stderr piped.
    pub(crate) fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.kubectl);
        cmd.env("KUBECONFIG", &self.kubeconfig)
            .env("HOME", &self.home)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    pub(crate) fn run(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut cmd = self.command(args);
        match stdin {
            None => cmd.stdin(Stdio::null()).output().expect("run kubectl"),
            Some(input) => {
                use std::io::Write;
                let mut child = cmd.stdin(Stdio::piped()).spawn().expect("run kubectl");
                child
                    .stdin
                    .take()
                    .unwrap()
                    .write_all(input.as_bytes())
                    .unwrap();
                child.wait_with_output().expect("wait for kubectl")
            }
        }
    }

    /// Runs kubectl, failing the test on a non-zero exit or any warning on stderr.
    pub(crate) fn ok(&self, args: &[&str]) -> String {
        self.ok_in(args, None)
    }

    pub(crate) fn ok_in(&self, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.run(args, stdin);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {stderr}\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
        assert!(
            !stderr.contains("Warning") && !stderr.contains("warning") && !stderr.contains("error"),
            "kubectl {args:?} printed on stderr: {stderr}"
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs kubectl expecting failure; returns stderr.
    pub(crate) fn fails(&self, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.run(args, stdin);
        assert!(
            !out.status.success(),
            "kubectl {args:?} should fail: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// What the server logged so far (for failure messages).
    pub(crate) fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// The server's `--data-dir`.
    pub(crate) fn data_dir(&self) -> &Path {
        self._dir.path()
    }

    pub(crate) fn server_log(&self) -> String {
        self._server.log()
    }

    /// The pid of the server process (of its wrapper when started through one).
    pub(crate) fn server_pid(&self) -> u32 {
        self._server.pid()
    }

    /// Polls until `check` holds, failing the test (with the server's log) after 30 s.
    pub(crate) fn eventually(&self, what: &str, mut check: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !check() {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; server log:\n{}",
                self.server_log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub(crate) fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = args.to_vec();
        all.extend(["-o", "json"]);
        let out = self.ok(&all);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
    }
}

/// One test per kubectl version for each flow; `api_only` flows run without controllers (their
/// expected output is what the API server stores, untouched by controllers: no pods for a
/// Deployment, no `kube-root-ca.crt` in a namespace).
macro_rules! both_versions {
    ($name:ident, api_only) => {
        mod $name {
            #[test]
            fn kubectl_1_27() {
                if let Some(c) = super::Cluster::start_api_only(27) {
                    super::$name(&c);
                }
            }
            #[test]
            fn kubectl_1_33() {
                if let Some(c) = super::Cluster::start_api_only(33) {
                    super::$name(&c);
                }
            }
        }
    };
    ($name:ident) => {
        mod $name {
            #[test]
            fn kubectl_1_27() {
                if let Some(c) = super::Cluster::start(27) {
                    super::$name(&c);
                }
            }
            #[test]
            fn kubectl_1_33() {
                if let Some(c) = super::Cluster::start(33) {
                    super::$name(&c);
                }
            }
        }
    };
}
pub(crate) use both_versions;

const APP: &str = r#"
apiVersion: v1
kind: ConfigMap
metadata:
  name: web-config
  labels: {app: web}
data:
  greeting: hello
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web}
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: httpd
        image: busybox:1.36
        command: [httpd, -f, -p, "8080"]
        ports:
        - containerPort: 8080
---
apiVersion: v1
kind: Service
metadata:
  name: web
  labels: {app: web}
spec:
  selector: {app: web}
  ports:
  - port: 80
    targetPort: 8080
"#;

both_versions!(discovery_namespaces_and_version);
fn discovery_namespaces_and_version(c: &Cluster) {
    let ns = c.ok(&["get", "namespaces", "-o", "name"]);
    for n in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        assert!(ns.contains(&format!("namespace/{n}")), "{ns}");
    }
    let table = c.ok(&["get", "ns"]);
    assert!(table.starts_with("NAME"), "{table}");
    assert!(table.contains("Active"), "{table}");
    let resources = c.ok(&["api-resources"]);
    for line in ["deployments ", "deploy ", "apps/v1 ", "Deployment"] {
        assert!(resources.contains(line), "{line} missing in {resources}");
    }
    let versions = c.ok(&["api-versions"]);
    for gv in [
        "apps/v1",
        "batch/v1",
        "v1",
        "autoscaling/v2",
        "apiextensions.k8s.io/v1",
    ] {
        assert!(
            versions.lines().any(|l| l == gv),
            "{gv} missing in {versions}"
        );
    }
    let svc = c.json(&["get", "svc", "kubernetes", "-n", "default"]);
    assert_eq!(svc["spec"]["clusterIP"], "10.43.0.1");
    let v = c.ok(&["version", "-o", "json"]);
    assert!(v.contains("\"minor\": \"33\""), "{v}");
}

/// `--disable=metrics,local-storage` leaves metrics.k8s.io out of discovery and creates no
/// default StorageClass; without it both are there.
#[test]
fn disabled_components_are_absent() {
    let Some(c) = Cluster::start_with(33, &["--disable=metrics", "--disable", "local-storage"])
    else {
        return;
    };
    let versions = c.ok(&["api-versions"]);
    assert!(!versions.contains("metrics.k8s.io"), "{versions}");
    let classes = c.json(&["get", "storageclasses"]);
    assert_eq!(classes["items"], serde_json::json!([]), "{classes}");
    drop(c);
    let Some(c) = Cluster::start(33) else {
        return;
    };
    let versions = c.ok(&["api-versions"]);
    assert!(
        versions.lines().any(|l| l == "metrics.k8s.io/v1beta1"),
        "{versions}"
    );
    let class = c.json(&["get", "storageclass", "local-path"]);
    assert_eq!(class["provisioner"], "rancher.io/local-path", "{class}");
}

both_versions!(create_get_apply_label_patch_scale_delete);
fn create_get_apply_label_patch_scale_delete(c: &Cluster) {
    let out = c.ok_in(&["create", "--save-config", "-f", "-"], Some(APP));
    assert!(out.contains("configmap/web-config created"), "{out}");
    assert!(out.contains("deployment.apps/web created"), "{out}");
    assert!(out.contains("service/web created"), "{out}");
    let err = c.fails(&["create", "-f", "-"], Some(APP));
    assert!(err.contains("already exists"), "{err}");

    // Server-side defaults and allocations.
    let d = c.json(&["get", "deployment", "web"]);
    assert_eq!(d["spec"]["strategy"]["type"], "RollingUpdate");
    assert_eq!(d["metadata"]["generation"], 1);
    let svc = c.json(&["get", "svc", "web"]);
    let ip = svc["spec"]["clusterIP"].as_str().unwrap().to_string();
    assert!(ip.starts_with("10.43."), "{svc}");
    let wide = c.ok(&["get", "svc", "web", "-o", "wide"]);
    assert!(
        wide.contains(&ip) && wide.contains("80/TCP") && wide.contains("app=web"),
        "{wide}"
    );
    assert_eq!(
        c.ok(&["get", "cm", "web-config", "-o", "jsonpath={.data.greeting}"]),
        "hello"
    );
    let yaml = c.ok(&["get", "deploy", "web", "-o", "yaml"]);
    assert!(yaml.contains("replicas: 2"), "{yaml}");

    // apply twice: a changed field and a removed one.
    let applied = APP.replace("greeting: hello", "greeting: hi\n  extra: x");
    c.ok_in(&["apply", "-f", "-"], Some(&applied));
    assert_eq!(
        c.ok(&["get", "cm", "web-config", "-o", "jsonpath={.data.extra}"]),
        "x"
    );
    let removed = APP.replace("greeting: hello", "greeting: hi");
    c.ok_in(&["apply", "-f", "-"], Some(&removed));
    let cm = c.json(&["get", "cm", "web-config"]);
    assert_eq!(cm["data"], serde_json::json!({"greeting": "hi"}), "{cm}");

    // label and annotate, with and without --overwrite.
    c.ok(&["label", "cm", "web-config", "tier=frontend"]);
    let err = c.fails(&["label", "cm", "web-config", "tier=backend"], None);
    assert!(err.contains("already has a value"), "{err}");
    c.ok(&["label", "cm", "web-config", "tier=backend", "--overwrite"]);
    c.ok(&["annotate", "cm", "web-config", "note=one"]);
    c.ok(&["annotate", "cm", "web-config", "note=two", "--overwrite"]);
    let cm = c.json(&["get", "cm", "web-config"]);
    assert_eq!(cm["metadata"]["labels"]["tier"], "backend");
    assert_eq!(cm["metadata"]["annotations"]["note"], "two");
    assert_eq!(
        c.ok(&["get", "cm", "-l", "tier=backend", "-o", "name"]),
        "configmap/web-config\n"
    );

    // patch: strategic (containers merged by name), merge and JSON.
    c.ok(&[
        "patch",
        "deployment",
        "web",
        "-p",
        r#"{"spec":{"template":{"spec":{"containers":[{"name":"httpd","image":"busybox:1.37"}]}}}}"#,
    ]);
    let d = c.json(&["get", "deployment", "web"]);
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["image"],
        "busybox:1.37"
    );
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["command"][0], "httpd",
        "strategic merge keeps the other fields"
    );
    assert_eq!(
        d["metadata"]["generation"], 2,
        "a spec change bumps generation"
    );
    c.ok(&[
        "patch",
        "cm",
        "web-config",
        "--type=merge",
        "-p",
        r#"{"data":{"m":"1"}}"#,
    ]);
    c.ok(&[
        "patch",
        "cm",
        "web-config",
        "--type=json",
        "-p",
        r#"[{"op":"replace","path":"/data/m","value":"2"}]"#,
    ]);
    assert_eq!(
        c.ok(&["get", "cm", "web-config", "-o", "jsonpath={.data.m}"]),
        "2"
    );

    // scale through the scale subresource.
    c.ok(&["scale", "deployment", "web", "--replicas=5"]);
    assert_eq!(
        c.ok(&["get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"]),
        "5"
    );

    // delete by label, then wait for it to be gone.
    c.ok(&["delete", "cm,deploy,svc", "-l", "app=web"]);
    c.ok(&["wait", "--for=delete", "deployment/web", "--timeout=10s"]);
    let left = c.ok(&["get", "cm,deploy,svc", "-l", "app=web", "-o", "name"]);
    assert_eq!(left, "", "{left}");
}

both_versions!(watch_sees_changes, api_only);
fn watch_sees_changes(c: &Cluster) {
    c.ok(&["create", "configmap", "w1", "--from-literal=a=1"]);
    let mut child = c
        .command(&["get", "cm", "-w", "-o", "name"])
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let next = || {
        rx.recv_timeout(Duration::from_secs(10))
            .expect("kubectl get -w printed a line")
    };
    assert_eq!(next(), "configmap/w1");
    c.ok(&["create", "configmap", "w2", "--from-literal=a=1"]);
    assert_eq!(next(), "configmap/w2");
    c.ok(&["delete", "configmap", "w1"]);
    assert_eq!(next(), "configmap/w1");
    let _ = child.kill();
    let _ = child.wait();
}

both_versions!(bad_input_gets_upstreams_errors);
fn bad_input_gets_upstreams_errors(c: &Cluster) {
    let err = c.fails(&["create", "configmap", "Bad_Name"], None);
    assert!(
        err.contains("metadata.name: Invalid value: \"Bad_Name\""),
        "{err}"
    );
    let err = c.fails(&["get", "deploy", "missing"], None);
    assert!(
        err.contains("deployments.apps \"missing\" not found"),
        "{err}"
    );
    let err = c.fails(&["create", "configmap", "x", "-n", "nowhere"], None);
    assert!(err.contains("namespaces \"nowhere\" not found"), "{err}");
    let err = c.fails(&["get", "pods", "-l", "a in (b"], None);
    assert!(err.contains("unable to parse requirement"), "{err}");
    let err = c.fails(&["get", "pods", "--field-selector", "spec.bogus=x"], None);
    assert!(
        err.contains("field label not supported: spec.bogus"),
        "{err}"
    );
}

both_versions!(auth_whoami_names_the_admin);
fn auth_whoami_names_the_admin(c: &Cluster) {
    let out = c.ok(&["auth", "whoami", "-o", "json"]);
    assert!(out.contains("system:admin"), "{out}");
    assert!(out.contains("system:masters"), "{out}");
}

both_versions!(unknown_fields_are_rejected_under_strict_validation);
fn unknown_fields_are_rejected_under_strict_validation(c: &Cluster) {
    // kubectl asks for Strict field validation, which the server enforces; nothing is stored.
    let typo =
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: typo\ndata: {a: b}\ndatta: {c: d}\n";
    let err = c.fails(&["create", "-f", "-"], Some(typo));
    assert!(err.contains("unknown field \"datta\""), "{err}");
    c.fails(&["get", "cm", "typo"], None);
    // With validation off the field is dropped, as upstream's decoding drops it.
    c.ok_in(&["create", "--validate=false", "-f", "-"], Some(typo));
    let cm = c.json(&["get", "cm", "typo"]);
    assert!(cm.get("datta").is_none(), "{cm}");
}

both_versions!(explain_uses_the_openapi_documents);
fn explain_uses_the_openapi_documents(c: &Cluster) {
    let out = c.ok(&["explain", "deployment.spec.strategy", "--recursive"]);
    assert!(out.contains("rollingUpdate"), "{out}");
    assert!(out.contains("maxSurge"), "{out}");
    let out = c.ok(&["explain", "pods.spec.containers.image"]);
    assert!(out.contains("image"), "{out}");
}

/// Runs kubectl expecting success and nothing at all on stderr.
fn quiet(c: &Cluster, args: &[&str], stdin: Option<&str>) -> String {
    let out = c.run(args, stdin);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.is_empty(),
        "kubectl {args:?}: {stderr}\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The managedFields entry of `manager` with `operation`, if any.
fn managed_entry(obj: &serde_json::Value, manager: &str, operation: &str) -> serde_json::Value {
    obj["metadata"]["managedFields"]
        .as_array()
        .and_then(|entries| {
            entries
                .iter()
                .find(|e| e["manager"] == manager && e["operation"] == operation)
        })
        .cloned()
        .unwrap_or(serde_json::Value::Null)
}

const SSA_APP: &str = r#"
apiVersion: v1
kind: ConfigMap
metadata:
  name: ssa-config
data:
  greeting: hello
  extra: x
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: ssa-web
  labels: {app: ssa-web}
spec:
  replicas: 2
  selector:
    matchLabels: {app: ssa-web}
  template:
    metadata:
      labels: {app: ssa-web}
    spec:
      containers:
      - name: httpd
        image: busybox:1.36
        ports:
        - containerPort: 8080
"#;

both_versions!(server_side_apply_tracks_field_owners);
fn server_side_apply_tracks_field_owners(c: &Cluster) {
    let out = quiet(c, &["apply", "--server-side", "-f", "-"], Some(SSA_APP));
    assert!(
        out.contains("configmap/ssa-config serverside-applied"),
        "{out}"
    );
    assert!(
        out.contains("deployment.apps/ssa-web serverside-applied"),
        "{out}"
    );
    let shown = [
        "get",
        "deploy",
        "ssa-web",
        "-o",
        "json",
        "--show-managed-fields",
    ];
    let d: serde_json::Value = serde_json::from_str(&quiet(c, &shown, None)).unwrap();
    let kubectl = managed_entry(&d, "kubectl", "Apply");
    assert_eq!(kubectl["apiVersion"], "apps/v1", "{d}");
    assert_eq!(kubectl["fieldsType"], "FieldsV1");
    assert_eq!(
        kubectl["fieldsV1"]["f:spec"]["f:replicas"],
        serde_json::json!({})
    );
    let container = &kubectl["fieldsV1"]["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"httpd\"}"];
    assert_eq!(container["f:image"], serde_json::json!({}), "{kubectl}");
    // Hidden unless asked for.
    let plain = c.json(&["get", "deploy", "ssa-web"]);
    assert!(plain["metadata"].get("managedFields").is_none(), "{plain}");

    // Applying again: a changed field changes, a field left out goes.
    let changed = SSA_APP
        .replace("greeting: hello", "greeting: hi")
        .replace("  extra: x\n", "");
    let out = quiet(c, &["apply", "--server-side", "-f", "-"], Some(&changed));
    assert!(
        out.contains("configmap/ssa-config serverside-applied"),
        "{out}"
    );
    let cm = c.json(&["get", "cm", "ssa-config"]);
    assert_eq!(cm["data"], serde_json::json!({"greeting": "hi"}), "{cm}");

    // Another manager changing replicas conflicts with kubectl's ownership...
    let replicas =
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: ssa-web\nspec:\n  replicas: 3\n";
    let other = ["apply", "--server-side", "--field-manager=other", "-f", "-"];
    let err = c.fails(&other, Some(replicas));
    assert!(
        err.contains("Apply failed with 1 conflict: conflict with \"kubectl\": .spec.replicas"),
        "{err}"
    );
    // ...a server-side dry run with force changes nothing...
    let dry = [
        "apply",
        "--server-side",
        "--field-manager=other",
        "--force-conflicts",
        "--dry-run=server",
        "-f",
        "-",
    ];
    quiet(c, &dry, Some(replicas));
    let d = c.json(&["get", "deploy", "ssa-web"]);
    assert_eq!(d["spec"]["replicas"], 2);
    // ...and forcing takes the field over.
    let forced = [
        "apply",
        "--server-side",
        "--field-manager=other",
        "--force-conflicts",
        "-f",
        "-",
    ];
    quiet(c, &forced, Some(replicas));
    let d: serde_json::Value = serde_json::from_str(&quiet(c, &shown, None)).unwrap();
    assert_eq!(d["spec"]["replicas"], 3);
    let other = managed_entry(&d, "other", "Apply");
    assert_eq!(
        other["fieldsV1"]["f:spec"]["f:replicas"],
        serde_json::json!({}),
        "{d}"
    );
    let kubectl = managed_entry(&d, "kubectl", "Apply");
    assert!(
        kubectl["fieldsV1"]["f:spec"].get("f:replicas").is_none(),
        "{d}"
    );

    // Non-apply writes record Update entries under their manager.
    quiet(c, &["label", "cm", "ssa-config", "tier=web"], None);
    let cm: serde_json::Value = serde_json::from_str(&quiet(
        c,
        &[
            "get",
            "cm",
            "ssa-config",
            "-o",
            "json",
            "--show-managed-fields",
        ],
        None,
    ))
    .unwrap();
    let label = managed_entry(&cm, "kubectl-label", "Update");
    assert_eq!(
        label["fieldsV1"]["f:metadata"]["f:labels"]["f:tier"],
        serde_json::json!({}),
        "{cm}"
    );
    quiet(c, &["delete", "-f", "-"], Some(SSA_APP));
}

both_versions!(client_side_apply_moves_to_server_side_apply);
fn client_side_apply_moves_to_server_side_apply(c: &Cluster) {
    let config = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: moved\ndata:\n  a: \"1\"\n  b: \"2\"\n";
    let out = quiet(c, &["apply", "-f", "-"], Some(config));
    assert!(out.contains("configmap/moved created"), "{out}");
    let shown = ["get", "cm", "moved", "-o", "json", "--show-managed-fields"];
    let cm: serde_json::Value = serde_json::from_str(&quiet(c, &shown, None)).unwrap();
    let csa = managed_entry(&cm, "kubectl-client-side-apply", "Update");
    assert_eq!(
        csa["fieldsV1"]["f:data"]["f:a"],
        serde_json::json!({}),
        "{cm}"
    );
    // The same configuration with a changed value, now applied server-side: the fields
    // client-side apply owned move to kubectl's apply.
    let changed = config.replace("a: \"1\"", "a: \"3\"");
    let out = quiet(c, &["apply", "--server-side", "-f", "-"], Some(&changed));
    assert!(out.contains("configmap/moved serverside-applied"), "{out}");
    let cm: serde_json::Value = serde_json::from_str(&quiet(c, &shown, None)).unwrap();
    assert_eq!(cm["data"], serde_json::json!({"a": "3", "b": "2"}), "{cm}");
    let ssa = managed_entry(&cm, "kubectl", "Apply");
    assert_eq!(
        ssa["fieldsV1"]["f:data"]["f:a"],
        serde_json::json!({}),
        "{cm}"
    );
    let csa = managed_entry(&cm, "kubectl-client-side-apply", "Update");
    assert!(csa["fieldsV1"]["f:data"].get("f:a").is_none(), "{cm}");
    // Leaving a field out now removes it, as for any server-side apply.
    let fewer = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: moved\ndata:\n  a: \"3\"\n";
    quiet(c, &["apply", "--server-side", "-f", "-"], Some(fewer));
    let cm = c.json(&["get", "cm", "moved"]);
    assert_eq!(cm["data"], serde_json::json!({"a": "3"}), "{cm}");
}

// Everyday flows from files and terminals: multi-document create and apply, output formats,
// describe, edit, label/annotate, delete and wait, watches as tables, namespace termination.
// Every kubectl run here that should succeed must print nothing at all on stderr (no warning
// about OpenAPI, validation or deprecated APIs).

impl Cluster {
    /// Runs kubectl expecting success and an empty stderr; returns stdout.
    fn clean(&self, args: &[&str]) -> String {
        self.clean_in(args, None)
    }

    fn clean_in(&self, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.run(args, stdin);
        expect_clean(args, &out)
    }

    /// Runs kubectl with extra environment (EDITOR, TMPDIR) and no input.
    fn run_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut cmd = self.command(args);
        cmd.envs(env.iter().copied()).stdin(Stdio::null());
        cmd.output().expect("run kubectl")
    }

    /// `-o json` of what `args` names, with nothing on stderr.
    fn clean_json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = args.to_vec();
        all.extend(["-o", "json"]);
        let out = self.clean(&all);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
    }

    /// Writes `contents` to `name` in the test's home directory and returns its path.
    fn write(&self, name: &str, contents: &str) -> String {
        let path = self.home.join(name);
        std::fs::write(&path, contents).unwrap();
        path.to_str().unwrap().to_string()
    }

    /// An executable `sh` script in the home directory (an EDITOR for `kubectl edit`).
    fn script(&self, name: &str, body: &str) -> String {
        use std::os::unix::fs::PermissionsExt;
        let path = self.write(name, &format!("#!/bin/sh\nset -e\n{body}"));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }
}

fn expect_clean(args: &[&str], out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "kubectl {args:?} failed: {stderr}\n{stdout}"
    );
    assert!(
        stderr.is_empty(),
        "kubectl {args:?} printed on stderr: {stderr}"
    );
    stdout
}

/// `s` with `from` replaced by `to`; `from` must occur (so a test edit never silently misses).
fn changed(s: &str, from: &str, to: &str) -> String {
    assert!(s.contains(from), "{from:?} is not in the manifest");
    s.replace(from, to)
}

/// The value of the first top-level `Key:` line of `kubectl describe` output, with runs of
/// spaces collapsed.
fn described(out: &str, key: &str) -> String {
    out.lines()
        .find_map(|l| l.strip_prefix(key))
        .map(|v| v.split_whitespace().collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| panic!("no {key:?} line in:\n{out}"))
}

/// The whitespace-separated cells of each line of a table.
fn cells(table: &str) -> Vec<Vec<String>> {
    table
        .lines()
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .collect()
}

const SHOP: &str = r#"apiVersion: v1
kind: ConfigMap
metadata:
  name: shop-config
  labels: {app: shop}
data:
  color: blue
  size: large
---
apiVersion: v1
kind: Secret
metadata:
  name: shop-secret
  labels: {app: shop}
type: Opaque
stringData:
  password: first
---
apiVersion: v1
kind: Service
metadata:
  name: shop
  labels: {app: shop, tier: front}
spec:
  selector: {app: shop}
  ports:
  - name: http
    port: 80
    targetPort: 8080
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: shop
  labels: {app: shop}
  annotations: {team: blue}
spec:
  replicas: 2
  selector:
    matchLabels: {app: shop}
  template:
    metadata:
      labels: {app: shop}
    spec:
      containers:
      - name: app
        image: busybox:1.36
        command: [sleep, "3600"]
        env:
        - {name: MODE, value: debug}
"#;

both_versions!(multi_document_file_create_then_apply_changes_and_removals);
fn multi_document_file_create_then_apply_changes_and_removals(c: &Cluster) {
    let v1 = c.write("shop.yaml", SHOP);
    let out = c.clean(&["create", "--save-config", "-f", &v1]);
    assert_eq!(
        out,
        "configmap/shop-config created\nsecret/shop-secret created\nservice/shop created\ndeployment.apps/shop created\n"
    );
    let secret = c.clean_json(&["get", "secret", "shop-secret"]);
    assert_eq!(secret["data"]["password"], "Zmlyc3Q=", "{secret}");
    assert!(secret.get("stringData").is_none(), "{secret}");

    // The next version changes one field and drops another in each object.
    let mut v2 = changed(SHOP, "  color: blue\n  size: large\n", "  color: red\n");
    v2 = changed(&v2, "password: first", "password: second");
    v2 = changed(
        &v2,
        "labels: {app: shop, tier: front}",
        "labels: {app: shop}",
    );
    v2 = changed(&v2, "    port: 80\n", "    port: 81\n");
    v2 = changed(&v2, "  annotations: {team: blue}\n", "");
    v2 = changed(&v2, "  replicas: 2\n", "  replicas: 3\n");
    v2 = changed(
        &v2,
        "        env:\n        - {name: MODE, value: debug}\n",
        "",
    );
    let v2 = c.write("shop-v2.yaml", &v2);
    let out = c.clean(&["apply", "-f", &v2]);
    for line in [
        "configmap/shop-config configured",
        "secret/shop-secret configured",
        "service/shop configured",
        "deployment.apps/shop configured",
    ] {
        assert!(out.contains(line), "{line} missing in {out}");
    }
    let cm = c.clean_json(&["get", "cm", "shop-config"]);
    assert_eq!(cm["data"], serde_json::json!({"color": "red"}), "{cm}");
    let secret = c.clean_json(&["get", "secret", "shop-secret"]);
    assert_eq!(secret["data"]["password"], "c2Vjb25k", "{secret}");
    let svc = c.clean_json(&["get", "svc", "shop"]);
    assert_eq!(
        svc["metadata"]["labels"],
        serde_json::json!({"app": "shop"})
    );
    let ports = svc["spec"]["ports"].as_array().unwrap();
    assert_eq!(ports.len(), 1, "the port of the old version is gone: {svc}");
    assert_eq!(ports[0]["port"], 81);
    assert_eq!(ports[0]["name"], "http");
    let d = c.clean_json(&["get", "deploy", "shop"]);
    assert_eq!(d["spec"]["replicas"], 3);
    let container = &d["spec"]["template"]["spec"]["containers"][0];
    assert!(container.get("env").is_none(), "{container}");
    assert_eq!(container["command"], serde_json::json!(["sleep", "3600"]));
    let annotations = d["metadata"]["annotations"].as_object().unwrap();
    assert!(!annotations.contains_key("team"), "{annotations:?}");
    assert!(annotations.contains_key("kubectl.kubernetes.io/last-applied-configuration"));
    assert_eq!(d["metadata"]["generation"], 2);

    // Applying the same file again finds nothing to change: server defaults never show up
    // as differences (the Secret's stringData is write-only, so upstream patches it again).
    let out = c.clean(&["apply", "-f", &v2]);
    for line in [
        "configmap/shop-config unchanged",
        "service/shop unchanged",
        "deployment.apps/shop unchanged",
    ] {
        assert!(out.contains(line), "{line} missing in {out}");
    }
    assert_eq!(
        c.clean_json(&["get", "deploy", "shop"])["metadata"]["generation"],
        2
    );
    let cm = c.clean_json(&["get", "cm", "shop-config"]);
    assert!(
        cm["metadata"].get("generation").is_none(),
        "ConfigMaps have no generation upstream: {cm}"
    );
    c.clean(&["delete", "-f", &v2]);
}

both_versions!(get_prints_wide_json_jsonpath_and_custom_columns, api_only);
fn get_prints_wide_json_jsonpath_and_custom_columns(c: &Cluster) {
    c.clean_in(&["create", "-f", "-"], Some(SHOP));
    c.clean(&[
        "run",
        "shop-debug",
        "--image=busybox:1.36",
        "--labels=app=shop",
        "--",
        "sleep",
        "3600",
    ]);

    let wide = cells(&c.clean(&["get", "deploy", "shop", "-o", "wide"]));
    let header = [
        "NAME",
        "READY",
        "UP-TO-DATE",
        "AVAILABLE",
        "AGE",
        "CONTAINERS",
        "IMAGES",
        "SELECTOR",
    ];
    assert_eq!(wide[0], header, "{wide:?}");
    let row = &wide[1];
    assert_eq!(
        (&row[0], &row[1], &row[2], &row[3]),
        (&"shop".into(), &"0/2".into(), &"0".into(), &"0".into()),
        "{wide:?}"
    );
    assert_eq!(row[5..], ["app", "busybox:1.36", "app=shop"], "{wide:?}");
    let wide = cells(&c.clean(&["get", "pods", "-o", "wide"]));
    let header = [
        "NAME",
        "READY",
        "STATUS",
        "RESTARTS",
        "AGE",
        "IP",
        "NODE",
        "NOMINATED",
        "NODE",
        "READINESS",
        "GATES",
    ];
    assert_eq!(wide[0], header, "{wide:?}");
    assert_eq!(
        wide[1][..4],
        ["shop-debug", "0/1", "Pending", "0"],
        "{wide:?}"
    );
    assert_eq!(wide[1][5..], ["<none>"; 4], "{wide:?}");

    // JSON: one object, or a List of several kinds.
    let d = c.clean_json(&["get", "deploy", "shop"]);
    assert_eq!(
        (&d["kind"], &d["apiVersion"]),
        (&"Deployment".into(), &"apps/v1".into())
    );
    let list = c.clean_json(&["get", "cm,secret", "-l", "app=shop"]);
    assert_eq!(list["kind"], "List", "{list}");
    let kinds: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["ConfigMap", "Secret"], "{list}");
    let yaml = c.clean(&["get", "svc", "-l", "app=shop", "-o", "yaml"]);
    assert!(
        yaml.contains("kind: List") && yaml.contains("  kind: Service"),
        "{yaml}"
    );

    // jsonpath, custom columns and go templates, on objects and lists.
    let jp = c.clean(&[
        "get",
        "deploy,svc,pods",
        "-l",
        "app=shop",
        "-o",
        r#"jsonpath={range .items[*]}{.kind}/{.metadata.name}{"\n"}{end}"#,
    ]);
    assert_eq!(jp, "Deployment/shop\nService/shop\nPod/shop-debug\n");
    assert_eq!(
        c.clean(&["get", "cm", "shop-config", "-o", "jsonpath={.data}"]),
        r#"{"color":"blue","size":"large"}"#
    );
    assert_eq!(
        c.clean(&[
            "get",
            "svc",
            "shop",
            "-o",
            "jsonpath={.spec.ports[0].targetPort}"
        ]),
        "8080"
    );
    let columns = c.clean(&[
        "get",
        "deploy",
        "-o",
        "custom-columns=NAME:.metadata.name,REPLICAS:.spec.replicas,IMAGE:.spec.template.spec.containers[*].image,MISSING:.status.nothing",
    ]);
    assert_eq!(
        cells(&columns),
        [
            ["NAME", "REPLICAS", "IMAGE", "MISSING"],
            ["shop", "2", "busybox:1.36", "<none>"]
        ],
        "{columns}"
    );
    assert_eq!(
        c.clean(&[
            "get",
            "pod",
            "shop-debug",
            "-o",
            "go-template={{.spec.containers | len}} {{.status.phase}}"
        ]),
        "1 Pending"
    );

    // Table options: labels as columns, sorting, no headers, the `all` category.
    let labels = cells(&c.clean(&["get", "cm", "shop-config", "--show-labels"]));
    assert_eq!(labels[0].last().unwrap(), "LABELS");
    assert_eq!(labels[1].last().unwrap(), "app=shop");
    let with_l = cells(&c.clean(&["get", "pods", "-L", "app", "--no-headers"]));
    assert_eq!(with_l.len(), 1, "{with_l:?}");
    assert_eq!(with_l[0].last().unwrap(), "shop");
    c.clean(&["create", "configmap", "zeta"]);
    c.clean(&["create", "configmap", "alpha"]);
    let sorted = c.clean(&["get", "cm", "-o", "name", "--sort-by=.metadata.name"]);
    let names: Vec<&str> = sorted.lines().collect();
    let mut expected = names.clone();
    expected.sort();
    assert_eq!(names, expected);
    assert!(names.contains(&"configmap/alpha") && names.contains(&"configmap/zeta"));
    let all = c.clean(&["get", "all", "-o", "name"]);
    for n in [
        "pod/shop-debug",
        "service/shop",
        "service/kubernetes",
        "deployment.apps/shop",
    ] {
        assert!(all.lines().any(|l| l == n), "{n} missing in {all}");
    }
    assert!(
        !all.contains("configmap/"),
        "ConfigMaps are not in `all`: {all}"
    );
}

both_versions!(describe_shows_sections_and_each_objects_events, api_only);
fn describe_shows_sections_and_each_objects_events(c: &Cluster) {
    c.clean_in(&["create", "-f", "-"], Some(SHOP));
    c.clean(&[
        "run",
        "shop-debug",
        "--image=busybox:1.36",
        "--labels=app=shop",
        "--",
        "sleep",
        "3600",
    ]);
    // One event about each object. The Deployment and the Service share a name, so only the
    // field selector's involvedObject.kind/uid keeps their events apart.
    let mut events = String::new();
    for (i, (kind, api_version, name, reason, message)) in [
        (
            "Pod",
            "v1",
            "shop-debug",
            "Scheduled",
            "assigned default/shop-debug to node-a",
        ),
        (
            "Deployment",
            "apps/v1",
            "shop",
            "ScalingReplicaSet",
            "scaled up replica set shop-abc to 2",
        ),
        (
            "Service",
            "v1",
            "shop",
            "Allocated",
            "service shop got its cluster IP",
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let resource = format!("{}/{name}", kind.to_lowercase());
        let uid = c.clean(&["get", &resource, "-o", "jsonpath={.metadata.uid}"]);
        events.push_str(&format!(
            "---\napiVersion: v1\nkind: Event\nmetadata:\n  name: {name}.event{i}\n\
             involvedObject:\n  apiVersion: {api_version}\n  kind: {kind}\n  name: {name}\n  \
             namespace: default\n  uid: {uid}\nreason: {reason}\nmessage: {message}\n\
             type: Normal\nsource:\n  component: rk3s-test\ncount: 1\n\
             firstTimestamp: \"2025-01-01T00:00:00Z\"\nlastTimestamp: \"2025-01-01T00:00:00Z\"\n"
        ));
    }
    c.clean_in(&["create", "-f", "-"], Some(&events));
    let got = c.clean(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.kind=Service,involvedObject.name=shop",
        "-o",
        "name",
    ]);
    assert_eq!(got, "event/shop.event2\n");

    let pod = c.clean(&["describe", "pod", "shop-debug"]);
    assert_eq!(described(&pod, "Name:"), "shop-debug");
    assert_eq!(described(&pod, "Namespace:"), "default");
    assert_eq!(described(&pod, "Labels:"), "app=shop");
    assert_eq!(described(&pod, "Status:"), "Pending");
    for section in [
        "Containers:",
        "  shop-debug:",
        "    Image:",
        "QoS Class:",
        "Events:",
    ] {
        assert!(pod.contains(section), "{section} missing in:\n{pod}");
    }
    assert!(
        pod.contains("assigned default/shop-debug to node-a"),
        "{pod}"
    );
    assert!(!pod.contains("ScalingReplicaSet"), "{pod}");

    let deploy = c.clean(&["describe", "deployment", "shop"]);
    assert_eq!(described(&deploy, "Name:"), "shop");
    assert_eq!(described(&deploy, "Namespace:"), "default");
    assert_eq!(described(&deploy, "Labels:"), "app=shop");
    assert_eq!(described(&deploy, "Selector:"), "app=shop");
    assert!(
        described(&deploy, "Replicas:").starts_with("2 desired | 0 updated | 0 total"),
        "{deploy}"
    );
    assert_eq!(described(&deploy, "StrategyType:"), "RollingUpdate");
    for section in ["Pod Template:", "    Image:", "Events:"] {
        assert!(deploy.contains(section), "{section} missing in:\n{deploy}");
    }
    assert!(
        deploy.contains("scaled up replica set shop-abc to 2"),
        "{deploy}"
    );
    assert!(!deploy.contains("got its cluster IP"), "{deploy}");

    let svc = c.clean(&["describe", "service", "shop"]);
    let ip = c.clean(&["get", "svc", "shop", "-o", "jsonpath={.spec.clusterIP}"]);
    assert_eq!(described(&svc, "Name:"), "shop");
    assert_eq!(described(&svc, "Selector:"), "app=shop");
    assert_eq!(described(&svc, "Type:"), "ClusterIP");
    assert_eq!(described(&svc, "IP:"), ip);
    assert_eq!(described(&svc, "Port:"), "http 80/TCP");
    assert_eq!(described(&svc, "TargetPort:"), "8080/TCP");
    assert!(svc.contains("service shop got its cluster IP"), "{svc}");
    assert!(!svc.contains("ScalingReplicaSet"), "{svc}");

    let cm = c.clean(&["describe", "configmap", "shop-config"]);
    assert_eq!(described(&cm, "Name:"), "shop-config");
    assert_eq!(described(&cm, "Labels:"), "app=shop");
    for section in [
        "Data\n====\n",
        "color:\n----\nblue\n",
        "size:\n----\nlarge\n",
    ] {
        assert!(cm.contains(section), "{section:?} missing in:\n{cm}");
    }
    assert_eq!(described(&cm, "Events:"), "<none>");

    let ns = c.clean(&["describe", "namespace", "default"]);
    assert_eq!(described(&ns, "Name:"), "default");
    assert_eq!(
        described(&ns, "Labels:"),
        "kubernetes.io/metadata.name=default"
    );
    assert_eq!(described(&ns, "Status:"), "Active");
    assert!(ns.contains("No resource quota."), "{ns}");
    assert!(ns.contains("No LimitRange resource."), "{ns}");

    // Describing by selector describes each match.
    let many = c.clean(&["describe", "pods,deploy", "-l", "app=shop"]);
    assert_eq!(many.matches("\nEvents:").count(), 2, "{many}");
    let err = c.fails(&["describe", "deploy", "missing"], None);
    assert!(
        err.contains("deployments.apps \"missing\" not found"),
        "{err}"
    );
}

both_versions!(edit_with_a_scripted_editor, api_only);
fn edit_with_a_scripted_editor(c: &Cluster) {
    c.clean_in(&["create", "-f", "-"], Some(SHOP));
    let tmp = c.home.to_str().unwrap().to_string();
    let edit =
        |args: &[&str], editor: &str| c.run_env(args, &[("EDITOR", editor), ("TMPDIR", &tmp)]);

    let to_green = c.script(
        "to-green.sh",
        "sed -i 's/^  color: blue$/  color: green/' \"$1\"\n",
    );
    let out = edit(&["edit", "configmap", "shop-config"], &to_green);
    assert_eq!(
        expect_clean(&["edit", "configmap"], &out),
        "configmap/shop-config edited\n"
    );
    let cm = c.clean_json(&["get", "cm", "shop-config"]);
    assert_eq!(
        cm["data"],
        serde_json::json!({"color": "green", "size": "large"})
    );

    let to_four = c.script(
        "to-four.sh",
        "sed -i 's/^  replicas: 2$/  replicas: 4/' \"$1\"\n",
    );
    let out = edit(&["edit", "deployment", "shop"], &to_four);
    assert_eq!(
        expect_clean(&["edit", "deployment"], &out),
        "deployment.apps/shop edited\n"
    );
    let d = c.clean_json(&["get", "deploy", "shop"]);
    assert_eq!(d["spec"]["replicas"], 4);
    assert_eq!(d["metadata"]["generation"], 2);

    // An edit that makes the object invalid: kubectl reopens the file with the server's error
    // at the top; the editor gives up the second time, so kubectl fails and nothing changes.
    let marker = c.home.join("edited-once");
    let reopened = c.home.join("reopened.yaml");
    let breaks = c.script(
        "breaks.sh",
        &format!(
            "if [ -e {m} ]; then cp \"$1\" {r}; exit 1; fi\ntouch {m}\n\
             sed -i 's/^  replicas: 4$/  replicas: -3/' \"$1\"\n",
            m = marker.display(),
            r = reopened.display()
        ),
    );
    let out = edit(&["edit", "deployment", "shop"], &breaks);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the edit should fail: {stderr}");
    assert!(
        stderr.contains("deployments.apps \"shop\" is invalid"),
        "{stderr}"
    );
    let shown = std::fs::read_to_string(&reopened).expect("kubectl reopened the file");
    assert!(
        shown.contains("# deployments.apps \"shop\" was not valid:"),
        "{shown}"
    );
    assert!(
        shown.contains("spec.replicas: Invalid value: -3: must be greater than or equal to 0"),
        "{shown}"
    );
    let after = c.clean_json(&["get", "deploy", "shop"]);
    assert_eq!(after["spec"]["replicas"], 4);
    assert_eq!(
        after["metadata"]["resourceVersion"], d["metadata"]["resourceVersion"],
        "nothing was written"
    );
}

both_versions!(label_annotate_and_patch_keep_their_rules);
fn label_annotate_and_patch_keep_their_rules(c: &Cluster) {
    c.clean_in(&["create", "-f", "-"], Some(SHOP));
    assert_eq!(
        c.clean(&["label", "deploy", "shop", "tier=web"]),
        "deployment.apps/shop labeled\n"
    );
    let err = c.fails(&["label", "deploy", "shop", "tier=db"], None);
    assert!(
        err.contains("'tier' already has a value (web), and --overwrite is false"),
        "{err}"
    );
    c.clean(&["label", "deploy", "shop", "tier=db", "--overwrite"]);
    assert_eq!(
        c.clean(&["get", "deploy", "-l", "tier=db", "-o", "name"]),
        "deployment.apps/shop\n"
    );
    assert_eq!(
        c.clean(&["label", "deploy", "shop", "tier-"]),
        "deployment.apps/shop unlabeled\n"
    );
    // kubectl 1.27 says "annotate", later ones "annotated".
    let out = c.clean(&["annotate", "deploy", "shop", "owner=alice"]);
    assert!(out.starts_with("deployment.apps/shop annotate"), "{out}");
    let err = c.fails(&["annotate", "deploy", "shop", "owner=bob"], None);
    assert!(
        err.contains("--overwrite is false but found the following declared annotation(s): 'owner' already has a value (alice)"),
        "{err}"
    );
    c.clean(&["annotate", "deploy", "shop", "owner=bob", "--overwrite"]);
    let d = c.clean_json(&["get", "deploy", "shop"]);
    assert_eq!(d["metadata"]["annotations"]["owner"], "bob");
    assert!(d["metadata"]["labels"].get("tier").is_none(), "{d}");
    c.clean(&["annotate", "deploy", "shop", "owner-"]);
    let d = c.clean_json(&["get", "deploy", "shop"]);
    assert!(d["metadata"]["annotations"].get("owner").is_none(), "{d}");
    assert_eq!(
        d["metadata"]["generation"], 1,
        "metadata changes keep the generation"
    );

    // Several objects at once, by selector and with --all.
    let out = c.clean(&["label", "cm,svc", "-l", "app=shop", "release=v1"]);
    assert_eq!(out, "configmap/shop-config labeled\nservice/shop labeled\n");
    c.clean(&["annotate", "cm", "--all", "audited=yes"]);
    assert_eq!(
        c.clean(&[
            "get",
            "cm",
            "shop-config",
            "-o",
            "jsonpath={.metadata.annotations.audited}"
        ]),
        "yes"
    );
    // A stale --resource-version is a conflict; nothing is written.
    let err = c.fails(
        &["label", "svc", "shop", "stale=yes", "--resource-version=1"],
        None,
    );
    assert!(err.contains("the object has been modified"), "{err}");

    // Patches of each type on the Service; a failing JSON-patch test changes nothing.
    c.clean(&[
        "patch",
        "svc",
        "shop",
        "-p",
        r#"{"spec":{"ports":[{"port":80,"name":"web"}]}}"#,
    ]);
    let svc = c.clean_json(&["get", "svc", "shop"]);
    assert_eq!(
        svc["spec"]["ports"][0]["name"], "web",
        "merged by port: {svc}"
    );
    assert_eq!(svc["spec"]["ports"][0]["targetPort"], 8080, "{svc}");
    c.clean(&[
        "patch",
        "svc",
        "shop",
        "--type=merge",
        "-p",
        r#"{"metadata":{"labels":{"release":null}}}"#,
    ]);
    c.clean(&[
        "patch",
        "svc",
        "shop",
        "--type=json",
        "-p",
        r#"[{"op":"test","path":"/spec/ports/0/name","value":"web"},{"op":"replace","path":"/spec/ports/0/name","value":"www"}]"#,
    ]);
    c.fails(
        &[
            "patch",
            "svc",
            "shop",
            "--type=json",
            "-p",
            r#"[{"op":"test","path":"/spec/ports/0/name","value":"web"},{"op":"replace","path":"/spec/ports/0/name","value":"x"}]"#,
        ],
        None,
    );
    let svc = c.clean_json(&["get", "svc", "shop"]);
    assert_eq!(svc["spec"]["ports"][0]["name"], "www", "{svc}");
    assert!(svc["metadata"]["labels"].get("release").is_none(), "{svc}");
}

both_versions!(
    delete_all_by_label_and_wait_for_deletion_and_conditions,
    api_only
);
fn delete_all_by_label_and_wait_for_deletion_and_conditions(c: &Cluster) {
    c.clean(&["create", "namespace", "batch"]);
    for n in ["a", "b", "c"] {
        c.clean(&["create", "configmap", n, "-n", "batch"]);
    }
    c.clean(&[
        "create",
        "secret",
        "generic",
        "s1",
        "--from-literal=k=v",
        "-n",
        "batch",
    ]);
    c.clean(&[
        "create",
        "secret",
        "generic",
        "s2",
        "--from-literal=k=v",
        "-n",
        "batch",
    ]);
    c.clean(&["label", "secret", "s1", "role=temp", "-n", "batch"]);
    c.clean(&["create", "configmap", "elsewhere"]);

    let out = c.clean(&["delete", "configmap", "--all", "-n", "batch"]);
    assert_eq!(
        out,
        "configmap \"a\" deleted\nconfigmap \"b\" deleted\nconfigmap \"c\" deleted\n"
    );
    let left = c.clean_json(&["get", "configmaps", "-n", "batch"]);
    assert_eq!(left["items"], serde_json::json!([]), "{left}");
    c.clean(&["get", "configmap", "elsewhere", "-n", "default"]);
    assert_eq!(
        c.clean(&["delete", "secret", "-l", "role=temp", "-n", "batch"]),
        "secret \"s1\" deleted\n"
    );
    assert_eq!(
        c.clean(&["get", "secrets", "-n", "batch", "-o", "name"]),
        "secret/s2\n"
    );

    // wait --for=delete on an object a finalizer holds: it must not return while the object
    // is only being deleted, and must return once the finalizer goes.
    let held = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: held\n  namespace: batch\n  finalizers: [example.com/hold]\n";
    c.clean_in(&["create", "-f", "-"], Some(held));
    c.clean(&["delete", "configmap", "held", "-n", "batch", "--wait=false"]);
    let cm = c.clean_json(&["get", "configmap", "held", "-n", "batch"]);
    assert!(cm["metadata"]["deletionTimestamp"].is_string(), "{cm}");
    let err = c.fails(
        &[
            "wait",
            "--for=delete",
            "configmap/held",
            "-n",
            "batch",
            "--timeout=1s",
        ],
        None,
    );
    assert!(err.contains("timed out waiting for the condition"), "{err}");
    let waiter = c
        .command(&[
            "wait",
            "--for=delete",
            "configmap/held",
            "-n",
            "batch",
            "--timeout=60s",
        ])
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    c.clean(&[
        "patch",
        "configmap",
        "held",
        "-n",
        "batch",
        "--type=json",
        "-p",
        r#"[{"op":"remove","path":"/metadata/finalizers"}]"#,
    ]);
    let out = waiter.wait_with_output().unwrap();
    expect_clean(&["wait", "--for=delete"], &out);
    let err = c.fails(&["get", "configmap", "held", "-n", "batch"], None);
    assert!(err.contains("configmaps \"held\" not found"), "{err}");

    // wait --for=condition on something whose conditions need no controller: a CRD.
    let crd = r#"apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
spec:
  group: example.com
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              size: {type: integer}
"#;
    c.clean_in(&["create", "-f", "-"], Some(crd));
    let out = c.clean(&[
        "wait",
        "--for=condition=Established",
        "crd/widgets.example.com",
        "--timeout=30s",
    ]);
    assert_eq!(
        out,
        "customresourcedefinition.apiextensions.k8s.io/widgets.example.com condition met\n"
    );
    c.clean(&[
        "wait",
        "--for=condition=NamesAccepted=True",
        "crd/widgets.example.com",
        "--timeout=30s",
    ]);
    let out = c.clean(&[
        "wait",
        "--for=jsonpath={.status.phase}=Active",
        "namespace/batch",
        "--timeout=30s",
    ]);
    assert_eq!(out, "namespace/batch condition met\n");
    c.clean_in(
        &["create", "-n", "batch", "-f", "-"],
        Some("apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: w1\nspec:\n  size: 3\n"),
    );
    assert_eq!(
        c.clean(&["delete", "widgets", "--all", "-n", "batch"]),
        "widget.example.com \"w1\" deleted\n"
    );
}

/// A `kubectl get -w` running in the background, its stdout lines collected by a thread.
struct Watching {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl Watching {
    fn start(c: &Cluster, args: &[&str]) -> Watching {
        let mut child = c.command(args).stdin(Stdio::null()).spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Watching { child, lines }
    }

    /// The cells of the next line (a hang guard, not a timing check).
    fn next(&self) -> Vec<String> {
        let line = self
            .lines
            .recv_timeout(Duration::from_secs(20))
            .expect("kubectl get -w printed a line");
        line.split_whitespace().map(str::to_string).collect()
    }

    /// Stops kubectl and returns what it printed on stderr.
    fn stop(mut self) -> String {
        use std::io::Read;
        let _ = self.child.kill();
        let mut stderr = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = e.read_to_string(&mut stderr);
        }
        let _ = self.child.wait();
        stderr
    }
}

both_versions!(get_watch_prints_table_rows_as_events_arrive);
fn get_watch_prints_table_rows_as_events_arrive(c: &Cluster) {
    c.clean(&["run", "first", "--image=busybox:1.36"]);
    let w = Watching::start(c, &["get", "pods", "-w"]);
    assert_eq!(w.next(), ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]);
    assert_eq!(w.next()[..4], ["first", "0/1", "Pending", "0"]);
    c.clean(&["run", "second", "--image=busybox:1.36"]);
    assert_eq!(w.next()[..4], ["second", "0/1", "Pending", "0"]);
    c.clean(&["label", "pod", "second", "seen=yes"]);
    assert_eq!(w.next()[..3], ["second", "0/1", "Pending"]);
    // Not on a node: deleted at once, and the watch prints its last row.
    c.clean(&["delete", "pod", "second"]);
    assert_eq!(w.next()[..3], ["second", "0/1", "Pending"]);
    let stderr = w.stop();
    assert!(
        stderr.is_empty(),
        "kubectl get -w printed on stderr: {stderr}"
    );

    c.clean(&["create", "configmap", "one", "--from-literal=a=1"]);
    let w = Watching::start(
        c,
        &[
            "get",
            "configmaps",
            "-w",
            "--output-watch-events",
            "-l",
            "watched=yes",
        ],
    );
    c.clean(&["label", "configmap", "one", "watched=yes"]);
    assert_eq!(w.next(), ["EVENT", "NAME", "DATA", "AGE"]);
    assert_eq!(w.next()[..3], ["ADDED", "one", "1"]);
    c.clean(&[
        "patch",
        "configmap",
        "one",
        "--type=merge",
        "-p",
        r#"{"data":{"b":"2"}}"#,
    ]);
    assert_eq!(w.next()[..3], ["MODIFIED", "one", "2"]);
    // Leaving the selector is a deletion for this watch.
    c.clean(&["label", "configmap", "one", "watched-"]);
    assert_eq!(w.next()[..3], ["DELETED", "one", "2"]);
    let stderr = w.stop();
    assert!(
        stderr.is_empty(),
        "kubectl get -w printed on stderr: {stderr}"
    );
}

both_versions!(deleting_a_namespace_refuses_new_content);
fn deleting_a_namespace_refuses_new_content(c: &Cluster) {
    assert_eq!(
        c.clean(&["create", "namespace", "shop-ns"]),
        "namespace/shop-ns created\n"
    );
    c.clean(&[
        "create",
        "configmap",
        "settings",
        "--from-literal=a=1",
        "-n",
        "shop-ns",
    ]);
    c.clean(&[
        "create",
        "deployment",
        "web",
        "--image=busybox:1.36",
        "-n",
        "shop-ns",
    ]);
    assert_eq!(
        c.clean(&["get", "ns", "shop-ns", "-o", "jsonpath={.status.phase}"]),
        "Active"
    );
    // Finalizers on its content hold the namespace in Terminating while the namespace
    // controller empties it; kubectl must not wait for it to go.
    for kind in ["configmap/settings", "deployment/web"] {
        c.clean(&[
            "patch",
            kind,
            "-n",
            "shop-ns",
            "--type=merge",
            "-p",
            r#"{"metadata":{"finalizers":["example.com/hold"]}}"#,
        ]);
    }
    assert_eq!(
        c.clean(&["delete", "namespace", "shop-ns", "--wait=false"]),
        "namespace \"shop-ns\" deleted\n"
    );
    let ns = c.clean_json(&["get", "namespace", "shop-ns"]);
    assert_eq!(ns["status"]["phase"], "Terminating", "{ns}");
    assert!(ns["metadata"]["deletionTimestamp"].is_string(), "{ns}");
    let table = cells(&c.clean(&["get", "ns", "shop-ns"]));
    assert_eq!(table[1][..2], ["shop-ns", "Terminating"]);

    let refused =
        "unable to create new content in namespace shop-ns because it is being terminated";
    let err = c.fails(&["create", "configmap", "late", "-n", "shop-ns"], None);
    assert!(
        err.contains(&format!("configmaps \"late\" is forbidden: {refused}")),
        "{err}"
    );
    let late = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: late\n  namespace: shop-ns\nspec:\n  selector:\n    matchLabels: {app: late}\n  template:\n    metadata:\n      labels: {app: late}\n    spec:\n      containers:\n      - {name: app, image: busybox:1.36}\n";
    let err = c.fails(&["apply", "-f", "-"], Some(late));
    assert!(err.contains("Error from server (Forbidden)"), "{err}");
    assert!(
        err.contains(&format!(
            "deployments.apps \"late\" is forbidden: {refused}"
        )),
        "{err}"
    );

    // What is there can still be read and changed, the namespace included, and it stays.
    c.clean(&[
        "label",
        "configmap",
        "settings",
        "-n",
        "shop-ns",
        "kept=yes",
    ]);
    c.clean(&["get", "deployment", "web", "-n", "shop-ns"]);
    c.clean(&["label", "namespace", "shop-ns", "note=closing"]);
    assert_eq!(
        c.clean(&["get", "ns", "shop-ns", "-o", "jsonpath={.status.phase}"]),
        "Terminating"
    );
    // Deleting again while its content is removed is upstream's Conflict.
    let err = c.fails(&["delete", "namespace", "shop-ns", "--wait=false"], None);
    assert!(
        err.contains("Operation cannot be fulfilled on namespaces \"shop-ns\": The system is ensuring all content is removed from this namespace."),
        "{err}"
    );
    // Once the finalizers go, the namespace controller finishes: the content goes, then
    // `kubernetes` leaves spec.finalizers through the finalize subresource and the namespace goes.
    for kind in ["configmap/settings", "deployment/web"] {
        c.clean(&[
            "patch",
            kind,
            "-n",
            "shop-ns",
            "--type=merge",
            "-p",
            r#"{"metadata":{"finalizers":null}}"#,
        ]);
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while c
        .run(&["get", "namespace", "shop-ns"], None)
        .status
        .success()
    {
        assert!(
            Instant::now() < deadline,
            "namespace shop-ns was never removed"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let err = c.fails(&["get", "namespace", "shop-ns"], None);
    assert!(err.contains("namespaces \"shop-ns\" not found"), "{err}");
    // Namespaces are deleted one by one (no deletecollection verb, as upstream).
    let resources = c.clean(&["api-resources", "--api-group=", "-o", "wide"]);
    let line = resources
        .lines()
        .find(|l| l.starts_with("namespaces "))
        .unwrap_or_else(|| panic!("{resources}"));
    // kubectl 1.27 prints `[create delete …]`, 1.33 `create,delete,…`.
    let verbs = line.replace(['[', ']', ','], " ");
    assert!(
        verbs.contains("create delete get list patch update watch"),
        "{line}"
    );
    assert!(!line.contains("deletecollection"), "{line}");
}

both_versions!(bad_bodies_get_upstreams_status_and_store_nothing);
fn bad_bodies_get_upstreams_status_and_store_nothing(c: &Cluster) {
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str, body: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, body).unwrap();
        p.to_string_lossy().into_owned()
    };
    let cms = "/api/v1/namespaces/default/configmaps";

    // Malformed JSON: 400, nothing stored.
    let bad = file(
        "bad.json",
        r#"{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"#,
    );
    let err = c.fails(&["create", "--raw", cms, "-f", &bad], None);
    assert!(err.contains("BadRequest"), "{err}");

    // The wrong kind for the endpoint: 400.
    let wrong = file(
        "wrong.json",
        r#"{"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "wrong-kind"}}"#,
    );
    let err = c.fails(&["create", "--raw", cms, "-f", &wrong], None);
    assert!(err.contains("BadRequest"), "{err}");

    // The wrong apiVersion for the endpoint: 400.
    let wrong = file(
        "wrong-version.json",
        r#"{"apiVersion": "apps/v1", "kind": "ConfigMap", "metadata": {"name": "wrong-version"}}"#,
    );
    let err = c.fails(&["create", "--raw", cms, "-f", &wrong], None);
    assert!(err.contains("BadRequest"), "{err}");

    // More than 3 MiB: 413.
    let big = format!(
        r#"{{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {{"name": "big"}}, "data": {{"a": "{}"}}}}"#,
        "x".repeat(4 << 20)
    );
    let big = file("big.json", &big);
    let err = c.fails(&["create", "--raw", cms, "-f", &big], None);
    assert!(err.contains("RequestEntityTooLarge"), "{err}");

    let left = c.ok(&["get", "cm", "-o", "name"]);
    for name in ["wrong-kind", "wrong-version", "big"] {
        assert!(!left.contains(name), "{name} was stored: {left}");
    }
    assert!(
        c.ok(&["get", "secrets", "-o", "name"]).trim().is_empty(),
        "a secret was stored"
    );

    // Immutable fields: 422 naming the field; the object keeps its value.
    c.ok_in(
        &["create", "-f", "-"],
        Some(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: frozen}\nimmutable: true\ndata: {a: '1'}\n",
        ),
    );
    let err = c.fails(
        &[
            "patch",
            "cm",
            "frozen",
            "--type=merge",
            "-p",
            r#"{"data":{"a":"2"}}"#,
        ],
        None,
    );
    assert!(
        err.contains("The ConfigMap \"frozen\" is invalid: data: Forbidden: field is immutable"),
        "{err}"
    );
    assert_eq!(
        c.ok(&["get", "cm", "frozen", "-o", "jsonpath={.data.a}"]),
        "1"
    );
    c.ok_in(
        &["create", "-f", "-"],
        Some("apiVersion: v1\nkind: Service\nmetadata: {name: fixed}\nspec:\n  ports: [{port: 80}]\n"),
    );
    let ip = c.ok(&["get", "svc", "fixed", "-o", "jsonpath={.spec.clusterIP}"]);
    let err = c.fails(
        &[
            "patch",
            "svc",
            "fixed",
            "--type=merge",
            "-p",
            r#"{"spec":{"clusterIP":"10.43.99.99","clusterIPs":["10.43.99.99"]}}"#,
        ],
        None,
    );
    assert!(
        err.contains("The Service \"fixed\" is invalid")
            && err.contains("spec.clusterIP: Invalid value: \"10.43.99.99\": field is immutable"),
        "{err}"
    );
    assert_eq!(
        c.ok(&["get", "svc", "fixed", "-o", "jsonpath={.spec.clusterIP}"]),
        ip
    );

    // A stale resourceVersion: 409 with upstream's message; the newer value stays.
    let old = c.ok(&["get", "cm", "frozen", "-o", "json"]);
    c.ok(&["label", "cm", "frozen", "touched=yes"]);
    let stale = old.replace("\"a\": \"1\"", "\"a\": \"1\", \"b\": \"2\"");
    let stale = file("stale.json", &stale);
    let err = c.fails(&["replace", "-f", &stale], None);
    assert!(
        err.contains("(Conflict)")
            && err.contains(
                "the object has been modified; please apply your changes to the latest version and try again"
            ),
        "{err}"
    );
    assert_eq!(
        c.ok(&[
            "get",
            "cm",
            "frozen",
            "-o",
            "jsonpath={.metadata.labels.touched}"
        ]),
        "yes"
    );
}

//! kubectl 1.27 and 1.33 against `rk3s server`: the everyday flows of a Kubernetes user, over
//! real HTTPS with the kubeconfig rk3s writes.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::support::{Process, have_etcdctl};

const KUBECTL_DIR: &str = "/usr/lib/google-cloud-sdk/bin";

/// The kubectl binary of a minor version, if installed.
fn kubectl_bin(minor: u32) -> Option<PathBuf> {
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
struct Cluster {
    _dir: tempfile::TempDir,
    _server: Process,
    kubeconfig: PathBuf,
    kubectl: PathBuf,
    home: PathBuf,
}

impl Cluster {
    fn start(minor: u32) -> Option<Cluster> {
        let kubectl = kubectl_bin(minor)?;
        if !have_etcdctl() {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let server = Process::server(dir.path(), &[]);
        let kubeconfig = dir.path().join("kubeconfig.yaml");
        let home = dir.path().join("home");
        std::fs::create_dir_all(&home).unwrap();
        let c = Cluster {
            kubeconfig,
            kubectl,
            home,
            _server: server,
            _dir: dir,
        };
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
        Some(c)
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.kubectl);
        cmd.env("KUBECONFIG", &self.kubeconfig)
            .env("HOME", &self.home)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    fn run(&self, args: &[&str], stdin: Option<&str>) -> Output {
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
    fn ok(&self, args: &[&str]) -> String {
        self.ok_in(args, None)
    }

    fn ok_in(&self, args: &[&str], stdin: Option<&str>) -> String {
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
    fn fails(&self, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.run(args, stdin);
        assert!(
            !out.status.success(),
            "kubectl {args:?} should fail: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = args.to_vec();
        all.extend(["-o", "json"]);
        let out = self.ok(&all);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
    }
}

/// One test per kubectl version for each flow.
macro_rules! both_versions {
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

both_versions!(watch_sees_changes);
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

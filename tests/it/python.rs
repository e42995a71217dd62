//! The Python `kubernetes` client (PyPI) against `rk3s server`: `tests/it/python/client_test.py`
//! loads the kubeconfig rk3s writes and drives the API the way Python tools do (typed models,
//! label selectors, the three patch types, scale, a watch fed from another thread, errors).
//! The interpreter is the venv `tests/run.sh` makes at `target/pyenv`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{Process, have_etcdctl};

/// `target/pyenv/bin/python` with the `kubernetes` package, if set up.
fn python() -> Option<PathBuf> {
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/pyenv/bin/python");
    let ready = python.exists()
        && Command::new(&python)
            .args(["-c", "import kubernetes"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
    if ready {
        return Some(python);
    }
    if std::env::var_os("RK3S_TESTS_STRICT").is_some_and(|v| v == "1") {
        panic!(
            "{} with the kubernetes package is missing and RK3S_TESTS_STRICT=1",
            python.display()
        );
    }
    println!(
        "SKIP: {} with the kubernetes package is not set up (tests/run.sh does this)",
        python.display()
    );
    None
}

#[test]
fn python_client_crud_selectors_patches_and_a_watch() {
    let Some(python) = python() else { return };
    if !have_etcdctl() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = Process::server(dir.path(), &[]);
    let kubeconfig = dir.path().join("kubeconfig.yaml");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !kubeconfig.exists() {
        assert!(
            Instant::now() < deadline,
            "no kubeconfig was written:\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/python/client_test.py");
    let out = Command::new(&python)
        .arg(&script)
        .arg(&kubeconfig)
        // The client's own home and caches stay in the test's directory.
        .env("HOME", dir.path())
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(Stdio::null())
        .output()
        .expect("run the Python client test");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "client_test.py failed:\n{stdout}\n{stderr}\nserver log:\n{}",
        server.log()
    );
    assert!(
        stdout.contains("python client: all steps passed"),
        "{stdout}\n{stderr}"
    );
    // urllib3 and the client warn on stderr about anything odd (TLS, deserialisation).
    assert!(
        stderr.is_empty(),
        "client_test.py printed on stderr: {stderr}"
    );
}

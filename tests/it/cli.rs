//! The `rk3s` command line as a user meets it: version, help, config precedence, errors.

use std::process::{Command, Output};

use crate::support::RK3S;

fn rk3s(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(RK3S);
    // The developer's own environment must not leak into these checks.
    cmd.args(args)
        .env_remove("RK3S_DATA_DIR")
        .env_remove("RK3S_CONFIG_FILE");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run rk3s")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn version_and_help_list_only_real_commands() {
    let out = rk3s(&["--version"], &[]);
    assert!(out.status.success());
    let version = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        version.trim(),
        format!("rk3s version v{}", env!("CARGO_PKG_VERSION"))
    );
    let help = String::from_utf8_lossy(&rk3s(&["--help"], &[]).stdout).into_owned();
    for cmd in [
        "server",
        "datastore",
        "etcd-snapshot",
        "images",
        "check-config",
        "killall",
    ] {
        assert!(help.contains(&format!("  {cmd} ")), "{help}");
    }
    for later in ["agent", "token"] {
        assert!(
            !help.contains(&format!("  {later} ")),
            "{later} is listed but not built: {help}"
        );
    }
}

#[test]
fn config_file_errors_name_the_key_and_file_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config.yaml");
    let file_s = file.display().to_string();
    std::fs::write(&file, "no-such-key: 1\n").unwrap();
    let out = rk3s(&["--config", &file_s, "etcd-snapshot", "ls"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out).trim(),
        format!("rk3s: error: {file_s}: unknown key \"no-such-key\"")
    );

    std::fs::write(&file, "datastore-sync: fast\n").unwrap();
    let out = rk3s(&["--config", &file_s, "server"], &[]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with(&format!(
            "rk3s: error: {file_s}: key \"datastore-sync\": invalid value \"fast\""
        )),
        "{err}"
    );

    let out = rk3s(
        &["--config", "/nonexistent/rk3s.yaml", "etcd-snapshot", "ls"],
        &[],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("/nonexistent/rk3s.yaml"));
}

#[test]
fn flags_beat_env_which_beats_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let file = root.join("config.yaml");
    std::fs::write(&file, format!("data-dir: {}/from-file\n", root.display())).unwrap();
    let file_s = file.display().to_string();
    // Which data dir is used shows in the snapshot that `save` writes (and the error it gives
    // when there is no database there).
    let which = |args: &[&str], env: &[(&str, &str)]| {
        let mut all = vec!["--config", &file_s];
        all.extend_from_slice(args);
        all.extend_from_slice(&["etcd-snapshot", "save"]);
        stderr(&rk3s(&all, env))
    };
    let from_file = which(&[], &[]);
    assert!(
        from_file.contains("from-file/server/db/state.db"),
        "{from_file}"
    );
    let env_dir = format!("{}/from-env", root.display());
    let from_env = which(&[], &[("RK3S_DATA_DIR", &env_dir)]);
    assert!(
        from_env.contains("from-env/server/db/state.db"),
        "{from_env}"
    );
    let flag_dir = format!("--data-dir={}/from-flag", root.display());
    let from_flag = which(&[&flag_dir], &[("RK3S_DATA_DIR", &env_dir)]);
    assert!(
        from_flag.contains("from-flag/server/db/state.db"),
        "{from_flag}"
    );
}

#[test]
fn bad_flags_exit_2_with_the_flag_named() {
    let out = rk3s(&["datastore", "--listen", "ftp://x"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--listen"), "{}", stderr(&out));
    let out = rk3s(&["server", "--datastore-compact-interval", "soon"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("invalid duration"),
        "{}",
        stderr(&out)
    );
    let out = rk3s(&["server", "--disable", "traefik"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("--disable") && stderr(&out).contains("local-storage"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn check_config_prints_one_line_per_feature() {
    let out = rk3s(&["check-config"], &[]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.len() >= 15, "{text}");
    for line in &lines {
        assert!(
            line.ends_with(": OK") || line.contains(": MISSING"),
            "{line}"
        );
    }
    for feature in [
        "namespace net",
        "overlayfs",
        "nft binary",
        "br_netfilter",
        "vxlan",
        "ip_forward",
    ] {
        assert!(
            lines.iter().any(|l| l.starts_with(feature)),
            "{feature} missing in {text}"
        );
    }
    let any_required_missing = lines.iter().any(|l| l.contains(": MISSING:"));
    assert_eq!(
        out.status.code(),
        Some(if any_required_missing { 1 } else { 0 })
    );
}

#[test]
fn images_import_ls_and_rm_work_on_a_data_dir() {
    use crate::support::registry::{Layer, TestImage, docker_archive, gzip, oci_layout, zstd};
    if !nix::unistd::geteuid().is_root() {
        if std::env::var_os("RK3S_TESTS_STRICT").is_some_and(|v| v == "1") {
            panic!("importing images needs root (chown, mknod) and RK3S_TESTS_STRICT=1");
        }
        println!("SKIP: importing images needs root (chown, mknod)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data_dir = format!("--data-dir={}", dir.path().join("data").display());
    let run = |args: &[&str]| {
        let mut all = vec![data_dir.as_str(), "images"];
        all.extend_from_slice(args);
        crate::support::rk3s(dir.path(), &all)
    };
    let image = |word: &str| {
        TestImage::new(
            vec![Layer::new().file("word", 0o644, word.as_bytes()).finish()],
            serde_json::json!({"config": {"Cmd": [word]}}),
        )
    };
    let docker = dir.path().join("app.tar.zst");
    std::fs::write(
        &docker,
        zstd(&docker_archive(&["app:1", "app:2"], &image("app"), false)),
    )
    .unwrap();
    let oci = dir.path().join("tool.tgz");
    std::fs::write(
        &oci,
        gzip(&oci_layout(
            "example.com/tools/tool:0.1",
            &image("tool"),
            None,
        )),
    )
    .unwrap();
    let corrupt = dir.path().join("corrupt.tar");
    std::fs::write(&corrupt, b"\0\0not a tar").unwrap();
    let path = |p: &std::path::Path| p.display().to_string();

    // A bad file is reported on one line, the others are imported, the exit code says so.
    let out = run(&["import", &path(&docker), &path(&corrupt), &path(&oci)]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with(&format!("rk3s: error: importing {}: ", path(&corrupt))),
        "{err}"
    );
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    for r in [
        "docker.io/library/app:1",
        "docker.io/library/app:2",
        "example.com/tools/tool:0.1",
    ] {
        assert!(
            stdout.contains(&format!("imported {r} (sha256:")),
            "{stdout}"
        );
    }

    let out = run(&["ls"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let table = String::from_utf8_lossy(&out.stdout).into_owned();
    let rows: Vec<Vec<&str>> = table
        .lines()
        .map(|l| {
            l.split("   ")
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .collect()
        })
        .collect();
    assert_eq!(rows[0], vec!["IMAGE", "TAG", "IMAGE ID", "SIZE"], "{table}");
    assert_eq!(rows.len(), 4, "{table}");
    assert_eq!(rows[1][0], "docker.io/library/app", "{table}");
    assert_eq!(rows[1][1], "1", "{table}");
    assert_eq!(rows[1][2].len(), 13, "{table}");
    assert!(rows[1][3].ends_with("kB"), "{table}");
    assert_eq!(rows[3][0], "example.com/tools/tool", "{table}");

    let out = run(&["ls", "-q"]);
    let ids = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(ids.lines().count(), 2, "{ids}");
    assert!(
        ids.lines()
            .all(|l| l.starts_with("sha256:") && l.len() == 71),
        "{ids}"
    );

    let out = run(&["rm", "app:1", "nope:1"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "Deleted: docker.io/library/app:1\n"
    );
    assert_eq!(stderr(&out).trim(), "rk3s: error: no such image \"nope:1\"");
    let out = run(&["ls"]);
    let table = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(!table.contains("app   1"), "{table}");
    assert_eq!(table.lines().count(), 3, "{table}");

    let missing = dir.path().join("missing.tar");
    let out = run(&["import", &path(&missing)]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains(&path(&missing)), "{}", stderr(&out));
    let out = run(&["import"]);
    assert_eq!(out.status.code(), Some(2), "FILE is required");
}

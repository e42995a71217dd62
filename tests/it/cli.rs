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
    for cmd in ["server", "datastore", "etcd-snapshot", "check-config"] {
        assert!(help.contains(&format!("  {cmd} ")), "{help}");
    }
    for later in ["agent", "token", "images", "killall"] {
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

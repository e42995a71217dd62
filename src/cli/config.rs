//! `/etc/rk3s/config.yaml`: the config file, whose keys are the long flag names (as in k3s).
//!
//! Values from the file fill only what neither a flag nor an environment variable set, and are
//! checked with the same parser as the flag, so a bad value is reported with the key and file.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::Path;

use clap::parser::ValueSource;
use clap::{ArgAction, ArgMatches, Command};
use serde_json::Value;

pub const DEFAULT_PATH: &str = "/etc/rk3s/config.yaml";

/// Every long flag name of the whole command tree.
fn all_longs(cmd: &Command, out: &mut BTreeSet<String>) {
    for arg in cmd.get_arguments() {
        if let Some(long) = arg.get_long() {
            out.insert(long.to_string());
        }
    }
    for sub in cmd.get_subcommands() {
        all_longs(sub, out);
    }
}

/// The innermost subcommand that runs, and the matches of every level down to it (a global
/// flag's value source is only recorded at the level where it was given).
fn leaf<'a>(
    cmd: &'a Command,
    matches: &'a ArgMatches,
    levels: &mut Vec<&'a ArgMatches>,
) -> &'a Command {
    levels.push(matches);
    match matches.subcommand() {
        Some((name, sub_matches)) => match cmd.find_subcommand(name) {
            Some(sub) => leaf(sub, sub_matches, levels),
            None => cmd,
        },
        None => cmd,
    }
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Reads the config file and returns the `--key=value` arguments it contributes, with their
/// keys (the caller checks the values with the flags' own parsers and names the key on error).
/// A missing file is fine unless it was named explicitly.
pub fn args_from_file(
    cmd: &Command,
    matches: &ArgMatches,
    path: &Path,
    explicit: bool,
) -> Result<Vec<(String, OsString)>, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => return Ok(Vec::new()),
        Err(e) => return Err(format!("config file {}: {e}", path.display())),
    };
    args_from_text(cmd, matches, &path.display().to_string(), &text)
}

pub fn args_from_text(
    cmd: &Command,
    matches: &ArgMatches,
    file: &str,
    text: &str,
) -> Result<Vec<(String, OsString)>, String> {
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    let doc: Value = serde_saphyr::from_str(text).map_err(|e| {
        let msg = e.to_string();
        format!(
            "{file}: invalid YAML: {}",
            msg.lines().next().unwrap_or_default()
        )
    })?;
    let map = match doc {
        Value::Null => return Ok(Vec::new()),
        Value::Object(map) => map,
        _ => {
            return Err(format!(
                "{file}: expected a mapping of flag names to values"
            ));
        }
    };
    let mut known = BTreeSet::new();
    all_longs(cmd, &mut known);
    let mut levels = Vec::new();
    let leaf_cmd = leaf(cmd, matches, &mut levels);
    let mut out = Vec::new();
    for (key, value) in &map {
        if !known.contains(key) || key == "config" || key == "help" || key == "version" {
            return Err(format!("{file}: unknown key {key:?}"));
        }
        let Some(arg) = leaf_cmd
            .get_arguments()
            .find(|a| a.get_long() == Some(key.as_str()))
        else {
            // A key for another subcommand (e.g. a server flag while running etcd-snapshot).
            continue;
        };
        let id = arg.get_id().as_str();
        let given = levels.iter().any(|m| {
            m.ids().any(|i| i.as_str() == id)
                && matches!(
                    m.value_source(id),
                    Some(ValueSource::CommandLine | ValueSource::EnvVariable)
                )
        });
        if given {
            continue;
        }
        let flag = matches!(arg.get_action(), ArgAction::SetTrue | ArgAction::Count);
        if flag {
            match value {
                Value::Bool(true) => out.push((key.clone(), OsString::from(format!("--{key}")))),
                Value::Bool(false) => {}
                _ => return Err(format!("{file}: key {key:?}: expected true or false")),
            }
            continue;
        }
        let values: Vec<String> = match value {
            Value::Array(items) if matches!(arg.get_action(), ArgAction::Append) => items
                .iter()
                .map(|v| {
                    scalar(v)
                        .ok_or_else(|| format!("{file}: key {key:?}: expected a list of scalars"))
                })
                .collect::<Result<_, _>>()?,
            Value::Array(_) => {
                return Err(format!(
                    "{file}: key {key:?}: expected a single value, not a list"
                ));
            }
            v => vec![
                scalar(v).ok_or_else(|| format!("{file}: key {key:?}: expected a single value"))?,
            ],
        };
        for v in values {
            out.push((key.clone(), OsString::from(format!("--{key}={v}"))));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn merge(argv: &[&str], yaml: &str) -> Result<Vec<String>, String> {
        let mut cmd = crate::cli::Cli::command();
        cmd.build();
        let m = cmd
            .clone()
            .try_get_matches_from(argv)
            .map_err(|e| e.to_string())?;
        args_from_text(&cmd, &m, "config.yaml", yaml).map(|v| {
            v.into_iter()
                .map(|(_, s)| s.to_string_lossy().into_owned())
                .collect()
        })
    }

    #[test]
    fn file_values_fill_what_flags_did_not_set() {
        let got = merge(
            &["rk3s", "server", "--datastore-sync", "full"],
            "datastore-sync: normal\ndatastore-compact-retention: 50\ndata-dir: /srv/rk3s\n",
        )
        .unwrap();
        assert_eq!(
            got,
            vec!["--data-dir=/srv/rk3s", "--datastore-compact-retention=50"]
        );
    }

    #[test]
    fn keys_of_other_subcommands_are_ignored_unknown_keys_are_errors() {
        let got = merge(
            &["rk3s", "etcd-snapshot", "ls"],
            "etcd-listen: http://127.0.0.1:1\n",
        )
        .unwrap();
        assert!(got.is_empty());
        let e = merge(&["rk3s", "server"], "no-such-flag: 1\n").unwrap_err();
        assert_eq!(e, "config.yaml: unknown key \"no-such-flag\"");
    }

    #[test]
    fn wrong_shapes_name_the_key_and_file() {
        let e = merge(&["rk3s", "server"], "datastore-compact-retention: [1, 2]\n").unwrap_err();
        assert_eq!(
            e,
            "config.yaml: key \"datastore-compact-retention\": expected a single value, not a list"
        );
        let e = merge(&["rk3s", "server"], "- a\n- b\n").unwrap_err();
        assert!(e.contains("mapping"), "{e}");
    }
}

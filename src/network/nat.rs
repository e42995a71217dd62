//! The only file that runs `nft`: masquerade for pod traffic leaving the cluster, and forward
//! accepts for the pod bridge, all in one `ip` table that rk3s owns.
//!
//! [`render`] is pure (golden-tested); [`apply`] pipes its text to `nft -f -`, which applies the
//! whole file as one transaction, so the table is never seen half-written. No other table is read
//! or changed. This is the nftables form of what flannel's iptables rules do (`FLANNEL-POSTRTG`
//! masquerade for pod CIDR → non-cluster destinations, `FLANNEL-FWD` accepts).
//!
//! [`apply`] and [`list_table`] also serve the components that keep their own objects in
//! `table inet rk3s` (`netpol`): they render their scripts, this file runs them.

use std::io::{self, Write};
use std::process::{Command, Stdio};

use ipnet::Ipv4Net;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("running nft for table {table}")]
    Spawn {
        table: String,
        #[source]
        source: io::Error,
    },
    #[error("nft rejected the rules for table {table}: {stderr}")]
    Rejected { table: String, stderr: String },
}

/// What the node's masquerade and forward rules depend on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rules {
    pub table: String,
    pub bridge: String,
    pub pod_cidr: Ipv4Net,
    pub cluster_cidr: Ipv4Net,
}

/// The nft script for `rules`. `add table` + `flush table` makes it idempotent and replaces the
/// previous rules in the same transaction (the pattern kube-proxy's nftables mode uses).
///
/// The `forward` chain accepts everything entering or leaving the bridge. With `br_netfilter`
/// loaded and `net.bridge.bridge-nf-call-iptables = 1` (which Kubernetes needs so that replies of
/// same-node Service traffic are un-DNATed), even pod-to-pod frames bridged inside the node pass
/// the IPv4 forward hook, with the bridge as in/out interface, so they are covered by the same
/// two rules. Note the limit of this: an nftables `accept` only ends evaluation of *this* base
/// chain. A drop by another table on the same hook (docker's `FORWARD` policy DROP) still drops
/// the packet, and cannot be undone from a table we own; such hosts need an explicit allow in
/// that table (docker: `DOCKER-USER`), which we deliberately do not add ourselves.
pub fn render(rules: &Rules) -> String {
    let Rules {
        table,
        bridge,
        pod_cidr,
        cluster_cidr,
    } = rules;
    let pod_cidr = pod_cidr.trunc();
    let cluster_cidr = cluster_cidr.trunc();
    format!(
        "add table ip {table}\n\
         flush table ip {table}\n\
         add chain ip {table} postrouting {{ type nat hook postrouting priority srcnat; policy accept; }}\n\
         add rule ip {table} postrouting ip saddr {pod_cidr} ip daddr != {cluster_cidr} masquerade\n\
         add chain ip {table} forward {{ type filter hook forward priority filter; policy accept; }}\n\
         add rule ip {table} forward iifname \"{bridge}\" accept\n\
         add rule ip {table} forward oifname \"{bridge}\" accept\n"
    )
}

/// The nft script that removes our table (used by tests and uninstall).
pub fn render_delete(table: &str) -> String {
    // `add` first so deleting a table that does not exist is not an error.
    format!("add table ip {table}\ndelete table ip {table}\n")
}

/// Runs `nft -f -` with `script` on stdin. Blocks; call it off the async runtime.
pub fn apply(table: &str, script: &str) -> Result<(), Error> {
    let spawn_err = |source| Error::Spawn {
        table: table.to_string(),
        source,
    };
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(spawn_err)?;
    if let Some(mut stdin) = child.stdin.take() {
        // Dropping stdin at the end of this block closes it, which tells nft the script ended.
        stdin.write_all(script.as_bytes()).map_err(spawn_err)?;
    }
    let out = child.wait_with_output().map_err(spawn_err)?;
    if out.status.success() {
        Ok(())
    } else {
        Err(Error::Rejected {
            table: table.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

/// The ruleset of one table as `nft -t list table <family> <table>` prints it (terse: set
/// elements left out). A table that does not exist gives an empty string. Blocks; call it off
/// the async runtime.
pub fn list_table(family: &str, table: &str) -> Result<String, Error> {
    let out = Command::new("nft")
        .args(["-t", "list", "table", family, table])
        .stdin(Stdio::null())
        .output()
        .map_err(|source| Error::Spawn {
            table: table.to_string(),
            source,
        })?;
    if out.status.success() {
        return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
    // nft reports a missing table as ENOENT ("No such file or directory").
    if stderr.contains("No such file or directory") {
        return Ok(String::new());
    }
    Err(Error::Rejected {
        table: table.to_string(),
        stderr,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_matches_golden_text() {
        let text = render(&Rules {
            table: "rk3s-podnet".into(),
            bridge: "rk3s0".into(),
            pod_cidr: "10.42.3.1/24".parse().unwrap(),
            cluster_cidr: "10.42.0.0/16".parse().unwrap(),
        });
        assert_eq!(
            text,
            "add table ip rk3s-podnet\n\
             flush table ip rk3s-podnet\n\
             add chain ip rk3s-podnet postrouting { type nat hook postrouting priority srcnat; policy accept; }\n\
             add rule ip rk3s-podnet postrouting ip saddr 10.42.3.0/24 ip daddr != 10.42.0.0/16 masquerade\n\
             add chain ip rk3s-podnet forward { type filter hook forward priority filter; policy accept; }\n\
             add rule ip rk3s-podnet forward iifname \"rk3s0\" accept\n\
             add rule ip rk3s-podnet forward oifname \"rk3s0\" accept\n"
        );
    }

    #[test]
    fn delete_script_tolerates_a_missing_table() {
        assert_eq!(render_delete("t"), "add table ip t\ndelete table ip t\n");
    }
}

//! hostPort: a container port published on the node's addresses, as the CNI `portmap` plugin
//! does for upstream. One `ip` table rk3s owns, `rk3s-hostports`, holds a DNAT rule per
//! mapping, reached from `prerouting` (traffic from other machines and from pods) and `output`
//! (the node itself) for destinations that are local addresses of the node. Loopback
//! destinations are left alone: DNAT of 127.0.0.1 to a pod needs `route_localnet`, which
//! upstream does not turn on either, and it would steal the port from host services listening
//! on loopback. A pod reaching its own hostPort through the node address (hairpin) is
//! masqueraded, or its reply would bypass the DNAT.
//!
//! [`render`] is pure (golden-tested); the whole table is replaced in one `nft -f` transaction
//! whenever the set of mappings changes.

use std::fmt::Write;
use std::net::Ipv4Addr;

pub const TABLE: &str = "rk3s-hostports";

/// One published port.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Mapping {
    /// `tcp`, `udp` or `sctp`.
    pub protocol: String,
    /// Only this node address (`hostIP`); `None` for all of them.
    pub host_ip: Option<Ipv4Addr>,
    pub host_port: u16,
    pub pod_ip: Ipv4Addr,
    pub container_port: u16,
}

/// The nft script that makes the table hold exactly `mappings`.
pub fn render(mappings: &[Mapping]) -> String {
    let t = format!("ip {TABLE}");
    let mut s = format!(
        "add table {t}\n\
         flush table {t}\n\
         add chain {t} prerouting {{ type nat hook prerouting priority dstnat; policy accept; }}\n\
         add chain {t} output {{ type nat hook output priority -100; policy accept; }}\n\
         add chain {t} postrouting {{ type nat hook postrouting priority srcnat; policy accept; }}\n\
         add chain {t} hostports\n\
         add rule {t} prerouting fib daddr type local jump hostports\n\
         add rule {t} output ip daddr != 127.0.0.0/8 fib daddr type local jump hostports\n"
    );
    let mut sorted: Vec<&Mapping> = mappings.iter().collect();
    sorted.sort();
    sorted.dedup();
    for m in sorted {
        let dst = m
            .host_ip
            .map(|ip| format!("ip daddr {ip} "))
            .unwrap_or_default();
        let _ = writeln!(
            s,
            "add rule {t} hostports {dst}{p} dport {} dnat to {}:{}",
            m.host_port,
            m.pod_ip,
            m.container_port,
            p = m.protocol
        );
        let _ = writeln!(
            s,
            "add rule {t} postrouting ip saddr {ip} ip daddr {ip} {p} dport {} ct status dnat masquerade",
            m.container_port,
            ip = m.pod_ip,
            p = m.protocol
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mappings_become_dnat_rules_with_hairpin_masquerade() {
        let m = |protocol: &str, host_ip: Option<Ipv4Addr>, host_port, ip: [u8; 4], port| Mapping {
            protocol: protocol.into(),
            host_ip,
            host_port,
            pod_ip: Ipv4Addr::from(ip),
            container_port: port,
        };
        let script = render(&[
            m(
                "udp",
                Some(Ipv4Addr::new(192, 168, 1, 5)),
                5353,
                [10, 42, 0, 7],
                53,
            ),
            m("tcp", None, 8080, [10, 42, 0, 5], 80),
            m("tcp", None, 8080, [10, 42, 0, 5], 80),
        ]);
        assert_eq!(
            script,
            "add table ip rk3s-hostports
flush table ip rk3s-hostports
add chain ip rk3s-hostports prerouting { type nat hook prerouting priority dstnat; policy accept; }
add chain ip rk3s-hostports output { type nat hook output priority -100; policy accept; }
add chain ip rk3s-hostports postrouting { type nat hook postrouting priority srcnat; policy accept; }
add chain ip rk3s-hostports hostports
add rule ip rk3s-hostports prerouting fib daddr type local jump hostports
add rule ip rk3s-hostports output ip daddr != 127.0.0.0/8 fib daddr type local jump hostports
add rule ip rk3s-hostports hostports tcp dport 8080 dnat to 10.42.0.5:80
add rule ip rk3s-hostports postrouting ip saddr 10.42.0.5 ip daddr 10.42.0.5 tcp dport 80 ct status dnat masquerade
add rule ip rk3s-hostports hostports ip daddr 192.168.1.5 udp dport 5353 dnat to 10.42.0.7:53
add rule ip rk3s-hostports postrouting ip saddr 10.42.0.7 ip daddr 10.42.0.7 udp dport 53 ct status dnat masquerade
"
        );
        // Nothing published: the chains stay, empty.
        assert!(!render(&[]).contains("dnat"));
    }

    /// The kernel takes the script, twice in a row (the second run replaces the first), in a
    /// network namespace of the test's own.
    #[test]
    fn the_kernel_accepts_the_rules() {
        if !nix::unistd::geteuid().is_root() {
            println!("SKIP: loading nftables rules needs root");
            return;
        }
        let script = render(&[Mapping {
            protocol: "sctp".into(),
            host_ip: Some(Ipv4Addr::new(192, 168, 1, 5)),
            host_port: 9000,
            pod_ip: Ipv4Addr::new(10, 42, 0, 5),
            container_port: 9,
        }]);
        let twice = format!("{script}{script}");
        let mut child = std::process::Command::new("unshare")
            .args(["-n", "nft", "-f", "-"])
            .stdin(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(&mut child.stdin.take().unwrap(), twice.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

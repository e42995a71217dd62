//! Node IPAM's range allocator (upstream's `nodeipam` `RangeAllocator`): the cluster CIDR is cut
//! into per-node blocks (/24 by default, as k3s), each node gets the lowest free one in
//! `spec.podCIDR`, and a deleted node's block is free again. Pure; the node lifecycle
//! controller does the I/O.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// An IPv4 network, `a.b.c.d/len`, with the host bits cleared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    pub base: u32,
    pub len: u8,
}

impl Cidr {
    /// The same range as an `ipnet` network, as the node network and the proxy take it.
    pub fn net(&self) -> Result<ipnet::Ipv4Net, ipnet::PrefixLenError> {
        ipnet::Ipv4Net::new(std::net::Ipv4Addr::from(self.base), self.len)
    }

    pub fn contains(&self, other: &Cidr) -> bool {
        other.len >= self.len && mask(self.len) & other.base == self.base
    }
}

fn mask(len: u8) -> u32 {
    if len == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(len))
    }
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Cidr, String> {
        let (ip, len) = s
            .split_once('/')
            .ok_or_else(|| format!("{s:?} is not a CIDR (expected a.b.c.d/len)"))?;
        let ip: Ipv4Addr = ip
            .parse()
            .map_err(|_| format!("{s:?} is not an IPv4 CIDR"))?;
        let len: u8 = len
            .parse()
            .ok()
            .filter(|l| *l <= 32)
            .ok_or_else(|| format!("{s:?} has an invalid prefix length"))?;
        let base = u32::from(ip);
        if base & !mask(len) != 0 {
            return Err(format!("{s:?} has host bits set"));
        }
        Ok(Cidr { base, len })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", Ipv4Addr::from(self.base), self.len)
    }
}

/// The per-node blocks of a cluster CIDR and which are taken.
#[derive(Clone, Debug)]
pub struct Allocator {
    cluster: Cidr,
    node_len: u8,
    used: Vec<bool>,
}

impl Allocator {
    /// `None` when the node blocks cannot be cut from the cluster CIDR.
    pub fn new(cluster: Cidr, node_len: u8) -> Option<Allocator> {
        if node_len < cluster.len || node_len > 30 || node_len - cluster.len > 16 {
            return None;
        }
        let blocks = 1usize << (node_len - cluster.len);
        Some(Allocator {
            cluster,
            node_len,
            used: vec![false; blocks],
        })
    }

    fn index(&self, block: &Cidr) -> Option<usize> {
        if block.len != self.node_len || !self.cluster.contains(block) {
            return None;
        }
        Some(((block.base - self.cluster.base) >> (32 - u32::from(self.node_len))) as usize)
    }

    fn block(&self, i: usize) -> Cidr {
        Cidr {
            base: self.cluster.base + ((i as u32) << (32 - u32::from(self.node_len))),
            len: self.node_len,
        }
    }

    /// Marks a block a node already has as taken (at start); `false` if it is not one of ours.
    pub fn occupy(&mut self, block: &Cidr) -> bool {
        match self.index(block) {
            Some(i) => {
                self.used[i] = true;
                true
            }
            None => false,
        }
    }

    /// The lowest free block, now taken; `None` when all are taken.
    pub fn allocate(&mut self) -> Option<Cidr> {
        let i = self.used.iter().position(|u| !u)?;
        self.used[i] = true;
        Some(self.block(i))
    }

    pub fn release(&mut self, block: &Cidr) {
        if let Some(i) = self.index(block) {
            self.used[i] = false;
        }
    }

    pub fn free(&self) -> usize {
        self.used.iter().filter(|u| !**u).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cidr(s: &str) -> Cidr {
        s.parse().unwrap()
    }

    #[test]
    fn cuts_the_cluster_cidr_into_node_blocks_lowest_first() {
        let mut a = Allocator::new(cidr("10.42.0.0/16"), 24).unwrap();
        assert_eq!(a.allocate().unwrap().to_string(), "10.42.0.0/24");
        assert!(a.occupy(&cidr("10.42.1.0/24")));
        assert_eq!(a.allocate().unwrap().to_string(), "10.42.2.0/24");
        a.release(&cidr("10.42.0.0/24"));
        assert_eq!(a.allocate().unwrap().to_string(), "10.42.0.0/24");
        // Blocks outside the cluster CIDR or of another size are not ours.
        assert!(!a.occupy(&cidr("10.43.0.0/24")));
        assert!(!a.occupy(&cidr("10.42.0.0/25")));
    }

    #[test]
    fn parsing_rejects_what_is_not_a_clean_cidr() {
        assert!("10.42.0.0".parse::<Cidr>().is_err());
        assert!("10.42.0.1/16".parse::<Cidr>().is_err());
        assert!("10.42.0.0/33".parse::<Cidr>().is_err());
        assert!(Allocator::new(cidr("10.42.0.0/24"), 16).is_none());
    }

    #[test]
    fn exhaustion_is_reported() {
        let mut a = Allocator::new(cidr("10.0.0.0/23"), 24).unwrap();
        assert!(a.allocate().is_some() && a.allocate().is_some());
        assert_eq!(a.allocate(), None);
    }

    proptest! {
        /// Whatever the order of allocations and releases, no block is handed out twice and
        /// every block handed out lies inside the cluster CIDR.
        #[test]
        fn blocks_are_unique_and_inside(ops in proptest::collection::vec(any::<Option<u8>>(), 1..200)) {
            let cluster = cidr("10.42.0.0/20");
            let mut a = Allocator::new(cluster, 24).unwrap();
            let mut held: Vec<Cidr> = Vec::new();
            for op in ops {
                match op {
                    None => match a.allocate() {
                        Some(b) => {
                            prop_assert!(cluster.contains(&b));
                            prop_assert!(!held.contains(&b));
                            held.push(b);
                        }
                        None => prop_assert_eq!(held.len(), 16),
                    },
                    Some(i) if !held.is_empty() => {
                        let b = held.remove(usize::from(i) % held.len());
                        a.release(&b);
                    }
                    Some(_) => {}
                }
                prop_assert_eq!(a.free(), 16 - held.len());
            }
        }
    }
}

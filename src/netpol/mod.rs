//! NetworkPolicy enforcement for the pods of this node (what k3s gets from kube-router's
//! embedded network-policy controller), with nftables: the `netpol*` objects of
//! `table inet rk3s`, which it shares with the service proxy.

pub mod render;

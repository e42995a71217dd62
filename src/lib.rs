//! rk3s: a lightweight, Kubernetes-compatible distribution in one binary.
//!
//! One module per component; see ARCHITECTURE.md for the map and the invariants.

pub mod apiserver;
pub mod cli;
pub mod controllers;
pub mod data_dir;
pub mod dns;
pub mod kubelet;
pub mod leader;
pub mod netpol;
pub mod network;
pub mod pki;
pub mod proxy;
pub mod quota;
pub mod scheduler;
pub mod server;
pub mod store;

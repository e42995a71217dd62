//! The one integration-test binary: real clients (etcdctl, the rk3s binary) against real processes.

mod airgap;
mod arch;
mod cli;
mod controllers;
mod convert;
mod crd;
mod dns;
mod drain;
mod etcdctl;
mod gc;
mod install;
mod jobs;
mod kube_rs;
mod kubectl;
mod netpol;
mod node;
mod python;
mod services;
mod services_ctrl;
mod simnodes;
mod storage;
mod streams;
mod support;
mod top;
mod workloads;
mod workloads_ds_sts;

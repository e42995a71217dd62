//! The one integration-test binary: real clients (etcdctl, the rk3s binary) against real processes.

mod arch;
mod cli;
mod controllers;
mod convert;
mod crd;
mod etcdctl;
mod install;
mod kube_rs;
mod kubectl;
mod python;
mod support;

//! Test support: start rk3s processes, find free ports, run real clients.

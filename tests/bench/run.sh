#!/usr/bin/env bash
# Runs one benchmark: tests/bench/run.sh NAME. Installs what it needs, builds in release mode,
# prints figures and writes target/bench/NAME.json.
set -euo pipefail
cd "$(dirname "$0")/../.."
name="${1:-}"
case "$name" in
  store)
    need=()
    for pkg in protobuf-compiler etcd-server; do
      dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
    done
    if [ "${#need[@]}" -gt 0 ]; then
      apt-get update -qq
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
    fi
    cargo build --release --bin rk3s --example bench-store
    RK3S_BIN=target/release/rk3s target/release/examples/bench-store
    ;;
  api)
    dpkg -s protobuf-compiler >/dev/null 2>&1 || {
      apt-get update -qq
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq protobuf-compiler >/dev/null
    }
    cargo build --release --bin rk3s --example bench-api
    RK3S_BIN=target/release/rk3s target/release/examples/bench-api
    ;;
  control)
    dpkg -s protobuf-compiler >/dev/null 2>&1 || {
      apt-get update -qq
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq protobuf-compiler >/dev/null
    }
    cargo build --release --bin rk3s --example bench-control
    RK3S_BIN=target/release/rk3s target/release/examples/bench-control
    ;;
  node)
    need=()
    for pkg in protobuf-compiler busybox-static runc iproute2 nftables; do
      dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
    done
    if [ "${#need[@]}" -gt 0 ]; then
      apt-get update -qq
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
    fi
    cargo build --release --bin rk3s --example bench-node
    RK3S_BIN=target/release/rk3s target/release/examples/bench-node
    ;;
  services)
    need=()
    for pkg in protobuf-compiler nftables; do
      dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
    done
    if [ "${#need[@]}" -gt 0 ]; then
      apt-get update -qq
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
    fi
    cargo build --release --example bench-services --example bench-dns
    target/release/examples/bench-services
    # The DNS half (in-process, loopback only) adds its keys to the same file.
    target/release/examples/bench-dns
    ;;
  *)
    echo "usage: tests/bench/run.sh NAME (available: store, api, control, node, services)" >&2
    exit 2
    ;;
esac

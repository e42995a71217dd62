#!/usr/bin/env bash
# The one test command (README, CI): installs what the tests need, then runs the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
for pkg in protobuf-compiler etcd-server etcd-client busybox-static docker-registry nftables iproute2 musl-tools; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need_apt+=("$pkg")
done
if [ "${#need_apt[@]}" -gt 0 ]; then
  echo "tests/run.sh: installing ${need_apt[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
# The Python client test (tests/it/python.rs) runs in a venv at target/pyenv holding the
# `kubernetes` package of Kubernetes 1.33, the newest kubectl the suite drives.
py_kubernetes=33.1.0
if ! target/pyenv/bin/python -c "import sys, kubernetes; sys.exit(kubernetes.__version__ != '$py_kubernetes')" 2>/dev/null; then
  echo "tests/run.sh: setting up target/pyenv with kubernetes==$py_kubernetes"
  rm -rf target/pyenv
  mkdir -p target
  if ! python3 -m venv target/pyenv >/dev/null 2>&1; then
    rm -rf target/pyenv
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-venv >/dev/null
    /usr/bin/python3 -m venv target/pyenv
  fi
  target/pyenv/bin/pip install -q --disable-pip-version-check "kubernetes==$py_kubernetes"
fi
if ! cargo nextest --version >/dev/null 2>&1; then
  echo "tests/run.sh: installing cargo-nextest"
  cargo install cargo-nextest --locked
fi
[ "${1:-}" = "--deps-only" ] && exit 0

echo "tests/run.sh: building"
cargo build --all-targets
echo "tests/run.sh: running the suite"
# Every tool is installed now: a test that cannot find one fails instead of skipping.
export RK3S_TESTS_STRICT=1
cargo nextest run --profile ci --all-targets

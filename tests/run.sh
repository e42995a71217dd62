#!/usr/bin/env bash
# The one test command (README, CI): installs what the tests need, then runs the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
for pkg in protobuf-compiler etcd-server etcd-client busybox-static nftables iproute2 musl-tools; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need_apt+=("$pkg")
done
if [ "${#need_apt[@]}" -gt 0 ]; then
  echo "tests/run.sh: installing ${need_apt[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
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

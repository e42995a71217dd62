#!/usr/bin/env bash
# Builds stripped, statically linked rk3s release binaries for Linux x86_64 and aarch64 (musl)
# into dist/rk3s-amd64 and dist/rk3s-arm64, checks them, and records their sizes in
# dist/sizes.txt.
#
#   packaging/build-static.sh [amd64] [arm64]     (default: both)
#
# What it needs, installed when missing (as root, on Debian/Ubuntu):
#   - apt: musl-tools (musl-gcc, the C compiler for SQLite and ring on x86_64), protobuf-compiler
#     (protoc, for etcd-client's generated gRPC code), qemu-user-static (runs the aarch64 binary),
#     etcd-client (etcdctl, for the store round trip), file;
#   - rustup targets x86_64-unknown-linux-musl and aarch64-unknown-linux-musl;
#   - zig (PyPI `ziglang`) and cargo-zigbuild: zig is the C cross compiler and linker for
#     aarch64 musl (Debian's aarch64-linux-gnu-gcc builds SQLite against glibc headers, which
#     then fails to link against musl).
#
# Checks: `file` says static (and stripped) for the right machine; `--version` runs (the aarch64
# one under qemu-aarch64-static); `rk3s datastore` answers an etcdctl put/get and stops cleanly
# on SIGTERM. Uses $CARGO_TARGET_DIR (default: target/ of this source tree).
set -euo pipefail

cd "$(dirname "$0")/.."
SRC=$(pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$SRC/target}
DIST=$SRC/dist

log() { echo "build-static.sh: $*"; }
die() {
  echo "build-static.sh: error: $*" >&2
  exit 1
}

arches=()
for a in "$@"; do
  case "$a" in
    amd64 | arm64) arches+=("$a") ;;
    -h | --help)
      sed -n '2,20s/^# \{0,1\}//p' "$0"
      exit 0
      ;;
    *) die "unknown argument '$a' (usage: $0 [amd64] [arm64])" ;;
  esac
done
[ "${#arches[@]}" -gt 0 ] || arches=(amd64 arm64)

triple() {
  case "$1" in
    amd64) echo x86_64-unknown-linux-musl ;;
    arm64) echo aarch64-unknown-linux-musl ;;
  esac
}

want() {
  local a
  for a in "${arches[@]}"; do [ "$a" = "$1" ] && return 0; done
  return 1
}

# ---- tools -----------------------------------------------------------------------------------
need_apt=()
command -v protoc >/dev/null || need_apt+=(protobuf-compiler)
command -v file >/dev/null || need_apt+=(file)
command -v etcdctl >/dev/null || need_apt+=(etcd-client)
if want amd64; then command -v musl-gcc >/dev/null || need_apt+=(musl-tools); fi
if want arm64; then command -v qemu-aarch64-static >/dev/null || need_apt+=(qemu-user-static); fi
if [ "${#need_apt[@]}" -gt 0 ]; then
  command -v apt-get >/dev/null || die "missing tools and no apt-get: install ${need_apt[*]}"
  log "installing ${need_apt[*]} (apt)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

command -v cargo >/dev/null || die "cargo is not installed (https://rustup.rs)"
command -v rustup >/dev/null || die "rustup is needed to add the musl targets"
installed_targets=$(rustup target list --installed)
for a in "${arches[@]}"; do
  t=$(triple "$a")
  if ! grep -qx "$t" <<<"$installed_targets"; then
    log "adding the rust target $t"
    rustup target add "$t"
  fi
done

if want arm64; then
  # cargo-zigbuild finds zig on PATH or as `python3 -m ziglang` (the PyPI package).
  if ! command -v zig >/dev/null && ! python3 -m ziglang version >/dev/null 2>&1; then
    log "installing zig (pip install ziglang)"
    python3 -m pip install --quiet ziglang 2>/dev/null ||
      python3 -m pip install --quiet --break-system-packages ziglang ||
      die "pip install ziglang failed"
  fi
  if ! command -v cargo-zigbuild >/dev/null; then
    log "installing cargo-zigbuild (cargo install; a few minutes)"
    cargo install cargo-zigbuild --locked
  fi
fi

# ---- build -----------------------------------------------------------------------------------
mkdir -p "$DIST"
declare -A seconds=()
for a in "${arches[@]}"; do
  t=$(triple "$a")
  log "building $t (release profile: opt-level 3, fat LTO, stripped)"
  start=$(date +%s)
  case "$a" in
    amd64)
      # Rust links musl itself (self-contained); only the C parts need musl-gcc.
      CC_x86_64_unknown_linux_musl=musl-gcc \
        cargo build --release --locked --bin rk3s --target "$t"
      ;;
    arm64)
      cargo zigbuild --release --locked --bin rk3s --target "$t"
      ;;
  esac
  seconds[$a]=$(($(date +%s) - start))
  cp "$CARGO_TARGET_DIR/$t/release/rk3s" "$DIST/rk3s-$a.tmp"
  mv "$DIST/rk3s-$a.tmp" "$DIST/rk3s-$a"
  log "built dist/rk3s-$a in ${seconds[$a]} s"
done

# ---- checks ----------------------------------------------------------------------------------
check_file() {
  local bin=$1 machine=$2 desc
  desc=$(file -b "$bin")
  grep -qE 'statically linked|static-pie linked' <<<"$desc" || die "$bin is not static: $desc"
  grep -q "$machine" <<<"$desc" || die "$bin is not a $machine binary: $desc"
  grep -q ', stripped' <<<"$desc" || die "$bin is not stripped: $desc"
  log "$(basename "$bin"): $desc"
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

tmp=$(mktemp -d)
store_pid=
cleanup() {
  if [ -n "$store_pid" ]; then kill -KILL "$store_pid" 2>/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT

# Starts `rk3s datastore` on a fresh SQLite file (under the runner given first, if any), puts
# and gets a key with etcdctl, then stops it with SIGTERM and expects exit code 0.
store_round_trip() {
  local name=$1 dir port endpoint i value rc
  shift
  dir=$tmp/$name
  mkdir -p "$dir"
  port=$(free_port)
  endpoint=http://127.0.0.1:$port
  "$@" --config /dev/null datastore --endpoint "sqlite://$dir/state.db" --listen "$endpoint" \
    >"$dir/log" 2>&1 &
  store_pid=$!
  local ctl=(env ETCDCTL_API=3 etcdctl --endpoints "$endpoint" --dial-timeout 2s --command-timeout 10s)
  for ((i = 0; i < 600; i++)); do
    kill -0 "$store_pid" 2>/dev/null || die "$name datastore exited at start: $(tail -n 5 "$dir/log")"
    "${ctl[@]}" get probe >/dev/null 2>&1 && break
    sleep 0.1
  done
  [ "$i" -lt 600 ] || die "$name datastore did not answer within 60 s: $(tail -n 5 "$dir/log")"
  "${ctl[@]}" put build-static "$name" >/dev/null || die "$name: etcdctl put failed"
  value=$("${ctl[@]}" get build-static --print-value-only) || die "$name: etcdctl get failed"
  [ "$value" = "$name" ] || die "$name: etcdctl get returned '$value', not '$name'"
  kill -TERM "$store_pid"
  rc=0
  wait "$store_pid" || rc=$?
  store_pid=
  [ "$rc" = 0 ] || die "$name datastore exited with $rc on SIGTERM: $(tail -n 5 "$dir/log")"
  log "$name: datastore put/get through etcdctl OK, clean exit on SIGTERM"
}

version=
for a in "${arches[@]}"; do
  bin=$DIST/rk3s-$a
  case "$a" in
    amd64)
      check_file "$bin" x86-64
      version=$("$bin" --version)
      log "rk3s-amd64 --version: $version"
      store_round_trip rk3s-amd64 "$bin"
      ;;
    arm64)
      check_file "$bin" 'ARM aarch64'
      version=$(qemu-aarch64-static "$bin" --version)
      log "rk3s-arm64 --version (under qemu-aarch64-static): $version"
      store_round_trip rk3s-arm64 qemu-aarch64-static "$bin"
      ;;
  esac
done

# ---- sizes -----------------------------------------------------------------------------------
{
  echo "# rk3s static binaries ($version), $(date -u '+%Y-%m-%d'), git $(git -C "$SRC" describe --always --dirty 2>/dev/null || echo unknown)"
  echo "# name bytes MiB build-seconds"
  for a in amd64 arm64; do
    [ -f "$DIST/rk3s-$a" ] || continue
    bytes=$(stat -c %s "$DIST/rk3s-$a")
    awk -v n="rk3s-$a" -v b="$bytes" -v s="${seconds[$a]:--}" \
      'BEGIN { printf "%s %d %.2f %s\n", n, b, b / 1048576, s }'
  done
} >"$DIST/sizes.txt"
log "sizes (dist/sizes.txt):"
grep -v '^#' "$DIST/sizes.txt" | while read -r n b m s; do
  log "  $n: $b bytes ($m MiB), built in $s s"
done

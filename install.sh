#!/bin/sh
# Installs rk3s on this machine and starts `rk3s server`.
#
#   sudo ./install.sh [server] [SERVER FLAGS...]
#
# The binary comes from $INSTALL_RK3S_BIN, else a `rk3s` file next to this script, else it is
# built from the source tree this script sits in (`cargo build --release`; protoc is installed
# with apt if it is missing). It is installed as /usr/local/bin/rk3s.
#
# Server flags come from $INSTALL_RK3S_EXEC (split on blanks) followed by this script's
# arguments; RK3S_* environment variables reach the server too. Give the same flags every time:
# a re-run starts the server with the flags of that run.
#
# With systemd running, systemd/rk3s.service is installed, enabled and (re)started. Otherwise
# the server runs in the background (its own session) with /run/rk3s.pid and /var/log/rk3s.log,
# and the script waits until it serves <data-dir>/server/etcd.sock.
#
# Running the script again installs the new binary and restarts the server (stopping the old
# one with SIGTERM first). /usr/local/bin/rk3s-uninstall.sh undoes all of it; add --purge to
# also delete the data dir.
#
# INSTALL_RK3S_ROOT=/some/dir installs under that directory instead of / (bin, run, log, etc
# and the default data dir all go below it, and systemd is left alone), so tests can install
# without touching a real installation.
set -eu

info() { echo "install.sh: $*"; }
fatal() {
    echo "install.sh: error: $*" >&2
    exit 1
}

# Quotes a string for sh: 'it'\''s'.
sh_quote() {
    printf "'%s'" "$(printf '%s' "$1" | sed "s/'/'\\\\''/g")"
}

[ "$(id -u)" = 0 ] || fatal "must run as root (try: sudo $0)"
SRC_DIR=$(cd "$(dirname "$0")" && pwd)

# ---- where things go -------------------------------------------------------------------------
ROOT=${INSTALL_RK3S_ROOT:-/}
case "$ROOT" in
    /*) ;;
    *) fatal "INSTALL_RK3S_ROOT must be an absolute path, got '$ROOT'" ;;
esac
if [ "$ROOT" != / ]; then
    mkdir -p "$ROOT" || fatal "cannot create INSTALL_RK3S_ROOT=$ROOT"
    ROOT=$(cd "$ROOT" && pwd -P)
fi
[ "$ROOT" = / ] && R= || R=$ROOT # R prefixes every absolute path below

BIN_DIR=$R/usr/local/bin
BIN=$BIN_DIR/rk3s
UNINSTALL=$BIN_DIR/rk3s-uninstall.sh
ETC_DIR=$R/etc/rk3s
# The admin kubeconfig `rk3s server` writes once its API answers (--write-kubeconfig).
KUBECONFIG_FILE=$ETC_DIR/rk3s.yaml
UNIT_DIR=$R/etc/systemd/system
UNIT=$UNIT_DIR/rk3s.service
UNIT_ENV=$UNIT_DIR/rk3s.service.env
PID_FILE=$R/run/rk3s.pid
LOG_FILE=$R/var/log/rk3s.log

# ---- server command line ---------------------------------------------------------------------
set -f # no globbing while splitting INSTALL_RK3S_EXEC
# shellcheck disable=SC2086 # splitting INSTALL_RK3S_EXEC into words is the point
set -- ${INSTALL_RK3S_EXEC:-} "$@"
set +f
CMD=server
if [ $# -gt 0 ]; then
    case "$1" in
        server) shift ;;
        agent) fatal "rk3s agent is not built yet; only 'server' can be installed" ;;
    esac
fi

# The server's config file and data dir, found the way rk3s finds them (flag > RK3S_* > file >
# default), because the data dir decides where the etcd socket appears.
flag_data_dir=
flag_config=
flag_kubeconfig=
prev=
for a in "$@"; do
    case "$prev" in
        --data-dir) flag_data_dir=$a ;;
        --config) flag_config=$a ;;
        --write-kubeconfig) flag_kubeconfig=$a ;;
    esac
    case "$a" in
        --data-dir=*) flag_data_dir=${a#--data-dir=} ;;
        --config=*) flag_config=${a#--config=} ;;
        --write-kubeconfig=*) flag_kubeconfig=${a#--write-kubeconfig=} ;;
    esac
    prev=$a
done
CONFIG=${flag_config:-${RK3S_CONFIG_FILE:-}}
if [ -z "$CONFIG" ]; then
    CONFIG=$ETC_DIR/config.yaml
    if [ -n "$R" ]; then
        # Keep the host's /etc/rk3s/config.yaml out of an install under INSTALL_RK3S_ROOT. rk3s
        # rejects a missing file that is named explicitly, and /dev/null reads as empty.
        [ -f "$CONFIG" ] || CONFIG=/dev/null
        set -- "$@" "--config=$CONFIG"
    fi
fi
# The value of a top-level `KEY: value` in the config file (optionally quoted, optionally
# followed by a comment), empty when the file or the key is missing.
config_value() {
    [ -f "$CONFIG" ] || return 0
    sed -n \
        -e "s/^$1:[[:space:]]*\"\([^\"]*\)\".*/\1/p" \
        -e "s/^$1:[[:space:]]*'\([^']*\)'.*/\1/p" \
        -e "s/^$1:[[:space:]]*\([^\"'#[:space:]][^#[:space:]]*\).*/\1/p" \
        "$CONFIG" | tail -n 1
}
file_data_dir=$(config_value data-dir)
DATA_DIR=${flag_data_dir:-${RK3S_DATA_DIR:-$file_data_dir}}
if [ -z "$DATA_DIR" ]; then
    DATA_DIR=$R/var/lib/rk3s
    [ -z "$R" ] || set -- "$@" "--data-dir=$DATA_DIR"
fi
case "$DATA_DIR" in
    /*) ;;
    *) fatal "--data-dir must be an absolute path, got '$DATA_DIR'" ;;
esac
SOCKET=$DATA_DIR/server/etcd.sock

# Where the server writes the kubeconfig: the flag, RK3S_KUBECONFIG_OUTPUT, the config file's
# write-kubeconfig, else /etc/rk3s/rk3s.yaml (below INSTALL_RK3S_ROOT when it is set).
file_kubeconfig=$(config_value write-kubeconfig)
KUBECONFIG_OUT=${flag_kubeconfig:-${RK3S_KUBECONFIG_OUTPUT:-$file_kubeconfig}}
if [ -z "$KUBECONFIG_OUT" ]; then
    KUBECONFIG_OUT=$KUBECONFIG_FILE
    [ -z "$R" ] || set -- "$@" "--write-kubeconfig=$KUBECONFIG_OUT"
fi

# ---- the binary ------------------------------------------------------------------------------
ensure_protoc() {
    command -v protoc >/dev/null 2>&1 && return 0
    command -v apt-get >/dev/null 2>&1 ||
        fatal "building rk3s needs protoc: install the protobuf compiler and re-run"
    info "installing protobuf-compiler (needed to build rk3s)"
    apt-get update -qq </dev/null >/dev/null || fatal "apt-get update failed"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq protobuf-compiler </dev/null >/dev/null ||
        fatal "apt-get install protobuf-compiler failed"
}

find_cargo() {
    if command -v cargo >/dev/null 2>&1; then
        command -v cargo
    elif [ -x "${HOME:-/root}/.cargo/bin/cargo" ]; then
        echo "${HOME:-/root}/.cargo/bin/cargo"
    else
        return 1
    fi
}

if [ -n "${INSTALL_RK3S_BIN:-}" ]; then
    NEW_BIN=$INSTALL_RK3S_BIN
    [ -f "$NEW_BIN" ] || fatal "INSTALL_RK3S_BIN=$NEW_BIN does not exist"
elif [ -f "$SRC_DIR/rk3s" ]; then
    NEW_BIN=$SRC_DIR/rk3s
elif [ -f "$SRC_DIR/Cargo.toml" ]; then
    CARGO=$(find_cargo) ||
        fatal "no rk3s binary next to install.sh and no cargo to build one (set INSTALL_RK3S_BIN)"
    ensure_protoc
    info "building rk3s in $SRC_DIR (cargo build --release; this takes several minutes)"
    (cd "$SRC_DIR" && "$CARGO" build --release --locked --bin rk3s </dev/null) ||
        fatal "cargo build --release failed (see the output above)"
    target_dir=${CARGO_TARGET_DIR:-$SRC_DIR/target}
    NEW_BIN=$target_dir/release/rk3s
else
    fatal "no rk3s binary found: set INSTALL_RK3S_BIN or put rk3s next to install.sh"
fi

# ---- stopping a server -----------------------------------------------------------------------
# This function is also copied into rk3s-uninstall.sh, so it uses only $BIN and $PID_FILE.
STOP_FN=$(
    cat <<'EOF'
# Whether process $1 is running (a zombie that nobody reaped yet has stopped).
alive() {
    [ -e "/proc/$1" ] && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null
}

# Stops the rk3s recorded in $PID_FILE (only if that pid really runs $BIN): SIGTERM, then up to
# 30 s for it to exit (rk3s needs about 3 s), then SIGKILL. Removes the pid file.
stop_pidfile_server() {
    [ -f "$PID_FILE" ] || return 0
    pid=$(cat "$PID_FILE" 2>/dev/null || true)
    case "$pid" in
        '' | *[!0-9]*) pid= ;;
    esac
    exe=
    [ -z "$pid" ] || exe=$(readlink "/proc/$pid/exe" 2>/dev/null || true)
    # A replaced binary shows up as "/usr/local/bin/rk3s (deleted)".
    if [ -n "$exe" ] && { [ "$exe" = "$BIN" ] || [ "$exe" = "$BIN (deleted)" ]; }; then
        echo "$(basename "$0"): stopping rk3s (pid $pid)"
        kill -TERM "$pid" 2>/dev/null || true
        i=0
        while alive "$pid" && [ $i -lt 300 ]; do
            sleep 0.1
            i=$((i + 1))
        done
        if alive "$pid"; then
            echo "$(basename "$0"): rk3s (pid $pid) did not stop within 30 s; killing it"
            kill -KILL "$pid" 2>/dev/null || true
            while alive "$pid"; do sleep 0.1; done
        fi
    fi
    rm -f "$PID_FILE"
}
EOF
)
eval "$STOP_FN"

SYSTEMD=0
if [ -z "$R" ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
    SYSTEMD=1
fi

# Quotes one argument for a systemd ExecStart= line.
systemd_quote() {
    printf '"%s"' "$(printf '%s' "$1" | sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e 's/%/%%/g' -e 's/\$/$$/g')"
}

install_unit() {
    [ -f "$SRC_DIR/systemd/rk3s.service" ] ||
        fatal "systemd/rk3s.service not found next to install.sh"
    mkdir -p "$UNIT_DIR"
    exec_line="ExecStart=$BIN $CMD"
    for a in "$@"; do
        exec_line="$exec_line $(systemd_quote "$a")"
    done
    # The replacement goes through sed: escape its special characters (\, & and the | delimiter).
    exec_sed=$(printf '%s' "$exec_line" | sed -e 's/[\\&|]/\\&/g')
    sed -e "s|^ExecStart=.*|$exec_sed|" "$SRC_DIR/systemd/rk3s.service" >"$UNIT.tmp"
    mv "$UNIT.tmp" "$UNIT"
    # RK3S_* variables of this run, for the service (values double-quoted for systemd).
    (
        umask 077
        env | sed -n 's/^\(RK3S_[A-Za-z0-9_]*\)=.*/\1/p' | sort -u | while read -r name; do
            eval "value=\${$name}"
            # shellcheck disable=SC2154 # value is set by the eval above
            printf '%s="%s"\n' "$name" "$(printf '%s' "$value" | sed -e 's/\\/\\\\/g' -e 's/"/\\"/g')"
        done >"$UNIT_ENV.tmp"
        mv "$UNIT_ENV.tmp" "$UNIT_ENV"
    )
    info "installed $UNIT"
}

# ---- the uninstaller -------------------------------------------------------------------------
write_uninstall() {
    {
        echo '#!/bin/sh'
        echo '# Written by rk3s install.sh: stops rk3s and removes what install.sh installed.'
        echo '#   rk3s-uninstall.sh [--purge]    (--purge also deletes the data dir)'
        echo 'set -eu'
        echo "BIN=$(sh_quote "$BIN")"
        echo "UNINSTALL=$(sh_quote "$UNINSTALL")"
        echo "ETC_DIR=$(sh_quote "$ETC_DIR")"
        echo "ETC_CREATED=$ETC_CREATED"
        echo "KUBECONFIG_FILE=$(sh_quote "$KUBECONFIG_OUT")"
        echo "UNIT=$(sh_quote "$UNIT")"
        echo "UNIT_ENV=$(sh_quote "$UNIT_ENV")"
        echo "PID_FILE=$(sh_quote "$PID_FILE")"
        echo "LOG_FILE=$(sh_quote "$LOG_FILE")"
        echo "DATA_DIR=$(sh_quote "$DATA_DIR")"
        echo "SYSTEMD=$SYSTEMD"
        # Only a real installation (not one under INSTALL_RK3S_ROOT) owns the machine's
        # containers and network setup.
        [ "$ROOT" = / ] && echo "KILLALL=1" || echo "KILLALL=0"
        echo
        printf '%s\n' "$STOP_FN"
        cat <<'EOF'

say() { echo "rk3s-uninstall.sh: $*"; }
purge=0
for a in "$@"; do
    case "$a" in
        --purge) purge=1 ;;
        -h | --help)
            echo "usage: rk3s-uninstall.sh [--purge]  (--purge also deletes $DATA_DIR)"
            exit 0
            ;;
        *)
            echo "rk3s-uninstall.sh: error: unknown argument '$a' (usage: rk3s-uninstall.sh [--purge])" >&2
            exit 2
            ;;
    esac
done
[ "$(id -u)" = 0 ] || {
    echo "rk3s-uninstall.sh: error: must run as root" >&2
    exit 1
}

if [ "$SYSTEMD" = 1 ] && [ -f "$UNIT" ] && command -v systemctl >/dev/null 2>&1; then
    say "stopping and disabling rk3s.service"
    systemctl disable --now rk3s.service >/dev/null 2>&1 || true
fi
stop_pidfile_server
# Containers outlive the server by design: stop them and remove the network setup and mounts
# (this also keeps --purge from descending into a container's mounted root filesystem).
if [ "$KILLALL" = 1 ] && [ -x "$BIN" ]; then
    say "stopping containers and removing rk3s's network setup (rk3s killall)"
    "$BIN" --data-dir "$DATA_DIR" killall || say "rk3s killall reported errors (see above)"
fi
rm -f "$UNIT" "$UNIT_ENV" "$LOG_FILE" "$BIN" "$KUBECONFIG_FILE"
if [ "$SYSTEMD" = 1 ] && command -v systemctl >/dev/null 2>&1; then
    systemctl daemon-reload >/dev/null 2>&1 || true
fi

# /etc/rk3s goes only if install.sh created it, and with files of the user's own in it (a
# config.yaml, registries.yaml) only with --purge.
if [ "$ETC_CREATED" = 1 ] && [ -d "$ETC_DIR" ]; then
    if [ $purge = 1 ]; then
        rm -rf "$ETC_DIR"
    elif ! rmdir "$ETC_DIR" 2>/dev/null; then
        say "kept $ETC_DIR: it has files of yours (use --purge to delete it)"
    fi
fi

if [ $purge = 1 ]; then
    case "$DATA_DIR" in
        / | /bin | /boot | /dev | /etc | /home | /lib | /opt | /proc | /root | /run | /sbin | /srv | \
            /sys | /tmp | /usr | /usr/* | /var | /var/lib | /var/log)
            echo "rk3s-uninstall.sh: error: refusing to delete data dir '$DATA_DIR'" >&2
            exit 1
            ;;
    esac
    if [ -e "$DATA_DIR" ]; then
        say "deleting the data dir $DATA_DIR"
        rm -rf "$DATA_DIR"
    fi
elif [ -e "$DATA_DIR" ]; then
    say "kept the data dir $DATA_DIR (use --purge to delete it)"
fi
rm -f "$UNINSTALL"
say "rk3s is uninstalled"
EOF
    } >"$UNINSTALL.tmp"
    chmod 0755 "$UNINSTALL.tmp"
    mv "$UNINSTALL.tmp" "$UNINSTALL"
    info "installed $UNINSTALL"
}

# ---- waiting for the server ------------------------------------------------------------------
# Waits up to 60 s until the server has (re)written its kubeconfig, which it does once the API
# answers, newer than the file $1, while the process $2 (if given) is alive. Returns 1 if it
# dies or the time runs out.
wait_ready() {
    i=0
    while [ $i -lt 600 ]; do
        if [ -n "${2:-}" ] && ! alive "$2"; then
            return 1
        fi
        if [ -S "$SOCKET" ] && [ -f "$KUBECONFIG_OUT" ] &&
            [ -n "$(find "$KUBECONFIG_OUT" -newer "$1" 2>/dev/null)" ]; then
            # Still alive a moment after it started listening (no crash right after bind)?
            sleep 0.2
            [ -z "${2:-}" ] || alive "$2" || return 1
            return 0
        fi
        sleep 0.1
        i=$((i + 1))
    done
    return 1
}

# ---- install ---------------------------------------------------------------------------------
mkdir -p "$BIN_DIR"
# Copy, check, then rename over the old binary, which may be running ("text file busy" if it
# were overwritten in place).
cp "$NEW_BIN" "$BIN.tmp" || fatal "cannot copy $NEW_BIN to $BIN_DIR"
chmod 0755 "$BIN.tmp"
version=$("$BIN.tmp" --version 2>&1) || version=
case "$version" in
    "rk3s version "*) ;;
    *)
        rm -f "$BIN.tmp"
        fatal "$NEW_BIN is not an rk3s binary for this machine (\`rk3s --version\` failed)"
        ;;
esac
mv "$BIN.tmp" "$BIN"
info "installed $BIN from $NEW_BIN ($version)"

# /etc/rk3s holds config.yaml, registries.yaml and the kubeconfig. Whether install.sh created it
# is remembered across re-runs in the uninstaller, which removes it only in that case.
ETC_CREATED=0
if [ ! -d "$ETC_DIR" ]; then
    mkdir -p "$ETC_DIR"
    ETC_CREATED=1
elif [ -f "$UNINSTALL" ] && grep -q '^ETC_CREATED=1$' "$UNINSTALL"; then
    ETC_CREATED=1
fi
write_uninstall

marker=$(mktemp)
trap 'rm -f "$marker"' EXIT
if [ "$SYSTEMD" = 1 ]; then
    stop_pidfile_server # a background server from an earlier install without systemd
    install_unit "$@"
    systemctl daemon-reload
    systemctl enable rk3s.service >/dev/null 2>&1 || fatal "systemctl enable rk3s.service failed"
    info "starting rk3s.service"
    systemctl restart rk3s.service || fatal "systemctl restart rk3s.service failed"
    if ! wait_ready "$marker"; then
        echo "install.sh: error: rk3s did not write $KUBECONFIG_OUT within 60 s; the end of its journal:" >&2
        journalctl -u rk3s.service -n 20 --no-pager >&2 || true
        exit 1
    fi
    info "rk3s is running (systemctl status rk3s); logs: journalctl -u rk3s -f"
else
    stop_pidfile_server
    [ -z "$R" ] || info "installing under INSTALL_RK3S_ROOT=$ROOT (systemd is not used)"
    mkdir -p "$(dirname "$LOG_FILE")" "$(dirname "$PID_FILE")"
    cmdline="$BIN $CMD${*:+ $*}"
    echo "---- install.sh: $(date -u '+%Y-%m-%dT%H:%M:%SZ') starting $cmdline" >>"$LOG_FILE"
    info "starting $cmdline in the background"
    # setsid: a session of its own, so it outlives this shell and its terminal (nohup: and
    # ignores SIGHUP). cd /: it must not keep the directory install.sh ran in busy.
    (cd / && exec nohup setsid "$BIN" "$CMD" "$@" >>"$LOG_FILE" 2>&1 </dev/null) &
    pid=$!
    echo "$pid" >"$PID_FILE"
    if ! wait_ready "$marker" "$pid"; then
        if alive "$pid"; then
            kill -TERM "$pid" 2>/dev/null || true
            msg="rk3s did not write $KUBECONFIG_OUT within 60 s"
        else
            msg="rk3s exited at start"
        fi
        rm -f "$PID_FILE"
        echo "install.sh: error: $msg; the end of $LOG_FILE:" >&2
        tail -n 20 "$LOG_FILE" >&2 || true
        exit 1
    fi
    info "rk3s is running (pid $pid, $PID_FILE); logs: $LOG_FILE"
fi

info "kubeconfig: $KUBECONFIG_OUT (try: KUBECONFIG=$KUBECONFIG_OUT kubectl get namespaces)"
info "etcd API: ETCDCTL_API=3 etcdctl --endpoints unix://$SOCKET get --prefix /"
info "uninstall with $UNINSTALL (add --purge to delete $DATA_DIR)"

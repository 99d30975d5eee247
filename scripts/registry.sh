#!/usr/bin/env bash
# Run a throwaway OCI distribution registry (Debian's docker-registry, i.e.
# distribution 2.8) on a free loopback port, for tests.
#
#   scripts/registry.sh start DIR [--htpasswd FILE] [--tls CERT KEY] [--proxy URL]
#       Writes DIR/config.yml, stores blobs under DIR/data, logs (including the
#       HTTP access log) to DIR/registry.log, writes DIR/addr (127.0.0.1:PORT)
#       and DIR/pid, prints the address on stdout and returns while the
#       registry keeps running in the background.
#   scripts/registry.sh stop DIR
#       Stops the registry started in DIR (no-op if it is not running).
#
# Options for start:
#   --htpasswd FILE  basic auth (bcrypt entries: `htpasswd -Bbn USER PASS`)
#   --tls CERT KEY   serve HTTPS with this certificate/key pair
#   --proxy URL      make this registry a pull-through cache of URL
#                    (distribution then refuses pushes)

set -euo pipefail

die() { echo "registry.sh: $*" >&2; exit 1; }

need() { # need CMD PACKAGE: fail early with the apt package to install
    command -v "$1" >/dev/null 2>&1 || die "'$1' not found; install it with: apt-get install -y $2"
}

usage() {
    # The header comment (up to the first blank line) is the help text.
    awk 'NR > 1 && /^$/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0" >&2
    exit 2
}

# Is PID a live docker-registry process? Guards against killing a recycled pid.
is_registry_pid() {
    local pid=$1
    [[ -n $pid && -r /proc/$pid/cmdline ]] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q 'docker-registry'
}

free_port() {
    # Bind port 0 and let the kernel pick; there is a small race between
    # closing this socket and the registry binding it, which start() covers
    # by retrying with a new port.
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

cmd_start() {
    [[ $# -ge 1 ]] || usage
    local dir=$1; shift
    local htpasswd="" tls_cert="" tls_key="" proxy=""
    while [[ $# -gt 0 ]]; do
        case $1 in
            --htpasswd) [[ $# -ge 2 ]] || usage; htpasswd=$(realpath -m "$2"); shift 2 ;;
            --tls) [[ $# -ge 3 ]] || usage; tls_cert=$(realpath "$2"); tls_key=$(realpath "$3"); shift 3 ;;
            --proxy) [[ $# -ge 2 ]] || usage; proxy=$2; shift 2 ;;
            *) die "unknown option: $1" ;;
        esac
    done

    need docker-registry docker-registry
    need curl curl
    need python3 python3

    mkdir -p "$dir"
    dir=$(realpath "$dir")
    if [[ -f $dir/pid ]] && is_registry_pid "$(cat "$dir/pid")"; then
        die "a registry is already running for $dir (pid $(cat "$dir/pid")); stop it first"
    fi
    rm -f "$dir/addr" "$dir/pid"
    mkdir -p "$dir/data"

    local scheme=http curl_tls=()
    if [[ -n $tls_cert ]]; then scheme=https; curl_tls=(-k); fi

    local attempt port pid code deadline
    for attempt in 1 2 3; do
        port=$(free_port)
        write_config "$dir" "$port" "$htpasswd" "$tls_cert" "$tls_key" "$proxy"

        # setsid: own session, so the caller's Ctrl-C / process-group kill does
        # not take it down; all fds redirected so `$(registry.sh start ...)`
        # does not wait for the registry's stdout to close. In a non-interactive
        # shell the background child is not a group leader, so setsid execs in
        # place and $! is the registry's own pid.
        setsid docker-registry serve "$dir/config.yml" \
            </dev/null >>"$dir/registry.log" 2>&1 &
        pid=$!
        disown "$pid" 2>/dev/null || true

        # Ready = /v2/ answers. With auth on, an unauthenticated probe gets 401,
        # which also proves the server is up.
        deadline=$((SECONDS + 30))
        while ((SECONDS < deadline)); do
            if ! kill -0 "$pid" 2>/dev/null; then
                break # exited: most likely lost the port race; retry
            fi
            code=$(curl -s "${curl_tls[@]}" -o /dev/null -w '%{http_code}' --max-time 2 \
                "$scheme://127.0.0.1:$port/v2/" || true)
            if [[ $code == 200 || ( -n $htpasswd && $code == 401 ) ]]; then
                echo "127.0.0.1:$port" >"$dir/addr"
                echo "$pid" >"$dir/pid"
                echo "127.0.0.1:$port"
                return 0
            fi
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            kill "$pid" 2>/dev/null || true
            die "registry did not answer on $scheme://127.0.0.1:$port/v2/ within 30 s; see $dir/registry.log"
        fi
        echo "registry.sh: registry exited during start (attempt $attempt), retrying" >&2
    done
    die "registry failed to start; last lines of $dir/registry.log:
$(tail -n 20 "$dir/registry.log")"
}

write_config() {
    local dir=$1 port=$2 htpasswd=$3 tls_cert=$4 tls_key=$5 proxy=$6
    {
        cat <<EOF
version: 0.1
log:
  level: warn
  # The access log (one combined-log-format line per request, written to
  # stdout, hence registry.log) lets tests count e.g. blob GETs.
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: $dir/data
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$port
  # Without a fixed secret the registry picks a random one and warns.
  secret: imgsvc-test-$port
EOF
        if [[ -n $tls_cert ]]; then
            cat <<EOF
  tls:
    certificate: $tls_cert
    key: $tls_key
EOF
        fi
        if [[ -n $htpasswd ]]; then
            cat <<EOF
auth:
  htpasswd:
    realm: imgsvc-test
    path: $htpasswd
EOF
        fi
        if [[ -n $proxy ]]; then
            cat <<EOF
proxy:
  remoteurl: $proxy
EOF
        fi
    } >"$dir/config.yml"
}

cmd_stop() {
    [[ $# -eq 1 ]] || usage
    local dir=$1 pid i
    [[ -f $dir/pid ]] || return 0
    pid=$(cat "$dir/pid")
    if is_registry_pid "$pid"; then
        kill "$pid" 2>/dev/null || true
        for ((i = 0; i < 50; i++)); do
            is_registry_pid "$pid" || break
            sleep 0.1
        done
        if is_registry_pid "$pid"; then
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    rm -f "$dir/pid" "$dir/addr"
}

[[ $# -ge 1 ]] || usage
sub=$1; shift
case $sub in
    start) cmd_start "$@" ;;
    stop) cmd_stop "$@" ;;
    -h|--help|help) usage ;;
    *) usage ;;
esac

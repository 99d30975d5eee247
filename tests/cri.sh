#!/usr/bin/env bash
# `imgsvc serve` (the CRI image service on a unix socket) against the real
# crictl and critest, the real registry, and a TLS registry of our own.
#
#   tests/cri.sh
#
# Builds the release binary (a no-op after scripts/test's build) and installs
# what is missing: the Debian packages it uses (apt-get, as root or with sudo)
# and crictl and critest v1.37.0 (with Go, into /usr/local/bin). Registry:
# $IMGSVC_TEST_REGISTRY (host:port, fixtures pushed), else one is started here
# and scripts/fixtures.sh pushes the fixtures. critest's images keep their upstream names
# (gcr.io/..., registry.k8s.io/..., k8s.gcr.io/...): the daemon's own
# registries.conf makes a local TLS registry their mirror, as an air-gapped
# node would be set up. The daemon reads no file of this machine's
# /etc/containers.
#
# Prints PASS/FAIL per check, critest's and cargo test's own summaries, and
# ends with "N passed, M failed"; exits non-zero on any failure. Set
# KEEP_TMP=1 to keep the work directory (it is kept anyway on failure).

set -uo pipefail
export PATH="$HOME/.cargo/bin:/usr/local/go/bin:$PATH"

CRI_TOOLS_VERSION=v1.37.0
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=$ROOT/target/release/imgsvc
T=$(mktemp -d /tmp/imgsvc-cri.XXXXXX)
PASSED=0
FAILED=0
DAEMON_PID=""
FORWARD_PIDS=()
OWN_REGISTRIES=()

log() { echo "cri.sh: $*" >&2; }
die() {
    echo "cri.sh: error: $*" >&2
    FAILED=$((FAILED + 1))
    exit 1
}
pass() {
    echo "PASS: $1"
    PASSED=$((PASSED + 1))
}
fail() {
    echo "FAIL: $1"
    shift
    local line
    for line in "$@"; do echo "      $line"; done
    FAILED=$((FAILED + 1))
}
expect_eq() { # NAME ACTUAL EXPECTED
    if [[ $2 == "$3" ]]; then pass "$1"; else fail "$1" "expected: $3" "actual:   $2"; fi
}
expect_match() { # NAME TEXT REGEX
    if [[ $2 =~ $3 ]]; then pass "$1"; else fail "$1" "expected to match: $3" "actual: $2"; fi
}
expect_no_match() { # NAME TEXT REGEX
    if [[ $2 =~ $3 ]]; then fail "$1" "must not match: $3" "actual: $2"; else pass "$1"; fi
}
now_ms() { echo $(($(date +%s%N) / 1000000)); }

cleanup() {
    local pid d
    if [[ -n $DAEMON_PID ]] && kill -0 "$DAEMON_PID" 2>/dev/null; then
        kill -KILL "$DAEMON_PID" 2>/dev/null
    fi
    for pid in "${FORWARD_PIDS[@]}"; do kill "$pid" 2>/dev/null; done
    for d in "${OWN_REGISTRIES[@]}"; do "$ROOT/scripts/registry.sh" stop "$d" >/dev/null 2>&1; done
    if ((FAILED == 0)) && [[ -z ${KEEP_TMP:-} ]]; then
        rm -rf "$T"
    else
        echo "cri.sh: work directory kept: $T (daemon log: $T/daemon.log)" >&2
    fi
}
trap cleanup EXIT

# ---------------------------------------------------------------------------
# Tools

missing=()
for tool in docker-registry:docker-registry skopeo:skopeo umoci:umoci jq:jq curl:curl openssl:openssl \
    python3:python3 htpasswd:apache2-utils; do
    command -v "${tool%%:*}" >/dev/null || missing+=("${tool#*:}")
done
if ((${#missing[@]})); then
    sudo_=()
    [[ $(id -u) == 0 ]] || sudo_=(sudo)
    log "installing ${missing[*]}"
    { "${sudo_[@]}" apt-get update -qq && DEBIAN_FRONTEND=noninteractive "${sudo_[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null; } ||
        die "apt-get install ${missing[*]} failed"
fi
command -v cargo >/dev/null || die "cargo not found (install Rust with rustup)"
(cd "$ROOT" && cargo build --release -q -p imgsvc-cli) || die "cargo build --release -p imgsvc-cli failed"

cri_tool_ok() { # NAME: installed, and built from cri-tools $CRI_TOOLS_VERSION
    local path out
    path=$(command -v "$1") || return 1
    # Output captured first: `cmd | grep -q` fails under pipefail when grep
    # exits before cmd has written everything.
    case $1 in
        crictl)
            command -v go >/dev/null || return 0
            out=$(go version -m "$path" 2>/dev/null)
            [[ $out =~ sigs.k8s.io/cri-tools[[:space:]]+$CRI_TOOLS_VERSION ]] ;;
        critest)
            out=$("$path" --version 2>/dev/null)
            [[ $out == *"critest version: $CRI_TOOLS_VERSION"* ]] ;;
    esac
}
if ! cri_tool_ok crictl; then
    command -v go >/dev/null || die "crictl $CRI_TOOLS_VERSION missing and no Go to install it"
    log "installing crictl $CRI_TOOLS_VERSION"
    GOBIN=/usr/local/bin go install "sigs.k8s.io/cri-tools/cmd/crictl@$CRI_TOOLS_VERSION" || die "go install crictl failed"
fi
if ! cri_tool_ok critest; then
    command -v go >/dev/null || die "critest $CRI_TOOLS_VERSION missing and no Go to install it"
    log "building critest $CRI_TOOLS_VERSION"
    # critest is a Go test binary (go install refuses it): build it from the module.
    moddir=$(go mod download -json "sigs.k8s.io/cri-tools@$CRI_TOOLS_VERSION" | jq -r .Dir) || die "go mod download failed"
    (cd "$moddir" && CGO_ENABLED=0 go test -c -o /usr/local/bin/critest \
        -ldflags "-X sigs.k8s.io/cri-tools/pkg/version.Version=$CRI_TOOLS_VERSION" ./cmd/critest) ||
        die "building critest failed"
fi

# ---------------------------------------------------------------------------
# Registries and relays

own_registry() { # own_registry VAR NAME [registry.sh options]: start one, VAR := its address
    local addr
    OWN_REGISTRIES+=("$T/$2")
    addr=$("$ROOT/scripts/registry.sh" start "$T/$2" "${@:3}") || die "registry.sh start $2 failed"
    printf -v "$1" %s "$addr"
}

if [[ -n ${IMGSVC_TEST_REGISTRY:-} ]]; then
    REG=$IMGSVC_TEST_REGISTRY
else
    own_registry REG reg
    log "pushing fixtures to $REG"
    "$ROOT/scripts/fixtures.sh" push "$REG" >"$T/fixtures.log" 2>&1 || die "fixtures.sh push failed; see $T/fixtures.log"
fi

# A CA and a certificate for the TLS registry, reached as 127.0.0.1:PORT.
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$T/ca.key" -out "$T/ca.crt" -days 2 \
    -subj "/CN=imgsvc cri.sh CA" 2>/dev/null || die "openssl (CA) failed"
openssl req -newkey rsa:2048 -nodes -keyout "$T/tls.key" -out "$T/tls.csr" -subj "/CN=imgsvc cri.sh registry" \
    2>/dev/null || die "openssl (CSR) failed"
printf '%s\n' "subjectAltName=IP:127.0.0.1" \
    "basicConstraints=CA:FALSE" "extendedKeyUsage=serverAuth" >"$T/tls.ext"
openssl x509 -req -in "$T/tls.csr" -CA "$T/ca.crt" -CAkey "$T/ca.key" -CAcreateserial -days 2 \
    -extfile "$T/tls.ext" -out "$T/tls.crt" 2>/dev/null || die "openssl (sign) failed"

own_registry TLSREG tlsreg --tls "$T/tls.crt" "$T/tls.key"
"$ROOT/scripts/critest-images.sh" "$TLSREG" 2>"$T/critest-images.log" || die "critest-images.sh failed; see $T/critest-images.log"
skopeo --insecure-policy copy -q --src-tls-verify=false --dest-tls-verify=false \
    "docker://$REG/fixture/debian:v1" "docker://$TLSREG/fixture/debian:v1" || die "copying debian:v1 failed"

htpasswd -Bbn alice 'Op3n-Sesame-4711' >"$T/htpasswd" 2>/dev/null || die "htpasswd failed"
own_registry AUTHREG authreg --htpasswd "$T/htpasswd"
skopeo --insecure-policy copy -q --src-tls-verify=false --dest-tls-verify=false --dest-creds 'alice:Op3n-Sesame-4711' \
    "docker://$REG/fixture/small:a" "docker://$AUTHREG/fixture/small:a" || die "copying to the auth registry failed"

forward() { # forward VAR LISTEN TARGET [--rate N]: start a relay, VAR := its address
    local out=$T/forward.${#FORWARD_PIDS[@]} i
    python3 "$ROOT/tests/cri_forward.py" --listen "$2" --to "$3" "${@:4}" >"$out" 2>"$out.err" &
    FORWARD_PIDS+=($!)
    for ((i = 0; i < 100; i++)); do
        if [[ -s $out ]]; then
            printf -v "$1" %s "$(head -n1 "$out")"
            return 0
        fi
        sleep 0.05
    done
    die "relay $2 -> $3 did not start: $(cat "$out.err")"
}
# The TLS registry again, response bytes paced to 16 MB/s per connection, so
# the 95 MB layer of fixture/debian:v1 takes several seconds.
forward SLOW 127.0.0.1:0 "$TLSREG" --rate 16000000
# The daemon trusts our CA for both addresses (a certs.d root, as CRI-O and
# podman use), and pulls critest's registries from their mirror.
for addr in "$TLSREG" "$SLOW"; do
    mkdir -p "$T/certs.d/$addr" && cp "$T/ca.crt" "$T/certs.d/$addr/ca.crt"
done
# The registries themselves are a closed port: what the mirror lacks fails
# at once, and no run depends on (or reaches) the internet.
for name in gcr.io registry.k8s.io k8s.gcr.io; do
    printf '[[registry]]\nprefix = "%s"\nlocation = "127.0.0.1:1"\n[[registry.mirror]]\nlocation = "%s"\n\n' "$name" "$TLSREG"
done >"$T/registries.conf"

# ---------------------------------------------------------------------------
# The daemon

SOCK=$T/run/imgsvc/imgsvc.sock # run/imgsvc does not exist: serve creates it
STORE=$T/store
cat >"$T/crictl.yaml" <<EOF
runtime-endpoint: unix://$SOCK
image-endpoint: unix://$SOCK
timeout: 30
EOF
cc() { crictl --config "$T/crictl.yaml" "$@"; }

# Debug logging: the credentials check below then covers every log line.
IMGSVC_LOG=debug "$BIN" --root "$STORE" --pinned "$REG/fixture/root:latest" \
    --registries-conf "$T/registries.conf" --cert-dir "$T/certs.d" --auth-file "" --docker-config "" \
    serve --listen "unix://$SOCK" 2>"$T/daemon.log" &
DAEMON_PID=$!
for ((i = 0; i < 200; i++)); do
    [[ -S $SOCK ]] && break
    kill -0 "$DAEMON_PID" 2>/dev/null || die "imgsvc serve exited: $(cat "$T/daemon.log")"
    sleep 0.05
done
[[ -S $SOCK ]] || die "imgsvc serve did not create $SOCK"

echo "== socket (at ${SECONDS}s)"
expect_eq "socket has mode 0660" "$(stat -c %a "$SOCK")" 660
expect_eq "socket directory was created" "$(stat -c %F "$T/run/imgsvc")" directory
err=$("$BIN" --root "$T/other" --registries-conf "" serve --listen "unix://$SOCK" 2>&1)
rc=$?
if ((rc != 0)) && [[ $err == *"another imgsvc serve is running"* ]]; then
    pass "a second imgsvc serve on the same socket is refused"
else
    fail "a second imgsvc serve on the same socket is refused" "exit $rc: $err"
fi
# A socket some other program answers on is not taken over.
python3 -c 'import socket,sys,time; s=socket.socket(socket.AF_UNIX); s.bind(sys.argv[1]); s.listen(); time.sleep(30)' \
    "$T/foreign.sock" &
FOREIGN=$!
for ((i = 0; i < 100; i++)); do [[ -S $T/foreign.sock ]] && break; sleep 0.05; done
err=$("$BIN" --root "$T/other" --registries-conf "" serve --listen "unix://$T/foreign.sock" 2>&1)
rc=$?
kill "$FOREIGN" 2>/dev/null
wait "$FOREIGN" 2>/dev/null
if ((rc != 0)) && [[ $err == *"is in use"* ]]; then
    pass "a live socket of another server is refused"
else
    fail "a live socket of another server is refused" "exit $rc: $err"
fi

echo "== runtime service (at ${SECONDS}s)"
out=$(cc version 2>&1)
expect_match "crictl version names imgsvc" "$out" "RuntimeName:  imgsvc"
expect_match "crictl version gives our version" "$out" "RuntimeVersion:  $("$BIN" --version | awk '{print $2}')"
expect_match "crictl version gives API v1" "$out" "RuntimeApiVersion:  v1"
out=$(cc ps 2>&1)
expect_eq "crictl ps lists no containers" "$(wc -l <<<"$out")" 1
out=$(cc pods 2>&1)
expect_eq "crictl pods lists no sandboxes" "$(wc -l <<<"$out")" 1
for cmd in info stats; do
    out=$(cc "$cmd" 2>&1)
    rc=$?
    if ((rc != 0)) && [[ $out == *"code = Unimplemented"* ]]; then
        pass "crictl $cmd gets UNIMPLEMENTED"
    else
        fail "crictl $cmd gets UNIMPLEMENTED" "exit $rc: $out"
    fi
done

echo "== pull, list, inspect (at ${SECONDS}s)"
expect_eq "an empty store lists nothing" "$(cc images -q)" ""
skopeo inspect --tls-verify=false --raw "docker://$REG/fixture/small:a" >"$T/small.manifest"
SMALL_ID=$(jq -r .config.digest "$T/small.manifest")
SMALL_DIGEST=sha256:$(sha256sum "$T/small.manifest" | cut -d' ' -f1)
SMALL_SIZE=$(($(stat -c %s "$T/small.manifest") + $(jq '[.config.size, .layers[].size] | add' "$T/small.manifest")))
out=$(cc pull "$REG/fixture/small:a" 2>&1)
expect_eq "crictl pull answers the image id (the config digest)" "$out" "Image is up to date for $SMALL_ID"
out=$(cc pull "$REG/fixture/small:b" 2>&1)
expect_eq "a second tag of the same manifest is the same image" "$out" "Image is up to date for $SMALL_ID"
rows=$(cc images | awk 'NR > 1 { print $1, $2, $3 }')
expect_eq "crictl images: one row per tag, same id" "$rows" \
    "$REG/fixture/small a ${SMALL_ID:7:13}
$REG/fixture/small b ${SMALL_ID:7:13}"
expect_eq "crictl images -q prints the full id once" "$(cc images -q)" "$SMALL_ID"
expect_eq "crictl images --digests shows the manifest digest" \
    "$(cc images --digests | awk 'NR == 2 { print $3 }')" "${SMALL_DIGEST:7:13}"
cc images -o json >"$T/images.json"
expect_eq "images -o json: tags" "$(jq -c '.images[0].repoTags | sort' "$T/images.json")" \
    "[\"$REG/fixture/small:a\",\"$REG/fixture/small:b\"]"
expect_eq "images -o json: repo digest" "$(jq -c .images[0].repoDigests "$T/images.json")" \
    "[\"$REG/fixture/small@$SMALL_DIGEST\"]"
expect_eq "images -o json: size is manifest + config + layers" "$(jq -r .images[0].size "$T/images.json")" "$SMALL_SIZE"
expect_eq "images -o json: uid 1000, no username, not pinned" \
    "$(jq -c '.images[0] | [.uid, .username, .pinned]' "$T/images.json")" '[{"value":"1000"},"",false]'
expect_eq "crictl images NAME filters to that image" "$(cc images -q "$REG/fixture/small:b")" "$SMALL_ID"
expect_eq "crictl images of an absent name lists nothing" "$(cc images -q "$REG/fixture/absent:v1")" ""

cc inspecti -o json "$REG/fixture/small:a" >"$T/inspect.json" 2>"$T/err"
expect_eq "inspecti: status.id" "$(jq -r .status.id "$T/inspect.json")" "$SMALL_ID"
skopeo inspect --tls-verify=false --config --raw "docker://$REG/fixture/small:a" >"$T/small.config"
expect_eq "inspecti: info.imageSpec is the image config" "$(jq -cS .info.imageSpec "$T/inspect.json")" \
    "$(jq -cS . "$T/small.config")"
expect_eq "inspecti by id prefix finds the image" "$(cc inspecti -o json "${SMALL_ID:7:13}" | jq -r .status.id)" "$SMALL_ID"
out=$(cc inspecti "$REG/fixture/absent:v1" 2>&1)
expect_match "inspecti of an absent image: no such image" "$out" "no such image"

cc pull "$REG/fixture/root:latest" >/dev/null 2>&1
cc pull "$REG/fixture/named:latest" >/dev/null 2>&1
cc images -o json >"$T/images.json"
expect_eq "uid 0 is a set value; --pinned is reported" \
    "$(jq -c --arg t "$REG/fixture/root:latest" '.images[] | select(.repoTags[0] == $t) | [.uid, .username, .pinned]' "$T/images.json")" \
    '[{"value":"0"},"",true]'
expect_eq "a user name is a username, no uid" \
    "$(jq -c --arg t "$REG/fixture/named:latest" '.images[] | select(.repoTags[0] == $t) | [.uid, .username]' "$T/images.json")" \
    '[null,"nobody"]'
expect_match "crictl images --pinned marks the pinned image" \
    "$(cc images --pinned | grep "fixture/root ")" "true"

cc imagefsinfo >"$T/fs.json" 2>"$T/err"
expect_eq "imagefsinfo: mountpoint is the store root" \
    "$(jq -r '.status.imageFilesystems[0].fsId.mountpoint' "$T/fs.json")" "$STORE"
USED_BEFORE=$(jq -r '.status.imageFilesystems[0].usedBytes.value' "$T/fs.json")
INODES=$(jq -r '.status.imageFilesystems[0].inodesUsed.value' "$T/fs.json")
if ((USED_BEFORE >= SMALL_SIZE && INODES > 0)); then
    pass "imagefsinfo: used bytes ($USED_BEFORE) and inodes ($INODES) count the images"
else
    fail "imagefsinfo: used bytes and inodes count the images" "usedBytes=$USED_BEFORE inodes=$INODES"
fi
expect_eq "imagefsinfo: no container filesystems" "$(jq -c .status.containerFilesystems "$T/fs.json")" "[]"

echo "== errors (at ${SECONDS}s)"
check_pull_error() { # NAME IMAGE CODE [crictl pull options]
    local out rc
    out=$(cc pull "${@:4}" "$2" 2>&1)
    rc=$?
    if ((rc != 0)) && [[ $out == *"code = $3 "* ]]; then pass "$1"; else fail "$1" "exit $rc: $out"; fi
}
check_pull_error "a missing tag is NotFound" "$REG/fixture/absent:v1" NotFound
check_pull_error "an artifact is FailedPrecondition" "$REG/fixture/artifact:latest" FailedPrecondition
check_pull_error "an index without our platform is FailedPrecondition" "$REG/fixture/noplatform:latest" FailedPrecondition
check_pull_error "a bad reference is InvalidArgument" "$REG/fixture/UPPER:v1" InvalidArgument
check_pull_error "a registry that is down is Unavailable" "127.0.0.1:1/fixture/small:a" Unavailable

echo "== credentials and TLS (at ${SECONDS}s)"
check_pull_error "no credentials: Unauthenticated" "$AUTHREG/fixture/small:a" Unauthenticated
check_pull_error "a wrong password: Unauthenticated" "$AUTHREG/fixture/small:a" Unauthenticated \
    --creds 'alice:Wr0ng-Guess-0815'
out=$(cc pull --creds 'alice:Op3n-Sesame-4711' "$AUTHREG/fixture/small:a" 2>&1)
expect_eq "--creds user:password pulls" "$out" "Image is up to date for $SMALL_ID"
cc rmi "$AUTHREG/fixture/small:a" >/dev/null 2>&1
AUTH_B64=$(printf %s 'alice:Op3n-Sesame-4711' | base64)
out=$(cc pull --auth "$AUTH_B64" "$AUTHREG/fixture/small:a" 2>&1)
expect_eq "--auth base64(user:password) pulls" "$out" "Image is up to date for $SMALL_ID"
cc pull "$REG/fixture/small:a" >/dev/null 2>&1
cc pull "$REG/fixture/small:b" >/dev/null 2>&1
skopeo inspect --tls-verify=false --raw "docker://$TLSREG/fixture/debian:v1" >"$T/debian.manifest"
DEBIAN_ID=$(jq -r .config.digest "$T/debian.manifest")
out=$(cc pull "$TLSREG/fixture/debian:v1" 2>&1)
expect_eq "a pull over verified TLS (the test CA)" "$out" "Image is up to date for $DEBIAN_ID"
cc rmi "$DEBIAN_ID" >/dev/null 2>&1

echo "== concurrent pulls (at ${SECONDS}s)"
# Three clients pull the same image at once: one download. Meanwhile list and
# status must answer promptly.
LOG_LINES=$(wc -l <"$T/tlsreg/registry.log")
pids=()
for i in 1 2 3; do
    cc pull "$SLOW/fixture/debian:v1" >"$T/pull.$i" 2>&1 &
    pids+=($!)
done
sleep 1
slowest=0
for i in 1 2 3 4 5; do
    for what in images status; do
        t0=$(now_ms)
        if [[ $what == images ]]; then cc images -q >/dev/null; else cc inspecti "$REG/fixture/small:a" >/dev/null; fi
        dt=$(($(now_ms) - t0))
        ((dt > slowest)) && slowest=$dt
    done
done
inflight=0
for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && inflight=$((inflight + 1)); done
if ((inflight == 3 && slowest < 1000)); then
    pass "list and status answer within ${slowest} ms (slowest of 10) while the pulls run"
else
    fail "list and status stay fast during a large pull" "slowest ${slowest} ms; pulls still running: $inflight of 3"
fi
for pid in "${pids[@]}"; do wait "$pid"; done
for i in 1 2 3; do
    expect_eq "concurrent pull $i answers the id" "$(cat "$T/pull.$i")" "Image is up to date for $DEBIAN_ID"
done
tail -n +$((LOG_LINES + 1)) "$T/tlsreg/registry.log" | grep '"GET /v2/fixture/debian/blobs/' >"$T/gets" || true
counts=""
for d in $(jq -r '.config.digest, .layers[].digest' "$T/debian.manifest"); do
    counts+="$(grep -c "/blobs/$d " "$T/gets") "
done
expect_eq "each blob was fetched once for the three pulls" "$counts" "$(jq -r '[.config, .layers[]] | map("1 ") | add' "$T/debian.manifest")"
expect_eq "no other blob GETs for the three pulls" "$(wc -l <"$T/gets")" "$(jq '.layers | length + 1' "$T/debian.manifest")"

echo "== deadline (at ${SECONDS}s)"
cc rmi "$DEBIAN_ID" >/dev/null 2>&1
t0=$(now_ms)
out=$(cc pull --pull-timeout 1s "$SLOW/fixture/debian:v1" 2>&1)
rc=$?
dt=$(($(now_ms) - t0))
if ((rc != 0 && dt < 3000)) && [[ $out == *"DeadlineExceeded"* ]]; then
    pass "crictl pull --pull-timeout 1s ends after ${dt} ms with DeadlineExceeded"
else
    fail "crictl pull --pull-timeout 1s ends with DeadlineExceeded" "exit $rc after $dt ms: $out"
fi
sleep 1
line=$(grep 'method="PullImage"' "$T/daemon.log" | grep "$SLOW/fixture/debian:v1" | tail -n1)
expect_match "the daemon ended the call (logged)" "$line" 'outcome=(DeadlineExceeded|"abandoned)'
size1=$(du -sb "$STORE/ingest" | cut -f1)
sleep 1.5
size2=$(du -sb "$STORE/ingest" | cut -f1)
expect_eq "the abandoned pull stopped downloading (ingest size steady)" "$size2" "$size1"
expect_eq "the abandoned pull recorded nothing" "$(cc images -q "$DEBIAN_ID")" ""

echo "== remove (at ${SECONDS}s)"
out=$(cc rmi "$REG/fixture/small:a" 2>&1)
expect_match "rmi by one tag reports every tag" "$out" "Deleted: $REG/fixture/small:a.*Deleted: $REG/fixture/small:b|Deleted: $REG/fixture/small:b.*Deleted: $REG/fixture/small:a"
expect_eq "rmi by one tag removes all names (and the auth registry's)" \
    "$(cc images -q "$REG/fixture/small:b")$(cc images -q "$AUTHREG/fixture/small:a")" ""
NAMED_ID=$(cc images -q "$REG/fixture/named:latest")
out=$(cc rmi "${NAMED_ID:7:13}" 2>&1)
expect_eq "rmi by id prefix" "$out$(cc images -q "$NAMED_ID")" "Deleted: $REG/fixture/named:latest"
out=$(cc rmi "$REG/fixture/named:latest" 2>&1)
expect_match "rmi of an absent image: crictl's own 'no such image'" "$out" "no such image"
cc pull "$REG/fixture/small:a" >/dev/null 2>&1
cc pull "$REG/fixture/named:latest" >/dev/null 2>&1
ROOT_ID=$(cc images -q "$REG/fixture/root:latest")
cc rmi --prune >"$T/prune.out" 2>&1
expect_eq "rmi --prune removes all but the pinned image (no containers use any)" "$(cc images -q)" "$ROOT_ID"
cc rmi --all >/dev/null 2>&1
expect_eq "rmi --all removes the rest, pinned included" "$(cc images -q)" ""
USED_AFTER=$(cc imagefsinfo | jq -r '.status.imageFilesystems[0].usedBytes.value')
if ((USED_AFTER < USED_BEFORE)); then
    pass "imagefsinfo: used bytes went down after removal ($USED_BEFORE -> $USED_AFTER)"
else
    fail "imagefsinfo: used bytes went down after removal" "$USED_BEFORE -> $USED_AFTER"
fi

echo "== critest $CRI_TOOLS_VERSION (at ${SECONDS}s)"
# Image specs, with critest's own image names: the daemon pulls them from the
# mirror (our TLS registry, filled by scripts/critest-images.sh), so critest
# runs unmodified with its default --registry-prefix. (--registry-prefix=ADDR
# cannot work in v1.37.0: PrepareImageName drops the tag, and the specs then
# look the images up under their upstream names.)
FOCUS='Image Manager|Image Consistency|Image Identifier Consistency|Idempotence RemoveImage|runtime should return version info'
# Expected failures, each for a reason outside imgsvc:
XFAIL='public image with digest'                                      # a digest of upstream bytes we do not have
XFAIL+='|should return the same image identifier across all APIs' # needs RunPodSandbox/CreateContainer
XFAIL+='|same image identifier when pulled from different registries' # same
# What must pass: every focused spec but the expected failures.
EXPECTED_PASS="[k8s.io] Idempotence RemoveImage should not return an error if not found
[k8s.io] Image Consistency should list and get image status immediately after pulling [Conformance]
[k8s.io] Image Consistency should not fail on simultaneous RemoveImage calls [Conformance]
[k8s.io] Image Consistency should not list or get image status immediately after removal [Conformance]
[k8s.io] Image Manager image status get image fields should not have Uid|Username empty [Conformance]
[k8s.io] Image Manager image status should support all kinds of references [Conformance]
[k8s.io] Image Manager listImage should get exactly 3 image in the result list [Conformance]
[k8s.io] Image Manager listImage should get exactly 3 repoTags in the result image [Conformance]
[k8s.io] Image Manager public image should timeout if requested [Conformance]
[k8s.io] Image Manager public image with tag should be pulled and removed [Conformance]
[k8s.io] Image Manager public image without tag should be pulled and removed [Conformance]
[k8s.io] Image Manager removing image by one tag should remove all tags [Conformance]
[k8s.io] Image Manager removing image from one registry should remove all tags from other registries [Conformance]
[k8s.io] Runtime info runtime should support returning runtime info runtime should return version info [Conformance]"
critest_run() { # critest_run OUTPUT [ginkgo flags]
    critest --runtime-endpoint "unix://$SOCK" --image-endpoint "unix://$SOCK" --ginkgo.no-color \
        --ginkgo.json-report "$1.json" "${@:2}" >"$1" 2>&1
}
specs() { # specs REPORT STATE: the specs that ended in STATE, one per line, sorted
    jq -r --arg s "$2" '.[].SpecReports[] | select(.LeafNodeType == "It" and .State == $s)
        | (.ContainerHierarchyTexts + [.LeafNodeText]) | join(" ")' "$1" 2>/dev/null | LC_ALL=C sort
}
critest_run "$T/critest.out" --ginkgo.focus "$FOCUS" --ginkgo.skip "$XFAIL"
rc=$?
grep -E '^(Ran [0-9]+ of|SUCCESS!|FAIL!)' "$T/critest.out" | sed 's/^/critest: /'
specs "$T/critest.out.json" passed | sed 's/^/critest: passed: /'
specs "$T/critest.out.json" failed | sed 's/^/critest: FAILED: /'
if ((rc == 0)) && [[ $(specs "$T/critest.out.json" passed) == "$(LC_ALL=C sort <<<"$EXPECTED_PASS")" ]]; then
    pass "critest image specs: the $(wc -l <<<"$EXPECTED_PASS") expected specs passed"
else
    fail "critest image specs: the $(wc -l <<<"$EXPECTED_PASS") expected specs pass" "exit $rc" \
        "$(grep -A3 '\[FAIL\]' "$T/critest.out" | head -n 30)"
fi
critest_run "$T/critest-xfail.out" --ginkgo.focus "$XFAIL"
grep -E '^(Ran [0-9]+ of|SUCCESS!|FAIL!)' "$T/critest-xfail.out" | sed 's/^/critest (expected failures): /'
specs "$T/critest-xfail.out.json" failed | sed 's/^/critest: expected failure: /'
xf=$(grep -E '^FAIL!' "$T/critest-xfail.out" | tail -n1)
# The digest is on neither the mirror nor the (closed) registry; the other two
# fail at RunPodSandbox, which an image service does not serve.
if [[ $xf == *"0 Passed | 3 Failed"* ]] && grep -q "failed to pull image" "$T/critest-xfail.out" &&
    grep -q "test-image-digest@sha256" "$T/critest-xfail.out" &&
    [[ $(grep -c "failed to create PodSandbox" "$T/critest-xfail.out") -ge 2 ]]; then
    pass "critest expected failures fail for the known reasons (upstream digest; no pod sandboxes)"
else
    fail "critest expected failures fail for the known reasons" "$xf" "$(grep -A3 '\[FAIL\]' "$T/critest-xfail.out" | head -n 30)"
fi

echo "== credentials in the log (at ${SECONDS}s)"
hits=$(grep -c -e 'Op3n-Sesame-4711' -e 'Wr0ng-Guess-0815' -e "$AUTH_B64" "$T/daemon.log")
expect_eq "no password, wrong password or auth string in the debug log ($(wc -l <"$T/daemon.log") lines)" "$hits" 0
expect_match "one info line per call: method, image, outcome, time" \
    "$(grep 'method="PullImage"' "$T/daemon.log" | grep "image=\"$AUTHREG/fixture/small:a\"" | tail -n1)" \
    'INFO .*method="PullImage" image="[^"]+" outcome="ok" elapsed_ms=[0-9]+'
expect_match "a call answered UNIMPLEMENTED is logged too (crictl info)" \
    "$(grep 'method="Status"' "$T/daemon.log" | tail -n1)" 'INFO .*method="Status" image="" outcome=Unimplemented'

echo "== shutdown (at ${SECONDS}s)"
kill -TERM "$DAEMON_PID"
for ((i = 0; i < 300; i++)); do
    kill -0 "$DAEMON_PID" 2>/dev/null || break
    sleep 0.05
done
if kill -0 "$DAEMON_PID" 2>/dev/null; then
    fail "SIGTERM stops the daemon" "still running after 15 s"
else
    wait "$DAEMON_PID"
    expect_eq "SIGTERM: exit status 0" "$?" 0
fi
DAEMON_PID=""
if [[ -e $SOCK ]]; then fail "the socket is removed on exit"; else pass "the socket is removed on exit"; fi
expect_match "the log records the shutdown" "$(tail -n 3 "$T/daemon.log")" "imgsvc stopped"

echo "== cargo test (serve module and tonic-client integration tests) (at ${SECONDS}s)"
cd "$ROOT" || die "cd $ROOT"
for target in "--bin imgsvc serve::" "--test serve"; do
    # shellcheck disable=SC2086 # target holds two words on purpose
    IMGSVC_TEST_REGISTRY=$REG cargo test --release -q -p imgsvc-cli $target >"$T/cargo.out" 2>&1
    rc=$?
    grep -E '^test result:|^test .*FAILED|panicked' "$T/cargo.out"
    if ((rc == 0)); then pass "cargo test -p imgsvc-cli $target"; else fail "cargo test -p imgsvc-cli $target" "$(tail -n 30 "$T/cargo.out")"; fi
done

echo "$PASSED passed, $FAILED failed (${SECONDS} s)"
((FAILED == 0))

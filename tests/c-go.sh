#!/usr/bin/env bash
# The C ABI and Go binding suite.
#
#   tests/c-go.sh
#
# Builds the C library first (cargo build --release -p imgsvc-capi: quick
# when scripts/test already built the workspace).
# Uses the registry at IMGSVC_TEST_REGISTRY (host:port, fixtures pushed);
# without it, starts one with scripts/registry.sh and pushes the fixtures.
# Also starts a registry with TLS (its own CA) and basic auth with
# tests/c/secure-registry.sh, for the tests of the registry options
# (IMGSVC_TEST_SECURE_DIR for the C and Go tests).
#
# Steps: the capi crate's tests (header drift included), rustfmt and clippy;
# the header compiled as C++ and as pedantic C11; the C tests and examples
# built with their Makefiles, run, and run under valgrind; the pull example
# cancelled by a signal; scripts/install-c.sh plus pkg-config (shared and
# static); the programs in docs/c-and-go.md; gofmt, go vet, go test (and
# -race) of bindings/go; the Go example. Ends with
# "c-go.sh: N passed, N failed" (steps) and exits non-zero when a step failed.
#
# Needs: cc, g++, make, valgrind, pkg-config, python3, openssl, htpasswd,
# skopeo, docker-registry, Go (/usr/local/go/bin); scripts/install-deps.sh
# installs them.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)

# `cmd | grep -q PATTERN` is flaky under pipefail: grep exits at the first
# match and cmd, still writing, dies of SIGPIPE. This reads everything.
contains() { grep -- "$1" >/dev/null; }

: "${HOME:=/root}" # go needs a cache directory
export HOME
export PATH=$PATH:$HOME/.cargo/bin:/usr/local/go/bin

missing=()
for tool in cargo cc g++ make valgrind pkg-config python3 openssl htpasswd skopeo docker-registry go; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if ((${#missing[@]})); then
    echo "c-go.sh: missing ${missing[*]}; run scripts/install-deps.sh" >&2
    exit 1
fi
(cd "$repo" && cargo build --release --quiet -p imgsvc-capi) || { echo "c-go.sh: building the C library failed" >&2; exit 1; }
for f in libimgsvc.so libimgsvc.a; do
    [[ -f $repo/target/release/$f ]] || { echo "c-go.sh: target/release/$f missing after the build" >&2; exit 1; }
done

work=$(mktemp -d /tmp/imgsvc-c-go.XXXXXX)
bin=$work/bin
started_registry=""
stall_pid=""
cleanup() {
    [[ -n $stall_pid ]] && kill "$stall_pid" 2>/dev/null || true
    [[ -n $started_registry ]] && "$repo/scripts/registry.sh" stop "$work/registry" || true
    "$repo/tests/c/secure-registry.sh" stop "$work/secure" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

if [[ -z ${IMGSVC_TEST_REGISTRY:-} ]]; then
    IMGSVC_TEST_REGISTRY=$("$repo/scripts/registry.sh" start "$work/registry")
    started_registry=1
    "$repo/scripts/fixtures.sh" push "$IMGSVC_TEST_REGISTRY" >&2
fi
export IMGSVC_TEST_REGISTRY
reg=$IMGSVC_TEST_REGISTRY
echo "c-go.sh: registry $reg"
secure=$("$repo/tests/c/secure-registry.sh" start "$work/secure" "$reg") ||
    { echo "c-go.sh: could not start the TLS + basic auth registry" >&2; exit 1; }
export IMGSVC_TEST_SECURE_DIR=$work/secure
echo "c-go.sh: registry with TLS and basic auth $secure"

# The suppressions cover false positives inside TLS (ring's assembly) only;
# tests/c/valgrind.supp says why.
VALGRIND=(valgrind -q --leak-check=full --errors-for-leak-kinds=definite,indirect --error-exitcode=1
    --suppressions="$repo/tests/c/valgrind.supp")

passed=0
failed=0
failures=()
# step NAME FUNCTION...: run in a subshell with errexit on (not in an `if`,
# where bash would switch errexit off), and count the outcome.
step() {
    local name=$1 rc start=$SECONDS
    shift
    echo "=== $name"
    set +e
    (
        set -euo pipefail
        "$@"
    )
    rc=$?
    set -e
    if ((rc == 0)); then
        passed=$((passed + 1))
        echo "--- ok: $name ($((SECONDS - start)) s)"
    else
        failed=$((failed + 1))
        failures+=("$name")
        echo "--- FAIL: $name (exit $rc)"
    fi
}

fail() {
    echo "FAIL: $*" >&2
    exit 1
}

# expect_rc WANT CMD...: run CMD, fail unless it exits with WANT.
expect_rc() {
    local want=$1 rc=0
    shift
    "$@" || rc=$?
    ((rc == want)) || fail "exit $rc, want $want: $*"
}

# under_valgrind WANT LOG CMD...: CMD under valgrind exits WANT and valgrind
# reports nothing (the log catches errors when WANT is itself non-zero).
under_valgrind() {
    local want=$1 log=$2
    shift 2
    expect_rc "$want" "${VALGRIND[@]}" --log-file="$log" "$@"
    if [[ -s $log ]]; then
        cat "$log" >&2
        fail "valgrind reported errors for: $*"
    fi
}

# ---------------------------------------------------------------------------

capi_cargo_tests() {
    cd "$repo"
    cargo test -p imgsvc-capi --release 2>&1 | grep -v '^\s*\(Compiling\|Blocking\)'
}

capi_lint() {
    cd "$repo"
    rustfmt --edition 2021 --check bindings/c/src/lib.rs bindings/c/tests/header.rs
    cargo clippy -p imgsvc-capi --release --all-targets --quiet -- -D warnings
    echo "bindings/c: rustfmt and clippy -D warnings clean"
}

header_as_cpp_and_c() {
    g++ -x c++ -std=c++17 -Wall -Wextra -Werror -pedantic -fsyntax-only "$repo/include/imgsvc.h"
    cc -x c -std=c11 -Wall -Wextra -Werror -pedantic -fsyntax-only "$repo/include/imgsvc.h"
    echo "include/imgsvc.h compiles as C++17 and as C11"
}

build_c() {
    make -C "$repo/examples/c" OUT="$bin"
    make -C "$repo/tests/c" OUT="$bin"
}

c_tests() {
    "$bin/test_capi"
}

c_tests_valgrind() {
    # Fewer rounds of the 8-thread test (valgrind runs threads one at a
    # time) and smaller huge strings.
    IMGSVC_C_STRESS_ITERS=2 IMGSVC_C_HUGE_MB=4 under_valgrind 0 "$work/vg-test_capi.log" "$bin/test_capi"
}

c_examples() {
    local root=$work/examples-store out
    expect_rc 2 "$bin/pull" # usage
    out=$("$bin/pull" "$root" "$reg/fixture/debian:v1" 2>"$work/pull.err")
    [[ $out =~ ^sha256:[0-9a-f]{64}$ ]] || fail "pull printed '$out'"
    grep -q "^resolved $reg/fixture/debian:v1: 4 layers" "$work/pull.err" || fail "no resolved line: $(cat "$work/pull.err")"
    grep -q "^committed $out" "$work/pull.err" || fail "no committed line"
    grep -q " done " "$work/pull.err" || fail "no layer done line"
    "$bin/list" "$root" | contains "\"id\":\"$out\"" || fail "list lacks $out"
    "$bin/list" "$root" "${out:7:12}" | contains "\"repoTags\":\[\"$reg/fixture/debian:v1\"\]" || fail "list by prefix"
    "$bin/inspect" "$root" "$reg/fixture/debian:v1" | contains '"imageSpec"' || fail "inspect lacks imageSpec"
    expect_rc 3 "$bin/inspect" "$root" "$reg/fixture/never:pulled"
    "$bin/fsinfo" "$root" | contains "\"mountpoint\":\"$root\"" || fail "fsinfo"
    expect_rc 1 "$bin/pull" "$root" "$reg/fixture/small:no-such-tag" 2>"$work/pull404.err"
    grep -q "not found" "$work/pull404.err" || fail "missing tag: $(cat "$work/pull404.err")"
    "$bin/pull" "$root" "$reg/fixture/small:a" >/dev/null 2>&1
    "$bin/pull" "$root" "$reg/fixture/small:b" >/dev/null 2>&1
    "$bin/remove" "$root" --untag "$reg/fixture/small:b"
    "$bin/list" "$root" | contains "fixture/small:b" && fail "untag left the name"
    "$bin/remove" "$root" "$reg/fixture/debian:v1" "$reg/fixture/small:a" "$reg/fixture/never:pulled"
    [[ $("$bin/list" "$root") == '{"images":[]}' ]] || fail "store not empty after remove"
    echo "examples: pull, list, inspect, fsinfo, remove behave"
}

c_examples_valgrind() {
    local root=$work/vg-store
    under_valgrind 0 "$work/vg-pull.log" "$bin/pull" "$root" "$reg/fixture/small:a" >/dev/null 2>&1
    under_valgrind 1 "$work/vg-pull404.log" "$bin/pull" "$root" "$reg/fixture/small:no-such-tag" >/dev/null 2>&1
    under_valgrind 1 "$work/vg-pullbad.log" "$bin/pull" "$root" "BAD//ref" >/dev/null 2>&1
    under_valgrind 0 "$work/vg-list.log" "$bin/list" "$root" >/dev/null
    under_valgrind 0 "$work/vg-inspect.log" "$bin/inspect" "$root" "$reg/fixture/small:a" >/dev/null
    under_valgrind 3 "$work/vg-inspect-absent.log" "$bin/inspect" "$root" "$reg/fixture/never:pulled" 2>/dev/null
    under_valgrind 0 "$work/vg-fsinfo.log" "$bin/fsinfo" "$root" >/dev/null
    under_valgrind 0 "$work/vg-untag.log" "$bin/remove" "$root" --untag "$reg/fixture/small:a" >/dev/null
    under_valgrind 1 "$work/vg-untag404.log" "$bin/remove" "$root" --untag "$reg/fixture/small:a" 2>/dev/null
    under_valgrind 0 "$work/vg-remove.log" "$bin/remove" "$root" "$reg/fixture/never:pulled" >/dev/null
    echo "valgrind: no errors, no definite or indirect leaks in 10 example runs"
}

# A TCP server that accepts and never answers; its port goes to the file
# $stall_port_file.
start_stall_server() {
    stall_port_file=$(mktemp "$work/stall-port.XXXXXX")
    rm -f "$stall_port_file" # appears when the server has its port
    # The port file is written under another name and renamed, so a reader
    # never sees it half written.
    python3 -c '
import os, socket, sys
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(16)
tmp = sys.argv[1] + ".tmp"
with open(tmp, "w") as f: f.write(str(s.getsockname()[1]))
os.rename(tmp, sys.argv[1])
held = []
while True:
    held.append(s.accept()[0])
' "$stall_port_file" &
    stall_pid=$!
    for _ in $(seq 50); do [[ -s $stall_port_file ]] && break; sleep 0.1; done
    [[ -s $stall_port_file ]] || fail "stall server did not start"
}

pull_example_signal_cancel() {
    start_stall_server
    local port pid rc=0 start
    port=$(cat "$stall_port_file")
    # SIGTERM: a background job of a non-interactive shell ignores SIGINT,
    # and the example treats both alike.
    "$bin/pull" "$work/signal-store" "127.0.0.1:$port/stalled/image:1" 2>"$work/signal.err" &
    pid=$!
    sleep 1
    kill -0 "$pid" 2>/dev/null || fail "pull ended before the signal: $(cat "$work/signal.err")"
    start=$SECONDS
    kill -TERM "$pid"
    wait "$pid" || rc=$?
    kill "$stall_pid" 2>/dev/null || true
    ((rc == 130)) || fail "pull exited $rc after SIGTERM, want 130: $(cat "$work/signal.err")"
    ((SECONDS - start <= 5)) || fail "pull took $((SECONDS - start)) s to stop"
    grep -q "cancelled" "$work/signal.err" || fail "no cancelled message"
    echo "the pull example stopped on SIGTERM while no bytes were flowing"
}

install_and_pkg_config() {
    local prefix=$work/prefix
    "$repo/scripts/install-c.sh" "$prefix"
    export PKG_CONFIG_PATH=$prefix/lib/pkgconfig
    pkg-config --exists imgsvc || fail "pkg-config does not find imgsvc"
    [[ $(pkg-config --modversion imgsvc) == "$(sed -n 's/^version = "\(.*\)"$/\1/p' "$repo/bindings/c/Cargo.toml" | head -n 1)" ]] ||
        fail "version $(pkg-config --modversion imgsvc)"
    cmp "$prefix/include/imgsvc.h" "$repo/include/imgsvc.h"
    # The exact line users type, shared library.
    cc -std=c11 -Wall -Wextra -Werror "$repo/examples/c/list.c" $(pkg-config --cflags --libs imgsvc) -o "$work/list-pc"
    LD_LIBRARY_PATH=$prefix/lib "$work/list-pc" "$work/pc-store" | contains '^{"images":\[\]}$' || fail "list-pc"
    LD_LIBRARY_PATH=$prefix/lib ldd "$work/list-pc" | contains "$prefix/lib/libimgsvc.so" ||
        fail "list-pc does not use the installed .so"
    # The Go binding against the installed library (build tag imgsvc_pkgconfig).
    (cd "$repo/bindings/go" && CGO_LDFLAGS="-Wl,-rpath,$prefix/lib" \
        go test -count=1 -tags imgsvc_pkgconfig -run 'TestVersion|TestAbsentImage|TestUntag' ./...)
    # Static: the archive plus the system libraries the .pc records.
    make -C "$repo/tests/c" USE_PKG_CONFIG=1 STATIC=1 OUT="$work/static"
    if ldd "$work/static/test_capi" | contains libimgsvc; then fail "static test_capi links libimgsvc.so"; fi
    "$work/static/test_capi"
}

# extract_doc_block NAME OUT: the fenced block after the marker
# "<!-- compiled and run by tests/c-go.sh as NAME -->" in docs/c-and-go.md.
extract_doc_block() {
    awk -v marker="<!-- compiled and run by tests/c-go.sh as $1 -->" '
        $0 == marker { want = 1; next }
        want && /^```/ { if (inside) exit; inside = 1; next }
        inside { print }
    ' "$repo/docs/c-and-go.md" >"$2"
    [[ -s $2 ]] || fail "no block for $1 in docs/c-and-go.md"
}

docs_c_program() {
    extract_doc_block imgsvc_demo.c "$work/imgsvc_demo.c"
    "$repo/scripts/install-c.sh" "$work/doc-prefix" >/dev/null
    export PKG_CONFIG_PATH=$work/doc-prefix/lib/pkgconfig
    cc -std=c11 -Wall -Wextra -Werror "$work/imgsvc_demo.c" $(pkg-config --cflags --libs imgsvc) -o "$work/imgsvc_demo"
    export LD_LIBRARY_PATH=$work/doc-prefix/lib
    "$work/imgsvc_demo" "$work/doc-store" "$reg/fixture/small:a" >"$work/demo.out"
    cat "$work/demo.out"
    grep -q '^pulled sha256:' "$work/demo.out" && grep -q '"repoTags":\[' "$work/demo.out" &&
        grep -q '^removed; status says: absent$' "$work/demo.out" || fail "unexpected output"
    under_valgrind 0 "$work/vg-demo.log" "$work/imgsvc_demo" "$work/doc-store" "$reg/fixture/small:a" >/dev/null 2>&1
    expect_rc 1 "$work/imgsvc_demo" "$work/doc-store" "$reg/fixture/small:no-such-tag" 2>/dev/null
}

go_fmt_vet() {
    local dir out
    for dir in bindings/go examples/go; do
        cd "$repo/$dir"
        out=$(gofmt -l .)
        [[ -z $out ]] || fail "gofmt -l in $dir: $out"
        go vet ./...
    done
    echo "gofmt -l and go vet clean in bindings/go and examples/go"
}

go_tests() {
    cd "$repo/bindings/go"
    # cgocheck=1 is Go's default; set it so a GODEBUG from outside cannot turn
    # the pointer checks off.
    GODEBUG=cgocheck=1 go test -count=1 -v ./...
}

go_tests_race() {
    cd "$repo/bindings/go"
    go test -count=1 -race ./...
}

go_example() {
    cd "$repo/examples/go"
    go build -o "$bin/imgsvc-go" .
    local root=$work/go-store out
    out=$("$bin/imgsvc-go" -root "$root" pull "$reg/fixture/debian:v1" 2>"$work/go-pull.err")
    [[ $out =~ ^sha256:[0-9a-f]{64}$ ]] || fail "pull printed '$out': $(cat "$work/go-pull.err")"
    grep -q "^committed $out" "$work/go-pull.err" || fail "no committed line"
    "$bin/imgsvc-go" -root "$root" list | contains "^${out:7:13} .*fixture/debian:v1" || fail "list"
    "$bin/imgsvc-go" -root "$root" inspect "${out:7:12}" | contains '^user: *"65534:65534"' || fail "inspect"
    expect_rc 3 "$bin/imgsvc-go" -root "$root" inspect "$reg/fixture/never:pulled" 2>/dev/null
    expect_rc 4 "$bin/imgsvc-go" -root "$root" pull "$reg/fixture/small:no-such-tag" 2>/dev/null
    "$bin/imgsvc-go" -root "$root" fsinfo | contains "^$root: " || fail "fsinfo"
    "$bin/imgsvc-go" -root "$root" rm "$out"
    [[ $("$bin/imgsvc-go" -root "$root" list | wc -l) == 1 ]] || fail "store not empty"
    # A deadline while no bytes flow: cancelled through the C token.
    start_stall_server
    local start=$SECONDS
    expect_rc 1 "$bin/imgsvc-go" -root "$root" -timeout 500ms pull "127.0.0.1:$(cat "$stall_port_file")/x/y:1" 2>"$work/go-stall.err"
    kill "$stall_pid" 2>/dev/null || true
    grep -q "deadline exceeded" "$work/go-stall.err" || fail "$(cat "$work/go-stall.err")"
    ((SECONDS - start <= 5)) || fail "took $((SECONDS - start)) s"
    echo "Go example: pull, list, inspect, fsinfo, rm and a deadline behave"
}

docs_go_program() {
    local dir=$work/docgo
    mkdir -p "$dir"
    extract_doc_block main.go "$dir/main.go"
    cat >"$dir/go.mod" <<EOF
module example.com/imgsvc-demo

go 1.22

require github.com/imgsvc/imgsvc/bindings/go v0.0.0

replace github.com/imgsvc/imgsvc/bindings/go => $repo/bindings/go
EOF
    cd "$dir"
    [[ -z $(gofmt -l .) ]] || fail "the docs' Go program is not gofmt-clean"
    go vet ./...
    go build -o "$bin/imgsvc-demo" .
    "$bin/imgsvc-demo" "$work/docgo-store" "$reg/fixture/small:a" >"$work/docgo.out"
    cat "$work/docgo.out"
    grep -q '^pulled sha256:' "$work/docgo.out" && grep -q 'fixture/small:a\]$' "$work/docgo.out" &&
        grep -q '^removed; status says: absent$' "$work/docgo.out" || fail "unexpected output"
    expect_rc 4 "$bin/imgsvc-demo" "$work/docgo-store" "$reg/fixture/small:no-such-tag" 2>/dev/null
}

suite_start=$SECONDS
step "cargo test -p imgsvc-capi (header drift, panic boundary, options)" capi_cargo_tests
step "rustfmt and clippy (bindings/c)" capi_lint
step "header compiles as C++17 and C11" header_as_cpp_and_c
step "build C examples and tests (make, -std=c11 -Wall -Wextra -Werror)" build_c
step "C tests against the registry" c_tests
step "C tests under valgrind" c_tests_valgrind
step "C examples against the registry" c_examples
step "C examples under valgrind" c_examples_valgrind
step "pull example cancelled by a signal" pull_example_signal_cancel
step "install-c.sh and pkg-config (C shared and static, Go)" install_and_pkg_config
step "docs/c-and-go.md C program" docs_c_program
step "gofmt and go vet" go_fmt_vet
step "go test (bindings/go)" go_tests
step "go test -race (bindings/go)" go_tests_race
step "Go example" go_example
step "docs/c-and-go.md Go program" docs_go_program

echo "c-go.sh: wall time $((SECONDS - suite_start)) s"
for f in "${failures[@]}"; do echo "c-go.sh: FAILED: $f"; done
echo "c-go.sh: $passed passed, $failed failed"
((failed == 0))

#!/usr/bin/env bash
# The Python binding suite (bindings/python, module `imgsvc`).
#
#   tests/python.sh
#
# Steps: build the abi3 wheel with maturin (release, the workspace's target
# dir, into target/wheels); install it into a venv; check the type stubs
# against the built module (mypy.stubtest); run the pytest suite
# (bindings/python/tests) against the real registry; run the example
# examples/python/pull_list_remove.py; and check that `pip install
# ./bindings/python` builds and imports in a fresh venv. Ends with
# "python.sh: N passed, N failed" (steps); exits non-zero when a step failed.
#
# Registry: $IMGSVC_TEST_REGISTRY (host:port, plain HTTP, fixtures pushed);
# without it one is started with scripts/registry.sh and scripts/fixtures.sh
# pushes the fixtures. Some tests start registries of their own too (one with
# TLS and basic auth through tests/c/secure-registry.sh).
#
# Environment:
#   IMGSVC_VENV      venv to use (default target/venv, as scripts/test and
#                    scripts/install-deps.sh; created if missing);
#                    IMGSVC_PY_VENV is an older name for it
#   PYTHON           interpreter that creates the venv (default python3, >= 3.9)
#   KEEP_TMP=1       keep the work directory
#
# Needs: python3 with venv (apt-get install -y python3-venv for Debian's
# python), Rust/cargo, docker-registry, skopeo, apache2-utils (htpasswd),
# openssl, curl (scripts/install-deps.sh installs them); pip packages
# maturin, pytest, pytest-timeout, mypy (installed here into the venv from
# PyPI). Runs as root for the 1 MiB tmpfs of the
# storage-full test (skipped with a reason otherwise).

set -uo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
venv=${IMGSVC_VENV:-${IMGSVC_PY_VENV:-$repo/target/venv}}
python=${PYTHON:-python3}
work=$(mktemp -d /tmp/imgsvc-python.XXXXXX)
passed=0
failed=0
failed_steps=()
started_registry=""

cleanup() {
    [[ -n $started_registry ]] && "$repo/scripts/registry.sh" stop "$work/registry" >/dev/null 2>&1
    if [[ ${KEEP_TMP:-} == 1 ]]; then echo "python.sh: kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

step() { # step NAME CMD...: run a step, count it
    local name=$1; shift
    echo "=== python.sh: $name"
    local t0=$SECONDS
    if "$@"; then
        passed=$((passed + 1))
        echo "=== python.sh: PASS $name ($((SECONDS - t0))s)"
    else
        failed=$((failed + 1))
        failed_steps+=("$name")
        echo "=== python.sh: FAIL $name ($((SECONDS - t0))s)"
    fi
}

finish() {
    if ((failed)); then echo "python.sh: failed steps: ${failed_steps[*]}"; fi
    echo "python.sh: $passed passed, $failed failed"
    ((failed == 0))
    exit
}

missing=()
export PATH=$PATH:${HOME:-/root}/.cargo/bin
for tool in "$python" cargo docker-registry skopeo htpasswd openssl curl; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if ((${#missing[@]})); then
    echo "python.sh: missing ${missing[*]}; run scripts/install-deps.sh (apt-get install -y python3-venv docker-registry skopeo apache2-utils openssl curl, and Rust)" >&2
    exit 1
fi

setup_venv() {
    if [[ ! -x $venv/bin/python ]]; then
        "$python" -m venv "$venv" || return 1
    fi
    "$venv/bin/python" -m pip install -q --disable-pip-version-check \
        "maturin>=1.9.4,<2" "pytest>=7" "pytest-timeout>=2" "mypy>=1.10"
}

build_wheel() {
    rm -f "$repo"/target/wheels/imgsvc-*.whl
    (cd "$repo" && "$venv/bin/maturin" build --release -m bindings/python/Cargo.toml) || return 1
    local wheels=("$repo"/target/wheels/imgsvc-*-abi3-*.whl)
    [[ ${#wheels[@]} -eq 1 && -f ${wheels[0]} ]] || { echo "expected one abi3 wheel, got: ${wheels[*]}"; return 1; }
    "$venv/bin/python" -m pip install -q --disable-pip-version-check --force-reinstall --no-deps "${wheels[0]}"
}

start_registry() {
    if [[ -n ${IMGSVC_TEST_REGISTRY:-} ]]; then
        echo "using registry $IMGSVC_TEST_REGISTRY"
        return 0
    fi
    IMGSVC_TEST_REGISTRY=$("$repo/scripts/registry.sh" start "$work/registry") || return 1
    started_registry=1
    export IMGSVC_TEST_REGISTRY
    "$repo/scripts/fixtures.sh" push "$IMGSVC_TEST_REGISTRY" >"$work/fixtures.log" 2>&1 ||
        { tail -n 30 "$work/fixtures.log"; return 1; }
}

stubtest() {
    # From a directory without the sources, so the installed package is checked.
    (cd "$work" && "$venv/bin/python" -m mypy.stubtest --concise imgsvc)
}

run_pytest() {
    (cd "$repo/bindings/python" &&
        "$venv/bin/python" -m pytest tests -p no:cacheprovider -ra --durations=5 \
            --basetemp="$work/pytest")
}

run_example() {
    IMGSVC_ROOT=$work/example-store "$venv/bin/python" "$repo/examples/python/pull_list_remove.py" \
        "$IMGSVC_TEST_REGISTRY/fixture/debian:v1"
}

pip_install_fresh() {
    # What a user does: pip builds the package from source (maturin in an
    # isolated build environment from PyPI, cargo into the workspace target).
    "$python" -m venv "$work/fresh-venv" || return 1
    "$work/fresh-venv/bin/python" -m pip install -q --disable-pip-version-check "$repo/bindings/python" || return 1
    (cd "$work" && "$work/fresh-venv/bin/python" -c \
        'import imgsvc, sys; s = imgsvc.ImageService(sys.argv[1]); print("imported", imgsvc.__version__, s.list()); s.close()' \
        "$work/fresh-store")
}

step "venv and tools" setup_venv || true
if ((failed)); then finish; fi
step "build and install the wheel" build_wheel
if ((failed)); then finish; fi
step "registry with fixtures" start_registry
if ((failed)); then finish; fi
step "stubtest" stubtest
step "pytest" run_pytest
step "example pull_list_remove.py" run_example
step "pip install ./bindings/python in a fresh venv" pip_install_fresh
finish

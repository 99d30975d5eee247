#!/usr/bin/env bash
# Install everything imgsvc's build, demo and tests need on a fresh Debian 12
# machine. Idempotent: what is already there is not fetched again.
#   scripts/install-deps.sh          everything (tests)
#   scripts/install-deps.sh --demo   only what scripts/demo needs
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
export PATH="$HOME/.cargo/bin:/usr/local/go/bin:$PATH"
mode=${1:-all}

apt_pkgs=(docker-registry skopeo umoci debootstrap curl jq zstd openssl)
if [[ $mode != --demo ]]; then
    apt_pkgs+=(time apache2-utils protobuf-compiler valgrind pkg-config build-essential g++ make python3-venv)
fi
missing=()
for p in "${apt_pkgs[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if ((${#missing[@]})); then
    echo "install-deps: apt-get install ${missing[*]}" >&2
    sudo_=""; [[ $(id -u) == 0 ]] || sudo_=sudo
    $sudo_ apt-get update -qq
    $sudo_ apt-get install -y -qq "${missing[@]}" >/dev/null
fi

command -v cargo >/dev/null || { echo "install-deps: cargo not found (install Rust with rustup)" >&2; exit 1; }
[[ $mode == --demo ]] && exit 0

# The real CRI client and the CRI validation suite, from the Go module proxy.
cri_tools=v1.37.0
if ! command -v crictl >/dev/null || ! crictl --version 2>&1 | grep -q "$cri_tools"; then
    echo "install-deps: go install crictl@$cri_tools" >&2
    GOBIN=/usr/local/bin go install "sigs.k8s.io/cri-tools/cmd/crictl@$cri_tools"
fi
if ! command -v critest >/dev/null || ! critest --version 2>&1 | grep -q "$cri_tools"; then
    # critest is a Go test binary, which go install refuses: build it from the module.
    echo "install-deps: build critest $cri_tools" >&2
    moddir=$(go mod download -json "sigs.k8s.io/cri-tools@$cri_tools" | jq -r .Dir)
    (cd "$moddir" && CGO_ENABLED=0 go test -c -o /usr/local/bin/critest \
        -ldflags "-X sigs.k8s.io/cri-tools/pkg/version.Version=$cri_tools" ./cmd/critest)
fi

# Python build and test tools, in a venv the Python suite uses.
venv=${IMGSVC_VENV:-$PWD/target/venv}
if [[ ! -x $venv/bin/python ]]; then
    python3 -m venv "$venv"
fi
"$venv/bin/pip" install -q --disable-pip-version-check maturin pytest pytest-timeout mypy

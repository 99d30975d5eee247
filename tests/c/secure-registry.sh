#!/usr/bin/env bash
# A registry as people run them, for the binding tests of the registry
# options: HTTPS with a certificate from a CA of its own, and htpasswd basic
# auth; the files a user would point imgsvc at are written beside it.
#
#   tests/c/secure-registry.sh start DIR SOURCE
#       Starts the registry (scripts/registry.sh) in DIR/reg, copies
#       SOURCE/fixture/small:a (SOURCE: host:port of a registry with the
#       fixtures) into it, prints its address (127.0.0.1:PORT) and writes:
#         DIR/certs.d/ADDR/ca.crt    the CA (a certs.d root: DIR/certs.d)
#         DIR/auth.json              containers auth.json for ADDR ("auth" form)
#         DIR/docker/config.json     Docker config.json for ADDR (username/password)
#         DIR/registries.conf        [aliases] "securesmall" = "ADDR/fixture/small"
#         DIR/addr                   ADDR
#       The user is alice, the password wonderland.
#   tests/c/secure-registry.sh stop DIR
#
# Used by tests/c-go.sh (C tests), bindings/go tests and the Python tests.
# Needs openssl, htpasswd (apache2-utils), skopeo, docker-registry, curl.
set -euo pipefail

die() { echo "secure-registry.sh: $*" >&2; exit 1; }
repo=$(cd "$(dirname "$0")/../.." && pwd)
user=alice
password=wonderland

start() {
    local dir=$1 source=$2 addr
    mkdir -p "$dir/ca"
    dir=$(realpath "$dir")
    for tool in openssl htpasswd skopeo; do
        command -v "$tool" >/dev/null || die "$tool not found (scripts/install-deps.sh installs it)"
    done
    (
        cd "$dir/ca"
        openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=imgsvc binding test CA" \
            -keyout ca.key -out ca.crt 2>/dev/null
        openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" -keyout server.key -out server.csr 2>/dev/null
        printf 'basicConstraints=CA:FALSE\nsubjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' >ext.cnf
        openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 \
            -extfile ext.cnf -out server.crt 2>/dev/null
    )
    htpasswd -Bbn "$user" "$password" >"$dir/htpasswd"
    addr=$("$repo/scripts/registry.sh" start "$dir/reg" --tls "$dir/ca/server.crt" "$dir/ca/server.key" \
        --htpasswd "$dir/htpasswd")
    mkdir -p "$dir/certs.d/$addr" "$dir/docker"
    cp "$dir/ca/ca.crt" "$dir/certs.d/$addr/ca.crt"
    skopeo copy --quiet --src-tls-verify=false --dest-cert-dir "$dir/certs.d/$addr" \
        --dest-creds "$user:$password" "docker://$source/fixture/small:a" "docker://$addr/fixture/small:a" >&2 ||
        { "$repo/scripts/registry.sh" stop "$dir/reg"; die "copying fixture/small:a from $source failed"; }
    printf '{"auths": {"%s": {"auth": "%s"}}}\n' "$addr" "$(printf '%s:%s' "$user" "$password" | base64 -w0)" \
        >"$dir/auth.json"
    printf '{"auths": {"%s": {"username": "%s", "password": "%s"}}}\n' "$addr" "$user" "$password" \
        >"$dir/docker/config.json"
    printf '[aliases]\n"securesmall" = "%s/fixture/small"\n' "$addr" >"$dir/registries.conf"
    echo "$addr" >"$dir/addr"
    echo "$addr"
}

case ${1:-} in
    start) [[ $# -eq 3 ]] || die "usage: $0 start DIR SOURCE"; start "$2" "$3" ;;
    stop) [[ $# -eq 2 ]] || die "usage: $0 stop DIR"; "$repo/scripts/registry.sh" stop "$2/reg" ;;
    *) die "usage: $0 start DIR SOURCE | stop DIR" ;;
esac

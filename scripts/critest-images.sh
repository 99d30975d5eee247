#!/usr/bin/env bash
# Build the images cri-tools' critest (v1.37.0) pulls in its image specs and
# push them to the registry at ADDR (host:port; plain HTTP or TLS, the
# certificate is not checked).
#
#   scripts/critest-images.sh ADDR
#
# Repositories, as pkg/validate/consts.go names them with the registry part
# (gcr.io/, registry.k8s.io/, k8s.gcr.io/) cut off:
#   k8s-staging-cri-tools/test-image-latest:latest
#   k8s-staging-cri-tools/test-image-tag:test, :all
#   k8s-staging-cri-tools/test-image-1:latest, -2, -3     three different images
#   k8s-staging-cri-tools/test-image-tags:1, :2, :3       one image, three tags
#   k8s-staging-cri-tools/test-image-user-uid:latest             User 1002
#   k8s-staging-cri-tools/test-image-user-username:latest        User www-data
#   k8s-staging-cri-tools/test-image-user-uid-group:latest       User 1003:users
#   k8s-staging-cri-tools/test-image-user-username-group:latest  User www-data:users
#   k8s-staging-cri-tools/test-image-predefined-group:latest     User 1000:50000
#   pause:3.9                                  (registry.k8s.io/ and k8s.gcr.io/)
# Not buildable: test-image-digest@sha256:9700f9a2..., a digest of upstream
# bytes we do not have.
#
# Environment: CRITEST_IMAGES_CREDS=USER:PASS for a registry with auth.

set -euo pipefail

log() { echo "critest-images.sh: $*" >&2; }
die() { echo "critest-images.sh: error: $*" >&2; exit 1; }
need() { command -v "$1" >/dev/null 2>&1 || die "'$1' not found; install it with: apt-get install -y $2"; }

[[ $# -eq 1 ]] || { awk 'NR > 1 && /^$/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0" >&2; exit 2; }
ADDR=$1
need umoci umoci
need skopeo skopeo

WORK=$(mktemp -d /tmp/critest-images.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
L=$WORK/oci # no ':' in the path: skopeo's oci: syntax splits on it
B=$WORK/bundle
ROOTLESS=()
[[ $(id -u) -eq 0 ]] || ROOTLESS=(--rootless)

umoci init --layout "$L"
umoci new --image "$L:base"
umoci unpack "${ROOTLESS[@]}" --image "$L:base" "$B" >/dev/null
R=$B/rootfs
mkdir -p "$R/etc"
# Users and groups the configs name, so the images make sense to a runtime.
printf '%s\n' 'root:x:0:0:root:/root:/bin/sh' 'www-data:x:33:33:www-data:/var/www:/bin/sh' \
    'user1000:x:1000:1000::/home/user1000:/bin/sh' >"$R/etc/passwd"
printf '%s\n' 'root:x:0:' 'www-data:x:33:' 'users:x:100:' 'group50000:x:50000:' >"$R/etc/group"
echo "critest image built by imgsvc scripts/critest-images.sh" >"$R/etc/critest-image"
umoci repack "${ROOTLESS[@]}" --refresh-bundle --image "$L:base" "$B"

# variant REF [umoci config args...]: a tag of its own, from the base layer.
# The label makes every variant's config, hence its image id, distinct.
variant() {
    local ref=$1; shift
    umoci config --image "$L:base" --tag "$ref" --os linux --architecture amd64 \
        --config.cmd /bin/sh --config.label "org.imgsvc.critest=$ref" "$@"
}
variant plain
variant one
variant two
variant three
variant tags
variant uid --config.user 1002
variant username --config.user www-data
variant uid-group --config.user 1003:users
variant username-group --config.user www-data:users
variant predefined-group --config.user 1000:50000
variant pause --config.user 65535:65535

push() { # push LAYOUT_REF REPO:TAG
    skopeo --insecure-policy copy -q --dest-tls-verify=false \
        ${CRITEST_IMAGES_CREDS:+--dest-creds "$CRITEST_IMAGES_CREDS"} \
        "oci:$L:$1" "docker://$ADDR/$2"
}
P=k8s-staging-cri-tools
push plain "$P/test-image-latest:latest"
push plain "$P/test-image-tag:test"
push plain "$P/test-image-tag:all"
push one "$P/test-image-1:latest"
push two "$P/test-image-2:latest"
push three "$P/test-image-3:latest"
push tags "$P/test-image-tags:1"
push tags "$P/test-image-tags:2"
push tags "$P/test-image-tags:3"
push uid "$P/test-image-user-uid:latest"
push username "$P/test-image-user-username:latest"
push uid-group "$P/test-image-user-uid-group:latest"
push username-group "$P/test-image-user-username-group:latest"
push predefined-group "$P/test-image-predefined-group:latest"
push pause pause:3.9
log "critest images pushed to $ADDR"

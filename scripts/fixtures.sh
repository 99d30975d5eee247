#!/usr/bin/env bash
# Build real container images for imgsvc's tests and push them to a registry.
#
#   scripts/fixtures.sh build        build OCI layouts into the cache (idempotent),
#                                    print the cache directory on stdout
#   scripts/fixtures.sh push ADDR    build if needed, then push every fixture to
#                                    the plain-HTTP registry at ADDR (host:port)
#
# Environment:
#   IMGSVC_FIXTURES          cache directory (default /var/tmp/imgsvc-fixtures)
#   IMGSVC_FIXTURE_BIG_MB    if set, also build/push fixture/big:latest with a
#                            random layer of this many MiB
#   IMGSVC_DEBIAN_MIRROR     debootstrap mirror (default http://deb.debian.org/debian)
#   IMGSVC_REGISTRY_CREDS    USER:PASS for registries started with --htpasswd
#
# Pushed images (linux/amd64 unless noted):
#   fixture/debian:v1            debootstrap minbase bookworm + add / delete /
#                                opaque-dir layers; expected rootfs in
#                                $IMGSVC_FIXTURES/debian-rootfs.tar
#   fixture/small:a, :b          tiny image, both tags -> same manifest
#   fixture/small-v2s2:latest    same, Docker schema 2 media types
#   fixture/small-zstd:latest    same, zstd layers
#   fixture/small-plain:latest   same, uncompressed layers
#   fixture/root:latest          User 0
#   fixture/named:latest         User nobody
#   fixture/multi:latest         index: linux/amd64, linux/arm64/v8, linux/arm/v7,
#                                unknown/unknown attestation manifest
#   fixture/noplatform:latest    index: linux/s390x, windows/amd64 only
#   fixture/artifact:latest      non-image OCI artifact
#   fixture/nomediatype:latest   OCI manifest without top-level mediaType
#   fixture/big:latest           only with IMGSVC_FIXTURE_BIG_MB

# jq programs use $variables inside single quotes on purpose.
# shellcheck disable=SC2016
set -euo pipefail

# Bump when the fixture definitions below change, so old caches get rebuilt.
FIXTURES_VERSION=1

CACHE=${IMGSVC_FIXTURES:-/var/tmp/imgsvc-fixtures}
SUITE=bookworm
MIRROR=${IMGSVC_DEBIAN_MIRROR:-http://deb.debian.org/debian}
BIG_MB=${IMGSVC_FIXTURE_BIG_MB:-}
CREDS=${IMGSVC_REGISTRY_CREDS:-}

MT_MANIFEST=application/vnd.oci.image.manifest.v1+json
MT_INDEX=application/vnd.oci.image.index.v1+json
MT_CONFIG=application/vnd.oci.image.config.v1+json
MT_LAYER_GZIP=application/vnd.oci.image.layer.v1.tar+gzip
MT_LAYER_TAR=application/vnd.oci.image.layer.v1.tar
REF_NAME=org.opencontainers.image.ref.name
PATH_ENV=PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

log() { echo "fixtures.sh: $*" >&2; }
die() { echo "fixtures.sh: error: $*" >&2; exit 1; }

need() { # need CMD PACKAGE
    command -v "$1" >/dev/null 2>&1 || die "'$1' not found; install it with: apt-get install -y $2"
}

usage() {
    # The header comment (up to the first blank line) is the help text.
    awk 'NR > 1 && /^$/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0" >&2
    exit 2
}

# ---------------------------------------------------------------------------
# Temporary directories. Everything is built under $CACHE/.tmp-* and renamed
# into place when complete, so an interrupted build never looks finished.

TMPDIRS=()

# rm -rf that never follows into mounts (debootstrap mounts /proc and /sys in
# its target; an interrupted run can leave them behind).
safe_rm() {
    local d=$1 m
    [[ -e $d ]] || return 0
    # Deepest mounts first.
    while read -r m; do
        umount -l "$m" 2>/dev/null || true
    done < <(awk -v p="$(realpath "$d")/" 'index($2"/", p) == 1 { print $2 }' /proc/mounts | sort -r)
    rm -rf --one-file-system "$d"
}

cleanup() {
    local d
    for d in "${TMPDIRS[@]}"; do safe_rm "$d"; done
}
trap cleanup EXIT

mktmp() { # mktmp VAR NAME: VAR := new empty dir under the cache, removed on exit
    # (sets a variable rather than printing: $(...) would run in a subshell
    # and lose the TMPDIRS registration)
    local d
    d=$(mktemp -d "$CACHE/.tmp-$2.XXXXXX")
    TMPDIRS+=("$d")
    printf -v "$1" %s "$d"
}

# ---------------------------------------------------------------------------
# Small OCI image-layout helpers (umoci does the layer work; these do the
# manifest/index surgery umoci has no command for).

blob_path() { echo "$1/blobs/sha256/${2#sha256:}"; }

# blob_add LAYOUT FILE MEDIATYPE -> prints a compact descriptor JSON.
blob_add() {
    local l=$1 f=$2 mt=$3 hex size
    hex=$(sha256sum "$f" | cut -d' ' -f1)
    size=$(stat -c %s "$f")
    mkdir -p "$l/blobs/sha256"
    [[ -e $l/blobs/sha256/$hex ]] || cp "$f" "$l/blobs/sha256/$hex"
    jq -ncj --arg mt "$mt" --arg d "sha256:$hex" --argjson s "$size" \
        '{mediaType: $mt, digest: $d, size: $s}'
}

# json_add LAYOUT MEDIATYPE JSON -> descriptor; stores JSON compactly, no newline.
json_add() {
    local l=$1 mt=$2 json=$3 f
    f=$(mktemp)
    jq -cj . <<<"$json" >"$f"
    blob_add "$l" "$f" "$mt"
    rm -f "$f"
}

# ref_desc LAYOUT REF -> descriptor that index.json names REF (without annotations).
ref_desc() {
    jq -cje --arg r "$2" --arg k "$REF_NAME" \
        'first(.manifests[] | select(.annotations[$k] == $r)) | del(.annotations)' \
        "$1/index.json" || die "no ref '$2' in $1"
}

# ref_set LAYOUT REF DESCRIPTOR: point REF at DESCRIPTOR in index.json.
ref_set() {
    local l=$1 r=$2 d=$3
    jq -c --arg r "$r" --arg k "$REF_NAME" --argjson d "$d" \
        '.manifests = ([.manifests[] | select(.annotations[$k] != $r)]
                       + [$d + {annotations: (($d.annotations // {}) + {($k): $r})}])' \
        "$l/index.json" >"$l/index.json.new"
    mv "$l/index.json.new" "$l/index.json"
}

# edit_image LAYOUT SRC_REF DST_REF CONFIG_FILTER MANIFEST_FILTER [jq args...]
# Rewrites an image's config and/or manifest with jq, stores the results as new
# blobs and points DST_REF at the new manifest. Always sets the manifest's
# top-level mediaType (umoci and skopeo 1.9 omit it, real-world builders set
# it); MANIFEST_FILTER may delete it again. A CONFIG_FILTER of "." keeps the
# config blob byte-for-byte.
edit_image() {
    local l=$1 src=$2 dst=$3 cf=$4 mf=$5; shift 5
    local mfile cdesc tmp
    mfile=$(ref_desc "$l" "$src")
    mfile=$(blob_path "$l" "$(jq -r .digest <<<"$mfile")")
    cdesc=$(jq -c .config "$mfile")
    if [[ $cf != . ]]; then
        tmp=$(mktemp)
        jq -cj "$@" "$cf" "$(blob_path "$l" "$(jq -r .digest <<<"$cdesc")")" >"$tmp"
        cdesc=$(blob_add "$l" "$tmp" "$(jq -r .mediaType <<<"$cdesc")")
        rm -f "$tmp"
    fi
    tmp=$(mktemp)
    jq -cj "$@" --argjson cfg "$cdesc" --arg mt "$MT_MANIFEST" \
        "({schemaVersion: 2, mediaType: \$mt} + .) | .config = \$cfg | $mf" "$mfile" >"$tmp"
    ref_set "$l" "$dst" "$(blob_add "$l" "$tmp" "$MT_MANIFEST")"
    rm -f "$tmp"
}

# append_layer LAYOUT REF TARFILE CREATED_BY: add an uncompressed tar as a new
# gzip layer. Used instead of `umoci insert`, whose 0.4.7 layers lack the tar
# end-of-archive blocks (GNU tar: "Unexpected EOF in archive").
append_layer() {
    local l=$1 ref=$2 tarf=$3 by=$4 diffid ldesc gz
    diffid=sha256:$(sha256sum "$tarf" | cut -d' ' -f1)
    gz=$(mktemp)
    gzip -n -c "$tarf" >"$gz"
    ldesc=$(blob_add "$l" "$gz" "$MT_LAYER_GZIP")
    rm -f "$gz"
    edit_image "$l" "$ref" "$ref" \
        '.rootfs.diff_ids += [$diffid] | .history += [{created: $now, created_by: $by}]' \
        '.layers += [$layer]' \
        --arg diffid "$diffid" --arg by "$by" --argjson layer "$ldesc" \
        --arg now "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
}

# tar_dir DIR OUT: reproducible ustar of DIR's contents (root-owned, fixed
# mtime). Members are named "opt/..." like umoci's and Docker's layers, not
# "./opt/...", and there is no entry for the root directory itself.
tar_dir() {
    local names
    mapfile -t names < <(ls -A "$1")
    tar -C "$1" --format=ustar --sort=name --numeric-owner --owner=0 --group=0 \
        --mtime=2024-01-01T00:00:00Z -cf "$2" -- "${names[@]}"
}

# new_image LAYOUT REF BUNDLE: empty image REF, unpacked into BUNDLE (its
# rootfs/ is then filled and repacked).
new_image() {
    [[ -e $1/index.json ]] || umoci init --layout "$1"
    umoci new --image "$1:$2"
    umoci unpack --image "$1:$2" "$3" >/dev/null
}

repack() { # repack LAYOUT REF BUNDLE CREATED_BY
    # --refresh-bundle: diff the next repack against this one, not against the
    # original empty image, so each repack is one layer of a stack.
    umoci repack --refresh-bundle --history.created_by "$4" --image "$1:$2" "$3"
}

# ---------------------------------------------------------------------------
# Cache units. Each is complete iff its final path exists.

unit_done() { [[ -e $CACHE/$1 ]]; }

finish_unit() { # finish_unit TMPDIR NAME: atomic publish
    mv -T "$1" "$CACHE/$2"
}

build_debootstrap() {
    local out=debootstrap-$SUITE-minbase.tar t
    unit_done "$out" && return 0
    need debootstrap debootstrap
    log "debootstrap --variant=minbase $SUITE (takes a minute, cached afterwards)"
    mktmp t debootstrap
    if ! debootstrap --variant=minbase "$SUITE" "$t/root" "$MIRROR" >"$t/log" 2>&1; then
        tail -n 30 "$t/log" >&2
        die "debootstrap failed (mirror $MIRROR)"
    fi
    tar -C "$t/root" --numeric-owner --xattrs --xattrs-include='*' -cf "$t/rootfs.tar" .
    mv "$t/rootfs.tar" "$CACHE/$out"
    safe_rm "$t"
}

# fixture/debian:v1: layers (a) debootstrap rootfs, (b) added/modified files,
# (c) deletions (whiteouts), (d) a directory replaced wholesale (opaque
# whiteout). Also the expected merged rootfs as debian-rootfs.tar.
build_debian() {
    if unit_done debian && unit_done debian-rootfs.tar; then return 0; fi
    build_debootstrap
    log "building fixture/debian:v1"
    local t l b r s
    mktmp t debian
    l=$t/oci
    b=$t/bundle
    new_image "$l" v1 "$b"
    r=$b/rootfs

    # (a) base. /dev stays empty as in real base images: device nodes are the
    # runtime's business.
    tar -C "$r" --numeric-owner --xattrs --xattrs-include='*' -xpf "$CACHE/debootstrap-$SUITE-minbase.tar"
    find "$r/dev" -mindepth 1 -delete
    repack "$l" v1 "$b" "debootstrap --variant=minbase $SUITE"

    # (b) additions: regular files, nested dirs, symlink, hard link, setuid,
    # non-root owner, a modified existing file, and things (c)/(d) remove.
    mkdir -p "$r/etc/imgsvc-fixture/nested/deep" "$r/etc/imgsvc-fixture/remove-dir/sub" \
        "$r/opt/imgsvc/replaced/old-sub"
    echo "hello from imgsvc fixture layer b" >"$r/etc/imgsvc-fixture/hello.txt"
    echo "deep file" >"$r/etc/imgsvc-fixture/nested/deep/file.txt"
    ln -s hello.txt "$r/etc/imgsvc-fixture/hello-link"
    ln "$r/etc/imgsvc-fixture/hello.txt" "$r/etc/imgsvc-fixture/hello-hardlink"
    printf '#!/bin/sh\necho setuid\n' >"$r/etc/imgsvc-fixture/setuid-script"
    chmod 4755 "$r/etc/imgsvc-fixture/setuid-script"
    echo "owned by 1000" >"$r/etc/imgsvc-fixture/user-owned.txt"
    chown 1000:1000 "$r/etc/imgsvc-fixture/user-owned.txt"
    echo "will be deleted in layer c" >"$r/etc/imgsvc-fixture/remove-me.txt"
    echo "dir deleted in layer c" >"$r/etc/imgsvc-fixture/remove-dir/sub/file.txt"
    echo "old 1" >"$r/opt/imgsvc/replaced/old1.txt"
    echo "old 2" >"$r/opt/imgsvc/replaced/old-sub/old2.txt"
    echo "imgsvc fixture image" >>"$r/etc/motd"
    repack "$l" v1 "$b" "add /etc/imgsvc-fixture, /opt/imgsvc"

    # (c) deletions -> .wh.<name> entries.
    rm -rf "$r"/usr/share/doc/* "$r/usr/share/man" \
        "$r/etc/imgsvc-fixture/remove-me.txt" "$r/etc/imgsvc-fixture/remove-dir"
    repack "$l" v1 "$b" "rm -rf /usr/share/doc/* /usr/share/man ..."

    # (d) /opt/imgsvc/replaced replaced by a new directory: .wh..wh..opq.
    s=$t/opaque
    mkdir -p "$s/opt/imgsvc/replaced"
    touch "$s/opt/imgsvc/replaced/.wh..wh..opq"
    echo "new content after opaque whiteout" >"$s/opt/imgsvc/replaced/new.txt"
    chmod -R u=rwX,go=rX "$s"
    chmod 0 "$s/opt/imgsvc/replaced/.wh..wh..opq"
    tar_dir "$s" "$t/opaque.tar"
    append_layer "$l" v1 "$t/opaque.tar" "replace /opt/imgsvc/replaced (opaque)"

    umoci config --image "$l:v1" --os linux --architecture amd64 \
        --config.user 65534:65534 --config.cmd /bin/sh --config.env "$PATH_ENV" \
        --config.label org.imgsvc.fixture=debian
    umoci gc --layout "$l"
    edit_image "$l" v1 v1 . .

    # Expected merged filesystem, as umoci (an independent implementation)
    # applies the layers and whiteouts.
    umoci unpack --image "$l:v1" "$t/unpacked" >/dev/null
    tar -C "$t/unpacked/rootfs" --numeric-owner --xattrs --xattrs-include='*' --sort=name \
        -cf "$t/rootfs.tar" .
    safe_rm "$t/unpacked"

    mv "$t/rootfs.tar" "$CACHE/debian-rootfs.tar"
    rm -rf "$CACHE/debian"
    finish_unit "$l" debian
    safe_rm "$t"
}

# fixture/small (refs a, b, zstd, plain): a few files/dirs and a symlink.
build_small() {
    unit_done small && return 0
    log "building fixture/small*"
    local t l b r z f layers ld gz plain
    mktmp t small
    l=$t/oci
    b=$t/bundle
    new_image "$l" a "$b"
    r=$b/rootfs
    mkdir -p "$r/etc" "$r/data/dir1" "$r/data/empty"
    echo "hello from fixture/small" >"$r/hello.txt"
    printf 'key=value\nother=1\n' >"$r/etc/small.conf"
    echo "file in dir1" >"$r/data/dir1/file.txt"
    ln -s hello.txt "$r/hello-link"
    chown -R 1000:1000 "$r/data"
    repack "$l" a "$b" "small: files"
    echo "second layer" >"$r/data/dir1/second.txt"
    repack "$l" a "$b" "small: second file"
    umoci config --image "$l:a" --os linux --architecture amd64 \
        --config.user 1000:1000 --config.cmd /bin/sh --config.env "$PATH_ENV" \
        --config.workingdir /data --config.label org.imgsvc.fixture=small
    umoci gc --layout "$l"
    edit_image "$l" a a . .
    ref_set "$l" b "$(ref_desc "$l" a)"

    # zstd layers: skopeo recompresses; the config is untouched (diff_ids are
    # digests of the uncompressed tars).
    z=$t/zstd
    skopeo --insecure-policy copy -q --dest-compress-format zstd "oci:$l:a" "oci:$z:latest"
    for f in "$z"/blobs/sha256/*; do
        [[ -e $l/blobs/sha256/${f##*/} ]] || cp "$f" "$l/blobs/sha256/"
    done
    ref_set "$l" zstd "$(ref_desc "$z" latest)"
    edit_image "$l" zstd zstd . .

    # Uncompressed layers: skopeo always compresses for registries, so
    # decompress by hand; again the config stays the same.
    layers=[]
    while read -r ld; do
        gz=$(blob_path "$l" "$(jq -r .digest <<<"$ld")")
        plain=$t/layer.tar
        gzip -dc "$gz" >"$plain"
        layers=$(jq -c --argjson d "$(blob_add "$l" "$plain" "$MT_LAYER_TAR")" '. + [$d]' <<<"$layers")
        rm -f "$plain"
    done < <(jq -c '.layers[]' "$(blob_path "$l" "$(ref_desc "$l" a | jq -r .digest)")")
    edit_image "$l" a plain . '.layers = $layers' --argjson layers "$layers"

    finish_unit "$l" small
    safe_rm "$t"
}

# Everything tiny that differs by config, platform or manifest shape.
build_tiny() {
    unit_done tiny && return 0
    log "building fixture/root, named, multi, noplatform, artifact, nomediatype"
    local t l b r s arch amd64 entries att
    mktmp t tiny
    l=$t/oci
    b=$t/bundle
    new_image "$l" base "$b"
    r=$b/rootfs
    mkdir -p "$r/etc" "$r/tmp"
    chmod 1777 "$r/tmp"
    # passwd/group so that "nobody" resolves inside the image.
    printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n' >"$r/etc/passwd"
    printf 'root:x:0:\nnogroup:x:65534:\n' >"$r/etc/group"
    echo "tiny fixture" >"$r/etc/tiny.txt"
    repack "$l" base "$b" "tiny: base files"

    tiny_config() { # REF ARGS...: new ref from base with umoci config args
        local ref=$1; shift
        umoci config --image "$l:base" --tag "$ref" --config.cmd /bin/sh \
            --config.env "$PATH_ENV" "$@"
    }
    tiny_config root --os linux --architecture amd64 --config.user 0 \
        --config.label org.imgsvc.fixture=root
    tiny_config named --os linux --architecture amd64 --config.user nobody \
        --config.label org.imgsvc.fixture=named
    tiny_config nomediatype --os linux --architecture amd64 --config.user 0 \
        --config.label org.imgsvc.fixture=nomediatype

    # One image per platform, each with its own /etc/imgsvc-arch layer so the
    # content (not only the config) tells which one was pulled.
    for arch in amd64 arm64 arm s390x windows; do
        local os=linux goarch=$arch
        [[ $arch == windows ]] && { os=windows; goarch=amd64; }
        tiny_config "$arch" --os "$os" --architecture "$goarch" --config.user 0 \
            --config.label org.imgsvc.fixture=multi --config.label "arch=$arch"
        s=$t/arch-$arch
        mkdir -p "$s/etc"
        echo "$arch" >"$s/etc/imgsvc-arch"
        tar_dir "$s" "$t/arch-$arch.tar"
        append_layer "$l" "$arch" "$t/arch-$arch.tar" "arch marker $arch"
    done
    umoci gc --layout "$l"
    for s in root named amd64 s390x; do edit_image "$l" "$s" "$s" . .; done
    edit_image "$l" arm64 arm64 '.variant = "v8"' .
    edit_image "$l" arm arm '.variant = "v7"' .
    edit_image "$l" windows windows '.["os.version"] = "10.0.20348.1"' .
    edit_image "$l" nomediatype nomediatype . 'del(.mediaType)'

    # BuildKit-style attestation manifest for the amd64 image.
    amd64=$(ref_desc "$l" amd64)
    local stmt cfg layer man
    stmt=$(jq -nc --arg d "$(jq -r .digest <<<"$amd64")" '{
        _type: "https://in-toto.io/Statement/v0.1",
        predicateType: "https://slsa.dev/provenance/v0.2",
        subject: [{name: "pkg:docker/fixture/multi@latest?platform=linux%2Famd64",
                   digest: {sha256: ($d | ltrimstr("sha256:"))}}],
        predicate: {builder: {id: "imgsvc-fixtures"}}}')
    layer=$(json_add "$l" application/vnd.in-toto+json "$stmt" |
        jq -c '. + {annotations: {"in-toto.io/predicate-type": "https://slsa.dev/provenance/v0.2"}}')
    cfg=$(json_add "$l" "$MT_CONFIG" "$(jq -nc --argjson ly "$layer" '{
        architecture: "unknown", os: "unknown", config: {},
        rootfs: {type: "layers", diff_ids: [$ly.digest]}}')")
    att=$(json_add "$l" "$MT_MANIFEST" "$(jq -nc --arg mt "$MT_MANIFEST" --argjson c "$cfg" --argjson ly "$layer" \
        '{schemaVersion: 2, mediaType: $mt, config: $c, layers: [$ly]}')")

    plat() { # REF PLATFORM_JSON -> descriptor with platform
        ref_desc "$l" "$1" | jq -c --argjson p "$2" '. + {platform: $p}'
    }
    entries=$(jq -sc . <<EOF
$(plat amd64 '{"architecture":"amd64","os":"linux"}')
$(plat arm64 '{"architecture":"arm64","os":"linux","variant":"v8"}')
$(plat arm '{"architecture":"arm","os":"linux","variant":"v7"}')
$(jq -c --arg d "$(jq -r .digest <<<"$amd64")" '. + {platform: {architecture: "unknown", os: "unknown"},
    annotations: {"vnd.docker.reference.digest": $d, "vnd.docker.reference.type": "attestation-manifest"}}' <<<"$att")
EOF
)
    ref_set "$l" multi "$(json_add "$l" "$MT_INDEX" \
        "$(jq -nc --arg mt "$MT_INDEX" --argjson m "$entries" '{schemaVersion: 2, mediaType: $mt, manifests: $m}')")"

    entries=$(jq -sc . <<EOF
$(plat s390x '{"architecture":"s390x","os":"linux"}')
$(plat windows '{"architecture":"amd64","os":"windows","os.version":"10.0.20348.1"}')
EOF
)
    ref_set "$l" noplatform "$(json_add "$l" "$MT_INDEX" \
        "$(jq -nc --arg mt "$MT_INDEX" --argjson m "$entries" '{schemaVersion: 2, mediaType: $mt, manifests: $m}')")"

    # A non-image artifact: custom config type, artifactType, non-tar layer.
    cfg=$(json_add "$l" application/vnd.example.thing.config+json '{"thing":"imgsvc-fixture"}')
    s=$t/artifact.txt
    echo "hello from an OCI artifact, not a tar" >"$s"
    layer=$(blob_add "$l" "$s" application/vnd.example.thing.layer.v1+text |
        jq -c '. + {annotations: {"org.opencontainers.image.title": "artifact.txt"}}')
    man=$(jq -nc --arg mt "$MT_MANIFEST" --argjson c "$cfg" --argjson ly "$layer" '{
        schemaVersion: 2, mediaType: $mt, artifactType: "application/vnd.example.thing.v1",
        config: $c, layers: [$ly],
        annotations: {"org.opencontainers.image.description": "imgsvc test artifact"}}')
    ref_set "$l" artifact "$(json_add "$l" "$MT_MANIFEST" "$man")"

    finish_unit "$l" tiny
    safe_rm "$t"
}

build_big() {
    [[ -n $BIG_MB ]] || return 0
    [[ $BIG_MB =~ ^[0-9]+$ ]] || die "IMGSVC_FIXTURE_BIG_MB must be a number of MiB"
    unit_done "big-$BIG_MB" && return 0
    log "building fixture/big:latest ($BIG_MB MiB random layer)"
    local t l b
    mktmp t big
    l=$t/oci
    b=$t/bundle
    new_image "$l" latest "$b"
    head -c "$((BIG_MB * 1024 * 1024))" /dev/urandom >"$b/rootfs/random.bin"
    repack "$l" latest "$b" "random $BIG_MB MiB"
    safe_rm "$b"
    umoci config --image "$l:latest" --os linux --architecture amd64 --config.user 0 \
        --config.cmd /bin/sh --config.label org.imgsvc.fixture=big
    umoci gc --layout "$l"
    edit_image "$l" latest latest . .
    finish_unit "$l" "big-$BIG_MB"
    safe_rm "$t"
}

cmd_build() {
    need umoci umoci
    need skopeo skopeo
    need jq jq
    need flock util-linux
    need gzip gzip
    [[ $(id -u) == 0 ]] || die "building fixtures needs root (debootstrap, file ownership)"
    mkdir -p "$CACHE"
    CACHE=$(realpath "$CACHE")
    [[ $CACHE != *:* ]] || die "IMGSVC_FIXTURES must not contain ':' (skopeo's oci: syntax)"

    # Serialize concurrent builders (parallel test runs share the cache).
    exec 9>"$CACHE/.lock"
    flock 9
    local d
    for d in "$CACHE"/.tmp-*; do
        if [[ -e $d ]]; then safe_rm "$d"; fi
    done
    if [[ $(cat "$CACHE/VERSION" 2>/dev/null || true) != "$FIXTURES_VERSION" ]]; then
        # Definitions changed: drop built units, keep the debootstrap tarball.
        rm -rf "$CACHE/debian" "$CACHE/debian-rootfs.tar" "$CACHE/small" "$CACHE/tiny" "$CACHE"/big-*
        echo "$FIXTURES_VERSION" >"$CACHE/VERSION"
    fi
    # umoci/skopeo chatter goes to stderr; stdout is for results only.
    {
        build_debian
        build_small
        build_tiny
        build_big
    } >&2
    flock -u 9
}

# ---------------------------------------------------------------------------
# Pushing.

ADDR=
curl_reg() { curl -sS ${CREDS:+-u "$CREDS"} "$@"; }

skopeo_push() { # skopeo_push SRC NAME:TAG [skopeo copy args...]
    local src=$1 dst=$2; shift 2
    log "push $dst"
    skopeo --insecure-policy copy -q --dest-tls-verify=false ${CREDS:+--dest-creds "$CREDS"} \
        "$@" "$src" "docker://$ADDR/$dst"
}

# http_blob NAME LAYOUT DIGEST: monolithic blob upload unless already present.
http_blob() {
    local name=$1 l=$2 dg=$3 f hdr loc code sep
    f=$(blob_path "$l" "$dg")
    code=$(curl_reg -o /dev/null -w '%{http_code}' -I "http://$ADDR/v2/$name/blobs/$dg")
    [[ $code == 200 ]] && return 0
    hdr=$(curl_reg -o /dev/null -D - -X POST "http://$ADDR/v2/$name/blobs/uploads/")
    code=$(head -n1 <<<"$hdr" | awk '{print $2}')
    [[ $code == 202 ]] || die "POST blob upload for $name: HTTP $code"
    loc=$(awk 'tolower($1) == "location:" { print $2 }' <<<"$hdr" | tr -d '\r')
    [[ $loc == /* ]] && loc=http://$ADDR$loc
    # distribution's Location already carries ?_state=...; append with '&'.
    sep='?'
    [[ $loc == *\?* ]] && sep='&'
    code=$(curl_reg -o /dev/null -w '%{http_code}' -X PUT -H 'Content-Type: application/octet-stream' \
        --upload-file "$f" "$loc${sep}digest=$dg")
    [[ $code == 201 ]] || die "PUT blob $dg to $name: HTTP $code"
}

# http_tree NAME LAYOUT DIGEST MEDIATYPE REFERENCE: push a manifest or index
# and everything it references, children first (the registry checks that).
http_tree() {
    local name=$1 l=$2 dg=$3 mt=$4 ref=$5 f child got
    f=$(blob_path "$l" "$dg")
    if [[ $mt == "$MT_INDEX" || $mt == application/vnd.docker.distribution.manifest.list.v2+json ]]; then
        while read -r child; do
            http_tree "$name" "$l" "$(jq -r .digest <<<"$child")" "$(jq -r .mediaType <<<"$child")" \
                "$(jq -r .digest <<<"$child")"
        done < <(jq -c '.manifests[]' "$f")
    else
        while read -r child; do
            http_blob "$name" "$l" "$child"
        done < <(jq -r '.config.digest, .layers[].digest' "$f")
    fi
    got=$(curl_reg -o /dev/null -D - -X PUT -H "Content-Type: $mt" --data-binary "@$f" \
        "http://$ADDR/v2/$name/manifests/$ref" | tr -d '\r')
    [[ $(head -n1 <<<"$got" | awk '{print $2}') == 201 ]] ||
        die "PUT manifest $name:$ref: $(head -n1 <<<"$got")"
    got=$(awk 'tolower($1) == "docker-content-digest:" { print $2 }' <<<"$got")
    [[ $got == "$dg" ]] || die "registry computed $got for $name:$ref, expected $dg"
}

http_push() { # http_push LAYOUT REF NAME:TAG
    local l=$1 ref=$2 name=${3%:*} tag=${3##*:} d
    log "push $3 (HTTP API)"
    d=$(ref_desc "$l" "$ref")
    http_tree "$name" "$l" "$(jq -r .digest <<<"$d")" "$(jq -r .mediaType <<<"$d")" "$tag"
}

cmd_push() {
    [[ $# -eq 1 ]] || usage
    ADDR=$1
    need curl curl
    local code
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://$ADDR/v2/" || true)
    [[ $code == 200 || $code == 401 ]] || die "no registry answering on http://$ADDR/v2/ (got '$code')"
    cmd_build >/dev/null

    local c=$CACHE
    skopeo_push "oci:$c/debian:v1" fixture/debian:v1
    skopeo_push "oci:$c/small:a" fixture/small:a
    skopeo_push "oci:$c/small:b" fixture/small:b
    skopeo_push "oci:$c/small:a" fixture/small-v2s2:latest --format v2s2
    # Raw API for the rest: exact bytes, no client-side rewriting.
    http_push "$c/small" zstd fixture/small-zstd:latest
    http_push "$c/small" plain fixture/small-plain:latest
    skopeo_push "oci:$c/tiny:root" fixture/root:latest
    skopeo_push "oci:$c/tiny:named" fixture/named:latest
    http_push "$c/tiny" multi fixture/multi:latest
    http_push "$c/tiny" noplatform fixture/noplatform:latest
    http_push "$c/tiny" artifact fixture/artifact:latest
    http_push "$c/tiny" nomediatype fixture/nomediatype:latest
    if [[ -n $BIG_MB ]]; then
        skopeo_push "oci:$c/big-$BIG_MB:latest" fixture/big:latest
    fi
    log "all fixtures pushed to $ADDR"
}

[[ $# -ge 1 ]] || usage
sub=$1; shift
case $sub in
    build) [[ $# -eq 0 ]] || usage; cmd_build; echo "$CACHE" ;;
    push) cmd_push "$@" ;;
    *) usage ;;
esac

#!/usr/bin/env bash
# Install the imgsvc C library into PREFIX, for `pkg-config imgsvc`.
#
#   scripts/install-c.sh PREFIX
#
# Copies target/release/libimgsvc.so and libimgsvc.a to PREFIX/lib,
# include/imgsvc.h to PREFIX/include, and writes PREFIX/lib/pkgconfig/imgsvc.pc.
# Run `cargo build --release` first. Then, for a PREFIX outside the default
# search paths:
#
#   export PKG_CONFIG_PATH=PREFIX/lib/pkgconfig
#   cc prog.c $(pkg-config --cflags --libs imgsvc)                  # shared
#   cc prog.c $(pkg-config --cflags imgsvc) \
#      "$(pkg-config --variable=libdir imgsvc)/libimgsvc.a" \
#      $(pkg-config --variable=native_static_libs imgsvc)          # static
#
# and at run time LD_LIBRARY_PATH=PREFIX/lib, or link with
# -Wl,-rpath,PREFIX/lib. For /usr/local or /usr the script runs ldconfig.
#
# The system libraries a static link needs (Libs.private) are what rustc
# reports for this crate (--print native-static-libs), not a hand-kept list;
# asking for them rebuilds only the small imgsvc-capi crate, once.
set -euo pipefail

die() { echo "install-c.sh: $*" >&2; exit 1; }

[[ $# -eq 1 && -n $1 ]] || die "usage: scripts/install-c.sh PREFIX"
repo=$(cd "$(dirname "$0")/.." && pwd)
prefix=$(realpath -m "$1")
built=$repo/target/release

for f in libimgsvc.so libimgsvc.a; do
    [[ -f $built/$f ]] || die "$built/$f is missing; run 'cargo build --release' first"
done

native=$(cd "$repo" && cargo rustc --release --quiet -p imgsvc-capi --lib --crate-type staticlib \
    -- --print native-static-libs 2>&1 | sed -n 's/^note: native-static-libs: //p' | tail -n 1)
[[ -n $native ]] || die "rustc did not report the native static libraries of imgsvc-capi"
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$repo/bindings/c/Cargo.toml" | head -n 1)
[[ -n $version ]] || die "no version in bindings/c/Cargo.toml"

install -d "$prefix/lib/pkgconfig" "$prefix/include"
install -m 0755 "$built/libimgsvc.so" "$prefix/lib/libimgsvc.so"
install -m 0644 "$built/libimgsvc.a" "$prefix/lib/libimgsvc.a"
install -m 0644 "$repo/include/imgsvc.h" "$prefix/include/imgsvc.h"

pc_tmp=$(mktemp "$prefix/lib/pkgconfig/.imgsvc.pc.XXXXXX")
cat >"$pc_tmp" <<PC
prefix=$prefix
exec_prefix=\${prefix}
libdir=\${exec_prefix}/lib
includedir=\${prefix}/include
# System libraries libimgsvc.a needs (from rustc --print native-static-libs).
native_static_libs=$native

Name: imgsvc
Description: Embeddable container image service (C ABI)
Version: $version
Libs: -L\${libdir} -limgsvc
Libs.private: \${native_static_libs}
Cflags: -I\${includedir}
PC
chmod 0644 "$pc_tmp"
mv -f "$pc_tmp" "$prefix/lib/pkgconfig/imgsvc.pc"

case $prefix in
    /usr | /usr/local) command -v ldconfig >/dev/null && ldconfig ;;
esac
echo "installed imgsvc $version into $prefix (pkg-config file: $prefix/lib/pkgconfig/imgsvc.pc)"

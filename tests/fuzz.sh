#!/usr/bin/env bash
# Fuzz the reference, manifest/index and image-config parsers for a bounded
# time each (IMGSVC_FUZZ_SECONDS, default 30) with cargo-fuzz on the stable
# toolchain (`--sanitizer none`: the parsers are safe Rust, so what we hunt is
# panics and broken invariants, not memory errors). Seeds live in fuzz/seeds;
# a crash leaves its input in fuzz/artifacts/<target>/ and fails the suite.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
secs=${IMGSVC_FUZZ_SECONDS:-30}
command -v cargo-fuzz >/dev/null || cargo install --locked --quiet cargo-fuzz
work=$(mktemp -d /tmp/imgsvc-fuzz.XXXXXX)
trap 'rm -rf "$work"' EXIT
cd fuzz
cargo fuzz build -s none --release
for t in reference document config; do
    mkdir -p "$work/$t"
    echo "fuzz: $t for ${secs}s"
    cargo fuzz run -s none --release "$t" "$work/$t" "seeds/$t" -- \
        -max_total_time="$secs" -max_len=65536 -print_final_stats=1 2>"$work/$t.log" ||
        { tail -40 "$work/$t.log"; echo "fuzz: $t FAILED"; exit 1; }
    grep -E 'stat::number_of_executed_units' "$work/$t.log" | sed "s/^/fuzz: $t /"
done
echo "fuzz: no panics in reference, document and config"

#!/usr/bin/env bash
# Installs what the tests need (system packages, the frontend, browser-test npm packages, the
# Python client's venv) and runs every test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test
if [ -f tests/browser/package.json ]; then
  (cd tests/browser && npm install --no-audit --no-fund --silent)
fi
# The outside API client's Python (websocket-client) and the S3 server of tests/s3.rs
# (moto[server]) live in a venv beside the build, not in the repository.
target="${CARGO_TARGET_DIR:-target}"
venv="$target/test-venv"
if ! "$venv/bin/python" -c "import websocket" 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q "websocket-client==1.9.0"
fi
if ! "$venv/bin/python" -c "import moto.server" 2>/dev/null; then
  "$venv/bin/pip" install -q "moto[server]==5.2.5"
fi
export COMFYRS_TEST_PYTHON="$(cd "$venv" && pwd)/bin/python"
# End-to-end prerequisites (browser, frontend, Python client, moto) are required here: a missing one
# fails the run instead of skipping its test.
export COMFYRS_E2E=1
cargo test --workspace --all-targets --locked
# Fuzzing, bounded (docs/security.md): the stable runner replays every target's corpus, then
# mutates it for COMFYRS_FUZZ_SECONDS per target (6 targets), in its own target dir.
fuzz_seconds="${COMFYRS_FUZZ_SECONDS:-20}"
(cd fuzz && CARGO_TARGET_DIR="$(cd .. && mkdir -p "$target" && cd "$target" && pwd)/fuzz" \
  cargo run --release --locked --bin fuzz-stable -- all --seconds "$fuzz_seconds")
# libFuzzer itself (cargo-fuzz; RUSTC_BOOTSTRAP=1 lets stable Rust build the instrumented
# targets; no sanitizer: the targets are safe Rust, and coverage-guided search is what libFuzzer
# adds over the stable runner) for COMFYRS_LIBFUZZER_SECONDS per target. It reads the committed
# corpus and writes the inputs it finds to a scratch folder; a crash fails the run and leaves the
# input in fuzz/artifacts/<target>/.
libfuzzer_seconds="${COMFYRS_LIBFUZZER_SECONDS:-20}"
libfuzzer_target="$(cd "$target" && pwd)/libfuzzer"
for fuzz_target in $(cd fuzz/fuzz_targets && ls *.rs | sed 's/\.rs$//'); do
  scratch=$(mktemp -d)
  mkdir "$scratch/new"
  if ! (cd fuzz && RUSTC_BOOTSTRAP=1 CARGO_TARGET_DIR="$libfuzzer_target" \
    cargo fuzz run --features libfuzzer --sanitizer none -O --debug-assertions \
    "$fuzz_target" "$scratch/new" "corpus/$fuzz_target" -- \
    -max_total_time="$libfuzzer_seconds" -rss_limit_mb=4096 -timeout=10 -print_final_stats=1 \
    >"$scratch/log" 2>&1); then
    tail -n 80 "$scratch/log"
    echo "libFuzzer: $fuzz_target failed (the input is in fuzz/artifacts/$fuzz_target/)" >&2
    exit 1
  fi
  grep -E '^(Done |stat::number_of_executed_units)' "$scratch/log" | sed "s/^/libFuzzer $fuzz_target: /"
  rm -rf "$scratch"
done

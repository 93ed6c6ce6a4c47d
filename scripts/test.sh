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

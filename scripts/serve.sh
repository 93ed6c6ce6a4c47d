#!/usr/bin/env bash
# Runs the comfyrs server with its embedded defaults (single user, embedded queue, one local
# worker on the CPU unless --devices names a GPU) on http://127.0.0.1:8188.
# Extra arguments go to `comfyrs serve` (e.g. --listen 0.0.0.0 --port 8188 --users users.toml).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec cargo run --release --locked -- serve "$@"

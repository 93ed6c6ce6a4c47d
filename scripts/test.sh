#!/usr/bin/env bash
# Installs what the tests need (system packages, the frontend, browser-test npm packages) and
# runs every test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test
if [ -f tests/browser/package.json ]; then
  (cd tests/browser && npm install --no-audit --no-fund --silent)
fi
cargo test --workspace --all-targets --locked

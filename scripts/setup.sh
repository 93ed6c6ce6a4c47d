#!/usr/bin/env bash
# Installs what comfyrs needs on Debian: system packages (build tools, FFmpeg libraries, and for
# the tests redis-server, ffmpeg, chromium), the ComfyUI web frontend from PyPI, and with --cuda
# nvcc + the CUDA 13.0 headers and libraries from NVIDIA's PyPI wheels (cuda/setup-cuda.sh; for
# `cargo build --features cuda`, see docs/gpu.md).
# Idempotent. Usage: scripts/setup.sh [--test] [--cuda] [--data DIR]
set -euo pipefail
cd "$(dirname "$0")/.."

FRONTEND_VERSION="${COMFYRS_FRONTEND_VERSION:-1.58.1}"
CARGO_FUZZ_VERSION=0.13.2
# The workflow templates: index + workflow JSON, and the video bundle's thumbnails (LTX-2 et al.).
TEMPLATES_JSON_VERSION="${COMFYRS_TEMPLATES_JSON_VERSION:-0.1.123}"
TEMPLATES_VIDEO_VERSION="${COMFYRS_TEMPLATES_VIDEO_VERSION:-0.3.101}"
DATA="${COMFYRS_BASE_DIR:-data}"
TEST=0
CUDA=0
while [ $# -gt 0 ]; do
  case "$1" in
    --test) TEST=1 ;;
    --cuda) CUDA=1 ;;
    --data) DATA="$2"; shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
  shift
done

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

packages=(build-essential pkg-config clang libclang-dev
          libavcodec-dev libavformat-dev libavutil-dev libswscale-dev libswresample-dev
          python3 python3-pip unzip ca-certificates)
[ "$TEST" -eq 1 ] && packages+=(redis-server ffmpeg chromium nodejs npm python3-venv)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# A machine that already has node (and npm) from elsewhere does not need Debian's.
if command -v node >/dev/null && command -v npm >/dev/null; then
  missing=("${missing[@]/nodejs}"); missing=("${missing[@]/npm}")
fi
missing=($(printf '%s\n' "${missing[@]}" | grep -v '^$' || true))
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null; then
  echo "setup: cargo (Rust >= 1.90) is required: install it with rustup (https://rustup.rs)" >&2
  exit 1
fi

# cargo-fuzz runs the libFuzzer targets of fuzz/ in the tests (scripts/test.sh).
if [ "$TEST" -eq 1 ] && ! cargo fuzz --version >/dev/null 2>&1; then
  echo "setup: installing cargo-fuzz $CARGO_FUZZ_VERSION"
  cargo install -q --locked cargo-fuzz --version "$CARGO_FUZZ_VERSION"
fi

# The ComfyUI frontend (the PyPI wheel's static files), served by `comfyrs serve`.
front="$DATA/frontend"
if [ ! -f "$front/static/index.html" ] || [ "$(cat "$front/VERSION" 2>/dev/null)" != "$FRONTEND_VERSION" ]; then
  echo "setup: installing comfyui-frontend-package $FRONTEND_VERSION into $front"
  tmp=$(mktemp -d)
  python3 -m pip download -q --no-deps --only-binary=:all: -d "$tmp" "comfyui-frontend-package==$FRONTEND_VERSION"
  rm -rf "$front/static"
  mkdir -p "$front"
  unzip -q "$tmp"/comfyui_frontend_package-*.whl 'comfyui_frontend_package/static/*' -d "$tmp/x"
  mv "$tmp/x/comfyui_frontend_package/static" "$front/static"
  echo "$FRONTEND_VERSION" > "$front/VERSION"
  rm -rf "$tmp"
fi
# The workflow templates (`comfyui-workflow-templates-json` and `-media-video` wheels), served at
# /templates/ (index.json, workflows, thumbnails).
templates="$front/templates"
templates_id="json-$TEMPLATES_JSON_VERSION video-$TEMPLATES_VIDEO_VERSION"
if [ ! -f "$templates/index.json" ] || [ "$(cat "$front/TEMPLATES_VERSION" 2>/dev/null)" != "$templates_id" ]; then
  echo "setup: installing the workflow templates ($templates_id) into $templates"
  tmp=$(mktemp -d)
  python3 -m pip download -q --no-deps --only-binary=:all: -d "$tmp" \
    "comfyui-workflow-templates-json==$TEMPLATES_JSON_VERSION" \
    "comfyui-workflow-templates-media-video==$TEMPLATES_VIDEO_VERSION"
  rm -rf "$templates"
  mkdir -p "$templates"
  for wheel in "$tmp"/*.whl; do
    unzip -q -o "$wheel" '*/templates/*' -d "$tmp/x"
  done
  for dir in "$tmp"/x/*/templates; do
    cp -r "$dir"/. "$templates"/
  done
  echo "$templates_id" > "$front/TEMPLATES_VERSION"
  rm -rf "$tmp"
fi
if [ "$CUDA" -eq 1 ]; then
  cuda/setup-cuda.sh
fi
echo "setup: done"

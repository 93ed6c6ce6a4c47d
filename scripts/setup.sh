#!/usr/bin/env bash
# Installs what comfyrs needs on Debian: system packages (build tools, FFmpeg libraries, and for
# the tests redis-server, ffmpeg, chromium), the ComfyUI web frontend from PyPI, and with --cuda
# nvcc + the CUDA 13.0 headers and libraries from NVIDIA's PyPI wheels (cuda/setup-cuda.sh; for
# `cargo build --features cuda`, see docs/gpu.md).
# Idempotent. Usage: scripts/setup.sh [--test] [--cuda] [--data DIR]
set -euo pipefail
cd "$(dirname "$0")/.."

FRONTEND_VERSION="${COMFYRS_FRONTEND_VERSION:-1.58.1}"
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
[ "$TEST" -eq 1 ] && packages+=(redis-server ffmpeg chromium nodejs npm)

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
if [ "$CUDA" -eq 1 ]; then
  cuda/setup-cuda.sh
fi
echo "setup: done"

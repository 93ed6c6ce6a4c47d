#!/usr/bin/env bash
# Installs a CUDA 13.0 toolchain (nvcc, headers, cuBLAS/cuRAND/NVRTC/cudart) from NVIDIA's PyPI
# wheels on a Linux x86-64 machine with or without a GPU, and writes an env file for the build.
#
# Usage: cuda/setup-cuda.sh [--cudnn] [--cutlass]
#        . "${COMFYRS_CUDA_DIR:-$HOME/.cache/comfyrs/cuda}/env.sh"
#        cargo build --release --features cuda
#
# --cudnn    also the libcudnn.so.9 loader shim (link time only) for candle's `cudnn` feature
# --cutlass  also CUTLASS v3.5.0, seeded into cudaforge's git cache, for the `flash-attn` feature
#
# Idempotent: reinstalls only when cuda-requirements.txt changed. ~15 s download + ~10 s unpack,
# 1.2 GB on disk (cuBLASLt is 540 MB of it). Nothing here needs root. Recipe and rationale:
# docs/gpu.md.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
DEST=${COMFYRS_CUDA_DIR:-$HOME/.cache/comfyrs/cuda}
CUDA_HOME=$DEST/nvidia/cu13
STAMP=$DEST/.requirements.sha256
want=$(sha256sum "$HERE/cuda-requirements.txt" | cut -d' ' -f1)

if [ ! -x "$CUDA_HOME/bin/nvcc" ] || [ "$(cat "$STAMP" 2>/dev/null)" != "$want" ]; then
  echo "setup-cuda: installing the CUDA 13.0 wheels into $DEST"
  rm -rf "$DEST/nvidia"
  mkdir -p "$DEST"
  python3 -m pip install --quiet --disable-pip-version-check --no-deps --no-compile \
    --upgrade --require-hashes --target "$DEST" -r "$HERE/cuda-requirements.txt"
  echo "$want" > "$STAMP"
fi

# --- fix-ups the wheels need to act as a CUDA_HOME ---
# nvcc.profile links from $(TOP)/lib64.
[ -e "$CUDA_HOME/lib64" ] || ln -s lib "$CUDA_HOME/lib64"
# `-lX` needs an unversioned libX.so; the wheels ship only the versioned names.
for l in cudart cublas cublasLt curand nvrtc nvvm; do
  v=$(cd "$CUDA_HOME/lib" && ls "lib$l.so."* 2>/dev/null | grep -v '\.alt\.' | head -1 || true)
  if [ -n "$v" ]; then ln -sf "$v" "$CUDA_HOME/lib/lib$l.so"; fi
done
# A libcuda stub: every cu* entry point of this cuda.h, each returning 100 (CUDA_ERROR_NO_DEVICE),
# with the driver's SONAME libcuda.so.1. It satisfies `-lcuda` at link time and lets cuda-enabled
# binaries and tests START on a GPU-less machine (they then see "no CUDA device" and fall back to
# the CPU). Never put lib/stubs on the library path of a machine that has a GPU.
if [ ! -e "$CUDA_HOME/lib/stubs/libcuda.so.1" ]; then
  mkdir -p "$CUDA_HOME/lib/stubs"
  gcc -E -P -I"$CUDA_HOME/include" "$CUDA_HOME/include/cuda.h" \
    | grep -oE '\bcu[A-Z][A-Za-z0-9_]*[[:space:]]*\(' | tr -d ' \t(' | sort -u \
    | awk '{print "int " $1 "(void) { return 100; }"}' > "$CUDA_HOME/lib/stubs/libcuda_stub.c"
  gcc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$CUDA_HOME/lib/stubs/libcuda.so" \
    "$CUDA_HOME/lib/stubs/libcuda_stub.c"
  ln -sf libcuda.so "$CUDA_HOME/lib/stubs/libcuda.so.1"
fi

ENVS="# written by cuda/setup-cuda.sh
export CUDA_HOME=$CUDA_HOME CUDA_PATH=$CUDA_HOME CUDA_ROOT=$CUDA_HOME
export PATH=$CUDA_HOME/bin:\$PATH
# sm_90 (H100/H200) for candle's kernels; ours are built as compute_90 PTX that also JITs on newer
export CUDA_COMPUTE_CAP=90 CUDARC_CUDA_VERSION=13000 CUDAFORGE_THREADS=\$(nproc)
# to RUN cuda-enabled binaries/tests on a GPU-less machine (never on a GPU box):
export CUDA_NO_GPU_LD_LIBRARY_PATH=$CUDA_HOME/lib:$CUDA_HOME/lib/stubs"

fetch_wheel() { # name==version sha256 dir
  python3 -m pip download --quiet --disable-pip-version-check --no-deps -d "$3" "$1"
  echo "$2  $(ls "$3"/*.whl)" | sha256sum -c --quiet
}

for a in "$@"; do
  case $a in
    --cudnn)
      if [ ! -e "$DEST/cudnn/lib/libcudnn.so" ]; then
        t=$(mktemp -d)
        fetch_wheel "nvidia-cudnn-cu13==9.28.1.4" \
          a54f205b1db1f2895d99f398754db1369816f0569dd459731f925635cf7b65ec "$t"
        mkdir -p "$DEST/cudnn/lib" "$DEST/cudnn/include"
        unzip -q -o -j "$t"/*.whl 'nvidia/cudnn/lib/libcudnn.so.9' -d "$DEST/cudnn/lib"
        unzip -q -o -j "$t"/*.whl 'nvidia/cudnn/include/*' -d "$DEST/cudnn/include"
        ln -sf libcudnn.so.9 "$DEST/cudnn/lib/libcudnn.so"
        rm -rf "$t"
      fi
      ENVS="$ENVS
export CUDNN_LIB=$DEST/cudnn" ;;
    --cutlass)
      # candle-flash-attn 0.11.1 asks cudaforge for CUTLASS at this commit (= v3.5.0, identical
      # to PyPI nvidia-cutlass 3.5.0.0); cudaforge accepts a cached checkout whose HEAD names it.
      c=$DEST/cudaforge/git/checkouts/cutlass-7d49e6c7e2f8896c
      if [ ! -d "$c/include/cute" ]; then
        t=$(mktemp -d)
        fetch_wheel "nvidia-cutlass==3.5.0.0" \
          4ec3ab4820dd4ae3ebc2c5ddf23352b0dc90f779435284e7dce822006adc51f6 "$t"
        unzip -q "$t"/*.whl 'cutlass_library/source/include/*' \
          'cutlass_library/source/tools/util/include/*' -d "$t/x"
        mkdir -p "$c/tools/util"
        cp -r "$t/x/cutlass_library/source/include" "$c/"
        cp -r "$t/x/cutlass_library/source/tools/util/include" "$c/tools/util/"
        (cd "$c" && git init -q && echo 7d49e6c7e2f8896c47f586706e67e1fb215529dc > .git/HEAD)
        rm -rf "$t"
      fi
      ENVS="$ENVS
export CUDAFORGE_HOME=$DEST/cudaforge" ;;
    *) echo "setup-cuda: unknown option $a" >&2; exit 2 ;;
  esac
done

echo "$ENVS" > "$DEST/env.sh"
# shellcheck disable=SC1091
. "$DEST/env.sh"
nvcc --version | tail -1
echo "setup-cuda: wrote $DEST/env.sh"

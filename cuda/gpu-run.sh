#!/usr/bin/env bash
# Runs a comfyrs binary built with `--features cuda` on a GPU machine that has the NVIDIA driver
# (>= 580, CUDA 13.0) and the CUDA 13 libraries (a toolkit under /usr/local/cuda, or any
# python3's pip-installed nvidia wheels, e.g. a PyTorch cu130 environment) but no Rust toolchain
# and no internet. Finds libcudart/libcublas/libcublasLt/libcurand/libnvrtc, puts them on
# LD_LIBRARY_PATH, refuses to start when one is still missing, then runs the binary.
# Usage (on the GPU machine): cuda/gpu-run.sh ./comfyrs serve --devices cuda:0 ...
# Extra library folders: COMFYRS_CUDA_LIBS=dir1:dir2. See docs/gpu.md.
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: gpu-run.sh BINARY [ARGS...]" >&2; exit 2; }
dirs=()
if [ -n "${COMFYRS_CUDA_LIBS:-}" ]; then IFS=: read -r -a dirs <<< "$COMFYRS_CUDA_LIBS"; fi
for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib; do
  [ -d "$d" ] && dirs+=("$d")
done
# pip-installed CUDA 13 libraries of every python3 on the machine (site and user packages).
while IFS= read -r d; do [ -d "$d" ] && dirs+=("$d"); done < <(
  for py in $(command -v -a python3 2>/dev/null) /opt/*/.venv/bin/python3; do
    [ -x "$py" ] || continue
    "$py" - <<'P' 2>/dev/null || true
import glob, site
paths = list(site.getsitepackages()) + [site.getusersitepackages()]
for p in paths:
    for sub in ("nvidia/cu13/lib", "nvidia/cudnn/lib", "nvidia/*/lib"):
        for g in glob.glob(f"{p}/{sub}"):
            print(g)
P
  done | awk '!seen[$0]++'
)
for d in "${dirs[@]}"; do
  case "$d" in */lib/stubs*) echo "gpu-run: ignoring stub folder $d" >&2 ;; esac
done
path=$(printf '%s\n' "${dirs[@]}" | grep -v '/lib/stubs' | paste -sd: -)
export LD_LIBRARY_PATH="$path${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
if ldd "$1" | grep -q 'not found'; then
  echo "gpu-run: unresolved libraries (searched: $path):" >&2
  ldd "$1" | grep 'not found' >&2
  exit 127
fi
if command -v nvidia-smi >/dev/null; then
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader >&2 || true
fi
exec "$@"

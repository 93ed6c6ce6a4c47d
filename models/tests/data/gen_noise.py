#!/usr/bin/env python3
"""Reference draws of PyTorch's CPU normal generator for the bit-exactness tests of
`models::sampling::torch_rng` and `models::sampling::noise`.

Run with the golden venv (torch 2.7.1 CPU):

    /work/venv-golden/bin/python models/tests/data/gen_noise.py

Writes `torch_noise.safetensors` beside this script. Every tensor is float32 and keyed
`<kernel>/<case>`, where <kernel> is `avx2` (what x86-64 wheels dispatch to on AVX2/AVX-512 CPUs)
or `default` (the scalar kernel, forced with ATEN_CPU_CAPABILITY=default; what non-AVX2 CPUs run).
Cases:
  randn/seed=S/shape=AxBxC      torch.manual_seed(S); torch.randn(shape)
  seq/seed=S/draw=K             one generator, consecutive draws of SEQ_SIZES (normal-cache carry-over)
  av/seed=S/video|audio         ComfyUI RandomNoise on a nested (video, audio) latent: one generator,
                                video drawn first, then audio
  avb/seed=S/video|audio        the same with batch_index BATCH_INDEX (per-item draws 0..max)
The file's metadata records the torch version and the cases' parameters.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SEEDS = [0, 42, 2**63 + 5, 2**64 - 1]
SHAPES = [(1,), (3,), (15,), (16,), (17,), (2, 3, 5), (37,), (64,), (1, 128, 2, 3, 5)]
SEQ_SIZES = [5, 3, 20, 1, 7, 33, 2]
AV_SHAPES = {"video": (1, 128, 2, 2, 3), "audio": (1, 8, 5, 16)}
AV_SMALL_SHAPES = {"video": (1, 4, 1, 1, 3), "audio": (1, 2, 1, 3)}
AVB_SHAPES = {"video": (3, 16, 1, 2, 2), "audio": (3, 8, 3, 4)}
BATCH_INDEX = [2, 0, 2]


def prepare_noise_inner(shape, generator, batch_index):
    """ComfyUI comfy.sample.prepare_noise_inner for a float32 latent of `shape`."""
    import numpy as np
    import torch

    if batch_index is None:
        return torch.randn(shape, dtype=torch.float32, generator=generator)
    unique, inverse = np.unique(batch_index, return_inverse=True)
    kept = []
    for i in range(unique[-1] + 1):
        draw = torch.randn([1, *shape[1:]], dtype=torch.float32, generator=generator)
        if i in unique:
            kept.append(draw)
    return torch.cat([kept[i] for i in inverse], dim=0)


def prepare_noise(shapes: dict, seed: int, batch_index=None):
    """ComfyUI comfy.sample.prepare_noise for a nested latent: one generator, parts in order."""
    import torch

    generator = torch.manual_seed(seed)
    return {name: prepare_noise_inner(shape, generator, batch_index) for name, shape in shapes.items()}


def draws(kernel: str) -> dict:
    import torch

    out = {}
    for seed in SEEDS:
        for shape in SHAPES:
            torch.manual_seed(seed)
            out[f"{kernel}/randn/seed={seed}/shape={'x'.join(map(str, shape))}"] = torch.randn(shape)
        gen = torch.Generator().manual_seed(seed)
        for k, n in enumerate(SEQ_SIZES):
            out[f"{kernel}/seq/seed={seed}/draw={k}"] = torch.randn(n, generator=gen)
        for name, t in prepare_noise(AV_SHAPES, seed).items():
            out[f"{kernel}/av/seed={seed}/{name}"] = t
        for name, t in prepare_noise(AV_SMALL_SHAPES, seed).items():
            out[f"{kernel}/avsmall/seed={seed}/{name}"] = t
        for name, t in prepare_noise(AVB_SHAPES, seed, BATCH_INDEX).items():
            out[f"{kernel}/avb/seed={seed}/{name}"] = t
    return out


def child(kernel: str, path: str) -> None:
    import torch
    from safetensors.torch import save_file

    cap = torch.backends.cpu.get_cpu_capability()
    expected = {"avx2": ("AVX2", "AVX512"), "default": ("NO AVX", "DEFAULT")}[kernel]
    if cap not in expected:
        raise SystemExit(f"kernel {kernel}: CPU capability is {cap}, expected one of {expected}")
    save_file({k: v.contiguous() for k, v in draws(kernel).items()}, path)


def main() -> None:
    import torch
    from safetensors.torch import load_file, save_file

    here = Path(__file__).resolve().parent
    tensors = {}
    for kernel, cap in (("avx2", "avx2"), ("default", "default")):
        tmp = here / f".{kernel}.tmp.safetensors"
        env = dict(os.environ, ATEN_CPU_CAPABILITY=cap)
        subprocess.run([sys.executable, __file__, "--child", kernel, str(tmp)], env=env, check=True)
        tensors.update(load_file(str(tmp)))
        tmp.unlink()
    meta = {
        "torch_version": torch.__version__,
        "params": json.dumps({
            "seeds": [str(s) for s in SEEDS], "shapes": SHAPES, "seq_sizes": SEQ_SIZES,
            "av_shapes": AV_SHAPES, "av_small_shapes": AV_SMALL_SHAPES, "avb_shapes": AVB_SHAPES,
            "batch_index": BATCH_INDEX,
        }),
    }
    out = here / "torch_noise.safetensors"
    save_file(tensors, str(out), metadata=meta)
    print(f"{out}: {len(tensors)} tensors, {out.stat().st_size} bytes")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3])
    else:
        main()

#!/usr/bin/env python3
"""Reference of ComfyUI's LTXVPreprocess (comfy_extras/nodes_lt.py `preprocess`) with PyAV.

Run with the golden venv (torch, PyAV with libx264):

    /work/venv-golden/bin/python nodes/tests/data/gen_ltxv_preprocess.py

Writes `ltxv_preprocess.safetensors` beside this script: `in.image` (two 45x67 RGB frames, odd
sizes on purpose) and `out.crf<N>` for a few compression levels. The function below restates
the node's per-image steps (`ltx2-nodes.md` §3.10): even-size top-left crop, `(x*255)` truncated
to uint8, a one-frame libx264 mp4 (crf, preset veryfast, yuv420p via `reformat`), decoded back
to rgb24 and divided by 255. Metadata `params` records the PyAV / FFmpeg versions, because the
artefacts depend on the libx264 build.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import av
import numpy as np
import torch
from safetensors.torch import save_file

HERE = Path(__file__).resolve().parent
CRFS = [18, 33, 51]


def preprocess(image: torch.Tensor, crf: int) -> torch.Tensor:
    h, w = image.shape[0], image.shape[1]
    image = image[: h - h % 2, : w - w % 2]
    u8 = (image * 255).to(torch.uint8).numpy()
    buf = io.BytesIO()
    container = av.open(buf, mode="w", format="mp4")
    stream = container.add_stream("libx264", rate=1, options={"crf": str(crf), "preset": "veryfast"})
    stream.height, stream.width = u8.shape[0], u8.shape[1]
    frame = av.VideoFrame.from_ndarray(u8, format="rgb24").reformat(format="yuv420p")
    container.mux(stream.encode(frame))
    container.mux(stream.encode())
    container.close()
    buf.seek(0)
    with av.open(buf) as c:
        rgb = next(c.decode(video=0)).to_ndarray(format="rgb24")
    return torch.tensor(rgb, dtype=torch.float32) / 255.0


def main() -> None:
    g = torch.Generator().manual_seed(3)
    y, x = torch.meshgrid(torch.linspace(0, 1, 45), torch.linspace(0, 1, 67), indexing="ij")
    base = torch.stack([x, y, (x + y) / 2], dim=-1)
    images = torch.stack([base, (base + 0.25 * torch.rand(base.shape, generator=g)).clamp(0, 1)])
    out = {"in.image": images.contiguous()}
    for crf in CRFS:
        out[f"out.crf{crf}"] = torch.stack([preprocess(img, crf) for img in images]).contiguous()
    meta = {
        "description": "ComfyUI LTXVPreprocess restated with PyAV",
        "params": json.dumps({"crfs": CRFS, "pyav": av.__version__, "ffmpeg": av.library_versions}),
    }
    save_file(out, str(HERE / "ltxv_preprocess.safetensors"), meta)
    for k, v in out.items():
        print(k, tuple(v.shape))


if __name__ == "__main__":
    main()

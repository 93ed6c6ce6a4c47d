#!/usr/bin/env python3
"""Writes the quantised-checkpoint test files of `models/tests/quant_weights.rs`.

Each `quant_*.safetensors` file holds quantised layers in one of the layouts a loader meets in
the wild (shared/docs/checkpoint-formats.md §3, §4, §7.3), next to plain tensors:

  quant_ltx_fp8       official `ltx-2-19b-*-fp8` layout: F8_E4M3 weight + 0-d F32 `weight_scale`
                      + `input_scale`, no marker (ltx-core's rule); block 0 left in BF16
  quant_comfy_header  ComfyUI marker (A): `_quantization_metadata` header (fp8, nvfp4, mxfp8,
                      full_precision_matrix_mult); one stale `.comfy_quant` tensor it overrides;
                      one marker naming a layer that does not exist
  quant_comfy_tensor  ComfyUI marker (B): `.comfy_quant` tensors (fp8 e5m2 with a BF16 scale,
                      nvfp4 over two row tiles (129 rows) with U8 block scales + input_scale, nvfp4 over three
                      column tiles with a pre_quant_scale)
  quant_scaled_fp8    legacy marker (C): `scaled_fp8` (2 elements), `scale_weight`, `scale_input`
                      (one equal to 1.0, dropped); one F8 weight without scale (vanilla)
  quant_gemma_mixed   `gemma_3_12B_it_fp4_mixed`-style text encoder: nvfp4 projections, fp8
                      embedding, BF16 norms, `spiece_model` U8 first (misaligns what follows)
  quant_edge          every E4M3/E5M2 byte (NaN, inf, subnormals, -0), every E2M1 nibble pair
                      with extreme E4M3 block scales (0, NaN, subnormal, 448), E8M0 extremes
                      (0, 1, 254, 255), FP8 overflow to inf, vanilla F8 tensors, a misaligned
                      BF16 tensor and a zero-element tensor

`quant_expected.safetensors` holds, per checked tensor, what the loader must return, computed
with ComfyUI's formulas (§8.2): `<file>/<key>/f32` (F32 arithmetic; both backends agree),
`/bf16_single` (F32 arithmetic, one rounding: comfy-kitchen CUDA kernels, ltx-core) and
`/bf16_eager` (comfy-kitchen's eager backend, intermediates rounded to BF16); for a layer with a
`pre_quant_scale` also `/effective_f32` and `/effective_bf16` (columns scaled in F32, one
rounding). Its metadata `cases` lists the checked tensors (file, key, module shape, expected
format, marker source, input scale, flags).

Run with the golden venv (torch 2.7.1 CPU):
    /work/venv-golden/bin/python models/tests/data/gen_quant.py
When `comfy_kitchen` is importable (e.g. PYTHONPATH holding an unpacked comfy-kitchen 0.2.40
wheel and a stub `triton` package that raises ImportError on a machine without GPU), every eager
and F32 reference is also recomputed with comfy-kitchen's own eager dequantisers and compared bit
for bit. Output is deterministic.
"""

import argparse
import json
import struct
import zlib
from pathlib import Path

import torch
import torch.nn.functional as F

E4M3 = torch.float8_e4m3fn
E5M2 = torch.float8_e5m2
BF16 = torch.bfloat16
E4M3_MAX = 448.0
E2M1_MAX = 6.0
E2M1_VALUES = [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0]
E2M1_TABLE = torch.tensor(E2M1_VALUES + [-v for v in E2M1_VALUES])

FP8_FORMATS = {E4M3: "float8_e4m3fn", E5M2: "float8_e5m2"}
DTYPE_NAMES = {
    torch.float32: "F32",
    torch.bfloat16: "BF16",
    torch.float16: "F16",
    torch.uint8: "U8",
    E4M3: "F8_E4M3",
    E5M2: "F8_E5M2",
}


# ---------------------------------------------------------------- safetensors writer


def tensor_bytes(t):
    t = t.contiguous().reshape(-1)
    return t.view(torch.uint8).numpy().tobytes() if t.numel() else b""


def write_safetensors(path, entries, metadata=None):
    """Tensors in the given order, back to back (so offsets may be misaligned)."""
    header, blobs, offset = {}, [], 0
    if metadata:
        header["__metadata__"] = metadata
    for key, t in entries:
        data = tensor_bytes(t)
        header[key] = {
            "dtype": DTYPE_NAMES[t.dtype],
            "shape": list(t.shape),
            "data_offsets": [offset, offset + len(data)],
        }
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    path.write_bytes(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def randn(key, shape, scale=0.05):
    g = torch.Generator().manual_seed(zlib.crc32(key.encode()) ^ 20260101)
    return torch.randn(shape, generator=g) * scale


def roundup(x, m):
    return (x + m - 1) // m * m


def marker_tensor(config):
    return torch.tensor(list(json.dumps(config).encode()), dtype=torch.uint8)


# ---------------------------------------------------------------- 128x4 tiled block scales


def tile_scales(m):
    """Row-major [rows, blocks] bytes -> the cuBLAS 128x4 tile order, zero padded."""
    rows, cols = m.shape
    R, C = roundup(rows, 128), roundup(cols, 4)
    padded = torch.zeros(R, C, dtype=m.dtype)
    padded[:rows, :cols] = m
    # (row band, row-in-band = quarter*32 + r32, tile column, column-in-tile)
    t = padded.view(R // 128, 4, 32, C // 4, 4)
    # tile order: band, tile column, r32, quarter, column-in-tile
    return t.permute(0, 3, 2, 1, 4).reshape(R, C).contiguous()


def untile_scales(t, rows, cols):
    R, C = t.shape
    m = t.view(R // 128, C // 4, 32, 4, 4).permute(0, 3, 2, 1, 4).reshape(R, C)
    return m[:rows, :cols]


# ---------------------------------------------------------------- quantisers


def quant_fp8(w, dtype=E4M3, scale_dtype=torch.float32):
    """Per-tensor FP8 with scale amax/max, rounded to `scale_dtype` (the stored scale's dtype)."""
    fmax = torch.finfo(dtype).max
    scale = (w.abs().amax() / fmax).to(scale_dtype).float().reshape(())
    q = (w.float() * (1.0 / scale)).clamp(-fmax, fmax).to(dtype)
    return q, scale


def e2m1_encode(x):
    """Round-to-nearest-even E2M1 codes of values already clamped to [-6, 6]."""
    mags = torch.tensor(E2M1_VALUES)
    dist = (x.abs()[..., None] - mags).abs()
    nearest = dist == dist.min(-1, keepdim=True).values
    codes = torch.arange(8)
    even = torch.where(nearest & (codes % 2 == 0), codes, 99).min(-1).values
    any_ = torch.where(nearest, codes, 99).min(-1).values
    code = torch.where(even < 99, even, any_)
    return (code + 8 * torch.signbit(x).long()).to(torch.uint8)


def quant_nvfp4(w):
    """ComfyUI layout: U8 [Np, Kp/2] (even element high), tiled E4M3 scales, F32 global."""
    n, k = w.shape
    np_, kp = roundup(n, 16), roundup(k, 16)
    x = F.pad(w.float(), (0, kp - k, 0, np_ - n))
    s2 = (x.abs().amax() / (E4M3_MAX * E2M1_MAX)).reshape(())
    blocks = x.reshape(np_, kp // 16, 16)
    bs = (blocks.abs().amax(-1) / E2M1_MAX / s2).clamp(max=E4M3_MAX).to(E4M3)
    total = s2 * bs.float()
    safe = torch.where(total == 0, torch.ones_like(total), total)
    scaled = torch.where(total[..., None] == 0, 0.0, blocks / safe[..., None])
    codes = e2m1_encode(scaled.clamp(-E2M1_MAX, E2M1_MAX)).reshape(np_, kp)
    packed = (codes[:, 0::2] << 4) | codes[:, 1::2]
    return packed, tile_scales(bs.view(torch.uint8)).view(E4M3), s2


def e8m0_to_f32(e):
    return (e.to(torch.int32) << 23).view(torch.float32)


def quant_mxfp8(w):
    n, k = w.shape
    np_, kp = roundup(n, 32), roundup(k, 32)
    x = F.pad(w.float(), (0, kp - k, 0, np_ - n))
    blocks = x.reshape(np_, kp // 32, 32)
    amax = blocks.abs().amax(-1)
    need = (amax / E4M3_MAX).clamp(min=2.0**-127)
    e = (torch.ceil(torch.log2(need)).to(torch.int32) + 127).clamp(0, 254)
    e = torch.where(amax == 0, 0, e).to(torch.uint8)
    scale = torch.where(amax == 0, 1.0, e8m0_to_f32(e))
    q = (blocks / scale[..., None]).clamp(-E4M3_MAX, E4M3_MAX).reshape(np_, kp).to(E4M3)
    return q, tile_scales(e)


# ---------------------------------------------------------------- reference dequantisation


def ref_fp8(q, scale):
    f32 = q.float() * scale
    return {
        "f32": f32,
        "bf16_single": f32.to(BF16),
        "bf16_eager": q.to(BF16) * scale.to(BF16),
    }


def unpack_nvfp4(packed):
    return torch.stack([packed >> 4, packed & 0x0F], -1).reshape(packed.shape[0], -1).long()


def ref_nvfp4(packed, tiled, s2, n, k):
    codes = unpack_nvfp4(packed)
    rows, cols = codes.shape
    bs = untile_scales(tiled.view(torch.uint8), rows, cols // 16).view(E4M3)
    f32 = (E2M1_TABLE[codes].reshape(rows, -1, 16) * (bs.float() * s2)[..., None]).reshape(rows, cols)
    total = s2.to(BF16) * bs.to(BF16)
    eager = (E2M1_TABLE.to(BF16)[codes].reshape(rows, -1, 16) * total[..., None]).reshape(rows, cols)
    return {
        "f32": f32[:n, :k],
        "bf16_single": f32.to(BF16)[:n, :k],
        "bf16_eager": eager[:n, :k],
    }


def ref_mxfp8(q, tiled, n, k):
    rows, cols = q.shape
    e = untile_scales(tiled, rows, cols // 32)
    f32 = (q.float().reshape(rows, -1, 32) * e8m0_to_f32(e)[..., None]).reshape(rows, cols)
    return {"f32": f32[:n, :k], "bf16_single": f32.to(BF16)[:n, :k], "bf16_eager": f32.to(BF16)[:n, :k]}


def ref_vanilla(q):
    return {"f32": q.float(), "bf16_single": q.to(BF16), "bf16_eager": q.to(BF16)}


def with_effective(refs, pre_quant_scale):
    eff = refs["f32"] * pre_quant_scale.float()
    return {**refs, "effective_f32": eff, "effective_bf16": eff.to(BF16)}


# ---------------------------------------------------------------- optional comfy-kitchen check


def load_kitchen():
    try:
        from comfy_kitchen.backends.eager import quantization as ck
    except Exception as e:  # noqa: BLE001 - any import failure means "not available"
        print(f"comfy_kitchen not importable ({type(e).__name__}); cross-check skipped")
        return None
    return ck


def bits(t):
    return t.contiguous().view({4: torch.int32, 2: torch.int16}[t.element_size()])


def same_bits(a, b):
    """Equal bit patterns, except that any NaN matches any NaN."""
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    nan = torch.isnan(a)
    return torch.equal(nan, torch.isnan(b)) and torch.equal(bits(a)[~nan], bits(b)[~nan])


def cross_check(ck, kind, args, refs, n, k):
    if ck is None:
        return
    for dtype, name in ((torch.float32, "f32"), (BF16, "bf16_eager")):
        if kind == "fp8":
            q, scale = args
            got = ck.dequantize_per_tensor_fp8(q, scale, dtype)
        elif kind == "nvfp4":
            packed, tiled, s2 = args
            got = ck.dequantize_nvfp4(packed, s2, tiled.view(E4M3), dtype)[:n, :k]
        else:
            q, tiled = args
            got = ck.dequantize_mxfp8(q, tiled, dtype)[:n, :k]
        want = refs[name] if dtype == BF16 else refs["f32"]
        assert same_bits(got, want), f"comfy-kitchen disagrees: {kind} {name}"


# ---------------------------------------------------------------- the files


class Builder:
    def __init__(self, out, ck):
        self.out, self.ck = out, ck
        self.expected, self.cases = [], []

    def case(self, file, key, shape, refs, fmt=None, source=None, input_scale=None,
             full_precision=False, pre_quant_scale=False):
        self.cases.append({
            "file": file, "key": key, "shape": list(shape), "format": fmt, "source": source,
            "input_scale": None if input_scale is None else float(input_scale),
            "full_precision": full_precision, "pre_quant_scale": pre_quant_scale,
        })
        for variant, t in refs.items():
            self.expected.append((f"{file}/{key}/{variant}", t.contiguous()))

    def fp8(self, file, layer, shape, dtype=E4M3, source=None, scale_dtype=torch.float32,
            **flags):
        """Returns the payload and the scale in its stored dtype."""
        q, scale = quant_fp8(randn(layer, shape), dtype, scale_dtype)
        refs = ref_fp8(q, scale)
        cross_check(self.ck, "fp8", (q, scale), refs, *shape)
        self.case(file, f"{layer}.weight", shape, refs, FP8_FORMATS[dtype], source, **flags)
        return q, scale.to(scale_dtype)

    def nvfp4(self, file, layer, shape, source=None, pre_quant_scale=None, **flags):
        packed, tiled, s2 = quant_nvfp4(randn(layer, shape))
        refs = ref_nvfp4(packed, tiled, s2, *shape)
        cross_check(self.ck, "nvfp4", (packed, tiled, s2), refs, *shape)
        if pre_quant_scale is not None:
            refs = with_effective(refs, pre_quant_scale)
        self.case(file, f"{layer}.weight", shape, refs, "nvfp4", source,
                  pre_quant_scale=pre_quant_scale is not None, **flags)
        return packed, tiled, s2

    def mxfp8(self, file, layer, shape, source=None, **flags):
        q, tiled = quant_mxfp8(randn(layer, shape, scale=3.0))
        refs = ref_mxfp8(q, tiled, *shape)
        cross_check(self.ck, "mxfp8", (q, tiled), refs, *shape)
        self.case(file, f"{layer}.weight", shape, refs, "mxfp8", source, **flags)
        return q, tiled

    def write(self, name, entries, metadata=None):
        write_safetensors(self.out / f"{name}.safetensors", entries, metadata)


def ltx_fp8(b):
    f, dit = "quant_ltx_fp8", "model.diffusion_model.transformer_blocks"
    entries = []
    for layer, shape in ((f"{dit}.1.attn1.to_q", (16, 32)), (f"{dit}.1.ff.net.2", (32, 16))):
        input_scale = torch.tensor(0.0157, dtype=torch.float32).reshape(())
        q, scale = b.fp8(f, layer, shape, source="Fp8ScaleSibling", input_scale=input_scale.item())
        entries += [(f"{layer}.weight", q), (f"{layer}.weight_scale", scale),
                    (f"{layer}.input_scale", input_scale),
                    (f"{layer}.bias", randn(layer + ".bias", shape[:1]).to(BF16))]
    entries += [
        (f"{dit}.0.attn1.to_q.weight", randn(f"{dit}.0.attn1.to_q", (16, 32)).to(BF16)),
        (f"{dit}.0.attn1.to_q.bias", randn(f"{dit}.0.attn1.to_q.bias", (16,)).to(BF16)),
        ("model.diffusion_model.scale_shift_table", randn("sst", (6, 16))),
        ("vae.per_channel_statistics.mean-of-means", randn("mom", (8,))),
    ]
    config = {"transformer": {"num_layers": 2}}
    b.write(f, entries, {"config": json.dumps(config), "model_version": "tiny-fp8"})


def comfy_header(b):
    f, p = "quant_comfy_header", "model.diffusion_model.transformer_blocks.1."
    layers, entries = {}, []
    q, s = b.fp8(f, p + "attn1.to_k", (16, 32), source="HeaderMetadata")
    layers[p + "attn1.to_k"] = {"format": "float8_e4m3fn"}
    entries += [(p + "attn1.to_k.weight", q), (p + "attn1.to_k.weight_scale", s),
                # a stale per-layer marker: the header entry wins, as in ComfyUI
                (p + "attn1.to_k.comfy_quant", marker_tensor({"format": "nvfp4"})),
                (p + "attn1.to_k.bias", randn(p + "attn1.to_k.bias", (16,)).to(BF16))]
    packed, tiled, s2 = b.nvfp4(f, p + "attn1.to_v", (20, 40), source="HeaderMetadata")
    layers[p + "attn1.to_v"] = {"format": "nvfp4"}
    entries += [(p + "attn1.to_v.weight", packed), (p + "attn1.to_v.weight_scale", tiled),
                (p + "attn1.to_v.weight_scale_2", s2)]
    qm, tm = b.mxfp8(f, p + "attn1.to_out.0", (33, 40), source="HeaderMetadata")
    layers[p + "attn1.to_out.0"] = {"format": "mxfp8"}
    entries += [(p + "attn1.to_out.0.weight", qm), (p + "attn1.to_out.0.weight_scale", tm)]
    q, s = b.fp8(f, p + "ff.net.0.proj", (16, 32), source="HeaderMetadata", full_precision=True)
    layers[p + "ff.net.0.proj"] = {"format": "float8_e4m3fn", "full_precision_matrix_mult": True}
    entries += [(p + "ff.net.0.proj.weight", q), (p + "ff.net.0.proj.weight_scale", s)]
    layers["transformer_blocks.1.attn1.to_q"] = {"format": "float8_e4m3fn"}  # names no tensor
    meta = {"format_version": "1.0", "layers": layers}
    b.write(f, entries, {"_quantization_metadata": json.dumps(meta)})


def comfy_tensor(b):
    f, entries = "quant_comfy_tensor", []
    q, s = b.fp8(f, "layers.0.linear", (12, 40), dtype=E5M2, source="ComfyQuantTensor",
                 scale_dtype=BF16)
    entries += [("layers.0.linear.weight", q), ("layers.0.linear.weight_scale", s),
                ("layers.0.linear.comfy_quant", marker_tensor({"format": "float8_e5m2"})),
                ("layers.0.norm.weight", randn("layers.0.norm", (40,)))]
    input_scale = torch.tensor(0.25)
    packed, tiled, s2 = b.nvfp4(f, "layers.1.linear", (129, 16), source="ComfyQuantTensor",
                                input_scale=0.25)
    entries += [("layers.1.linear.weight", packed),
                ("layers.1.linear.weight_scale", tiled.view(torch.uint8)),
                ("layers.1.linear.weight_scale_2", s2),
                ("layers.1.linear.input_scale", input_scale),
                ("layers.1.linear.comfy_quant", marker_tensor({"format": "nvfp4"}))]
    pqs = 0.5 + torch.rand(160, generator=torch.Generator().manual_seed(7))
    packed, tiled, s2 = b.nvfp4(f, "layers.2.linear", (8, 160), source="ComfyQuantTensor",
                                pre_quant_scale=pqs)
    entries += [("layers.2.linear.weight", packed), ("layers.2.linear.weight_scale", tiled),
                ("layers.2.linear.weight_scale_2", s2), ("layers.2.linear.pre_quant_scale", pqs),
                ("layers.2.linear.comfy_quant", marker_tensor({"format": "nvfp4"}))]
    b.write(f, entries)


def scaled_fp8(b):
    f, p = "quant_scaled_fp8", "model.diffusion_model.blocks.0."
    entries = [("model.diffusion_model.scaled_fp8", torch.zeros(2, dtype=E4M3))]
    q, s = b.fp8(f, p + "q", (16, 16), source="ScaledFp8", full_precision=True)
    entries += [(p + "q.weight", q), (p + "q.scale_weight", s),
                (p + "q.scale_input", torch.tensor(1.0))]
    q, s = b.fp8(f, p + "k", (16, 16), source="ScaledFp8", full_precision=True, input_scale=0.5)
    entries += [(p + "k.weight", q), (p + "k.scale_weight", s.reshape(1)),
                (p + "k.scale_input", torch.tensor(0.5))]
    v = randn(p + "v", (16, 16), scale=20.0).to(E4M3)
    b.case(f, p + "v.weight", (16, 16), ref_vanilla(v))
    entries += [(p + "v.weight", v), (p + "v.bias", randn(p + "v.bias", (16,)).to(BF16))]
    b.write(f, entries)


def gemma_mixed(b):
    f, entries, layers = "quant_gemma_mixed", [], {}
    spiece = torch.tensor(list(b"\x0a\x05tiny!sentencepiece-proto-byte"), dtype=torch.uint8)
    assert spiece.numel() % 2 == 1
    entries.append(("spiece_model", spiece))  # odd length: every tensor after it is misaligned
    q, s = b.fp8(f, "model.embed_tokens", (32, 16), source="HeaderMetadata")
    layers["model.embed_tokens"] = {"format": "float8_e4m3fn"}
    entries += [("model.embed_tokens.weight", q), ("model.embed_tokens.weight_scale", s)]
    a, m = "model.layers.0.self_attn.", "model.layers.0.mlp."
    shapes = {a + "q_proj": (16, 16), a + "k_proj": (16, 16), a + "v_proj": (16, 16),
              a + "o_proj": (16, 16), m + "gate_proj": (32, 16), m + "up_proj": (32, 16),
              m + "down_proj": (16, 32)}
    for layer, shape in shapes.items():
        packed, tiled, s2 = b.nvfp4(f, layer, shape, source="HeaderMetadata",
                                    full_precision=True)
        layers[layer] = {"format": "nvfp4", "full_precision_matrix_mult": True}
        entries += [(layer + ".weight", packed), (layer + ".weight_scale", tiled),
                    (layer + ".weight_scale_2", s2)]
    for norm, size in (("input_layernorm", 16), ("post_attention_layernorm", 16),
                       ("pre_feedforward_layernorm", 16), ("post_feedforward_layernorm", 16)):
        entries.append((f"model.layers.0.{norm}.weight", randn(norm, (size,)).to(BF16)))
    entries += [(a + "q_norm.weight", randn("q_norm", (8,)).to(BF16)),
                (a + "k_norm.weight", randn("k_norm", (8,)).to(BF16)),
                ("model.norm.weight", randn("norm", (16,)).to(BF16))]
    b.write(f, entries, {"_quantization_metadata": json.dumps({"layers": layers})})


def edge(b):
    f, entries = "quant_edge", [("edge.odd", torch.tensor([1, 2, 3], dtype=torch.uint8))]
    entries.append(("edge.bf16_after_odd", randn("edge.bf16", (5,)).to(BF16)))
    entries.append(("edge.empty", torch.zeros(0, 4)))
    codes = torch.arange(256, dtype=torch.int32).to(torch.uint8).reshape(16, 16)
    for name, dtype, scale in (("e4m3_codes", E4M3, 0.0013), ("e5m2_codes", E5M2, 3.0)):
        q, s = codes.view(dtype), torch.tensor(scale).reshape(())
        refs = ref_fp8(q, s)
        cross_check(b.ck, "fp8", (q, s), refs, 16, 16)
        b.case(f, f"edge.{name}.weight", (16, 16), refs, FP8_FORMATS[dtype], "Fp8ScaleSibling")
        entries += [(f"edge.{name}.weight", q), (f"edge.{name}.weight_scale", s)]
        b.case(f, f"edge.vanilla_{name}", (16, 16), ref_vanilla(q))
        entries.append((f"edge.vanilla_{name}", q))
    q, s = torch.tensor([[0x7E, 0xFE], [0x01, 0x00]], dtype=torch.uint8).view(E4M3), torch.tensor(3e38)
    refs = ref_fp8(q, s)
    cross_check(b.ck, "fp8", (q, s), refs, 2, 2)
    b.case(f, "edge.overflow.weight", (2, 2), refs, "float8_e4m3fn", "Fp8ScaleSibling")
    entries += [("edge.overflow.weight", q), ("edge.overflow.weight_scale", s)]
    # NVFP4: all 256 byte values (both nibble orders of every pair) under extreme block scales
    packed = torch.arange(512, dtype=torch.int32).remainder(256).to(torch.uint8).reshape(32, 16)
    block_bytes = torch.tensor([0x00, 0x7F, 0x01, 0x7E, 0x80, 0x38, 0x08, 0x07], dtype=torch.uint8)
    bs = block_bytes.repeat(8)[:64].reshape(32, 2)
    tiled, s2 = tile_scales(bs).view(E4M3), torch.tensor(1.0 / 2688.0)
    refs = ref_nvfp4(packed, tiled, s2, 32, 32)
    cross_check(b.ck, "nvfp4", (packed, tiled, s2), refs, 32, 32)
    b.case(f, "edge.nvfp4_codes.weight", (32, 32), refs, "nvfp4", "Nvfp4ScaleSiblings")
    entries += [("edge.nvfp4_codes.weight", packed), ("edge.nvfp4_codes.weight_scale", tiled),
                ("edge.nvfp4_codes.weight_scale_2", s2)]
    # MXFP8: every E4M3 byte under E8M0 extremes
    q = torch.arange(2048, dtype=torch.int32).remainder(256).to(torch.uint8).reshape(32, 64).view(E4M3)
    e = torch.tensor([0, 1, 126, 127, 128, 200, 254, 255], dtype=torch.uint8).repeat(8).reshape(32, 2)
    tiled = tile_scales(e)
    refs = ref_mxfp8(q, tiled, 30, 40)
    cross_check(b.ck, "mxfp8", (q, tiled), refs, 30, 40)
    b.case(f, "edge.mxfp8_extremes.weight", (30, 40), refs, "mxfp8", "ComfyQuantTensor")
    entries += [("edge.mxfp8_extremes.weight", q), ("edge.mxfp8_extremes.weight_scale", tiled),
                ("edge.mxfp8_extremes.comfy_quant", marker_tensor({"format": "mxfp8"}))]
    b.write(f, entries)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    b = Builder(args.out, load_kitchen())
    for make in (ltx_fp8, comfy_header, comfy_tensor, scaled_fp8, gemma_mixed, edge):
        make(b)
    write_safetensors(args.out / "quant_expected.safetensors", b.expected,
                      {"cases": json.dumps(b.cases)})
    total = sum(p.stat().st_size for p in args.out.glob("quant_*.safetensors"))
    print(f"{len(b.cases)} cases, {total} bytes in {args.out}")
    if b.ck is not None:
        print("comfy-kitchen eager dequantisers agree bit for bit")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Reference trajectories of ComfyUI's LTX sampling loop for `models::sampling` unit tests.

Run with the golden venv (torch 2.7.1 CPU):

    /work/venv-golden/bin/python models/tests/data/gen_sampling.py

Writes `sampling_ref.safetensors` beside this script. ComfyUI is not installed in that venv, so the
update rules of comfy/k_diffusion/sampling.py (sample_euler, sample_euler_ancestral_RF,
sample_gradient_estimation), comfy/samplers.py (CFG, KSamplerX0Inpaint), CONST noise scaling and
comfy.sample.prepare_noise / default_noise_sampler are re-stated here in float32 torch with the same
operation order. The "model" is an exactly-rounded toy denoiser, `x * A + B * sigma` (cond) and
`x * A2 + B2 * sigma` (uncond), so a faithful re-implementation reproduces every bit, except that
PyTorch's float32 CPU `sqrt` (MKL) is not correctly rounded for some inputs, which can move
euler_ancestral's re-noise coefficient by one ulp.

Tensors: `in.A`, `in.B`, `in.A2`, `in.B2` (packed [1, 1, N]), `in.latent`, `in.mask`;
per case `<case>.sigmas`, `<case>.out` (final latent after inverse noise scaling) and
`<case>.denoised` (the last step's prediction). Metadata `cases` lists each case's settings.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

SEED = 42
VIDEO = (1, 128, 2, 2, 3)
AUDIO = (1, 8, 5, 16)
CFG = 3.0


def pack(parts):
    b = parts[0].shape[0]
    return torch.cat([p.reshape(b, 1, -1) for p in parts], dim=-1)


def comfy_noise(seed):
    """prepare_noise on a nested (video, audio) latent, packed like CFGGuider does."""
    gen = torch.manual_seed(seed)
    parts = [torch.randn(s, dtype=torch.float32, generator=gen) for s in (VIDEO, AUDIO)]
    return pack(parts)


def ltx_sigmas(steps, tokens):
    from ltx_core.components.schedulers import LTX2Scheduler

    lat = torch.empty(1, 128, tokens, 1, 1)
    return LTX2Scheduler().execute(steps=steps, latent=lat)


class Toy:
    def __init__(self):
        g = torch.Generator().manual_seed(7)
        n = sum(torch.Size(s).numel() for s in (VIDEO, AUDIO))
        self.A = 0.5 + 0.1 * torch.randn((1, 1, n), generator=g)
        self.B = torch.randn((1, 1, n), generator=g)
        self.A2 = 0.5 + 0.1 * torch.randn((1, 1, n), generator=g)
        self.B2 = torch.randn((1, 1, n), generator=g)

    def cond(self, x, sigma):
        return x * self.A + self.B * sigma

    def uncond(self, x, sigma):
        return x * self.A2 + self.B2 * sigma

    def guided(self, cfg):
        def f(x, sigma):
            c = self.cond(x, sigma)
            if abs(cfg - 1.0) <= 1e-9 * max(abs(cfg), 1.0):
                return c
            u = self.uncond(x, sigma)
            return u + (c - u) * cfg
        return f


def masked(model, mask, latent):
    """KSamplerX0Inpaint for LTX (scale_latent_inpaint returns the clean latent)."""
    keep = 1.0 - mask

    def f(x, sigma):
        out = model(x * mask + latent * keep, sigma)
        return out * mask + latent * keep
    return f


def to_d(x, sigma, denoised):
    return (x - denoised) / sigma


def euler(model, x, sigmas, trace):
    for i in range(len(sigmas) - 1):
        den = model(x, sigmas[i])
        trace.append(den)
        x = x + to_d(x, sigmas[i], den) * (sigmas[i + 1] - sigmas[i])
    return x


def euler_ancestral_rf(model, x, sigmas, trace, eta, s_noise, seed):
    gen = torch.Generator().manual_seed(seed + 1)  # default_noise_sampler on the CPU
    for i in range(len(sigmas) - 1):
        den = model(x, sigmas[i])
        trace.append(den)
        if sigmas[i + 1] == 0:
            x = den
            continue
        downstep_ratio = 1 + (sigmas[i + 1] / sigmas[i] - 1) * eta
        sigma_down = sigmas[i + 1] * downstep_ratio
        alpha_ip1 = 1 - sigmas[i + 1]
        alpha_down = 1 - sigma_down
        renoise = (sigmas[i + 1] ** 2 - sigma_down ** 2 * alpha_ip1 ** 2 / alpha_down ** 2) ** 0.5
        ratio = sigma_down / sigmas[i]
        x = ratio * x + (1 - ratio) * den
        if eta > 0:
            noise = torch.randn(x.size(), dtype=x.dtype, generator=gen)
            x = (alpha_ip1 / alpha_down) * x + noise * s_noise * renoise
    return x


def gradient_estimation(model, x, sigmas, trace, ge_gamma):
    old_d = None
    for i in range(len(sigmas) - 1):
        den = model(x, sigmas[i])
        trace.append(den)
        d = to_d(x, sigmas[i], den)
        dt = sigmas[i + 1] - sigmas[i]
        if sigmas[i + 1] == 0:
            x = den
        else:
            x = x + d * dt
            if i >= 1:
                x = x + (ge_gamma - 1) * (d - old_d) * dt
        old_d = d
    return x


def run(case, toy, latent, mask, noise):
    sigmas = case["sigmas"]
    model = toy.guided(case["cfg"])
    if case["masked"]:
        model = masked(model, mask, latent)
    x = sigmas[0] * noise + (1.0 - sigmas[0]) * latent  # CONST.noise_scaling
    trace = []
    kind = case["sampler"]
    if kind == "euler":
        x = euler(model, x, sigmas, trace)
    elif kind == "euler_ancestral":
        x = euler_ancestral_rf(model, x, sigmas, trace, case["eta"], case["s_noise"], SEED)
    else:
        x = gradient_estimation(model, x, sigmas, trace, case["ge_gamma"])
    x = x / (1.0 - sigmas[-1])  # CONST.inverse_noise_scaling
    return x, trace[-1]


def main() -> None:
    torch.set_num_threads(1)
    toy = Toy()
    noise = comfy_noise(SEED)
    g = torch.Generator().manual_seed(11)
    latent = torch.randn(noise.shape, generator=g)
    mask_v = torch.ones(VIDEO)
    mask_v[:, :, 0] = 0.0
    mask_v[:, :, 1] = 0.3
    mask = pack([mask_v, torch.ones(AUDIO)])
    zeros = torch.zeros_like(noise)

    ltx8 = ltx_sigmas(8, 4992)
    stage2 = torch.tensor([0.909375, 0.725, 0.421875, 0.0])
    cases = {
        "euler_cfg": dict(sampler="euler", sigmas=ltx8, cfg=CFG, masked=False),
        "euler_cfg1": dict(sampler="euler", sigmas=ltx8, cfg=1.0, masked=False),
        "ancestral": dict(sampler="euler_ancestral", eta=1.0, s_noise=1.0, sigmas=ltx8, cfg=CFG, masked=False),
        "ancestral_eta05": dict(sampler="euler_ancestral", eta=0.5, s_noise=0.8, sigmas=ltx8, cfg=CFG, masked=False),
        "ancestral_eta0": dict(sampler="euler_ancestral", eta=0.0, s_noise=1.0, sigmas=ltx8, cfg=CFG, masked=False),
        "gradient_estimation": dict(sampler="gradient_estimation", ge_gamma=2.0, sigmas=ltx8, cfg=CFG, masked=False),
        "masked_stage2": dict(sampler="euler", sigmas=stage2, cfg=1.0, masked=True, start="latent"),
        "masked_ancestral": dict(sampler="euler_ancestral", eta=1.0, s_noise=1.0, sigmas=stage2, cfg=CFG,
                                 masked=True, start="latent"),
        "unfinished": dict(sampler="euler", sigmas=torch.tensor([1.0, 0.5]), cfg=CFG, masked=False),
    }
    out = {"in.A": toy.A, "in.B": toy.B, "in.A2": toy.A2, "in.B2": toy.B2, "in.latent": latent,
           "in.mask": mask, "in.noise": noise}
    meta_cases = {}
    for name, case in cases.items():
        start = latent if case.get("start") == "latent" else zeros
        x, den = run(case, toy, start, mask, noise)
        out[f"{name}.sigmas"] = case["sigmas"].to(torch.float32).clone()
        out[f"{name}.out"] = x
        out[f"{name}.denoised"] = den
        meta_cases[name] = {k: v for k, v in case.items() if k != "sigmas"}
    path = Path(__file__).resolve().parent / "sampling_ref.safetensors"
    save_file({k: v.contiguous() for k, v in out.items()}, str(path), metadata={
        "torch_version": torch.__version__,
        "cases": json.dumps(meta_cases),
        "params": json.dumps({"seed": SEED, "video": VIDEO, "audio": AUDIO}),
    })
    print(f"{path}: {len(out)} tensors, {path.stat().st_size} bytes")


if __name__ == "__main__":
    main()

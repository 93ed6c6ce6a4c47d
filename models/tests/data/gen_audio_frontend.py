#!/usr/bin/env python3
"""Reference of the audio VAE's waveform front end and encode path (ltx-core 1.0.0).

Run with the golden venv (torch 2.7.1, torchaudio 2.7.1, ltx-core 1.0.0):

    /work/venv-golden/bin/python models/tests/data/gen_audio_frontend.py

Writes `audio_frontend.safetensors` beside this script: a seeded stereo noise waveform at
44.1 kHz (`in.waveform`) and a mono one at 16 kHz (`in.waveform_mono`), their log-mel
spectrograms from ltx-core's `AudioProcessor` with the tiny checkpoint's audio_vae settings
(`out.mel`, `out.mel_mono`, the mono one expanded to stereo first, as ComfyUI does), and the
encoder's normalised latents of those spectrograms (`out.latent`, `out.latent_mono`).
Metadata `params` holds the sample rates. ComfyUI's `comfy.audio` resample / MelSpectrogram
re-state the same torchaudio algorithms (Slaney mel scale and norm, reflect-padded centred STFT).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

HERE = Path(__file__).resolve().parent
FIXTURE = next(
    p / "shared/fixtures/ltx2-tiny" for p in HERE.parents if (p / "shared/fixtures/ltx2-tiny").is_dir()
)
STEREO_RATE = 44100
MONO_RATE = 16000


def main() -> None:
    from ltx_core.model.audio_vae.ops import AudioProcessor
    from ltx_core.types import Audio
    from ltx_pipelines.utils.model_ledger import ModelLedger

    models = FIXTURE / "models"
    config = json.loads(
        __import__("safetensors").safe_open(str(models / "ltx2-tiny.safetensors"), "pt").metadata()["config"]
    )["audio_vae"]
    params = config["model"]["params"]
    stft = config["preprocessing"]["stft"]
    mel_bins = params["ddconfig"]["mel_bins"]
    target = params["sampling_rate"]
    proc = AudioProcessor(
        target_sample_rate=target,
        mel_bins=mel_bins,
        mel_hop_length=stft["hop_length"],
        n_fft=stft["filter_length"],
    )
    g = torch.Generator().manual_seed(7)
    stereo = 0.3 * torch.randn((1, 2, 11025), generator=g)
    mono = 0.3 * torch.randn((1, 1, 4000), generator=g)

    led = ModelLedger(
        dtype=torch.float32,
        device=torch.device("cpu"),
        checkpoint_path=str(models / "ltx2-tiny.safetensors"),
        gemma_root_path=str(models / "gemma3-tiny"),
    )
    enc = led.audio_encoder()
    out = {"in.waveform": stereo, "in.waveform_mono": mono}
    with torch.inference_mode():
        mel = proc.waveform_to_mel(Audio(waveform=stereo, sampling_rate=STEREO_RATE))
        mel_mono = proc.waveform_to_mel(Audio(waveform=mono.expand(-1, 2, -1), sampling_rate=MONO_RATE))
        out["out.mel"] = mel.float()
        out["out.mel_mono"] = mel_mono.float()
        out["out.latent"] = enc(mel).float()
        out["out.latent_mono"] = enc(mel_mono).float()
    meta = {
        "description": "ltx-core AudioProcessor.waveform_to_mel + AudioEncoder on the tiny checkpoint",
        "params": json.dumps({"stereo_rate": STEREO_RATE, "mono_rate": MONO_RATE}),
    }
    save_file({k: v.contiguous() for k, v in out.items()}, str(HERE / "audio_frontend.safetensors"), meta)
    for k, v in out.items():
        print(k, tuple(v.shape))


if __name__ == "__main__":
    sys.exit(main())

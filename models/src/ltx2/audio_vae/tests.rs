//! Parity of the audio VAE and vocoder with ltx-core (`checks/c_audio_vae_vocoder`).

use candle_core::{DType, Device};
use candle_nn::VarBuilder;

use super::*;
use crate::checkpoint::CheckpointHeader;
use crate::parity::{Checks, assert_close, model_path};

const TOL: f64 = 1e-5;

fn load(with_encoder: bool) -> AudioVae {
    load_as(with_encoder, DType::F32)
}

fn load_as(with_encoder: bool, dtype: DType) -> AudioVae {
    let path = model_path("ltx2-tiny.safetensors");
    let config = CheckpointHeader::read(&path).unwrap().config().unwrap();
    // SAFETY: the fixture file is not modified while the test runs.
    let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[&path], dtype, &Device::Cpu) }.unwrap();
    AudioVae::new(&config, with_encoder, vb).unwrap()
}

#[test]
fn decoder_vocoder_and_encoder_match_ltx_core() {
    let checks = Checks::open("c_audio_vae_vocoder");
    let vae = load(true);
    let latent = checks.f32("in.decode_latent");

    let mel = vae.decode_mel(&latent).unwrap();
    assert_close("decoded_mel", &mel, &checks.f32("out.decoded_mel"), TOL);

    let wave = vae.vocoder().forward(&mel).unwrap();
    assert_close("waveform", &wave, &checks.f32("out.waveform"), TOL);

    let audio = vae.decode(&latent).unwrap();
    let helper = checks.f32("out.waveform_decode_audio_helper");
    assert_close(
        "decode_audio helper",
        &audio.squeeze_batch().unwrap(),
        &helper,
        TOL,
    );
    let params = checks.params();
    let rate = params["output_sampling_rate"].as_u64().unwrap() as u32;
    assert_eq!(audio.sample_rate, rate);
    assert_eq!(vae.output_sample_rate(), rate);

    let encoded = vae
        .encode_mel(&checks.f32("in.encode_spectrogram"))
        .unwrap();
    assert_close("encoded", &encoded, &checks.f32("out.encoded"), TOL);
}

#[test]
fn decode_output_has_comfy_audio_layout() {
    let vae = load(false);
    let cfg = vae.config().clone();
    let frames = 3;
    let bins = cfg.mel_bins.unwrap() / LATENT_DOWNSAMPLE_FACTOR;
    let latent =
        Tensor::zeros((2, cfg.z_channels, frames, bins), DType::F32, &Device::Cpu).unwrap();
    let audio = vae.decode(&latent).unwrap();
    let hop = vae.vocoder().config().hop_length();
    assert_eq!(
        audio.waveform.dims(),
        &[2, cfg.out_ch, hop * cfg.decoded_mel_frames(frames)]
    );
    assert_eq!(audio.waveform.dtype(), DType::F32);
    assert_eq!(audio.squeeze_batch().unwrap().rank(), 3);
    assert!(vae.encode_mel(&latent).is_err());
}

/// A half-precision run (candle's CPU backend has no bf16 matmul, so bf16 is exercised on
/// CUDA only; f16 covers the non-f32 code path here).
#[test]
fn f16_decode_and_encode_stay_close_to_fp32_reference() {
    let checks = Checks::open("c_audio_vae_vocoder");
    let vae = load_as(true, DType::F16);
    let latent = checks.f32("in.decode_latent").to_dtype(DType::F16).unwrap();
    let mel = vae.decode_mel(&latent).unwrap();
    assert_eq!(mel.dtype(), DType::F16);
    assert_close(
        "f16 decoded_mel",
        &mel,
        &checks.f32("out.decoded_mel"),
        0.02,
    );
    let audio = vae.decode(&latent).unwrap();
    assert_close(
        "f16 waveform",
        &audio.waveform,
        &checks.f32("out.waveform"),
        0.02,
    );
    let spec = checks
        .f32("in.encode_spectrogram")
        .to_dtype(DType::F16)
        .unwrap();
    let encoded = vae.encode_mel(&spec).unwrap();
    assert_close("f16 encoded", &encoded, &checks.f32("out.encoded"), 0.02);
}

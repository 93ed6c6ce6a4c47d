//! The audio VAE's waveform front end (resample + log-mel) and `AudioVae::encode_waveform`
//! against ltx-core's `AudioProcessor` + `AudioEncoder` (`tests/data/gen_audio_frontend.py`).

use candle_core::{DType, Device, Tensor};
use models::ltx2::audio_vae::AudioVae;
use models::ltx2::audio_vae::mel::MelFrontEnd;
use models::parity::{assert_close, model_path};
use models::weights::WeightFiles;

struct Reference {
    tensors: std::collections::HashMap<String, Tensor>,
    params: serde_json::Value,
}

fn reference() -> Reference {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/audio_frontend.safetensors"
    );
    let bytes =
        std::fs::read(path).expect("audio_frontend.safetensors (run gen_audio_frontend.py)");
    let tensors = candle_core::safetensors::load_buffer(&bytes, &Device::Cpu).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let params = serde_json::from_str(&meta.metadata().as_ref().unwrap()["params"]).unwrap();
    Reference { tensors, params }
}

fn audio_vae() -> AudioVae {
    let path = model_path("ltx2-tiny.safetensors");
    let files = WeightFiles::open(&[&path]).unwrap();
    let header = models::checkpoint::CheckpointHeader::read(&path).unwrap();
    AudioVae::new(
        &header.config().unwrap(),
        true,
        files.var_builder(DType::F32, &Device::Cpu).unwrap(),
    )
    .unwrap()
}

#[test]
fn log_mel_and_encode_match_ltx_core() {
    let r = reference();
    let vae = audio_vae();
    let front = MelFrontEnd::new(vae.config()).unwrap();
    let rate = |k: &str| r.params[k].as_u64().unwrap() as u32;
    let stereo = &r.tensors["in.waveform"];
    let mono = &r.tensors["in.waveform_mono"];

    let mel = front
        .forward(stereo, rate("stereo_rate"), &Device::Cpu)
        .unwrap();
    assert_close(
        "log-mel (44.1 kHz resampled)",
        &mel,
        &r.tensors["out.mel"],
        1e-5,
    );
    let expanded = mono.broadcast_as((1, 2, mono.dim(2).unwrap())).unwrap();
    let mel_mono = front
        .forward(&expanded, rate("mono_rate"), &Device::Cpu)
        .unwrap();
    assert_close(
        "log-mel (16 kHz)",
        &mel_mono,
        &r.tensors["out.mel_mono"],
        1e-5,
    );

    let latent = vae.encode_waveform(stereo, rate("stereo_rate")).unwrap();
    assert_close("encode_waveform", &latent, &r.tensors["out.latent"], 1e-5);
    let latent_mono = vae.encode_waveform(mono, rate("mono_rate")).unwrap();
    assert_close(
        "encode_waveform (mono)",
        &latent_mono,
        &r.tensors["out.latent_mono"],
        1e-5,
    );
    assert!(
        vae.encode_waveform(
            &Tensor::zeros((1, 3, 4000), DType::F32, &Device::Cpu).unwrap(),
            16000
        )
        .is_err()
    );
}

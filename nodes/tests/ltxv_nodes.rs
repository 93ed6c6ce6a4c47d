//! The LTX-2 model nodes called directly: loaders, text encoding, latents, guides and VAEs,
//! against the reference fixtures where one exists (`e_text`, `b_video_vae`,
//! `c_audio_vae_vocoder`, `d_upsampler`) and against `ltx2-nodes.md`'s semantics otherwise.

mod common;

use candle_core::{DType, Device, Tensor};
use common::{CKPT, LORA, UPSCALER, call, env_with_models, inputs, latent, load_all, s, try_call};
use models::checkpoint::CheckpointHeader;
use models::parity::{Checks, assert_close, model_path};
use nodes::ltxv::types::{Conditioning, LtxModel, Vae};
use nodes::value::Json;
use nodes::{Latent, LatentSamples, NodeError, Value};

fn object<T: std::any::Any + Send + Sync>(v: &Value) -> std::sync::Arc<T> {
    match v {
        Value::Object(o) => o.downcast::<T>().expect("object of another type"),
        other => panic!("expected an object, got {other:?}"),
    }
}

fn values(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1().unwrap()
}

#[test]
fn loaders_split_the_checkpoint_like_comfyui() {
    let (_dir, env) = env_with_models();
    let out = call(
        &env,
        "CheckpointLoaderSimple",
        inputs(vec![("ckpt_name", s(CKPT))]),
    );
    let model = object::<LtxModel>(&out[0]);
    assert_eq!(model.source.prefix, "model.diffusion_model");
    assert!(model.loras.is_empty());
    assert!(
        matches!(out[1], Value::Json(Json::Null)),
        "LTX-2 checkpoints have no CLIP"
    );
    assert!(matches!(*object::<Vae>(&out[2]), Vae::Video(_)));

    let audio = call(
        &env,
        "LTXVAudioVAELoader",
        inputs(vec![("ckpt_name", s(CKPT))]),
    );
    match &*object::<Vae>(&audio[0]) {
        Vae::Audio(a) => assert!(a.has_encoder),
        Vae::Video(_) => panic!("expected the audio VAE"),
    }
    let up = call(
        &env,
        "LatentUpscaleModelLoader",
        inputs(vec![("model_name", s(UPSCALER))]),
    );
    assert_eq!(up[0].type_name(), "LATENT_UPSCALE_MODEL");

    let none = call(
        &env,
        "LoraLoaderModelOnly",
        inputs(vec![
            ("model", out[0].clone()),
            ("lora_name", s(LORA)),
            ("strength_model", Value::Float(0.0)),
        ]),
    );
    assert!(object::<LtxModel>(&none[0]).loras.is_empty());
    let with = call(
        &env,
        "LoraLoaderModelOnly",
        inputs(vec![
            ("model", out[0].clone()),
            ("lora_name", s(LORA)),
            ("strength_model", Value::Float(0.5)),
        ]),
    );
    let patched = object::<LtxModel>(&with[0]);
    assert_eq!(patched.loras.len(), 1);
    assert_eq!(patched.loras[0].strength, 0.5);
}

#[test]
fn loaders_report_missing_and_foreign_files() {
    let (_dir, env) = env_with_models();
    let missing = try_call(
        &env,
        "CheckpointLoaderSimple",
        inputs(vec![("ckpt_name", s("nope.safetensors"))]),
    );
    assert!(matches!(missing, Err(NodeError::FileNotFound(_))));
    let foreign = try_call(
        &env,
        "CheckpointLoaderSimple",
        inputs(vec![("ckpt_name", s("not-a-model.safetensors"))]),
    );
    assert!(matches!(foreign, Err(NodeError::Value(m)) if m.contains("not an LTX-2 model")));
    let no_clip = try_call(
        &env,
        "CLIPTextEncode",
        inputs(vec![("text", s("x")), ("clip", Value::Json(Json::Null))]),
    );
    assert!(matches!(no_clip, Err(NodeError::Runtime(m)) if m.contains("clip input is invalid")));
}

#[test]
fn clip_text_encode_matches_the_ltx_text_path() {
    let (_dir, env) = env_with_models();
    let (_, _, _, clip) = load_all(&env);
    let c = Checks::open("e_text");
    let prompt = c.params()["prompt"].as_str().unwrap().to_string();
    let out = call(
        &env,
        "CLIPTextEncode",
        inputs(vec![("text", Value::String(prompt)), ("clip", clip)]),
    );
    let cond = object::<Conditioning>(&out[0]);
    assert_eq!(cond.entries.len(), 1);
    let e = &cond.entries[0];
    let video = c.f32("out.video_encoding");
    assert_eq!(e.video_width, video.dim(2).unwrap());
    let expected = Tensor::cat(&[&video, &c.f32("out.audio_encoding")], 2).unwrap();
    assert_close("CLIPTextEncode", &e.cross_attn, &expected, 1e-5);
    assert!(e.frame_rate.is_none() && e.keyframe_idxs.is_none());

    let conditioned = call(
        &env,
        "LTXVConditioning",
        inputs(vec![
            ("positive", out[0].clone()),
            ("negative", out[0].clone()),
            ("frame_rate", Value::Float(24.0)),
        ]),
    );
    for v in &conditioned {
        assert_eq!(object::<Conditioning>(v).entries[0].frame_rate, Some(24.0));
    }
    let zero = call(
        &env,
        "ConditioningZeroOut",
        inputs(vec![("conditioning", conditioned[0].clone())]),
    );
    let z = &object::<Conditioning>(&zero[0]).entries[0];
    assert!(values(&z.cross_attn).iter().all(|v| *v == 0.0));
    assert_eq!(z.frame_rate, Some(24.0), "other keys are kept");
}

#[test]
fn long_prompts_are_not_truncated() {
    let ids: Vec<u32> = (0..1500).collect();
    let t = nodes::ltxv::conditioning::pad_prompt(ids, 0, 128);
    assert_eq!(t.input_ids.len(), 1536);
    assert_eq!(t.num_valid(), 1500);
    assert_eq!(t.input_ids[36], 0);
    let short = nodes::ltxv::conditioning::pad_prompt(vec![2, 7], 0, 128);
    assert_eq!(short.input_ids.len(), 1024);
    assert_eq!(&short.input_ids[1022..], &[2, 7]);
}

#[test]
fn empty_latents_have_comfyui_shapes() {
    let (_dir, env) = env_with_models();
    let (_, _, audio_vae, _) = load_all(&env);
    let int = |v: i128| Value::Int(v);
    let video = call(
        &env,
        "EmptyLTXVLatentVideo",
        inputs(vec![
            ("width", int(1280)),
            ("height", int(720)),
            ("length", int(100)),
            ("batch_size", int(2)),
        ]),
    );
    let v = latent(&video[0]).samples.first().unwrap().clone();
    assert_eq!(v.dims(), &[2, 128, 13, 22, 40]);
    assert_eq!(v.dtype(), DType::F32);

    // T_a = ceil(frames / fps * sample_rate / hop / 4), from the checkpoint's audio config.
    let header = CheckpointHeader::read(&model_path("ltx2-tiny.safetensors")).unwrap();
    let config = header.config().unwrap();
    let dd = &config["audio_vae"]["model"]["params"];
    let sr = dd["sampling_rate"].as_f64().unwrap();
    let hop = config["audio_vae"]["preprocessing"]["stft"]["hop_length"]
        .as_f64()
        .unwrap();
    let z = dd["ddconfig"]["z_channels"].as_u64().unwrap() as usize;
    let bins = dd["ddconfig"]["mel_bins"].as_u64().unwrap() as usize / 4;
    for (frames, fps) in [
        (121, Value::Int(24)),
        (97, Value::Json(serde_json::json!(25.0))),
    ] {
        let fps_f = match &fps {
            Value::Int(i) => *i as f64,
            Value::Json(j) => j.as_f64().unwrap(),
            _ => unreachable!(),
        };
        let out = call(
            &env,
            "LTXVEmptyLatentAudio",
            inputs(vec![
                ("frames_number", int(frames)),
                ("frame_rate", fps),
                ("batch_size", int(1)),
                ("audio_vae", audio_vae.clone()),
            ]),
        );
        let l = latent(&out[0]);
        let steps = (frames as f64 / fps_f * (sr / hop / 4.0)).ceil() as usize;
        assert_eq!(l.samples.first().unwrap().dims(), &[1, z, steps, bins]);
        assert_eq!(l.extra.get("type"), Some(&Json::from("audio")));
    }
}

#[test]
fn av_concat_and_separate_keep_masks_and_keys() {
    let (_dir, env) = env_with_models();
    let dev = Device::Cpu;
    let mut video = Latent::new(Tensor::zeros((1, 128, 3, 2, 2), DType::F32, &dev).unwrap());
    let mask = Tensor::new(&[0.3f32, 1.0, 1.0], &dev)
        .unwrap()
        .reshape((1, 1, 3, 1, 1))
        .unwrap();
    video.noise_mask = Some(LatentSamples::Single(mask.clone()));
    let mut audio = Latent::new(Tensor::ones((1, 8, 5, 16), DType::F32, &dev).unwrap());
    audio.extra.insert("type".into(), Json::from("audio"));
    let av = call(
        &env,
        "LTXVConcatAVLatent",
        inputs(vec![
            ("video_latent", Value::Latent(video)),
            ("audio_latent", Value::Latent(audio)),
        ]),
    );
    let joint = latent(&av[0]);
    assert!(joint.samples.is_nested());
    let masks = joint.noise_mask.as_ref().unwrap().parts();
    assert_eq!(values(masks[0]), values(&mask));
    assert_eq!(masks[1].dims(), &[1, 8, 5, 16]);
    assert!(values(masks[1]).iter().all(|v| *v == 1.0));
    assert_eq!(joint.extra.get("type"), Some(&Json::from("audio")));

    let parts = call(
        &env,
        "LTXVSeparateAVLatent",
        inputs(vec![("av_latent", av[0].clone())]),
    );
    let (v, a) = (latent(&parts[0]), latent(&parts[1]));
    assert_eq!(v.samples.first().unwrap().dims(), &[1, 128, 3, 2, 2]);
    assert_eq!(a.samples.first().unwrap().dims(), &[1, 8, 5, 16]);
    assert_eq!(
        v.extra.get("type"),
        Some(&Json::from("audio")),
        "keys go to both outputs"
    );
    assert_eq!(
        values(v.noise_mask.as_ref().unwrap().first().unwrap()),
        values(&mask)
    );

    // Without any mask the joint latent has none.
    let plain = call(
        &env,
        "LTXVConcatAVLatent",
        inputs(vec![
            ("video_latent", parts[0].clone()),
            (
                "audio_latent",
                Value::Latent(Latent::new(
                    Tensor::zeros((1, 8, 5, 16), DType::F32, &dev).unwrap(),
                )),
            ),
        ]),
    );
    assert!(
        latent(&plain[0]).noise_mask.is_some(),
        "the video part still carries its mask"
    );
    let bare = Latent::new(Tensor::zeros((1, 128, 3, 2, 2), DType::F32, &dev).unwrap());
    let plain = call(
        &env,
        "LTXVConcatAVLatent",
        inputs(vec![
            ("video_latent", Value::Latent(bare)),
            (
                "audio_latent",
                Value::Latent(Latent::new(
                    Tensor::zeros((1, 8, 5, 16), DType::F32, &dev).unwrap(),
                )),
            ),
        ]),
    );
    assert!(latent(&plain[0]).noise_mask.is_none());
    assert!(
        try_call(
            &env,
            "LTXVSeparateAVLatent",
            inputs(vec![("av_latent", parts[0].clone())])
        )
        .is_err()
    );
}

/// An IMAGE `[n, h, w, 3]` with a deterministic pattern.
fn pattern(n: usize, h: usize, w: usize) -> Tensor {
    let data: Vec<f32> = (0..n * h * w * 3)
        .map(|i| ((i * 37 % 101) as f32) / 100.0)
        .collect();
    Tensor::from_vec(data, (n, h, w, 3), &Device::Cpu).unwrap()
}

#[test]
fn img_to_video_inplace_writes_the_first_frames_and_the_mask() {
    let (_dir, env) = env_with_models();
    let (_, vae, _, _) = load_all(&env);
    let empty = Latent::new(Tensor::zeros((1, 128, 3, 2, 2), DType::F32, &Device::Cpu).unwrap());
    let image = pattern(1, 64, 64);
    let out = call(
        &env,
        "LTXVImgToVideoInplace",
        inputs(vec![
            ("vae", vae.clone()),
            ("image", Value::Image(image.clone())),
            ("latent", Value::Latent(empty.clone())),
            ("strength", Value::Float(0.7)),
            ("bypass", Value::Boolean(false)),
        ]),
    );
    let l = latent(&out[0]);
    let mask = values(l.noise_mask.as_ref().unwrap().first().unwrap());
    assert_eq!(mask.len(), 3);
    assert!((mask[0] - 0.3).abs() < 1e-6 && mask[1] == 1.0 && mask[2] == 1.0);
    let encoded = call(
        &env,
        "VAEEncode",
        inputs(vec![("pixels", Value::Image(image)), ("vae", vae.clone())]),
    );
    let enc = latent(&encoded[0]).samples.first().unwrap().clone();
    let samples = l.samples.first().unwrap();
    assert_eq!(values(&samples.narrow(2, 0, 1).unwrap()), values(&enc));
    assert!(
        values(&samples.narrow(2, 1, 2).unwrap())
            .iter()
            .all(|v| *v == 0.0)
    );

    let bypass = call(
        &env,
        "LTXVImgToVideoInplace",
        inputs(vec![
            ("vae", vae),
            ("image", Value::Image(pattern(1, 64, 64))),
            ("latent", Value::Latent(empty)),
            ("strength", Value::Float(1.0)),
            ("bypass", Value::Boolean(true)),
        ]),
    );
    assert!(latent(&bypass[0]).noise_mask.is_none());
}

#[test]
fn add_guide_appends_frames_and_crop_guides_removes_them() {
    let (_dir, env) = env_with_models();
    let (_, vae, _, clip) = load_all(&env);
    let cond = call(
        &env,
        "CLIPTextEncode",
        inputs(vec![("text", s("a cat")), ("clip", clip)]),
    );
    let x = Latent::new(Tensor::zeros((1, 128, 2, 2, 2), DType::F32, &Device::Cpu).unwrap());
    let out = call(
        &env,
        "LTXVAddGuide",
        inputs(vec![
            ("positive", cond[0].clone()),
            ("negative", cond[0].clone()),
            ("vae", vae),
            ("latent", Value::Latent(x)),
            ("image", Value::Image(pattern(1, 40, 80))),
            ("frame_idx", Value::Int(-1)),
            ("strength", Value::Float(0.75)),
        ]),
    );
    let l = latent(&out[2]);
    assert_eq!(l.samples.first().unwrap().dims(), &[1, 128, 3, 2, 2]);
    let mask = values(l.noise_mask.as_ref().unwrap().first().unwrap());
    assert_eq!(mask, vec![1.0, 1.0, 0.25]);
    for c in &out[..2] {
        let e = &object::<Conditioning>(c).entries[0];
        let idxs = e.keyframe_idxs.as_ref().unwrap();
        assert_eq!(idxs.dims(), &[1, 3, 4, 2]);
        // Latent length 2 -> pixel frames 9; frame_idx -1 -> pixel frame 8; a single image
        // takes the causal path: time bounds [8, 9].
        let t: Vec<f32> = values(&idxs.narrow(1, 0, 1).unwrap());
        assert!(t.chunks(2).all(|b| b == [8.0, 9.0]), "{t:?}");
        let y: Vec<f32> = values(&idxs.narrow(1, 1, 1).unwrap());
        assert_eq!(&y[..4], &[0.0, 32.0, 0.0, 32.0]);
        assert_eq!(e.guide_entries.len(), 1);
        assert_eq!(e.guide_entries[0].pre_filter_count, 4);
        assert_eq!(e.guide_entries[0].strength, 0.75);
    }
    let cropped = call(
        &env,
        "LTXVCropGuides",
        inputs(vec![
            ("positive", out[0].clone()),
            ("negative", out[1].clone()),
            ("latent", out[2].clone()),
        ]),
    );
    let l = latent(&cropped[2]);
    assert_eq!(l.samples.first().unwrap().dims(), &[1, 128, 2, 2, 2]);
    assert_eq!(
        values(l.noise_mask.as_ref().unwrap().first().unwrap()),
        vec![1.0, 1.0]
    );
    let e = &object::<Conditioning>(&cropped[0]).entries[0];
    assert!(e.keyframe_idxs.is_none() && e.guide_entries.is_empty());
}

#[test]
fn vae_encode_matches_the_reference_encoder() {
    let (_dir, env) = env_with_models();
    let (_, vae, _, _) = load_all(&env);
    let c = Checks::open("b_video_vae");
    // [1, 3, F, H, W] in -1..1 -> IMAGE frames [F, H, W, 3] in 0..1.
    let video = c.f32("in.encode_video");
    let image = ((video.squeeze(0).unwrap().permute((1, 2, 3, 0)).unwrap() + 1.0).unwrap() / 2.0)
        .unwrap()
        .contiguous()
        .unwrap();
    let out = call(
        &env,
        "VAEEncode",
        inputs(vec![("pixels", Value::Image(image)), ("vae", vae.clone())]),
    );
    assert_close(
        "VAEEncode",
        latent(&out[0]).samples.first().unwrap(),
        &c.f32("out.encoded"),
        1e-5,
    );
    let bad = try_call(
        &env,
        "VAEEncode",
        inputs(vec![
            ("pixels", Value::Image(pattern(4, 64, 64))),
            ("vae", vae),
        ]),
    );
    assert!(matches!(bad, Err(NodeError::Value(m)) if m.contains("1 + 8 * x frames")));
}

#[test]
fn vae_decodes_have_comfyui_layouts() {
    let (_dir, env) = env_with_models();
    let (_, vae, audio_vae, _) = load_all(&env);
    let c = Checks::open("b_video_vae");
    let z = c.f32("in.decode_latent");
    let (_, _, t, h, w) = z.dims5().unwrap();
    let mut frames = Vec::new();
    for name in ["VAEDecode", "VAEDecodeTiled"] {
        let mut i = inputs(vec![
            ("samples", Value::Latent(Latent::new(z.clone()))),
            ("vae", vae.clone()),
        ]);
        if name == "VAEDecodeTiled" {
            for (k, v) in [
                ("tile_size", 512),
                ("overlap", 64),
                ("temporal_size", 4096),
                ("temporal_overlap", 8),
            ] {
                i.insert(k, vec![Value::Int(v)]);
            }
        }
        let out = call(&env, name, i);
        let Value::Image(img) = &out[0] else {
            panic!("IMAGE expected")
        };
        assert_eq!(img.dims(), &[8 * (t - 1) + 1, 32 * h, 32 * w, 3]);
        assert!(values(img).iter().all(|v| (0.0..=1.0).contains(v)));
        frames.push(img.clone());
    }
    // A tile bigger than the latent decodes in one piece: the same frames.
    assert_close("tiled vs whole", &frames[1], &frames[0], 1e-6);

    let a = Checks::open("c_audio_vae_vocoder");
    let out = call(
        &env,
        "LTXVAudioVAEDecode",
        inputs(vec![
            (
                "samples",
                Value::Latent(Latent::new(a.f32("in.decode_latent"))),
            ),
            ("audio_vae", audio_vae),
        ]),
    );
    let Value::Audio(audio) = &out[0] else {
        panic!("AUDIO expected")
    };
    assert_close(
        "LTXVAudioVAEDecode",
        &audio.waveform,
        &a.f32("out.waveform"),
        1e-5,
    );
    assert_eq!(
        audio.sample_rate as u64,
        a.params()["output_sampling_rate"].as_u64().unwrap()
    );
}

#[test]
fn latent_upsampler_matches_the_reference_and_drops_the_mask() {
    let (_dir, env) = env_with_models();
    let (_, vae, _, _) = load_all(&env);
    let up = call(
        &env,
        "LatentUpscaleModelLoader",
        inputs(vec![("model_name", s(UPSCALER))]),
    );
    let c = Checks::open("d_upsampler");
    let mut l = Latent::new(c.f32("in.latent"));
    l.noise_mask = Some(LatentSamples::Single(
        Tensor::ones((1, 1, 2, 1, 1), DType::F32, &Device::Cpu).unwrap(),
    ));
    let out = call(
        &env,
        "LTXVLatentUpsampler",
        inputs(vec![
            ("samples", Value::Latent(l)),
            ("upscale_model", up[0].clone()),
            ("vae", vae),
        ]),
    );
    let result = latent(&out[0]);
    assert!(result.noise_mask.is_none());
    assert_close(
        "LTXVLatentUpsampler",
        result.samples.first().unwrap(),
        &c.f32("out.upsampled_normalized"),
        1e-5,
    );
}

#[test]
fn set_latent_noise_mask_reshapes_the_mask() {
    let (_dir, env) = env_with_models();
    let l = Latent::new(Tensor::zeros((1, 128, 2, 4, 4), DType::F32, &Device::Cpu).unwrap());
    let mask = Tensor::ones((2, 4, 4), DType::F32, &Device::Cpu).unwrap();
    let out = call(
        &env,
        "SetLatentNoiseMask",
        inputs(vec![
            ("samples", Value::Latent(l)),
            ("mask", Value::Mask(mask)),
        ]),
    );
    assert_eq!(
        latent(&out[0])
            .noise_mask
            .as_ref()
            .unwrap()
            .first()
            .unwrap()
            .dims(),
        &[2, 1, 4, 4]
    );
}

#[test]
fn audio_vae_encode_matches_the_reference_front_end() {
    let (_dir, env) = env_with_models();
    let (_, _, audio_vae, _) = load_all(&env);
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../models/tests/data/audio_frontend.safetensors"
    );
    let bytes = std::fs::read(path).unwrap();
    let tensors = candle_core::safetensors::load_buffer(&bytes, &Device::Cpu).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let params: serde_json::Value =
        serde_json::from_str(&meta.metadata().as_ref().unwrap()["params"]).unwrap();
    let audio = nodes::value::Audio {
        waveform: tensors["in.waveform"].clone(),
        sample_rate: params["stereo_rate"].as_u64().unwrap() as u32,
    };
    let out = call(
        &env,
        "LTXVAudioVAEEncode",
        inputs(vec![
            ("audio", Value::Audio(audio)),
            ("audio_vae", audio_vae),
        ]),
    );
    let l = latent(&out[0]);
    assert_eq!(l.extra.get("type"), Some(&Json::from("audio")));
    assert_close(
        "LTXVAudioVAEEncode",
        l.samples.first().unwrap(),
        &tensors["out.latent"],
        1e-5,
    );
}

//! Parity of LTX-2's text path with ltx-core (`checks/e_text`): prompt -> ids and mask -> Gemma 3
//! hidden states -> FeatureExtractorV1 features -> video/audio connector encodings, through both
//! Gemma layouts (Hugging Face folder, ComfyUI single file) and both tokenizer sources.

use candle_core::{DType, Device, Tensor};
use models::gemma3::{Gemma3Checkpoint, GemmaTokenizer, PaddedTokens};
use models::ltx2::text::{LtxTextEncoder, TextEmbeddingsProcessor, TextEncoding};
use models::parity::{Checks, assert_close, model_path};

/// Tolerance of the text path, fp32 against the reference (relative to max |reference|).
const TOL: f64 = 1e-5;

fn checks() -> Checks {
    Checks::open("e_text")
}

fn prompt_and_length(c: &Checks) -> (String, usize) {
    let params = c.params();
    let prompt = params["prompt"]
        .as_str()
        .expect("params.prompt")
        .to_string();
    let len = params["max_length"].as_u64().expect("params.max_length") as usize;
    (prompt, len)
}

fn hf_folder() -> Gemma3Checkpoint {
    Gemma3Checkpoint::open(&model_path("gemma3-tiny")).unwrap()
}

fn comfy_file() -> Gemma3Checkpoint {
    Gemma3Checkpoint::open(&model_path("gemma3-tiny-comfy.safetensors")).unwrap()
}

fn reference_tokens(c: &Checks) -> PaddedTokens {
    let row = |key: &str| -> Vec<u32> {
        c.get(key)
            .to_dtype(DType::I64)
            .unwrap()
            .squeeze(0)
            .unwrap()
            .to_vec1::<i64>()
            .unwrap()
            .into_iter()
            .map(|v| v as u32)
            .collect()
    };
    PaddedTokens {
        input_ids: row("in.input_ids"),
        attention_mask: row("in.attention_mask"),
    }
}

#[test]
fn tokenizer_ids_and_mask_match_reference_from_both_sources() {
    let c = checks();
    let (prompt, len) = prompt_and_length(&c);
    let expected = reference_tokens(&c);
    for (name, tok) in [
        ("tokenizer.json", hf_folder().tokenizer().unwrap()),
        ("spiece_model", comfy_file().tokenizer().unwrap()),
    ] {
        let got = tok.encode_padded(&prompt, len).unwrap();
        assert_eq!(got, expected, "{name}");
        println!("{name}: {} valid tokens of {len}", got.num_valid());
    }
}

#[test]
fn tokenizer_sources_agree_on_varied_text() {
    let json = hf_folder().tokenizer().unwrap();
    let spm = comfy_file().tokenizer().unwrap();
    let (prompt, _) = prompt_and_length(&checks());
    let texts = [
        prompt.as_str(),
        "",
        "  two  spaces,\ttabs\tand\nnew lines\n\n",
        "Digits 1234567890 and punctuation: (a), [b]; {c}!?",
        "Ünïcödé — “quotes” 日本語 🐈‍⬛ emoji",
        "<start_of_turn>user\nA dog<end_of_turn>\n<image_soft_token><bos>",
    ];
    for text in texts {
        assert_eq!(
            json.encode(text).unwrap(),
            spm.encode(text).unwrap(),
            "{text:?}"
        );
    }
}

fn tokenizer_pad_matches(tok: &GemmaTokenizer, c: &Checks) {
    let expected = reference_tokens(c);
    let pads: Vec<u32> = expected
        .input_ids
        .iter()
        .zip(&expected.attention_mask)
        .filter(|(_, m)| **m == 0)
        .map(|(id, _)| *id)
        .collect();
    assert!(pads.iter().all(|&p| p == tok.pad_id()));
}

fn check_hidden_states(ckpt: &Gemma3Checkpoint, label: &str) {
    let c = checks();
    let tokens = reference_tokens(&c);
    tokenizer_pad_matches(&ckpt.tokenizer().unwrap(), &c);
    let model = ckpt.load_model(DType::F32, &Device::Cpu).unwrap();
    let (ids, mask) = tokens.to_tensors(&Device::Cpu).unwrap();
    let hidden = model.forward_hidden_states(&ids, &mask).unwrap();
    let expected = c.f32("out.hidden_states");
    assert_eq!(hidden.len(), expected.dim(0).unwrap());
    for (i, h) in hidden.iter().enumerate() {
        let e = expected.get(i).unwrap();
        assert_close(&format!("{label} hidden_states[{i}]"), h, &e, TOL);
    }
    let stacked = Tensor::stack(&hidden, 0).unwrap();
    assert_close(&format!("{label} hidden_states"), &stacked, &expected, TOL);
}

#[test]
fn gemma_hidden_states_match_reference_hf_folder() {
    check_hidden_states(&hf_folder(), "hf");
}

#[test]
fn gemma_hidden_states_match_reference_comfy_file() {
    check_hidden_states(&comfy_file(), "comfy");
}

fn ltx_checkpoint() -> std::path::PathBuf {
    model_path("ltx2-tiny.safetensors")
}

fn processor(gemma: &Gemma3Checkpoint) -> TextEmbeddingsProcessor {
    TextEmbeddingsProcessor::load(&ltx_checkpoint(), &gemma.config, DType::F32, &Device::Cpu)
        .unwrap()
}

fn reference_hidden_states(c: &Checks) -> Vec<Tensor> {
    let all = c.f32("out.hidden_states");
    (0..all.dim(0).unwrap())
        .map(|i| all.get(i).unwrap())
        .collect()
}

fn reference_mask(c: &Checks) -> Tensor {
    let tokens = reference_tokens(c);
    tokens.to_tensors(&Device::Cpu).unwrap().1
}

fn check_encoding(label: &str, enc: &TextEncoding, c: &Checks) {
    assert_close(
        &format!("{label} video_encoding"),
        &enc.video_context,
        &c.f32("out.video_encoding"),
        TOL,
    );
    assert_close(
        &format!("{label} audio_encoding"),
        &enc.audio_context,
        &c.f32("out.audio_encoding"),
        TOL,
    );
    let mask = enc.attention_mask.to_dtype(DType::I64).unwrap();
    let expected = c.get("out.binary_mask").to_dtype(DType::I64).unwrap();
    let diff = (mask - expected)
        .unwrap()
        .abs()
        .unwrap()
        .sum_all()
        .unwrap()
        .to_scalar::<i64>()
        .unwrap();
    assert_eq!(diff, 0, "{label}: binary mask differs");
}

#[test]
fn features_from_reference_hidden_states() {
    let c = checks();
    let p = processor(&hf_folder());
    let features = p
        .features(&reference_hidden_states(&c), &reference_mask(&c))
        .unwrap();
    assert_close(
        "features (isolated)",
        &features,
        &c.f32("out.features"),
        TOL,
    );
}

#[test]
fn connectors_from_reference_features() {
    let c = checks();
    let p = processor(&hf_folder());
    let enc = p
        .connect(&c.f32("out.features"), &reference_mask(&c))
        .unwrap();
    check_encoding("connectors (isolated)", &enc, &c);
}

fn check_end_to_end(gemma: &std::path::Path, label: &str) {
    let c = checks();
    let (prompt, len) = prompt_and_length(&c);
    let encoder = LtxTextEncoder::load(gemma, &ltx_checkpoint(), DType::F32, &Device::Cpu)
        .unwrap()
        .with_max_length(len);
    let tokens = encoder.tokenize(&prompt).unwrap();
    assert_eq!(tokens, reference_tokens(&c), "{label}: tokens");
    let hidden = encoder.hidden_states(&tokens).unwrap();
    let (_, mask) = tokens.to_tensors(&Device::Cpu).unwrap();
    let features = encoder.processor().features(&hidden, &mask).unwrap();
    assert_close(
        &format!("{label} features"),
        &features,
        &c.f32("out.features"),
        TOL,
    );
    let enc = encoder.encode(&prompt).unwrap();
    check_encoding(label, &enc, &c);
}

#[test]
fn prompt_to_contexts_via_hf_folder() {
    check_end_to_end(&model_path("gemma3-tiny"), "hf end-to-end");
}

#[test]
fn prompt_to_contexts_via_comfy_file() {
    check_end_to_end(
        &model_path("gemma3-tiny-comfy.safetensors"),
        "comfy end-to-end",
    );
}

/// bf16 run (weights and activations bf16, as on the GPU): checked against the fp32 reference
/// with the fixture README's bf16 bound, and its distance to ltx-core's own bf16 run reported.
#[test]
fn prompt_to_contexts_in_bf16() {
    const BF16_TOL: f64 = 0.05;
    let c = checks();
    let (prompt, len) = prompt_and_length(&c);
    let encoder = LtxTextEncoder::load(
        &model_path("gemma3-tiny-comfy.safetensors"),
        &ltx_checkpoint(),
        DType::BF16,
        &Device::Cpu,
    )
    .unwrap()
    .with_max_length(len);
    let tokens = encoder.tokenize(&prompt).unwrap();
    let hidden = encoder.hidden_states(&tokens).unwrap();
    let (_, mask) = tokens.to_tensors(&Device::Cpu).unwrap();
    let features = encoder.processor().features(&hidden, &mask).unwrap();
    let enc = encoder.processor().connect(&features, &mask).unwrap();
    assert_eq!(enc.video_context.dtype(), DType::BF16);
    let f32_of = |t: &Tensor| t.to_dtype(DType::F32).unwrap();
    let outputs = [
        ("features", f32_of(&features)),
        ("video_encoding", f32_of(&enc.video_context)),
        ("audio_encoding", f32_of(&enc.audio_context)),
    ];
    for (name, got) in &outputs {
        assert_close(
            &format!("bf16 {name} vs fp32 ref"),
            got,
            &c.f32(&format!("out.{name}")),
            BF16_TOL,
        );
        let vs_bf16 = models::parity::compare(got, &c.f32(&format!("bf16.out.{name}")));
        println!(
            "bf16 {name} vs ltx-core bf16: max_abs {:.3e} max_rel {:.3e}",
            vs_bf16.max_abs, vs_bf16.max_rel
        );
    }
    // ComfyUI-like split: Gemma in bf16, projection and connectors in f32.
    let f32_processor = processor(&comfy_file());
    let mixed = f32_processor.forward(&hidden, &mask).unwrap();
    assert_eq!(mixed.video_context.dtype(), DType::F32);
    assert_close(
        "bf16 gemma + f32 connectors video_encoding",
        &mixed.video_context,
        &c.f32("out.video_encoding"),
        BF16_TOL,
    );
}

/// The denoise-loop check's contexts were made by the same text path for its positive and
/// negative prompts: a second prompt (another length) through the ComfyUI layout.
#[test]
fn denoise_loop_contexts_for_both_prompts() {
    let g = Checks::open("g_denoise_loop");
    let params = g.params();
    let (_, len) = prompt_and_length(&checks());
    let encoder = LtxTextEncoder::load(
        &model_path("gemma3-tiny-comfy.safetensors"),
        &ltx_checkpoint(),
        DType::F32,
        &Device::Cpu,
    )
    .unwrap()
    .with_max_length(len);
    for (key, suffix) in [("prompt", "pos"), ("negative_prompt", "neg")] {
        let prompt = params[key].as_str().expect("prompt in params");
        let enc = encoder.encode(prompt).unwrap();
        assert_close(
            &format!("g_denoise_loop v_context_{suffix}"),
            &enc.video_context,
            &g.f32(&format!("in.v_context_{suffix}")),
            TOL,
        );
        assert_close(
            &format!("g_denoise_loop a_context_{suffix}"),
            &enc.audio_context,
            &g.f32(&format!("in.a_context_{suffix}")),
            TOL,
        );
    }
}

/// ltx-core truncates long prompts to `max_length` (keeping `<bos>` and the first tokens) and
/// strips surrounding whitespace before tokenizing.
#[test]
fn long_prompts_are_truncated_and_prompts_stripped() {
    let tok = comfy_file().tokenizer().unwrap();
    let (prompt, _) = prompt_and_length(&checks());
    let full = tok.encode(&prompt).unwrap();
    let short = full.len() / 2;
    let padded = tok.encode_padded(&prompt, short).unwrap();
    assert_eq!(padded.input_ids, full[..short]);
    assert!(padded.attention_mask.iter().all(|&m| m == 1));
    let spaced = format!(" \n{prompt}\t ");
    assert_eq!(
        tok.encode_padded(&spaced, full.len() + 3).unwrap(),
        tok.encode_padded(&prompt, full.len() + 3).unwrap()
    );
}

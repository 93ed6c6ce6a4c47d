//! Builds the transformer module tree with the real 19B configuration without loading (or
//! allocating) any weight: a VarBuilder backend records every requested tensor and hands out a
//! one-element broadcast tensor. Every requested name and shape is checked, and the parameter
//! count derived.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{Init, VarBuilder};
use models::checkpoint::CheckpointHeader;
use models::ltx2::transformer::{CHECKPOINT_PREFIX, LtxAvModel, TransformerConfig};
use models::parity::model_path;

type Requests = Arc<Mutex<BTreeMap<String, Vec<usize>>>>;

/// Records requested names and shapes; returns zero-stride zeros.
struct ShapeRecorder(Requests);

impl SimpleBackend for ShapeRecorder {
    fn get(
        &self,
        s: Shape,
        name: &str,
        _: Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        let previous = self
            .0
            .lock()
            .unwrap()
            .insert(name.to_string(), s.dims().to_vec());
        assert!(previous.is_none(), "{name} requested twice");
        Tensor::zeros((), dtype, dev)?.broadcast_as(s)
    }

    fn get_unchecked(&self, name: &str, _: DType, _: &Device) -> candle_core::Result<Tensor> {
        candle_core::bail!("unexpected unchecked request for {name}")
    }

    fn contains_tensor(&self, _: &str) -> bool {
        true
    }
}

/// Builds the model on a recorder; returns the requests (names relative to the model root).
fn record(cfg: &TransformerConfig) -> BTreeMap<String, Vec<usize>> {
    let requests: Requests = Arc::default();
    let vb = VarBuilder::from_backend(
        Box::new(ShapeRecorder(requests.clone())),
        DType::BF16,
        Device::Cpu,
    );
    let model = LtxAvModel::new(cfg, vb.pp(CHECKPOINT_PREFIX)).unwrap();
    assert_eq!(model.linears().len(), model.linear_paths().len());
    let prefix = format!("{CHECKPOINT_PREFIX}.");
    let map = requests.lock().unwrap().clone();
    map.into_iter()
        .map(|(k, v)| (k.strip_prefix(&prefix).unwrap().to_string(), v))
        .collect()
}

/// Sizes that determine every tensor shape.
struct Dims {
    video: usize,
    audio: usize,
    caption: usize,
    video_context: usize,
    audio_context: usize,
    video_in: usize,
    video_out: usize,
    audio_in: usize,
    audio_out: usize,
}

impl Dims {
    fn of(cfg: &TransformerConfig) -> Self {
        Self {
            video: cfg.video_inner_dim(),
            audio: cfg.audio_inner_dim(),
            caption: cfg.caption_channels,
            video_context: cfg.cross_attention_dim,
            audio_context: cfg.audio_cross_attention_dim,
            video_in: cfg.in_channels,
            video_out: cfg.out_channels,
            audio_in: cfg.audio_in_channels,
            audio_out: cfg.audio_out_channels,
        }
    }
}

/// `[out, in]` of a linear layer given its path, or `None` for a non-linear tensor.
fn linear_shape(path: &str, d: &Dims) -> Option<(usize, usize)> {
    if let Some(rest) = path.strip_prefix("transformer_blocks.") {
        let (_, module) = rest.split_once('.').unwrap();
        return block_linear(module, d);
    }
    let audio =
        path.starts_with("audio_") || path.contains("av_ca_audio") || path.contains("av_ca_v2a");
    let (dim, inp, out) = if audio {
        (d.audio, d.audio_in, d.audio_out)
    } else {
        (d.video, d.video_in, d.video_out)
    };
    let (module, layer) = path.split_once('.').unwrap_or((path, ""));
    Some(match (module, layer) {
        (m, _) if m.ends_with("patchify_proj") => (dim, inp),
        (m, _) if m.ends_with("proj_out") => (out, dim),
        (m, "linear_1") if m.ends_with("caption_projection") => (dim, d.caption),
        (m, "linear_2") if m.ends_with("caption_projection") => (dim, dim),
        (_, "emb.timestep_embedder.linear_1") => (dim, 256),
        (_, "emb.timestep_embedder.linear_2") => (dim, dim),
        (m, "linear") if m.ends_with("gate_adaln_single") => (dim, dim),
        (m, "linear") if m.ends_with("scale_shift_adaln_single") => (4 * dim, dim),
        (_, "linear") => (6 * dim, dim),
        _ => return None,
    })
}

fn block_linear(module: &str, d: &Dims) -> Option<(usize, usize)> {
    let (attn, layer) = module.split_once('.')?;
    let (v, a) = (d.video, d.audio);
    // (query width, key/value width, inner width)
    let (q, kv, inner) = match attn {
        "attn1" => (v, v, v),
        "attn2" => (v, d.video_context, v),
        "audio_attn1" => (a, a, a),
        "audio_attn2" => (a, d.audio_context, a),
        "audio_to_video_attn" => (v, a, a),
        "video_to_audio_attn" => (a, v, a),
        "ff" | "audio_ff" => {
            let dim = if attn == "ff" { v } else { a };
            return match layer {
                "net.0.proj" => Some((4 * dim, dim)),
                "net.2" => Some((dim, 4 * dim)),
                _ => None,
            };
        }
        _ => return None,
    };
    match layer {
        "to_q" => Some((inner, q)),
        "to_k" | "to_v" => Some((inner, kv)),
        "to_out.0" => Some((q, inner)),
        _ => None,
    }
}

/// Expected shape of any transformer tensor (relative name).
fn expected_shape(name: &str, d: &Dims) -> Vec<usize> {
    if let Some(path) = name.strip_suffix(".weight")
        && let Some((out, inp)) = linear_shape(path, d)
    {
        return vec![out, inp];
    }
    if let Some(path) = name.strip_suffix(".bias")
        && let Some((out, _)) = linear_shape(path, d)
    {
        return vec![out];
    }
    let audio_block = |n: &str| n.contains("audio_") && !n.contains("audio_to_video");
    let width = |n: &str| if audio_block(n) { d.audio } else { d.video };
    let leaf = name.rsplit('.').next().unwrap();
    match leaf {
        "scale_shift_table" if !name.starts_with("transformer_blocks.") => vec![2, d.video],
        "audio_scale_shift_table" if !name.starts_with("transformer_blocks.") => vec![2, d.audio],
        "scale_shift_table" => vec![6, d.video],
        "audio_scale_shift_table" => vec![6, d.audio],
        "scale_shift_table_a2v_ca_video" => vec![5, d.video],
        "scale_shift_table_a2v_ca_audio" => vec![5, d.audio],
        // q_norm / k_norm weights: the attention's inner width
        "weight"
            if name.contains("audio_to_video_attn") || name.contains("video_to_audio_attn") =>
        {
            vec![d.audio]
        }
        "weight" => vec![width(name)],
        _ => panic!("no shape rule for {name}"),
    }
}

fn tiny_header() -> CheckpointHeader {
    CheckpointHeader::read(&model_path("ltx2-tiny.safetensors")).unwrap()
}

/// The tiny file's transformer tensors (connectors belong to the text encoder).
fn tiny_transformer_tensors(header: &CheckpointHeader) -> BTreeMap<String, Vec<usize>> {
    let prefix = format!("{CHECKPOINT_PREFIX}.");
    header
        .tensors
        .iter()
        .filter_map(|(k, t)| Some((k.strip_prefix(&prefix)?.to_string(), t.shape.clone())))
        .filter(|(k, _)| !k.contains("embeddings_connector."))
        .collect()
}

/// The real 19B `config.transformer`: the tiny section with the 19B sizes
/// (checkpoint-formats.md §2.2).
fn config_19b(header: &CheckpointHeader) -> TransformerConfig {
    let mut section = header.config().unwrap()["transformer"].clone();
    let sizes = serde_json::json!({
        "num_layers": 48, "num_attention_heads": 32, "attention_head_dim": 128,
        "audio_num_attention_heads": 32, "audio_attention_head_dim": 64,
        "caption_channels": 3840, "cross_attention_dim": 4096, "audio_cross_attention_dim": 2048,
        "in_channels": 128, "out_channels": 128, "audio_in_channels": 128, "audio_out_channels": 128,
    });
    for (k, v) in sizes.as_object().unwrap() {
        section[k] = v.clone();
    }
    TransformerConfig::from_json(&section).unwrap()
}

#[test]
fn tiny_model_requests_exactly_the_files_transformer_tensors() {
    let header = tiny_header();
    let cfg = TransformerConfig::from_header(&header).unwrap();
    let requested = record(&cfg);
    let in_file = tiny_transformer_tensors(&header);
    assert_eq!(requested, in_file);
    // the shape rules reproduce every real shape of the tiny file
    let d = Dims::of(&cfg);
    for (name, shape) in &in_file {
        assert_eq!(&expected_shape(name, &d), shape, "{name}");
    }
}

#[test]
fn real_19b_module_tree_has_the_expected_shapes() {
    let header = tiny_header();
    let cfg = config_19b(&header);
    let requested = record(&cfg);
    // names: the tiny file's, with the per-block names repeated for every block
    let block0 = "transformer_blocks.0.";
    let mut expected_names: Vec<String> = Vec::new();
    for name in tiny_transformer_tensors(&header).keys() {
        if let Some(rest) = name.strip_prefix(block0) {
            expected_names
                .extend((0..cfg.num_layers).map(|i| format!("transformer_blocks.{i}.{rest}")));
        } else if !name.starts_with("transformer_blocks.") {
            expected_names.push(name.clone());
        }
    }
    expected_names.sort();
    let names: Vec<String> = requested.keys().cloned().collect();
    assert_eq!(names, expected_names);
    let d = Dims::of(&cfg);
    let mut params = 0usize;
    for (name, shape) in &requested {
        assert_eq!(shape, &expected_shape(name, &d), "{name}");
        params += shape.iter().product::<usize>();
    }
    let per_block: usize = requested
        .iter()
        .filter(|(k, _)| k.starts_with(block0))
        .map(|(_, s)| s.iter().product::<usize>())
        .sum();
    println!(
        "19B transformer: {} tensors, {params} parameters ({per_block} per block, {} blocks)",
        requested.len(),
        cfg.num_layers
    );
    // closed form of the per-block count: attention, feed-forward and modulation tables
    let (v, a) = (d.video, d.audio);
    let attn = |q: usize, kv: usize, inner: usize| {
        q * inner + 2 * kv * inner + inner * q + 3 * inner + q + 2 * inner
    };
    let ff = |dim: usize| 8 * dim * dim + 5 * dim;
    let expected_block = attn(v, v, v)
        + attn(v, d.video_context, v)
        + attn(a, a, a)
        + attn(a, d.audio_context, a)
        + attn(v, a, a)
        + attn(a, v, a)
        + ff(v)
        + ff(a)
        + 6 * v
        + 6 * a
        + 5 * v
        + 5 * a;
    assert_eq!(per_block, expected_block);
    // the published size class of the model ("19B", transformer alone ~18.9B)
    assert!(
        params > 18_000_000_000 && params < 20_000_000_000,
        "{params}"
    );
}

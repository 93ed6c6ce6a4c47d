//! Text conditioning nodes: CLIPTextEncode, ConditioningZeroOut, LTXVConditioning
//! (`ltx2-nodes.md` §3.7, §5, §7.2).

use candle_core::{DType, Device, Tensor};
use models::gemma3::PaddedTokens;
use models::ltx2::text::MAX_TEXT_TOKENS;

use super::models::text_encoder;
use super::types::{CondEntry, Conditioning, ModelInputs};
use crate::{Ctx, InputDef, Inputs, NodeDef, NodeError, NodeSchema, OutputDef, Outputs, Registry};

const LT: &str = "comfy_extras.nodes_lt";
const CATEGORY: &str = "conditioning/video_models";

/// Registers the conditioning nodes.
pub fn register(r: &mut Registry) {
    r.register(clip_text_encode());
    r.register(conditioning_zero_out());
    r.register(ltxv_conditioning());
}

fn clip_text_encode() -> NodeDef {
    let schema = NodeSchema::v1("CLIPTextEncode", "conditioning")
        .display("CLIP Text Encode (Prompt)")
        .description(
            "Encodes a text prompt using a CLIP model into an embedding that can be used to \
             guide the diffusion model towards generating specific images.",
        )
        .input(
            InputDef::string("text")
                .opt("multiline", true)
                .opt("dynamicPrompts", true)
                .tooltip("The text to be encoded."),
        )
        .input(
            InputDef::socket("clip", "CLIP").tooltip("The CLIP model used for encoding the text."),
        )
        .output(OutputDef::new("CONDITIONING").tooltip(
            "A conditioning containing the embedded text used to guide the diffusion model.",
        ))
        .aliases(&[
            "text",
            "prompt",
            "text prompt",
            "positive prompt",
            "negative prompt",
            "encode text",
            "text encoder",
            "encode prompt",
        ]);
    NodeDef::new(schema, run_clip_text_encode)
}

/// ComfyUI's LTX-2 tokenization: the whole prompt (no truncation), `<bos>` first, left-padded
/// to a multiple of `multiple` and at least [`MAX_TEXT_TOKENS`].
pub fn pad_prompt(ids: Vec<u32>, pad_id: u32, multiple: usize) -> PaddedTokens {
    let multiple = multiple.max(1);
    let length = ids.len().div_ceil(multiple) * multiple;
    let length = length.max(MAX_TEXT_TOKENS);
    let pad = length - ids.len();
    let mut input_ids = vec![pad_id; pad];
    input_ids.extend(ids);
    let mut attention_mask = vec![0u32; pad];
    attention_mask.resize(length, 1);
    PaddedTokens {
        input_ids,
        attention_mask,
    }
}

fn run_clip_text_encode(ctx: &Ctx, inputs: &Inputs) -> Result<Outputs, NodeError> {
    let clip = inputs.clip("clip")?;
    let text = inputs.string("text")?;
    let encoder = text_encoder(ctx.env, &clip)?;
    let ids = encoder.tokenizer().encode(text)?;
    let registers = clip.processor_config.video.num_learnable_registers;
    let tokens = pad_prompt(ids, encoder.tokenizer().pad_id(), registers);
    let encoding = encoder.encode_tokens(&tokens)?;
    let video_width = encoding.video_context.dim(2)?;
    let cross_attn = Tensor::cat(&[&encoding.video_context, &encoding.audio_context], 2)?
        .to_device(&Device::Cpu)?
        .to_dtype(DType::F32)?;
    let cond = Conditioning {
        entries: vec![CondEntry {
            cross_attn,
            video_width,
            frame_rate: None,
            keyframe_idxs: None,
            guide_entries: Vec::new(),
            extra: Default::default(),
        }],
    };
    Ok(Outputs::one(cond.into_value()))
}

fn conditioning_zero_out() -> NodeDef {
    let schema = NodeSchema::v1("ConditioningZeroOut", "advanced/conditioning")
        .input(InputDef::socket("conditioning", "CONDITIONING"))
        .output(OutputDef::new("CONDITIONING"))
        .aliases(&["null conditioning", "clear conditioning"]);
    NodeDef::new(schema, run_zero_out)
}

fn run_zero_out(_: &Ctx, inputs: &Inputs) -> Result<Outputs, NodeError> {
    let cond = inputs.conditioning("conditioning")?;
    let mut out = (*cond).clone();
    for e in &mut out.entries {
        e.cross_attn = e.cross_attn.zeros_like()?;
    }
    Ok(Outputs::one(out.into_value()))
}

fn ltxv_conditioning() -> NodeDef {
    let schema = NodeSchema::v3("LTXVConditioning", CATEGORY, LT)
        .input(InputDef::socket("positive", "CONDITIONING"))
        .input(InputDef::socket("negative", "CONDITIONING"))
        .input(
            InputDef::float("frame_rate")
                .default(25.0)
                .min(0.0)
                .max(1000.0)
                .step(0.01),
        )
        .output(OutputDef::new("CONDITIONING").named("positive"))
        .output(OutputDef::new("CONDITIONING").named("negative"));
    NodeDef::new(schema, run_ltxv_conditioning)
}

fn run_ltxv_conditioning(_: &Ctx, inputs: &Inputs) -> Result<Outputs, NodeError> {
    let rate = inputs.float("frame_rate")?;
    let set = |c: &Conditioning| c.map(|e| e.frame_rate = Some(rate)).into_value();
    Ok(Outputs::new(vec![
        set(&*inputs.conditioning("positive")?),
        set(&*inputs.conditioning("negative")?),
    ]))
}

//! A serialized SentencePiece `ModelProto` (ComfyUI's `spiece_model` tensor, or a
//! `tokenizer.model` file) and its conversion to a `tokenizers` BPE tokenizer equivalent to the
//! `tokenizer.json` Hugging Face writes for Gemma (`GemmaConverter` of transformers 4.57).
//!
//! Only the protobuf fields the conversion needs are decoded; everything else is skipped.
//! Field numbers and proto2 defaults are those of `sentencepiece_model.proto`.

use std::collections::{HashMap, HashSet};

use tokenizers::decoders::byte_fallback::ByteFallback;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::sequence::Sequence as DecoderSequence;
use tokenizers::models::bpe::BPE;
use tokenizers::normalizers::replace::Replace;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{AddedToken, SplitDelimiterBehavior, Tokenizer};

use super::protobuf::{Reader, Value, as_i32, as_string};
use crate::{Error, Result};

/// The kind of a vocabulary piece (`SentencePiece.Type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PieceType {
    /// An ordinary piece.
    Normal,
    /// The unknown piece.
    Unknown,
    /// A control symbol (`<bos>`, `<eos>`, `<pad>`): never produced from text by SentencePiece.
    Control,
    /// A user-defined symbol, matched verbatim in the input.
    UserDefined,
    /// A byte-fallback piece `<0xNN>`.
    Byte,
    /// A piece reserved but unused.
    Unused,
}

impl PieceType {
    fn from_proto(value: u64) -> Result<Self> {
        Ok(match value {
            1 => Self::Normal,
            2 => Self::Unknown,
            3 => Self::Control,
            4 => Self::UserDefined,
            5 => Self::Unused,
            6 => Self::Byte,
            other => return Err(bad(format!("unknown piece type {other}"))),
        })
    }
}

/// One vocabulary entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Piece {
    /// The piece's text (`▁` stands for a space).
    pub piece: String,
    /// Its score (merge priority for BPE).
    pub score: f32,
    /// Its kind.
    pub kind: PieceType,
}

/// The decoded parts of a SentencePiece model.
#[derive(Debug, Clone)]
pub struct SentencePieceModel {
    /// Vocabulary in id order.
    pub pieces: Vec<Piece>,
    /// `trainer_spec.model_type`: 1 unigram, 2 BPE, 3 word, 4 char.
    pub model_type: u64,
    /// `trainer_spec.byte_fallback`.
    pub byte_fallback: bool,
    /// `trainer_spec.unk_piece`.
    pub unk_piece: String,
    /// `trainer_spec.bos_id` (`-1` = none).
    pub bos_id: i32,
    /// `trainer_spec.eos_id` (`-1` = none).
    pub eos_id: i32,
    /// `trainer_spec.pad_id` (`-1` = none).
    pub pad_id: i32,
    /// `normalizer_spec.add_dummy_prefix`.
    pub add_dummy_prefix: bool,
    /// `normalizer_spec.remove_extra_whitespaces`.
    pub remove_extra_whitespaces: bool,
    /// Whether `normalizer_spec.precompiled_charsmap` is non-empty.
    pub has_charsmap: bool,
}

const BPE_MODEL: u64 = 2;

fn bad(msg: String) -> Error {
    Error::Tokenizer(format!("sentencepiece model: {msg}"))
}

impl SentencePieceModel {
    /// Decodes a serialized `ModelProto`.
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        let mut model = Self {
            pieces: Vec::new(),
            model_type: 1,
            byte_fallback: false,
            unk_piece: "<unk>".into(),
            bos_id: 1,
            eos_id: 2,
            pad_id: -1,
            add_dummy_prefix: true,
            remove_extra_whitespaces: true,
            has_charsmap: false,
        };
        let mut reader = Reader::new(bytes);
        while let Some((field, value)) = reader.next_field()? {
            match (field, value) {
                (1, Value::Bytes(b)) => model.pieces.push(parse_piece(b)?),
                (2, Value::Bytes(b)) => model.read_trainer_spec(b)?,
                (3, Value::Bytes(b)) => model.read_normalizer_spec(b)?,
                _ => {}
            }
        }
        if model.pieces.is_empty() {
            return Err(bad("no pieces".into()));
        }
        Ok(model)
    }

    fn read_trainer_spec(&mut self, bytes: &[u8]) -> Result<()> {
        let mut reader = Reader::new(bytes);
        while let Some((field, value)) = reader.next_field()? {
            match (field, value) {
                (3, Value::Varint(v)) => self.model_type = v,
                (35, Value::Varint(v)) => self.byte_fallback = v != 0,
                (41, Value::Varint(v)) => self.bos_id = as_i32(v),
                (42, Value::Varint(v)) => self.eos_id = as_i32(v),
                (43, Value::Varint(v)) => self.pad_id = as_i32(v),
                (45, Value::Bytes(b)) => self.unk_piece = as_string(b)?,
                _ => {}
            }
        }
        Ok(())
    }

    fn read_normalizer_spec(&mut self, bytes: &[u8]) -> Result<()> {
        let mut reader = Reader::new(bytes);
        while let Some((field, value)) = reader.next_field()? {
            match (field, value) {
                (2, Value::Bytes(b)) => self.has_charsmap = !b.is_empty(),
                (3, Value::Varint(v)) => self.add_dummy_prefix = v != 0,
                (4, Value::Varint(v)) => self.remove_extra_whitespaces = v != 0,
                _ => {}
            }
        }
        Ok(())
    }

    /// The piece with id `id`, when `id` is a valid id.
    pub fn piece(&self, id: i32) -> Option<&str> {
        usize::try_from(id)
            .ok()
            .and_then(|i| self.pieces.get(i))
            .map(|p| p.piece.as_str())
    }

    /// Builds the `tokenizers` tokenizer Hugging Face derives for Gemma: BPE over the pieces with
    /// merges ranked by piece score, byte fallback, unknown-piece fusion, `" " -> "▁"`
    /// normalisation, control/user-defined pieces as added tokens, and `<bos>` prepended.
    ///
    /// Only Gemma-style models are accepted (BPE, identity normaliser without dummy prefix or
    /// whitespace folding), since that is all the Gemma recipe reproduces.
    pub fn to_gemma_tokenizer(&self) -> Result<Tokenizer> {
        self.check_gemma_style()?;
        let vocab = self.hf_vocab();
        let merges = self.merges(&vocab);
        let vocab_map: tokenizers::models::bpe::Vocab = vocab
            .iter()
            .enumerate()
            .map(|(id, (piece, _))| (piece.clone(), id as u32))
            .collect();
        let bpe = BPE::builder()
            .vocab_and_merges(vocab_map, merges)
            .unk_token(self.unk_piece.clone())
            .fuse_unk(true)
            .byte_fallback(self.byte_fallback)
            .build()
            .map_err(|e| bad(format!("cannot build BPE: {e}")))?;
        let mut tokenizer = Tokenizer::new(bpe);
        let replace = Replace::new(" ", "▁").map_err(|e| bad(e.to_string()))?;
        tokenizer
            .with_normalizer(Some(replace))
            .map_err(|e| bad(e.to_string()))?;
        let split = Split::new(
            SplitPattern::String(" ".into()),
            SplitDelimiterBehavior::MergedWithPrevious,
            false,
        )
        .map_err(|e| bad(e.to_string()))?;
        tokenizer.with_pre_tokenizer(Some(split));
        tokenizer.with_decoder(Some(DecoderSequence::new(vec![
            Replace::new("▁", " ")
                .map_err(|e| bad(e.to_string()))?
                .into(),
            ByteFallback::new().into(),
            Fuse::new().into(),
        ])));
        if let Some(bos) = self.piece(self.bos_id) {
            tokenizer.with_post_processor(Some(bos_template(bos, self.bos_id as u32)?));
        }
        let (special, plain): (Vec<AddedToken>, Vec<AddedToken>) =
            self.added_tokens().into_iter().partition(|t| t.special);
        tokenizer
            .add_special_tokens(special)
            .map_err(|e| bad(format!("special tokens: {e}")))?;
        tokenizer
            .add_tokens(plain)
            .map_err(|e| bad(format!("added tokens: {e}")))?;
        Ok(tokenizer)
    }

    fn check_gemma_style(&self) -> Result<()> {
        if self.model_type != BPE_MODEL {
            return Err(bad(format!(
                "model type {} is not BPE; only Gemma (BPE) tokenizers are supported",
                self.model_type
            )));
        }
        if self.add_dummy_prefix || self.remove_extra_whitespaces || self.has_charsmap {
            return Err(bad(
                "normalizer is not Gemma's (identity, no dummy prefix, no whitespace folding)"
                    .into(),
            ));
        }
        Ok(())
    }

    /// `(piece, score)` in id order, with Hugging Face's fix for old Gemma vocabularies without
    /// a `"\t"` piece: `<0x09>` is renamed `"\t"`.
    fn hf_vocab(&self) -> Vec<(String, f32)> {
        let mut vocab: Vec<(String, f32)> = self
            .pieces
            .iter()
            .map(|p| (p.piece.clone(), p.score))
            .collect();
        if !vocab.iter().any(|(p, _)| p == "\t")
            && let Some(entry) = vocab.iter_mut().find(|(p, _)| p == "<0x09>")
        {
            *entry = ("\t".to_string(), 0.0);
        }
        vocab
    }

    /// BPE merges as Hugging Face's `generate_merges` derives them from scores: every split of a
    /// piece into two pieces is a merge; merges are ranked by the merged piece's score (highest
    /// first), then by the lengths of the left and right parts (longest first), stably.
    fn merges(&self, vocab: &[(String, f32)]) -> Vec<(String, String)> {
        // Ids as the SentencePiece processor reports them, plus "\t" when only <0x09> exists.
        let mut ids: HashMap<&str, usize> = HashMap::new();
        for (id, p) in self.pieces.iter().enumerate() {
            ids.entry(p.piece.as_str()).or_insert(id);
        }
        if !ids.contains_key("\t")
            && let Some(&tab) = ids.get("<0x09>")
        {
            ids.insert("\t", tab);
        }
        let mut seen = HashSet::new();
        let mut merges: Vec<(String, String, f32)> = Vec::new();
        for (piece, score) in vocab {
            if !seen.insert(piece.as_str()) {
                continue;
            }
            let mut local: Vec<(&str, &str, usize, usize)> = piece
                .char_indices()
                .skip(1)
                .filter_map(|(at, _)| {
                    let (l, r) = piece.split_at(at);
                    Some((l, r, *ids.get(l)?, *ids.get(r)?))
                })
                .collect();
            local.sort_by_key(|&(_, _, il, ir)| (il, ir));
            merges.extend(
                local
                    .into_iter()
                    .map(|(l, r, _, _)| (l.to_string(), r.to_string(), *score)),
            );
        }
        let chars = |s: &str| s.chars().count();
        merges.sort_by(|a, b| {
            let ka = (a.2, chars(&a.0), chars(&a.1));
            let kb = (b.2, chars(&b.0), chars(&b.1));
            kb.partial_cmp(&ka).unwrap_or(std::cmp::Ordering::Equal)
        });
        merges.into_iter().map(|(l, r, _)| (l, r)).collect()
    }

    /// Control, unknown and user-defined pieces, matched verbatim before BPE (not normalised).
    /// Control and unknown pieces and Gemma's turn markers are special, as in Gemma's
    /// `tokenizer.json`.
    fn added_tokens(&self) -> Vec<AddedToken> {
        const SPECIAL_USER_PIECES: [&str; 2] = ["<start_of_turn>", "<end_of_turn>"];
        self.pieces
            .iter()
            .filter(|p| {
                matches!(
                    p.kind,
                    PieceType::Control | PieceType::Unknown | PieceType::UserDefined
                )
            })
            .map(|p| {
                let special = p.kind != PieceType::UserDefined
                    || SPECIAL_USER_PIECES.contains(&p.piece.as_str());
                AddedToken::from(p.piece.clone(), special).normalized(false)
            })
            .collect()
    }
}

fn parse_piece(bytes: &[u8]) -> Result<Piece> {
    let mut piece = Piece {
        piece: String::new(),
        score: 0.0,
        kind: PieceType::Normal,
    };
    let mut reader = Reader::new(bytes);
    while let Some((field, value)) = reader.next_field()? {
        match (field, value) {
            (1, Value::Bytes(b)) => piece.piece = as_string(b)?,
            (2, Value::Fixed32(bits)) => piece.score = f32::from_bits(bits),
            (3, Value::Varint(v)) => piece.kind = PieceType::from_proto(v)?,
            _ => {}
        }
    }
    Ok(piece)
}

/// `<bos> $A` (and `<bos> $A <bos> $B` for pairs), as Gemma's `tokenizer.json`.
fn bos_template(bos: &str, bos_id: u32) -> Result<TemplateProcessing> {
    TemplateProcessing::builder()
        .try_single(format!("{bos} $A"))
        .and_then(|b| b.try_pair(format!("{bos} $A {bos}:1 $B:1")))
        .map_err(|e| bad(format!("template: {e}")))?
        .special_tokens(vec![(bos.to_string(), bos_id)])
        .build()
        .map_err(|e| bad(format!("template: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn varint(mut v: u64, out: &mut Vec<u8>) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }

    fn bytes_field(field: u64, payload: &[u8], out: &mut Vec<u8>) {
        varint(field << 3 | 2, out);
        varint(payload.len() as u64, out);
        out.extend_from_slice(payload);
    }

    fn varint_field(field: u64, value: u64, out: &mut Vec<u8>) {
        varint(field << 3, out);
        varint(value, out);
    }

    fn piece(text: &str, score: f32, kind: u64) -> Vec<u8> {
        let mut p = Vec::new();
        bytes_field(1, text.as_bytes(), &mut p);
        varint(2 << 3 | 5, &mut p);
        p.extend_from_slice(&score.to_le_bytes());
        varint_field(3, kind, &mut p);
        p
    }

    /// A hand-written proto: <pad> <eos> <bos> <unk>, bytes for 'a' 'b', pieces a b ab ▁ ▁ab.
    fn tiny_proto() -> Vec<u8> {
        let mut m = Vec::new();
        for (text, score, kind) in [
            ("<pad>", 0.0, 3),
            ("<eos>", 0.0, 3),
            ("<bos>", 0.0, 3),
            ("<unk>", 0.0, 2),
            ("<0x61>", 0.0, 6),
            ("<0x63>", 0.0, 6),
            ("ab", -1.0, 1),
            ("▁ab", -2.0, 1),
            ("a", -3.0, 1),
            ("b", -4.0, 1),
            ("▁", -5.0, 1),
        ] {
            bytes_field(1, &piece(text, score, kind), &mut m);
        }
        let mut trainer = Vec::new();
        varint_field(3, 2, &mut trainer);
        varint_field(35, 1, &mut trainer);
        varint_field(40, 3, &mut trainer);
        varint_field(41, 2, &mut trainer);
        varint_field(42, 1, &mut trainer);
        varint_field(43, 0, &mut trainer);
        bytes_field(2, &trainer, &mut m);
        let mut normalizer = Vec::new();
        bytes_field(1, b"identity", &mut normalizer);
        varint_field(3, 0, &mut normalizer);
        varint_field(4, 0, &mut normalizer);
        bytes_field(3, &normalizer, &mut m);
        m
    }

    #[test]
    fn parses_pieces_and_specs() {
        let m = SentencePieceModel::parse(&tiny_proto()).unwrap();
        assert_eq!(m.pieces.len(), 11);
        assert_eq!(m.pieces[3].kind, PieceType::Unknown);
        assert_eq!(m.pieces[6].score, -1.0);
        assert_eq!((m.bos_id, m.eos_id, m.pad_id), (2, 1, 0));
        assert!(m.byte_fallback && !m.add_dummy_prefix && !m.remove_extra_whitespaces);
        assert_eq!(m.model_type, BPE_MODEL);
    }

    #[test]
    fn negative_ids_decode_as_minus_one() {
        let mut m = Vec::new();
        bytes_field(1, &piece("x", 0.0, 1), &mut m);
        let mut trainer = Vec::new();
        varint_field(43, u64::MAX, &mut trainer);
        bytes_field(2, &trainer, &mut m);
        assert_eq!(SentencePieceModel::parse(&m).unwrap().pad_id, -1);
    }

    #[test]
    fn converted_tokenizer_merges_by_score_and_falls_back_to_bytes() {
        let tok = SentencePieceModel::parse(&tiny_proto())
            .unwrap()
            .to_gemma_tokenizer()
            .unwrap();
        let ids = tok.encode("ab ab c<eos>", true).unwrap().get_ids().to_vec();
        // <bos>, "ab", "▁ab", "▁", byte 'c', "<eos>" (added token)
        assert_eq!(ids, vec![2, 6, 7, 10, 5, 1]);
    }

    #[test]
    fn rejects_truncated_input_and_unigram_models() {
        let proto = tiny_proto();
        assert!(SentencePieceModel::parse(&proto[..proto.len() - 3]).is_err());
        let mut m = Vec::new();
        bytes_field(1, &piece("x", 0.0, 1), &mut m);
        let parsed = SentencePieceModel::parse(&m).unwrap();
        assert!(parsed.to_gemma_tokenizer().is_err());
    }
}

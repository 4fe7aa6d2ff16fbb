//! Sentence embeddings with all-MiniLM-L6-v2: WordPiece through the `tokenizers` crate, then the
//! ONNX graph, which mean-pools over real tokens and L2-normalises (so a dot product is the
//! cosine similarity).

use std::path::Path;
use std::sync::Arc;

use ort::value::Tensor;
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};

use super::{InferenceError, Model, ModelId, ModelStore, Runtime};

pub const MODEL: &str = "minilm-l6-v2";
const BATCH: usize = 32;

pub struct TextEmbedder {
    model: Arc<Model>,
    tokenizer: Tokenizer,
}

impl std::fmt::Debug for TextEmbedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextEmbedder").field("model", &self.model).finish_non_exhaustive()
    }
}

impl TextEmbedder {
    pub fn load(runtime: &Runtime, store: &dyn ModelStore) -> Result<Self, InferenceError> {
        Self::new(Model::load(runtime, store, MODEL)?)
    }

    pub fn new(model: Arc<Model>) -> Result<Self, InferenceError> {
        let max_tokens = model.manifest().pre_f64("max_tokens", 256.0) as usize;
        let tokenizer = load_tokenizer(&model, max_tokens, None)?;
        Ok(Self { model, tokenizer })
    }

    pub fn model(&self) -> ModelId {
        self.model.id()
    }

    /// Dimension of the vectors.
    pub fn dim(&self) -> Option<usize> {
        self.model.manifest().output_width(0)
    }

    /// One unit vector per text.
    pub fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, InferenceError> {
        let mut out = Vec::with_capacity(texts.len());
        for chunk in texts.chunks(BATCH) {
            let (ids, mask, types, shape) = encode(&self.tokenizer, &self.model, chunk)?;
            let err = |e| self.model.session_error(e);
            let mut session = self.model.session();
            let outputs = session
                .run(ort::inputs![
                    "input_ids" => Tensor::from_array((shape.clone(), ids)).map_err(err)?,
                    "attention_mask" => Tensor::from_array((shape.clone(), mask)).map_err(err)?,
                    "token_type_ids" => Tensor::from_array((shape, types)).map_err(err)?,
                ])
                .map_err(err)?;
            let (shape, values) = outputs["sentence_embedding"].try_extract_tensor::<f32>().map_err(err)?;
            let dim = shape.get(1).copied().unwrap_or(0) as usize;
            if dim == 0 || values.len() != chunk.len() * dim {
                return Err(self.model.output_error(format!("shape {shape:?} for {} texts", chunk.len())));
            }
            out.extend(values.chunks_exact(dim).map(<[f32]>::to_vec));
        }
        Ok(out)
    }
}

/// Cosine similarity of two vectors.
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    if na == 0.0 || nb == 0.0 { 0.0 } else { dot / (na * nb) }
}

/// The model's `tokenizer.json`, truncating to `max_tokens` and padding to the longest text, or
/// to `fixed` tokens when the model has a fixed sequence length.
pub(crate) fn load_tokenizer(model: &Model, max_tokens: usize, fixed: Option<usize>) -> Result<Tokenizer, InferenceError> {
    let file = model.manifest().tokenizer.as_deref().unwrap_or("tokenizer.json");
    let path = model.dir().join(file);
    let bad = |reason: String| InferenceError::Tokenizer { path: path.clone(), reason };
    let mut tokenizer = Tokenizer::from_file(Path::new(&path)).map_err(|e| bad(e.to_string()))?;
    tokenizer.with_truncation(Some(TruncationParams { max_length: max_tokens, ..TruncationParams::default() })).map_err(|e| bad(e.to_string()))?;
    let strategy = fixed.map_or(PaddingStrategy::BatchLongest, PaddingStrategy::Fixed);
    let pad_id = tokenizer.get_padding().map_or(0, |p| p.pad_id);
    tokenizer.with_padding(Some(PaddingParams { strategy, pad_id, ..PaddingParams::default() }));
    Ok(tokenizer)
}

type Encoded = (Vec<i64>, Vec<i64>, Vec<i64>, Vec<i64>);

/// Token ids, attention mask, token types, and their shared `[batch, tokens]` shape.
pub(crate) fn encode(tokenizer: &Tokenizer, model: &Model, texts: &[&str]) -> Result<Encoded, InferenceError> {
    let encodings = tokenizer
        .encode_batch(texts.to_vec(), true)
        .map_err(|e| InferenceError::Tokenizer { path: model.dir().join("tokenizer.json"), reason: e.to_string() })?;
    let len = encodings.iter().map(tokenizers::Encoding::len).max().unwrap_or(0).max(1);
    let (mut ids, mut mask, mut types) = (Vec::new(), Vec::new(), Vec::new());
    for e in &encodings {
        let pad = len - e.len();
        ids.extend(e.get_ids().iter().map(|&v| i64::from(v)).chain(std::iter::repeat_n(0, pad)));
        mask.extend(e.get_attention_mask().iter().map(|&v| i64::from(v)).chain(std::iter::repeat_n(0, pad)));
        types.extend(e.get_type_ids().iter().map(|&v| i64::from(v)).chain(std::iter::repeat_n(0, pad)));
    }
    Ok((ids, mask, types, vec![texts.len() as i64, len as i64]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing;

    #[test]
    fn related_sentences_are_closer_than_unrelated_ones() {
        let (runtime, store) = testing::runtime_and_store();
        let embedder = TextEmbedder::load(&runtime, &store).expect("load MiniLM");
        let texts = [
            "How to cook a quick tomato pasta for dinner",
            "An easy spaghetti recipe with tomato sauce",
            "The striker scored a late goal to win the football match",
            "Football fans celebrated the championship victory",
        ];

        let started = std::time::Instant::now();
        let v = embedder.embed(&texts).expect("embed");
        eprintln!("minilm: 4 sentences in {:?}", started.elapsed());

        assert_eq!((v.len(), v[0].len()), (4, 384));
        let norm: f32 = v[0].iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-3, "not unit length: {norm}");
        let (pasta, football) = (cosine(&v[0], &v[1]), cosine(&v[2], &v[3]));
        let cross = [cosine(&v[0], &v[2]), cosine(&v[0], &v[3]), cosine(&v[1], &v[2]), cosine(&v[1], &v[3])];
        eprintln!("minilm: cooking {pasta:.3}, football {football:.3}, across {cross:?}");
        assert!(cross.iter().all(|&c| c < pasta.min(football) - 0.2), "{pasta} {football} {cross:?}");
    }

    #[test]
    fn a_batch_gives_the_same_vectors_as_one_at_a_time() {
        let (runtime, store) = testing::runtime_and_store();
        let embedder = TextEmbedder::load(&runtime, &store).expect("load MiniLM");
        let texts = ["short", "a much longer sentence that needs padding for the other one"];

        let together = embedder.embed(&texts).expect("batch");
        let alone = embedder.embed(&texts[..1]).expect("single");

        assert!(cosine(&together[0], &alone[0]) > 0.9999, "padding changed the embedding");
    }
}

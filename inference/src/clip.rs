//! CLIP-style image and text encoders: frames and phrases into one vector space, for zero-shot
//! visual matching. No registry package carries real CLIP weights; the pack ships small
//! generated models with the same signature (`clip-tiny-*`), and docs/models.md explains how to
//! export a real one under the same names and manifest keys.

use std::sync::Arc;

use ort::value::Tensor;
use tokenizers::Tokenizer;

use super::embedding::{encode, load_tokenizer};
use super::image::{RgbImage, RgbView};
use super::{Batcher, BatcherConfig, InferenceError, Model, ModelId, ModelStore, Runtime};

pub const IMAGE_MODEL: &str = "clip-tiny-image";
pub const TEXT_MODEL: &str = "clip-tiny-text";

#[derive(Debug, Clone)]
pub struct ImageEncoder {
    model: Arc<Model>,
}

impl ImageEncoder {
    pub fn load(runtime: &Runtime, store: &dyn ModelStore, name: &str) -> Result<Self, InferenceError> {
        Ok(Self { model: Model::load(runtime, store, name)? })
    }

    pub fn model(&self) -> ModelId {
        self.model.id()
    }

    /// One unit vector per frame: shorter side resized to the model's size, centre crop,
    /// normalised with the manifest's mean and std.
    pub fn embed(&self, frames: &[RgbView<'_>]) -> Result<Vec<Vec<f32>>, InferenceError> {
        if frames.is_empty() {
            return Ok(Vec::new());
        }
        let m = self.model.manifest();
        let size = m.pre_f64("size", 224.0) as usize;
        let mean = m.pre_triple("mean", [0.481_454_66, 0.457_827_5, 0.408_210_73]);
        let std = m.pre_triple("std", [0.268_629_5, 0.261_302_6, 0.275_777_1]);
        let plane = size * size;
        let mut input = vec![0f32; frames.len() * 3 * plane];
        for (n, f) in frames.iter().enumerate() {
            let (w, h) = (f.width as f32, f.height as f32);
            let side = w.min(h);
            let region = ((w - side) / 2.0, (h - side) / 2.0, side, side);
            let base = n * 3 * plane;
            f.sample_region(region, size, size, |c, i, v| input[base + c * plane + i] = (v / 255.0 - mean[c]) / std[c]);
        }
        let err = |e| self.model.session_error(e);
        let tensor = Tensor::from_array((vec![frames.len() as i64, 3, size as i64, size as i64], input)).map_err(err)?;
        let mut session = self.model.session();
        let outputs = session.run(ort::inputs![tensor]).map_err(err)?;
        let (shape, values) = outputs[0].try_extract_tensor::<f32>().map_err(err)?;
        let dim = shape.get(1).copied().unwrap_or(0) as usize;
        if dim == 0 || values.len() != frames.len() * dim {
            return Err(self.model.output_error(format!("shape {shape:?} for {} frames", frames.len())));
        }
        Ok(values.chunks_exact(dim).map(<[f32]>::to_vec).collect())
    }

    /// A batcher merging frames from concurrent jobs into shared model calls.
    pub fn batcher(&self, config: BatcherConfig) -> Result<Batcher<RgbImage, Vec<f32>>, InferenceError> {
        let encoder = self.clone();
        Batcher::spawn("image_encoder", config, move |images: Vec<RgbImage>| {
            let views: Vec<RgbView<'_>> = images.iter().map(RgbImage::view).collect();
            encoder.embed(&views)
        })
    }
}

pub struct TextEncoder {
    model: Arc<Model>,
    tokenizer: Tokenizer,
}

impl std::fmt::Debug for TextEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextEncoder").field("model", &self.model).finish_non_exhaustive()
    }
}

impl TextEncoder {
    pub fn load(runtime: &Runtime, store: &dyn ModelStore, name: &str) -> Result<Self, InferenceError> {
        let model = Model::load(runtime, store, name)?;
        let tokens = model.manifest().pre_f64("max_tokens", 77.0) as usize;
        let tokenizer = load_tokenizer(&model, tokens, Some(tokens))?;
        Ok(Self { model, tokenizer })
    }

    pub fn model(&self) -> ModelId {
        self.model.id()
    }

    /// One unit vector per phrase, in the image encoder's space.
    pub fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, InferenceError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let (ids, mask, _, shape) = encode(&self.tokenizer, &self.model, texts)?;
        let err = |e| self.model.session_error(e);
        let mut session = self.model.session();
        let outputs = session
            .run(ort::inputs![
                "input_ids" => Tensor::from_array((shape.clone(), ids)).map_err(err)?,
                "attention_mask" => Tensor::from_array((shape, mask)).map_err(err)?,
            ])
            .map_err(err)?;
        let (shape, values) = outputs[0].try_extract_tensor::<f32>().map_err(err)?;
        let dim = shape.get(1).copied().unwrap_or(0) as usize;
        if dim == 0 || values.len() != texts.len() * dim {
            return Err(self.model.output_error(format!("shape {shape:?} for {} texts", texts.len())));
        }
        Ok(values.chunks_exact(dim).map(<[f32]>::to_vec).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::embedding::cosine;
    use crate::testing;

    #[tokio::test]
    async fn tiny_clip_embeds_frames_through_the_batcher_and_phrases() {
        let (runtime, store) = testing::runtime_and_store();
        let images = ImageEncoder::load(&runtime, &store, IMAGE_MODEL).expect("load image encoder");
        let texts = TextEncoder::load(&runtime, &store, TEXT_MODEL).expect("load text encoder");
        let batcher = images.batcher(BatcherConfig { max_batch: 3, max_wait: std::time::Duration::from_secs(10) }).expect("batcher");
        let frame = |colour: &str| RgbImage { data: testing::ffmpeg_rgb(&format!("color={colour}:s=320x240:d=1"), 320, 240), width: 320, height: 240 };

        let (a, b, c) = tokio::join!(batcher.submit(frame("red")), batcher.submit(frame("blue")), batcher.submit(frame("red")));
        let phrases = texts.embed(&["a bowl of pasta", "a football pitch"]).expect("text");

        let (a, b, c) = (a.expect("a"), b.expect("b"), c.expect("c"));
        assert_eq!(a.len(), 64);
        assert!(cosine(&a, &c) > 0.999 && cosine(&a, &b) < 0.999, "same frames should match, different ones differ");
        assert_eq!(batcher.stats().size_counts, vec![0, 0, 1]);
        assert_eq!((phrases.len(), phrases[0].len()), (2, 64));
        assert!(phrases.iter().flatten().all(|x| x.is_finite()));
    }
}

//! AudioSet-style audio tagging: the 16 kHz waveform in fixed windows (`window_seconds` in the
//! manifest), one sigmoid score per label each, pooled by their maximum over the clip (a sound
//! that is there for a few seconds is there).
//!
//! The default pack carries a small generated tagger with this signature (`audioset-tiny`,
//! random weights); docs/models.md has the recipe for a real one.

use std::sync::Arc;

use ort::value::Tensor;
use serde::Serialize;

use super::manifest::Labels;
use super::{InferenceError, Model, ModelId, ModelStore, Runtime};

pub const MODEL: &str = "audioset-tiny";

/// One label and its pooled score.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AudioTag {
    pub label: String,
    pub score: f32,
}

pub struct AudioTagger {
    model: Arc<Model>,
    labels: Vec<String>,
    window: usize,
}

impl std::fmt::Debug for AudioTagger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AudioTagger").field("model", &self.model).field("labels", &self.labels.len()).finish_non_exhaustive()
    }
}

impl AudioTagger {
    pub fn load(runtime: &Runtime, store: &dyn ModelStore, name: &str) -> Result<Self, InferenceError> {
        let model = Model::load(runtime, store, name)?;
        let manifest = model.manifest();
        let labels = match &manifest.labels {
            Some(Labels::File(file)) => {
                let path = model.dir().join(file);
                std::fs::read_to_string(&path)
                    .map_err(|e| InferenceError::Manifest { path: path.clone(), reason: format!("labels: {e}") })?
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            }
            _ => return Err(InferenceError::Manifest { path: model.dir().join("manifest.json"), reason: "an audio tagger needs a labels file".into() }),
        };
        if manifest.output_width(0).is_some_and(|w| w != labels.len()) {
            return Err(InferenceError::Manifest {
                path: model.dir().join("manifest.json"),
                reason: format!("{} labels for {} outputs", labels.len(), manifest.output_width(0).unwrap_or(0)),
            });
        }
        let rate = manifest.pre_f64("sample_rate", 16_000.0);
        let window = (manifest.pre_f64("window_seconds", 10.0) * rate).round().max(1.0) as usize;
        Ok(Self { model, labels, window })
    }

    pub fn model(&self) -> ModelId {
        self.model.id()
    }

    /// Every label with its score, highest first; empty for empty audio.
    pub fn tag(&self, samples: &[f32]) -> Result<Vec<AudioTag>, InferenceError> {
        if samples.is_empty() {
            return Ok(Vec::new());
        }
        let windows: Vec<&[f32]> = samples.chunks(self.window).filter(|w| w.len() * 4 >= self.window || samples.len() < self.window).collect();
        let mut batch = Vec::with_capacity(windows.len() * self.window);
        for w in &windows {
            batch.extend_from_slice(w);
            batch.extend(std::iter::repeat_n(0.0, self.window - w.len()));
        }
        let err = |e| self.model.session_error(e);
        let mut session = self.model.session();
        let input_name = self.model.manifest().inputs.first().map(|i| i.name.clone()).unwrap_or_else(|| "waveform".into());
        let outputs = session.run(ort::inputs![input_name => Tensor::from_array(([windows.len(), self.window], batch)).map_err(err)?]).map_err(err)?;
        let (shape, values) = outputs[0].try_extract_tensor::<f32>().map_err(err)?;
        let n = self.labels.len();
        if values.len() != windows.len() * n {
            return Err(self.model.output_error(format!("shape {shape:?} for {} windows of {n} labels", windows.len())));
        }
        let mut pooled = vec![f32::MIN; n];
        for row in values.chunks_exact(n) {
            for (p, v) in pooled.iter_mut().zip(row) {
                *p = p.max(*v);
            }
        }
        let mut tags: Vec<AudioTag> = self.labels.iter().cloned().zip(pooled).map(|(label, score)| AudioTag { label, score }).collect();
        tags.sort_by(|a, b| b.score.total_cmp(&a.score));
        Ok(tags)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing;

    #[test]
    fn the_generated_tagger_scores_every_label_in_range() {
        let (runtime, store) = testing::runtime_and_store();
        let tagger = AudioTagger::load(&runtime, &store, MODEL).expect("load tagger");
        let audio = testing::ffmpeg_audio(&["-f", "lavfi", "-i", "sine=frequency=440:duration=12"]);

        let tags = tagger.tag(&audio).expect("tags");

        assert_eq!(tags.len(), tagger.labels.len());
        assert!(tags.iter().all(|t| (0.0..=1.0).contains(&t.score)), "{tags:?}");
        assert!(tags.windows(2).all(|w| w[0].score >= w[1].score));
        assert!(tagger.tag(&[]).expect("empty").is_empty());
    }
}

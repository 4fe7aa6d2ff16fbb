//! The hashtag classifier's artifact: a one-vs-rest linear head over the fused embedding of a
//! video (text embedding, then the image embedding when the model was trained with one).
//!
//! The trainer writes it, the model registry stores it, and workers load it; it is plain JSON
//! so that a version can be inspected and diffed by hand:
//!
//! ```json
//! {
//!   "format": "reelq-hashtag-linear/1",
//!   "version": "2026-11-23T20:00:00Z-3f2a",
//!   "text_model": "minilm-l6-v2@1", "text_dim": 384,
//!   "image_model": null, "image_dim": 0,
//!   "labels": ["#cooking", "#football"],
//!   "weights": [[...text_dim + image_dim floats...], [...]],
//!   "bias": [-1.2, -0.7],
//!   "metrics": { "p_at_5": 0.61, "r_at_5": 0.74, "map": 0.58 }
//! }
//! ```
//!
//! Probabilities are `sigmoid(w·x + b)` with `x` the concatenation of the L2-normalised
//! embeddings; a missing image embedding contributes zeros, so a text-only video still scores.

pub mod train;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The format string this code reads and writes.
pub const FORMAT: &str = "reelq-hashtag-linear/1";

/// Why an artifact cannot be used.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ClassifierError {
    #[error("the classifier artifact is not valid JSON: {0}")]
    Json(String),
    #[error("unsupported classifier format `{0}` (this build reads `{FORMAT}`)")]
    Format(String),
    #[error("the classifier artifact is inconsistent: {0}")]
    Shape(String),
}

/// A trained linear hashtag head.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinearHead {
    pub format: String,
    /// Registry version; results name it.
    pub version: String,
    /// The text embedding model the head was trained on (`name@version`).
    pub text_model: String,
    pub text_dim: usize,
    /// The image embedding model, when the head uses one.
    #[serde(default)]
    pub image_model: Option<String>,
    #[serde(default)]
    pub image_dim: usize,
    /// Hashtags, `#` included, lowercase.
    pub labels: Vec<String>,
    /// One row per label, `text_dim + image_dim` long.
    pub weights: Vec<Vec<f32>>,
    pub bias: Vec<f32>,
    /// Held-out evaluation figures, by name.
    #[serde(default)]
    pub metrics: BTreeMap<String, f64>,
}

impl LinearHead {
    /// Parses and checks an artifact.
    pub fn from_json(bytes: &[u8]) -> Result<Self, ClassifierError> {
        let head: Self = serde_json::from_slice(bytes).map_err(|e| ClassifierError::Json(e.to_string()))?;
        head.check()?;
        Ok(head)
    }

    /// The artifact's bytes.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Checks the format and that every array has the size the header promises.
    pub fn check(&self) -> Result<(), ClassifierError> {
        if self.format != FORMAT {
            return Err(ClassifierError::Format(self.format.clone()));
        }
        let width = self.text_dim + self.image_dim;
        if self.text_dim == 0 {
            return Err(ClassifierError::Shape("text_dim is 0".into()));
        }
        if self.labels.len() != self.weights.len() || self.labels.len() != self.bias.len() {
            return Err(ClassifierError::Shape(format!("{} labels, {} weight rows, {} biases", self.labels.len(), self.weights.len(), self.bias.len())));
        }
        if let Some((i, row)) = self.weights.iter().enumerate().find(|(_, r)| r.len() != width) {
            return Err(ClassifierError::Shape(format!("weight row {i} has {} values, expected {width}", row.len())));
        }
        if self.weights.iter().flatten().chain(&self.bias).any(|v| !v.is_finite()) {
            return Err(ClassifierError::Shape("non-finite weight".into()));
        }
        Ok(())
    }

    /// The probability of every label for one video, in label order. `image` is ignored by a
    /// text-only head and may be absent for a head that has an image part.
    pub fn predict(&self, text: &[f32], image: Option<&[f32]>) -> Result<Vec<f32>, ClassifierError> {
        if text.len() != self.text_dim {
            return Err(ClassifierError::Shape(format!("text embedding has {} values, the head expects {}", text.len(), self.text_dim)));
        }
        if let Some(img) = image.filter(|_| self.image_dim > 0)
            && img.len() != self.image_dim
        {
            return Err(ClassifierError::Shape(format!("image embedding has {} values, the head expects {}", img.len(), self.image_dim)));
        }
        let text = normalised(text);
        let image = image.filter(|_| self.image_dim > 0).map(normalised);
        Ok(self
            .weights
            .iter()
            .zip(&self.bias)
            .map(|(row, b)| {
                let (wt, wi) = row.split_at(self.text_dim);
                let mut z = *b + dot(wt, &text);
                if let Some(img) = &image {
                    z += dot(wi, img);
                }
                sigmoid(z)
            })
            .collect())
    }
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// The vector scaled to unit length (zeros stay zeros).
pub fn normalised(v: &[f32]) -> Vec<f32> {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if n > 0.0 { v.iter().map(|x| x / n).collect() } else { v.to_vec() }
}

/// The logistic function, stable for large |z|.
pub fn sigmoid(z: f32) -> f32 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let e = z.exp();
        e / (1.0 + e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head() -> LinearHead {
        LinearHead {
            format: FORMAT.into(),
            version: "v1".into(),
            text_model: "minilm-l6-v2@1".into(),
            text_dim: 2,
            image_model: None,
            image_dim: 0,
            labels: vec!["#a".into(), "#b".into()],
            weights: vec![vec![4.0, 0.0], vec![0.0, 4.0]],
            bias: vec![-2.0, -2.0],
            metrics: BTreeMap::new(),
        }
    }

    #[test]
    fn predicts_the_label_whose_direction_the_embedding_points_in() {
        let p = head().predict(&[3.0, 0.0], None).expect("dimensions match");
        assert!((p[0] - sigmoid(2.0)).abs() < 1e-6, "{p:?}");
        assert!((p[1] - sigmoid(-2.0)).abs() < 1e-6, "{p:?}");
    }

    #[test]
    fn round_trips_through_json_and_rejects_bad_shapes() {
        let h = head();
        assert_eq!(LinearHead::from_json(&h.to_json()).expect("round trip"), h);
        let mut bad = h.clone();
        bad.weights[1].push(1.0);
        assert!(matches!(LinearHead::from_json(&bad.to_json()), Err(ClassifierError::Shape(_))));
        let mut other = h.clone();
        other.format = "something-else/2".into();
        assert!(matches!(LinearHead::from_json(&other.to_json()), Err(ClassifierError::Format(_))));
        assert!(matches!(h.predict(&[1.0, 2.0, 3.0], None), Err(ClassifierError::Shape(_))));
        assert!(matches!(LinearHead::from_json(b"{"), Err(ClassifierError::Json(_))));
    }
}

//! The feature contract between training and inference: the trainer builds its examples and
//! the analyses build a video's inputs with these same functions, so the two never drift.

/// The text a pulled video is embedded from: its description without hashtags and mentions,
/// which are the labels (or noise), not evidence.
pub fn example_text(description: &str) -> String {
    description.split_whitespace().filter(|w| !w.starts_with('#') && !w.starts_with('@')).collect::<Vec<_>>().join(" ")
}

/// The regressor's features: the unit text embedding, then the hashtag count and the text
/// length on small scales. The `virality` analysis builds the same vector for a video.
pub fn virality_features(text: &[f32], hashtags: usize, chars: usize) -> Vec<f32> {
    let mut f = crate::classifier::normalised(text);
    f.push((hashtags.min(30) as f32) / 10.0);
    f.push(((chars as f32) + 1.0).ln() / 10.0);
    f
}

/// Names the feature layout of [`virality_features`] for a text model.
pub fn virality_feature_model(text_model: &str) -> String {
    format!("{text_model}+meta/1")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_text_drops_hashtags_and_mentions() {
        assert_eq!(example_text("pasta night #cooking #fyp with @chef  tonight"), "pasta night with tonight");
        assert_eq!(example_text("#a #b"), "");
    }

    #[test]
    fn virality_features_append_scaled_metadata() {
        let f = virality_features(&[3.0, 4.0], 5, 0);
        assert_eq!(f.len(), 4);
        assert!((f[0] - 0.6).abs() < 1e-6 && (f[1] - 0.8).abs() < 1e-6);
        assert!((f[2] - 0.5).abs() < 1e-6);
        assert!(f[3].abs() < 1e-6);
    }
}

//! A job's `options`, parsed once: the api validates a request with [`JobOptions::parse`] and the
//! worker reads the stored object with the same function, so both sides agree on every key.

use serde_json::{Map, Value};

use crate::domain::{Analysis, MuxOptions};

/// Longest caption accepted, TikTok's own limit.
pub const MAX_CAPTION_CHARS: usize = 2200;

/// Longest `noop_ms`, in milliseconds.
pub const MAX_NOOP_MS: u64 = 600_000;

/// The options of a job, typed. Keys no analysis reads are kept as they were stored, and
/// ignored.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JobOptions {
    /// The text the video will be posted with: evidence for hashtags and the reach estimate.
    pub caption: Option<String>,
    /// Two-letter country code, upper case, whose pulled videos choose the music.
    pub region: Option<String>,
    /// How long the diagnostic `noop` analysis waits.
    pub noop_ms: u64,
    /// The track of a `mux` job (parsed only when `mux` is requested).
    pub mux: Option<MuxOptions>,
    /// Who is posting: an id the tenant chooses for one of its creators. Their saved feedback
    /// lifts the hashtags they use when the video supports them.
    pub creator: Option<String>,
}

/// A refused option: the stable problem code and a sentence for the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct OptionsError {
    /// `invalid_options`, or `invalid_mux_options` for `options.mux`.
    pub code: &'static str,
    pub message: String,
}

impl OptionsError {
    fn invalid(message: impl Into<String>) -> Self {
        Self { code: "invalid_options", message: message.into() }
    }
}

impl JobOptions {
    /// Reads and checks `options` for a job asking for `analyses`.
    pub fn parse(options: &Map<String, Value>, analyses: &[Analysis]) -> Result<Self, OptionsError> {
        let noop_ms = match options.get("noop_ms") {
            None => 0,
            Some(v) => v
                .as_u64()
                .filter(|n| *n <= MAX_NOOP_MS)
                .ok_or_else(|| OptionsError::invalid(format!("noop_ms must be a whole number of milliseconds up to {MAX_NOOP_MS}")))?,
        };
        let region = match options.get("region") {
            None => None,
            Some(v) => Some(
                v.as_str()
                    .filter(|r| r.len() == 2 && r.chars().all(|c| c.is_ascii_alphabetic()))
                    .map(str::to_ascii_uppercase)
                    .ok_or_else(|| OptionsError::invalid("region must be a two-letter country code such as US"))?,
            ),
        };
        let caption = match options.get("caption") {
            None => None,
            Some(v) => Some(
                v.as_str()
                    .filter(|c| c.chars().count() <= MAX_CAPTION_CHARS)
                    .map(str::to_owned)
                    .ok_or_else(|| OptionsError::invalid(format!("caption must be text of at most {MAX_CAPTION_CHARS} characters")))?,
            ),
        };
        let creator = match options.get("creator") {
            None => None,
            Some(v) => Some(v.as_str().filter(|c| valid_creator(c)).map(str::to_owned).ok_or_else(|| {
                OptionsError::invalid(format!("creator must be an id of 1 to {MAX_CREATOR_CHARS} letters, digits and . _ : @ -, such as \"creator-42\""))
            })?),
        };
        let mux = if analyses.contains(&Analysis::Mux) {
            Some(MuxOptions::from_job_options(options).map_err(|message| OptionsError { code: "invalid_mux_options", message })?)
        } else {
            None
        };
        Ok(Self { caption, region, noop_ms, mux, creator })
    }

    /// The caption, when it has any text.
    pub fn caption_text(&self) -> Option<&str> {
        self.caption.as_deref().filter(|c| !c.trim().is_empty())
    }
}

/// Longest creator id.
pub const MAX_CREATOR_CHARS: usize = 128;

fn valid_creator(c: &str) -> bool {
    (1..=MAX_CREATOR_CHARS).contains(&c.len()) && c.chars().all(|ch| ch.is_ascii_alphanumeric() || "._:@-".contains(ch))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn parse(v: Value, analyses: &[Analysis]) -> Result<JobOptions, OptionsError> {
        JobOptions::parse(v.as_object().expect("object"), analyses)
    }

    #[test]
    fn reads_every_key_and_keeps_defaults() {
        let o = parse(json!({ "caption": "cats #cat", "region": "gb", "noop_ms": 5, "creator": "maya.fit", "other": true }), &[Analysis::Noop])
            .expect("valid");
        let creator = Some("maya.fit".into());
        assert_eq!(o, JobOptions { caption: Some("cats #cat".into()), region: Some("GB".into()), noop_ms: 5, mux: None, creator });
        assert_eq!(parse(json!({}), &[Analysis::Probe]).expect("empty"), JobOptions::default());
        assert_eq!(parse(json!({ "caption": "  " }), &[]).expect("blank").caption_text(), None);
    }

    #[test]
    fn refuses_bad_values_with_stable_codes() {
        let code = |v: Value, a: &[Analysis]| parse(v, a).expect_err("refused").code;
        assert_eq!(code(json!({ "noop_ms": -1 }), &[]), "invalid_options");
        assert_eq!(code(json!({ "noop_ms": 600_001 }), &[]), "invalid_options");
        assert_eq!(code(json!({ "region": "USA" }), &[]), "invalid_options");
        assert_eq!(code(json!({ "caption": 7 }), &[]), "invalid_options");
        assert_eq!(code(json!({ "caption": "x".repeat(2201) }), &[]), "invalid_options");
        assert_eq!(code(json!({}), &[Analysis::Mux]), "invalid_mux_options");
        for creator in [json!(""), json!("has space"), json!("x".repeat(129)), json!(42), json!("über")] {
            assert_eq!(code(json!({ "creator": creator }), &[]), "invalid_options", "{creator}");
        }
        // `mux` is only read when the mux analysis is asked for.
        assert!(parse(json!({ "mux": "anything" }), &[Analysis::Probe]).is_ok());
    }
}

//! The curated vocabulary's description embeddings by the default text encoder, shipped with
//! reelq (`assets/description-vectors.bin`) so that a worker's first hashtag job does not wait
//! for thousands of descriptions to be embedded. They are used only when the loaded encoder is
//! the very model they were computed with (same name, version and SHA-256) and only for the
//! description texts they were computed from; anything else (another model, a tag added to the
//! seed since, pulled tags) is embedded on first use as before.
//!
//! Written by `reelq-hashtag-bench --write-vectors`. The format: the line
//! `reelq-description-vectors/1`, a JSON line `{"model", "version", "sha256", "dim", "count"}`,
//! then per description its UTF-8 length (u16, little endian), its text and `dim` components as
//! i16 (little endian) of the unit vector scaled by 32767.

use std::sync::LazyLock;

use serde::{Deserialize, Serialize};

/// The first line of the file.
pub const MAGIC: &str = "reelq-description-vectors/1";
const SCALE: f32 = 32_767.0;

/// Which model the vectors come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VectorsModel {
    pub model: String,
    pub version: String,
    pub sha256: String,
    pub dim: usize,
    pub count: usize,
}

/// Description embeddings of one model.
#[derive(Debug, Clone, PartialEq)]
pub struct ShippedVectors {
    pub header: VectorsModel,
    /// Description text and its vector.
    pub entries: Vec<(String, Vec<f32>)>,
}

static SHIPPED: LazyLock<Option<ShippedVectors>> =
    LazyLock::new(|| match ShippedVectors::decode(include_bytes!("../../assets/description-vectors.bin")) {
        Ok(v) => Some(v),
        Err(e) => {
            tracing::error!(error = %e, "the shipped description vectors are unreadable; the vocabulary is embedded on first use");
            None
        }
    });

impl ShippedVectors {
    /// The vectors shipped with reelq, unless the file is unreadable.
    pub fn shipped() -> Option<&'static ShippedVectors> {
        SHIPPED.as_ref()
    }

    /// Whether these vectors come from the model `name`@`version` with file checksum `sha256`.
    pub fn made_by(&self, name: &str, version: &str, sha256: &str) -> bool {
        self.header.model == name && self.header.version == version && self.header.sha256 == sha256
    }

    /// Encodes `entries` (unit vectors of `header.dim` components) in the shipped format.
    pub fn encode(header: &VectorsModel, entries: &[(String, Vec<f32>)]) -> Result<Vec<u8>, String> {
        let header = VectorsModel { count: entries.len(), ..header.clone() };
        let mut out = format!("{MAGIC}\n{}\n", serde_json::to_string(&header).map_err(|e| e.to_string())?).into_bytes();
        for (text, v) in entries {
            let len = u16::try_from(text.len()).map_err(|_| format!("a description of {} bytes is too long", text.len()))?;
            if v.len() != header.dim {
                return Err(format!("a vector of {} components, expected {}", v.len(), header.dim));
            }
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(text.as_bytes());
            for x in v {
                out.extend_from_slice(&((x.clamp(-1.0, 1.0) * SCALE).round() as i16).to_le_bytes());
            }
        }
        Ok(out)
    }

    /// Reads the shipped format.
    pub fn decode(bytes: &[u8]) -> Result<ShippedVectors, String> {
        let mut lines = bytes.splitn(3, |b| *b == b'\n');
        if lines.next() != Some(MAGIC.as_bytes()) {
            return Err(format!("not a `{MAGIC}` file"));
        }
        let header: VectorsModel = serde_json::from_slice(lines.next().unwrap_or_default()).map_err(|e| format!("header: {e}"))?;
        let mut rest = lines.next().unwrap_or_default();
        let mut take = |n: usize| -> Result<&[u8], String> {
            if rest.len() < n {
                return Err("the file is cut short".to_owned());
            }
            let (head, tail) = rest.split_at(n);
            rest = tail;
            Ok(head)
        };
        let mut entries = Vec::with_capacity(header.count);
        for _ in 0..header.count {
            let len = u16::from_le_bytes(take(2)?.try_into().map_err(|_| "length")?) as usize;
            let text = std::str::from_utf8(take(len)?).map_err(|e| format!("description: {e}"))?.to_owned();
            let v: Vec<f32> = take(header.dim * 2)?.chunks_exact(2).map(|c| f32::from(i16::from_le_bytes([c[0], c[1]])) / SCALE).collect();
            entries.push((text, v));
        }
        if !rest.is_empty() {
            return Err(format!("{} bytes after the last vector", rest.len()));
        }
        Ok(ShippedVectors { header, entries })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hashtags::Vocabulary;

    #[test]
    fn vectors_survive_encoding_to_within_a_hundredth_of_a_percent() {
        let header = VectorsModel { model: "m".into(), version: "1".into(), sha256: "abc".into(), dim: 3, count: 0 };
        let entries = vec![("pasta: cooking pasta".to_owned(), vec![0.6, -0.8, 0.0]), ("é".to_owned(), vec![1.0, 0.0, -1.0])];
        let back = ShippedVectors::decode(&ShippedVectors::encode(&header, &entries).expect("encodes")).expect("decodes");
        assert_eq!(back.header.count, 2);
        assert!(back.made_by("m", "1", "abc") && !back.made_by("m", "1", "abd"));
        for ((t, v), (u, w)) in entries.iter().zip(&back.entries) {
            assert_eq!(t, u);
            assert!(v.iter().zip(w).all(|(a, b)| (a - b).abs() < 1e-4), "{v:?} {w:?}");
        }
        let bytes = ShippedVectors::encode(&header, &entries).expect("encodes");
        assert!(ShippedVectors::decode(&bytes[..bytes.len() - 1]).expect_err("short").contains("cut short"));
        assert!(ShippedVectors::decode(b"other\n{}\n").is_err());
    }

    #[test]
    fn the_shipped_vectors_cover_every_curated_description() {
        let shipped = ShippedVectors::shipped().expect("assets/description-vectors.bin reads");
        assert_eq!(shipped.header.model, "minilm-l6-v2", "the default text encoder's");
        let have: std::collections::HashSet<&str> = shipped.entries.iter().map(|(t, _)| t.as_str()).collect();
        let missing: Vec<String> = Vocabulary::curated().entries().iter().map(|e| e.description()).filter(|d| !have.contains(d.as_str())).collect();
        assert!(
            missing.is_empty(),
            "{} descriptions have no shipped vector (first: {:?}): run `cargo run --release -p reelq-analysis --bin reelq-hashtag-bench -- --write-vectors`",
            missing.len(),
            missing.first()
        );
    }
}

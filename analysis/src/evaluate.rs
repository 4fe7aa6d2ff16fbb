//! The hashtag benchmark: clips with the tags a creator would post for them (made by
//! `tools/hashtag-bench/make-clips`), the suggestions reelq makes for each, and the figures
//! that judge them, with two baselines computed on the same clips: the most frequent tags of
//! the tuning half (the same list for every clip), and keyword matching alone.
//!
//! Figures are reported on the held-out half only; the tuning half is for choosing weights.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use reelq_core::domain::Analysis;
use reelq_core::options::JobOptions;
use serde::{Deserialize, Serialize};

use crate::AnalysisError;
use crate::findings::Finding;
use crate::hashtags::{self, RankOptions, Signals, Vocabulary};
use crate::pipeline::{Input, Pipeline};

/// `manifest.json` as `make-clips` writes it.
#[derive(Debug, Clone, Deserialize)]
pub struct Manifest {
    /// Tags that say nothing about content.
    pub generic: Vec<String>,
    pub clips: Vec<Clip>,
}

/// One benchmark clip.
#[derive(Debug, Clone, Deserialize)]
pub struct Clip {
    pub id: String,
    pub niche: String,
    /// `a` narration and on-screen text, `b` narration over music, `c` on-screen text only,
    /// `d` narration over noise with a posting caption.
    pub kind: String,
    pub file: String,
    /// The posting caption passed as `options.caption`.
    pub caption: Option<String>,
    /// The tags a creator would post it with, lower case with `#`.
    pub accept: Vec<String>,
    /// `tune` or `held_out`.
    pub half: String,
}

impl Manifest {
    pub fn load(dir: &Path) -> Result<Self, String> {
        let path = dir.join("manifest.json");
        let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
    }
}

/// What one method suggested for one clip, best first.
#[derive(Debug, Clone, Serialize)]
pub struct Ranked {
    pub clip: String,
    pub tags: Vec<String>,
}

/// The figures of one method over a set of clips.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Default)]
pub struct Figures {
    pub clips: usize,
    /// Share of clips with an acceptable tag in the top 5.
    pub hit_at_5: f64,
    /// Mean share of the top 5 slots holding an acceptable tag (an empty slot counts as wrong).
    pub precision_at_5: f64,
    /// Mean share of a clip's acceptable tags found in the top 10.
    pub recall_at_10: f64,
    /// Mean reciprocal rank of the first acceptable tag (0 when none is suggested).
    pub mrr: f64,
    /// Share of the suggested top-5 tags that are generic.
    pub generic_share: f64,
    /// Most generic tags in any clip's top 5.
    pub max_generic_in_top_5: usize,
    /// Share of clips with fewer than 5 suggestions.
    pub short_share: f64,
}

/// The figures of `ranked` against each clip's acceptable tags.
pub fn figures(clips: &[&Clip], ranked: &[Ranked], generic: &BTreeSet<String>) -> Figures {
    let by_id: BTreeMap<&str, &Ranked> = ranked.iter().map(|r| (r.clip.as_str(), r)).collect();
    let mut f = Figures { clips: clips.len(), ..Figures::default() };
    let (mut top5_total, mut top5_generic) = (0usize, 0usize);
    for clip in clips {
        let accept: BTreeSet<&str> = clip.accept.iter().map(String::as_str).collect();
        let tags = by_id.get(clip.id.as_str()).map_or(&[][..], |r| r.tags.as_slice());
        let top5 = &tags[..tags.len().min(5)];
        let hits5 = top5.iter().filter(|t| accept.contains(t.as_str())).count();
        let hits10 = tags.iter().take(10).filter(|t| accept.contains(t.as_str())).count();
        f.hit_at_5 += f64::from(u8::from(hits5 > 0));
        f.precision_at_5 += hits5 as f64 / 5.0;
        f.recall_at_10 += hits10 as f64 / accept.len().max(1) as f64;
        f.mrr += tags.iter().position(|t| accept.contains(t.as_str())).map_or(0.0, |p| 1.0 / (p + 1) as f64);
        let g = top5.iter().filter(|t| generic.contains(t.as_str())).count();
        top5_generic += g;
        top5_total += top5.len();
        f.max_generic_in_top_5 = f.max_generic_in_top_5.max(g);
        f.short_share += f64::from(u8::from(tags.len() < 5));
    }
    let n = clips.len().max(1) as f64;
    f.hit_at_5 /= n;
    f.precision_at_5 /= n;
    f.recall_at_10 /= n;
    f.mrr /= n;
    f.short_share /= n;
    f.generic_share = if top5_total == 0 { 0.0 } else { top5_generic as f64 / top5_total as f64 };
    f
}

/// The most-frequent-tags baseline: the tags most often acceptable across `tune`, the same
/// ten for every clip.
pub fn most_frequent(tune: &[&Clip], all: &[&Clip]) -> Vec<Ranked> {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for c in tune {
        for t in &c.accept {
            *counts.entry(t.as_str()).or_default() += 1;
        }
    }
    let mut order: Vec<(&str, usize)> = counts.into_iter().collect();
    order.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let top: Vec<String> = order.into_iter().take(10).map(|(t, _)| t.to_owned()).collect();
    all.iter().map(|c| Ranked { clip: c.id.clone(), tags: top.clone() }).collect()
}

/// A pipeline over the model pack and ONNX Runtime that `tools/models/build-pack` put in the
/// checkout at `root` (`.data/`), with `clip_model` as its image encoder when given.
pub fn checkout_pipeline(root: &Path, clip_model: Option<&str>) -> (Pipeline, crate::settings::MediaSettings) {
    let inference = crate::settings::InferenceSettings {
        library: Some(reelq_inference::RuntimeConfig::default_library(root).display().to_string()),
        models_dir: Some(reelq_inference::DirStore::default_root(root).display().to_string()),
        clip_model: clip_model.map(str::to_owned),
        ..crate::settings::InferenceSettings::default()
    };
    let media = crate::settings::MediaSettings::default();
    (Pipeline::from_settings(&media, &inference, &crate::settings::HashtagSettings::default()), media)
}

/// What reelq and the keyword baseline suggested for one clip.
#[derive(Debug, Clone)]
pub struct ClipRun {
    pub reelq: Ranked,
    pub keywords: Ranked,
    /// Seconds the hashtags took beyond what the transcript and on-screen text took.
    pub hashtag_secs: f64,
    pub total_secs: f64,
}

/// Runs `pipeline` over one clip: the transcript and on-screen text, then the hashtags; and
/// keyword matching alone over the same text.
pub fn run_clip(pipeline: &Pipeline, dir: &Path, clip: &Clip, media: &crate::settings::MediaSettings) -> Result<ClipRun, AnalysisError> {
    let started = std::time::Instant::now();
    let path: PathBuf = dir.join(&clip.file);
    let probe = reelq_media::probe::probe(&path, media)?;
    let options = JobOptions { caption: clip.caption.clone(), ..JobOptions::default() };
    let input = Input { path, probe, options, trending: Vec::new(), creator: None };
    let mut session = pipeline.start(input, &[Analysis::Hashtags], &|| false)?;
    // The transcript and on-screen text, read once and kept in the session for the hashtags.
    let spans = pipeline.spans(&mut session)?;
    let before_hashtags = started.elapsed().as_secs_f64();
    let Finding::Hashtags(h) = pipeline.run(&mut session, Analysis::Hashtags)?.finding else {
        return Err(AnalysisError::Unavailable("hashtags gave another finding".into()));
    };
    let total_secs = started.elapsed().as_secs_f64();
    let opts = RankOptions { count: 10, max_generic: 1, min_score: 0.3, content_phrases: false };
    let keyword_only = hashtags::rank(&Vocabulary::curated(), &spans, &Signals::default(), &opts);
    Ok(ClipRun {
        reelq: Ranked { clip: clip.id.clone(), tags: h.suggestions.into_iter().map(|s| s.tag).collect() },
        keywords: Ranked { clip: clip.id.clone(), tags: keyword_only.into_iter().map(|s| s.tag).collect() },
        hashtag_secs: total_secs - before_hashtags,
        total_secs,
    })
}

/// The benchmark's table: one row per method.
pub fn table(rows: &[(&str, Figures)]) -> String {
    let mut out = String::from("| method | clips | hit@5 | P@5 | R@10 | MRR | generic share of top 5 | most generic in a top 5 | clips with < 5 |\n");
    out.push_str("|---|---|---|---|---|---|---|---|---|\n");
    for (name, f) in rows {
        out.push_str(&format!(
            "| {name} | {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {} | {:.2} |\n",
            f.clips, f.hit_at_5, f.precision_at_5, f.recall_at_10, f.mrr, f.generic_share, f.max_generic_in_top_5, f.short_share
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clip(id: &str, accept: &[&str], half: &str) -> Clip {
        Clip {
            id: id.into(),
            niche: "n".into(),
            kind: "a".into(),
            file: format!("{id}.mp4"),
            caption: None,
            accept: accept.iter().map(|t| (*t).to_owned()).collect(),
            half: half.into(),
        }
    }

    #[test]
    fn figures_count_hits_precision_recall_rank_and_generic_tags() {
        let a = clip("a", &["#gym", "#legday", "#workout", "#fitness"], "held_out");
        let b = clip("b", &["#pasta", "#cooking"], "held_out");
        let ranked = vec![
            Ranked { clip: "a".into(), tags: vec!["#fyp".into(), "#legday".into(), "#news".into(), "#gym".into(), "#viral".into(), "#fitness".into()] },
            Ranked { clip: "b".into(), tags: vec!["#baking".into()] },
        ];
        let generic: BTreeSet<String> = ["#fyp".to_owned(), "#viral".to_owned()].into();
        let f = figures(&[&a, &b], &ranked, &generic);
        assert_eq!(f.clips, 2);
        assert!((f.hit_at_5 - 0.5).abs() < 1e-9);
        assert!((f.precision_at_5 - (2.0 / 5.0) / 2.0).abs() < 1e-9, "{f:?}");
        assert!((f.recall_at_10 - (3.0 / 4.0) / 2.0).abs() < 1e-9, "{f:?}");
        assert!((f.mrr - (1.0 / 2.0) / 2.0).abs() < 1e-9, "{f:?}");
        assert!((f.generic_share - 2.0 / 6.0).abs() < 1e-9, "{f:?}");
        assert_eq!(f.max_generic_in_top_5, 2);
        assert!((f.short_share - 0.5).abs() < 1e-9);
    }

    #[test]
    fn the_frequency_baseline_learns_from_the_tuning_half_only() {
        let t1 = clip("t1", &["#gym", "#fitness"], "tune");
        let t2 = clip("t2", &["#fitness", "#yoga"], "tune");
        let h = clip("h", &["#pasta"], "held_out");
        let ranked = most_frequent(&[&t1, &t2], &[&h]);
        assert_eq!(ranked[0].tags, ["#fitness", "#gym", "#yoga"]);
    }
}

//! The analyses that suggest: hashtags (from the video's text, frames, the classifier and the
//! trending list), music (from the suggested hashtags and pulled data) and the reach estimate.

use reelq_learn::engagement::music::{self, MusicScore};
use reelq_learn::features::{virality_feature_model, virality_features};

use crate::AnalysisError;
use crate::findings::{AnalysisOutput, CurrentSound, Finding, HashtagFinding, ModelRef, MusicFinding, ViralityFinding};
use crate::hashtags::shipped_vectors::ShippedVectors;
use crate::hashtags::{self, RankOptions, Ranker, Signals, TextSpan, VocabSource, Vocabulary};
use crate::pipeline::{Pipeline, Session};
use crate::song::RecognizedTrack;
use reelq_learn::classifier::LinearHead;

/// Suggested hashtags (specific ones, best first) that choose the music.
const MUSIC_TAGS: usize = 5;
/// Most pulled videos read for one music recommendation.
const MUSIC_VIDEOS: usize = 5_000;
/// Sounds recommended per video.
const MUSIC_RESULTS: usize = 10;
/// How a job's `model_versions` name the hashtag ranker.
pub const RANKER_MODEL: &str = "hashtag-ranker";

/// What one video's hashtags are ranked from.
#[derive(Debug, Clone)]
pub struct HashtagInputs {
    pub vocab: Vocabulary,
    pub spans: Vec<TextSpan>,
    pub signals: Signals,
    /// The models the signals came from.
    pub models: Vec<ModelRef>,
    pub notice: Option<String>,
    /// Nothing to rank from: no text and no image model.
    pub blind: bool,
}

impl HashtagInputs {
    /// The suggestions `ranker` makes from these inputs (none when there was nothing to go on).
    pub fn rank(&self, ranker: &Ranker, opts: &RankOptions) -> Vec<hashtags::Suggestion> {
        if self.blind {
            return Vec::new();
        }
        hashtags::rank_with(ranker, &self.vocab, &self.spans, &self.signals, opts)
    }
}

impl Pipeline {
    /// The hashtag suggestions, ranked once per session.
    pub(crate) fn hashtags<'s>(&self, session: &'s mut Session) -> Result<&'s (HashtagFinding, Vec<ModelRef>), AnalysisError> {
        if session.hashtags.is_none() {
            let found = self.rank_hashtags(session)?;
            session.hashtags = Some(found);
        }
        Ok(session.hashtags.as_ref().expect("set above"))
    }

    fn rank_hashtags(&self, session: &mut Session) -> Result<(HashtagFinding, Vec<ModelRef>), AnalysisError> {
        let head = self.models.hashtag_head()?;
        let mut inputs = self.hashtag_inputs(session, head.as_deref())?;
        let ranker = self.models.ranker();
        let suggestions = inputs.rank(&ranker, &self.settings.hashtags.rank_options(&ranker));
        let classifier_version = inputs.signals.classifier.as_ref().map(|c| c.1.clone());
        if !inputs.blind {
            inputs.models.push(ModelRef::trained(RANKER_MODEL, &ranker.version));
        }
        let finding = HashtagFinding { suggestions, classifier_version, vocabulary_size: inputs.vocab.len(), notice: inputs.notice };
        Ok((finding, inputs.models))
    }

    /// Embeds the curated vocabulary's descriptions with the text encoder, ahead of the first
    /// hashtag job (they are cached for the life of the process, and a first job would
    /// otherwise wait for all of them); returns how many.
    pub fn warm_hashtags(&self) -> Result<usize, AnalysisError> {
        let embedder = self.models.text_embedder()?;
        Ok(self.description_vectors(&embedder.model().to_string(), &self.vocabulary)?.len())
    }

    /// The text encoder's vectors of `vocab`'s descriptions (in vocabulary order), cached under
    /// `model`; those of the curated seed come with reelq when the encoder is the model they
    /// were computed with. Blocking.
    pub fn description_vectors(&self, model: &str, vocab: &Vocabulary) -> Result<Vec<std::sync::Arc<Vec<f32>>>, AnalysisError> {
        let embedder = self.models.text_embedder()?;
        let id = embedder.model();
        if let Some(shipped) = ShippedVectors::shipped().filter(|s| s.made_by(&id.name, &id.version, &id.sha256)) {
            self.models.seed_embeddings(model, &shipped.entries);
        }
        let descriptions: Vec<String> = vocab.entries().iter().map(|e| e.description()).collect();
        Ok(self.models.cached_embeddings(model, &descriptions, |t| embedder.embed(t))?)
    }

    /// The curated vocabulary suggestions start from (a job's also holds the trending and
    /// pulled hashtags it was given).
    pub fn vocabulary(&self) -> &Vocabulary {
        &self.vocabulary
    }

    /// What hashtags are ranked from, with `head` as the classifier: the vocabulary grown by the
    /// trending list and the head's labels, the video's text, and the models' signals.
    pub fn hashtag_inputs(&self, session: &mut Session, head: Option<&LinearHead>) -> Result<HashtagInputs, AnalysisError> {
        let spans = self.spans(session)?;
        let mut vocab = self.vocabulary.clone();
        vocab.grow(&session.input.pulled);
        if let Some(head) = head {
            vocab.extend_tags(head.labels.iter().map(String::as_str), VocabSource::Classifier);
        }
        let embeddings = self.embeddings(session)?.clone();
        let has_text = spans.iter().any(|s| !s.text.trim().is_empty());
        // With nothing to read: was speech heard, but all of it less surely than
        // `hashtags.min_speech_logprob`? (The transcript is already in the session.)
        let unclear = !has_text
            && self.settings.hashtags.min_speech_logprob.is_some()
            && crate::sound::transcript(self, session)?.0.segments.iter().any(|s| !s.text.trim().is_empty());
        let what = if unclear {
            "the speech was too unclear to read (hashtags.min_speech_logprob) and the video has no on-screen text or caption"
        } else {
            "the video has no speech, on-screen text or caption"
        };
        if !has_text && embeddings.image.is_none() {
            // Nothing was heard, read or captioned, and nothing looks at the picture: any tag
            // would be a guess from priors alone.
            let notice = format!(
                "Nothing to suggest from: {what}, and no visual model is configured (inference.clip_model), so suggestions come from \
                 speech and text only. Add a caption to get suggestions."
            );
            return Ok(HashtagInputs { vocab, spans, signals: Signals::default(), models: Vec::new(), notice: Some(notice), blind: true });
        }
        let notice = (!has_text).then(|| {
            let what = if unclear { "Speech too unclear to read and no on-screen text or caption" } else { "No speech, on-screen text or caption" };
            format!("{what}: these suggestions come from the picture alone.")
        });
        let mut used: Vec<ModelRef> = Vec::new();
        let mut signals = Signals { creator: session.input.creator.clone(), ..Signals::default() };

        if let Some(text) = &embeddings.text {
            let tags = self.description_vectors(&text.model.to_string(), &vocab)?;
            signals.text_similarity = Some((crate::hashtags::similarities(&tags, &text.vector), text.model.to_string()));
            signals.descriptions = Some(tags.into());
            used.push(ModelRef::from(&text.model));
        }
        if let Some(head) = head {
            let text = embeddings.text.as_ref().map(|t| t.vector.clone()).unwrap_or_else(|| vec![0.0; head.text_dim]);
            let image = embeddings.image.as_ref().map(|i| i.vector.as_slice());
            match head.predict(&text, image) {
                Ok(probs) => {
                    // A label that is a variant of an entry speaks for it; the likeliest wins.
                    let mut per_entry: Vec<Option<f32>> = vec![None; vocab.len()];
                    for (label, p) in head.labels.iter().zip(probs) {
                        if let Some(i) = vocab.find(label) {
                            per_entry[i] = Some(per_entry[i].map_or(p, |q| q.max(p)));
                        }
                    }
                    signals.classifier = Some((per_entry, head.version.clone()));
                    used.push(ModelRef::trained("hashtag-classifier", &head.version));
                }
                // A head trained on another embedding model is unusable, not fatal: the other
                // signals still suggest, and the log says why the head was skipped.
                Err(e) => tracing::warn!(error = %e, version = %head.version, "hashtag classifier skipped"),
            }
        }
        if let (Some(image), Some(encoder)) = (&embeddings.image, self.models.image_encoder()?)
            && let Some(text_encoder) = self.models.clip_text_encoder()?
        {
            let prompts: Vec<String> = vocab.entries().iter().map(|e| format!("a video about {}", e.tag.trim_start_matches('#'))).collect();
            let tag_vecs = self.models.cached_embeddings(&text_encoder.model().to_string(), &prompts, |t| text_encoder.embed(t))?;
            let best_frame = session.decoded()?.samples.first().map(|f| f.time_secs).unwrap_or(0.0);
            signals.visual = Some((tag_vecs.iter().map(|t| (dot(t, &image.vector), best_frame)).collect(), encoder.model().to_string()));
            used.push(ModelRef::from(&encoder.model()));
            used.push(ModelRef::from(&text_encoder.model()));
        }
        Ok(HashtagInputs { vocab, spans, signals, models: used, notice, blind: false })
    }

    /// Sounds of pulled videos that carry the video's specific suggested hashtags, and how the
    /// sound the video already uses (when `song` knows it) fares among them.
    pub(crate) fn music(&self, session: &mut Session) -> Result<AnalysisOutput, AnalysisError> {
        let pulled = self.pulled.clone().ok_or_else(|| AnalysisError::Unavailable("music reads pulled data, which only the service has".into()))?;
        let tags: Vec<String> = self
            .hashtags(session)?
            .0
            .suggestions
            .iter()
            .filter(|s| !s.generic)
            .map(|s| s.tag.trim_start_matches('#').to_owned())
            .take(MUSIC_TAGS)
            .collect();
        // Without a recogniser (or while a remote one is down) the recommendations still stand.
        let heard = match self.song(session) {
            Ok(song) => song.track.clone(),
            Err(AnalysisError::Unavailable(why)) => {
                tracing::info!(why, "music without the current sound");
                None
            }
            Err(e) => return Err(e),
        };
        let region = session.input.options.region.clone();
        let uses = if tags.is_empty() { Vec::new() } else { pulled.music_uses(&tags, region.as_deref(), MUSIC_VIDEOS)? };
        let ranked = music::rank(&uses, None, chrono::Utc::now(), usize::MAX);
        let current_sound = heard.map(|t| current_sound(&t, &ranked));
        let in_use = current_sound.as_ref().and_then(|c| c.music_id.clone());
        let recommendations: Vec<_> = ranked.into_iter().filter(|m| in_use.as_deref() != Some(m.music_id.as_str())).take(MUSIC_RESULTS).collect();
        Ok(AnalysisOutput::plain(Finding::Music(MusicFinding { hashtags: tags, region, recommendations, videos_considered: uses.len(), current_sound })))
    }

    /// The promoted regressor's estimate from the video's text embedding and caption: predicted
    /// virality, its percentile among pulled videos and an expected view range.
    pub(crate) fn virality(&self, session: &mut Session) -> Result<AnalysisOutput, AnalysisError> {
        let Some(model) = self.models.virality() else {
            return Ok(AnalysisOutput::plain(Finding::Virality(ViralityFinding {
                estimate: None,
                model_version: None,
                reason: Some("no virality model has been trained and promoted yet".into()),
                correlations: None,
                held_out_spearman: None,
            })));
        };
        let regressor = ModelRef::trained("virality-regressor", &model.version);
        let caption = session.input.options.caption.clone().unwrap_or_default();
        let embeddings = self.embeddings(session)?.clone();
        let Some(text) = embeddings.text else {
            let finding = ViralityFinding {
                estimate: None,
                model_version: Some(model.version.clone()),
                reason: Some("the video has no speech, on-screen text or caption to estimate from".into()),
                correlations: None,
                held_out_spearman: None,
            };
            return Ok(AnalysisOutput { finding: Finding::Virality(finding), models: vec![regressor] });
        };
        let feature_model = virality_feature_model(&text.model.to_string());
        if feature_model != model.feature_model {
            return Err(AnalysisError::Unavailable(format!(
                "the promoted virality model reads `{}`, this worker makes `{feature_model}`",
                model.feature_model
            )));
        }
        let tags = caption.split_whitespace().filter(|w| w.starts_with('#') && w.len() > 1).count();
        let features = virality_features(&text.vector, tags, text.items);
        let estimate = model.predict(&features).map_err(|e| AnalysisError::Unavailable(format!("virality model: {e}")))?;
        let finding = ViralityFinding {
            estimate: Some(estimate),
            model_version: Some(model.version.clone()),
            reason: None,
            correlations: Some(model.correlations),
            held_out_spearman: Some(model.metrics.get("spearman").copied()),
        };
        Ok(AnalysisOutput { finding: Finding::Virality(finding), models: vec![regressor, ModelRef::from(&text.model)] })
    }
}

/// How the recognised `track` fares among the `ranked` sounds that fit the video's hashtags.
fn current_sound(track: &RecognizedTrack, ranked: &[MusicScore]) -> CurrentSound {
    let name = if track.artist.is_empty() { format!("“{}”", track.title) } else { format!("“{}” by {}", track.title, track.artist) };
    let found = track.music_id.as_deref().and_then(|id| ranked.iter().position(|m| m.music_id == id).map(|i| (i + 1, &ranked[i])));
    let advice = match (found, ranked.len()) {
        (Some((1, m)), _) => format!("The video uses {name}, the best-performing sound among {} pulled videos with its hashtags.", m.videos),
        (Some((rank, m)), n) => format!(
            "The video uses {name}, ranked {rank} of {n} sounds among pulled videos with its hashtags ({} videos); the sounds above it earned more engagement.",
            m.videos
        ),
        (None, 0) => format!("The video uses {name}; no pulled video with its hashtags shows how sounds perform there yet."),
        (None, _) => format!("The video uses {name}, which no pulled video with its hashtags uses: the sounds below are what that audience engages with."),
    };
    CurrentSound {
        title: track.title.clone(),
        artist: track.artist.clone(),
        music_id: track.music_id.clone(),
        rank: found.map(|(r, _)| r),
        score: found.map_or(0.0, |(_, m)| m.score),
        videos: found.map_or(0, |(_, m)| m.videos),
        advice,
    }
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

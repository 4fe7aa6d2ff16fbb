//! The analysis catalogue: one definition of every analysis — who may ask for it, what it needs,
//! which options it reads and what it returns. The api's validation and OpenAPI enum, the
//! worker's dispatch and decode plan, the CLI's list and the creators' page all read it.

use serde::Serialize;
use utoipa::ToSchema;

use crate::domain::Analysis;

/// Who may ask for an analysis.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Visibility {
    /// Creators and apps.
    Public,
    /// Operators, for load tests and drills, where the api allows diagnostics.
    Diagnostic,
    /// Only the system (the scheduler, admin routes); refused from clients and never listed.
    Internal,
}

/// The decoded frames an analysis reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Frames {
    /// None.
    None,
    /// Statistics over the whole picture track (motion, freezes, sharpness, exposure, scene
    /// cuts), computed on a schedule set by the video's own timestamps.
    Statistics,
    /// Frames sampled at `inference.ocr_interval_secs` at a 540-pixel short side, for the
    /// models (text reading, image encoder).
    ModelSamples,
}

/// What an analysis needs to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
pub struct Needs {
    /// The job's video, fetched and probed against the media limits.
    pub video: bool,
    /// Decoded frames.
    pub frames: Frames,
    /// The decoded sound track (16 kHz mono) and its levels.
    pub audio: bool,
    /// The model pack (ONNX models and ONNX Runtime).
    pub models: bool,
    /// Promoted versions from the model registry (hashtag classifier, virality regressor).
    pub registry: bool,
    /// The trending hashtags from pulled data.
    pub trending: bool,
    /// The services beyond the video (pulled data in PostgreSQL, object storage): such an
    /// analysis runs only as a queued job, never in `reelq analyze`.
    pub services: bool,
    /// Analyses whose findings it builds on (they run, unstored, when not requested).
    #[schema(value_type = Vec<Analysis>)]
    pub builds_on: &'static [Analysis],
}

/// An option key a job's `options` object may carry for an analysis.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
pub struct OptionSpec {
    /// Key in `options`.
    pub name: &'static str,
    /// What it does, for people.
    pub summary: &'static str,
}

/// How the creators' page offers an analysis.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Offer {
    /// A checkbox, ticked by default.
    Ticked,
    /// A checkbox, unticked by default.
    Unticked,
    /// Not a checkbox: started from a result (mux needs a chosen track).
    FromResult,
    /// Not offered at all (diagnostic and internal analyses).
    Never,
}

/// One analysis.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, ToSchema)]
pub struct AnalysisSpec {
    /// Its name in requests, results and the database.
    #[schema(value_type = Analysis)]
    pub name: Analysis,
    /// A short label for people.
    pub title: &'static str,
    /// What it finds.
    pub summary: &'static str,
    pub visibility: Visibility,
    pub needs: Needs,
    /// The option keys it reads.
    pub options: &'static [OptionSpec],
    /// The name of the result's type (in the OpenAPI document's vocabulary).
    pub output: &'static str,
    /// How the page offers it.
    pub offer: Offer,
}

const NOTHING: Needs =
    Needs { video: false, frames: Frames::None, audio: false, models: false, registry: false, trending: false, services: false, builds_on: &[] };

/// The text analyses (transcript, on-screen text, caption) feed the embeddings, which feed the
/// hashtags, which choose the music.
const TEXT_AND_PICTURE: Needs = Needs { video: true, frames: Frames::ModelSamples, audio: true, models: true, ..NOTHING };

const CAPTION: OptionSpec = OptionSpec {
    name: "caption",
    summary: "The text the video will be posted with (up to 2,200 characters): evidence for hashtags and the reach estimate.",
};
const CREATOR: OptionSpec = OptionSpec {
    name: "creator",
    summary: "Who is posting: an id you choose for one of your creators (letters, digits, . _ : @ -). Hashtags they chose for earlier posts rank higher when this video supports them.",
};
const REGION: OptionSpec = OptionSpec { name: "region", summary: "Two-letter country code (US, GB…) whose pulled videos choose the music." };
const MUX: OptionSpec = OptionSpec { name: "mux", summary: "The track to put under the video and how (audio_id, mode, gains, offsets)." };
const NOOP_MS: OptionSpec = OptionSpec { name: "noop_ms", summary: "Milliseconds to wait (up to 600,000)." };

/// Every analysis, in the order documentation lists them.
pub static CATALOGUE: [AnalysisSpec; 15] = [
    AnalysisSpec {
        name: Analysis::Probe,
        title: "File details",
        summary: "Container, streams, codecs, duration, resolution, frame rate, rotation and audio rate.",
        visibility: Visibility::Public,
        needs: Needs { video: true, ..NOTHING },
        options: &[],
        output: "Probe",
        offer: Offer::Ticked,
    },
    AnalysisSpec {
        name: Analysis::Quality,
        title: "Quality score and advice",
        summary: "Picture, motion, delivery and sound scores with the measurements behind each and advice a creator can act on.",
        visibility: Visibility::Public,
        needs: Needs { video: true, frames: Frames::Statistics, audio: true, ..NOTHING },
        options: &[],
        output: "QualityReport",
        offer: Offer::Ticked,
    },
    AnalysisSpec {
        name: Analysis::Ocr,
        title: "On-screen text",
        summary: "Text read from frames sampled once a second, deduplicated, with the times it was seen.",
        visibility: Visibility::Public,
        needs: Needs { video: true, frames: Frames::ModelSamples, models: true, ..NOTHING },
        options: &[],
        output: "OcrResult",
        offer: Offer::Ticked,
    },
    AnalysisSpec {
        name: Analysis::Audio,
        title: "Speech",
        summary: "Speech activity from a voice-activity model: speech ratio, segments, the speech/music/silence profile and sound tags.",
        visibility: Visibility::Public,
        needs: Needs { video: true, audio: true, models: true, ..NOTHING },
        options: &[],
        output: "AudioResult",
        offer: Offer::Ticked,
    },
    AnalysisSpec {
        name: Analysis::Transcript,
        title: "Transcript",
        summary: "Speech recognised with Whisper: the text, timed segments and the language.",
        visibility: Visibility::Public,
        needs: Needs { video: true, audio: true, models: true, ..NOTHING },
        options: &[],
        output: "Transcript",
        offer: Offer::Ticked,
    },
    AnalysisSpec {
        name: Analysis::Embeddings,
        title: "Embeddings (for search, nothing to show)",
        summary: "A sentence embedding of the transcript, on-screen text and caption, and an image embedding of the frames when an image encoder is configured.",
        visibility: Visibility::Public,
        needs: Needs { builds_on: &[Analysis::Transcript, Analysis::Ocr], ..TEXT_AND_PICTURE },
        options: &[CAPTION],
        output: "Embeddings",
        offer: Offer::Unticked,
    },
    AnalysisSpec {
        name: Analysis::Hashtags,
        title: "Hashtag suggestions",
        summary: "Ranked hashtag suggestions, each with its score and the evidence behind it.",
        visibility: Visibility::Public,
        needs: Needs { registry: true, trending: true, builds_on: &[Analysis::Transcript, Analysis::Ocr, Analysis::Embeddings], ..TEXT_AND_PICTURE },
        options: &[CAPTION, CREATOR],
        output: "HashtagResult",
        offer: Offer::Ticked,
    },
    AnalysisSpec {
        name: Analysis::Music,
        title: "Music that fits",
        summary: "Sounds of pulled videos carrying the video's suggested hashtags, ranked by the engagement those videos earned; when the video already uses a known sound, it says so and ranks the alternatives.",
        visibility: Visibility::Public,
        needs: Needs { registry: true, trending: true, services: true, builds_on: &[Analysis::Hashtags, Analysis::Song], ..TEXT_AND_PICTURE },
        options: &[CAPTION, REGION, CREATOR],
        output: "MusicResult",
        offer: Offer::Ticked,
    },
    AnalysisSpec {
        name: Analysis::Virality,
        title: "Reach estimate",
        summary: "The promoted regressor's virality estimate: its percentile among pulled videos and an expected view range.",
        visibility: Visibility::Public,
        needs: Needs { registry: true, builds_on: &[Analysis::Embeddings], ..TEXT_AND_PICTURE },
        options: &[CAPTION],
        output: "ViralityResult",
        offer: Offer::Ticked,
    },
    AnalysisSpec {
        name: Analysis::Safety,
        title: "Content safety",
        summary: "How likely the frames are to be not safe for work (open-NSFW): a score, the worst moments and a flag against the configured threshold.",
        visibility: Visibility::Public,
        needs: Needs { video: true, frames: Frames::ModelSamples, models: true, ..NOTHING },
        options: &[],
        output: "SafetyResult",
        offer: Offer::Unticked,
    },
    AnalysisSpec {
        name: Analysis::Song,
        title: "Song under the video",
        summary: "Which catalogue track plays under the video, matched by acoustic fingerprint even under speech: its title, where in the track the video's sound comes from, and a confidence.",
        visibility: Visibility::Public,
        needs: Needs { video: true, audio: true, services: true, ..NOTHING },
        options: &[],
        output: "SongResult",
        offer: Offer::Unticked,
    },
    AnalysisSpec {
        name: Analysis::Mux,
        title: "New soundtrack",
        summary: "The video with an uploaded track replacing or mixed under its audio, stored as MP4 for download.",
        visibility: Visibility::Public,
        needs: Needs { video: true, services: true, ..NOTHING },
        options: &[MUX],
        output: "MuxResult",
        offer: Offer::FromResult,
    },
    AnalysisSpec {
        name: Analysis::Noop,
        title: "No-op",
        summary: "Does no media work (it may wait): for load tests and operational drills.",
        visibility: Visibility::Diagnostic,
        needs: NOTHING,
        options: &[NOOP_MS],
        output: "NoopResult",
        offer: Offer::Never,
    },
    AnalysisSpec {
        name: Analysis::Train,
        title: "Training",
        summary: "Trains the hashtag classifier and the virality regressor and decides their promotion.",
        visibility: Visibility::Internal,
        needs: Needs { models: true, services: true, ..NOTHING },
        options: &[],
        output: "TrainingReport",
        offer: Offer::Never,
    },
    AnalysisSpec {
        name: Analysis::AddSong,
        title: "Add a song",
        summary: "Fingerprints an audio upload, or a pulled sound's audio, into the song catalogue.",
        visibility: Visibility::Internal,
        needs: Needs { services: true, ..NOTHING },
        options: &[],
        output: "CatalogueTrack",
        offer: Offer::Never,
    },
];

impl Analysis {
    /// Its entry in the catalogue.
    pub fn spec(self) -> &'static AnalysisSpec {
        // The catalogue lists every analysis once, in `Analysis::ALL` order (a test checks it).
        &CATALOGUE[Self::ALL.iter().position(|a| *a == self).unwrap_or_default()]
    }

    /// What it needs.
    pub fn needs(self) -> &'static Needs {
        &self.spec().needs
    }

    /// Who may ask for it.
    pub fn visibility(self) -> Visibility {
        self.spec().visibility
    }

    /// Whether it runs in `reelq analyze`: a public analysis that needs no service beyond the
    /// video.
    pub fn runs_locally(self) -> bool {
        self.visibility() == Visibility::Public && self.needs().video && !self.needs().services
    }
}

/// The analyses that run for `requested`: those asked for, then those they build on, each once,
/// in an order where every analysis comes after what it builds on.
pub fn with_prerequisites(requested: &[Analysis]) -> Vec<Analysis> {
    fn visit(a: Analysis, out: &mut Vec<Analysis>) {
        if out.contains(&a) {
            return;
        }
        for b in a.needs().builds_on {
            visit(*b, out);
        }
        out.push(a);
    }
    let mut out = Vec::new();
    for a in requested {
        visit(*a, &mut out);
    }
    out
}

/// What a set of analyses needs together, their prerequisites included: the plan of one job.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Plan {
    pub video: bool,
    /// Picture statistics over the whole track.
    pub statistics: bool,
    /// Frames sampled for the models.
    pub model_samples: bool,
    pub audio: bool,
    pub models: bool,
    pub registry: bool,
    pub trending: bool,
    pub services: bool,
}

impl Plan {
    /// The plan for `analyses`.
    pub fn of(analyses: &[Analysis]) -> Self {
        let mut p = Self::default();
        for a in with_prerequisites(analyses) {
            let n = a.needs();
            p.video |= n.video;
            p.statistics |= n.frames == Frames::Statistics;
            p.model_samples |= n.frames == Frames::ModelSamples;
            p.audio |= n.audio;
            p.models |= n.models;
            p.registry |= n.registry;
            p.trending |= n.trending;
            p.services |= n.services;
        }
        p
    }

    /// Whether anything must be decoded.
    pub fn decodes(&self) -> bool {
        self.statistics || self.model_samples || self.audio
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_catalogue_lists_every_analysis_once_in_order() {
        assert_eq!(CATALOGUE.len(), Analysis::ALL.len());
        for (spec, a) in CATALOGUE.iter().zip(Analysis::ALL) {
            assert_eq!(spec.name, a);
            assert_eq!(a.spec().name, a);
        }
    }

    #[test]
    fn only_public_analyses_are_offered_and_internal_ones_never() {
        for s in &CATALOGUE {
            match s.visibility {
                Visibility::Public => assert_ne!(s.offer, Offer::Never, "{:?}", s.name),
                Visibility::Diagnostic | Visibility::Internal => assert_eq!(s.offer, Offer::Never, "{:?}", s.name),
            }
        }
        assert_eq!(Analysis::Train.visibility(), Visibility::Internal);
        assert_eq!(Analysis::AddSong.visibility(), Visibility::Internal);
    }

    #[test]
    fn prerequisites_come_first_and_once() {
        let order = with_prerequisites(&[Analysis::Music, Analysis::Hashtags]);
        let pos = |a| order.iter().position(|x| *x == a).expect("present");
        assert!(pos(Analysis::Transcript) < pos(Analysis::Embeddings));
        assert!(pos(Analysis::Embeddings) < pos(Analysis::Hashtags));
        assert!(pos(Analysis::Hashtags) < pos(Analysis::Music));
        assert!(pos(Analysis::Song) < pos(Analysis::Music));
        assert_eq!(order.len(), 6, "{order:?}");
        // Every builds-on relation points at an analysis that needs no more than its dependant.
        for s in &CATALOGUE {
            for b in s.needs.builds_on {
                assert!(!b.needs().services || s.needs.services, "{:?} builds on {b:?}", s.name);
            }
        }
    }

    #[test]
    fn local_analyses_need_no_services() {
        let local: Vec<&str> = Analysis::ALL.into_iter().filter(|a| a.runs_locally()).map(Analysis::as_str).collect();
        assert_eq!(local, ["probe", "quality", "ocr", "audio", "transcript", "embeddings", "hashtags", "virality", "safety"]);
        let p = Plan::of(&[Analysis::Quality, Analysis::Ocr]);
        assert!(p.video && p.audio && p.models && p.statistics && p.model_samples && !p.services);
        let p = Plan::of(&[Analysis::Probe]);
        assert!(p.video && !p.decodes() && !p.models);
        // Hashtags build on the transcript, so they need the sound even though they read no
        // audio themselves.
        assert!(Plan::of(&[Analysis::Hashtags]).audio);
    }
}

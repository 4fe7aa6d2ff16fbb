//! `song`: which known track plays under the video.
//!
//! The video's sound (16 kHz mono, decoded once with the rest) is cut into excerpts of
//! [`EXCERPT_SECS`], and each is put to the [`Recognizer`]s the pipeline was given. Local ones
//! (the song catalogue in PostgreSQL, matched by acoustic fingerprint) hear every excerpt;
//! remote ones (a hosted recognition service, which costs money and quota) hear at most
//! [`REMOTE_EXCERPTS`], and only when the local ones found nothing. The best-confidence match
//! wins.
//!
//! A remote service that refuses (quota spent, key rejected) is reported in the finding and
//! the local answer stands; one that does not answer after its own retries fails the analysis
//! as transient, so the job is retried with backoff like any other outage.

use serde::Serialize;

use crate::AnalysisError;
use crate::findings::{AnalysisOutput, Finding};
use crate::pipeline::{Pipeline, Session};

/// Seconds per excerpt: enough for a fingerprint to be unmistakable, short enough that a
/// video's song is heard even when it plays for only part of it.
pub const EXCERPT_SECS: f64 = 12.0;

/// Shortest sound worth listening to.
pub const MIN_SECS: f64 = 5.0;

/// Most excerpts heard per video (two minutes of sound).
pub const MAX_EXCERPTS: usize = 10;

/// Most excerpts a remote recognizer hears per video.
pub const REMOTE_EXCERPTS: usize = 1;

/// How a recognizer is asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// Cheap and private (the catalogue in PostgreSQL): hears every excerpt.
    Local,
    /// A hosted service: hears [`REMOTE_EXCERPTS`], only when the local ones found nothing.
    Remote,
}

/// A recognizer's answer for one excerpt.
#[derive(Debug, Clone, PartialEq)]
pub struct Heard {
    pub title: String,
    pub artist: String,
    /// The catalogue's id, for a catalogue track.
    pub track_id: Option<i64>,
    /// The pulled sound (TikTok music id) the track is, when known.
    pub music_id: Option<String>,
    /// Where in the track the excerpt starts, in seconds (when the recognizer says).
    pub offset_secs: Option<f64>,
    /// 0–1.
    pub confidence: f64,
    /// A page about the track, when the service gives one.
    pub link: Option<String>,
}

/// Why a recognizer gave no answer.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RecognizeError {
    /// It did not answer (timeouts, 5xx, a database fault) after its own retries: the same
    /// request may succeed later.
    #[error("{0}")]
    Transient(String),
    /// It answered with a refusal that asking again will not change soon: `code` is stable
    /// (`quota_exceeded`, `unauthorized`, `refused`).
    #[error("{code}: {message}")]
    Refused { code: &'static str, message: String },
}

/// Something that can tell which track an excerpt of sound comes from. Blocking: the
/// pipeline runs off any async runtime.
pub trait Recognizer: Send + Sync {
    /// Its name in results: `catalogue`, or the service's.
    fn name(&self) -> &str;
    fn reach(&self) -> Reach;
    /// The track `samples` (mono at `sample_rate`, −1..1) come from, if it knows one.
    fn recognize(&self, samples: &[f32], sample_rate: u32) -> Result<Option<Heard>, RecognizeError>;
}

/// `song`: the track under the video, or why there is none.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SongFinding {
    /// The recognised track; null when none is known.
    pub track: Option<RecognizedTrack>,
    /// Seconds of the video's sound heard.
    pub listened_secs: f64,
    /// Excerpts heard.
    pub excerpts: usize,
    /// The recognizers asked, in order.
    pub recognizers: Vec<String>,
    /// Recognizers that refused to answer (spent quota, rejected key), and why.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unavailable: Vec<RecognizerRefusal>,
    /// Why nothing was heard (no sound, too short).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A recognised track.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RecognizedTrack {
    pub title: String,
    pub artist: String,
    /// The catalogue's id, for a catalogue track.
    pub track_id: Option<i64>,
    /// The pulled sound (TikTok music id) it is, when known.
    pub music_id: Option<String>,
    /// Which recognizer knew it.
    pub source: String,
    /// Seconds into the video where the matched excerpt starts.
    pub video_secs: f64,
    /// Seconds into the track that the video's sound is at `video_secs`, when known.
    pub track_offset_secs: Option<f64>,
    /// 0–1.
    pub confidence: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
}

/// A recognizer that refused, with its stable code.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RecognizerRefusal {
    pub recognizer: String,
    pub code: String,
    pub message: String,
}

/// Where the excerpts of `total` samples start, at `rate`: back to back from the start, the
/// last pulled back to end with the sound, at most [`MAX_EXCERPTS`].
pub fn excerpt_starts(total: usize, rate: u32) -> Vec<usize> {
    let len = (EXCERPT_SECS * f64::from(rate)) as usize;
    if (total as f64) < MIN_SECS * f64::from(rate) {
        return Vec::new();
    }
    if total <= len {
        return vec![0];
    }
    let mut starts: Vec<usize> = (0..).map(|i| i * len).take_while(|s| s + len <= total).take(MAX_EXCERPTS).collect();
    let last = total - len;
    // A tail of half an excerpt or more is heard too, as an excerpt ending with the sound.
    if starts.len() < MAX_EXCERPTS && starts.last().is_some_and(|&s| total - (s + len) >= len / 2) {
        starts.push(last);
    }
    starts
}

/// Whether an excerpt is louder than near-silence (−50 dBFS RMS): a silent excerpt is never
/// sent to a remote service.
fn audible(samples: &[f32]) -> bool {
    if samples.is_empty() {
        return false;
    }
    let power = samples.iter().map(|s| f64::from(*s) * f64::from(*s)).sum::<f64>() / samples.len() as f64;
    power > 1e-5
}

/// Recognises the track under `samples` (mono at `rate`) with `recognizers`.
pub fn recognize(recognizers: &[std::sync::Arc<dyn Recognizer>], samples: &[f32], rate: u32) -> Result<SongFinding, AnalysisError> {
    let names = recognizers.iter().map(|r| r.name().to_owned()).collect();
    let starts = excerpt_starts(samples.len(), rate);
    let len = (EXCERPT_SECS * f64::from(rate)) as usize;
    let mut finding = SongFinding { track: None, listened_secs: 0.0, excerpts: 0, recognizers: names, unavailable: Vec::new(), reason: None };
    if starts.is_empty() {
        finding.reason = Some(if samples.is_empty() { "the video has no sound".into() } else { format!("under {MIN_SECS} s of sound") });
        return Ok(finding);
    }
    let excerpts: Vec<(f64, &[f32])> = starts.iter().map(|&s| (s as f64 / f64::from(rate), &samples[s..(s + len).min(samples.len())])).collect();
    finding.excerpts = excerpts.len();
    finding.listened_secs = excerpts.iter().map(|(_, e)| e.len() as f64 / f64::from(rate)).sum();

    for reach in [Reach::Local, Reach::Remote] {
        for r in recognizers.iter().filter(|r| r.reach() == reach) {
            let heard = match reach {
                Reach::Local => excerpts.clone(),
                Reach::Remote => excerpts.iter().filter(|(_, e)| audible(e)).take(REMOTE_EXCERPTS).cloned().collect(),
            };
            for (at, excerpt) in heard {
                match r.recognize(excerpt, rate) {
                    Ok(Some(h)) => {
                        if finding.track.as_ref().is_none_or(|t| h.confidence > t.confidence) {
                            finding.track = Some(RecognizedTrack {
                                title: h.title,
                                artist: h.artist,
                                track_id: h.track_id,
                                music_id: h.music_id,
                                source: r.name().to_owned(),
                                video_secs: at,
                                track_offset_secs: h.offset_secs,
                                confidence: h.confidence,
                                link: h.link,
                            });
                        }
                    }
                    Ok(None) => {}
                    Err(RecognizeError::Transient(m)) => return Err(AnalysisError::Unavailable(format!("song recognition ({}): {m}", r.name()))),
                    Err(RecognizeError::Refused { code, message }) => {
                        tracing::warn!(recognizer = r.name(), code, message, "song recognizer refused");
                        finding.unavailable.push(RecognizerRefusal { recognizer: r.name().to_owned(), code: code.to_owned(), message });
                        break;
                    }
                }
            }
        }
        if finding.track.is_some() {
            break;
        }
    }
    Ok(finding)
}

impl Pipeline {
    /// The track under the video, recognised once per session.
    pub(crate) fn song<'s>(&self, session: &'s mut Session) -> Result<&'s SongFinding, AnalysisError> {
        if session.song.is_none() {
            if self.recognizers.is_empty() {
                return Err(AnalysisError::Unavailable("song recognition reads the song catalogue, which only the service has".into()));
            }
            let samples: &[f32] = session.decoded()?.audio.as_ref().map_or(&[][..], |a| a.samples.as_slice());
            let found = recognize(&self.recognizers, samples, reelq_media::audio::ANALYSIS_RATE)?;
            session.song = Some(found);
        }
        Ok(session.song.as_ref().expect("set above"))
    }

    pub(crate) fn song_output(&self, session: &mut Session) -> Result<AnalysisOutput, AnalysisError> {
        Ok(AnalysisOutput::plain(Finding::Song(self.song(session)?.clone())))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    const RATE: u32 = 1_000;

    #[test]
    fn excerpts_cover_the_sound_and_end_with_it() {
        let secs = |n: f64| (n * f64::from(RATE)) as usize;
        assert!(excerpt_starts(secs(4.0), RATE).is_empty(), "too short");
        assert_eq!(excerpt_starts(secs(8.0), RATE), [0]);
        assert_eq!(excerpt_starts(secs(12.0), RATE), [0]);
        assert_eq!(excerpt_starts(secs(30.0), RATE), [0, secs(12.0), secs(18.0)], "the 6 s tail is heard");
        assert_eq!(excerpt_starts(secs(29.0), RATE), [0, secs(12.0)], "a 5 s tail is not");
        assert_eq!(excerpt_starts(secs(600.0), RATE).len(), MAX_EXCERPTS);
    }

    /// Knows one track, heard from `from` seconds of the video on; counts its calls.
    struct Fake {
        name: &'static str,
        reach: Reach,
        from: Option<f64>,
        answer: Result<(), RecognizeError>,
        calls: Mutex<Vec<usize>>,
    }

    impl Recognizer for Fake {
        fn name(&self) -> &str {
            self.name
        }
        fn reach(&self) -> Reach {
            self.reach
        }
        fn recognize(&self, samples: &[f32], _rate: u32) -> Result<Option<Heard>, RecognizeError> {
            self.calls.lock().expect("lock").push(samples.len());
            self.answer.clone()?;
            // The excerpt's first sample holds its start time.
            let at = f64::from(samples[0]);
            Ok(self.from.filter(|f| at >= *f).map(|f| Heard {
                title: "Song".into(),
                artist: self.name.into(),
                track_id: None,
                music_id: None,
                offset_secs: Some(at - f),
                confidence: 0.5 + at / 100.0,
                link: None,
            }))
        }
    }

    fn fake(name: &'static str, reach: Reach, from: Option<f64>, answer: Result<(), RecognizeError>) -> Arc<Fake> {
        Arc::new(Fake { name, reach, from, answer, calls: Mutex::new(Vec::new()) })
    }

    /// 30 s of sound whose samples carry their own time in seconds.
    fn sound() -> Vec<f32> {
        (0..30 * RATE).map(|i| (i / RATE) as f32).collect()
    }

    fn ask(rs: &[Arc<Fake>]) -> Result<SongFinding, AnalysisError> {
        let dyns: Vec<Arc<dyn Recognizer>> = rs.iter().map(|r| r.clone() as Arc<dyn Recognizer>).collect();
        recognize(&dyns, &sound(), RATE)
    }

    #[test]
    fn the_remote_service_is_asked_once_and_only_when_the_catalogue_knows_nothing() {
        let local = fake("catalogue", Reach::Local, Some(12.0), Ok(()));
        let remote = fake("service", Reach::Remote, Some(0.0), Ok(()));
        let found = ask(&[remote.clone(), local.clone()]).expect("found");
        let track = found.track.expect("a track");
        assert_eq!((track.source.as_str(), track.video_secs, track.track_offset_secs), ("catalogue", 18.0, Some(6.0)), "the best of the matches");
        assert_eq!(local.calls.lock().expect("lock").len(), 3);
        assert!(remote.calls.lock().expect("lock").is_empty(), "not asked when the catalogue knows the song");
        assert_eq!(found.recognizers, ["service", "catalogue"]);

        let local = fake("catalogue", Reach::Local, None, Ok(()));
        let remote = fake("service", Reach::Remote, Some(0.0), Ok(()));
        let found = ask(&[local.clone(), remote.clone()]).expect("found");
        assert_eq!(found.track.expect("a track").source, "service");
        assert_eq!(*remote.calls.lock().expect("lock"), [12 * RATE as usize], "one excerpt sent");
    }

    #[test]
    fn a_refusing_service_is_reported_and_a_silent_one_fails_as_transient() {
        let quota = RecognizeError::Refused { code: "quota_exceeded", message: "limit reached".into() };
        let found = ask(&[fake("catalogue", Reach::Local, None, Ok(())), fake("service", Reach::Remote, Some(0.0), Err(quota))]).expect("answered");
        assert_eq!(found.track, None);
        assert_eq!(
            found.unavailable,
            [RecognizerRefusal { recognizer: "service".into(), code: "quota_exceeded".into(), message: "limit reached".into() }]
        );

        let down = RecognizeError::Transient("timed out".into());
        let err = ask(&[fake("service", Reach::Remote, Some(0.0), Err(down))]).expect_err("transient");
        assert!(matches!(err, AnalysisError::Unavailable(ref m) if m.contains("timed out")), "{err:?}");
    }

    #[test]
    fn silence_and_short_sound_are_not_sent_anywhere() {
        let remote = fake("service", Reach::Remote, Some(0.0), Ok(()));
        let dyns: Vec<Arc<dyn Recognizer>> = vec![remote.clone()];
        let found = recognize(&dyns, &vec![0.0; 30 * RATE as usize], RATE).expect("answered");
        assert_eq!((found.track, found.excerpts), (None, 3));
        assert!(remote.calls.lock().expect("lock").is_empty(), "silence is not sent");
        let found = recognize(&dyns, &vec![0.1; 3 * RATE as usize], RATE).expect("answered");
        assert_eq!(found.reason.as_deref(), Some("under 5 s of sound"));
    }
}

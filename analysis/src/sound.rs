//! The analyses of the sound track: speech activity and what the sound is made of (`audio`),
//! and speech recognition (`transcript`).

use reelq_inference::vad::{SpeechSegment, VadOptions};
use reelq_inference::whisper::TranscribeOptions;

use crate::AnalysisError;
use crate::findings::{AnalysisOutput, AudioFinding, Finding, ModelRef, SoundProfile, TranscriptFinding};
use crate::pipeline::{Pipeline, Session};

/// Tags kept from the audio tagger, best first.
const AUDIO_TAGS: usize = 10;

pub(crate) fn audio(p: &Pipeline, session: &Session) -> Result<AnalysisOutput, AnalysisError> {
    let Some(audio) = session.decoded()?.audio.as_ref().filter(|a| !a.samples.is_empty()) else {
        let silent = AudioFinding { has_audio: false, speech_ratio: 0.0, segments: Vec::new(), duration: None, profile: None, tags: None };
        return Ok(AnalysisOutput::plain(Finding::Audio(silent)));
    };
    let vad = p.models().vad()?;
    let activity = p.timed("vad", || vad.detect(&audio.samples, &VadOptions::default()))?;
    let mut models = vec![ModelRef::from(&activity.model)];
    let profile = sound_profile(&audio.samples, &activity.segments);
    let tags = match p.models().audio_tagger()? {
        Some(tagger) => {
            let tags = p.timed("audio_tagger", || tagger.tag(&audio.samples))?;
            models.push(ModelRef::from(&tagger.model()));
            Some(tags.into_iter().take(AUDIO_TAGS).collect())
        }
        None => None,
    };
    let finding = AudioFinding {
        has_audio: true,
        speech_ratio: activity.speech_ratio,
        segments: activity.segments,
        duration: Some(activity.duration),
        profile: Some(profile),
        tags,
    };
    Ok(AnalysisOutput { finding: Finding::Audio(finding), models })
}

/// The transcript, recognised once per session.
pub(crate) fn transcript<'s>(p: &Pipeline, session: &'s mut Session) -> Result<&'s (TranscriptFinding, ModelRef), AnalysisError> {
    if session.transcript.is_none() {
        let samples: &[f32] = session.decoded()?.audio.as_ref().map(|a| a.samples.as_slice()).unwrap_or(&[]);
        let whisper = p.models().whisper()?;
        let t = p.timed("whisper", || whisper.transcribe(samples, &TranscribeOptions::default()))?;
        let model = ModelRef::from(&t.model);
        session.transcript = Some((TranscriptFinding { language: t.language, text: t.text, segments: t.segments }, model));
    }
    Ok(session.transcript.as_ref().expect("set above"))
}

/// Half-second frames: silent below −45 dBFS RMS, else speech where the voice activity
/// detector found speech for most of the frame, else music or other sound.
fn sound_profile(samples: &[f32], speech: &[SpeechSegment]) -> SoundProfile {
    const FRAME: usize = 8_000;
    const SILENT_RMS: f32 = 0.005_6; // −45 dBFS
    let (mut s, mut m, mut q) = (0usize, 0usize, 0usize);
    for (i, frame) in samples.chunks(FRAME).enumerate() {
        let rms = (frame.iter().map(|x| x * x).sum::<f32>() / frame.len() as f32).sqrt();
        let (start, end) = ((i * FRAME) as f64 / 16_000.0, ((i * FRAME + frame.len()) as f64) / 16_000.0);
        let voiced: f64 = speech.iter().map(|seg| (seg.end.min(end) - seg.start.max(start)).max(0.0)).sum();
        if rms < SILENT_RMS {
            q += 1;
        } else if voiced * 2.0 >= end - start {
            s += 1;
        } else {
            m += 1;
        }
    }
    let total = (s + m + q).max(1) as f32;
    let r = |n: usize| ((n as f32 / total) * 1000.0).round() / 1000.0;
    SoundProfile { speech: r(s), music: r(m), silence: r(q) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sound_profile_splits_speech_music_and_silence() {
        // Two seconds of silence, two of tone with speech marked on them, two of tone alone.
        let mut samples = vec![0.0f32; 32_000];
        samples.extend((0..64_000).map(|i| 0.3 * (i as f32 * 0.17).sin()));
        let speech = [SpeechSegment { start: 2.0, end: 4.0 }];

        let p = sound_profile(&samples, &speech);

        assert_eq!((p.silence, p.speech, p.music), (0.333, 0.333, 0.333), "{p:?}");
        assert_eq!(sound_profile(&[], &[]).speech, 0.0);
    }
}

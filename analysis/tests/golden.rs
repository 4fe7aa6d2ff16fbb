//! Golden payloads: the JSON each finding serialises to, as stored in `job_results`, sent in
//! webhook bodies and printed by `reelq analyze --json`. Clients read these by key, so a field
//! may be added but never renamed, retyped or dropped; a change here is a breaking change.

use serde_json::{Value, json};

use reelq_analysis::findings::{
    AudioFinding, CurrentSound, EmbeddingVector, Embeddings, HashtagFinding, ModelRef, MusicFinding, OcrFinding, SoundProfile, TranscriptFinding,
    ViralityFinding,
};
use reelq_analysis::hashtags::{Evidence, Suggestion};
use reelq_analysis::inference::ModelId;
use reelq_analysis::inference::ocr::OnScreenText;
use reelq_analysis::inference::tagger::AudioTag;
use reelq_analysis::inference::vad::SpeechSegment;
use reelq_analysis::inference::whisper::TranscriptSegment;
use reelq_analysis::song::{RecognizedTrack, RecognizerRefusal, SongFinding};
use reelq_analysis::{AnalysisOutput, Finding};
use reelq_learn::engagement::music::MusicScore;
use reelq_learn::engagement::virality::ViralityModel;
use reelq_learn::engagement::virality::regressor::{Estimate, ViewRange};

fn model(name: &str) -> ModelId {
    ModelId { name: name.into(), version: "1".into(), sha256: "ab12".into() }
}

fn payload(finding: Finding) -> Value {
    AnalysisOutput::plain(finding).payload().expect("serialises")
}

#[test]
fn ocr() {
    let f = OcrFinding {
        texts: vec![OnScreenText { text: "SALE".into(), confidence: 0.5, frames: vec![0.0, 1.0], bbox: [1, 2, 3, 4] }],
        frames_read: 3,
        frames_recognised: 1,
    };
    assert_eq!(
        payload(Finding::Ocr(f)),
        json!({ "texts": [{ "text": "SALE", "confidence": 0.5, "frames": [0.0, 1.0], "bbox": [1, 2, 3, 4] }], "frames_read": 3, "frames_recognised": 1 })
    );
}

#[test]
fn audio_with_and_without_sound() {
    let silent = AudioFinding { has_audio: false, speech_ratio: 0.0, segments: vec![], duration: None, profile: None, tags: None };
    assert_eq!(payload(Finding::Audio(silent)), json!({ "has_audio": false, "speech_ratio": 0.0, "segments": [] }));

    let heard = AudioFinding {
        has_audio: true,
        speech_ratio: 0.5,
        segments: vec![SpeechSegment { start: 0.5, end: 1.5 }],
        duration: Some(2.0),
        profile: Some(SoundProfile { speech: 0.5, music: 0.25, silence: 0.25 }),
        tags: Some(vec![AudioTag { label: "Music".into(), score: 0.5 }]),
    };
    assert_eq!(
        payload(Finding::Audio(heard)),
        json!({
            "has_audio": true,
            "speech_ratio": 0.5,
            "segments": [{ "start": 0.5, "end": 1.5 }],
            "duration": 2.0,
            "profile": { "speech": 0.5, "music": 0.25, "silence": 0.25 },
            "tags": [{ "label": "Music", "score": 0.5 }]
        })
    );
}

#[test]
fn transcript_has_no_model_inside() {
    let t = TranscriptFinding {
        language: "en".into(),
        text: "hello".into(),
        segments: vec![TranscriptSegment { start: 0.0, end: 1.0, text: "hello".into(), avg_logprob: Some(-0.25) }],
    };
    let out = AnalysisOutput { finding: Finding::Transcript(t), models: vec![ModelRef::from(&model("whisper-tiny-en"))] };
    assert_eq!(
        out.payload().expect("json"),
        json!({ "language": "en", "text": "hello", "segments": [{ "start": 0.0, "end": 1.0, "text": "hello", "avg_logprob": -0.25 }] })
    );
    assert_eq!(out.model_versions().expect("json"), json!([{ "name": "whisper-tiny-en", "version": "1", "sha256": "ab12" }]));
}

#[test]
fn embeddings() {
    let e = Embeddings {
        text: Some(EmbeddingVector {
            model: model("all-MiniLM-L6-v2"),
            dim: 2,
            vector: vec![0.5, 0.5],
            sources: vec!["transcript", "caption"],
            items: 12,
        }),
        image: None,
    };
    assert_eq!(
        payload(Finding::Embeddings(e)),
        json!({
            "text": { "model": { "name": "all-MiniLM-L6-v2", "version": "1", "sha256": "ab12" }, "dim": 2, "vector": [0.5, 0.5], "sources": ["transcript", "caption"], "items": 12 },
            "image": null
        })
    );
}

#[test]
fn hashtags_and_the_trained_model_reference() {
    let s = Suggestion {
        tag: "#pasta".into(),
        score: 0.75,
        sources: vec!["transcript"],
        evidence: vec![
            Evidence { kind: "transcript", text: "pasta".into(), time_secs: Some(1.5) },
            Evidence { kind: "model", text: "0.4".into(), time_secs: None },
        ],
        generic: false,
    };
    let out = AnalysisOutput {
        finding: Finding::Hashtags(HashtagFinding { suggestions: vec![s], classifier_version: None, vocabulary_size: 400, notice: None }),
        models: vec![ModelRef::trained("hashtag-classifier", "v7")],
    };
    assert_eq!(
        out.payload().expect("json"),
        json!({
            "suggestions": [{
                "tag": "#pasta", "score": 0.75, "sources": ["transcript"], "generic": false,
                "evidence": [{ "kind": "transcript", "text": "pasta", "time_secs": 1.5 }, { "kind": "model", "text": "0.4" }]
            }],
            "classifier_version": null,
            "vocabulary_size": 400
        })
    );
    assert_eq!(out.model_versions().expect("json"), json!([{ "name": "hashtag-classifier", "version": "v7" }]));
}

#[test]
fn music() {
    let m = MusicFinding {
        hashtags: vec!["pasta".into()],
        region: None,
        recommendations: vec![MusicScore { music_id: "m1".into(), name: "Song".into(), author: "Band".into(), score: 10.5, videos: 2 }],
        videos_considered: 7,
        current_sound: Some(CurrentSound {
            title: "Tune".into(),
            artist: "Someone".into(),
            music_id: Some("m0".into()),
            rank: None,
            score: 0.0,
            videos: 0,
            advice: "The video uses “Tune” by Someone".into(),
        }),
    };
    assert_eq!(
        payload(Finding::Music(m)),
        json!({
            "hashtags": ["pasta"],
            "region": null,
            "recommendations": [{ "music_id": "m1", "name": "Song", "author": "Band", "score": 10.5, "videos": 2 }],
            "videos_considered": 7,
            "current_sound": {
                "title": "Tune", "artist": "Someone", "music_id": "m0", "rank": null, "score": 0.0, "videos": 0,
                "advice": "The video uses “Tune” by Someone"
            }
        })
    );
}

#[test]
fn song_found_and_not() {
    let found = SongFinding {
        track: Some(RecognizedTrack {
            title: "Tune".into(),
            artist: "Someone".into(),
            track_id: Some(4),
            music_id: None,
            source: "catalogue".into(),
            video_secs: 12.0,
            track_offset_secs: Some(31.5),
            confidence: 0.8,
            link: None,
        }),
        listened_secs: 24.0,
        excerpts: 2,
        recognizers: vec!["catalogue".into()],
        unavailable: Vec::new(),
        reason: None,
    };
    assert_eq!(
        payload(Finding::Song(found)),
        json!({
            "track": {
                "title": "Tune", "artist": "Someone", "track_id": 4, "music_id": null, "source": "catalogue",
                "video_secs": 12.0, "track_offset_secs": 31.5, "confidence": 0.8
            },
            "listened_secs": 24.0, "excerpts": 2, "recognizers": ["catalogue"]
        })
    );
    let silent = SongFinding {
        track: None,
        listened_secs: 0.0,
        excerpts: 0,
        recognizers: vec!["catalogue".into(), "audd".into()],
        unavailable: vec![RecognizerRefusal { recognizer: "audd".into(), code: "quota_exceeded".into(), message: "limit".into() }],
        reason: Some("the video has no sound".into()),
    };
    assert_eq!(
        payload(Finding::Song(silent)),
        json!({
            "track": null, "listened_secs": 0.0, "excerpts": 0, "recognizers": ["catalogue", "audd"],
            "unavailable": [{ "recognizer": "audd", "code": "quota_exceeded", "message": "limit" }],
            "reason": "the video has no sound"
        })
    );
}

#[test]
fn virality_with_no_model_no_text_and_an_estimate() {
    let none = ViralityFinding { estimate: None, model_version: None, reason: Some("no model".into()), correlations: None, held_out_spearman: None };
    assert_eq!(payload(Finding::Virality(none)), json!({ "estimate": null, "reason": "no model" }));

    let no_text =
        ViralityFinding { estimate: None, model_version: Some("v2".into()), reason: Some("no text".into()), correlations: None, held_out_spearman: None };
    assert_eq!(payload(Finding::Virality(no_text)), json!({ "estimate": null, "model_version": "v2", "reason": "no text" }));

    let estimate = Estimate { virality: 1.5, log_virality: 0.5, percentile: 80.0, expected_views: ViewRange { low: 10, expected: 100, high: 1000 } };
    let full = ViralityFinding {
        estimate: Some(estimate),
        model_version: Some("v2".into()),
        reason: None,
        correlations: Some(ViralityModel { corr_likes: 0.5, corr_comments: 0.25, corr_shares: 0.125 }),
        held_out_spearman: Some(None),
    };
    assert_eq!(
        payload(Finding::Virality(full)),
        json!({
            "estimate": { "virality": 1.5, "log_virality": 0.5, "percentile": 80.0, "expected_views": { "low": 10, "expected": 100, "high": 1000 } },
            "model_version": "v2",
            "correlations": { "corr_likes": 0.5, "corr_comments": 0.25, "corr_shares": 0.125 },
            "held_out_spearman": null
        })
    );
}

//! One analysis's result for people: a table per finding this CLI knows, JSON otherwise.

use std::fmt::Write as _;

use serde_json::Value;

use super::{bit_rate, bytes, decimal, duration, indent, key_values, pretty_json};
use crate::model::{AnalysisResult, Probe};

/// One analysis's result under its name: a table for analyses this CLI knows, JSON otherwise.
pub fn analysis(name: &str, result: &AnalysisResult) -> String {
    let mut out = format!("{name}\n");
    let table = match name {
        "probe" => probe_rows(&result.payload).map(|rows| key_values(&rows, "  ")),
        "quality" => quality_table(&result.payload),
        "hashtags" => hashtags_table(&result.payload),
        "transcript" => transcript_table(&result.payload),
        "ocr" => ocr_table(&result.payload),
        "audio" => audio_table(&result.payload),
        "embeddings" => embeddings_table(&result.payload),
        "virality" => virality_table(&result.payload),
        "music" => music_table(&result.payload),
        "safety" => safety_table(&result.payload),
        "song" => song_table(&result.payload),
        _ => None,
    };
    match table {
        Some(t) => out.push_str(&t),
        None => out.push_str(&indent(&pretty_json(&result.payload), "  ")),
    }
    if let Some(models) = model_versions(&result.model_versions) {
        out.push_str(&key_values(&[("Models", models)], "  "));
    }
    out
}

/// A `quality` payload as the overall grade, the top advice and one line per sub-score, or
/// `None` when it is not shaped like one.
pub(super) fn quality_table(payload: &Value) -> Option<String> {
    let overall = payload.get("overall")?.as_u64()?;
    let grade = payload.get("grade").and_then(Value::as_str).unwrap_or("");
    let mut out = format!("  Overall       {overall}/100 {grade}\n");
    for advice in payload.get("top_advice").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str) {
        out.push_str(&format!("  -> {advice}\n"));
    }
    for s in payload.get("scores")?.as_array()? {
        let label = s.get("label").and_then(Value::as_str).or_else(|| s.get("key").and_then(Value::as_str)).unwrap_or("?");
        let score = s.get("score").and_then(Value::as_u64).map_or_else(|| "  -".to_owned(), |v| format!("{v:>3}"));
        let advice = s.get("advice").and_then(Value::as_str).unwrap_or("");
        out.push_str(&format!("  {label:<22} {score}  {advice}\n"));
    }
    Some(out)
}

/// The rows of a `probe` payload, or `None` when it is not shaped like one.
fn probe_rows(payload: &Value) -> Option<Vec<(&'static str, String)>> {
    if !payload.is_object() {
        return None;
    }
    let p: Probe = serde_json::from_value(payload.clone()).ok()?;
    let mut rows = Vec::new();
    if let Some(container) = &p.container {
        let text = match p.format_long_name.as_deref().filter(|n| !n.is_empty()) {
            Some(long) => format!("{container} ({long})"),
            None => container.clone(),
        };
        rows.push(("Container", text));
    }
    if let Some(secs) = p.duration_secs {
        rows.push(("Duration", duration(secs)));
    }
    if let Some(rate) = p.bit_rate.filter(|r| *r > 0) {
        rows.push(("Bit rate", bit_rate(rate)));
    }
    if let Some(size) = p.size_bytes {
        rows.push(("Size", bytes(size)));
    }
    match &p.video {
        Some(v) => {
            if let Some(codec) = &v.codec {
                rows.push(("Video codec", codec.clone()));
            }
            if let (Some(w), Some(h)) = (v.width, v.height) {
                let mut text = format!("{w}x{h}");
                if let (Some(dw), Some(dh)) = (v.display_width, v.display_height)
                    && (dw, dh) != (w, h)
                {
                    let _ = write!(text, " (displayed {dw}x{dh})");
                }
                rows.push(("Resolution", text));
            }
            if let Some(fps) = v.frame_rate.filter(|f| *f > 0.0) {
                rows.push(("Frame rate", format!("{} fps", decimal(fps, 3))));
            }
            if let Some(rotation) = v.rotation {
                rows.push(("Rotation", format!("{rotation}°")));
            }
            if let Some(pix) = &v.pixel_format {
                rows.push(("Pixel format", pix.clone()));
            }
            if let Some(frames) = v.frames {
                rows.push(("Frames", frames.to_string()));
            }
        }
        None => rows.push(("Video", "none".to_owned())),
    }
    let audio = match &p.audio {
        Some(a) => {
            let mut parts = vec![a.codec.clone().unwrap_or_else(|| "unknown codec".to_owned())];
            if let Some(rate) = a.sample_rate {
                parts.push(format!("{rate} Hz"));
            }
            if let Some(ch) = a.channels {
                parts.push(format!("{ch} channel{}", if ch == 1 { "" } else { "s" }));
            }
            parts.join(", ")
        }
        None => "none".to_owned(),
    };
    rows.push(("Audio", audio));
    if !p.streams.is_empty() {
        let list: Vec<String> = p
            .streams
            .iter()
            .map(|s| {
                let kind = s.kind.as_deref().unwrap_or("stream");
                let codec = s.codec.as_deref().unwrap_or("?");
                match s.index {
                    Some(i) => format!("#{i} {kind} {codec}"),
                    None => format!("{kind} {codec}"),
                }
            })
            .collect();
        rows.push(("Streams", list.join(", ")));
    }
    Some(rows)
}

/// Suggested hashtags, strongest first, each with the signals and evidence behind it.
fn hashtags_table(payload: &Value) -> Option<String> {
    let mut out = String::new();
    for s in payload.get("suggestions")?.as_array()? {
        let tag = s.get("tag")?.as_str()?;
        let score = s.get("score").and_then(Value::as_f64).unwrap_or(0.0);
        let evidence: Vec<String> = s
            .get("evidence")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|e| {
                let kind = e.get("kind")?.as_str()?;
                let text = e.get("text")?.as_str()?;
                Some(if matches!(kind, "model" | "frame" | "variant" | "broader") {
                    text.to_owned()
                } else {
                    format!("\"{text}\" ({})", kind.replace('_', " "))
                })
            })
            .take(3)
            .collect();
        out.push_str(&format!("  {tag:<22} {:>3.0} %  {}\n", score * 100.0, evidence.join("; ")));
    }
    if let Some(notice) = payload.get("notice").and_then(Value::as_str) {
        out.push_str(&format!("  {notice}\n"));
    } else if out.is_empty() {
        out.push_str("  (no suggestion: the video has no speech or text to go on)\n");
    }
    Some(out)
}

/// Below this mean log-probability a segment is marked as a guess: on the hashtag benchmark,
/// segments under −0.8 had a third to a half of their words right, those above −0.4 nearly all.
const UNSURE_LOGPROB: f64 = -0.8;

/// Timed transcript segments, those the model guessed marked.
fn transcript_table(payload: &Value) -> Option<String> {
    let segments = payload.get("segments")?.as_array()?;
    let mut out = String::new();
    if let Some(lang) = payload.get("language").and_then(Value::as_str) {
        out.push_str(&format!("  Language      {lang}\n"));
    }
    for seg in segments {
        let (start, end) = (seg.get("start").and_then(Value::as_f64)?, seg.get("end").and_then(Value::as_f64)?);
        let text = seg.get("text").and_then(Value::as_str).unwrap_or("").trim();
        let unsure = seg.get("avg_logprob").and_then(Value::as_f64).is_some_and(|l| l < UNSURE_LOGPROB);
        let mark = if unsure { "  (unclear: the model guessed)" } else { "" };
        out.push_str(&format!("  [{} → {}] {text}{mark}\n", clock(start), clock(end)));
    }
    if segments.is_empty() {
        out.push_str("  (no speech recognised)\n");
    }
    Some(out)
}

/// On-screen text with the times it was seen.
fn ocr_table(payload: &Value) -> Option<String> {
    let texts = payload.get("texts")?.as_array()?;
    let times = |t: &Value| -> Vec<f64> { t.get("frames").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_f64).collect() };
    // The sampling interval: the smallest step between frames a text was seen on.
    let step = texts.iter().flat_map(|t| times(t).windows(2).map(|w| w[1] - w[0]).collect::<Vec<_>>()).filter(|d| *d > 0.0).fold(f64::INFINITY, f64::min);
    let mut out = String::new();
    for t in texts {
        let text = t.get("text")?.as_str()?;
        out.push_str(&format!("  \"{text}\"  {}\n", spans(&times(t), step)));
    }
    if texts.is_empty() {
        out.push_str("  (no text seen)\n");
    }
    if let (Some(read), Some(recognised)) = (payload.get("frames_read").and_then(Value::as_u64), payload.get("frames_recognised").and_then(Value::as_u64))
    {
        out.push_str(&format!("  Frames        {read} looked at, text recognised on {recognised} (the others showed unchanged text)\n"));
    }
    Some(out)
}

/// Times as runs of consecutive samples: `0:00.0–0:09.0, 0:20.0`.
fn spans(times: &[f64], step: f64) -> String {
    let mut runs: Vec<(f64, f64)> = Vec::new();
    for &t in times {
        match runs.last_mut() {
            Some(run) if step.is_finite() && t - run.1 <= step * 1.5 => run.1 = t,
            _ => runs.push((t, t)),
        }
    }
    let shown: Vec<String> = runs.iter().map(|&(a, b)| if a == b { clock(a) } else { format!("{}–{}", clock(a), clock(b)) }).collect();
    format!("at {}", shown.join(", "))
}

/// Speech activity.
fn audio_table(payload: &Value) -> Option<String> {
    if !payload.get("has_audio")?.as_bool()? {
        return Some("  (no audio track)\n".to_owned());
    }
    let ratio = payload.get("speech_ratio")?.as_f64()?;
    let segments = payload.get("segments").and_then(Value::as_array).map_or(0, Vec::len);
    Some(format!("  Speech        {:.0} % of the time, {segments} stretch{}\n", ratio * 100.0, if segments == 1 { "" } else { "es" }))
}

/// `m:ss.s`.
fn clock(secs: f64) -> String {
    let secs = secs.max(0.0);
    format!("{}:{:04.1}", (secs / 60.0).floor() as u64, secs % 60.0)
}

/// `name 1.2, other 3` for a non-empty object of model versions, or a list of
/// `{name, version}`.
fn model_versions(v: &Value) -> Option<String> {
    if let Some(list) = v.as_array().filter(|l| !l.is_empty()) {
        let parts: Vec<String> = list.iter().filter_map(|m| Some(format!("{} {}", m.get("name")?.as_str()?, m.get("version")?.as_str()?))).collect();
        return (!parts.is_empty()).then(|| parts.join(", "));
    }
    let map = v.as_object().filter(|m| !m.is_empty())?;
    let parts: Vec<String> = map
        .iter()
        .map(|(k, v)| match v.as_str() {
            Some(s) => format!("{k} {s}"),
            None => format!("{k} {v}"),
        })
        .collect();
    Some(parts.join(", "))
}

/// The vectors' sizes and sources, never the numbers.
fn embeddings_table(payload: &Value) -> Option<String> {
    let mut out = String::new();
    for (kind, label) in [("text", "Text"), ("image", "Image")] {
        let Some(v) = payload.get(kind).filter(|v| !v.is_null()) else { continue };
        let dim = v.get("dim")?.as_u64()?;
        let sources: Vec<&str> = v.get("sources").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).collect();
        out.push_str(&format!("  {label:<13} {dim} dimensions, from {}\n", sources.join(", ").replace('_', " ")));
    }
    if out.is_empty() {
        out.push_str("  (nothing to embed: no speech, text, caption or image encoder)\n");
    }
    Some(out)
}

/// The reach estimate as a percentile with its view range, or why there is none.
fn virality_table(payload: &Value) -> Option<String> {
    let Some(estimate) = payload.get("estimate").filter(|e| !e.is_null()) else {
        let reason = payload.get("reason").and_then(Value::as_str).unwrap_or("no estimate");
        let hint = if payload.get("model_version").is_none() {
            "\n  The scheduler trains this model once enough TikTok videos are pulled (a `train` schedule)."
        } else {
            ""
        };
        return Some(format!("  No estimate yet: {reason}.{hint}\n"));
    };
    let percentile = estimate.get("percentile")?.as_f64()?;
    let views = estimate.get("expected_views")?;
    let (low, expected, high) = (views.get("low")?.as_i64()?, views.get("expected")?.as_i64()?, views.get("high")?.as_i64()?);
    let mut out = format!("  Reach         higher than {percentile:.0} % of pulled videos\n");
    out.push_str(&format!("  Views         about {}, likely {} to {}\n", count(expected), count(low), count(high)));
    if let Some(v) = payload.get("model_version").and_then(Value::as_str) {
        out.push_str(&format!("  Model         {v}\n"));
    }
    Some(out)
}

/// The safety verdict, the score and the worst moments.
fn safety_table(payload: &Value) -> Option<String> {
    let score = payload.get("score")?.as_f64()?;
    let threshold = payload.get("threshold")?.as_f64()?;
    let frames = payload.get("frames_scored")?.as_u64()?;
    let verdict = if payload.get("flagged")?.as_bool()? { "FLAGGED: may be not safe for work" } else { "safe for work" };
    let mut out = format!("  Verdict       {verdict} (worst frame {score:.3}, threshold {threshold:.2}, {frames} frames scored)\n");
    if let Some(mean) = payload.get("mean_score").and_then(Value::as_f64) {
        out.push_str(&format!("  Mean score    {mean:.3}\n"));
    }
    let worst: Vec<String> = payload
        .get("worst_frames")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|f| Some(format!("{} ({:.3})", duration(f.get("time_secs")?.as_f64()?), f.get("score")?.as_f64()?)))
        .collect();
    if !worst.is_empty() {
        out.push_str(&format!("  Worst at      {}\n", worst.join(", ")));
    }
    Some(out)
}

/// Ranked sounds, or why there are none.
fn music_table(payload: &Value) -> Option<String> {
    let tracks = payload.get("recommendations")?.as_array()?;
    let tags: Vec<&str> = payload.get("hashtags").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).collect();
    let mut out = String::new();
    if let Some(advice) = payload.get("current_sound").and_then(|c| c.get("advice")).and_then(Value::as_str) {
        out.push_str(&format!("  {advice}\n"));
    }
    for t in tracks {
        let name = t.get("name").and_then(Value::as_str).filter(|n| !n.is_empty()).unwrap_or("(untitled)");
        let author = t.get("author").and_then(Value::as_str).filter(|a| !a.is_empty()).unwrap_or("unknown");
        let videos = t.get("videos").and_then(Value::as_u64).unwrap_or(0);
        out.push_str(&format!("  {name} · {author}  (used by {videos} pulled video{})\n", if videos == 1 { "" } else { "s" }));
    }
    if tracks.is_empty() {
        out.push_str(&if tags.is_empty() {
            "  No sounds: the video has no specific hashtag to match music by.\n".to_owned()
        } else {
            format!(
                "  No sounds yet for #{}: the scheduler pulls TikTok data, and suggestions appear once videos with these hashtags are pulled.\n",
                tags.join(", #")
            )
        });
    }
    Some(out)
}

/// The recognised track, or why there is none.
fn song_table(payload: &Value) -> Option<String> {
    let track = payload.get("track")?;
    let mut out = String::new();
    if track.is_null() {
        match payload.get("reason").and_then(Value::as_str) {
            Some(reason) => out.push_str(&format!("  No song: {reason}\n")),
            None => out.push_str(&format!(
                "  No known song in {} s of sound\n",
                payload.get("listened_secs").and_then(Value::as_f64).map_or("the".to_owned(), |s| format!("{s:.0}"))
            )),
        }
    } else {
        let title = track.get("title").and_then(Value::as_str).filter(|t| !t.is_empty()).unwrap_or("(untitled)");
        let artist = track.get("artist").and_then(Value::as_str).filter(|a| !a.is_empty()).unwrap_or("unknown");
        out.push_str(&format!("  Track         {title} · {artist}\n"));
        let at = track.get("video_secs").and_then(Value::as_f64).map(duration).unwrap_or_default();
        let offset = track.get("track_offset_secs").and_then(Value::as_f64).map(|o| format!(", {} into the track", duration(o))).unwrap_or_default();
        out.push_str(&format!("  Heard at      {at}{offset}\n"));
        let confidence = track.get("confidence").and_then(Value::as_f64).unwrap_or(0.0);
        let source = track.get("source").and_then(Value::as_str).unwrap_or("");
        out.push_str(&format!("  Confidence    {confidence:.2} ({source})\n"));
    }
    for r in payload.get("unavailable").and_then(Value::as_array).into_iter().flatten() {
        let name = r.get("recognizer").and_then(Value::as_str).unwrap_or("a recognizer");
        let code = r.get("code").and_then(Value::as_str).unwrap_or("");
        out.push_str(&format!("  Unavailable   {name}: {code}\n"));
    }
    Some(out)
}

/// `1.2K`, `3.4M`.
fn count(n: i64) -> String {
    match n {
        ..1_000 => n.to_string(),
        1_000..1_000_000 => format!("{}K", decimal(n as f64 / 1e3, 1)),
        _ => format!("{}M", decimal(n as f64 / 1e6, 1)),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn virality_and_music_read_as_sentences() {
        let none = virality_table(&json!({ "estimate": null, "reason": "no virality model has been trained and promoted yet" })).expect("text");
        assert!(none.contains("No estimate yet") && none.contains("scheduler trains"), "{none}");
        let est = json!({ "estimate": { "virality": 1.0, "log_virality": 0.7, "percentile": 82.4, "expected_views": { "low": 900, "expected": 12_500, "high": 2_300_000 } }, "model_version": "v3" });
        let text = virality_table(&est).expect("text");
        assert!(text.contains("higher than 82 %") && text.contains("about 12.5K, likely 900 to 2.3M"), "{text}");

        let empty = music_table(&json!({ "hashtags": ["pasta"], "region": null, "recommendations": [], "videos_considered": 0 })).expect("text");
        assert!(empty.contains("#pasta") && empty.contains("pulled"), "{empty}");
        let none = music_table(&json!({ "hashtags": [], "recommendations": [], "videos_considered": 0 })).expect("text");
        assert!(none.contains("no specific hashtag"), "{none}");
        let some = music_table(
            &json!({ "hashtags": ["pasta"], "recommendations": [{ "music_id": "1", "name": "Song", "author": "Band", "score": 3.0, "videos": 2 }] }),
        )
        .expect("text");
        assert!(some.contains("Song · Band") && some.contains("2 pulled videos"), "{some}");
        let current =
            music_table(&json!({ "hashtags": ["pasta"], "recommendations": [], "current_sound": { "advice": "The video uses “Tune”." } })).expect("text");
        assert!(current.starts_with("  The video uses “Tune”."), "{current}");
    }

    #[test]
    fn speech_the_model_guessed_is_marked() {
        let text = transcript_table(&json!({
            "language": "en",
            "segments": [
                { "start": 0.0, "end": 2.0, "text": "Leg day again.", "avg_logprob": -0.21 },
                { "start": 2.0, "end": 4.0, "text": "Figgas kettin practice", "avg_logprob": -1.3 },
                { "start": 4.0, "end": 5.0, "text": "stored before confidence was recorded" }
            ]
        }))
        .expect("text");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert!(!lines[1].contains("unclear") && lines[2].ends_with("(unclear: the model guessed)") && !lines[3].contains("unclear"), "{text}");
    }

    #[test]
    fn songs_read_as_the_track_and_where_it_was_heard() {
        let found = song_table(&json!({
            "track": { "title": "Tune", "artist": "Band", "source": "catalogue", "video_secs": 12.0, "track_offset_secs": 40.5, "confidence": 0.81 },
            "listened_secs": 24.0, "excerpts": 2, "recognizers": ["catalogue"]
        }))
        .expect("text");
        assert!(found.contains("Tune · Band") && found.contains("0.81 (catalogue)") && found.contains("into the track"), "{found}");
        let none = song_table(&json!({ "track": null, "listened_secs": 30.0, "unavailable": [{ "recognizer": "audd", "code": "quota_exceeded" }] }))
            .expect("text");
        assert!(none.contains("No known song in 30 s") && none.contains("audd: quota_exceeded"), "{none}");
    }

    #[test]
    fn on_screen_text_reads_as_time_ranges_with_the_frames_recognised() {
        let payload = json!({
            "texts": [
                { "text": "Morning run", "frames": [0.0, 1.0, 2.0, 3.0], "confidence": 0.9, "bbox": [0, 0, 1, 1] },
                { "text": "Day two", "frames": [2.0, 3.0, 7.0], "confidence": 0.9, "bbox": [0, 0, 1, 1] },
            ],
            "frames_read": 10,
            "frames_recognised": 3,
        });
        let text = ocr_table(&payload).expect("text");
        assert!(text.contains("\"Morning run\"  at 0:00.0–0:03.0\n"), "{text}");
        assert!(text.contains("\"Day two\"  at 0:02.0–0:03.0, 0:07.0\n"), "{text}");
        assert!(text.contains("10 looked at, text recognised on 3"), "{text}");
    }
}

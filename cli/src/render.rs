//! Human-readable output: job details, analysis results and job listings.
//!
//! Everything here returns text rather than printing it, so that the layout can be tested.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::model::{Job, JobPage};
use crate::progress::percent;

mod findings;
pub use findings::analysis;

/// One job in full: its state, then each analysis's result.
pub fn job(job: &Job) -> String {
    let mut rows: Vec<(&str, String)> = vec![("Job", job.id.to_string()), ("Status", job.status.as_str().to_owned())];
    if let Some(video) = job.video_id {
        rows.push(("Video", video.to_string()));
    }
    rows.push(("Analyses", job.analyses.join(", ")));
    if let Some(priority) = &job.priority {
        rows.push(("Priority", priority.clone()));
    }
    if !job.status.is_terminal() {
        rows.push(("Progress", format!("{}%", percent(job.progress))));
        if let Some(stage) = job.stage.as_deref().filter(|s| !s.is_empty()) {
            rows.push(("Stage", stage.to_owned()));
        }
    }
    rows.push(("Attempts", format!("{} of {}", job.attempts, job.max_attempts)));
    if let Some(created) = &job.created_at {
        rows.push(("Created", timestamp(created)));
    }
    if let Some(finished) = &job.finished_at {
        rows.push(("Finished", timestamp(finished)));
    }
    if let Some(secs) = run_seconds(job) {
        rows.push(("Duration", duration(secs)));
    }
    if let Some(url) = &job.callback_url {
        rows.push(("Callback", url.clone()));
    }
    if let Some(err) = &job.error {
        let label = if job.status.is_terminal() { "Error" } else { "Last fault" };
        let text = match &err.code {
            Some(code) => format!("{code}: {}", err.message),
            None => err.message.clone(),
        };
        rows.push((label, text));
    }

    let mut out = key_values(&rows, "");
    if let Some(results) = &job.results {
        // The order the job asked for reads better than alphabetical; anything else the API
        // returned comes after.
        let mut names: Vec<&str> = job.analyses.iter().map(String::as_str).filter(|a| results.contains_key(*a)).collect();
        names.extend(results.keys().map(String::as_str).filter(|k| !job.analyses.iter().any(|a| a == k)));
        for name in names {
            if let Some(result) = results.get(name) {
                out.push('\n');
                out.push_str(&analysis(name, result));
            }
        }
    }
    if let Some(timings) = job.timings.as_ref().filter(|t| !t.is_empty()) {
        out.push_str("\ntimings\n");
        for t in timings {
            let _ = writeln!(out, "  {:<15} {:>7.2} s", t.stage, t.ms as f64 / 1000.0);
        }
        let total: u64 = timings.iter().map(|t| t.ms).sum();
        let _ = writeln!(out, "  {:<15} {:>7.2} s", "total", total as f64 / 1000.0);
    }
    out
}

/// A page of jobs as a table, with the command for the next page when there is one.
pub fn job_list(page: &JobPage, next_page_command: &dyn Fn(&str) -> String) -> String {
    if page.jobs.is_empty() {
        return "no jobs\n".to_owned();
    }
    let mut rows = vec![["ID", "STATUS", "ANALYSES", "PROGRESS", "CREATED", "ERROR"].map(str::to_owned)];
    for job in &page.jobs {
        rows.push([
            job.id.to_string(),
            job.status.as_str().to_owned(),
            job.analyses.join(","),
            format!("{}%", percent(job.progress)),
            job.created_at.as_deref().map(timestamp).unwrap_or_else(|| "-".to_owned()),
            job.error.as_ref().map(|e| e.code.clone().unwrap_or_else(|| "(retrying)".to_owned())).unwrap_or_else(|| "-".to_owned()),
        ]);
    }
    let mut out = table(&rows);
    if let Some(cursor) = page.next_cursor.as_deref().filter(|c| !c.is_empty()) {
        let _ = writeln!(out, "\nmore jobs: {}", next_page_command(cursor));
    }
    out
}

/// The model registry as a table: one row per version, the promoted ones marked.
pub fn model_list(raw: &Value) -> String {
    let versions = raw["versions"].as_array().cloned().unwrap_or_default();
    if versions.is_empty() {
        return "no trained model versions yet\n".to_owned();
    }
    let figure = |m: &Value, k: &str| m.get(k).and_then(Value::as_f64).map_or_else(|| "-".to_owned(), |v| format!("{v:.3}"));
    let mut rows = vec![["MODEL", "VERSION", "STATUS", "FIGURES", "TRAIN/EVAL", "CREATED"].map(str::to_owned)];
    for v in &versions {
        let m = &v["metrics"];
        let figures = match v["model"].as_str() {
            Some("hashtags") => format!("P@5 {} R@5 {} mAP {}", figure(m, "p_at_5"), figure(m, "r_at_5"), figure(m, "map")),
            Some("ranker") => format!("P@5 {} hit@5 {} MRR {}", figure(m, "p_at_5"), figure(m, "hit_at_5"), figure(m, "mrr")),
            _ => format!("Spearman {}", figure(m, "spearman")),
        };
        rows.push([
            v["model"].as_str().unwrap_or("?").to_owned(),
            v["version"].as_str().unwrap_or("?").to_owned(),
            v["status"].as_str().unwrap_or("?").to_owned(),
            figures,
            format!("{}/{}", v["train_examples"].as_i64().unwrap_or(0), v["eval_examples"].as_i64().unwrap_or(0)),
            v["created_at"].as_str().map(timestamp).unwrap_or_else(|| "-".to_owned()),
        ]);
    }
    table(&rows)
}

/// Dead-lettered jobs, one per line, with the cursor of the next page.
pub fn dead_letter_list(raw: &Value) -> String {
    let jobs = raw["dead_letters"].as_array().cloned().unwrap_or_default();
    if jobs.is_empty() {
        return "no dead-lettered jobs\n".to_owned();
    }
    let mut rows = vec![["JOB", "TENANT", "ANALYSES", "ATTEMPTS", "REPLAYS", "FAILED", "LAST FAULT"].map(str::to_owned)];
    for j in &jobs {
        let analyses: Vec<&str> = j["analyses"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
        let fault: String = j["error_message"].as_str().unwrap_or("-").chars().take(80).collect();
        rows.push([
            j["job_id"].as_str().unwrap_or("?").to_owned(),
            j["tenant"].as_str().unwrap_or("?").to_owned(),
            analyses.join(","),
            j["attempts"].as_i64().map_or_else(|| "-".to_owned(), |n| n.to_string()),
            j["replays"].as_i64().map_or_else(|| "-".to_owned(), |n| n.to_string()),
            j["failed_at"].as_str().map(timestamp).unwrap_or_else(|| "-".to_owned()),
            fault,
        ]);
    }
    let mut out = table(&rows);
    if let Some(next) = raw["next_before"].as_str() {
        let _ = writeln!(out, "more: reelq dead-letters --before {next}");
    }
    out
}

/// Left-aligned columns two spaces apart.
fn table<const N: usize>(rows: &[[String; N]]) -> String {
    let mut widths = [0usize; N];
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (cell, w) in row.iter().zip(widths) {
            let _ = write!(line, "{cell:<w$}  ");
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `Key   value` lines with the values aligned.
pub(crate) fn key_values(rows: &[(&str, String)], prefix: &str) -> String {
    let width = rows.iter().map(|(k, _)| k.chars().count()).max().unwrap_or(0);
    let mut out = String::new();
    for (key, value) in rows {
        let _ = writeln!(out, "{prefix}{key:<width$}  {value}");
    }
    out
}

pub(crate) fn indent(text: &str, prefix: &str) -> String {
    text.lines().map(|l| format!("{prefix}{l}\n")).collect()
}

pub fn pretty_json(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
}

/// Seconds between start and finish, or `None` until the job has both.
fn run_seconds(job: &Job) -> Option<f64> {
    let start = parse_time(job.started_at.as_deref()?)?;
    let end = parse_time(job.finished_at.as_deref()?)?;
    Some((end - start).num_milliseconds().max(0) as f64 / 1000.0)
}

fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s).ok().map(|t| t.with_timezone(&Utc))
}

/// An RFC 3339 time in UTC to the second; text the CLI cannot parse is shown as it came.
fn timestamp(s: &str) -> String {
    parse_time(s).map(|t| t.format("%Y-%m-%d %H:%M:%SZ").to_string()).unwrap_or_else(|| s.to_owned())
}

/// `0.42 s`, `12.3 s`, `2 min 05 s`, `1 h 02 min`.
pub fn duration(secs: f64) -> String {
    if !secs.is_finite() || secs < 0.0 {
        return "-".to_owned();
    }
    if secs < 10.0 {
        return format!("{secs:.2} s");
    }
    if secs < 60.0 {
        return format!("{secs:.1} s");
    }
    let whole = secs.round() as u64;
    if whole < 3600 {
        return format!("{} min {:02} s", whole / 60, whole % 60);
    }
    format!("{} h {:02} min", whole / 3600, (whole % 3600) / 60)
}

/// Binary units, since that is how file sizes are usually read.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// Decimal units, as bit rates are always given.
pub(crate) fn bit_rate(bps: i64) -> String {
    match bps {
        ..1_000 => format!("{bps} b/s"),
        1_000..1_000_000 => format!("{} kb/s", decimal(bps as f64 / 1e3, 1)),
        _ => format!("{} Mb/s", decimal(bps as f64 / 1e6, 2)),
    }
}

/// A number with at most `places` decimals and no trailing zeros: `25`, `29.97`.
pub(crate) fn decimal(v: f64, places: usize) -> String {
    let s = format!("{v:.places$}");
    if s.contains('.') { s.trim_end_matches('0').trim_end_matches('.').to_owned() } else { s }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::model::AnalysisResult;

    #[test]
    fn quality_reads_as_a_score_table_with_advice() {
        let payload = json!({
            "overall": 71, "grade": "good",
            "top_advice": ["Raise the gain by about 14 dB."],
            "scores": [
                { "key": "sharpness", "label": "Sharpness", "score": 88, "advice": "Sharp enough." },
                { "key": "loudness", "label": "Loudness", "score": 20, "advice": "Raise the gain by about 14 dB." },
                { "key": "speech", "label": "Speech", "score": null, "advice": "No audio." }
            ]
        });
        let table = findings::quality_table(&payload).expect("a table");
        assert!(table.contains("Overall       71/100 good"), "{table}");
        assert!(table.contains("-> Raise the gain"), "{table}");
        assert!(table.contains("Loudness                20  Raise"), "{table}");
        assert!(table.contains("Speech                   -  No audio."), "{table}");
        assert!(findings::quality_table(&json!({ "not": "quality" })).is_none());
    }

    fn succeeded() -> Job {
        Job::from_json(json!({
            "id": "0190c6d5-7c1e-7d6a-9b1e-3f2a1c0d4e5f",
            "video_id": "0190c6d5-0000-7000-8000-000000000001",
            "status": "succeeded",
            "analyses": ["probe", "noop"],
            "priority": "interactive",
            "progress": 1.0,
            "stage": null,
            "attempts": 1,
            "max_attempts": 3,
            "error": null,
            "callback_url": null,
            "created_at": "2025-03-01T10:00:00.000000Z",
            "updated_at": "2025-03-01T10:00:02Z",
            "started_at": "2025-03-01T10:00:00.500Z",
            "finished_at": "2025-03-01T10:00:01.750Z",
            "results": {
                "noop": {"payload": {"waited_ms": 5}, "model_versions": {}},
                "probe": {"payload": {
                    "container": "mov,mp4,m4a,3gp,3g2,mj2",
                    "format_long_name": "QuickTime / MOV",
                    "duration_secs": 2.0,
                    "bit_rate": 123456,
                    "size_bytes": 30864,
                    "video": {"index": 0, "codec": "h264", "width": 320, "height": 240,
                              "display_width": 240, "display_height": 320, "frame_rate": 25.0,
                              "rotation": 90, "pixel_format": "yuv420p", "frames": 50},
                    "audio": {"index": 1, "codec": "aac", "sample_rate": 44100, "channels": 1, "sample_format": "fltp"},
                    "streams": [{"index": 0, "kind": "video", "codec": "h264"}, {"index": 1, "kind": "audio", "codec": "aac"}]
                }, "model_versions": {}}
            },
            "timings": [{"stage": "download", "ms": 40}, {"stage": "inspect", "ms": 12}, {"stage": "probe", "ms": 1}, {"stage": "noop", "ms": 1005}]
        }))
        .expect("parses")
    }

    #[test]
    fn succeeded_job_renders_state_then_probe_table_then_other_analyses() {
        let text = job(&succeeded());
        let expected = "\
Job       0190c6d5-7c1e-7d6a-9b1e-3f2a1c0d4e5f
Status    succeeded
Video     0190c6d5-0000-7000-8000-000000000001
Analyses  probe, noop
Priority  interactive
Attempts  1 of 3
Created   2025-03-01 10:00:00Z
Finished  2025-03-01 10:00:01Z
Duration  1.25 s

probe
  Container     mov,mp4,m4a,3gp,3g2,mj2 (QuickTime / MOV)
  Duration      2.00 s
  Bit rate      123.5 kb/s
  Size          30.1 KiB
  Video codec   h264
  Resolution    320x240 (displayed 240x320)
  Frame rate    25 fps
  Rotation      90°
  Pixel format  yuv420p
  Frames        50
  Audio         aac, 44100 Hz, 1 channel
  Streams       #0 video h264, #1 audio aac

noop
  {
    \"waited_ms\": 5
  }

timings
  download           0.04 s
  inspect            0.01 s
  probe              0.00 s
  noop               1.00 s
  total              1.06 s
";
        assert_eq!(text, expected);
    }

    #[test]
    fn failed_job_shows_its_error_code_and_message() {
        let failed = Job::from_json(json!({
            "id": "0190c6d5-7c1e-7d6a-9b1e-3f2a1c0d4e5f",
            "video_id": null,
            "status": "failed",
            "analyses": ["probe"],
            "progress": 0.3,
            "stage": "probing",
            "attempts": 1,
            "max_attempts": 3,
            "error": {"code": "invalid_media", "message": "the file is not a video FFmpeg can read"},
            "created_at": "2025-03-01T10:00:00Z",
            "started_at": "2025-03-01T10:00:00Z",
            "finished_at": "2025-03-01T10:01:05Z"
        }))
        .expect("parses");
        let text = job(&failed);
        assert!(text.contains("Status    failed\n"), "{text}");
        assert!(text.contains("Error     invalid_media: the file is not a video FFmpeg can read\n"), "{text}");
        assert!(text.contains("Duration  1 min 05 s\n"), "{text}");
        // Progress and stage mean nothing once a job has ended.
        assert!(!text.contains("Progress") && !text.contains("probing"), "{text}");
        assert!(!text.contains("Video "), "{text}");
    }

    #[test]
    fn running_job_shows_progress_and_a_retried_fault() {
        let running = Job::from_json(json!({
            "id": "0190c6d5-7c1e-7d6a-9b1e-3f2a1c0d4e5f",
            "status": "running",
            "analyses": ["probe"],
            "progress": 0.42,
            "stage": "probing",
            "attempts": 2,
            "max_attempts": 3,
            "error": {"code": null, "message": "storage timed out"}
        }))
        .expect("parses");
        let text = job(&running);
        assert!(text.contains("Progress    42%\n"), "{text}");
        assert!(text.contains("Stage       probing\n"), "{text}");
        assert!(text.contains("Attempts    2 of 3\n"), "{text}");
        assert!(text.contains("Last fault  storage timed out\n"), "{text}");
        assert!(!text.contains("Duration"), "{text}");
    }

    #[test]
    fn unknown_analyses_and_odd_payloads_fall_back_to_json() {
        let result = AnalysisResult { payload: json!({"scenes": [1, 2]}), model_versions: json!({"scenes": "v3"}) };
        assert_eq!(analysis("scenes", &result), "scenes\n  {\n    \"scenes\": [\n      1,\n      2\n    ]\n  }\n  Models  scenes v3\n");
        let odd = AnalysisResult { payload: json!("not an object"), model_versions: json!({}) };
        assert_eq!(analysis("probe", &odd), "probe\n  \"not an object\"\n");
    }

    #[test]
    fn job_list_is_an_aligned_table_with_a_next_page_hint() {
        let page = JobPage::from_json(json!({
            "jobs": [
                {"id": "0190c6d5-7c1e-7d6a-9b1e-3f2a1c0d4e5f", "status": "running", "analyses": ["probe", "noop"],
                 "progress": 0.5, "created_at": "2025-03-01T10:00:00.123Z"},
                {"id": "0190c6d5-7c1e-7d6a-9b1e-3f2a1c0d4e60", "status": "failed", "analyses": ["probe"],
                 "progress": 0.1, "created_at": "2025-03-01T09:00:00Z",
                 "error": {"code": "no_video_stream", "message": "no video"}}
            ],
            "next_cursor": "CUR"
        }))
        .expect("parses");
        let text = job_list(&page, &|c| format!("reelq jobs --cursor {c}"));
        let expected = "\
ID                                    STATUS   ANALYSES    PROGRESS  CREATED               ERROR
0190c6d5-7c1e-7d6a-9b1e-3f2a1c0d4e5f  running  probe,noop  50%       2025-03-01 10:00:00Z  -
0190c6d5-7c1e-7d6a-9b1e-3f2a1c0d4e60  failed   probe       10%       2025-03-01 09:00:00Z  no_video_stream

more jobs: reelq jobs --cursor CUR
";
        assert_eq!(text, expected);
        assert_eq!(job_list(&JobPage::default(), &|c| c.to_owned()), "no jobs\n");
    }

    #[test]
    fn units() {
        assert_eq!(duration(0.4), "0.40 s");
        assert_eq!(duration(12.34), "12.3 s");
        assert_eq!(duration(125.0), "2 min 05 s");
        assert_eq!(duration(3720.0), "1 h 02 min");
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(5 * 1024 * 1024 * 1024), "5.0 GiB");
        assert_eq!(bit_rate(800), "800 b/s");
        assert_eq!(bit_rate(1_500_000), "1.5 Mb/s");
        assert_eq!(decimal(29.97002997, 3), "29.97");
        assert_eq!(decimal(25.0, 3), "25");
    }
    #[test]
    fn model_list_shows_the_figures_each_model_is_judged_by() {
        let raw = serde_json::json!({ "versions": [
            { "model": "hashtags", "version": "v2", "status": "promoted", "metrics": { "p_at_5": 0.4, "r_at_5": 0.9, "map": 0.8512 }, "train_examples": 480, "eval_examples": 120, "created_at": "2026-11-23T20:00:00Z" },
            { "model": "virality", "version": "v2", "status": "rejected", "metrics": { "spearman": 0.25 }, "train_examples": 480, "eval_examples": 120 },
            { "model": "ranker", "version": "v1", "status": "promoted", "metrics": { "p_at_5": 0.225, "hit_at_5": 0.883, "mrr": 0.857 }, "train_examples": 480, "eval_examples": 120 }
        ]});
        let out = model_list(&raw);
        assert!(out.contains("P@5 0.400 R@5 0.900 mAP 0.851"), "{out}");
        assert!(out.contains("P@5 0.225 hit@5 0.883 MRR 0.857"), "{out}");
        assert!(out.contains("Spearman 0.250") && out.contains("rejected") && out.contains("480/120"), "{out}");
        assert_eq!(model_list(&serde_json::json!({ "versions": [] })), "no trained model versions yet\n");
    }

    #[test]
    fn dead_letter_list_shows_each_job_and_the_next_page() {
        let raw = json!({ "dead_letters": [
            { "job_id": "0190b4a6-8a6e-7d3c-9b7e-1a2b3c4d5e6f", "tenant": "acme", "analyses": ["probe", "quality"], "attempts": 5, "replays": 1,
              "error_code": "retries_exhausted", "error_message": "gave up after 5 attempts; last error: scratch space: not a directory", "failed_at": "2026-12-03T12:00:00Z" }
        ], "next_before": "0190b4a6-8a6e-7d3c-9b7e-1a2b3c4d5e6f" });
        let out = dead_letter_list(&raw);
        let line = out.lines().nth(1).expect("one row");
        assert!(line.contains("acme") && line.contains("probe,quality") && line.contains("scratch space"), "{out}");
        assert!(out.lines().next().is_some_and(|h| h.starts_with("JOB") && h.contains("REPLAYS")), "{out}");
        assert!(out.ends_with("more: reelq dead-letters --before 0190b4a6-8a6e-7d3c-9b7e-1a2b3c4d5e6f\n"), "{out}");
        assert_eq!(dead_letter_list(&json!({ "dead_letters": [] })), "no dead-lettered jobs\n");
    }
}

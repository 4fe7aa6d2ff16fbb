//! `reelq analyze FILE`: the pipeline of `reelq-analysis` in-process, the same one the worker
//! runs, with no database, broker or storage.
//!
//! A refused file ends like a failed job: the stable error code and message (on stderr, or as
//! JSON on stdout with `--json`) and exit status 2, so scripts can branch on the code.

use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde_json::{Map, Value, json};

use reelq_analysis::media::probe;
use reelq_analysis::settings::AnalysisSettings;
use reelq_analysis::{AnalysisError, Input, Observer, Pipeline};
use reelq_core::domain::{Analysis, JobErrorCode, MediaKind, SNIFF_LEN, sniff_container};
use reelq_core::options::JobOptions;

use crate::args::AnalyzeArgs;
use crate::commands::print_out;
use crate::model::AnalysisResult;
use crate::render;

/// Exit status of a file the pipeline refused.
const REFUSED: u8 = 2;

pub fn run(args: AnalyzeArgs) -> Result<ExitCode> {
    let json = args.output.json;
    let settings: AnalysisSettings = reelq_settings::load().context("configuration")?;
    let analyses = parse_analyses(&args.analyses)?;
    let mut options = serde_json::Map::new();
    if let Some(caption) = &args.caption {
        options.insert("caption".into(), Value::String(caption.clone()));
    }
    let options = JobOptions::parse(&options, &analyses).map_err(|e| anyhow::anyhow!("--caption: {e}"))?;
    anyhow::ensure!(args.file.is_file(), "{} is not a readable file", args.file.display());

    let bar = crate::progress::job_bar(crate::progress::visible(json));
    let timings = Arc::new(Timings::default());
    let pipeline = Pipeline::from_settings(&settings.media, &settings.inference, &settings.hashtags).with_observer(timings.clone());
    let started = Instant::now();
    let outcome = (|| -> Result<Vec<(&'static str, Value)>, AnalysisError> {
        bar.set_message("probe");
        check_container(&args.file)?;
        let found = probe::probe(&args.file, &settings.media)?;
        timings.stage("inspect file", started.elapsed());
        let input = Input { path: args.file.clone(), probe: found, options, pulled: Default::default(), creator: None };
        bar.set_message("decode");
        bar.set_position(10);
        let mut session = pipeline.start(input, &analyses, &|| false)?;
        let mut results = Vec::with_capacity(analyses.len());
        for (i, analysis) in analyses.iter().enumerate() {
            bar.set_message(analysis.as_str());
            bar.set_position(20 + (80 * i / analyses.len()) as u64);
            let out = pipeline.run(&mut session, *analysis)?;
            results.push((analysis.as_str(), json!({ "payload": out.payload()?, "model_versions": out.model_versions()? })));
        }
        Ok(results)
    })();
    bar.finish_and_clear();
    let total = started.elapsed();

    match outcome {
        Ok(results) => {
            if json {
                let map: Map<String, Value> = results.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
                let mut doc = json!({ "file": args.file, "status": "succeeded", "results": map });
                if args.timings {
                    doc["timings"] = timings.to_json(total);
                }
                print_out(&render::pretty_json(&doc))?;
            } else {
                let mut text = String::new();
                // In the order asked for.
                for (name, r) in &results {
                    let result = AnalysisResult { payload: r["payload"].clone(), model_versions: r["model_versions"].clone() };
                    text.push_str(&render::analysis(name, &result));
                    text.push('\n');
                }
                if args.timings {
                    text.push_str(&timings.render(total));
                }
                print_out(&text)?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(AnalysisError::Refused { code, message }) => {
            if json {
                print_out(&render::pretty_json(&json!({ "file": args.file, "status": "failed", "error": { "code": code, "message": message } })))?;
            } else {
                eprintln!("error: {code}: {message}");
            }
            Ok(ExitCode::from(REFUSED))
        }
        // Not the file's fault: a model pack or library missing, a disk full. Say so plainly.
        Err(e) => Err(anyhow::anyhow!("{e}")),
    }
}

/// A stage or model and how long it took.
type Timed = (String, Duration);

/// Where the time went, as the pipeline reports it: the probe, the decode and each analysis
/// (which includes the models it loaded and whatever it builds on that no earlier analysis
/// computed), and the unbatched model calls within them.
#[derive(Debug, Default)]
struct Timings {
    stages: Mutex<Vec<Timed>>,
    models: Mutex<Vec<Timed>>,
}

impl Observer for Timings {
    fn stage(&self, stage: &str, took: Duration) {
        self.stages.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push((stage.to_owned(), took));
    }

    fn inference(&self, model: &str, took: Duration) {
        self.models.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push((model.to_owned(), took));
    }
}

impl Timings {
    fn lists(&self) -> (Vec<Timed>, Vec<Timed>) {
        let get = |m: &Mutex<Vec<Timed>>| m.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        (get(&self.stages), get(&self.models))
    }

    fn to_json(&self, total: Duration) -> Value {
        let (stages, models) = self.lists();
        let list = |l: Vec<Timed>, key: &str| -> Vec<Value> { l.into_iter().map(|(name, took)| json!({ key: name, "secs": round_ms(took) })).collect() };
        json!({ "stages": list(stages, "stage"), "model_calls": list(models, "model"), "total_secs": round_ms(total) })
    }

    fn render(&self, total: Duration) -> String {
        let (stages, models) = self.lists();
        let mut out = String::from("timings\n");
        for (name, took) in &stages {
            out.push_str(&format!("  {name:<15} {:>7.2} s\n", took.as_secs_f64()));
        }
        for (name, took) in &models {
            out.push_str(&format!("    {name:<13} {:>7.2} s  (model call)\n", took.as_secs_f64()));
        }
        out.push_str(&format!("  {:<15} {:>7.2} s\n", "total", total.as_secs_f64()));
        out
    }
}

fn round_ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0).round() / 1000.0
}

/// The container check the api applies to uploads, so a file it would refuse (a picture renamed
/// `.mp4`, an audio track) is refused here the same way before FFmpeg guesses at it.
fn check_container(path: &std::path::Path) -> Result<(), AnalysisError> {
    use std::io::Read as _;
    let mut head = Vec::with_capacity(SNIFF_LEN);
    std::fs::File::open(path)
        .and_then(|f| f.take(SNIFF_LEN as u64).read_to_end(&mut head))
        .map_err(|e| AnalysisError::refused(JobErrorCode::InvalidMedia, format!("cannot read the file: {e}")))?;
    match sniff_container(&head).map(MediaKind::of_container) {
        Some(MediaKind::Video) => Ok(()),
        Some(MediaKind::Audio) => Err(AnalysisError::refused(JobErrorCode::NotAVideo, "the file is an audio track, not a video")),
        None => Err(AnalysisError::refused(JobErrorCode::InvalidMedia, "the file is not a video container reelq reads (MP4, MOV, WebM or Matroska)")),
    }
}

fn parse_analyses(names: &[String]) -> Result<Vec<Analysis>> {
    let mut out: Vec<Analysis> = Vec::new();
    for name in names.iter().map(|n| n.trim()).filter(|n| !n.is_empty()) {
        let a = Analysis::parse(name).filter(|a| !a.is_internal()).with_context(|| format!("unknown analysis `{name}`; {}", local_list()))?;
        // The catalogue says which need the services (pulled data, storage).
        anyhow::ensure!(a.runs_locally(), "`{name}` only runs as a queued job (`reelq submit`); {}", local_list());
        if !out.contains(&a) {
            out.push(a);
        }
    }
    anyhow::ensure!(!out.is_empty(), "--analyses names no analysis");
    Ok(out)
}

/// The analyses `reelq analyze` runs, from the catalogue.
pub fn local_names() -> Vec<&'static str> {
    Analysis::ALL.into_iter().filter(|a| a.runs_locally()).map(Analysis::as_str).collect()
}

fn local_list() -> String {
    format!("it runs {}", local_names().join(", "))
}

//! `reelq analyze FILE`: the pipeline of `reelq-analysis` in-process, the same one the worker
//! runs, with no database, broker or storage.
//!
//! A refused file ends like a failed job: the stable error code and message (on stderr, or as
//! JSON on stdout with `--json`) and exit status 2, so scripts can branch on the code.

use std::process::ExitCode;

use anyhow::{Context, Result};
use serde_json::{Map, Value, json};

use reelq_analysis::media::probe;
use reelq_analysis::settings::AnalysisSettings;
use reelq_analysis::{AnalysisError, Input, Pipeline};
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
    let pipeline = Pipeline::from_settings(&settings.media, &settings.inference, &settings.hashtags);
    let outcome = (|| -> Result<Vec<(&'static str, Value)>, AnalysisError> {
        bar.set_message("probe");
        check_container(&args.file)?;
        let found = probe::probe(&args.file, &settings.media)?;
        let input = Input { path: args.file.clone(), probe: found, options, trending: Vec::new() };
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

    match outcome {
        Ok(results) => {
            if json {
                let map: Map<String, Value> = results.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
                print_out(&render::pretty_json(&json!({ "file": args.file, "status": "succeeded", "results": map })))?;
            } else {
                let mut text = String::new();
                // In the order asked for.
                for (name, r) in &results {
                    let result = AnalysisResult { payload: r["payload"].clone(), model_versions: r["model_versions"].clone() };
                    text.push_str(&render::analysis(name, &result));
                    text.push('\n');
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

//! The hashtag benchmark: runs the analysis pipeline (transcript, on-screen text, hashtags) over
//! the clips `tools/hashtag-bench/make-clips` made, and prints the figures of reelq's
//! suggestions and of two baselines on the held-out half: hit@5, P@5, R@10, MRR, the share of
//! generic tags in the top 5 and the share of clips with fewer than 5 suggestions; then reelq's
//! figures per kind of clip and what the hashtags add to the time of a job. Asserts nothing.
//!
//! With `--fit` it first fits the ranker's weights and threshold on the tuning half and writes
//! them to `analysis/assets/ranker.json` (the weights reelq ships), then judges them on the
//! held-out half beside the unfitted prior weights. With `--refit` it also refits the weights in
//! use on the tuning half as the trainer refits them on posts (feedback and pulled videos) and
//! adds their held-out figures to the table.
//!
//! With `--write-vectors` (and no folder) it embeds the curated vocabulary's descriptions with
//! the default pack's text encoder and writes `analysis/assets/description-vectors.bin`, the
//! vectors reelq ships so that a worker need not compute them when it starts.
//!
//! With `--speech-model NAME` the transcript comes from another speech recognition model of the
//! pack (`whisper-base`, built by `tools/models/build-pack --with whisper-base`).
//!
//! With `--min-speech-logprob X` the hashtags read only speech the recogniser was at least that
//! sure of (`hashtags.min_speech_logprob`; `none` reads all of it, the default).
//!
//! With `REELQ_BENCH_CANDIDATES=FILE` it writes every candidate's features and label to FILE
//! (CSV) and what each clip was read as (transcript segments with their `avg_logprob` and
//! whether the hashtags read them, on-screen text, caption) to `FILE.spans.tsv`: the data behind
//! a fit, and the first place to look at a miss.
//!
//! ```text
//! tools/hashtag-bench/make-clips .data/hashtag-bench
//! cargo run --release -p reelq-analysis --bin reelq-hashtag-bench -- .data/hashtag-bench [--half tune|held_out|all] [--fit]
//! cargo run --release -p reelq-analysis --bin reelq-hashtag-bench -- --write-vectors
//! ```

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::ExitCode;

use reelq_analysis::evaluate::{self, Clip, ClipRun, Manifest, Post};
use reelq_analysis::hashtags::shipped_vectors::{ShippedVectors, VectorsModel};
use reelq_analysis::hashtags::{RankOptions, Ranker, Vocabulary};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().is_some_and(|a| a == "--write-vectors") {
        return match write_vectors() {
            Ok(msg) => {
                println!("{msg}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::FAILURE
            }
        };
    }
    let Some(dir) = args.first().map(PathBuf::from) else {
        eprintln!(
            "usage: reelq-hashtag-bench DIR [--half tune|held_out|all] [--fit] [--refit] [--speech-model NAME] [--min-speech-logprob X|none] | --write-vectors"
        );
        return ExitCode::from(2);
    };
    let half = args.iter().position(|a| a == "--half").and_then(|i| args.get(i + 1)).cloned().unwrap_or_else(|| "held_out".into());
    let fit = args.iter().any(|a| a == "--fit");
    let refit = args.iter().any(|a| a == "--refit");
    let manifest = match Manifest::load(&dir) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let speech = args.iter().position(|a| a == "--speech-model").and_then(|i| args.get(i + 1)).map(String::as_str);
    let mut hashtags = reelq_analysis::settings::HashtagSettings::default();
    if let Some(v) = args.iter().position(|a| a == "--min-speech-logprob").and_then(|i| args.get(i + 1)) {
        // `none` reads all speech.
        hashtags.min_speech_logprob = match v.as_str() {
            "none" => None,
            v => match v.parse::<f32>() {
                Ok(x) if x <= 0.0 => Some(x),
                _ => {
                    eprintln!("--min-speech-logprob takes a log-probability (0 or below) or `none`, not {v}");
                    return ExitCode::from(2);
                }
            },
        };
    }
    let (pipeline, media) = evaluate::checkout_pipeline_with(&root, None, speech, &hashtags);

    let tune: Vec<&Clip> = manifest.clips.iter().filter(|c| c.half == "tune").collect();
    let judged: Vec<&Clip> = manifest.clips.iter().filter(|c| half == "all" || c.half == half).collect();
    // Fitting needs the tuning half run too.
    let to_run: Vec<&Clip> = manifest.clips.iter().filter(|c| judged.iter().any(|j| j.id == c.id) || ((fit || refit) && c.half == "tune")).collect();
    // The vocabulary's description embeddings are computed once per process and cached, as a
    // worker does when it starts: first, untimed.
    if let Err(e) = pipeline.warm_hashtags() {
        eprintln!("the vocabulary's embeddings: {e}");
        return ExitCode::FAILURE;
    }
    let mut runs: Vec<ClipRun> = Vec::new();
    for clip in &to_run {
        match evaluate::run_clip(&pipeline, &dir, clip, &media) {
            Ok(run) => runs.push(run),
            Err(e) => {
                eprintln!("{}: {e}", clip.file);
                return ExitCode::FAILURE;
            }
        }
    }
    let generic: BTreeSet<String> = manifest.generic.iter().cloned().collect();
    if let Ok(path) = std::env::var("REELQ_BENCH_CANDIDATES") {
        // Every candidate's features and label, for looking at the data behind the fit.
        let mut out = format!("clip,half,tag,accepted,{}\n", reelq_analysis::hashtags::ranker::FEATURES.join(","));
        for run in &runs {
            let Some(clip) = manifest.clips.iter().find(|c| c.id == run.clip) else { continue };
            for c in reelq_analysis::hashtags::candidates(&run.inputs.vocab, &run.inputs.spans, &run.inputs.signals, true) {
                let x: Vec<String> = c.x.iter().map(|v| format!("{v:.4}")).collect();
                out.push_str(&format!("{},{},{},{},{}\n", clip.id, clip.half, c.tag, u8::from(clip.accept.contains(&c.tag)), x.join(",")));
            }
        }
        if let Err(e) = std::fs::write(&path, out) {
            eprintln!("{path}: {e}");
        }
        // And what each clip was read as: its transcript, on-screen text and caption.
        // Speech is listed with how sure the recogniser was, read or not.
        let mut spans = String::from("clip\tsource\tavg_logprob\tread\ttext\n");
        for run in &runs {
            for s in &run.speech {
                let logprob = s.avg_logprob.map_or_else(String::new, |l| format!("{l:.3}"));
                let read = reelq_analysis::hashtags::heard_clearly(s.avg_logprob, hashtags.min_speech_logprob);
                spans.push_str(&format!("{}\tTranscript\t{logprob}\t{}\t{}\n", run.clip, u8::from(read), s.text.replace(['\t', '\n'], " ")));
            }
            for s in run.inputs.spans.iter().filter(|s| s.source != reelq_analysis::hashtags::SpanSource::Transcript) {
                spans.push_str(&format!("{}\t{:?}\t\t1\t{}\n", run.clip, s.source, s.text.replace(['\t', '\n'], " ")));
            }
        }
        if let Err(e) = std::fs::write(format!("{path}.spans.tsv"), spans) {
            eprintln!("{path}.spans.tsv: {e}");
        }
    }
    let ranker = if fit {
        let tune_runs: Vec<ClipRun> = runs.iter().filter(|r| tune.iter().any(|c| c.id == r.clip)).cloned().collect();
        let version = format!("bench-{}", chrono::Utc::now().format("%Y%m%d"));
        let (fitted, f) = evaluate::fit_ranker(&tune_runs, &tune, &generic, &version);
        let path = root.join("analysis/assets/ranker.json");
        if let Err(e) = std::fs::write(&path, fitted.to_json()) {
            eprintln!("{}: {e}", path.display());
            return ExitCode::FAILURE;
        }
        println!(
            "fitted on {} tuning clips (P@5 there {:.2}, threshold {:.2}); wrote {}\n",
            tune.len(),
            f.precision_at_5,
            fitted.min_score,
            path.display()
        );
        fitted
    } else {
        Ranker::shipped().clone()
    };
    // The trainer's path: the weights in use refitted on the tuning clips as posts.
    let refitted = refit.then(|| {
        let posts: Vec<Post> = runs
            .iter()
            .filter(|r| !r.inputs.blind)
            .filter_map(|r| {
                let clip = tune.iter().find(|c| c.id == r.clip)?;
                let candidates = reelq_analysis::hashtags::candidates(&r.inputs.vocab, &r.inputs.spans, &r.inputs.signals, true);
                Some(Post { id: r.clip.clone(), candidates, accept: clip.accept.clone() })
            })
            .collect();
        evaluate::fit_on_posts(&ranker, &posts, &evaluate::default_options(&ranker), &generic, "refit", 1_500).0
    });
    let judged_runs: Vec<ClipRun> = runs.into_iter().filter(|r| judged.iter().any(|c| c.id == r.clip)).collect();
    let opts = evaluate::default_options(&ranker);
    let reelq = evaluate::ranked(&judged_runs, &ranker, &opts);
    for (clip, r) in judged.iter().zip(&reelq) {
        eprintln!("{} {:<18} {}  →  {}", clip.id, clip.niche, clip.kind, r.tags.iter().take(5).cloned().collect::<Vec<_>>().join(" "));
    }
    let prior = Ranker::prior();
    let unfitted = evaluate::ranked(&judged_runs, &prior, &evaluate::default_options(&prior));
    let keywords: Vec<_> = judged_runs.iter().map(evaluate::keyword_baseline).collect();
    let frequent = evaluate::most_frequent(&tune, &judged);
    println!(
        "{} clips ({half}), {} niches, vocabulary of {} tags\n",
        judged.len(),
        judged.iter().map(|c| c.niche.as_str()).collect::<BTreeSet<_>>().len(),
        judged_runs.first().map_or(0, |r| r.inputs.vocab.len())
    );
    let once = evaluate::ranked(&judged_runs, &ranker, &RankOptions { variants: 0, ..opts });
    let mut table = vec![
        ("reelq", evaluate::figures(&judged, &reelq, &generic)),
        ("reelq, each entry once (no variants)", evaluate::figures(&judged, &once, &generic)),
        ("reelq, prior weights (not fitted)", evaluate::figures(&judged, &unfitted, &generic)),
        ("most frequent tags", evaluate::figures(&judged, &frequent, &generic)),
        ("keyword match alone", evaluate::figures(&judged, &keywords, &generic)),
    ];
    if let Some(r) = &refitted {
        let refit_ranked = evaluate::ranked(&judged_runs, r, &evaluate::default_options(r));
        table.insert(1, ("reelq, refitted on the tuning half as the trainer refits on posts", evaluate::figures(&judged, &refit_ranked, &generic)));
    }
    println!("{}", evaluate::table(&table));
    let kinds = [
        ("a: narration + on-screen text", "a"),
        ("b: narration over music", "b"),
        ("c: on-screen text only", "c"),
        ("d: narration over noise + caption", "d"),
    ];
    let rows: Vec<(&str, evaluate::Figures)> = kinds
        .iter()
        .map(|(name, k)| {
            let of_kind: Vec<&Clip> = judged.iter().copied().filter(|c| c.kind == *k).collect();
            (*name, evaluate::figures(&of_kind, &reelq, &generic))
        })
        .collect();
    println!("reelq by kind of clip\n\n{}", evaluate::table(&rows));
    let (hashtags, total): (f64, f64) = judged_runs.iter().fold((0.0, 0.0), |(h, t), r| (h + r.hashtag_secs, t + r.total_secs));
    println!(
        "time: {:.2} s per clip for transcript, on-screen text and hashtags, of which hashtags {:.3} s ({:.1} %)",
        total / judged_runs.len().max(1) as f64,
        hashtags / judged_runs.len().max(1) as f64,
        100.0 * hashtags / total.max(1e-9)
    );
    ExitCode::SUCCESS
}

/// Embeds every curated description with the default pack's text encoder, freshly (not from
/// the vectors already shipped), and writes them where the build picks them up.
fn write_vectors() -> Result<String, String> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let (pipeline, _) = evaluate::checkout_pipeline(&root, None);
    let embedder = pipeline.models().text_embedder().map_err(|e| format!("the text encoder: {e}"))?;
    let id = embedder.model();
    let mut texts: Vec<String> = Vocabulary::curated().entries().iter().map(|e| e.description()).collect();
    texts.sort();
    texts.dedup();
    let started = std::time::Instant::now();
    let mut entries: Vec<(String, Vec<f32>)> = Vec::with_capacity(texts.len());
    for chunk in texts.chunks(64) {
        let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
        let vectors = embedder.embed(&refs).map_err(|e| format!("embedding: {e}"))?;
        entries.extend(chunk.iter().cloned().zip(vectors));
    }
    let dim = entries.first().map_or(0, |e| e.1.len());
    let header = VectorsModel { model: id.name.clone(), version: id.version.clone(), sha256: id.sha256.clone(), dim, count: entries.len() };
    let bytes = ShippedVectors::encode(&header, &entries)?;
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets/description-vectors.bin");
    std::fs::write(&path, &bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(format!(
        "wrote {} vectors of {dim} by {}@{} ({} bytes) to {} in {:.1} s",
        entries.len(),
        id.name,
        id.version,
        bytes.len(),
        path.display(),
        started.elapsed().as_secs_f64()
    ))
}

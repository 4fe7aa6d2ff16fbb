//! The hashtag benchmark: runs the analysis pipeline (transcript, on-screen text, hashtags) over
//! the clips `tools/hashtag-bench/make-clips` made, and prints the figures of reelq's
//! suggestions and of two baselines on the held-out half: hit@5, P@5, R@10, MRR, the share of
//! generic tags in the top 5 and the share of clips with fewer than 5 suggestions; then reelq's
//! figures per kind of clip and what the hashtags add to the time of a job. Asserts nothing.
//!
//! ```text
//! tools/hashtag-bench/make-clips .data/hashtag-bench
//! cargo run --release -p reelq-analysis --bin reelq-hashtag-bench -- .data/hashtag-bench [--half tune|held_out|all]
//! ```

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::ExitCode;

use reelq_analysis::evaluate::{self, Clip, ClipRun, Manifest};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(dir) = args.first().map(PathBuf::from) else {
        eprintln!("usage: reelq-hashtag-bench DIR [--half tune|held_out|all]");
        return ExitCode::from(2);
    };
    let half = args.iter().position(|a| a == "--half").and_then(|i| args.get(i + 1)).cloned().unwrap_or_else(|| "held_out".into());
    let manifest = match Manifest::load(&dir) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let (pipeline, media) = evaluate::checkout_pipeline(&PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".."), None);

    let tune: Vec<&Clip> = manifest.clips.iter().filter(|c| c.half == "tune").collect();
    let judged: Vec<&Clip> = manifest.clips.iter().filter(|c| half == "all" || c.half == half).collect();
    let mut runs: Vec<ClipRun> = Vec::new();
    for clip in &judged {
        match evaluate::run_clip(&pipeline, &dir, clip, &media) {
            Ok(run) => {
                eprintln!("{} {:<18} {}  →  {}", clip.id, clip.niche, clip.kind, run.reelq.tags.iter().take(5).cloned().collect::<Vec<_>>().join(" "));
                runs.push(run);
            }
            Err(e) => {
                eprintln!("{}: {e}", clip.file);
                return ExitCode::FAILURE;
            }
        }
    }
    let generic: BTreeSet<String> = manifest.generic.iter().cloned().collect();
    let reelq: Vec<_> = runs.iter().map(|r| r.reelq.clone()).collect();
    let keywords: Vec<_> = runs.iter().map(|r| r.keywords.clone()).collect();
    let frequent = evaluate::most_frequent(&tune, &judged);
    println!("{} clips ({half}), {} niches\n", judged.len(), judged.iter().map(|c| c.niche.as_str()).collect::<BTreeSet<_>>().len());
    println!(
        "{}",
        evaluate::table(&[
            ("reelq", evaluate::figures(&judged, &reelq, &generic)),
            ("most frequent tags", evaluate::figures(&judged, &frequent, &generic)),
            ("keyword match alone", evaluate::figures(&judged, &keywords, &generic)),
        ])
    );
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
    let (hashtags, total): (f64, f64) = runs.iter().fold((0.0, 0.0), |(h, t), r| (h + r.hashtag_secs, t + r.total_secs));
    println!(
        "time: {:.2} s per clip for transcript, on-screen text and hashtags, of which hashtags {:.3} s ({:.1} %)",
        total / runs.len().max(1) as f64,
        hashtags / runs.len().max(1) as f64,
        100.0 * hashtags / total.max(1e-9)
    );
    ExitCode::SUCCESS
}

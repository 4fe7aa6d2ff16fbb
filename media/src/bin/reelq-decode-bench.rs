//! Times sampled-frame decodes of one file, as the models' frames are taken: a frame every
//! `--every` seconds scaled to `--short-side` pixels, no statistics, no audio. Prints figures;
//! asserts nothing. Compare with the FFmpeg CLI on the same file, for example
//! `ffmpeg -threads 2 -skip_frame nokey -i FILE -vf fps=1,scale=-2:540 -f rawvideo -pix_fmt rgb24 -y /dev/null`.
//!
//!     cargo run --release -p reelq-media --bin reelq-decode-bench -- FILE [--every 1] [--short-side 540] [--runs 5] [--threads 2]

use std::path::PathBuf;
use std::time::Instant;

use reelq_media::MediaSettings;
use reelq_media::decode::{DecodeOptions, FrameSize, Sampling, decode};
use reelq_media::probe::probe;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (mut file, mut every, mut short, mut runs, mut threads) = (None, 1.0f64, 540u32, 5usize, 0usize);
    while let Some(a) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{a} needs a value"));
        match a.as_str() {
            "--every" => every = value()?.parse()?,
            "--short-side" => short = value()?.parse()?,
            "--runs" => runs = value()?.parse()?,
            "--threads" => threads = value()?.parse()?,
            _ if file.is_none() => file = Some(PathBuf::from(&a)),
            _ => return Err(format!("unexpected argument `{a}`").into()),
        }
    }
    let file = file.ok_or("usage: reelq-decode-bench FILE [--every SECS] [--short-side PX] [--runs N] [--threads N]")?;
    let found = probe(&file, &MediaSettings::default())?;
    let opts = DecodeOptions { threads, ..DecodeOptions::sampling_only(Sampling::EverySecs(every), FrameSize::ShortSide(short)) };
    let mut walls = Vec::with_capacity(runs);
    for run in 0..runs.max(1) {
        let started = Instant::now();
        let out = decode(&file, &found, &opts, &|| false)?;
        let wall = started.elapsed().as_secs_f64() * 1000.0;
        walls.push(wall);
        if run == 0 {
            let r = &out.report;
            println!(
                "{}: strategy {:?}, keyframes every {:?} s, {} samples, {} frames decoded, {} seeks",
                file.display(),
                r.strategy,
                r.keyframe_interval_secs.map(|k| (k * 1000.0).round() / 1000.0),
                out.samples.len(),
                r.frames_decoded,
                r.seeks
            );
        }
    }
    walls.sort_by(f64::total_cmp);
    println!("wall ms over {} runs: min {:.0}, median {:.0}, max {:.0}", walls.len(), walls[0], walls[walls.len() / 2], walls[walls.len() - 1]);
    Ok(())
}

//! Media benchmark: frame sampling and quality analysis on generated 1080p H.264 clips,
//! against the ffmpeg CLI doing the same sampling. Prints figures; asserts nothing.
//!
//! ```text
//! cargo run --release -p reelq-worker --bin reelq-media-bench [-- --secs 60 --runs 3 --keep DIR]
//! cargo run --release -p reelq-worker --bin reelq-media-bench -- analyze FILE   # quality JSON
//! ```
//!
//! Each measurement runs in a child process of this binary so that its peak resident memory
//! (`VmHWM`) is its own; the CLI's is read with `/usr/bin/time` when present.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context as _, bail};

use reelq_worker::media::decode::{self, DecodeOptions, FrameSize, Sampling};
use reelq_worker::media::{probe, quality};
use reelq_worker::settings::MediaSettings;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("measure-sample") => measure_sample(Path::new(args.get(1).context("clip path")?), args.iter().any(|a| a == "--skip-deblocking")),
        Some("measure-quality") => measure_quality(Path::new(args.get(1).context("clip path")?)),
        Some("analyze") => analyze(Path::new(args.get(1).context("clip path")?)),
        _ => bench(&args),
    }
}

fn flag(args: &[String], name: &str, default: u32) -> anyhow::Result<u32> {
    match args.iter().position(|a| a == name) {
        Some(i) => Ok(args.get(i + 1).context("flag value")?.parse()?),
        None => Ok(default),
    }
}

fn bench(args: &[String]) -> anyhow::Result<()> {
    let secs = flag(args, "--secs", 60)?;
    let runs = flag(args, "--runs", 3)?.max(1);
    // `--keep DIR` reuses (or leaves) the generated clips there.
    let kept = args.iter().position(|a| a == "--keep").and_then(|i| args.get(i + 1)).map(PathBuf::from);
    let temp = tempfile::tempdir()?;
    let dir_path = kept.unwrap_or_else(|| temp.path().to_owned());
    std::fs::create_dir_all(&dir_path)?;
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    println!("reelq-media-bench: {secs} s 1920×1080 30 fps H.264 (x264 veryfast) + AAC, {cpus} CPUs, median of {runs} runs");
    if let Ok(load) = std::fs::read_to_string("/proc/loadavg") {
        println!("load average at start: {}", load.split_whitespace().take(3).collect::<Vec<_>>().join(" "));
    }
    println!();
    let clips = [("x264 default keyint (250)", "default", None), ("keyint 30 (-g 30)", "g30", Some("30"))];
    let mut rows = Vec::new();
    for (label, name, gop) in clips {
        let path = dir_path.join(format!("{name}-{secs}s.mp4"));
        let started = Instant::now();
        let size = |p: &Path| std::fs::metadata(p).map(|m| m.len() as f64 / 1e6);
        if path.exists() {
            println!("reusing {label}: {:.1} MB", size(&path)?);
        } else {
            generate(&path, secs, gop)?;
            println!("generated {label}: {:.1} MB in {:.1} s", size(&path)?, started.elapsed().as_secs_f64());
        }
        let ours = median_of(runs, || child(&path, "measure-sample", &[]))?;
        let cli = median_of(runs, || cli_sample(&path))?;
        let quality = median_of(runs.min(2), || child(&path, "measure-quality", &[]))?;
        rows.push((label, ours, cli.clone(), quality));
        if gop.is_none() {
            let fast = median_of(runs, || child(&path, "measure-sample", &["--skip-deblocking"]))?;
            rows.push(("  same, skip_deblocking", fast, cli, Figures::default()));
        }
    }
    println!();
    println!("Sampling 1 frame per second at 224×224 RGB24:");
    println!(
        "{:<28} {:>10} {:>10} {:>8} {:>10} {:>10}  reelq strategy / frames decoded / frames out",
        "clip", "reelq s", "cli s", "ratio", "reelq MiB", "cli MiB"
    );
    for (label, ours, cli, _) in &rows {
        println!(
            "{:<28} {:>10.2} {:>10.2} {:>8.2} {:>10.1} {:>10}  {} / {} / {} (cli {} frames)",
            label,
            ours.wall_secs,
            cli.wall_secs,
            ours.wall_secs / cli.wall_secs,
            ours.peak_kib as f64 / 1024.0,
            cli.peak_kib.map_or_else(|| "n/a".to_owned(), |k| format!("{:.1}", k as f64 / 1024.0)),
            ours.strategy,
            ours.frames_decoded,
            ours.frames_out,
            cli.frames_out,
        );
    }
    println!();
    println!("Full quality analysis (decode with statistics, scenes and audio, then scoring):");
    println!("{:<28} {:>10} {:>10} {:>10} {:>10}  stats frames / overall score", "clip", "total s", "decode s", "score s", "peak MiB");
    for (label, _, _, q) in rows.iter().filter(|r| r.3.wall_secs > 0.0) {
        println!(
            "{:<28} {:>10.2} {:>10.2} {:>10.3} {:>10.1}  {} / {}",
            label,
            q.wall_secs,
            q.decode_secs,
            q.score_secs,
            q.peak_kib as f64 / 1024.0,
            q.frames_out,
            q.overall,
        );
    }
    Ok(())
}

fn generate(path: &Path, secs: u32, gop: Option<&str>) -> anyhow::Result<()> {
    let video = format!("testsrc2=s=1920x1080:r=30:d={secs}");
    let audio = format!("sine=f=440:sample_rate=48000:d={secs}");
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i", &video, "-f", "lavfi", "-i", &audio]);
    cmd.args(["-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "128k"]);
    if let Some(g) = gop {
        cmd.args(["-g", g]);
    }
    cmd.arg(path);
    let status = cmd.status().context("running ffmpeg")?;
    if !status.success() {
        bail!("ffmpeg failed to generate {}", path.display());
    }
    Ok(())
}

/// One measurement.
#[derive(Debug, Clone, Default)]
struct Figures {
    wall_secs: f64,
    peak_kib: u64,
    strategy: String,
    frames_decoded: u64,
    frames_out: u64,
    decode_secs: f64,
    score_secs: f64,
    overall: u64,
}

#[derive(Debug, Clone, Default)]
struct CliFigures {
    wall_secs: f64,
    peak_kib: Option<u64>,
    frames_out: u64,
}

trait Wall {
    fn wall(&self) -> f64;
}

impl Wall for Figures {
    fn wall(&self) -> f64 {
        self.wall_secs
    }
}

impl Wall for CliFigures {
    fn wall(&self) -> f64 {
        self.wall_secs
    }
}

fn median_of<T: Wall>(runs: u32, mut f: impl FnMut() -> anyhow::Result<T>) -> anyhow::Result<T> {
    let mut all = Vec::new();
    for _ in 0..runs {
        all.push(f()?);
    }
    all.sort_by(|a, b| a.wall().total_cmp(&b.wall()));
    let mid = all.len() / 2;
    Ok(all.swap_remove(mid))
}

/// Runs this binary on one measurement and parses its `key=value` output.
fn child(path: &Path, what: &str, extra: &[&str]) -> anyhow::Result<Figures> {
    let exe = std::env::current_exe()?;
    let out = Command::new(exe).arg(what).arg(path).args(extra).output()?;
    if !out.status.success() {
        bail!("{what} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let text = String::from_utf8(out.stdout)?;
    let get = |k: &str| text.split_whitespace().find_map(|kv| kv.strip_prefix(&format!("{k}="))).unwrap_or("0").to_owned();
    Ok(Figures {
        wall_secs: get("wall_secs").parse()?,
        peak_kib: get("peak_kib").parse()?,
        strategy: get("strategy"),
        frames_decoded: get("frames_decoded").parse()?,
        frames_out: get("frames_out").parse()?,
        decode_secs: get("decode_secs").parse()?,
        score_secs: get("score_secs").parse()?,
        overall: get("overall").parse()?,
    })
}

/// The ffmpeg CLI doing the same sampling, its output counted and discarded.
fn cli_sample(path: &Path) -> anyhow::Result<CliFigures> {
    let time = PathBuf::from("/usr/bin/time");
    let ffmpeg_args = ["-hide_banner", "-loglevel", "error", "-i"];
    let tail = ["-vf", "fps=1,scale=224:224", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"];
    let mut cmd = if time.exists() {
        let mut c = Command::new(&time);
        c.args(["-f", "peak_kib=%M"]).arg("ffmpeg");
        c
    } else {
        Command::new("ffmpeg")
    };
    cmd.args(ffmpeg_args).arg(path).args(tail).stdout(Stdio::piped()).stderr(Stdio::piped());
    let started = Instant::now();
    let mut child = cmd.spawn().context("running ffmpeg")?;
    let mut bytes = 0u64;
    if let Some(mut out) = child.stdout.take() {
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = std::io::Read::read(&mut out, &mut buf)?;
            if n == 0 {
                break;
            }
            bytes += n as u64;
        }
    }
    let out = child.wait_with_output()?;
    let wall_secs = started.elapsed().as_secs_f64();
    if !out.status.success() {
        bail!("ffmpeg sampling failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let peak_kib = stderr.lines().rev().find_map(|l| l.trim().strip_prefix("peak_kib=")).and_then(|v| v.parse().ok());
    Ok(CliFigures { wall_secs, peak_kib, frames_out: bytes / (224 * 224 * 3) })
}

/// Peak resident set of this process, KiB.
fn peak_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("VmHWM:").map(|v| v.trim().trim_end_matches("kB").trim().to_owned())))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn never() -> bool {
    false
}

fn measure_sample(path: &Path, skip_deblocking: bool) -> anyhow::Result<()> {
    let started = Instant::now();
    let probe = probe::probe(path, &MediaSettings::default())?;
    let opts = DecodeOptions { skip_deblocking, ..DecodeOptions::sampling_only(Sampling::EverySecs(1.0), FrameSize::Square(224)) };
    let out = decode::decode(path, &probe, &opts, &never)?;
    let wall = started.elapsed().as_secs_f64();
    println!(
        "wall_secs={wall} peak_kib={} strategy={:?} frames_decoded={} frames_out={}",
        peak_kib(),
        out.report.strategy,
        out.report.frames_decoded,
        out.samples.len()
    );
    Ok(())
}

fn measure_quality(path: &Path) -> anyhow::Result<()> {
    let started = Instant::now();
    let probe = probe::probe(path, &MediaSettings::default())?;
    let out = decode::decode(path, &probe, &DecodeOptions::default(), &never)?;
    let decode_secs = started.elapsed().as_secs_f64();
    let scoring = Instant::now();
    let report = quality::analyze(&probe, &out);
    let score_secs = scoring.elapsed().as_secs_f64();
    println!(
        "wall_secs={} decode_secs={decode_secs} score_secs={score_secs} peak_kib={} strategy={:?} frames_decoded={} frames_out={} overall={}",
        started.elapsed().as_secs_f64(),
        peak_kib(),
        out.report.strategy,
        out.report.frames_decoded,
        out.frame_stats.len(),
        report.overall
    );
    Ok(())
}

fn analyze(path: &Path) -> anyhow::Result<()> {
    let probe = probe::probe(path, &MediaSettings::default())?;
    let out = decode::decode(path, &probe, &DecodeOptions::default(), &never)?;
    let report = quality::analyze(&probe, &out);
    println!("{}", serde_json::to_string_pretty(&serde_json::json!({ "decode": out.report, "quality": report }))?);
    Ok(())
}

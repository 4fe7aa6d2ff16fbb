//! Model benchmark: each graph of the pack through `ort` on fixed inputs, and a full Whisper
//! transcription of 60 s of espeak-ng speech. Prints figures; asserts nothing.
//!
//! ```text
//! cargo run --release -p reelq-inference --bin reelq-model-bench [-- --threads 2 --runs 5 --audio FILE --only TEXT]
//!     [--decoder auto|fp32|int8] [--text-out FILE]
//! ```
//!
//! `--only TEXT` runs the measurements whose label contains TEXT (e.g. `ppocr`, `transcribe`).
//! `--decoder` picks Whisper's decoder graph (auto: int8 on the CPU); `--text-out` writes the
//! transcript, for `tools/models/bench.py --wer FILE`.
//!
//! `tools/models/bench.py` times the same graphs with the same inputs through Python
//! onnxruntime, and the same audio through faster-whisper, for comparison. The audio is 16 kHz
//! mono f32le, written to `.data/bench/speech-60s.f32` on first use (espeak-ng, then ffmpeg).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context as _, bail};
use ort::session::{Session, SessionInputValue};
use ort::value::Tensor;

use reelq_inference::whisper::{self, DecoderPrecision, TranscribeOptions, Whisper};
use reelq_inference::{Device, DirStore, Runtime, RuntimeConfig};

/// The speech both benchmarks transcribe, repeated until it lasts 60 s.
pub const SPEECH: &str = "Welcome back to the channel. Today we are cooking a simple tomato pasta. \
Boil the water, add salt, and cook the pasta for ten minutes. Meanwhile, chop two cloves of garlic \
and fry them gently in olive oil. Add the tomatoes and let the sauce simmer until it thickens. \
Drain the pasta, mix it with the sauce, and finish with fresh basil and a little cheese. \
If you liked this video, please subscribe and tell me what you want to cook next.";

fn flag<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> anyhow::Result<T>
where
    T::Err: std::error::Error + Send + Sync + 'static,
{
    match args.iter().position(|a| a == name) {
        Some(i) => Ok(args.get(i + 1).with_context(|| format!("{name} needs a value"))?.parse()?),
        None => Ok(default),
    }
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let threads: usize = flag(&args, "--threads", 2)?;
    let runs: usize = flag(&args, "--runs", 5)?.max(1);
    let root = std::env::current_dir()?;
    let audio_path: PathBuf = flag(&args, "--audio", root.join(".data/bench/speech-60s.f32"))?;
    let only: String = flag(&args, "--only", String::new())?;
    let decoder = match flag(&args, "--decoder", String::from("auto"))?.as_str() {
        "auto" => DecoderPrecision::Auto,
        "fp32" => DecoderPrecision::Fp32,
        "int8" => DecoderPrecision::Int8,
        other => bail!("--decoder {other}: expected auto, fp32 or int8"),
    };
    let text_out: String = flag(&args, "--text-out", String::new())?;
    let runtime = Runtime::init(RuntimeConfig { library: RuntimeConfig::default_library(&root), intra_threads: threads, device: Device::Cpu })?;
    let store = DirStore::new(DirStore::default_root(&root));
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    println!("reelq-model-bench: ort (ONNX Runtime 1.31.1), {threads} intra-op threads, {cpus} CPUs, median of {runs} runs after 1 warm-up");
    if let Ok(load) = std::fs::read_to_string("/proc/loadavg") {
        println!("load average at start: {}", load.split_whitespace().take(3).collect::<Vec<_>>().join(" "));
    }
    println!("{:<34} {:>10} {:>10}", "graph (input)", "median ms", "min ms");

    let models = store.root().to_path_buf();
    ONLY.get_or_init(|| only.clone());
    let f32s = |shape: &[i64], seed: u32| -> anyhow::Result<SessionInputValue<'static>> {
        let n = shape.iter().product::<i64>() as usize;
        Ok(Tensor::from_array((shape.to_vec(), pseudo_random(n, seed)))?.into())
    };
    let i64s =
        |shape: &[i64], values: Vec<i64>| -> anyhow::Result<SessionInputValue<'static>> { Ok(Tensor::from_array((shape.to_vec(), values))?.into()) };

    time(
        || runtime.session("ppocr-v4-det", &models.join("ppocr-v4-det/model.onnx")),
        "ppocr-v4-det [1,3,960,544]",
        runs,
        || Ok(vec![("x", f32s(&[1, 3, 960, 544], 1)?)]),
    )?;
    time(
        || runtime.session("ppocr-v4-rec", &models.join("ppocr-v4-rec/model.onnx")),
        "ppocr-v4-rec [8,3,48,320]",
        runs,
        || Ok(vec![("x", f32s(&[8, 3, 48, 320], 2)?)]),
    )?;
    time(
        || runtime.session("silero-vad", &models.join("silero-vad/model.onnx")),
        "silero-vad [1,576] (one 32 ms step)",
        runs,
        || {
            Ok(vec![
                ("input", f32s(&[1, 576], 3)?),
                ("state", Tensor::from_array((vec![2i64, 1, 128], vec![0f32; 256]))?.into()),
                ("sr", i64s(&[], vec![16_000])?),
            ])
        },
    )?;
    time(
        || runtime.session("minilm-l6-v2", &models.join("minilm-l6-v2/model.onnx")),
        "minilm-l6-v2 [32,64] tokens",
        runs,
        || {
            let ids: Vec<i64> = (0..32 * 64).map(|i| 1000 + (i * 37) % 20000).collect();
            Ok(vec![
                ("input_ids", i64s(&[32, 64], ids)?),
                ("attention_mask", i64s(&[32, 64], vec![1; 32 * 64])?),
                ("token_type_ids", i64s(&[32, 64], vec![0; 32 * 64])?),
            ])
        },
    )?;
    for batch in [1i64, 8, 16] {
        time(
            || runtime.session("open-nsfw", &models.join("open-nsfw/model.onnx")),
            &format!("open-nsfw [{batch},224,224,3] (safety, one frame batch)"),
            runs,
            || Ok(vec![("input:0", f32s(&[batch, 224, 224, 3], 7)?)]),
        )?;
    }
    let wdir = models.join(whisper::MODEL);
    time(|| runtime.session("whisper mel", &wdir.join("mel.onnx")), "whisper mel [1,480000]", runs, || Ok(vec![("waveform", f32s(&[1, 480_000], 4)?)]))?;
    time(
        || runtime.session("whisper encoder", &wdir.join("encoder.onnx")),
        "whisper encoder [1,80,3000]",
        runs,
        || Ok(vec![("mel", f32s(&[1, 80, 3000], 5)?)]),
    )?;
    time(
        || runtime.session("whisper cross_kv", &wdir.join("cross_kv.onnx")),
        "whisper cross_kv [1,1500,384]",
        runs,
        || Ok(vec![("hidden", f32s(&[1, 1500, 384], 6)?)]),
    )?;
    let past = 100i64;
    const SELF: [&str; 8] = ["self_k_0", "self_v_0", "self_k_1", "self_v_1", "self_k_2", "self_v_2", "self_k_3", "self_v_3"];
    const CROSS: [&str; 8] = ["cross_k_0", "cross_v_0", "cross_k_1", "cross_v_1", "cross_k_2", "cross_v_2", "cross_k_3", "cross_v_3"];
    for (file, label) in [("decoder.onnx", "whisper decoder step (1 token, 100 past)"), ("decoder_int8.onnx", "whisper decoder int8 step (100 past)")] {
        if !wdir.join(file).is_file() {
            continue;
        }
        time(
            || runtime.session("whisper decoder", &wdir.join(file)),
            label,
            runs.max(20),
            || {
                // The cache has room for the whole 448-token context; `offset` says how much is filled.
                let mut inputs = vec![("tokens", i64s(&[1, 1], vec![440])?), ("offset", i64s(&[], vec![past])?)];
                for (i, name) in SELF.iter().enumerate() {
                    let shape: &[i64] = if name.starts_with("self_k") { &[1, 6, 64, 448] } else { &[1, 6, 448, 64] };
                    inputs.push((name, f32s(shape, 20 + i as u32)?));
                }
                for (i, name) in CROSS.iter().enumerate() {
                    let shape: &[i64] = if name.starts_with("cross_k") { &[1, 6, 64, 1500] } else { &[1, 6, 1500, 64] };
                    inputs.push((name, f32s(shape, 9 + i as u32)?));
                }
                Ok(inputs)
            },
        )?;
    }

    if !"whisper transcribe".contains(only.as_str()) {
        return Ok(());
    }
    let audio = speech_60s(&audio_path)?;
    let seconds = audio.len() as f64 / 16_000.0;
    let started = Instant::now();
    let model = Whisper::load_with(&runtime, &store, whisper::MODEL, decoder)?;
    let load = started.elapsed();
    let opts = TranscribeOptions::default();
    let mut times = Vec::new();
    let mut last = None;
    for _ in 0..runs.min(3) {
        let started = Instant::now();
        let t = model.transcribe(&audio, &opts)?;
        times.push(started.elapsed().as_secs_f64() * 1000.0);
        last = Some(t);
    }
    let (median, min) = stats(&mut times);
    println!("{:<34} {median:>10.1} {min:>10.1}", format!("whisper transcribe {seconds:.0} s ({decoder:?})"));
    println!("whisper load (4 graphs + checksums): {:.0} ms; real-time factor {:.3}", load.as_secs_f64() * 1000.0, median / 1000.0 / seconds);
    if let Some(t) = last {
        println!("segments: {}, words: {}", t.segments.len(), t.text.split_whitespace().count());
        println!("text: {}", t.text);
        if !text_out.is_empty() {
            std::fs::write(&text_out, &t.text).with_context(|| text_out.clone())?;
        }
    }
    Ok(())
}

/// Runs one session on fresh inputs: a warm-up, then `runs` timed runs.
fn time(
    session: impl FnOnce() -> Result<Session, reelq_inference::InferenceError>,
    label: &str,
    runs: usize,
    inputs: impl Fn() -> anyhow::Result<Vec<(&'static str, SessionInputValue<'static>)>>,
) -> anyhow::Result<()> {
    if !label.contains(ONLY.get().map_or("", String::as_str)) {
        return Ok(());
    }
    let mut session = session()?;
    let mut times = Vec::with_capacity(runs);
    for i in 0..=runs {
        let values = inputs()?;
        let started = Instant::now();
        let out = session.run(values).with_context(|| label.to_owned())?;
        let took = started.elapsed().as_secs_f64() * 1000.0;
        drop(out);
        if i > 0 {
            times.push(took);
        }
    }
    let (median, min) = stats(&mut times);
    println!("{label:<34} {median:>10.2} {min:>10.2}");
    Ok(())
}

/// The `--only` filter.
static ONLY: std::sync::OnceLock<String> = std::sync::OnceLock::new();

fn stats(times: &mut [f64]) -> (f64, f64) {
    times.sort_by(f64::total_cmp);
    (times[times.len() / 2], times[0])
}

/// Deterministic values in [-1, 1) (xorshift32); timings do not depend on the values.
fn pseudo_random(n: usize, seed: u32) -> Vec<f32> {
    let mut x = seed.wrapping_mul(2_654_435_761).max(1);
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x as f32 / u32::MAX as f32) * 2.0 - 1.0
        })
        .collect()
}

/// 60 s of espeak-ng speech as 16 kHz mono f32, cached at `path`.
fn speech_60s(path: &Path) -> anyhow::Result<Vec<f32>> {
    if !path.is_file() {
        let dir = tempfile::tempdir()?;
        let wav = dir.path().join("speech.wav");
        let text = [SPEECH; 3].join(" ");
        let status = Command::new("espeak-ng").args(["-v", "en-us", "-s", "150", "-w"]).arg(&wav).arg(&text).status().context("run espeak-ng")?;
        if !status.success() {
            bail!("espeak-ng failed");
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        // Pad with silence, then cut, so the clip is exactly 60 s whatever espeak's pace.
        let status = Command::new("ffmpeg")
            .args(["-v", "error", "-y", "-i"])
            .arg(&wav)
            .args(["-af", "apad", "-t", "60", "-ac", "1", "-ar", "16000", "-f", "f32le"])
            .arg(path)
            .status()
            .context("run ffmpeg")?;
        if !status.success() {
            bail!("ffmpeg failed");
        }
    }
    let bytes = std::fs::read(path)?;
    Ok(bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect())
}

//! Speech recognition with Whisper: 16 kHz mono audio → text with timed segments. The default
//! pack has tiny.en (English only); `build-pack --with whisper-base` adds the multilingual base
//! model, which detects the language from the first window with speech.
//!
//! The pack holds four graphs (see docs/models.md): a log-mel front end, the encoder, a cross-
//! attention K/V projection and a one-step decoder with a self-attention cache. Audio is cut into
//! 30 s windows; each window runs the front end, the encoder and the K/V projection once, then
//! the decoder greedily, one token per step against the cache. Decoding follows OpenAI Whisper's
//! rules: special and blank tokens suppressed, timestamps in pairs and never going back, a first
//! timestamp within 1 s, and the next window starts at the last complete timestamp.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use ort::session::{Session, SessionInputValue};
use ort::value::{DynValue, Tensor, TensorRef};
use serde::{Deserialize, Serialize};
use tokenizers::Tokenizer;

use super::{Arena, Device, InferenceError, Model, ModelId, ModelStore, Runtime, SessionOptions};

pub const MODEL: &str = "whisper-tiny-en";
pub const SAMPLE_RATE: u32 = 16_000;
/// Samples in one 30 s window, the encoder's fixed input length.
const WINDOW_SAMPLES: usize = 30 * SAMPLE_RATE as usize;
/// Samples per mel frame; the encoder halves the frame rate, so a timestamp step is 2 frames.
const HOP: usize = 160;
const FRAMES_PER_WINDOW: usize = WINDOW_SAMPLES / HOP;
const FRAMES_PER_TIMESTAMP: usize = 2;
const SECONDS_PER_FRAME: f64 = HOP as f64 / SAMPLE_RATE as f64;

/// Decoding limits and thresholds, with Whisper's defaults where it has them.
#[derive(Debug, Clone)]
pub struct TranscribeOptions {
    /// Tokens sampled per 30 s window at most (Whisper: half the 448-token context).
    pub max_tokens_per_window: usize,
    /// A window whose no-speech probability is above this…
    pub no_speech_threshold: f32,
    /// …and whose mean token log-probability is below this is dropped as silence.
    pub logprob_threshold: f32,
    /// Windows whose peak amplitude stays below this (about −60 dBFS) are silence without running
    /// the model.
    pub silence_peak: f32,
    /// ISO 639-1 code of the spoken language, for a multilingual model; `None` detects it from
    /// the first window with speech. An English-only model accepts only `en`.
    pub language: Option<String>,
    /// Temperatures to decode a window at, in turn, until one gives text that is neither too
    /// repetitive nor too unlikely (Whisper: 0, 0.2, …, 1). The first is greedy; the others
    /// sample, seeded from the window's position, so a transcript never varies between runs.
    pub temperatures: Vec<f32>,
    /// A window's text whose gzip compression ratio is above this repeats itself: decode again
    /// at the next temperature. (A mean log-probability under `logprob_threshold` does too.)
    pub compression_ratio_threshold: f32,
    /// Prompt each window with the text of the windows before it (`<|startofprev|>`), as
    /// Whisper does, so names and style carry over the 30 s cuts. The prompt starts afresh
    /// after a window decoded at a temperature above `prompt_reset_temperature`.
    pub condition_on_previous_text: bool,
    pub prompt_reset_temperature: f32,
}

impl Default for TranscribeOptions {
    fn default() -> Self {
        Self {
            max_tokens_per_window: 224,
            no_speech_threshold: 0.6,
            logprob_threshold: -1.0,
            silence_peak: 1e-3,
            language: None,
            temperatures: vec![0.0, 0.2, 0.4, 0.6, 0.8, 1.0],
            compression_ratio_threshold: 2.4,
            condition_on_previous_text: true,
            prompt_reset_temperature: 0.5,
        }
    }
}

/// One stretch of speech with its time in the input, in seconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TranscriptSegment {
    pub start: f64,
    pub end: f64,
    pub text: String,
    /// The mean natural-log probability the model gave the segment's text tokens: near 0 when
    /// it was sure, below about −0.7 when it guessed (speech under music or noise, mumbled or
    /// unknown words). Absent from transcripts stored before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub avg_logprob: Option<f32>,
}

/// What [`Whisper::transcribe`] returns; serialises as the `transcript` result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Transcript {
    /// ISO 639-1 code of the spoken language: `en` for an English-only model, else the given or
    /// detected one (empty when nothing was heard).
    pub language: String,
    pub text: String,
    pub segments: Vec<TranscriptSegment>,
    pub model: ModelId,
}

/// Token ids the decoder needs, from the manifest.
#[derive(Debug, Clone, Deserialize)]
struct SpecialTokens {
    eot: u32,
    sot: u32,
    sot_prev: u32,
    transcribe: u32,
    no_speech: u32,
    no_timestamps: u32,
    timestamp_begin: u32,
}

/// The manifest's `postprocessing` section for this model.
#[derive(Debug, Clone, Deserialize)]
struct DecodeConfig {
    layers: usize,
    heads: usize,
    head_dim: usize,
    text_ctx: usize,
    vocab: usize,
    #[serde(default)]
    english_only: bool,
    max_initial_timestamp: f64,
    seconds_per_timestamp: f64,
    special_tokens: SpecialTokens,
    suppress_tokens: Vec<u32>,
    suppress_at_begin: Vec<u32>,
    /// Language code → token id, for multilingual models.
    #[serde(default)]
    languages: BTreeMap<String, u32>,
}

#[derive(Debug, Deserialize)]
struct GraphFile {
    file: String,
    sha256: String,
}

/// The parts of `manifest.json` beyond [`super::Manifest`]: the further graphs.
#[derive(Debug, Deserialize)]
struct Graphs {
    graphs: BTreeMap<String, GraphFile>,
}

/// Which decoder graph to run. The pack has the decoder in fp32 and, since converter version 3,
/// dynamically quantised to int8 (weights int8, activations quantised per call).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DecoderPrecision {
    /// int8 on the CPU, where a step is bound by reading the weights (the 51,864-token logits
    /// table above all) and int8 reads a quarter of the bytes; fp32 on CUDA, where ONNX
    /// Runtime's integer kernels would fall back to the CPU. A pack without an int8 decoder
    /// gives fp32.
    #[default]
    Auto,
    Fp32,
    Int8,
}

impl DecoderPrecision {
    /// The manifest's graph role to load on `device`, given whether the pack has an int8 decoder.
    fn graph(self, device: Device, has_int8: bool) -> &'static str {
        match self {
            Self::Fp32 => "decoder",
            Self::Int8 => "decoder_int8",
            Self::Auto if device == Device::Cpu && has_int8 => "decoder_int8",
            Self::Auto => "decoder",
        }
    }
}

/// Whisper's graphs and tokenizer, shared by every job.
pub struct Whisper {
    /// The encoder, with the manifest (verified on load) and the folder.
    encoder: Arc<Model>,
    mel: Mutex<Session>,
    cross_kv: Mutex<Session>,
    decoder: Mutex<Session>,
    tokenizer: Tokenizer,
    config: DecodeConfig,
    /// Input names of the decoder's self-attention cache, `(self_k_i, self_v_i)` per layer.
    cache_inputs: Vec<(String, String)>,
}

impl std::fmt::Debug for Whisper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Whisper").field("model", &self.encoder).finish_non_exhaustive()
    }
}

/// One window's decode at one temperature.
struct Decoded {
    /// Sampled tokens, without the prompt and the end of text.
    tokens: Vec<u32>,
    /// The log-probability of each sampled token.
    logprobs: Vec<f32>,
    no_speech_prob: f32,
    avg_logprob: f32,
    temperature: f32,
}

/// The decoder's self-attention cache for one window: per layer, keys `[heads, head_dim, ctx]`
/// (transposed, as attention reads them) and values `[heads, ctx, head_dim]`, with room for the
/// whole text context. Allocated once per transcription and overwritten from position 0 by each
/// window; the decoder masks every position at or after its `offset`, so stale entries are
/// never read.
struct SelfCache {
    keys: Vec<Vec<f32>>,
    values: Vec<Vec<f32>>,
    heads: usize,
    head_dim: usize,
    ctx: usize,
}

impl SelfCache {
    fn new(c: &DecodeConfig) -> Self {
        let layer = || vec![0f32; c.heads * c.head_dim * c.text_ctx];
        Self {
            keys: (0..c.layers).map(|_| layer()).collect(),
            values: (0..c.layers).map(|_| layer()).collect(),
            heads: c.heads,
            head_dim: c.head_dim,
            ctx: c.text_ctx,
        }
    }

    /// Stores the decoder's `new_k [layers, 1, heads, head_dim, steps]` and
    /// `new_v [layers, 1, heads, steps, head_dim]` at positions `offset..offset + steps`.
    fn write(&mut self, new_k: &[f32], new_v: &[f32], offset: usize, steps: usize) {
        let (h, dh, ctx) = (self.heads, self.head_dim, self.ctx);
        for (l, (keys, values)) in self.keys.iter_mut().zip(&mut self.values).enumerate() {
            for head in 0..h {
                for d in 0..dh {
                    let from = ((l * h + head) * dh + d) * steps;
                    let to = (head * dh + d) * ctx + offset;
                    keys[to..to + steps].copy_from_slice(&new_k[from..from + steps]);
                }
                for t in 0..steps {
                    let from = ((l * h + head) * steps + t) * dh;
                    let to = (head * ctx + offset + t) * dh;
                    values[to..to + dh].copy_from_slice(&new_v[from..from + dh]);
                }
            }
        }
    }
}

fn lock(session: &Mutex<Session>) -> MutexGuard<'_, Session> {
    // A panic inside a run leaves the session itself usable, so a poisoned lock is recovered.
    session.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Whisper {
    /// Loads `whisper-tiny-en` from `store`: verifies every graph's checksum and creates a
    /// session for each.
    pub fn load(runtime: &Runtime, store: &dyn ModelStore) -> Result<Self, InferenceError> {
        Self::load_named(runtime, store, MODEL)
    }

    /// Loads another Whisper model of the pack, e.g. `whisper-base`.
    pub fn load_named(runtime: &Runtime, store: &dyn ModelStore, name: &str) -> Result<Self, InferenceError> {
        Self::load_with(runtime, store, name, DecoderPrecision::Auto)
    }

    /// Loads `name` with the decoder graph `precision` asks for.
    pub fn load_with(runtime: &Runtime, store: &dyn ModelStore, name: &str, precision: DecoderPrecision) -> Result<Self, InferenceError> {
        // The front end, the encoder and the K/V projection run once per 30 s window on large
        // activations; holding those between windows would double the worker's memory. The
        // decoder's are small and it runs per token, so it keeps its arena. No session spins:
        // between decoder steps the loop applies the logit rules, and spinning threads burnt a
        // core meanwhile (CPU time on 60 s of speech, 2 threads: 4.0 s spinning, 2.1 s not).
        let release = SessionOptions { arena: Arena::Release, spin: false };
        let keep = SessionOptions { arena: Arena::Keep, spin: false };
        let encoder = Model::load_with(runtime, store, name, release)?;
        let manifest = encoder.manifest();
        let dir = encoder.dir();
        let manifest_err = |reason: String| InferenceError::Manifest { path: dir.join("manifest.json"), reason };
        let config: DecodeConfig = serde_json::from_value(manifest.postprocessing.clone()).map_err(|e| manifest_err(format!("postprocessing: {e}")))?;
        let text = std::fs::read_to_string(dir.join("manifest.json")).map_err(|e| manifest_err(e.to_string()))?;
        let graphs: Graphs = serde_json::from_str(&text).map_err(|e| manifest_err(format!("graphs: {e}")))?;
        let session = |role: &str, options: SessionOptions| -> Result<Mutex<Session>, InferenceError> {
            let graph = graphs.graphs.get(role).ok_or_else(|| manifest_err(format!("no `{role}` graph")))?;
            crate::manifest::verify_file(name, dir, &graph.file, &graph.sha256)?;
            Ok(Mutex::new(runtime.session_with(name, &dir.join(&graph.file), options)?))
        };
        let decoder_role = precision.graph(runtime.config().device, graphs.graphs.contains_key("decoder_int8"));
        let (mel, cross_kv, decoder) = (session("mel", release)?, session("cross_kv", release)?, session(decoder_role, keep)?);
        // A pack from before the fixed-size cache has a decoder that takes the grown cache whole;
        // build-pack rebuilds it (converter version 4), and until then it is refused by name here
        // rather than failing on the first step.
        if !lock(&decoder).inputs().iter().any(|input| input.name() == "self_k_0") {
            return Err(manifest_err(format!("the {decoder_role} graph predates the fixed-size cache (run tools/models/build-pack)")));
        }
        let tokenizer_file = manifest.tokenizer.as_deref().ok_or_else(|| manifest_err("no tokenizer".into()))?;
        let tokenizer_path = dir.join(tokenizer_file);
        let tokenizer =
            Tokenizer::from_file(&tokenizer_path).map_err(|e| InferenceError::Tokenizer { path: tokenizer_path.clone(), reason: e.to_string() })?;
        if config.special_tokens.timestamp_begin as usize >= config.vocab {
            return Err(manifest_err("timestamp_begin is past the vocabulary".into()));
        }
        if !config.english_only && config.languages.is_empty() {
            return Err(manifest_err("a multilingual model needs its `languages`".into()));
        }
        let cache_inputs = (0..config.layers).map(|i| (format!("self_k_{i}"), format!("self_v_{i}"))).collect();
        Ok(Self { encoder, mel, cross_kv, decoder, tokenizer, config, cache_inputs })
    }

    pub fn model(&self) -> ModelId {
        self.encoder.id()
    }

    /// Transcribes 16 kHz mono `samples`. Silence, and audio too quiet to hold speech, give an
    /// empty transcript; non-finite samples and an unknown language are input errors.
    pub fn transcribe(&self, samples: &[f32], opts: &TranscribeOptions) -> Result<Transcript, InferenceError> {
        if samples.iter().any(|s| !s.is_finite()) {
            return Err(InferenceError::Input("audio holds NaN or infinite samples".into()));
        }
        let mut language = match (self.config.english_only, opts.language.as_deref()) {
            (true, None | Some("en")) => Some(("en".to_owned(), None)),
            (true, Some(code)) => {
                return Err(InferenceError::Input(format!("{} transcribes English only, not `{code}`", self.encoder.id())));
            }
            (false, None) => None,
            (false, Some(code)) => match self.config.languages.get(code) {
                Some(&id) => Some((code.to_owned(), Some(id))),
                None => return Err(InferenceError::Input(format!("unknown language `{code}`"))),
            },
        };
        let total_frames = samples.len().div_ceil(HOP);
        let mut segments = Vec::new();
        let mut seek = 0usize;
        let mut cache = SelfCache::new(&self.config);
        let mel_floor = self.mel_floor(samples, opts)?;
        // Tokens of the segments so far, and where the current prompt starts among them.
        let mut history: Vec<u32> = Vec::new();
        let mut prompt_from = 0usize;
        while seek < total_frames {
            let start = seek * HOP;
            let chunk = &samples[start..(start + WINDOW_SAMPLES).min(samples.len())];
            let window_frames = FRAMES_PER_WINDOW.min(total_frames - seek);
            let offset = seek as f64 * SECONDS_PER_FRAME;
            let peak = chunk.iter().fold(0f32, |m, s| m.max(s.abs()));
            if peak < opts.silence_peak {
                seek += window_frames;
                continue;
            }
            let prompt = if opts.condition_on_previous_text { &history[prompt_from..] } else { &[] };
            let decoded = self.decode_window(chunk, mel_floor, &mut cache, opts, &mut language, prompt, seek)?;
            if decoded.no_speech_prob > opts.no_speech_threshold && decoded.avg_logprob < opts.logprob_threshold {
                seek += window_frames;
                continue;
            }
            let (found, advance, consumed) = self.split_segments(&decoded.tokens, &decoded.logprobs, offset, window_frames);
            segments.extend(found);
            history.extend_from_slice(&decoded.tokens[..consumed]);
            if decoded.temperature > opts.prompt_reset_temperature {
                prompt_from = history.len();
            }
            seek += advance.clamp(1, window_frames);
        }
        let text = segments.iter().map(|s| s.text.as_str()).collect::<Vec<_>>().join(" ");
        let language = language.map(|(code, _)| code).unwrap_or_default();
        Ok(Transcript { language, text, segments, model: self.model() })
    }

    /// Runs the front end, the encoder and the K/V projection on one window (zero-padded to
    /// 30 s), then decodes it at each temperature in turn until the text passes Whisper's
    /// checks: a gzip compression ratio of at most 2.4 (no loops) and a mean log-probability of
    /// at least −1. A window that looks like silence (no-speech probability above the threshold
    /// and a low log-probability) is not decoded again: the caller drops it.
    #[allow(clippy::too_many_arguments)]
    fn decode_window(
        &self,
        chunk: &[f32],
        mel_floor: f32,
        cache: &mut SelfCache,
        opts: &TranscribeOptions,
        language: &mut Option<(String, Option<u32>)>,
        prompt: &[u32],
        seek: usize,
    ) -> Result<Decoded, InferenceError> {
        let err = |e| self.encoder.session_error(e);
        let mut mel = self.log_mel(chunk.to_vec())?;
        // The graph clamps each window at its own maximum − 8 (in log10 units); Whisper clamps at
        // the whole file's. Clamping again at the file's floor gives exactly that, as the file's
        // maximum is at least the window's.
        let (_, values) = mel.try_extract_tensor_mut::<f32>().map_err(err)?;
        for v in values.iter_mut() {
            *v = v.max(mel_floor);
        }
        let hidden = {
            let mut session = self.encoder.session();
            let mut out = session.run(ort::inputs!["mel" => &mel]).map_err(err)?;
            out.remove("hidden").ok_or_else(|| self.encoder.output_error("no `hidden`"))?
        };
        let cross = {
            let mut session = lock(&self.cross_kv);
            let mut out = session.run(ort::inputs!["hidden" => &hidden]).map_err(err)?;
            let mut cross = Vec::with_capacity(2 * self.config.layers);
            for i in 0..self.config.layers {
                for name in [format!("cross_k_{i}"), format!("cross_v_{i}")] {
                    let value = out.remove(&name).ok_or_else(|| self.encoder.output_error(format!("no `{name}`")))?;
                    cross.push((name, value));
                }
            }
            cross
        };
        drop((mel, hidden));
        let temperatures: &[f32] = if opts.temperatures.is_empty() { &[0.0] } else { &opts.temperatures };
        let mut decoded = None;
        for (attempt, &temperature) in temperatures.iter().enumerate() {
            // The seed depends only on where the window starts and which attempt this is.
            let mut rng = SplitMix64::new((seek as u64) << 8 | attempt as u64);
            let d = self.decode(&cross, cache, opts, language, prompt, temperature, &mut rng)?;
            let silence = d.no_speech_prob > opts.no_speech_threshold && d.avg_logprob < opts.logprob_threshold;
            let too_repetitive = self.compression_ratio(&d.tokens) > opts.compression_ratio_threshold;
            let too_unlikely = d.avg_logprob < opts.logprob_threshold;
            let done = silence || !(too_repetitive || too_unlikely);
            decoded = Some(d);
            if done {
                break;
            }
        }
        decoded.ok_or_else(|| self.encoder.output_error("no decoding attempt"))
    }

    /// The front end on one 30 s window (zero-padded): normalised log-mel `[1, 80, 3000]`.
    fn log_mel(&self, mut wave: Vec<f32>) -> Result<DynValue, InferenceError> {
        let err = |e| self.encoder.session_error(e);
        wave.resize(WINDOW_SAMPLES, 0.0);
        let mut session = lock(&self.mel);
        let mut out = session.run(ort::inputs!["waveform" => Tensor::from_array((vec![1i64, WINDOW_SAMPLES as i64], wave)).map_err(err)?]).map_err(err)?;
        out.remove("mel").ok_or_else(|| self.encoder.output_error("the mel graph gave no `mel`"))
    }

    /// The floor of Whisper's log-mel over the whole file, in the graph's normalised units:
    /// (max − 8 + 4) / 4, where max is the largest log10 mel value of any 30 s window. The
    /// graph's values are (log + 4) / 4, so a window's max is 4 · its largest value − 4.
    fn mel_floor(&self, samples: &[f32], opts: &TranscribeOptions) -> Result<f32, InferenceError> {
        let err = |e| self.encoder.session_error(e);
        let mut top = f32::NEG_INFINITY;
        for chunk in samples.chunks(WINDOW_SAMPLES) {
            if chunk.iter().fold(0f32, |m, s| m.max(s.abs())) < opts.silence_peak {
                continue;
            }
            let mel = self.log_mel(chunk.to_vec())?;
            let (_, values) = mel.try_extract_tensor::<f32>().map_err(err)?;
            top = top.max(values.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(4.0 * v - 4.0)));
        }
        Ok((top - 8.0 + 4.0) / 4.0)
    }

    /// Whisper's repetition test: the UTF-8 text's length over its zlib-compressed length.
    fn compression_ratio(&self, tokens: &[u32]) -> f32 {
        use std::io::Write as _;
        let text_ids: Vec<u32> = tokens.iter().copied().filter(|&t| t < self.config.special_tokens.eot).collect();
        let text = self.tokenizer.decode(&text_ids, true).unwrap_or_default();
        if text.is_empty() {
            return 0.0;
        }
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        match z.write_all(text.as_bytes()).and_then(|()| z.finish()) {
            Ok(compressed) => text.len() as f32 / compressed.len().max(1) as f32,
            Err(_) => 0.0,
        }
    }

    /// Decodes one window against its cross K/V, one decoder step per token: greedily at
    /// temperature 0, else sampling from the softmax of logits / temperature.
    ///
    /// The first step reads the previous text, if any (`<|startofprev|>` and at most the last
    /// 223 tokens, as Whisper), then `<|startoftranscript|>`: the logits there give the
    /// no-speech probability and, for a multilingual model without a language yet, the language
    /// (the likeliest `<|xx|>` token). A multilingual model then reads `<|xx|><|transcribe|>`
    /// into the same cache before sampling.
    #[allow(clippy::too_many_arguments)]
    fn decode(
        &self,
        cross: &[(String, DynValue)],
        cache: &mut SelfCache,
        opts: &TranscribeOptions,
        language: &mut Option<(String, Option<u32>)>,
        prompt: &[u32],
        temperature: f32,
        rng: &mut SplitMix64,
    ) -> Result<Decoded, InferenceError> {
        let c = &self.config;
        let sp = &c.special_tokens;
        let mut input = Vec::with_capacity(c.text_ctx / 2 + 1);
        if !prompt.is_empty() {
            input.push(sp.sot_prev);
            input.extend_from_slice(&prompt[prompt.len().saturating_sub(c.text_ctx / 2 - 1)..]);
        }
        input.push(sp.sot);
        // Leaving out <|notimestamps|> makes the model mark segments with timestamp tokens.
        let prefix_len = input.len() + if c.english_only { 0 } else { 2 };
        let max_tokens = opts.max_tokens_per_window.min(c.text_ctx.saturating_sub(prefix_len + 1));
        let mut session = lock(&self.decoder);
        let sot_at = input.len();
        let mut offset = 0usize;
        let mut sampled: Vec<u32> = Vec::new();
        let mut logprobs: Vec<f32> = Vec::new();
        let mut no_speech_prob = 0f32;
        let mut sum_logprob = 0f64;
        let mut steps = 0usize;
        let mut logits = Vec::with_capacity(c.vocab);
        loop {
            self.step(&mut session, &input, offset, cache, cross, &mut logits)?;
            let mut detected = None;
            if offset == 0 {
                // The probability of <|nocaptions|> right after <|startoftranscript|>.
                no_speech_prob = softmax_at(&logits, sp.no_speech as usize);
                if !c.english_only && language.is_none() {
                    detected = c
                        .languages
                        .iter()
                        .filter_map(|(code, &id)| Some((code, id, *logits.get(id as usize)?)))
                        .max_by(|a, b| a.2.total_cmp(&b.2))
                        .map(|(code, id, _)| (code.clone(), Some(id)));
                }
            }
            offset += input.len();
            if detected.is_some() {
                *language = detected;
            }
            if offset == sot_at && !c.english_only {
                let Some((_, Some(lang))) = language.as_ref() else {
                    return Err(self.encoder.output_error("no language token"));
                };
                input = vec![*lang, sp.transcribe];
                continue;
            }

            apply_rules(&mut logits, &sampled, c);
            let (next, logprob) = if temperature > 0.0 { sample(&logits, temperature, rng) } else { argmax_logprob(&logits) };
            sum_logprob += f64::from(logprob);
            steps += 1;
            if next == sp.eot as usize || sampled.len() >= max_tokens || offset >= c.text_ctx {
                break;
            }
            sampled.push(next as u32);
            logprobs.push(logprob);
            input = vec![next as u32];
        }
        let avg_logprob = (sum_logprob / steps.max(1) as f64) as f32;
        Ok(Decoded { tokens: sampled, logprobs, no_speech_prob, avg_logprob, temperature })
    }

    /// One decoder step: reads `tokens` at positions `offset..`, leaves the last token's logits in
    /// `logits` and writes the tokens' keys and values into `cache`. The cache and the window's
    /// cross K/V are passed borrowed, so a step copies nothing in proportion to either.
    fn step(
        &self,
        session: &mut Session,
        tokens: &[u32],
        offset: usize,
        cache: &mut SelfCache,
        cross: &[(String, DynValue)],
        logits: &mut Vec<f32>,
    ) -> Result<(), InferenceError> {
        let c = &self.config;
        let err = |e| self.encoder.session_error(e);
        if offset + tokens.len() > cache.ctx {
            return Err(InferenceError::Input(format!("{} tokens past the decoder's context of {}", offset + tokens.len(), cache.ctx)));
        }
        let ids: Vec<i64> = tokens.iter().map(|&t| i64::from(t)).collect();
        let mut inputs: Vec<(Cow<'_, str>, SessionInputValue<'_>)> = ort::inputs![
            "tokens" => Tensor::from_array((vec![1i64, ids.len() as i64], ids)).map_err(err)?,
            "offset" => Tensor::from_array((Vec::<i64>::new(), vec![offset as i64])).map_err(err)?,
        ];
        let (h, dh, ctx) = (c.heads, c.head_dim, cache.ctx);
        for ((k_name, v_name), (keys, values)) in self.cache_inputs.iter().zip(cache.keys.iter().zip(&cache.values)) {
            inputs.push((Cow::Borrowed(k_name.as_str()), TensorRef::from_array_view(([1usize, h, dh, ctx], &keys[..])).map_err(err)?.into()));
            inputs.push((Cow::Borrowed(v_name.as_str()), TensorRef::from_array_view(([1usize, h, ctx, dh], &values[..])).map_err(err)?.into()));
        }
        inputs.extend(cross.iter().map(|(name, value)| (Cow::Borrowed(name.as_str()), SessionInputValue::from(value))));
        let out = session.run(inputs).map_err(err)?;
        let tensor = |name: &str| -> Result<&[f32], InferenceError> {
            let value = out.get(name).ok_or_else(|| self.encoder.output_error(format!("no `{name}`")))?;
            Ok(value.try_extract_tensor::<f32>().map_err(err)?.1)
        };
        let last = tensor("logits")?;
        if last.len() != c.vocab {
            return Err(self.encoder.output_error(format!("{} logits for a vocabulary of {}", last.len(), c.vocab)));
        }
        logits.clear();
        logits.extend_from_slice(last);
        let (new_k, new_v) = (tensor("new_k")?, tensor("new_v")?);
        let expected = c.layers * h * dh * tokens.len();
        if new_k.len() != expected || new_v.len() != expected {
            return Err(self.encoder.output_error(format!("new keys/values of {}/{} values, expected {expected}", new_k.len(), new_v.len())));
        }
        cache.write(new_k, new_v, offset, tokens.len());
        Ok(())
    }

    /// Segments from one window's tokens, how many mel frames the next window starts after, and
    /// how many of the tokens those segments hold (the prompt for the next window).
    ///
    /// Whisper marks each segment `<|t0|> text <|t1|>`. When the window ends on a complete pair,
    /// the next window starts at its last timestamp, so speech cut at the 30 s edge is heard again
    /// whole; otherwise the whole window is consumed.
    fn split_segments(&self, tokens: &[u32], logprobs: &[f32], offset: f64, window_frames: usize) -> (Vec<TranscriptSegment>, usize, usize) {
        let tb = self.config.special_tokens.timestamp_begin;
        let step = self.config.seconds_per_timestamp;
        let is_ts: Vec<bool> = tokens.iter().map(|&t| t >= tb).collect();
        let n = tokens.len();
        let single_ending = n >= 2 && !is_ts[n - 2] && is_ts[n - 1];
        let mut slices: Vec<usize> = (1..n).filter(|&i| is_ts[i] && is_ts[i - 1]).collect();
        let mut segments = Vec::new();
        let window_seconds = window_frames as f64 * SECONDS_PER_FRAME;
        if !slices.is_empty() {
            if single_ending {
                slices.push(n);
            }
            let mut last = 0;
            for &cut in &slices {
                let part = &tokens[last..cut];
                if let (Some(&first), Some(&end)) = (part.first(), part.last()) {
                    let t0 = if first >= tb { f64::from(first - tb) * step } else { 0.0 };
                    let t1 = if end >= tb { f64::from(end - tb) * step } else { window_seconds };
                    let part_logprobs = logprobs.get(last..cut).unwrap_or_default();
                    self.push_segment(&mut segments, part, part_logprobs, offset + t0, offset + t1.min(window_seconds));
                }
                last = cut;
            }
            let advance = if single_ending { window_frames } else { tokens[last - 1].saturating_sub(tb) as usize * FRAMES_PER_TIMESTAMP };
            return (segments, advance, last);
        }
        // No complete pair: one segment for the window, ending at its last timestamp if any.
        let mut end = window_seconds;
        if let Some(&t) = tokens.iter().rev().find(|&&t| t >= tb)
            && t > tb
        {
            end = (f64::from(t - tb) * step).min(window_seconds);
        }
        let start = tokens.first().filter(|&&t| t >= tb).map_or(0.0, |&t| f64::from(t - tb) * step);
        self.push_segment(&mut segments, tokens, logprobs, offset + start.min(end), offset + end);
        (segments, window_frames, n)
    }

    /// Adds the segment of `tokens` (with their `logprobs`), unless it holds no text. Its
    /// `avg_logprob` is over the text tokens alone: timestamps are near certain and would hide
    /// a guessed word.
    fn push_segment(&self, segments: &mut Vec<TranscriptSegment>, tokens: &[u32], logprobs: &[f32], start: f64, end: f64) {
        let eot = self.config.special_tokens.eot;
        let text_ids: Vec<u32> = tokens.iter().copied().filter(|&t| t < eot).collect();
        let text = self.tokenizer.decode(&text_ids, true).unwrap_or_default();
        let text = text.trim();
        if text.is_empty() {
            return;
        }
        let text_logprobs: Vec<f32> = tokens.iter().zip(logprobs).filter(|(t, _)| **t < eot).map(|(_, &l)| l).collect();
        let avg_logprob = (!text_logprobs.is_empty()).then(|| round_thousandths(text_logprobs.iter().sum::<f32>() / text_logprobs.len() as f32));
        segments.push(TranscriptSegment { start: round_ms(start), end: round_ms(end.max(start)), text: text.to_owned(), avg_logprob });
    }
}

fn round_ms(seconds: f64) -> f64 {
    (seconds * 1000.0).round() / 1000.0
}

fn round_thousandths(x: f32) -> f32 {
    (x * 1000.0).round() / 1000.0
}

/// Whisper's logit filters for the next token after `sampled` (the prompt excluded).
fn apply_rules(logits: &mut [f32], sampled: &[u32], c: &DecodeConfig) {
    let sp = &c.special_tokens;
    let tb = sp.timestamp_begin as usize;
    let eot = sp.eot as usize;
    let ban = |ids: std::ops::Range<usize>, logits: &mut [f32]| {
        let len = logits.len();
        for l in &mut logits[ids.start.min(len)..ids.end.min(len)] {
            *l = f32::NEG_INFINITY;
        }
    };
    for &id in &c.suppress_tokens {
        ban(id as usize..id as usize + 1, logits);
    }
    if sampled.is_empty() {
        // No blank or end of text as the first token.
        for &id in &c.suppress_at_begin {
            ban(id as usize..id as usize + 1, logits);
        }
    }
    ban(sp.no_timestamps as usize..sp.no_timestamps as usize + 1, logits);

    // Timestamps come in pairs, except one right before the end of text.
    let last_ts = sampled.last().is_some_and(|&t| t as usize >= tb);
    let penultimate_ts = sampled.len() < 2 || sampled[sampled.len() - 2] as usize >= tb;
    if last_ts {
        if penultimate_ts {
            ban(tb..logits.len(), logits);
        } else {
            ban(0..eot, logits);
        }
    }
    // Timestamps never go back, and a segment is never empty.
    if let Some(&t) = sampled.iter().rev().find(|&&t| t as usize >= tb) {
        let floor = if last_ts && !penultimate_ts { t as usize } else { t as usize + 1 };
        ban(tb..floor, logits);
    }
    if sampled.is_empty() {
        // The first token is a timestamp within the first second.
        ban(0..tb, logits);
        let max_initial = (c.max_initial_timestamp / c.seconds_per_timestamp).round() as usize;
        ban(tb + max_initial + 1..logits.len(), logits);
    }
    // When the timestamps together are likelier than any text token, take a timestamp.
    let lse = log_sum_exp(logits);
    let ts_mass = log_sum_exp(&logits[tb.min(logits.len())..]) - lse;
    let text_max = logits[..tb.min(logits.len())].iter().fold(f32::NEG_INFINITY, |m, &l| m.max(l)) - lse;
    if ts_mass > text_max {
        ban(0..tb, logits);
    }
}

fn log_sum_exp(xs: &[f32]) -> f32 {
    let max = xs.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x));
    if max == f32::NEG_INFINITY {
        return max;
    }
    max + xs.iter().map(|&x| (x - max).exp()).sum::<f32>().ln()
}

fn softmax_at(logits: &[f32], index: usize) -> f32 {
    match logits.get(index) {
        Some(&l) => (l - log_sum_exp(logits)).exp(),
        None => 0.0,
    }
}

/// A token drawn from softmax(logits / temperature), and its log-probability under the
/// unscaled logits (what Whisper averages for its checks).
fn sample(logits: &[f32], temperature: f32, rng: &mut SplitMix64) -> (usize, f32) {
    let max = logits.iter().fold(f32::NEG_INFINITY, |m, &l| m.max(l));
    let weight = |l: f32| f64::from((l - max) / temperature).exp();
    let total: f64 = logits.iter().map(|&l| weight(l)).sum();
    let mut target = rng.next_f64() * total;
    let mut chosen = 0;
    for (i, &l) in logits.iter().enumerate() {
        if l == f32::NEG_INFINITY {
            continue;
        }
        chosen = i;
        target -= weight(l);
        if target <= 0.0 {
            break;
        }
    }
    (chosen, logits[chosen] - log_sum_exp(logits))
}

/// A small deterministic generator (SplitMix64) for sampling: the same seed gives the same
/// transcript on every run and machine.
struct SplitMix64(u64);

impl SplitMix64 {
    fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// Uniform in [0, 1).
    fn next_f64(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The likeliest token and its log-probability.
fn argmax_logprob(logits: &[f32]) -> (usize, f32) {
    let (best, &max) = logits.iter().enumerate().fold((0, &f32::NEG_INFINITY), |acc, (i, l)| if *l > *acc.1 { (i, l) } else { acc });
    (best, max - log_sum_exp(logits))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DirStore, testing};

    /// Lower-case words without punctuation, so "Pasta," matches "pasta".
    fn words(text: &str) -> Vec<String> {
        text.split_whitespace().map(|w| w.chars().filter(|c| c.is_alphanumeric()).collect::<String>().to_lowercase()).filter(|w| !w.is_empty()).collect()
    }

    fn missing<'a>(text: &str, expected: &[&'a str]) -> Vec<&'a str> {
        let got = words(text);
        expected.iter().copied().filter(|w| !got.iter().any(|g| g == w)).collect()
    }

    /// German speech from espeak-ng (the shared helper speaks American English).
    fn espeak_german(text: &str) -> Vec<f32> {
        let dir = tempfile::tempdir().expect("tempdir");
        let wav = dir.path().join("speech.wav");
        let status = std::process::Command::new("espeak-ng").args(["-v", "de", "-s", "150", "-w"]).arg(&wav).arg(text).status().expect("run espeak-ng");
        assert!(status.success(), "espeak-ng failed");
        testing::ffmpeg_audio(&["-i", &wav.to_string_lossy()])
    }

    const PASTA: &str = "Today we are cooking a simple tomato pasta. Boil the water, add salt, and cook the pasta for ten minutes.";

    #[test]
    fn the_fp32_and_int8_decoders_hear_the_same_words() {
        let (runtime, store) = testing::runtime_and_store();
        let speech = testing::espeak(PASTA);

        let mut heard = Vec::new();
        for precision in [DecoderPrecision::Fp32, DecoderPrecision::Int8] {
            let whisper = Whisper::load_with(&runtime, &store, MODEL, precision).expect("load whisper");
            let t = whisper.transcribe(&speech, &TranscribeOptions::default()).expect("transcribe");
            eprintln!("{precision:?}: {}", t.text);
            heard.push(words(&t.text));
        }

        assert_eq!(heard[0], heard[1]);
        assert!(missing(&heard[1].join(" "), &["today", "cooking", "tomato", "pasta", "boil", "water", "salt", "minutes"]).is_empty(), "{heard:?}");
    }

    fn test_config() -> DecodeConfig {
        DecodeConfig {
            layers: 1,
            heads: 1,
            head_dim: 1,
            text_ctx: 448,
            vocab: 20,
            english_only: true,
            max_initial_timestamp: 0.04,
            seconds_per_timestamp: 0.02,
            special_tokens: SpecialTokens { eot: 5, sot: 6, sot_prev: 3, transcribe: 4, no_speech: 7, no_timestamps: 8, timestamp_begin: 9 },
            suppress_tokens: vec![6, 7],
            suppress_at_begin: vec![1, 5],
            languages: BTreeMap::new(),
        }
    }

    #[test]
    fn timestamp_rules_force_a_first_timestamp_then_pairs_in_order() {
        let c = test_config();
        // Text token 0 is the likeliest everywhere unless a rule bans it.
        let base: Vec<f32> = (0..20).map(|i| if i == 0 { 5.0 } else { 0.0 }).collect();

        let mut first = base.clone();
        apply_rules(&mut first, &[], &c);
        let allowed: Vec<usize> = (0..20).filter(|&i| first[i].is_finite()).collect();
        assert_eq!(allowed, vec![9, 10, 11], "first token: a timestamp within 0.04 s");

        let mut after_text = base.clone();
        apply_rules(&mut after_text, &[9, 0, 11], &c);
        assert!(after_text[..5].iter().all(|l| !l.is_finite()), "a lone timestamp after text is closed by a timestamp or the end");
        assert!(after_text[11].is_finite() && !after_text[10].is_finite(), "the closing timestamp may repeat the last one, never go back");

        let mut after_pair = base.clone();
        apply_rules(&mut after_pair, &[9, 0, 11, 11], &c);
        assert!(after_pair[9..].iter().all(|l| !l.is_finite()), "after a pair comes text");
        assert!(after_pair[0].is_finite());
    }

    #[test]
    fn new_keys_and_values_land_at_their_positions_in_the_cache() {
        let c = DecodeConfig { layers: 2, heads: 2, head_dim: 3, text_ctx: 5, ..test_config() };
        let mut cache = SelfCache::new(&c);
        // Two steps at offset 1; each value encodes its (layer, head, dim, step).
        let code = |l: usize, h: usize, d: usize, t: usize| (1000 * l + 100 * h + 10 * d + t) as f32;
        let mut new_k = Vec::new();
        let mut new_v = Vec::new();
        for l in 0..2 {
            for h in 0..2 {
                new_k.extend((0..3).flat_map(|d| (0..2).map(move |t| code(l, h, d, t))));
                new_v.extend((0..2).flat_map(|t| (0..3).map(move |d| code(l, h, d, t))));
            }
        }

        cache.write(&new_k, &new_v, 1, 2);

        for l in 0..2 {
            for h in 0..2 {
                for d in 0..3 {
                    assert_eq!(cache.keys[l][(h * 3 + d) * 5], 0.0, "position 0 untouched");
                    for t in 0..2 {
                        assert_eq!(cache.keys[l][(h * 3 + d) * 5 + 1 + t], code(l, h, d, t));
                        assert_eq!(cache.values[l][(h * 5 + 1 + t) * 3 + d], code(l, h, d, t));
                    }
                    assert_eq!(cache.keys[l][(h * 3 + d) * 5 + 3], 0.0, "position 3 untouched");
                }
            }
        }
    }

    #[test]
    fn sampling_is_seeded_and_never_draws_a_banned_token() {
        let logits: Vec<f32> = vec![1.0, f32::NEG_INFINITY, 0.5, 0.0, f32::NEG_INFINITY, 0.8];
        let draw = |seed: u64, temperature: f32| -> Vec<usize> {
            let mut rng = SplitMix64::new(seed);
            (0..200).map(|_| sample(&logits, temperature, &mut rng).0).collect()
        };

        let (first, again, other) = (draw(7, 1.0), draw(7, 1.0), draw(8, 1.0));
        let cold = draw(7, 0.01);

        assert_eq!(first, again, "the same seed draws the same tokens");
        assert_ne!(first, other);
        assert!(first.iter().all(|&t| t != 1 && t != 4), "banned tokens drawn: {first:?}");
        assert!([0, 2, 3, 5].iter().all(|t| first.contains(t)), "every allowed token is drawn at temperature 1");
        assert!(cold.iter().all(|&t| t == 0), "a low temperature draws the likeliest token");
        let (_, logprob) = sample(&logits, 1.0, &mut SplitMix64::new(1));
        assert!(logprob < 0.0 && logprob.is_finite());
    }

    #[test]
    fn the_cpu_runs_the_int8_decoder_and_cuda_or_an_older_pack_the_fp32_one() {
        let cuda = Device::Cuda { device_id: 0 };

        assert_eq!(DecoderPrecision::Auto.graph(Device::Cpu, true), "decoder_int8");
        assert_eq!(DecoderPrecision::Auto.graph(Device::Cpu, false), "decoder");
        assert_eq!(DecoderPrecision::Auto.graph(cuda, true), "decoder");
        assert_eq!(DecoderPrecision::Fp32.graph(Device::Cpu, true), "decoder");
        assert_eq!(DecoderPrecision::Int8.graph(cuda, true), "decoder_int8");
    }

    #[test]
    fn a_missing_pack_is_a_model_missing_error() {
        let (runtime, _) = testing::runtime_and_store();
        let empty = tempfile::tempdir().expect("tempdir");

        let err = Whisper::load(&runtime, &DirStore::new(empty.path())).expect_err("no pack");

        assert_eq!(err.error_code(), "model-missing", "{err}");
    }

    #[test]
    fn transcribes_espeak_speech_with_timed_segments() {
        let (runtime, store) = testing::runtime_and_store();
        let whisper = Whisper::load(&runtime, &store).expect("load whisper");
        let speech = testing::espeak(PASTA);
        let duration = speech.len() as f64 / f64::from(SAMPLE_RATE);

        let started = std::time::Instant::now();
        let t = whisper.transcribe(&speech, &TranscribeOptions::default()).expect("transcribe");
        eprintln!("whisper: {duration:.1} s of speech in {:?}: {}", started.elapsed(), serde_json::to_string(&t).unwrap_or_default());

        let lost = missing(&t.text, &["today", "cooking", "simple", "tomato", "pasta", "boil", "water", "salt", "cook", "minutes"]);
        assert!(lost.is_empty(), "words not heard: {lost:?} in {:?}", t.text);
        assert_eq!(t.language, "en");
        assert_eq!(t.model.name, MODEL);
        assert!(!t.segments.is_empty());
        for s in &t.segments {
            assert!(0.0 <= s.start && s.start <= s.end && s.end <= duration + 0.5, "{s:?} in {duration} s");
        }
        let json = serde_json::to_value(&t).expect("json");
        assert!(json["segments"][0]["start"].is_number() && json["model"]["version"].is_string(), "{json}");
    }

    #[test]
    fn long_audio_runs_over_two_windows_with_increasing_times() {
        let (runtime, store) = testing::runtime_and_store();
        let whisper = Whisper::load(&runtime, &store).expect("load whisper");
        let sentences = [
            "Welcome back to the channel. Today I will show you my morning routine.",
            "First I make a cup of coffee and read the news for a few minutes.",
            "Then I go for a short run in the park near my house.",
            "After the run I take a shower and get dressed for work.",
            "I always eat breakfast before I leave, usually eggs and bread.",
            "Finally I take the train to the office and start my day.",
        ];
        let gap = vec![0f32; SAMPLE_RATE as usize / 2];
        let mut audio = Vec::new();
        for s in sentences.iter().cycle() {
            audio.extend(testing::espeak(s));
            audio.extend(&gap);
            if audio.len() >= 40 * SAMPLE_RATE as usize {
                break;
            }
        }
        let duration = audio.len() as f64 / f64::from(SAMPLE_RATE);
        assert!(duration > 35.0, "{duration}");

        let started = std::time::Instant::now();
        let t = whisper.transcribe(&audio, &TranscribeOptions::default()).expect("transcribe");
        eprintln!("whisper: {duration:.1} s in {:?}, {} segments", started.elapsed(), t.segments.len());
        for s in &t.segments {
            eprintln!("  [{:6.2} – {:6.2}] {}", s.start, s.end, s.text);
        }

        let lost = missing(&t.text, &["welcome", "channel", "morning", "coffee", "park", "shower", "breakfast", "train", "office"]);
        assert!(lost.is_empty(), "words not heard: {lost:?} in {:?}", t.text);
        for pair in t.segments.windows(2) {
            assert!(pair[0].start <= pair[1].start && pair[0].end <= pair[1].end + 0.5, "{pair:?}");
        }
        assert!(t.segments.iter().any(|s| s.start < 10.0), "{:?}", t.segments);
        assert!(t.segments.iter().any(|s| s.start > 30.0), "the second window has segments: {:?}", t.segments);
        let last = t.segments.last().expect("segments");
        assert!(last.end > duration - 5.0 && last.end <= duration + 0.5, "{last:?} for {duration} s");
    }

    #[test]
    #[ignore = "needs the optional model: tools/models/build-pack --with whisper-base"]
    fn the_multilingual_model_detects_german_and_english() {
        let (runtime, store) = testing::runtime_and_store();
        let whisper = Whisper::load_named(&runtime, &store, "whisper-base").expect("load whisper-base");
        let german = espeak_german("Heute kochen wir eine einfache Suppe. Zuerst schneiden wir die Zwiebeln und den Knoblauch.");
        let english = testing::espeak("Welcome back to the channel. Today I will show you my morning routine.");

        let de = whisper.transcribe(&german, &TranscribeOptions::default()).expect("german");
        let en = whisper.transcribe(&english, &TranscribeOptions::default()).expect("english");
        let forced = TranscribeOptions { language: Some("xx".into()), ..TranscribeOptions::default() };
        let unknown = whisper.transcribe(&english, &forced).expect_err("unknown language");
        eprintln!("whisper-base: {de:?}\n{en:?}");

        assert_eq!(de.language, "de");
        assert!(missing(&de.text, &["heute", "kochen", "wir", "zwiebeln", "knoblauch"]).is_empty(), "{:?}", de.text);
        assert_eq!(en.language, "en");
        assert!(missing(&en.text, &["welcome", "channel", "morning", "routine"]).is_empty(), "{:?}", en.text);
        assert_eq!(unknown.error_code(), "inference-input-invalid");
    }

    #[test]
    fn silence_and_empty_audio_give_no_words() {
        let (runtime, store) = testing::runtime_and_store();
        let whisper = Whisper::load(&runtime, &store).expect("load whisper");

        let silent = whisper.transcribe(&vec![0f32; SAMPLE_RATE as usize * 45], &TranscribeOptions::default()).expect("silence");
        let empty = whisper.transcribe(&[], &TranscribeOptions::default()).expect("empty");
        let bad = whisper.transcribe(&[0.0, f32::NAN], &TranscribeOptions::default()).expect_err("NaN");
        let german = TranscribeOptions { language: Some("de".into()), ..TranscribeOptions::default() };
        let not_english = whisper.transcribe(&[0.0; 16], &german).expect_err("English only");

        assert!(silent.text.is_empty() && silent.segments.is_empty(), "{silent:?}");
        assert!(empty.text.is_empty() && empty.segments.is_empty(), "{empty:?}");
        assert_eq!(bad.error_code(), "inference-input-invalid");
        assert_eq!(not_english.error_code(), "inference-input-invalid");
    }
}

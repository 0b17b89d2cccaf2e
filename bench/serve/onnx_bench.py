"""ONNX FP32 and INT8 (QDQ, onnxruntime CPU) against libtorch FP32 (torch 2.11, the same weights), on
the test split: ms per image at batch 1 and 64, top-1 accuracy. Prints one JSON object."""

import argparse
import json
import os
import time
import zipfile

import numpy as np
import onnxruntime as ort
import torch
from PIL import Image

from reference_server import load


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True, help="model zip downloaded with ?int8=true")
    ap.add_argument("--images", required=True, help="test/<class>/* folder")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    z = zipfile.ZipFile(a.model)
    names = z.namelist()
    if "model.onnx" not in names or "model.int8.onnx" not in names:
        print(json.dumps({"error": f"the model zip has no model.onnx / model.int8.onnx (has {names})"}))
        return
    model, card = load(a.model, "cpu")
    size, ch = card["input"]["size"][0], card["input"]["channels"]
    mean, std = card["input"]["normalize"]["mean"], card["input"]["normalize"]["std"]
    classes = card["classes"]
    xs, ys = [], []
    for label, c in enumerate(classes):
        d = os.path.join(a.images, c)
        for f in sorted(os.listdir(d)):
            img = Image.open(os.path.join(d, f)).convert("RGB" if ch == 3 else "L").resize((size, size), Image.BILINEAR)
            arr = np.asarray(img, dtype=np.uint8).reshape(size, size, ch).transpose(2, 0, 1)
            xs.append((arr.astype(np.float32) / 255 - mean) / std)
            ys.append(label)
    x, y = np.stack(xs).astype(np.float32), np.array(ys)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = a.threads
    sess = {k: ort.InferenceSession(z.read(k), opts, providers=["CPUExecutionProvider"])
            for k in ("model.onnx", "model.int8.onnx")}

    def torch_run(b):
        with torch.inference_mode():
            return model(torch.from_numpy(b)).numpy()

    runners = [("libtorch FP32", torch_run),
               ("ONNX FP32 (onnxruntime)", lambda b: sess["model.onnx"].run(None, {"input": b})[0]),
               ("ONNX INT8 QDQ (onnxruntime)", lambda b: sess["model.int8.onnx"].run(None, {"input": b})[0])]
    rows = []
    for name, run in runners:
        logits = np.concatenate([run(x[i:i + 64]) for i in range(0, len(x), 64)])
        acc = float((logits.argmax(1) == y).mean())
        for b in (x[:1], x[:64]):
            run(b)
        n1 = min(300, len(x))
        t = time.perf_counter()
        for i in range(n1):
            run(x[i:i + 1])
        b1 = (time.perf_counter() - t) / n1 * 1000
        t, n = time.perf_counter(), 0
        for _ in range(3):
            for i in range(0, len(x) - 63, 64):
                run(x[i:i + 64])
                n += 64
        b64 = (time.perf_counter() - t) / n * 1000
        rows.append({"name": name, "b1_ms": b1, "b64_ms": b64, "accuracy": acc})
    print(json.dumps({"images": len(x), "threads": a.threads, "rows": rows}))


if __name__ == "__main__":
    main()

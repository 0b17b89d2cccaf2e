"""The reference a user would write themselves: FastAPI + uvicorn + torch 2.11, the model preloaded
once at start, one forward pass per request, PIL preprocessing (the seed's torchvision-style
Resize((N, N)) + ToTensor + Normalize). Same route and answer shape as tanren-serve's classify, so the
same load generator drives both.

    python reference_server.py --model best.zip --port 8600 [--device cpu]
"""

import argparse
import io
import json
import time
import zipfile

import torch
import torch.nn as nn
import uvicorn
from fastapi import FastAPI, File, HTTPException, UploadFile
from PIL import Image
from safetensors.torch import load as load_safetensors


class Cnn(nn.Module):
    """tanren's CNN family (model.json `architecture`, family `cnn`) with tanren's variable names."""

    def __init__(self, spec):
        super().__init__()
        self.blocks = nn.ModuleList()
        cin, side = spec["in_channels"], spec["image_size"]
        bn = spec.get("batch_norm", False)
        for b in spec["blocks"]:
            blk = nn.Module()
            k = b["kernel"]
            blk.conv = nn.Conv2d(cin, b["out_channels"], k, padding=k // 2, bias=not bn)
            if bn:
                blk.bn = nn.BatchNorm2d(b["out_channels"])
            self.blocks.append(blk)
            cin, side = b["out_channels"], side // 2
        self.head = spec["head"]
        feats = cin * side * side if self.head == "flatten" else cin
        self.fc = nn.Linear(feats, spec["num_classes"])

    def forward(self, x):
        for blk in self.blocks:
            x = blk.conv(x)
            if hasattr(blk, "bn"):
                x = blk.bn(x)
            x = torch.relu(torch.max_pool2d(x, 2))
        x = torch.flatten(x, 1) if self.head == "flatten" else torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)
        return self.fc(x)


def load(path, device):
    z = zipfile.ZipFile(path)
    card = json.loads(z.read("model.json"))
    spec = card["architecture"]
    assert spec["family"] == "cnn", "the reference rebuilds tanren's CNN family only"
    model = Cnn(spec)
    model.load_state_dict(load_safetensors(z.read("model.safetensors")))
    return model.eval().to(device), card


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--port", type=int, default=8600)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0)
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    model, card = load(a.model, device)
    size, channels = card["input"]["size"][0], card["input"]["channels"]
    mean, std = card["input"]["normalize"]["mean"], card["input"]["normalize"]["std"]
    classes = card["classes"]
    app = FastAPI()

    @app.post("/v1/models/{name}/classify")
    async def classify(name: str, image: list[UploadFile] = File(...)):
        start = time.perf_counter()
        preds = []
        for f in image:
            try:
                img = Image.open(io.BytesIO(await f.read()))
                img = img.convert("RGB" if channels == 3 else "L").resize((size, size), Image.BILINEAR)
            except Exception as e:  # noqa: BLE001 - the reference answers 400 like tanren-serve
                raise HTTPException(400, str(e))
            x = torch.frombuffer(bytearray(img.tobytes()), dtype=torch.uint8).view(size, size, channels)
            x = (x.permute(2, 0, 1).float().div(255) - mean) / std
            with torch.inference_mode():
                p = torch.softmax(model(x.unsqueeze(0).to(device)), -1)[0].cpu()
            top = torch.topk(p, min(5, len(classes)))
            preds.append({"class": classes[top.indices[0]], "probability": float(top.values[0]),
                          "top": [{"class": classes[i], "probability": float(v)} for v, i in zip(top.values, top.indices)]})
        return {"predictions": preds, "server_ms": (time.perf_counter() - start) * 1000}

    uvicorn.run(app, host="127.0.0.1", port=a.port, log_level="warning")


if __name__ == "__main__":
    main()

"""The seed's PyTorch pipeline, reproduced for the benchmark (bench/train/run.sh).

torchvision ImageFolder -> Resize((N, N)) -> ToTensor -> Normalize(0.5, 0.5), a DataLoader with
shuffle (num_workers 0, as the seed), the seed's SimpleCNN (conv 3->16 3x3 pad 1, ReLU, 2x2 max-pool,
one linear layer) or the same plain CNN with more blocks, Adam, cross-entropy. Every epoch re-decodes
and resizes every image through PIL: that is the point of comparison.

Prints one JSON object with per-epoch seconds and test accuracy.
"""

import argparse
import json
import time

import torch
import torch.nn as nn
from torch.utils.data import DataLoader
from torchvision import datasets, transforms


class PlainCNN(nn.Module):
    """conv(k3, pad 1) + ReLU + maxpool(2) per block, then flatten + linear: blocks=[16] is SimpleCNN."""

    def __init__(self, blocks, num_classes, size):
        super().__init__()
        layers, cin, side = [], 3, size
        for cout in blocks:
            layers += [nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
            cin, side = cout, side // 2
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(cin * side * side, num_classes)

    def forward(self, x):
        return self.fc(torch.flatten(self.features(x), 1))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True, help="folder with train/<class>/ and test/<class>/")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--batch", type=int, default=10)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--blocks", default="16", help="channels per conv block, comma separated")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu", help="cpu or cuda (bench/gpu/run.sh)")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    tf = transforms.Compose(
        [
            transforms.Resize((args.size, args.size)),
            transforms.ToTensor(),
            transforms.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
        ]
    )
    train = datasets.ImageFolder(f"{args.data}/train", transform=tf)
    test = datasets.ImageFolder(f"{args.data}/test", transform=tf)
    train_loader = DataLoader(train, batch_size=args.batch, shuffle=True)
    test_loader = DataLoader(test, batch_size=args.batch, shuffle=False)

    blocks = [int(c) for c in args.blocks.split(",")]
    dev = torch.device(args.device)
    model = PlainCNN(blocks, len(train.classes), args.size).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    loss_fn = nn.CrossEntropyLoss()

    epoch_seconds = []
    for _ in range(args.epochs):
        start = time.perf_counter()
        model.train()
        for x, y in train_loader:
            x, y = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
            opt.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            opt.step()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        epoch_seconds.append(time.perf_counter() - start)

    start = time.perf_counter()
    model.eval()
    correct = 0
    with torch.no_grad():
        for x, y in test_loader:
            x, y = x.to(dev), y.to(dev)
            correct += (model(x).argmax(1) == y).sum().item()
    test_seconds = time.perf_counter() - start
    print(
        json.dumps(
            {
                "impl": "reference",
                "images": len(train),
                "epoch_seconds": epoch_seconds,
                "decode_seconds": 0.0,
                "test_seconds": test_seconds,
                "test_accuracy": correct / len(test),
                "threads": torch.get_num_threads(),
                "torch": torch.__version__,
                "device": args.device,
                "peak_memory_bytes": torch.cuda.max_memory_allocated() if dev.type == "cuda" else None,
            }
        )
    )


if __name__ == "__main__":
    main()

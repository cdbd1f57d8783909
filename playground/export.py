"""Export a run: ONNX, TorchScript, or a standalone training script that
reproduces it with plain PyTorch + Albumentations (no playground import)."""
from __future__ import annotations

import pprint
import warnings
from pathlib import Path

import torch

from .augment import to_python
from .config import TrainSpec
from .evaluate import LoadedRun

FORMATS = ("onnx", "torchscript", "script")


def export_onnx(loaded: LoadedRun, path: Path) -> Path:
    x = torch.zeros(1, loaded.run.net.in_channels, loaded.run.net.input_size, loaded.run.net.input_size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(loaded.model.float().eval(), (x,), str(path), input_names=["image"],
                          output_names=["logits"], dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}},
                          dynamo=False)
    return path


def export_torchscript(loaded: LoadedRun, path: Path) -> Path:
    x = torch.zeros(1, loaded.run.net.in_channels, loaded.run.net.input_size, loaded.run.net.input_size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(loaded.model.float().eval(), x)
    traced.save(str(path))
    return path


SCRIPT_TEMPLATE = '''"""Standalone training script exported by CIFAR-10 CNN Playground (run {run_id}).

    python {filename} --data PATH_TO_IMAGEFOLDER_WITH_train_AND_test [--epochs N]

PATH may also be "cifar10" to download CIFAR-10 with torchvision.
{left_out}"""
import argparse
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

{aug_code}
ARCH = {arch}
TRAIN = {train}
MEAN = {mean}
STD = {std}


def post(order, c):
    mods = []
    for part in order.split("-"):
        if part == "bn":
            mods.append(nn.BatchNorm2d(c))
        elif part == "relu":
            mods.append(nn.ReLU(inplace=True))
    return mods


def unit(layer, c_in):
    k = dict(stride=layer["stride"], padding=layer["padding"], dilation=layer["dilation"],
             bias=layer["bias"], padding_mode=layer["padding_mode"])
    if layer["kind"] == "maxpool":
        mods = [nn.MaxPool2d(layer["kernel"], layer["stride"], layer["padding"])]
    elif layer["kind"] == "avgpool":
        mods = [nn.AvgPool2d(layer["kernel"], layer["stride"], layer["padding"])]
    elif layer["kind"] == "sep":  # depthwise k x k, then pointwise 1 x 1
        mods = [nn.Conv2d(c_in, c_in, layer["kernel"], groups=c_in, **k)]
        mods += post(layer["order"], c_in) if layer["mid"] else []
        mods += [nn.Conv2d(c_in, layer["out"], 1, bias=layer["bias"])] + post(layer["order"], layer["out"])
    else:
        mods = [nn.Conv2d(c_in, layer["out"], layer["kernel"], groups=layer["groups"], **k)]
        mods += post(layer["order"], layer["out"])
    if layer["dropout"] > 0:
        mods.append((nn.Dropout2d if layer["dropout2d"] else nn.Dropout)(layer["dropout"]))
    return nn.Sequential(*mods)


def residual_spans(spec):
    """(first, end) layer ranges with a residual around each: one from skip_from, or one per skip_every layers."""
    n, first = len(spec["layers"]), spec["skip_from"]
    step = spec["skip_every"] if spec["skip_every"] > 0 else n
    return [(i, min(i + step, n)) for i in range(first, n, step)] if spec["skip"] else []


class Block(nn.Module):
    def __init__(self, spec, c_in):
        super().__init__()
        self.layers, chans = nn.ModuleList(), [c_in]
        for layer in spec["layers"]:
            self.layers.append(unit(layer, chans[-1]))
            chans.append(chans[-1] if layer["kind"].endswith("pool") else layer["out"])
        self.out_channels = chans[-1]
        self.spans, self.proj = {{}}, nn.ModuleDict()
        for first, end in residual_spans(spec):
            stride = math.prod(layer["stride"] for layer in spec["layers"][first:end])
            if chans[first] != chans[end] or stride != 1:
                self.proj[str(first)] = nn.Conv2d(chans[first], chans[end], 1, stride=stride, bias=False)
            self.spans[first] = end

    def forward(self, x):
        shortcut, first, end = None, -1, -1
        for i, layer in enumerate(self.layers):
            if i in self.spans:
                shortcut, first, end = x, i, self.spans[i]
            x = layer(x)
            if i + 1 == end:
                x = x + (self.proj[str(first)](shortcut) if str(first) in self.proj else shortcut)
        return x


class Net(nn.Module):
    def __init__(self, spec):
        super().__init__()
        blocks, c = [], spec["in_channels"]
        for b in spec["blocks"]:
            blocks.append(Block(b, c))
            c = blocks[-1].out_channels
        self.blocks = nn.Sequential(*blocks)
        h = spec["head"]
        self.gap = h["gap"]
        with torch.no_grad():
            n = self.blocks(torch.zeros(1, spec["in_channels"], spec["input_size"], spec["input_size"])).shape[-1]
        features = c if h["gap"] else c * n * n
        self.fc = (nn.Conv2d(c, spec["num_classes"], 1, bias=h["bias"]) if h["kind"] == "conv1x1"
                   else nn.Linear(features, spec["num_classes"], bias=h["bias"]))
        self.log_softmax = h["log_softmax"]

    def forward(self, x):
        x = self.blocks(x)
        if self.gap:
            x = F.adaptive_avg_pool2d(x, 1)
        x = torch.flatten(self.fc(x) if isinstance(self.fc, nn.Conv2d) else self.fc(torch.flatten(x, 1)), 1)
        return F.log_softmax(x, 1) if self.log_softmax else x


def load_split(root, split):
    from torchvision import datasets
    if root in ("cifar10", "cifar100"):
        cls = datasets.CIFAR10 if root == "cifar10" else datasets.CIFAR100
        ds = cls("data", train=split == "train", download=True)
        return np.asarray(ds.data, np.uint8), np.asarray(ds.targets)
    ds = datasets.ImageFolder(f"{{root}}/{{split}}")
    x = np.stack([np.asarray(ds.loader(p).convert("RGB").resize((32, 32))) for p, _ in ds.samples])
    return x.astype(np.uint8), np.asarray(ds.targets)


def lr_factor(step, total):
    """The run's schedule: linear warmup, then decay (same as the playground's trainer)."""
    schedule, warm = TRAIN["schedule"], int(TRAIN["warmup"] * total)
    if schedule == "constant":
        return 1.0
    if step < warm:
        return 0.1 + 0.9 * step / warm if schedule == "onecycle" else (step + 1) / warm
    frac = min(1.0, (step - warm) / max(1, total - warm))
    return 1.0 - frac * 0.999 if schedule == "onecycle" else 0.5 * (1 + math.cos(math.pi * frac))


def to_input(batch_uint8):
    x = torch.from_numpy(batch_uint8).permute(0, 3, 1, 2).float()
    return (x - torch.tensor(MEAN).view(1, 3, 1, 1) * 255) / (torch.tensor(STD).view(1, 3, 1, 1) * 255)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--epochs", type=int, default=TRAIN["epochs"])
    ap.add_argument("--limit", type=int, default=0, help="use only this many training images (quick check)")
    args = ap.parse_args()
    torch.manual_seed(TRAIN["seed"])
    rng = np.random.default_rng(TRAIN["seed"])
    x_train, y_train = load_split(args.data, "train")
    x_test, y_test = load_split(args.data, "test")
    if args.limit:
        x_train, y_train = x_train[:args.limit], y_train[:args.limit]
    model = Net(ARCH).to(memory_format=torch.channels_last)
    bs = TRAIN["batch_size"]
    steps = math.ceil(len(y_train) / bs) * args.epochs
    groups = [dict(params=[p for p in model.parameters() if p.ndim > 1], weight_decay=TRAIN["weight_decay"]),
              dict(params=[p for p in model.parameters() if p.ndim <= 1], weight_decay=0.0)]
    if TRAIN["optimizer"] == "sgd":
        opt = torch.optim.SGD(groups, lr=TRAIN["max_lr"], momentum=TRAIN["momentum"], nesterov=True)
    else:
        opt = (torch.optim.Adam if TRAIN["optimizer"] == "adam" else torch.optim.AdamW)(groups, lr=TRAIN["max_lr"])
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: lr_factor(step, steps))
    for epoch in range(1, args.epochs + 1):
        model.train()
        order = rng.permutation(len(y_train))
        for i in range(0, len(order), bs):
            idx = order[i:i + bs]
            xb = to_input(np.stack([train_transform(image=x_train[j])["image"] for j in idx]))
            out = model(xb.contiguous(memory_format=torch.channels_last))
            loss = F.cross_entropy(out, torch.from_numpy(y_train[idx]).long(),
                                   label_smoothing=TRAIN["label_smoothing"])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        model.eval()
        with torch.no_grad():
            preds = torch.cat([model(to_input(x_test[i:i + 1000])).argmax(1) for i in range(0, len(y_test), 1000)])
        print(f"epoch {{epoch}}: loss {{loss.item():.4f}}, test accuracy {{(preds.numpy() == y_test).mean():.4f}}")


if __name__ == "__main__":
    main()
'''


def _left_out(t: TrainSpec) -> str:
    """What the plain script does not do, so its accuracy is not mistaken for the run's."""
    parts = [f"the EMA of the weights (decay {t.ema})"] if t.ema else []
    parts += ["flip TTA at evaluation"] if t.tta else []
    parts += [f"shifted views ({t.tta_shift} px) at evaluation"] if t.tta_shift else []
    parts += [f"distillation from runs {', '.join(t.teachers)} (this script learns from the labels alone)"
              ] if t.teachers else []
    return f"\nNot reproduced here: {'; '.join(parts)}.\n" if parts else ""


def export_script(loaded: LoadedRun, path: Path, run_id: str = "") -> Path:
    run = loaded.run
    aug = to_python(run.aug, loaded.mean).replace("import albumentations as A\nimport cv2\n\n",
                                                  "import albumentations as A\nimport cv2\n")
    text = SCRIPT_TEMPLATE.format(run_id=run_id, filename=path.name, left_out=_left_out(run.train), aug_code=aug,
                                  arch=pprint.pformat(run.net.to_dict(), width=110, sort_dicts=False),
                                  train=pprint.pformat(run.to_dict()["train"], width=110, sort_dicts=False),
                                  mean=tuple(round(m, 6) for m in loaded.mean),
                                  std=tuple(round(s, 6) for s in loaded.std))
    path.write_text(text)
    return path


def export(loaded: LoadedRun, fmt: str, path: Path, run_id: str = "") -> Path:
    if fmt == "onnx":
        return export_onnx(loaded, path)
    if fmt == "torchscript":
        return export_torchscript(loaded, path)
    if fmt == "script":
        return export_script(loaded, path, run_id)
    raise ValueError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")


def default_filename(run_id: str, fmt: str) -> str:
    return {"onnx": f"{run_id}.onnx", "torchscript": f"{run_id}.ts.pt", "script": f"train_{run_id}.py"}[fmt]

"""Export a run: ONNX, TorchScript, or a standalone training script that
reproduces it with plain PyTorch + Albumentations (no playground import).

Every export is checked before anything is written (``check``: a format the run cannot
take is refused in one line, naming why), built from a plain-torch copy of the model (the
fast modules in fastops are exact but use autograd functions that tracing cannot record),
checked (the traced TorchScript computes what the model computes; the ONNX file passes the
onnx checker and, where onnxruntime is installed, computes the same too), and written
atomically: a temp file beside the target, then a rename. A failed export leaves no file,
not even an empty one, and an existing file of the same name is only replaced by a complete
export.
"""
from __future__ import annotations

import json
import pprint
import warnings
from pathlib import Path

import torch
from torch import nn

from ..errors import UserError
from .. import atomic
from ..specs.augment import to_python
from ..specs.config import TrainSpec
from ..training.builder import build_model
from ..training.checkpoint import LoadedRun

FORMATS = ("onnx", "torchscript", "script")
# The standalone script reads CIFAR or an ImageFolder as 32x32 RGB, normalised with three channel stats.
SCRIPT_INPUT = (3, 32)


class ExportError(UserError, RuntimeError):
    """The run cannot be exported in this format, or the export failed; nothing was written."""


def check(loaded: LoadedRun, fmt: str, path: Path | None = None, baked: bool = False) -> None:
    """Refuse, before any work, a format this run cannot be exported in or a path it cannot go to."""
    if fmt not in FORMATS:
        raise ExportError(f"unknown export format {str(fmt)[:40]!r}; choose one of {', '.join(FORMATS)}")
    if baked and fmt == "script":
        raise ExportError("normalisation is baked into onnx and torchscript exports only; the script "
                          "normalises as it trains")
    net = loaded.run.net
    if fmt == "script" and (net.in_channels, net.input_size) != SCRIPT_INPUT:
        raise ExportError(f"the standalone script reads {SCRIPT_INPUT[1]}x{SCRIPT_INPUT[1]} RGB images; "
                          f"this run's net takes {net.input_size}x{net.input_size} with {net.in_channels} "
                          f"channel(s): export it as onnx or torchscript")
    if path is not None:
        path = Path(path)
        if path.is_dir():
            raise ExportError(f"cannot write the export to {path}: it is a folder")
        if path.exists() and not path.is_file():
            raise ExportError(f"cannot write the export to {path}: it is a device, fifo or socket, not a file")
        if not path.parent.is_dir():
            raise ExportError(f"cannot write the export to {path}: the folder {path.parent} does not exist")


def _plain_model(loaded: LoadedRun, baked: bool = False) -> nn.Module:
    """The run's function with plain torch modules (same state dict keys), float32, eval, on the CPU;
    ``baked``: behind its normalisation (see ``Normalized``).

    The loaded model is left as it is: the app's sessions share it."""
    model = build_model(loaded.run.net, fast=False)
    model.load_state_dict({k: v.detach().float().cpu() if v.is_floating_point() else v.detach().cpu()
                           for k, v in loaded.model.state_dict().items()})
    model = model.float().eval()
    return Normalized(model, loaded.mean, loaded.std).eval() if baked else model


class Normalized(nn.Module):
    """The model behind its input normalisation: it takes RGB in [0, 1] (pixels / 255), NCHW."""

    def __init__(self, model: nn.Module, mean: tuple[float, ...], std: tuple[float, ...]):
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model((x - self.mean) / self.std)


def metadata(loaded: LoadedRun, baked: bool, run_id: str = "") -> dict[str, str]:
    """What a program needs to use the exported model without the playground: the input it takes,
    the normalisation, the class names (in output order) and where it came from."""
    net = loaded.run.net
    shape = f"float32 [batch, {net.in_channels}, {net.input_size}, {net.input_size}] RGB"
    return {
        "input": (f"{shape} in [0, 1] (pixels / 255); normalisation is inside the graph" if baked else
                  f"{shape}, normalised: (pixels / 255 - mean) / std per channel"),
        "output": "logits [batch, classes] (log-probabilities if the head ends in log_softmax)",
        "mean": json.dumps([round(m, 6) for m in loaded.mean]),
        "std": json.dumps([round(v, 6) for v in loaded.std]),
        "normalization_baked_in": json.dumps(baked),
        "classes": json.dumps(loaded.classes),
        "run_id": run_id,
        "spec": loaded.run.to_json(None),
        "producer": "cifar-playground",
    }


def _example(loaded: LoadedRun, batch: int = 1) -> torch.Tensor:
    net = loaded.run.net
    return torch.zeros(batch, net.in_channels, net.input_size, net.input_size)


def _probe(loaded: LoadedRun) -> torch.Tensor:
    """Two random images: the check of an export sees a batch size other than the traced one."""
    net = loaded.run.net
    return torch.randn(2, net.in_channels, net.input_size, net.input_size, generator=torch.Generator().manual_seed(0))


def _same(got, expected: torch.Tensor, what: str) -> None:
    got = torch.as_tensor(got).float()
    if got.shape != expected.shape or not torch.allclose(got, expected, rtol=1e-3, atol=1e-4):
        worst = (got - expected).abs().max().item() if got.shape == expected.shape else f"shape {tuple(got.shape)}"
        raise ExportError(f"the {what} export does not compute what the run's model computes "
                          f"(largest difference {worst}); nothing was written")


def export_onnx(loaded: LoadedRun, path: Path, run_id: str = "", baked: bool = False) -> Path:
    model = _plain_model(loaded, baked)

    def write(tmp: Path) -> None:
        import onnx

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, (_example(loaded),), str(tmp), input_names=["image"],
                              output_names=["logits"], dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}},
                              dynamo=False)
        graph = onnx.load(str(tmp))
        onnx.helper.set_model_props(graph, metadata(loaded, baked, run_id))
        onnx.save(graph, str(tmp))
        _check_onnx(tmp, model, loaded)

    return atomic.write_atomic(path, write)


def _check_onnx(path: Path, model: nn.Module, loaded: LoadedRun) -> None:
    """The ONNX checker, then onnxruntime's outputs against the model's: a file is written only once
    it is known to compute what the run's model does (both are requirements)."""
    import onnx
    import onnxruntime

    try:
        onnx.checker.check_model(str(path))
    except onnx.checker.ValidationError as e:
        raise ExportError(f"the ONNX export is not a valid model ({str(e).splitlines()[0][:200]}); "
                          f"nothing was written") from None
    x = _probe(loaded)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        _same(session.run(None, {"image": x.numpy()})[0], model(x), "ONNX")


def export_torchscript(loaded: LoadedRun, path: Path, run_id: str = "", baked: bool = False) -> Path:
    model = _plain_model(loaded, baked)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(model, _example(loaded), check_trace=False)
    x = _probe(loaded)
    with torch.no_grad():
        _same(traced(x), model(x), "TorchScript")
    extra = {"playground.json": json.dumps(metadata(loaded, baked, run_id))}  # read with _extra_files=
    return atomic.write_atomic(path, lambda tmp: traced.save(str(tmp), _extra_files=extra))


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
        if part == "pool":  # "pool-bn-relu": the conv's own 2x2 max-pool before its norm
            mods.append(nn.MaxPool2d(2, 2))
        elif part == "bn":
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
        mods += post(layer["order"].removeprefix("pool-"), c_in) if layer["mid"] else []
        mods += [nn.Conv2d(c_in, layer["out"], 1, bias=layer["bias"])] + post(layer["order"], layer["out"])
    else:
        mods = [nn.Conv2d(c_in, layer["out"], layer["kernel"], groups=layer["groups"], **k)]
        mods += post(layer["order"], layer["out"])
    if layer["dropout"] > 0:
        mods.append((nn.Dropout2d if layer["dropout2d"] else nn.Dropout)(layer["dropout"]))
    return nn.Sequential(*mods)


def downscale(layer):
    """The stride, doubled where the conv ends in its own pool ("pool-bn-relu")."""
    pools = layer["order"].startswith("pool-") and not layer["kind"].endswith("pool")
    return layer["stride"] * (2 if pools else 1)


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
            stride = math.prod(downscale(layer) for layer in spec["layers"][first:end])
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


def stratified(y, n, rng):
    """n random indices with every class in its share (the first n images may all be one class)."""
    classes, counts = np.unique(y, return_counts=True)
    want = counts / len(y) * n
    take = np.floor(want).astype(int)
    take[np.argsort(take - want)[:n - take.sum()]] += 1  # the largest remainders get one more
    return np.sort(np.concatenate([rng.choice(np.flatnonzero(y == c), k, replace=False)
                                   for c, k in zip(classes, take)]))


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
    ap.add_argument("--limit", type=int, default=0,
                    help="train on this many random training images, every class in its share (a quick check)")
    args = ap.parse_args()
    torch.manual_seed(TRAIN["seed"])
    rng = np.random.default_rng(TRAIN["seed"])
    x_train, y_train = load_split(args.data, "train")
    x_test, y_test = load_split(args.data, "test")
    if 0 < args.limit < len(y_train):
        keep = stratified(y_train, args.limit, rng)
        x_train, y_train = x_train[keep], y_train[keep]
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
    parts += ["bf16 autocast (this script trains in fp32)"] if t.bf16 else []
    parts += ["the alternating flip (this script draws a fresh flip each epoch)"] if t.alternate_flip else []
    parts += ["the frozen whitening of the first conv (this script trains it from a random start)"] if t.whiten else []
    parts += ["the BatchNorm scales fixed at 1 (this script learns them)"] if t.fixed_bn_scale else []
    parts += [f"shifted views ({t.tta_shift} px) at evaluation"] if t.tta_shift else []
    parts += [f"the first {t.low_res_epochs} epochs at {t.low_res} px (this script trains every epoch at full size)"
              ] if t.low_res_epochs else []
    parts += [f"distillation from runs {', '.join(t.teachers)} (this script learns from the labels alone)"
              ] if t.teachers else []
    return f"\nNot reproduced here: {'; '.join(parts)}.\n" if parts else ""


def export_script(loaded: LoadedRun, path: Path, run_id: str = "") -> Path:
    check(loaded, "script")
    run = loaded.run
    aug = to_python(run.aug, loaded.mean).replace("import albumentations as A\nimport cv2\n\n",
                                                  "import albumentations as A\nimport cv2\n")
    filename = Path(path).name.replace("\\", "\\\\").replace('"', '\\"')  # it goes into the docstring
    text = SCRIPT_TEMPLATE.format(run_id=run_id, filename=filename, left_out=_left_out(run.train),
                                  aug_code=aug,
                                  arch=pprint.pformat(run.net.to_dict(), width=110, sort_dicts=False),
                                  train=pprint.pformat(run.to_dict()["train"], width=110, sort_dicts=False),
                                  mean=tuple(round(m, 6) for m in loaded.mean),
                                  std=tuple(round(s, 6) for s in loaded.std))
    compile(text, Path(path).name, "exec")  # a template that no longer formats to Python fails here, not later
    return atomic.write_atomic(path, lambda tmp: tmp.write_text(text))


EXPORTERS = {"onnx": export_onnx, "torchscript": export_torchscript,
             "script": lambda loaded, path, run_id, baked: export_script(loaded, path, run_id)}


def export(loaded: LoadedRun, fmt: str, path: Path, run_id: str = "", baked: bool = False) -> Path:
    """Write ``loaded`` as ``fmt`` to ``path``, all or nothing. ``baked``: an ONNX or TorchScript
    model takes RGB in [0, 1] and normalises inside; without it the caller normalises with the
    mean and std in its metadata. Both carry the class names.

    ExportError (one line) for a format the run cannot take, a path it cannot go to, or an
    export that fails or computes something else; OSError if the disk refuses the write.
    Either way no file is left at ``path`` (a file that was there before stays as it was)."""
    path = Path(path)
    check(loaded, fmt, path, baked)
    try:
        return EXPORTERS[fmt](loaded, path, run_id, baked)
    except (ExportError, OSError):
        raise
    except Exception as e:  # noqa: BLE001 - tracing and the exporters raise many types; the user gets one line
        first = (str(e).strip().splitlines() or [""])[0][:200]
        raise ExportError(f"{fmt} export of run {run_id or loaded.run.net.name} failed "
                          f"({type(e).__name__}: {first}); nothing was written") from e


def default_filename(run_id: str, fmt: str) -> str:
    return {"onnx": f"{run_id}.onnx", "torchscript": f"{run_id}.ts.pt", "script": f"train_{run_id}.py"}[fmt]

"""The training loop the app, the CLI and the benchmarks share.

It reads uint8 batches from memory, augments them with the spec the Augment
page previews (batched, drawing what Albumentations draws: batch_augment.py), normalises with the
dataset statistics, and reports progress as events to callbacks. A stop
request takes effect within one batch; running out of memory ends the run
"failed", and a diverging one ends it "diverged" (see DivergenceWatch), each
with a message that says what to change.
"""
from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from ..faults import StoreError
from ..specs import limits as limits_
from ..specs.arch import Net
from ..specs.config import RunSpec, TrainSpec, checked, data_problems
from ..specs.geometry import trace
from ..specs.serde import SpecError
from .batch_augment import BatchAugment
from .batches import BatchSource, TrainingError, batch_source, spans
from .builder import build_model
from .data import Dataset
from .device import configure_threads, pick_device, precision_name, speed_settings
from .divergence import Diverged, DivergenceWatch
from .whitening import whiten_first_conv


@dataclass
class Event:
    kind: str  # "start", "batch", "epoch", "end"
    data: dict = field(default_factory=dict)


Callback = Callable[[Event], None]
BN_RECALIBRATE_BELOW = 300  # optimizer steps; longer runs have settled running stats
RESUME_FORMAT = 1
EPOCH_OBJECTS = ("model", "state")  # in an "epoch" event's data beside the metrics


def metrics_of(event: Event) -> dict:
    """An epoch event's metrics, without the model and training state it carries."""
    return {k: v for k, v in event.data.items() if k not in EPOCH_OBJECTS}


@dataclass
class TrainResult:
    status: str  # "finished", "stopped", "failed", "diverged"
    model: nn.Module
    epochs: list[dict]
    message: str = ""
    elapsed: float = 0.0


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)


def normalize(x_uint8_nhwc: torch.Tensor, mean: torch.Tensor, std: torch.Tensor,
              dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """uint8 NHWC -> float NCHW in channels_last memory (a permute, no copy of layout)."""
    x = x_uint8_nhwc.permute(0, 3, 1, 2).to(dtype)
    return x.sub_(mean).div_(std)


def downscale(x: torch.Tensor, size: int, channels_last: bool) -> torch.Tensor:
    """A normalised batch scaled to ``size`` px (progressive resizing's early epochs): bilinear with
    antialiasing, so the small images are what a camera at that resolution would see, not aliased."""
    x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def fix_bn_scales(model: nn.Module) -> None:
    """Every BatchNorm's scale at 1 and frozen, so only its shift learns (airbench's BatchNorm): the
    ReLU and the next conv absorb a per-channel scale, so the learned one mostly adds noise to the
    steps of a short schedule."""
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.weight is not None:
            with torch.no_grad():
                m.weight.fill_(1.0)
            m.weight.requires_grad_(False)


def make_optimizer(model: nn.Module, t: TrainSpec) -> torch.optim.Optimizer:
    """SGD (nesterov), Adam or AdamW; no weight decay on biases and norm parameters. Frozen parameters
    (whitening, fixed BN scales) stay in the groups: they get no gradient, so no step, and the groups
    keep the shape that stored optimizer states (resume) were saved with."""
    decay, no_decay = [], []
    for p in model.parameters():
        (no_decay if p.ndim <= 1 else decay).append(p)
    groups = [{"params": decay, "weight_decay": t.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if t.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=t.max_lr, momentum=t.momentum, nesterov=t.momentum > 0)
    if t.optimizer == "adam":
        return torch.optim.Adam(groups, lr=t.max_lr)
    return torch.optim.AdamW(groups, lr=t.max_lr)


def lr_factor(schedule: str, step: int, total: int, warmup: float) -> float:
    """LR multiplier at ``step``: onecycle = linear warmup from 0.1x then linear decay to
    0.001x, cosine = linear warmup then cosine decay, constant = 1. Safe for tiny runs."""
    if schedule == "constant":
        return 1.0
    warm = int(warmup * total)
    if step < warm:
        return 0.1 + 0.9 * step / warm if schedule == "onecycle" else (step + 1) / warm
    frac = min(1.0, (step - warm) / max(1, total - warm))
    if schedule == "onecycle":
        return 1.0 - frac * (1.0 - 1e-3)
    return 0.5 * (1 + math.cos(math.pi * frac))


def make_schedule(opt: torch.optim.Optimizer, t: TrainSpec, total_steps: int):
    return torch.optim.lr_scheduler.LambdaLR(
        opt, lambda step: lr_factor(t.schedule, step, total_steps, t.warmup))


def tta_view_count(flip: bool, shift: int = 0) -> int:
    """How many views ``tta_views`` yields per image: the evaluation's cost as a multiple of one pass."""
    return (2 if flip else 1) * (9 if shift else 1)


def tta_views(x: torch.Tensor, flip: bool, shift: int = 0) -> Iterator[torch.Tensor]:
    """The batch, its mirror image (``flip``) and, with ``shift``, each of those moved to the
    3x3 grid of offsets in {-shift, 0, shift}^2 px (reflect padding, as the training crops use)."""
    for view in ([x, torch.flip(x, dims=[3])] if flip else [x]):
        if not shift:
            yield view
            continue
        padded = F.pad(view, (shift,) * 4, mode="reflect")
        h, w = view.shape[-2:]
        for dy in (0, shift, 2 * shift):
            for dx in (0, shift, 2 * shift):
                yield padded[..., dy:dy + h, dx:dx + w]


def eval_batch_size(net: Net, device: torch.device) -> int:
    """The test pass's batch: the device's, but never more than the tier allows a training batch of
    ``net`` (its activation memory, estimated): at the CPU's 256 a wide net that hosted mode trains in
    batches of 13 grew the web server's memory by 1.5 GiB in one Results evaluation, past the demo's 1 GB."""
    lim = limits_.current()
    return min(speed_settings(device).eval_batch, trace(net, lim).batch_that_fits(lim))


@torch.inference_mode()
def predict(model: nn.Module, x: np.ndarray, mean: torch.Tensor, std: torch.Tensor, device: torch.device,
            batch: int = 1000, tta: bool = False, shift: int = 0, bf16: bool = False) -> torch.Tensor:
    """Class probabilities (N, classes) for uint8 NHWC images, averaged over the TTA views.

    ``bf16``: under bf16 autocast where the CPU has bf16 units, as a run that trained so is tested
    (the trainer and the Results page pass the run's own setting, so both agree)."""
    settings = speed_settings(device, bf16)
    model.eval()
    probs = []
    for i in range(0, len(x), batch):
        xb = normalize(torch.from_numpy(x[i:i + batch]).to(device), mean, std)
        with torch.autocast(device.type, settings.amp_dtype, enabled=settings.amp_dtype is not None):
            views = [model(v).float().softmax(1) for v in tta_views(xb, tta, shift)]
        probs.append((sum(views) / len(views)).cpu())
    return torch.cat(probs) if probs else torch.empty(0)


def train_loss(out: torch.Tensor, labels: torch.Tensor, t: TrainSpec, log_probs: bool = False,
               teacher_probs: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-entropy with label smoothing, or with teacher targets the distillation loss
    (1 - w) * CE + w * T^2 * KL(teacher_T || student_T) of Hinton et al. 2015; the T^2 keeps
    the soft term's gradient scale independent of the temperature. ``log_probs`` models
    (the seeds end in log_softmax) are valid logits for both."""
    if teacher_probs is None and log_probs and not t.label_smoothing:
        return F.nll_loss(out, labels)
    out = out.float()
    hard = F.cross_entropy(out, labels, label_smoothing=t.label_smoothing)
    if teacher_probs is None:
        return hard
    temp = t.distill_temperature
    target = F.softmax(teacher_probs.clamp_min(1e-8).log() / temp, dim=1)
    soft = F.kl_div(F.log_softmax(out / temp, dim=1), target, reduction="batchmean")
    return (1 - t.distill_weight) * hard + t.distill_weight * temp ** 2 * soft


def _oom(e: BaseException) -> bool:
    return isinstance(e, torch.cuda.OutOfMemoryError) or (isinstance(e, RuntimeError) and not isinstance(
        e, (StoreError, TrainingError)) and "out of memory" in str(e).lower())


class Trainer:
    def __init__(self, data: Dataset, run: RunSpec, callbacks: list[Callback] | None = None,
                 stop: threading.Event | None = None,
                 teacher_targets: Callable[[np.ndarray, torch.device], np.ndarray] | None = None,
                 data_on_device: bool | None = None):
        """``teacher_targets(x_train, device)`` gives the teachers' probabilities when the spec
        names teachers (runner.execute loads them from the run store). ``data_on_device``: keep the
        training set on the device and augment there (default: the device's speed settings, a GPU
        yes; a test sets it to run that path on the CPU)."""
        self.run = checked(run)
        if problems := data_problems(run.net, data.classes, data.x_test.shape[1:]):
            raise SpecError(problems)  # a stored run whose data changed, a spec from a script
        if run.train.teachers and teacher_targets is None:
            raise ValueError("this run distils from teachers, which come from a run store: "
                             "start it with runner.execute")
        t = run.train
        self.data = data.subset(t.train_subset, t.test_subset, seed=t.seed) if (
            t.train_subset or t.test_subset) else data
        self.callbacks = callbacks or []
        self.stop = stop or threading.Event()
        self.device = pick_device(t.device)
        self.settings = speed_settings(self.device, t.bf16)
        self.model: nn.Module | None = None
        self.teacher_targets = teacher_targets
        self.data_on_device = data_on_device

    def emit(self, kind: str, **data) -> None:
        event = Event(kind, data)
        for cb in self.callbacks:
            cb(event)

    def _stats(self) -> tuple[torch.Tensor, torch.Tensor]:
        shape = (1, 3, 1, 1)
        mean = torch.tensor(self.data.mean, device=self.device).view(shape) * 255
        std = torch.tensor(self.data.std, device=self.device).view(shape) * 255
        return mean, std

    @torch.no_grad()
    def _recalibrate_bn(self, model: nn.Module, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Short runs leave BN running stats dominated by their initial values (mean 0, var 1),
        which makes eval-mode predictions collapse; re-estimate them from training images."""
        bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        if not bns:
            return
        saved = [(m.momentum, m.training) for m in bns]
        for m in bns:
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the calibration batches
        model.train()
        pick = np.random.default_rng(0).permutation(len(self.data.y_train))[:2048]
        x = self.data.x_train[np.sort(pick)]
        for s in spans(len(x), 256):
            model(normalize(torch.from_numpy(x[s]).to(self.device), mean, std))
        for m, (momentum, _) in zip(bns, saved):
            m.momentum = momentum
        model.eval()

    def _state(self, epoch: int, step: int, elapsed: float, epochs: list[dict], model: nn.Module, opt, sched,
               scaler, ema, source: BatchSource, augment: BatchAugment, watch: DivergenceWatch) -> dict:
        """Everything a resumed run needs to continue exactly as if it had never stopped."""
        return dict(format=RESUME_FORMAT, epoch=epoch, step=step, elapsed=elapsed, epochs=list(epochs),
                    loss_reference=watch.reference,
                    model=model.state_dict(), optimizer=opt.state_dict(), scheduler=sched.state_dict(),
                    scaler=scaler.state_dict(), ema=ema.state_dict() if ema is not None else None,
                    torch_rng=torch.get_rng_state(),
                    cuda_rng=torch.cuda.get_rng_state_all() if self.device.type == "cuda" else None,
                    source_rng=source.state(), augment=augment.state())

    def _chance_hint(self, last: dict) -> str:
        """A finished run that learned nothing (train and test accuracy at most 1.5x chance) says
        so, with the usual cause; DivergenceWatch catches the runs that collapse outright."""
        chance = 1 / max(1, len(self.data.classes))
        if last.get("test_acc") is None or last["test_acc"] > 1.5 * chance or last["train_acc"] > 1.5 * chance:
            return ""
        return (f"it learned nothing: test accuracy {last['test_acc']:.1%} is chance level for "
                f"{len(self.data.classes)} classes; if the loss curve jumps about, the learning rate is too high: "
                f"try a lower max LR than {self.run.train.max_lr:g}, e.g. {self.run.train.max_lr / 10:.3g}")

    def fit(self, resume: dict | None = None) -> TrainResult:
        """Train to the planned epochs; ``resume``: a state from an earlier epoch event of this run."""
        t, s, dev = self.run.train, self.settings, self.device
        if dev.type == "cpu":
            configure_threads()
        seed_everything(t.seed)
        model = build_model(self.run.net).to(dev)
        mean, std = self._stats()
        eval_batch = eval_batch_size(self.run.net, dev)
        if t.whiten:
            whiten_first_conv(model, self.data.x_train, mean, std, t.seed)
        if t.fixed_bn_scale:
            fix_bn_scales(model)
        if s.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = model
        ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(t.ema), use_buffers=True) if t.ema else None
        soft = None
        if t.teachers:
            self.emit("teachers", count=len(t.teachers), images=len(self.data.y_train))
            soft = torch.from_numpy(self.teacher_targets(self.data.x_train, dev))
        augment = BatchAugment(self.run.aug, self.data.mean, seed=t.seed,
                               alternate_flip=len(self.data.y_train) if t.alternate_flip else 0)
        on_device = s.data_on_device if self.data_on_device is None else self.data_on_device
        source = batch_source(self.data.x_train, self.data.y_train, augment, t.batch_size, t.seed, t.loader_threads,
                              dev, on_device)
        if soft is not None and source.on_device:
            soft = soft.to(dev)
        steps = len(source) * t.epochs
        opt = make_optimizer(model, t)
        sched = make_schedule(opt, t, steps)
        scaler = torch.amp.GradScaler(dev.type, enabled=s.grad_scaler)
        log_probs = getattr(model, "outputs_log_probs", False)
        epochs: list[dict] = []
        first, step, done_before = 1, 0, 0.0
        if resume is not None:
            model.load_state_dict(resume["model"])
            opt.load_state_dict(resume["optimizer"])
            sched.load_state_dict(resume["scheduler"])
            scaler.load_state_dict(resume["scaler"])
            if ema is not None:
                ema.load_state_dict(resume["ema"])
            torch.set_rng_state(resume["torch_rng"])
            if resume["cuda_rng"] is not None and dev.type == "cuda":
                torch.cuda.set_rng_state_all(resume["cuda_rng"])
            source.set_state(resume["source_rng"])
            augment.set_state(resume["augment"])
            epochs, step, done_before = list(resume["epochs"]), resume["step"], resume["elapsed"]
            first = resume["epoch"] + 1
        watch = DivergenceWatch(len(source), resume.get("loss_reference") if resume is not None else None)
        start = time.perf_counter() - done_before
        self.emit("start", steps=steps, epochs=t.epochs, batches=len(source), train_size=len(self.data.y_train),
                  test_size=len(self.data.y_test), device=str(dev), precision=precision_name(s),
                  params=sum(p.numel() for p in model.parameters()),
                  first_epoch=first, step=step)
        status, message = "finished", ""
        try:
            for epoch in range(first, t.epochs + 1):
                model.train()
                seen = correct = 0
                loss_sum = 0.0
                t_epoch = time.perf_counter()
                for b, (xb_u8, yb, idx) in enumerate(source.epoch(epoch)):  # numpy on the host, tensors on the device
                    if self.stop.is_set():
                        break
                    n = len(yb)
                    xb = normalize(torch.as_tensor(xb_u8).to(dev, non_blocking=True), mean, std)
                    if epoch <= t.low_res_epochs:
                        xb = downscale(xb, t.low_res, s.channels_last)
                    yb = torch.as_tensor(yb).to(dev, non_blocking=True)
                    teacher_b = soft[idx].to(dev, non_blocking=True) if soft is not None else None
                    with torch.autocast(dev.type, s.amp_dtype, enabled=s.amp_dtype is not None):
                        out = model(xb)
                        loss = train_loss(out, yb, t, log_probs, teacher_b)
                    o = out.detach().float()
                    loss_value, spread, scale = torch.stack(  # one device sync per batch, as loss.item() was
                        [loss.detach().float(), (o - o[:1]).abs().max(), o.abs().max()]).tolist()
                    if why := watch.check(loss_value, spread, scale, n):
                        raise Diverged(
                            f"{why} at epoch {epoch} step {step + 1} (batch {b + 1}, LR {sched.get_last_lr()[0]:.3g}); "
                            f"the learning rate is too high: try a lower max LR than {t.max_lr:g}, e.g. "
                            f"{t.max_lr / 10:.3g}")
                    opt.zero_grad(set_to_none=True)
                    scaler.scale(loss).backward()
                    scaler.step(opt)
                    scaler.update()
                    sched.step()
                    if ema is not None:
                        ema.update_parameters(model)
                    step += 1
                    seen += n
                    batch_correct = int((out.argmax(1) == yb).sum())
                    correct += batch_correct
                    loss_sum += loss_value * n
                    dt = time.perf_counter() - t_epoch
                    self.emit("batch", epoch=epoch, batch=b + 1, step=step, steps=steps, loss=loss_value,
                              acc=batch_correct / n, lr=sched.get_last_lr()[0], img_per_s=seen / max(dt, 1e-9),
                              elapsed=time.perf_counter() - start)
                if self.stop.is_set():
                    why = getattr(self.stop, "reason", "by request")  # the worker's Stop says why
                    status, message = "stopped", f"stopped {why} during epoch {epoch}"
                    break
                train_time = time.perf_counter() - t_epoch
                eval_model = ema.module if ema is not None else model
                if step < BN_RECALIBRATE_BELOW:
                    self._recalibrate_bn(eval_model, mean, std)
                test_loss = test_acc = None
                if epoch % t.eval_every == 0 or epoch == t.epochs:
                    shift = t.tta_shift if epoch == t.epochs else 0  # 9x the views: for the run's result only
                    self.emit("testing", epoch=epoch, images=len(self.data.y_test), views=tta_view_count(t.tta, shift))
                    probs = predict(eval_model, self.data.x_test, mean, std, dev, eval_batch, t.tta, shift, t.bf16)
                    y_test = torch.from_numpy(self.data.y_test)
                    test_loss = float(F.nll_loss(probs.clamp_min(1e-12).log(), y_test)) if len(probs) else None
                    test_acc = float((probs.argmax(1) == y_test).float().mean()) if len(probs) else None
                record = dict(epoch=epoch, train_loss=loss_sum / max(seen, 1), train_acc=correct / max(seen, 1),
                              test_loss=test_loss, test_acc=test_acc, lr=sched.get_last_lr()[0],
                              img_per_s=seen / max(train_time, 1e-9), epoch_time=time.perf_counter() - t_epoch,
                              elapsed=time.perf_counter() - start)
                epochs.append(record)
                self.emit("epoch", **record, model=eval_model, state=self._state(
                    epoch, step, record["elapsed"], epochs, model, opt, sched, scaler, ema, source, augment, watch))
        except Diverged as e:
            status, message = "diverged", str(e)
        except TrainingError as e:
            status, message = "failed", str(e)
        except RuntimeError as e:
            if not _oom(e):
                raise
            if dev.type == "cuda":
                torch.cuda.empty_cache()
            status, message = "failed", (f"ran out of memory on {dev} at batch size {t.batch_size}; "
                                         f"try a smaller batch size or a narrower network")
        if status == "finished" and epochs and (hint := self._chance_hint(epochs[-1])):
            message = hint
        final = ema.module if ema is not None else model
        elapsed = time.perf_counter() - start
        self.emit("end", status=status, message=message, elapsed=elapsed, model=final)
        return TrainResult(status, final, epochs, message, elapsed)

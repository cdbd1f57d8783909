"""The training loop the app, the CLI and the benchmarks share.

It reads uint8 batches from memory, augments them with the spec the Augment
page previews (batched, drawing what Albumentations draws: batch_augment.py), normalises with the
dataset statistics, and reports progress as events to callbacks. A stop
request takes effect within one batch; running out of memory ends the run
"failed", and a diverging one ends it "diverged" (see DivergenceWatch), each
with a message that says what to change.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from ..faults import StoreError
from ..specs.config import RunSpec, TrainSpec, checked, data_problems
from ..specs.serde import SpecError
from .batch_augment import BatchAugment
from .batches import BatchSource, TrainingError, batch_source, spans
from .builder import build_model
from .data import Dataset
from .device import configure_threads, pick_device, precision_name, speed_settings
from .divergence import Diverged, DivergenceWatch
from .optim import make_optimizer, make_schedule
from .predict import eval_batch_size, normalize, predict, tta_view_count
from .whitening import whiten_first_conv


START, TEACHERS, BATCH, TESTING, EPOCH, END = "start", "teachers", "batch", "testing", "epoch", "end"
EVENT_KINDS = (START, TEACHERS, BATCH, TESTING, EPOCH, END)  # in the order a run emits them
FINISHED, STOPPED = "finished", "stopped"


@dataclass
class Event:
    kind: str  # one of EVENT_KINDS
    data: dict = field(default_factory=dict)


class StopSignal(threading.Event):
    """A training's stop request, with why it was given: the run's message says "stopped <reason>"."""
    reason = "by request"


@dataclass
class Loop:
    """What one ``fit`` trains with, from ``prepare``; ``watch`` is set once the resume state is known."""
    model: nn.Module
    ema: AveragedModel | None
    soft: torch.Tensor | None
    augment: BatchAugment
    source: BatchSource
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    log_probs: bool
    mean: torch.Tensor
    std: torch.Tensor
    eval_batch: int
    steps: int
    watch: DivergenceWatch | None = None


Callback = Callable[[Event], None]
BN_RECALIBRATE_BELOW = 300  # optimizer steps; longer runs have settled running stats
BN_CALIBRATION_IMAGES = 2048  # training images whose batch statistics re-estimate BN's running stats
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
                 stop: StopSignal | None = None,
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
        self.stop = stop or StopSignal()
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
        pick = np.random.default_rng(0).permutation(len(self.data.y_train))[:BN_CALIBRATION_IMAGES]
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

    def prepare(self) -> Loop:
        """The model (whitened, BN scales fixed, channels_last as the spec and device say), its EMA, the
        teachers' targets, the batch source and the optimizer, schedule and scaler for the whole run."""
        t, s, dev = self.run.train, self.settings, self.device
        model = build_model(self.run.net).to(dev)
        mean, std = self._stats()
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
            self.emit(TEACHERS, count=len(t.teachers), images=len(self.data.y_train))
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
        return Loop(model, ema, soft, augment, source, opt, make_schedule(opt, t, steps),
                     torch.amp.GradScaler(dev.type, enabled=s.grad_scaler), getattr(model, "outputs_log_probs", False),
                     mean, std, eval_batch_size(self.run.net, dev), steps)

    def _restore(self, loop: Loop, resume: dict) -> tuple[list[dict], int, float, int]:
        """Every state a resumed run continues from; (epochs so far, step, elapsed seconds, next epoch)."""
        loop.model.load_state_dict(resume["model"])
        loop.opt.load_state_dict(resume["optimizer"])
        loop.sched.load_state_dict(resume["scheduler"])
        loop.scaler.load_state_dict(resume["scaler"])
        if loop.ema is not None:
            loop.ema.load_state_dict(resume["ema"])
        torch.set_rng_state(resume["torch_rng"])
        if resume["cuda_rng"] is not None and self.device.type == "cuda":
            torch.cuda.set_rng_state_all(resume["cuda_rng"])
        loop.source.set_state(resume["source_rng"])
        loop.augment.set_state(resume["augment"])
        return list(resume["epochs"]), resume["step"], resume["elapsed"], resume["epoch"] + 1

    def _train_epoch(self, loop: Loop, epoch: int, step: int, start: float) -> tuple[int, int, float, int]:
        """One epoch's batches, or those before a stop; (images seen, correct, loss sum, step after)."""
        t, s, dev = self.run.train, self.settings, self.device
        loop.model.train()
        seen = correct = 0
        loss_sum = 0.0
        t_epoch = time.perf_counter()
        for b, (xb_u8, yb, idx) in enumerate(loop.source.epoch(epoch)):  # numpy on the host, tensors on the device
            if self.stop.is_set():
                break
            n = len(yb)
            xb = normalize(torch.as_tensor(xb_u8).to(dev, non_blocking=True), loop.mean, loop.std)
            if epoch <= t.low_res_epochs:
                xb = downscale(xb, t.low_res, s.channels_last)
            yb = torch.as_tensor(yb).to(dev, non_blocking=True)
            teacher_b = loop.soft[idx].to(dev, non_blocking=True) if loop.soft is not None else None
            with torch.autocast(dev.type, s.amp_dtype, enabled=s.amp_dtype is not None):
                out = loop.model(xb)
                loss = train_loss(out, yb, t, loop.log_probs, teacher_b)
            o = out.detach().float()
            loss_value, spread, scale = torch.stack(  # one device sync per batch
                [loss.detach().float(), (o - o[:1]).abs().max(), o.abs().max()]).tolist()
            if why := loop.watch.check(loss_value, spread, scale, n):
                raise Diverged(
                    f"{why} at epoch {epoch} step {step + 1} (batch {b + 1}, LR {loop.sched.get_last_lr()[0]:.3g}); "
                    f"the learning rate is too high: try a lower max LR than {t.max_lr:g}, e.g. {t.max_lr / 10:.3g}")
            loop.opt.zero_grad(set_to_none=True)
            loop.scaler.scale(loss).backward()
            loop.scaler.step(loop.opt)
            loop.scaler.update()
            loop.sched.step()
            if loop.ema is not None:
                loop.ema.update_parameters(loop.model)
            step += 1
            seen += n
            batch_correct = int((out.argmax(1) == yb).sum())
            correct += batch_correct
            loss_sum += loss_value * n
            dt = time.perf_counter() - t_epoch
            self.emit(BATCH, epoch=epoch, batch=b + 1, step=step, steps=loop.steps, loss=loss_value,
                      acc=batch_correct / n, lr=loop.sched.get_last_lr()[0], img_per_s=seen / max(dt, 1e-9),
                      elapsed=time.perf_counter() - start)
        return seen, correct, loss_sum, step

    def _test(self, loop: Loop, model: nn.Module, epoch: int) -> tuple[float | None, float | None]:
        """(test loss, test accuracy) where this epoch is tested, else (None, None); the last epoch's
        test adds the shifted TTA views, for the run's result only (9x the views)."""
        t = self.run.train
        if epoch % t.eval_every and epoch != t.epochs:
            return None, None
        shift = t.tta_shift if epoch == t.epochs else 0
        self.emit(TESTING, epoch=epoch, images=len(self.data.y_test), views=tta_view_count(t.tta, shift))
        probs = predict(model, self.data.x_test, loop.mean, loop.std, self.device, loop.eval_batch, t.tta, shift,
                        t.bf16)
        if not len(probs):
            return None, None
        y_test = torch.from_numpy(self.data.y_test)
        return (float(F.nll_loss(probs.clamp_min(1e-12).log(), y_test)),
                float((probs.argmax(1) == y_test).float().mean()))

    def _epochs(self, loop: Loop, epochs: list[dict], first: int, step: int, start: float) -> tuple[str, str]:
        """Train and test from epoch ``first`` to the planned end, one EPOCH event each; (status, message)
        of a stop, else ("finished", "")."""
        for epoch in range(first, self.run.train.epochs + 1):
            t_epoch = time.perf_counter()
            seen, correct, loss_sum, step = self._train_epoch(loop, epoch, step, start)
            if self.stop.is_set():
                return STOPPED, f"stopped {self.stop.reason} during epoch {epoch}"
            train_time = time.perf_counter() - t_epoch
            eval_model = loop.ema.module if loop.ema is not None else loop.model
            if step < BN_RECALIBRATE_BELOW:
                self._recalibrate_bn(eval_model, loop.mean, loop.std)
            test_loss, test_acc = self._test(loop, eval_model, epoch)
            record = dict(epoch=epoch, train_loss=loss_sum / max(seen, 1), train_acc=correct / max(seen, 1),
                          test_loss=test_loss, test_acc=test_acc, lr=loop.sched.get_last_lr()[0],
                          img_per_s=seen / max(train_time, 1e-9), epoch_time=time.perf_counter() - t_epoch,
                          elapsed=time.perf_counter() - start)
            epochs.append(record)
            self.emit(EPOCH, **record, model=eval_model, state=self._state(
                epoch, step, record["elapsed"], epochs, loop.model, loop.opt, loop.sched, loop.scaler, loop.ema,
                loop.source, loop.augment, loop.watch))
        return FINISHED, ""

    def fit(self, resume: dict | None = None) -> TrainResult:
        """Train to the planned epochs; ``resume``: a state from an earlier epoch event of this run."""
        t, dev = self.run.train, self.device
        if dev.type == "cpu":
            configure_threads()
        seed_everything(t.seed)
        loop = self.prepare()
        epochs, step, done_before, first = self._restore(loop, resume) if resume is not None else ([], 0, 0.0, 1)
        loop.watch = DivergenceWatch(len(loop.source), resume.get("loss_reference") if resume is not None else None)
        start = time.perf_counter() - done_before
        self.emit(START, steps=loop.steps, epochs=t.epochs, batches=len(loop.source), train_size=len(self.data.y_train),
                  test_size=len(self.data.y_test), device=str(dev), precision=precision_name(self.settings),
                  params=sum(p.numel() for p in loop.model.parameters()), first_epoch=first, step=step)
        try:
            status, message = self._epochs(loop, epochs, first, step, start)
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
        if status == FINISHED and epochs and (hint := self._chance_hint(epochs[-1])):
            message = hint
        final = loop.ema.module if loop.ema is not None else loop.model
        elapsed = time.perf_counter() - start
        self.emit(END, status=status, message=message, elapsed=elapsed, model=final)
        return TrainResult(status, final, epochs, message, elapsed)

"""Models and checks shared by the export and evaluation tests: loaded runs with weights far
from their defaults (so a wrong export or evaluation computes visibly different numbers), a
tiny net, and the one-line check for refusals."""
from __future__ import annotations

import numpy as np
import torch

from playground.training.checkpoint import LoadedRun
from playground.runs.runner import checkpoint_state
from playground.runs.store import RunStore
from playground.specs.arch import Block, Net, conv, pool, sep
from playground.specs.augment import default_aug
from playground.specs.config import RunSpec, TrainSpec
from playground.training.builder import build_model
from playground.training.data import Dataset

from .conftest import CLASSES


def randomized(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Untrained, but with weights and BN statistics far from their defaults, so that a wrong
    export computes visibly different numbers."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if not t.is_floating_point():
                continue
            r = torch.randn(t.shape, generator=g)
            t.copy_(r.abs() * 0.5 + 0.5 if name.endswith("running_var") else r * 0.3)
    return model.eval()


def loaded_run(net: Net, seed: int = 0, classes: list[str] | None = None) -> LoadedRun:
    classes = classes or [f"class{i}" for i in range(net.num_classes)]
    return LoadedRun(RunSpec(net, default_aug(), TrainSpec(epochs=1)), randomized(build_model(net), seed),
                     classes, (0.49, 0.48, 0.45), (0.25, 0.24, 0.26), 1, "20261125-000000-abcdef")


def assert_one_line(err: BaseException) -> str:
    text = str(err)
    assert text and "\n" not in text and len(text) < 400, text
    return text


def tiny_net(**kw) -> Net:
    return Net(name="tiny", blocks=[Block([conv(8), pool()]), Block([sep(16, dilation=2)])], **kw)


def stored_run(store: RunStore, net: Net | None = None, classes: list[str] | None = None,
               state: dict | None = None) -> str:
    """A finished run with a checkpoint, without training (a randomised untrained model)."""
    net = net or tiny_net()
    run = RunSpec(net, default_aug(), TrainSpec(epochs=1, device="cpu"))
    run_id = store.create(net.name, run.to_dict(), params=1)
    if state is None:
        classes = classes or list(CLASSES)
        data = Dataset("d", np.zeros((1, 32, 32, 3), np.uint8), np.zeros(1, np.int64),
                       np.zeros((1, 32, 32, 3), np.uint8), np.zeros(1, np.int64), classes,
                       stats=((0.5, 0.5, 0.5), (0.25, 0.25, 0.25)))
        state = checkpoint_state(run, randomized(build_model(net)), data, 1)
    store.save_checkpoint(run_id, state)
    store.finish(run_id, "finished")
    return run_id

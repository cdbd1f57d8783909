"""The training logs the seed READMEs print, epoch by epoch: the curve a run of that seed's network is judged
against. Of the five seeds only seed-003 logs every epoch (shared/seeds/003, "Training log")."""
from __future__ import annotations

from dataclasses import dataclass

from .presets import preset_net


@dataclass(frozen=True)
class SeedLog:
    preset: str
    source: str  # where the figures come from, in a few words, for legends and captions
    train_acc: tuple[float, ...]  # fractions, epoch 1 first
    test_acc: tuple[float, ...]

    @property
    def epochs(self) -> list[int]:
        return list(range(1, len(self.test_acc) + 1))


def _percent(*values: float) -> tuple[float, ...]:
    return tuple(round(v / 100, 4) for v in values)


SEED_LOGS: dict[str, SeedLog] = {log.preset: log for log in [
    SeedLog("seed-003", "seed-003's README log (tested on the official 10,000 images)", _percent(
        35.72, 46.42, 52.20, 55.58, 57.99, 60.63, 62.47, 64.48, 65.65, 67.25, 68.06, 69.37, 70.09, 70.74, 71.67,
        72.29, 72.90, 73.82, 74.43, 75.14, 75.88, 76.44, 77.25, 77.85, 78.45, 79.50, 80.27, 80.64, 81.35, 81.40),
        _percent(
        45.37, 51.40, 48.17, 61.17, 64.68, 56.59, 67.90, 69.30, 60.94, 66.51, 73.85, 68.70, 73.25, 73.89, 75.73,
        77.83, 72.92, 79.30, 81.06, 81.34, 80.78, 81.28, 82.20, 84.43, 84.55, 85.45, 86.01, 86.50, 86.83, 87.04)),
]}


def _layers(net: dict) -> tuple:
    """What makes a network this network: its blocks, head and input, not its name."""
    return tuple(net.get(k) for k in ("blocks", "head", "in_channels", "input_size", "num_classes"))


_SEED_NETS = {name: _layers(preset_net(name).to_dict()) for name in SEED_LOGS}


def log_for(net: dict) -> SeedLog | None:
    """The logged curve of the seed whose network ``net`` (a stored run's spec) is, layer for layer; None for
    any other network, an edited seed included (its curve would not be the log's to compare with)."""
    layers = _layers(net) if isinstance(net, dict) else None
    return next((SEED_LOGS[name] for name, seed in _SEED_NETS.items() if seed == layers), None)

"""Export at the trust boundary (issue 16): every preset exports in every format or is
refused up front in one line; a failed export leaves no file and keeps the old one; the
exported files compute what the run computes."""
from __future__ import annotations

import re
import runpy
from pathlib import Path

import numpy as np
import pytest
import torch

import playground.atomic as atomic_mod
from playground.results import export as export_mod
from playground.results.export import FORMATS, ExportError, default_filename, export
from playground.runs.store import RunStore
from playground.specs.arch import Block, Net, conv, pool, sep
from playground.specs.presets import PRESETS, preset_net

from .models import assert_one_line, loaded_run, stored_run, tiny_net


# -- export ------------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("preset", list(PRESETS))
def test_every_preset_exports_in_every_format(preset, fmt, tmp_path):
    loaded = loaded_run(preset_net(preset))
    out = export(loaded, fmt, tmp_path / default_filename("x", fmt), "x")
    assert sorted(p.name for p in tmp_path.iterdir()) == [out.name]  # no temp file left beside it
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = loaded.model(x)
    if fmt == "torchscript":
        with torch.no_grad():
            got = torch.jit.load(str(out))(x)
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
    elif fmt == "onnx":
        import onnx
        import onnxruntime
        onnx.checker.check_model(str(out))
        got = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(
            None, {"image": x.numpy()})[0]
        np.testing.assert_allclose(got, expected.numpy(), rtol=1e-3, atol=1e-4)
    else:  # the standalone script builds the same network (parameter for parameter) without the playground
        module = runpy.run_path(str(out), run_name="exported_script")
        net = module["Net"](module["ARCH"])
        assert sum(p.numel() for p in net.parameters()) == sum(p.numel() for p in loaded.model.parameters())


def test_export_leaves_the_shared_model_as_it_was(tmp_path):
    """The app's sessions share one loaded run: an export must not retype or rebuild it."""
    loaded = loaded_run(preset_net("seed-004"))
    before = {k: v.clone() for k, v in loaded.model.state_dict().items()}
    kinds = [type(m) for m in loaded.model.modules()]
    export(loaded, "torchscript", tmp_path / "m.ts.pt")
    assert [type(m) for m in loaded.model.modules()] == kinds
    assert all(torch.equal(before[k], v) for k, v in loaded.model.state_dict().items())


def _partial_then(exc: BaseException):
    """A writer that writes half a file to where it was told, then fails."""
    def write(path) -> None:
        Path(path).write_bytes(b"half a file")
        raise exc
    return write


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_failed_export_leaves_no_file_and_keeps_the_old_one(fmt, tmp_path, monkeypatch):
    loaded = loaded_run(tiny_net())
    if fmt == "onnx":
        failing = _partial_then(RuntimeError("exporter crashed\nwith a long torch message"))
        monkeypatch.setattr(torch.onnx, "export", lambda model, args, f, **kw: failing(f))
    elif fmt == "torchscript":
        real_trace = torch.jit.trace

        class Traced:  # computes like the real trace, then dies half way through saving
            def __init__(self, *a, **kw):
                self.traced = real_trace(*a, **kw)

            def __call__(self, x):
                return self.traced(x)

            def save(self, f):
                _partial_then(OSError(28, "No space left on device"))(f)

        monkeypatch.setattr(torch.jit, "trace", Traced)
    else:
        monkeypatch.setattr(Path, "write_text", lambda self, text, *a, **kw: _partial_then(
            OSError(28, "No space left on device"))(self))
    fresh, old = tmp_path / "fresh.out", tmp_path / "old.out"
    old.write_bytes(b"an earlier complete export")
    for target in (fresh, old):
        with pytest.raises((ExportError, OSError)) as err:
            export(loaded, fmt, target, "x")
        assert_one_line(err.value)
    assert not fresh.exists()
    assert old.read_bytes() == b"an earlier complete export"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.out"]  # and no temp file


def test_a_failed_rename_leaves_no_temp_file(tmp_path, monkeypatch):
    def refuse(src, dst):
        raise PermissionError(13, "Permission denied", str(dst))

    monkeypatch.setattr(atomic_mod.os, "replace", refuse)
    with pytest.raises(PermissionError):
        export(loaded_run(tiny_net()), "script", tmp_path / "train_x.py", "x")
    assert list(tmp_path.iterdir()) == []


def test_export_refuses_up_front_in_one_line(tmp_path, monkeypatch):
    loaded = loaded_run(tiny_net())
    calls = []
    monkeypatch.setattr(export_mod, "_plain_model", lambda *a: calls.append(a))  # nothing may be built
    for fmt, path, says in [("pickle", tmp_path / "m.pkl", "unknown export format 'pickle'; choose one of onnx"),
                            ("onnx", tmp_path / "missing" / "m.onnx", "the folder"),
                            ("torchscript", tmp_path, "it is a folder"),
                            ("onnx", Path("/dev/null"), "it is a device, fifo or socket")]:
        with pytest.raises(ExportError, match=re.escape(says)) as err:
            export(loaded, fmt, path)
        assert_one_line(err.value)
    big = loaded_run(tiny_net(input_size=64, in_channels=1))
    with pytest.raises(ExportError, match="the standalone script reads 32x32 RGB images; this run's net takes "
                                          "64x64 with 1 channel") as err:
        export(big, "script", tmp_path / "train_x.py")
    assert_one_line(err.value)
    assert calls == [] and sorted(tmp_path.iterdir()) == []


def test_only_a_regular_file_is_ever_replaced(tmp_path):
    """The atomic rename replaced /dev/full itself with a regular file; a fifo, a device or a folder at
    the target is refused, and nothing is left beside it."""
    import os

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    for target in (fifo, tmp_path):
        with pytest.raises(IsADirectoryError):
            atomic_mod.write_atomic(target, lambda tmp: tmp.write_text("x"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pipe"] and not fifo.is_file()


def test_an_exported_scripts_own_file_name_cannot_end_its_docstring(tmp_path):
    out = tmp_path / 'a""";print("INJECTED");""".py'
    export(loaded_run(preset_net("fast")), "script", out)
    source = out.read_text()
    compile(source, "x", "exec")
    import ast

    assert not any(isinstance(n, ast.Call) and getattr(n.func, "id", "") == "print"
                   and any(getattr(a, "value", None) == "INJECTED" for a in n.args) for n in ast.walk(ast.parse(source)))


def test_onnx_and_torchscript_take_any_input_the_spec_allows(tmp_path):
    """Not only the presets: another input size and channel count, every padding mode, a linear head."""
    net = Net(name="odd", in_channels=1, input_size=40, num_classes=12, blocks=[
        Block([conv(8, padding_mode="reflect"), conv(8, dilation=2, padding=2, padding_mode="circular"),
               conv(8, stride=2, dilation=2, padding=2)]),
        Block([pool("avgpool"), sep(16, mid=True, dilation=2, padding=2, padding_mode="replicate")], skip=True)])
    net.head.kind, net.head.gap = "linear", False
    loaded = loaded_run(net)
    ts = export(loaded, "torchscript", tmp_path / "m.ts.pt")
    x = torch.randn(2, 1, 40, 40)
    with torch.no_grad():
        torch.testing.assert_close(torch.jit.load(str(ts))(x), loaded.model(x), rtol=1e-4, atol=1e-4)
    onnx = pytest.importorskip("onnx")
    onnx.checker.check_model(str(export(loaded, "onnx", tmp_path / "m.onnx")))


def test_cli_exports_seed_004_as_torchscript(tmp_path, capsys):
    from playground.cli import main
    store = RunStore(tmp_path / "runs")
    run_id = stored_run(store, preset_net("seed-004"))
    out = tmp_path / "m.ts.pt"
    assert main(["export", run_id, "--runs", str(store.root), "--format", "torchscript", "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == f"wrote {out}" and torch.jit.load(str(out)) is not None


def test_cli_export_refusal_is_a_one_line_error(tmp_path, capsys):
    from playground.cli import main
    store = RunStore(tmp_path / "runs")
    run_id = stored_run(store)
    out = tmp_path / "missing" / "m.onnx"
    assert main(["export", run_id, "--runs", str(store.root), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: cannot write the export to") and err.count("\n") == 1, err
    assert not out.parent.exists()

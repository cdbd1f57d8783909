"""The trust boundary for specs: whatever comes in (a file, a flag, the JSON editor, a share link,
a stored run), the answer is a valid spec or a one-line rejection naming the field and the
limit, within a second, in bounded memory, with nothing written and nothing run."""
import base64
import json
import math
import os
import re
import time
import tracemalloc
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from playground.runs.store import RunStore
from playground.specs import links
from playground.specs.arch import Net
from playground.specs.augment import AugSpec, make_transform
from playground.specs.config import RunSpec, TrainSpec, checked, data_problems
from playground.specs.geometry import trace
from playground.specs.limits import TIERS
from playground.specs.presets import preset_net
from playground.specs.serde import SpecError
from playground.training.batch_augment import BatchAugment
from tests.test_training import run_cli

SPECS = (Net, AugSpec, TrainSpec, RunSpec)


def bounded(call, seconds: float = 2.0, mib: float = 64):
    """Run ``call``: it must answer in time and within memory; returns its spec or its SpecError.
    (The worst case here takes about half a second on an idle 2-core machine; tracing allocations
    slows it down, and other tests may share the cores.)"""
    tracemalloc.start()
    start = time.perf_counter()
    try:
        out = call()
    except SpecError as e:
        out = e
    finally:
        took, (_, peak) = time.perf_counter() - start, tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert took < seconds, f"took {took:.2f}s"
    assert peak < mib * 2 ** 20, f"peak {peak / 2 ** 20:.0f} MiB"
    if isinstance(out, SpecError):
        assert out.problems and all(isinstance(p, str) and "\n" not in p and len(p) < 500 for p in out.problems)
    return out


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(
        st.sampled_from(["blocks", "layers", "kind", "out", "kernel", "stride", "padding", "dilation", "groups",
                         "transforms", "name", "p", "params", "shift", "epochs", "batch_size", "seed", "max_lr",
                         "net", "aug", "train", "data", "version", "in_channels", "input_size", "num_classes"]),
        kids, max_size=6),
    max_leaves=30)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(SPECS), json_values)
def test_any_json_value_is_a_valid_spec_or_a_clear_rejection(cls, data):
    bounded(lambda: cls.from_dict(data))
    try:
        text = json.dumps(data)
    except ValueError:
        return
    spec = bounded(lambda: cls.from_json(text))
    if not isinstance(spec, SpecError):
        assert cls.from_json(spec.to_json()) == spec  # what is accepted round-trips


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(SPECS), st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_any_bytes_are_a_valid_spec_or_a_clear_rejection(cls, raw):
    bounded(lambda: cls.from_json(raw))


@settings(max_examples=200, deadline=None)
@given(st.sampled_from((Net, AugSpec)), st.text(max_size=200) | st.binary(max_size=200).map(
    lambda b: base64.urlsafe_b64encode(zlib.compress(b)).decode()))
def test_any_share_link_is_a_valid_spec_or_a_clear_rejection(cls, text):
    bounded(lambda: links.decode(cls, text))


@pytest.mark.parametrize("text", [
    "[" * 100_000 + "]" * 100_000,  # nested far past the recursion limit
    '{"seed": ' + "9" * 5000 + "}",  # more digits than int() takes
    '{"max_lr": NaN}', '{"max_lr": Infinity}', '{"max_lr": 1e999}',
    '{"name": "\\ud800"}',  # a lone surrogate
    " " * 2_000_000,  # past the size limit
])
def test_hostile_json_texts_get_one_line(text):
    for cls in SPECS:
        assert isinstance(bounded(lambda cls=cls: cls.from_json(text)), SpecError)


def test_a_short_link_with_thousands_of_bad_layers_gets_a_short_message():
    """The reviewer's 228-character link (9,000 layers, each with an unknown key) made a 1.4 MB message:
    a SpecError keeps 8 problems, each under 300 characters, and says how many more there were."""
    spec = {"name": "x", "blocks": [{"layers": [{"kind": "conv", "bogus": 1}] * 9000}]}
    link = base64.urlsafe_b64encode(zlib.compress(json.dumps(spec).encode(), 9)).decode()
    with pytest.raises(SpecError) as e:
        links.decode(Net, link)
    assert len(str(e.value)) < 4_000 and len(e.value.problems) <= 9, len(str(e.value))
    assert e.value.problems[-1].endswith("more problems") or len(e.value.problems) <= 8


@pytest.mark.parametrize("name", ["a\x1b[31mRED\x1b[0m", "x\x1b]0;pwned\x07", "two\nlines", "bidi \u202egnp.exe",
                                  "zero\u200bwidth", "tab\there", "line\u2028sep"])
def test_a_name_with_control_or_invisible_characters_is_refused_and_never_printed_raw(name, capsys):
    """A name is shown in terminals (a hosted visitor's run name reaches the operator's) and on pages:
    escape sequences, newlines and bidi overrides are refused by the validator, and the CLI prints any
    such text already in a store escaped."""
    from playground.cli import _say
    from playground.specs.serde import printable

    net = preset_net("fast")
    net.name = name
    with pytest.raises(SpecError, match=r"name: control and invisible characters are not allowed, got U\+"):
        Net.from_json(net.to_json())
    _say(f"run 1: {name}")
    assert printable(name).isprintable() and capsys.readouterr().err.rstrip("\n").isprintable()


def test_a_link_that_inflates_a_thousandfold_is_refused_without_inflating_it():
    bomb = base64.urlsafe_b64encode(zlib.compress(b" " * 12_000_000, 9)).decode()
    assert len(bomb) < links.MAX_LINK_CHARS
    err = bounded(lambda: links.decode(Net, bomb), mib=16)
    assert isinstance(err, SpecError) and "inflates past" in str(err)
    cut = links.encode(preset_net("fast"))[:-12]
    assert isinstance(bounded(lambda: links.decode(Net, cut)), SpecError)


def test_links_round_trip_and_carry_every_check():
    net = preset_net("seed-004")
    assert links.decode(Net, links.encode(net)) == net
    for bad, words in (({**net.to_dict(), "version": 2.0}, "version"),
                       ({**net.to_dict(), "in_channels": 10 ** 6}, "channels must be between 1 and"),
                       (json.loads(json.dumps(net.to_dict()).replace('"sep"', '"foo"')), "unknown layer kind 'foo'")):
        packed = base64.urlsafe_b64encode(zlib.compress(json.dumps(bad).encode())).decode()
        with pytest.raises(SpecError, match=words):
            links.decode(Net, packed)


def deep_net(layers: int) -> dict:
    return {"blocks": [{"layers": [{"kind": "conv", "out": 8}] * layers}]}


@pytest.mark.parametrize("data, words", [
    ({**deep_net(2), "in_channels": 1_000_000}, "input: channels must be between 1 and 4, got 1000000"),
    ({**deep_net(2), "input_size": 512}, "input: size must be between 4 and 64 px, got 512"),
    (deep_net(10_000), "the network has 10,000 layers; the limit is 64"),
    ({"blocks": [{"layers": [{"out": 10 ** 9}]}]}, "channels must be between 1 and 1024, got 1000000000"),
    ({"blocks": [{"layers": [{"padding": 10 ** 12}]}]}, "padding must be between 0 and 32"),
    ({"blocks": [{"layers": [{"stride": 10 ** 12}]}]}, "stride must be between 1 and 8"),
    ({"blocks": [{"layers": [{"out": 1024, "kernel": 15, "padding": 7}] * 3}]}, "the parameter count is"),
    ({"blocks": [{"layers": [{"out": 1024, "kernel": 1, "padding": 0}] * 8}]}, "MACs; the limit is 4,000,000,000"),
    ({"num_classes": 10 ** 7, **deep_net(1)}, "classes must be between 2 and 1000"),
    ({"name": "x" * 10_000, **deep_net(1)}, "name: at most 80 characters"),
])
def test_unaffordable_architectures_are_refused_before_anything_is_built(data, words):
    err = bounded(lambda: Net.from_dict(data))
    assert isinstance(err, SpecError) and any(words in p for p in err.problems), err.problems


def test_limits_depend_on_the_mode(monkeypatch):
    wide = preset_net("fast").to_dict()
    wide["blocks"][0]["layers"][0]["out"] = 768
    assert trace(Net.parse(wide)).ok
    monkeypatch.setenv("PLAYGROUND_HOSTED", "1")
    monkeypatch.setenv("PLAYGROUND_LIMITS", "raised")  # ignored when hosted
    with pytest.raises(SpecError, match="channels must be between 1 and 512, got 768"):
        Net.from_dict(wide)
    with pytest.raises(SpecError, match="epochs must be between 1 and 100"):
        TrainSpec.from_dict({"epochs": 500})
    monkeypatch.delenv("PLAYGROUND_HOSTED")
    assert Net.from_dict({**wide, "input_size": 256}).input_size == 256  # raised, on a local machine


def test_a_batch_whose_activations_do_not_fit_names_the_estimate_and_the_batch_that_fits():
    run = RunSpec(preset_net("seed-002"), train=TrainSpec(batch_size=4096))
    with pytest.raises(SpecError) as e:
        checked(run)
    (problem,) = e.value.problems
    assert problem.startswith("training: a batch of 4096 needs about 19.0 MiB per image")
    fits = int(problem.rsplit("a batch of at most ", 1)[1].split()[0])
    checked(RunSpec(preset_net("seed-002"), train=TrainSpec(batch_size=fits)))
    with pytest.raises(SpecError):
        checked(RunSpec(preset_net("seed-002"), train=TrainSpec(batch_size=fits + 1)))


def test_every_preset_recipe_and_experiment_is_within_the_local_limits():
    from pathlib import Path

    from playground.specs.presets import PRESETS
    from playground.specs.recipes import RECIPES

    for p in PRESETS.values():
        assert trace(p.net, TIERS["local"]).ok and trace(p.net, TIERS["hosted"]).ok, p.name
    for name in RECIPES:
        from playground.specs.recipes import get_recipe
        recipe = get_recipe(name)
        aug, train = recipe.copy_specs()
        checked(RunSpec(preset_net(recipe.preset), aug, train))
    for f in (Path(__file__).resolve().parents[1] / "docs" / "experiments").glob("*.net.json"):
        assert trace(Net.from_json(f.read_bytes()), TIERS["local"]).ok, f


@pytest.mark.parametrize("params", [{"shift": math.nan}, {"shift": math.inf}, {"scale": -math.inf}])
def test_non_finite_augmentation_values_are_refused(params):
    with pytest.raises(SpecError, match="finite"):
        AugSpec.from_dict({"transforms": [{"name": "Affine", "p": 1.0, "params": {
            **make_transform("Affine").params, **params}}]})
    with pytest.raises(SpecError, match="finite"):
        checked(RunSpec(preset_net("fast"), AugSpec([make_transform("Affine", 1.0, **params)])))


def test_a_negative_zero_shift_augments_instead_of_failing():
    """(-0.0, 0.0) as a range is upside down for numpy; it used to kill the augmentation thread."""
    for spec in (AugSpec([make_transform("Affine", 1.0, shift=-0.0, scale=-0.0)]),
                 AugSpec.from_json('{"transforms": [{"name": "Affine", "p": 1.0, "params": '
                                   '{"shift": -0.0, "scale": -0.0, "rotate": 0, "border": "reflect"}}]}')):
        out = BatchAugment(spec, (0.5, 0.5, 0.5), seed=0)(np.zeros((8, 32, 32, 3), np.uint8))
        assert out.shape == (8, 32, 32, 3)


def test_a_net_that_does_not_fit_the_data_is_named_on_each_side():
    net = preset_net("fast")
    assert data_problems(net, [str(i) for i in range(10)], (32, 32, 3)) == []
    problems = data_problems(Net.parse({**net.to_dict(), "num_classes": 100, "in_channels": 1, "input_size": 28}),
                             [str(i) for i in range(10)], (32, 32, 3))
    assert [p.split(":")[1].split(" but")[0].strip() for p in problems] == [
        "the input is 28×28 px", "the input has 1 channel(s)", "the head has 100 classes"]


def one_line_exit_2(result):
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    return result.stderr


@pytest.mark.parametrize("flags, words", [
    (["--seed", "-1"], "seed must be between 0 and 4294967295"),
    (["--seed", str(2 ** 64)], "seed must be between 0 and 4294967295"),
    (["--max-lr", "nan"], "max LR must be in (0, 10], got nan"),
    (["--epochs", str(10 ** 30)], "epochs must be between 1 and 1000"),
    (["--batch-size", "0"], "batch size must be between 2 and 4096"),
    (["--teachers", "../../etc/passwd"], "teachers must be run ids"),
])
def test_cli_flags_out_of_range_get_one_line_and_write_nothing(image_folder, tmp_path, flags, words):
    runs = tmp_path / "runs"
    err = one_line_exit_2(run_cli("train", "--data", str(image_folder), "--runs", str(runs), *flags))
    assert words in err
    assert not runs.exists() or RunStore(runs).list() == []


def test_cli_spec_files_that_are_hostile_get_one_line(image_folder, tmp_path, capsys):
    """In process (the CLI's own error handling, without ten torch start-ups), except the FIFO: a
    regression there would block, and a subprocess has a timeout."""
    from playground.cli import main

    files = {"binary.json": b"\xff\xfe\x00garbage", "deep.json": b"[" * 200_000, "digits.json": b"9" * 10_000,
             "surrogate.json": b'{"name": "\\udc80", "blocks": []}', "big.json": b" " * 3_000_000,
             "classes.json": json.dumps({**preset_net("fast").to_dict(), "num_classes": 100}).encode()}
    runs = tmp_path / "runs"
    for name, raw in files.items():
        (tmp_path / name).write_bytes(raw)
        for cmd in (["summary"], ["train", "--data", str(image_folder), "--runs", str(runs)]):
            if (name == "classes.json") == (cmd[0] == "summary") and name != "binary.json":
                continue  # summary reads every file as train does; classes.json is a valid net that only data refuses
            code, err = main([*cmd, "--spec", str(tmp_path / name)]), capsys.readouterr().err
            assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
            assert name in err or "head has 100 classes but the data has 10" in err, err
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)  # reading it would block forever
    one_line_exit_2(run_cli("summary", "--spec", str(fifo)))
    assert not runs.exists() or RunStore(runs).list() == []


def test_bench_refuses_an_unaffordable_batch_or_warmup_before_reading_the_data(tmp_path, monkeypatch, capsys):
    from playground.cli import main

    assert "batch size must be between 2 and 4096" in one_line_exit_2(run_cli("bench", "--batch-size", "1000000000"))
    # a batch that the batch-size range allows but the memory limit does not (seed-002 at 4096: about 78 GB)
    missing = str(tmp_path / "no-such-data")
    assert main(["bench", "--preset", "seed-002", "--batch-size", "4096", "--data", missing]) == 2
    err = capsys.readouterr().err
    assert "a batch of at most 646 fits" in err and "no-such-data" not in err and err.count("\n") == 1, err
    assert main(["bench", "--warmup", "0", "--data", missing]) == 2  # the first batch is 1: warmup 0 had no time
    assert "warmup must be between 1 and 1000, got 0" in capsys.readouterr().err


def test_the_docs_show_the_limits_in_force():
    from pathlib import Path

    from playground.specs.limits import table

    assert table() in (Path(__file__).resolve().parents[1] / "docs" / "untrusted-input.md").read_text()


@pytest.mark.parametrize("change, words", [
    (lambda spec: spec["net"].update(num_classes=100), "the head has 100 classes but the data has 10"),
    (lambda spec: spec["net"]["blocks"][0]["layers"][0].update(kind="foo"), "unknown layer kind 'foo'"),
    (lambda spec: spec["train"].update(seed=-5), "seed must be between 0"),
])
def test_a_tampered_stored_run_fails_in_one_line_and_is_never_left_queued(image_folder, tmp_path, change, words):
    """The store is input too: a worker (the app's, or `train --resume`) refuses a stored spec that
    is invalid or does not fit its data, and the run says why."""
    import sqlite3

    from playground.runs.runner import create_run
    from tests.test_training import tiny_run

    store = RunStore(tmp_path / "runs")
    run = tiny_run()
    run.data = str(image_folder)
    run_id = create_run(store, run)
    spec = json.loads(json.dumps(run.to_dict()))
    change(spec)
    with sqlite3.connect(store.db) as db:
        db.execute("UPDATE runs SET spec = ? WHERE id = ?", (json.dumps(spec), run_id))
    result = run_cli("worker", run_id, "--runs", str(store.root))
    assert result.returncode == 1 and "Traceback" not in result.stderr and words in result.stderr, result.stderr
    record = store.get(run_id)
    assert record.status == "failed" and words in record.message
    assert not store.checkpoint_path(run_id).exists()


@pytest.mark.parametrize("argv, says", [
    (["train", "--epochs", "abc"], "argument --epochs: invalid int value: 'abc'"),
    (["evaluate", "x", "--tta-shift", "9"], "argument --tta-shift: invalid choice: 9"),
    (["bogus"], "invalid choice: 'bogus'"),
    (["runs", "--runs", ""], "--runs: empty"),
    (["summary", "--spec", " "], "--spec: empty"),
    (["train", "--resume", ""], "--resume: empty"),
    (["evaluate", "x", "--data", ""], "--data: empty"),
    (["train", "--teachers", "a", ""], "--teachers: empty"),
    (["summary", "--spec", "a\x00b"], "--spec: contains a NUL byte"),
    (["stop", "x\x00"], "run_id: contains a NUL byte"),
])
def test_a_bad_or_empty_flag_is_one_line_and_nothing_is_written(argv, says, tmp_path, monkeypatch, capsys):
    """argparse printed its whole usage block; an empty --runs made ./runs, an empty --data fell back to a
    download and an empty --resume started a new run; a NUL byte was an internal error."""
    from contextlib import nullcontext

    from playground.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PLAYGROUND_RUNS", str(tmp_path / "store"))
    with pytest.raises(SystemExit) if says.startswith("argument") or "choice" in says else nullcontext():
        assert main(argv) == 2
    err = capsys.readouterr().err
    assert says in err and err.count("\n") == 1, err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("argv", [["runs"], ["runs", "--json"], ["stop", "20260101-120000-abcdef"],
                                  ["evaluate", "20260101-120000-abcdef"], ["export", "20260101-120000-abcdef"],
                                  ["curves", "20260101-120000-abcdef"], ["trials"],
                                  ["train", "--resume", "20260101-120000-abcdef"],
                                  ["train", "--preset", "fast", "--epochs", "0"]])
def test_a_command_on_a_mistyped_store_or_a_refused_spec_leaves_no_store_behind(argv, tmp_path, capsys):
    """Reading, stopping or resuming in a folder with no store said nothing of it and made an empty store
    there (runs.sqlite, checkpoints/, logs/); so did a training whose spec was refused."""
    from playground.cli import main

    typo = tmp_path / "typo"
    assert main([*argv, "--runs", str(typo)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and ("there is no run store at" in err or "epochs" in err), err
    assert not typo.exists()


def test_a_repeated_key_and_bytes_after_a_links_data_are_refused():
    """Which of two values for one key a reader takes is a guess, and a link's trailing bytes are damage."""
    from playground.specs.presets import preset_net

    with pytest.raises(SpecError, match="the key 'name' appears twice in one object"):
        Net.from_json('{"name": "a", "name": "b"}')
    packed = base64.urlsafe_b64decode(links.encode(preset_net("fast")))
    link = links.encode(preset_net("fast"))
    for text, says in ((base64.urlsafe_b64encode(packed + b"junk").decode(), "4 bytes after its data"),
                       ("!!!!", "not base64"), ("!!" + link, "not base64"), (link[:8] + " " + link[8:], "not base64"),
                       ("", "damaged (empty)")):
        with pytest.raises(SpecError, match=re.escape(says)):
            links.decode(Net, text)
    assert links.decode(Net, link) == preset_net("fast")


def test_editor_text_counts_its_bytes_and_may_start_with_a_bom():
    from playground.specs.serde import parse_json

    assert parse_json("\ufeff" + preset_net("fast").to_json(), 100_000)["name"] == preset_net("fast").name
    wide = json.dumps({"name": "€" * 300}, ensure_ascii=False)  # 912 bytes of UTF-8 in 312 characters
    with pytest.raises(SpecError, match="the JSON is 912 bytes; the limit is 500"):
        parse_json(wide, 500)


@pytest.mark.parametrize("temperature", [1e-300, 0.05, 101, float("nan")])
def test_a_distillation_temperature_that_overflows_the_logits_is_refused(temperature):
    problems = checked_problems(TrainSpec(distill_temperature=temperature))
    assert problems == [f"distillation temperature must be between 0.1 and 100, got {temperature}"]


def checked_problems(train: TrainSpec) -> list[str]:
    from playground.specs.config import validate_train

    return validate_train(train)

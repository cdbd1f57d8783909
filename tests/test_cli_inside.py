"""``python -m playground inside`` on every preset and on a run: the PNG and one JSON line whose figures are the
trace's; a bad layer, position or image is one line, exit 2, and nothing written."""
import json

import numpy as np
import pytest
from PIL import Image

from playground.cli import main
from playground.results import inside
from playground.runs.runner import execute
from playground.runs.store import RunStore
from playground.specs.config import RunSpec, TrainSpec
from playground.specs.geometry import trace
from playground.specs.presets import PRESETS, preset_net
from playground.training.data import load_dataset


def run_cli(capsys, *args) -> tuple[int, str, str]:
    rc = main(["inside", *map(str, args)])
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_writes_the_picture_and_the_traces_figures(name, image_folder, tmp_path, capsys):
    out = tmp_path / "inside.png"
    rc, stdout, err = run_cli(capsys, "--preset", name, "--image", "test:cat:1", "--data", image_folder, "--out", out)
    assert rc == 0, err
    figures = json.loads(stdout)
    t = trace(preset_net(name))
    last = t.rows[-1]
    assert figures["layer"] == inside.layer_id(last) and figures["rf_px"] == t.rf
    u = (last.n - 1) // 2
    box = inside.theoretical_box(last, u, u)
    assert figures["at"] == [u, u] and figures["box"] == dict(top=box.top, left=box.left, bottom=box.bottom,
                                                              right=box.right)
    assert 0 < figures["reach_px"] <= figures["box_on_image_px"]
    assert set(figures["effective"]) == {"init"}
    with Image.open(out) as im:
        assert im.format == "PNG" and im.width > 600 and im.height > 300


def test_a_layer_and_position_are_chosen_and_a_photo_is_read(image_folder, tmp_path, capsys):
    photo = tmp_path / "photo.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (50, 70, 3), dtype=np.uint8)).save(photo)
    rc, stdout, err = run_cli(capsys, "--preset", "seed-003", "--image", photo, "--layer", "c2.3", "--at", "0,5",
                              "--data", image_folder, "--out", tmp_path / "x.png")
    assert rc == 0, err
    figures = json.loads(stdout)
    row = next(r for r in trace(preset_net("seed-003")).rows if inside.layer_id(r) == "C2.3")
    assert figures["layer"] == "C2.3" and figures["at"] == [0, 5] and figures["rf_px"] == row.r
    assert figures["box"]["top"] < 0 == figures["box_on_image"]["top"]  # the field reaches into the padding


@pytest.mark.parametrize("args, says", [
    (["--layer", "C9.1"], "C1.1"),
    (["--layer", "C1.1", "--at", "32,0"], "choose 0 to 31"),
    (["--at", "1;2"], "ROW,COL"),
    (["--image", "test:unicorn:0"], "airplane"),
    (["--image", "test:cat:99"], "choose 0 to"),
    (["--image", "test:cat"], "test:CLASS:INDEX"),
])
def test_a_bad_layer_position_or_image_is_one_line_and_writes_nothing(args, says, image_folder, tmp_path, capsys):
    out = tmp_path / "never.png"
    base = {"--image": "test:cat:0"}
    given = dict(zip(args[::2], args[1::2]))
    flags = [x for k, v in {**base, **given}.items() for x in (k, v)]
    rc, stdout, err = run_cli(capsys, "--preset", "seed-000", *flags, "--data", image_folder, "--out", out)
    assert rc == 2 and not stdout and says in err and err.count("\n") == 1, err
    assert not out.exists() and not list(tmp_path.iterdir())


def test_a_negative_position_gets_the_range_and_an_unwritable_out_names_itself(image_folder, tmp_path, capsys):
    """A negative row read as a malformed --at; an --out the disk refuses named its temporary file."""
    rc, stdout, err = run_cli(capsys, "--preset", "seed-000", "--image", "test:cat:0", "--at=-1,5",
                              "--data", image_folder, "--out", tmp_path / "never.png")
    assert rc == 2 and not stdout and "row -1 is outside" in err and "choose 0 to" in err, err
    (tmp_path / "a-file").write_text("")
    out = tmp_path / "a-file" / "x.png"  # under a regular file: NotADirectoryError
    rc, stdout, err = run_cli(capsys, "--preset", "seed-000", "--image", "test:cat:0", "--data", image_folder,
                              "--out", out)
    assert rc == 2 and not stdout and err.count("\n") == 1, err
    assert err.startswith(f"error: --out: cannot write the picture {out}") and ".tmp" not in err, err


def test_a_run_shows_its_trained_and_initial_fields(image_folder, tmp_path, capsys):
    store = RunStore(tmp_path / "runs")
    run = RunSpec(preset_net("seed-004"), train=TrainSpec(epochs=1, batch_size=32, device="cpu"),
                  data=str(image_folder))
    run_id = execute(store, run, load_dataset(str(image_folder)))[0]
    rc, stdout, err = run_cli(capsys, run_id, "--image", "test:dog:0", "--runs", store.root, "--out", tmp_path / "r.png")
    assert rc == 0, err
    figures = json.loads(stdout)
    assert set(figures["effective"]) == {"trained", "init"} and run_id in figures["subject"]
    rc, _, err = run_cli(capsys, run_id, "--preset", "fast", "--image", "test:dog:0", "--runs", store.root,
                         "--out", tmp_path / "r2.png")
    assert rc == 2 and "not both" in err


def test_a_photo_that_is_a_fifo_or_not_an_image_is_one_line(image_folder, tmp_path, capsys):
    import os

    fifo, text = tmp_path / "photo.fifo", tmp_path / "photo.jpg"
    os.mkfifo(fifo)  # opened, it would wait for a writer forever
    text.write_text("not a picture")
    for path, says in ((fifo, "not a regular file"), (text, "not an image")):
        rc, stdout, err = run_cli(capsys, "--preset", "seed-000", "--image", path, "--data", image_folder,
                                  "--out", tmp_path / "x.png")
        assert rc == 2 and not stdout and says in err and err.count("\n") == 1, err
    assert not (tmp_path / "x.png").exists()

"""A run's name and note (issue 32 G): checked once, written in one transaction, set by the owner on the Runs page
or with ``rename``, and kept after the store is opened again and the page reloaded."""
from __future__ import annotations

import re
import sqlite3

import pytest

from playground.cli import main
from playground.faults import RunGone
from playground.runs.jobs import JobError, Launcher
from playground.runs.store import RunStore
from playground.specs.limits import TIERS
from playground.specs.serde import SpecError
from playground.ui import server

from .browser import chromium, needs_chromium, streamlit_server
from .test_app import app_env, open_page, shown  # noqa: F401  (app_env is a fixture)
from .test_browser_state import choose

NOTE_CHARS = TIERS["local"].note_chars


@pytest.fixture
def stored(tmp_path):
    """A store with one ended run of alice's, named as the issue found it."""
    store = RunStore(tmp_path / "runs")
    run_id = store.create("seed-002 (edited)", {}, owner="alice")
    store.finish(run_id, "stopped", "stopped by request during epoch 1")
    return store, run_id


def test_a_name_and_note_are_stored_and_read_back_after_the_store_is_opened_again(stored, tmp_path):
    store, run_id = stored
    assert store.label(run_id, "  wider   C3 ", " tries 96\nchannels  in C3 ") == ("wider C3", "tries 96 channels in C3")
    again = RunStore(tmp_path / "runs").get(run_id)
    assert (again.name, again.note, again.status) == ("wider C3", "tries 96 channels in C3", "stopped")


def test_a_name_or_a_note_alone_keeps_the_other(stored):
    store, run_id = stored
    store.label(run_id, note="first note")
    assert store.label(run_id, name="renamed") == ("renamed", "first note")
    assert store.label(run_id, note="") == ("renamed", "")


@pytest.mark.parametrize("name, note, words", [
    ("", None, "name: empty; a name is one line of printable text of 1 to 80 characters"),
    ("two\nlines", None, "name: 2 lines; a name is one line"),
    ("bell\x07", None, "name: control and invisible characters are not allowed, got U+0007; a name is one line"),
    ("x" * 81, None, "the name is 81 characters; the limit is 80 characters"),
    ("ok", "zero\u200bwidth", "note: control and invisible characters are not allowed, got U+200B; a note is "
                              f"printable text of at most {NOTE_CHARS} characters"),
    ("ok", "n" * (NOTE_CHARS + 1), f"the note is {NOTE_CHARS + 1} characters; the limit is {NOTE_CHARS} characters"),
    (None, None, "name and note: neither given")], ids=("empty", "lines", "control", "long", "invisible", "long note",
                                                         "neither"))
def test_a_bad_name_or_note_is_one_line_naming_the_field_and_its_limit_and_writes_nothing(stored, name, note, words):
    store, run_id = stored
    with pytest.raises(SpecError, match=re.escape(words)) as e:
        store.label(run_id, name, note)
    assert "\n" not in str(e.value)
    assert (store.get(run_id).name, store.get(run_id).note) == ("seed-002 (edited)", "")


def test_the_hosted_tier_has_its_own_note_limit(stored, monkeypatch):
    store, run_id = stored
    monkeypatch.setenv("PLAYGROUND_HOSTED", "1")
    with pytest.raises(SpecError, match=f"the limit is {TIERS['hosted'].note_chars} characters"):
        store.label(run_id, note="n" * (TIERS["hosted"].note_chars + 1))


def test_only_the_owner_renames_a_run_in_hosted_mode_and_a_missing_run_is_one_line(stored, monkeypatch):
    store, run_id = stored
    jobs = Launcher(store.root)
    monkeypatch.setenv("PLAYGROUND_HOSTED", "1")
    with pytest.raises(JobError, match=f"run {run_id} was started by another visitor; you can only rename"):
        jobs.label("mallory", run_id, "mine now")
    assert store.get(run_id).name == "seed-002 (edited)"
    assert jobs.label("alice", run_id, "alice's", "hers") == ("alice's", "hers")
    with pytest.raises(JobError, match=f"run {run_id} kept its name and note: name: empty"):
        jobs.label("alice", run_id, " ")
    with pytest.raises(JobError, match="^there is no run 20260101-000000-abcdef \\(deleted\\?\\)$"):
        jobs.label("alice", "20260101-000000-abcdef", "x")
    with pytest.raises(RunGone, match="^there is no run 20260101-000000-abcdef in the run store"):
        store.label("20260101-000000-abcdef", "x")


def test_a_running_run_is_renamed_and_its_worker_never_writes_the_name_back(stored):
    store, run_id = stored
    assert store.requeue(run_id) and store.claim(run_id, 1, 1.0, "host", "cpu")
    store.label(run_id, "renamed mid-run", "while it trains")
    store.beat(run_id, "testing", "testing")
    store.progress(run_id, [{"step": 1, "epoch": 1, "loss": 1.0, "acc": 0.5, "lr": 0.1, "img_per_s": 9.0}], 10)
    store.add_epoch(run_id, {"epoch": 1, "train_loss": 1.0, "train_acc": 0.5, "test_loss": 1.0, "test_acc": 0.5,
                             "elapsed": 1.0})
    store.finish(run_id, "finished")
    record = store.get(run_id)
    assert (record.name, record.note, record.status) == ("renamed mid-run", "while it trains", "finished")


def test_a_store_from_before_notes_gains_the_column(tmp_path):
    store = RunStore(tmp_path / "runs")
    run_id = store.create("old", {})
    with sqlite3.connect(store.db) as c:
        c.execute("ALTER TABLE runs DROP COLUMN note")
    again = RunStore(tmp_path / "runs")
    assert again.get(run_id).note == "" and again.label(run_id, note="added later") == ("old", "added later")


def test_the_rename_command_prints_one_line_and_refuses_bad_input_in_one_line(stored, capsys):
    store, run_id = stored
    assert main(["rename", run_id, "--name", "wider C3", "--note", "96 channels", "--runs", str(store.root)]) == 0
    assert capsys.readouterr().out == f"run {run_id}: name 'wider C3', note '96 channels'\n"
    for argv in (["--name", "x" * 81], ["--note", "bell\x07"], []):
        assert main(["rename", run_id, *argv, "--runs", str(store.root)]) == 2
        out, err = capsys.readouterr()
        assert out == "" and err.count("\n") == 1 and err.startswith(f"error: run {run_id} kept its name and note: ")
    assert main(["rename", "20260101-000000-abcdef", "--name", "x", "--runs", str(store.root)]) == 2
    assert capsys.readouterr().err == f"error: there is no run 20260101-000000-abcdef in the run store {store.root}\n"
    assert (store.get(run_id).name, store.get(run_id).note) == ("wider C3", "96 channels")


def save(at, name: str, note: str):
    at.text_input(key="label_name").set_value(name)
    at.text_input(key="label_note").set_value(note)
    return next(b for b in at.button if b.label == "Save name and note").click().run()


def test_the_runs_page_form_renames_a_run_and_says_a_bad_name_in_one_line(app_env):
    store = server.store()
    run_id = store.create("seed-002 (edited)", {}, params=1)
    store.finish(run_id, "stopped", "stopped by request during epoch 1")
    at = open_page("runs")
    at.selectbox(key="manage_pick").set_value(run_id).run()
    assert at.text_input(key="label_name").value == "seed-002 (edited)" and at.text_input(key="label_note").value == ""
    save(at, "  wider   C3", "96 channels in C3")
    assert not at.exception and not at.warning, [shown(w.value) for w in at.warning]
    assert any(f"Saved the name and note of {run_id}." in shown(s.value) for s in at.success)
    assert at.text_input(key="label_name").value == "wider C3"  # as stored
    table = at.dataframe[0].value
    assert list(table.columns[:3]) == ["id", "name", "note"]
    assert table.iloc[0][["name", "note"]].tolist() == ["wider C3", "96 channels in C3"]
    save(at, "   ", "kept?")  # the field's max_chars keeps a long name from the callback; a blank one reaches it
    assert [shown(e.value) for e in at.error] == [
        f"run {run_id} kept its name and note: name: empty; a name is one line of printable text of 1 to 80 characters"]
    assert (store.get(run_id).name, store.get(run_id).note) == ("wider C3", "96 channels in C3")
    assert not at.exception and not at.warning


@needs_chromium
def test_a_renamed_run_keeps_its_name_and_note_after_a_reload(image_folder, tmp_path):
    expect = pytest.importorskip("playwright.sync_api").expect
    runs = tmp_path / "runs"
    run_id = RunStore(runs).create("seed-002 (edited)", {}, params=1)
    RunStore(runs).finish(run_id, "stopped", "stopped by request during epoch 1")
    with streamlit_server(image_folder, runs) as url, chromium() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.goto(f"{url}/runs")
        page.get_by_role("combobox", name="Run", exact=True).wait_for(timeout=60_000)
        choose(page, "Run", 0, run_id)
        page.get_by_label("Name", exact=True).fill("wider C3")
        page.get_by_label("Note", exact=True).fill("96 channels in C3")
        page.get_by_role("button", name="Save name and note").click()
        expect(page.get_by_text(f"Saved the name and note of {run_id}.")).to_be_visible()
        page.reload()
        grid = page.get_by_test_id("stDataFrame")
        grid.wait_for(timeout=60_000)
        row = grid.locator("tr[aria-rowindex='2']")  # the run's row in the table the grid keeps for screen readers
        expect(row.locator("td[aria-colindex='2']")).to_have_text("wider C3")  # the name column
        expect(row.locator("td[aria-colindex='3']")).to_have_text("96 channels in C3")  # and the note after it
        assert page.get_by_test_id("stException").count() == 0
        record = RunStore(runs).get(run_id)
        assert (record.name, record.note) == ("wider C3", "96 channels in C3")

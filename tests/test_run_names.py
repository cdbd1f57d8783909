"""A run's name and note (issue 32 G): checked once, stored in the run store, kept after a reload."""
from __future__ import annotations

import sqlite3

import pytest

from playground.runs.jobs import JobError, Launcher
from playground.runs.store import RunStore
from playground.specs.ids import NOTE_CHARS, label_problems

from .browser import chromium, needs_chromium, streamlit_server
from .test_browser_state import choose


@pytest.fixture
def launcher(tmp_path):
    launcher = Launcher(tmp_path / "runs")
    return launcher, launcher.store.create("seed-002 (edited)", {}, owner="alice")


def test_a_label_is_stored_and_read_back_after_the_store_is_opened_again(launcher, tmp_path):
    jobs, run_id = launcher
    jobs.label("alice", run_id, "  wider   C3 ", " tries 96 channels in C3 ")
    again = RunStore(tmp_path / "runs").get(run_id)
    assert (again.name, again.note) == ("wider C3", "tries 96 channels in C3")


@pytest.mark.parametrize("name, note, words", [
    ("", "", "name: one line of printable text"), ("a\tb\x00", "", "name: one line"),
    ("x" * 81, "", "name: at most 80 characters, got 81"), ("ok", "bell\x07", "note: printable text only"),
    ("ok", "n" * (NOTE_CHARS + 1), f"note: at most {NOTE_CHARS} characters")])
def test_a_bad_label_is_one_line_naming_the_field_and_writes_nothing(launcher, name, note, words):
    jobs, run_id = launcher
    with pytest.raises(JobError, match=words):
        jobs.label("alice", run_id, name, note)
    assert (jobs.store.get(run_id).name, jobs.store.get(run_id).note) == ("seed-002 (edited)", "")


def test_only_the_owner_labels_a_run_and_a_missing_run_is_said(launcher, monkeypatch):
    jobs, run_id = launcher
    monkeypatch.setenv("PLAYGROUND_HOSTED", "1")
    with pytest.raises(JobError, match="started by another visitor"):
        jobs.label("mallory", run_id, "mine now", "")
    with pytest.raises(JobError, match="there is no run 20260101-000000-abcdef"):
        jobs.label("alice", "20260101-000000-abcdef", "x", "")


def test_a_store_from_before_notes_gains_the_column(tmp_path):
    store = RunStore(tmp_path / "runs")
    run_id = store.create("old", {})
    with sqlite3.connect(store.db) as c:
        c.execute("ALTER TABLE runs DROP COLUMN note")
    assert RunStore(tmp_path / "runs").get(run_id).note == ""


def test_label_problems_accept_a_plain_label():
    assert label_problems("run A", "line one\nline two", 80) == []


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
        page.get_by_test_id("stDataFrame").wait_for(timeout=60_000)
        record = RunStore(runs).get(run_id)
        assert (record.name, record.note) == ("wider C3", "96 channels in C3")
        choose(page, "Run", 0, run_id)
        expect(page.get_by_label("Name", exact=True)).to_have_value("wider C3")  # the store's, after the reload
        expect(page.get_by_label("Note", exact=True)).to_have_value("96 channels in C3")

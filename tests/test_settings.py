"""The environment settings (settings.py): a value a setting does not take is one line naming it,
in the library, the CLI (before anything is written) and the app (before any page runs)."""
from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from playground import settings
from playground.settings import FLAGS, WHOLE, SettingError
from playground.specs import limits
from playground.settings import hosted
from playground.training.sources import allowed_sources, cache_dir, resolve_source
from tests.test_app import APP


@pytest.mark.parametrize("name", sorted(WHOLE))
@pytest.mark.parametrize("value", ["abc", "²", "-1", "1e3", "9" * 40, "1.5", "٣"])
def test_a_whole_number_setting_refuses_what_is_not_one_in_its_range(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingError, match=f"^{name} must be a whole number from ") as e:
        settings.whole(name)
    assert "\n" not in str(e.value) and len(str(e.value)) < 200
    assert settings.problems() == [str(e.value)]


def test_whole_number_settings_take_their_range_and_underscores(monkeypatch):
    monkeypatch.setenv("PLAYGROUND_THREADS", "99999")  # OpenMP could not make the threads and the worker crashed
    with pytest.raises(SettingError, match=r"PLAYGROUND_THREADS must be a whole number from 0 to 256 \(threads"):
        settings.whole("PLAYGROUND_THREADS")
    monkeypatch.setenv("PLAYGROUND_MAX_JOBS", "0")  # "0 of 0 training slots" for everyone
    with pytest.raises(SettingError, match="PLAYGROUND_MAX_JOBS must be a whole number from 1 to 64"):
        settings.whole("PLAYGROUND_MAX_JOBS")
    monkeypatch.setenv("PLAYGROUND_MAX_ARCHIVE_FILES", " 20_000 ")
    assert settings.whole("PLAYGROUND_MAX_ARCHIVE_FILES") == 20_000
    monkeypatch.setenv("PLAYGROUND_MAX_JOBS", "")
    assert settings.whole("PLAYGROUND_MAX_JOBS") == WHOLE["PLAYGROUND_MAX_JOBS"][0]


@pytest.mark.parametrize("value", ["y", "enabled", "2", "tru", "hosted"])
def test_an_unknown_hosted_value_is_refused_not_read_as_off(monkeypatch, value):
    """A public demo whose PLAYGROUND_HOSTED=y was read as "off" ran with no owners and the largest limits."""
    monkeypatch.setenv("PLAYGROUND_HOSTED", value)
    monkeypatch.setenv("PLAYGROUND_LIMITS", "raised")
    for read in (hosted, limits.tier, limits.current):
        with pytest.raises(SettingError, match="PLAYGROUND_HOSTED must be 1, true, yes or on"):
            read()


def test_flags_and_the_limits_tier_take_their_words(monkeypatch):
    for value, on in [("1", True), (" ON ", True), ("yes", True), ("0", False), ("off", False), ("", False)]:
        monkeypatch.setenv("PLAYGROUND_HOSTED", value)
        assert hosted() is on
    monkeypatch.delenv("PLAYGROUND_HOSTED")
    monkeypatch.setenv("PLAYGROUND_LIMITS", "Raised ")
    assert limits.tier() == "raised"
    monkeypatch.setenv("PLAYGROUND_LIMITS", "rasied")
    with pytest.raises(SettingError, match="PLAYGROUND_LIMITS must be local or raised"):
        limits.tier()
    assert set(FLAGS) == {"PLAYGROUND_HOSTED", "PLAYGROUND_DEBUG"}


def test_text_settings_are_stripped_and_blank_means_unset(monkeypatch, tmp_path):
    monkeypatch.setenv("PLAYGROUND_HOSTED", "1")
    monkeypatch.setenv("PLAYGROUND_DATA", f" {tmp_path / 'cifar.tar.gz'} ")  # the demo refused its own dataset
    assert resolve_source() == str(tmp_path / "cifar.tar.gz") == allowed_sources()[0]
    monkeypatch.setenv("PLAYGROUND_DATA", "   ")
    assert resolve_source() == "cifar10" and allowed_sources() == ["cifar10"]
    monkeypatch.setenv("PLAYGROUND_CACHE", "")  # was the current folder
    assert cache_dir().name == "cifar-playground"


@pytest.mark.parametrize("env, words", [
    ({"PLAYGROUND_MAX_UNPACKED_MB": "²"}, "PLAYGROUND_MAX_UNPACKED_MB must be a whole number from 1 to"),
    ({"PLAYGROUND_HOSTED": "y", "PLAYGROUND_THREADS": "-2"}, "PLAYGROUND_THREADS must be a whole number from 0 to 256"),
    ({"PLAYGROUND_DEBUG": "0", "PLAYGROUND_LIMITS": "big"}, "PLAYGROUND_LIMITS must be local or raised"),
])
def test_the_cli_refuses_a_bad_setting_in_one_line_before_writing_anything(tmp_path, capsys, monkeypatch, env, words):
    from playground.cli import main

    archive = tmp_path / "data.tar"
    archive.write_bytes(b"not read")
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("PLAYGROUND_CACHE", str(tmp_path / "cache"))
    for argv in (["data", "--data", str(archive)], ["runs", "--runs", str(tmp_path / "runs")],
                 ["sweep", "--space", "fastest-to-85", "--runs", str(tmp_path / "runs")]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and words in err and err.count("\n") == 1 and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.tar"]


def test_the_app_shows_bad_settings_instead_of_any_page(monkeypatch):
    monkeypatch.setenv("PLAYGROUND_HOSTED", "enabled")
    monkeypatch.setenv("PLAYGROUND_MAX_JOBS", "abc")
    at = AppTest.from_file(APP, default_timeout=30).run()
    assert not at.exception
    assert [e.value for e in at.error] == [
        "PLAYGROUND_MAX_JOBS must be a whole number from 1 to 64 (trainings the app runs at once), got 'abc'",
        "PLAYGROUND_HOSTED must be 1, true, yes or on (or 0, false, no, off or unset), got 'enabled'"]
    assert not at.title and not at.button


def test_the_docs_name_every_setting():
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "docs" / "hosted.md").read_text()  # its settings table
    names = [*WHOLE, *FLAGS, "PLAYGROUND_LIMITS", "PLAYGROUND_DATA", "PLAYGROUND_CACHE", "PLAYGROUND_RUNS"]
    assert [n for n in names if f"`{n}" not in readme] == []

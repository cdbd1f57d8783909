"""A visitor's work in progress (drafts.py): kept between sessions, bounded, and never an error."""
from __future__ import annotations

import os

import pytest

from playground import drafts
from playground.specs.presets import preset_net
from playground.training.sources import cache_dir

from .test_app import app_env, open_page  # noqa: F401  (app_env is a fixture)

ME, OTHER = "a" * 32, "b" * 32


def test_a_draft_comes_back_for_its_visitor_only():
    draft = {"net": preset_net("seed-002").to_dict(), "data": "cifar10"}
    assert drafts.save(ME, draft)
    assert drafts.load(ME) == draft and drafts.load(OTHER) == {}
    for bad in ("../" + ME, ME.upper(), "", "a" * 31):  # only an owner hash names a file
        assert not drafts.save(bad, draft) and drafts.load(bad) == {}
    assert sorted(p.name for p in (cache_dir() / "drafts").iterdir()) == [f"{ME}.json"]


def test_what_cannot_be_kept_is_not_kept_and_the_last_draft_stays():
    assert drafts.save(ME, {"data": "cifar10"})
    assert not drafts.save(ME, {"data": "x" * drafts.MAX_BYTES})
    assert not drafts.save(ME, {"net": {"dropout": float("nan")}})
    assert not drafts.save(ME, {"net": object()})
    assert drafts.load(ME) == {"data": "cifar10"}


@pytest.mark.parametrize("content", [b"", b"{", b"[1, 2]", b"\xff\xfe", b"{" * 10_000, b"null", b'"text"'])
def test_a_damaged_draft_is_no_draft(content):
    folder = cache_dir() / "drafts"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{ME}.json").write_bytes(content)
    assert drafts.load(ME) == {}


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through read-only permissions")
def test_a_read_only_disk_keeps_nothing_and_raises_nothing():
    folder = cache_dir() / "drafts"
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o500)
    try:
        assert not drafts.save(ME, {"data": "cifar10"})
    finally:
        folder.chmod(0o700)


def test_a_failing_disk_keeps_nothing_and_raises_nothing(monkeypatch):
    def full(*_args, **_kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(drafts.atomic, "write_bytes", full)
    assert not drafts.save(ME, {"data": "cifar10"})
    assert drafts.load(ME) == {}


def test_the_folder_keeps_the_most_recently_saved_drafts(monkeypatch):
    monkeypatch.setattr(drafts, "MAX_DRAFTS", 3)
    owners = [f"{i:032x}" for i in range(5)]
    for age, owner in enumerate(owners):
        drafts.save(owner, {"data": owner})
        os.utime(cache_dir() / "drafts" / f"{owner}.json", (1000 + age, 1000 + age))
    assert sorted(p.stem for p in (cache_dir() / "drafts").glob("*.json")) == owners[-3:]


def test_a_second_session_of_the_same_visitor_starts_from_their_work(app_env, tmp_path):
    """A reload (a new session) lost the architecture, the pipeline and the data choice."""
    chosen = tmp_path / "my-data"
    chosen.symlink_to(app_env)  # another source than the default, holding the same images
    at = open_page("architect", owner=ME, data_source=str(chosen))
    at.text_input(key="w_name").set_value("my net").run()
    at.slider(key="w_0_0_out").set_value(40).run()
    at.switch_page("../pages/augment.py").run()
    steps = len(at.session_state["aug"]["transforms"])
    at.button(key="add").click().run()
    net, aug = at.session_state["net"], at.session_state["aug"]
    assert len(aug["transforms"]) == steps + 1 and net["name"] == "my net"

    again = open_page("architect", owner=ME)
    assert again.session_state["net"] == net and again.session_state["aug"] == aug
    assert again.text_input(key="w_name").value == "my net" and again.slider(key="w_0_0_out").value == 40
    assert again.session_state["data_source"] == str(chosen)

    stranger = open_page("architect", owner=OTHER)
    assert stranger.text_input(key="w_name").value == "fast"


def test_a_session_that_only_saw_the_defaults_saves_nothing(app_env):
    """Each visit without cookies (a monitor, a bot) wrote a draft and pushed visitors' drafts out."""
    at = open_page("architect", owner=ME)
    at.switch_page("../pages/augment.py").run()
    assert drafts.load(ME) == {} and not at.exception


def test_two_tabs_of_one_visitor_keep_each_others_changes(app_env):
    tab_a, tab_b = open_page("architect", owner=ME), open_page("architect", owner=ME)  # both hold a net
    tab_a.text_input(key="w_name").set_value("from tab a").run()
    tab_b.switch_page("../pages/augment.py").run()
    tab_b.button(key="add").click().run()
    draft = drafts.load(ME)
    assert draft["net"]["name"] == "from tab a" and draft["aug"] == tab_b.session_state["aug"]
    assert tab_b.session_state["net"]["name"] == "fast"  # tab b's own copy: unchanged there, so not saved

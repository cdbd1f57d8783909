"""A visitor's work in progress (drafts.py): kept between sessions, bounded, and never an error."""
from __future__ import annotations

import os

import pytest

from playground import drafts
from playground.ui import server
from playground.specs.presets import preset_net
from playground.training.sources import cache_dir

from .test_app import app_env, open_page, wait_for_run  # noqa: F401  (app_env is a fixture)

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
    at.switch_page("../pages/train.py").run()  # the Train form as first drawn is no change either
    at.switch_page("../pages/home.py").run()
    assert drafts.load(ME) == {} and not at.exception


def test_a_reload_keeps_the_train_forms_settings(app_env):
    """A reload reset the Train form to its defaults: a loaded recipe's schedule, or the settings a run was
    started with, were gone. The form's values travel as a TrainSpec (its JSON round trip and validator)."""
    at = open_page("train", owner=ME)
    at.selectbox(key="t_recipe").set_value("seed-001")
    at.button(key="t_load_recipe").click().run()
    at.switch_page("../pages/home.py").run()
    assert drafts.load(ME)["train"]["recipe"] == "seed-001"

    again = open_page("train", owner=ME)
    assert again.selectbox(key="t_recipe").value == "seed-001"
    assert (again.number_input(key="t_epochs").value, again.select_slider(key="t_batch").value) == (80, 64)
    assert again.number_input(key="t_lr").value == 0.2 and again.checkbox(key="t_bf16").value
    assert open_page("train", owner=OTHER).number_input(key="t_epochs").value == 2  # a stranger's form: defaults

    again.number_input(key="t_subset").set_value(60)
    again.number_input(key="t_epochs").set_value(1)
    again.button(key="t_start").click().run()
    assert wait_for_run(again) == "finished"
    train = server.store().get(again.session_state["watch"]).spec["train"]
    assert (train["schedule"], train["warmup"], train["epochs"]) == ("cosine", 0.3, 1)  # not the default 20%


def test_a_recipe_loaded_for_one_net_is_not_restored_for_another_tabs_net(app_env):
    """Tab A loads seed-001 (its hidden 30% warm-up applies at Start); tab B then edits the net: a reload
    must not apply seed-001's hidden settings to B's net."""
    tab_b = open_page("architect", owner=ME)  # opened first: its Train form is not tab A's
    tab_a = open_page("train", owner=ME)
    tab_a.selectbox(key="t_recipe").set_value("seed-001")
    tab_a.button(key="t_load_recipe").click().run()
    assert open_page("train", owner=ME).session_state["t_loaded"] == "seed-001"  # the same net: it applies
    tab_b.text_input(key="w_name").set_value("tab b's net").run()
    again = open_page("train", owner=ME)
    assert again.session_state["net"]["name"] == "tab b's net" and "t_loaded" not in again.session_state


def test_a_run_started_from_a_loaded_recipe_keeps_its_settings_without_a_widget(app_env):
    """seed-001 warms up for 30% of its steps; the form has no warm-up widget, and Start trained with 20%. A look
    at the Architect page in between (which sets the same net again) must not forget the recipe."""
    at = open_page("train")
    at.selectbox(key="t_recipe").set_value("seed-001")
    at.button(key="t_load_recipe").click().run()
    at.switch_page("../pages/architect.py").run()
    at.switch_page("../pages/train.py").run()
    at.number_input(key="t_subset").set_value(60)
    at.number_input(key="t_epochs").set_value(1)
    at.button(key="t_start").click().run()
    assert wait_for_run(at) == "finished"
    assert server.store().get(at.session_state["watch"]).spec["train"]["warmup"] == 0.3


@pytest.mark.parametrize("train, shown", [
    # valid TrainSpecs whose values the widgets are narrower than: those widgets show their defaults
    ({"spec": {"batch_size": 100, "max_lr": 7.0, "epochs": 30, "label_smoothing": 0.9}, "recipe": ["x"]},
     {"t_epochs": 30, "t_batch": 128, "t_lr": 0.05, "t_ls": 0.1, "t_recipe": "fast"}),
    ({"spec": {"epochs": -1}, "recipe": "seed-001"}, {"t_epochs": 2, "t_recipe": "seed-001"}),
    ({"spec": {"epochs": 10 ** 9, "optimizer": "lbfgs", "tta_shift": 9}}, {"t_epochs": 2, "t_opt": "sgd"}),
    # a form Start refused (a shortened fast keeps 8 low-res epochs of 5) comes back as left, to be corrected
    ({"spec": {"epochs": 5, "low_res": 24, "low_res_epochs": 8}}, {"t_epochs": 5, "t_lowres": 24, "t_lowres_ep": 8}),
    ({"spec": "x"}, {"t_epochs": 2}), ({"spec": {"epochs": "5"}, "recipe": "seed-001"}, {"t_recipe": "fast"}),
    ({"spec": {"teachers": ["not-a-run"]}}, {"t_epochs": 10, "t_teachers": []}),  # none on this data
    ({"spec": {"train_subset": 10 ** 6, "epochs": 3}}, {"t_subset": 120, "t_epochs": 3}),  # fitted to the data
])
def test_a_train_draft_that_does_not_fit_the_form_is_fitted_or_ignored(app_env, train, shown):
    assert drafts.save(ME, {"train": train})
    at = open_page("train", owner=ME)
    for key, value in shown.items():
        kind = {"t_recipe": "selectbox", "t_opt": "selectbox", "t_batch": "select_slider", "t_ls": "slider",
                "t_teachers": "multiselect"}.get(key, "number_input")
        widget = getattr(at, kind)(key=key)
        assert widget.value == value, key


def test_two_tabs_of_one_visitor_keep_each_others_changes(app_env):
    tab_a, tab_b = open_page("architect", owner=ME), open_page("architect", owner=ME)  # both hold a net
    tab_a.text_input(key="w_name").set_value("from tab a").run()
    tab_b.switch_page("../pages/augment.py").run()
    tab_b.button(key="add").click().run()
    draft = drafts.load(ME)
    assert draft["net"]["name"] == "from tab a" and draft["aug"] == tab_b.session_state["aug"]
    assert tab_b.session_state["net"]["name"] == "fast"  # tab b's own copy: unchanged there, so not saved


def test_every_recipe_fills_the_form_and_the_form_gives_it_back():
    """Load recipe, Start and the draft share form.values and form.spec: a recipe's settings survive the form."""
    from playground import form
    from playground.specs.recipes import RECIPES

    for recipe in RECIPES.values():
        values = form.values(recipe.train)
        assert set(values) == set(form.KEPT) - {"t_recipe"}, recipe.name  # every widget within its bounds
        assert form.spec(values, base=recipe.train) == recipe.train, recipe.name
        changed = form.spec({**values, "t_epochs": 3}, base=recipe.train)  # a widget changed: that field alone
        assert changed.epochs == 3 and changed.warmup == recipe.train.warmup, recipe.name

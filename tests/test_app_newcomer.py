"""AppTests for a newcomer's first steps (issue 17, Awkward): the "Start here" guide, the net's name, a
shortened recipe that trains instead of being refused, and every recipe loading into the Train form
(the two recipe-loading tests moved from test_app.py)."""
import pytest
import streamlit as st

from playground.ui import server, visitor
from playground.specs.arch import Net
from playground.specs.geometry import trace
from playground.specs.limits import current as current_limits
from playground.specs.recipes import RECIPES

from .test_app import app_env, open_page, shown, wait_for_run  # noqa: F401  (app_env is a fixture)


def guide_shown(at) -> bool:
    return any("Start here" in shown(m.value) for m in at.markdown)


def cookie_scripts(at) -> list[str]:
    return [h.proto.body for h in at.get("html") if visitor.GUIDE_COOKIE in h.proto.body]


def test_the_guide_shows_on_a_first_visit_until_dismissed_and_comes_back_on_request(app_env):
    at = open_page("home")
    assert guide_shown(at) and not cookie_scripts(at)
    steps = [link.proto.label for link in at.get("page_link")]
    assert [s.split()[1].strip("*") for s in steps] == ["Augment", "Architect", "Train", "Results"], steps
    at.button(key="guide_hide").click().run()
    assert not at.exception and not guide_shown(at)
    assert any("max-age=31536000" in s for s in cookie_scripts(at))  # remembered in the browser
    at.switch_page("../pages/augment.py").run()
    at.switch_page("../pages/home.py").run()
    assert not guide_shown(at)
    at.button(key="guide_show").click().run()
    assert guide_shown(at) and any("max-age=0" in s for s in cookie_scripts(at))  # and forgotten


def test_a_returning_visitor_with_the_cookie_sees_no_guide(app_env, monkeypatch):
    monkeypatch.setattr(type(st.context), "cookies", property(lambda self: {visitor.GUIDE_COOKIE: "hidden"}))
    at = open_page("home")
    assert not guide_shown(at) and at.button(key="guide_show")
    assert not cookie_scripts(at)  # nothing to write: the browser has it


@pytest.mark.parametrize("page", ["home", "train", "runs"])
def test_a_new_visitor_gets_one_owner_cookie_script_a_run(app_env, monkeypatch, page):
    """Each owner() call drew the script where it was asked (in hosted mode the pages ask several times,
    inside their columns); a second one at the top broke the Architect's sticky metrics."""
    monkeypatch.setenv("PLAYGROUND_HOSTED", "1")
    at = open_page(page)
    assert len([h for h in at.get("html") if visitor.OWNER_COOKIE in h.proto.body]) == 1


def net_name(at) -> str:
    return at.session_state["net"]["name"]


def test_net_names_follow_their_origin_are_editable_and_reach_the_stored_run(app_env):
    at = open_page("architect")
    assert at.text_input(key="w_name").value == "fast" == net_name(at)
    at.slider(key="w_0_0_out").set_value(40).run()
    assert net_name(at) == "fast (edited)" == at.text_input(key="w_name").value
    at.selectbox(key="preset_pick").set_value("seed-002").run()
    at.button(key="load_preset").click().run()
    assert net_name(at) == "seed-002" == at.text_input(key="w_name").value
    at.selectbox(key="w_0_1_d").set_value(2).run()
    assert net_name(at) == "seed-002 (edited)"
    at.selectbox(key="w_0_1_d").set_value(3).run()
    assert net_name(at) == "seed-002 (edited)"  # not "(edited) (edited)"

    at.text_input(key="w_name").set_value("  my\tdilated\x07 net ").run()
    assert net_name(at) == "my dilated net" == at.text_input(key="w_name").value
    at.slider(key="w_0_0_out").set_value(40).run()
    assert net_name(at) == "my dilated net"  # a name of the visitor's own is kept
    most = current_limits().name_chars
    at.text_input(key="w_name").set_value("x" * (most + 20)).run()
    assert net_name(at) == "x" * most and not at.exception
    at.text_input(key="w_name").set_value("   ").run()
    assert net_name(at) == "x" * most  # an empty name keeps the old one

    at.button(key="blank_net").click().run()
    assert net_name(at) == "blank" and not at.error and not at.exception
    blank = at.session_state["net"]
    assert len(blank["blocks"]) == 1 and len(blank["blocks"][0]["layers"]) == 1
    assert at.metric[0].value == f"{trace(Net.from_dict(blank)).params:,}"
    at.slider(key="w_0_0_out").set_value(24).run()
    assert net_name(at) == "blank (edited)"
    at.text_input(key="w_name").set_value("tiny one").run()

    at.switch_page("../pages/train.py").run()
    assert any("Start trains **tiny one**" in shown(m.value) for m in at.markdown), [m.value for m in at.markdown]
    assert any("architecture tiny one → fast" in shown(c.value) for c in at.caption)  # what Load recipe changes
    at.number_input(key="t_subset").set_value(60)
    at.number_input(key="t_epochs").set_value(1)
    at.button(key="t_start").click().run()
    assert not at.exception and not at.error
    run_id = at.session_state["watch"]
    assert server.store().get(run_id).name == "tiny one"
    assert wait_for_run(at) == "finished"
    runs = at.switch_page("../pages/runs.py").run()
    table = runs.dataframe[0].value.set_index("id")
    assert table.loc[run_id, "name"] == "tiny one"


@pytest.mark.parametrize("epochs, expected, says", [
    (5, (24, 2), "the first 2 of 5 epochs at 24 px"), (2, (0, 0), "resizing is off for 2 epochs")])
def test_a_shortened_recipe_keeps_its_share_of_low_res_epochs_as_the_cli_does(app_env, epochs, expected, says):
    """fast trains 8 of 20 epochs at 24 px: at 5 epochs, 8 would not fit and the run was refused."""
    at = open_page("train")
    at.selectbox(key="t_recipe").set_value("fast")
    at.button(key="t_load_recipe").click().run()
    at.number_input(key="t_subset").set_value(60)
    at.number_input(key="t_epochs").set_value(epochs)
    at.button(key="t_start").click().run()
    assert not at.exception and not at.error, [shown(e.value) for e in at.error]
    assert any(says in shown(i.value) for i in at.info), [shown(i.value) for i in at.info]
    assert wait_for_run(at) == "finished"
    train = server.store().get(at.session_state["watch"]).spec["train"]
    assert (train["epochs"], train["low_res"], train["low_res_epochs"]) == (epochs, *expected)


def test_low_res_epochs_set_by_the_visitor_are_kept_and_checked(app_env):
    at = open_page("train")
    at.selectbox(key="t_recipe").set_value("fast")
    at.button(key="t_load_recipe").click().run()
    at.number_input(key="t_epochs").set_value(5)
    at.number_input(key="t_lowres_ep").set_value(6)
    at.button(key="t_start").click().run()
    assert not at.exception and "watch" not in at.session_state
    assert any("fewer than the 5 epochs" in shown(e.value) for e in at.error), [shown(e.value) for e in at.error]


def test_train_loads_each_recipe(app_env):
    """Every recipe's settings must fit the form's widgets (record trains for 162 epochs, seed-001 in
    batches of 64); the list says which are measured. One page, each recipe loaded over the last, as
    a visitor comparing them would."""
    at = open_page("train")
    for name, recipe in RECIPES.items():
        at.selectbox(key="t_recipe").set_value(name)
        label = at.selectbox(key="t_recipe").format_func(name)
        assert (f"measured {recipe.measured.test_acc:.2f}%" if recipe.measured else "not yet measured") in label
        at.button(key="t_load_recipe").click().run()
        assert not at.exception, name
        assert at.session_state["net"]["name"] == recipe.preset
        assert [t["name"] for t in at.session_state["aug"]["transforms"]] == [t.name for t in recipe.aug.transforms]
        t = recipe.train
        assert (at.number_input(key="t_epochs").value, at.number_input(key="t_eval").value) == (t.epochs, t.eval_every)
        assert at.checkbox(key="t_tta").value == t.tta and at.number_input(key="t_subset").value == 0
        assert at.slider(key="t_ls").value == t.label_smoothing  # the seeds' recipes use none
        assert (at.number_input(key="t_lr").value, at.select_slider(key="t_batch").value) == (t.max_lr, t.batch_size)
        assert (at.checkbox(key="t_bf16").value, at.number_input(key="t_ema").value, at.checkbox(key="t_altflip").value,
                at.checkbox(key="t_whiten").value, at.checkbox(key="t_fixbn").value,
                at.number_input(key="t_lowres").value, at.number_input(key="t_lowres_ep").value) == (
            t.bf16, t.ema, t.alternate_flip, t.whiten, t.fixed_bn_scale, t.low_res, t.low_res_epochs), name


def test_a_recipe_over_the_hosted_limits_is_one_line_and_changes_nothing(app_env, monkeypatch):
    """record trains for 162 epochs; a hosted demo allows 100: Load recipe showed a traceback."""
    monkeypatch.setenv("PLAYGROUND_HOSTED", "1")
    at = open_page("train")
    before = at.session_state["net"]
    at.selectbox(key="t_recipe").set_value("record")
    at.button(key="t_load_recipe").click().run()
    assert not at.exception
    assert [shown(e.value) for e in at.error] == [
        "The record recipe does not fit this server's limits: epochs must be between 1 and 100, got 162"]
    assert at.number_input(key="t_epochs").value == 2 and at.session_state["net"] == before

"""AppTest for every page, on synthetic data (PLAYGROUND_DATA) and a temporary run store."""
import json
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from playground.training.trainer import StopSignal
from playground import escape
from playground.ui import server, share_links
from playground.runs.runner import execute
from playground.specs.arch import Net
from playground.specs.augment import AugSpec
from playground.specs.config import RunSpec, TrainSpec
from playground.specs.presets import preset_net
from playground.training.data import load_dataset

APP = str(Path(__file__).resolve().parents[1] / "playground" / "app.py")


@pytest.fixture
def app_env(image_folder, monkeypatch):
    monkeypatch.setenv("PLAYGROUND_DATA", str(image_folder))
    st.cache_resource.clear()
    st.cache_data.clear()
    yield image_folder
    st.cache_resource.clear()


def open_page(page: str, **state) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    for k, v in state.items():
        at.session_state[k] = v
    at.run()
    if page != "home":
        at.switch_page(f"../pages/{page}.py").run()
    assert not at.exception, at.exception
    return at


def test_home_lists_presets_and_data(app_env):
    at = open_page("home")
    assert "CIFAR-10 CNN Playground" in at.title[0].value
    assert any("120 training" in shown(s.value) for s in at.success)
    presets = at.dataframe[0].value.set_index("preset")
    assert presets.loc["record", "measured on"] == "H100 GPU" and presets.loc["record", "measured acc"] == "90.66%"


def test_home_explains_missing_data(app_env, monkeypatch, tmp_path):
    monkeypatch.setenv("PLAYGROUND_DATA", str(tmp_path / "nothing"))
    at = open_page("home")
    assert any("No dataset is available" in shown(w.value) for w in at.warning)


def test_architect_width_changes_params_and_errors_inline(app_env):
    at = open_page("architect")
    before = at.metric[0].value
    at.slider(key="w_0_0_out").set_value(64).run()
    assert not at.exception and at.metric[0].value != before
    at.text_area(key="json_text").set_value("{broken").run()
    at.button(key="apply_json").click().run()
    assert any("invalid JSON" in shown(e.value) for e in at.error) and not at.exception
    bad = preset_net("fast")
    bad.blocks[0].layers[0].out = 0
    at.text_area(key="json_text").set_value(bad.to_json()).run()
    at.button(key="apply_json").click().run()
    assert any("C1 layer 1: channels" in shown(e.value) for e in at.error)


def test_architect_residual_units(app_env):
    at = open_page("architect")
    at.toggle(key="w_1_skip").set_value(True).run()
    one_residual = at.metric[0].value
    at.selectbox(key="w_1_every").set_value(1).run()
    assert not at.exception and at.metric[0].value != one_residual
    assert at.session_state["net"]["blocks"][1]["skip_every"] == 1


def test_architect_pool_toggle_moves_the_pool_before_the_norm(app_env):
    at = open_page("architect", net=preset_net("fast").to_dict())
    assert at.toggle(key="w_0_0_pool").value and at.metric[3].value == "288×4×4"
    at.toggle(key="w_0_0_pool").set_value(False).run()
    assert not at.exception and at.session_state["net"]["blocks"][0]["layers"][0]["order"] == "bn-relu"
    assert at.metric[3].value == "288×8×8" and not at.toggle(key="w_0_0_pool").value
    at.selectbox(key="w_0_0_k").set_value(5).run()  # another edit of the row keeps the choice
    assert at.session_state["net"]["blocks"][0]["layers"][0]["order"] == "bn-relu"
    at.toggle(key="w_0_0_pool").set_value(True).run()
    assert at.session_state["net"]["blocks"][0]["layers"][0]["order"] == "pool-bn-relu"
    assert at.metric[3].value == "288×4×4"
    at.selectbox(key="w_0_0_kind").set_value("maxpool").run()  # a pool layer has no norm to pool before
    assert at.session_state["net"]["blocks"][0]["layers"][0]["order"] == "none" and at.toggle(key="w_0_0_pool").disabled


def test_architect_impossible_spec_is_explained(app_env):
    at = open_page("architect")
    at.selectbox(key="w_3_0_kind").set_value("maxpool").run()  # C4 sees a 4x4 map in the fast preset
    at.selectbox(key="w_3_0_k").set_value(7).run()
    assert not at.exception
    assert any("cannot be built" in shown(e.value) and "needs at least" in shown(e.value) for e in at.error)


def shown(markdown: str) -> str:
    """What a visitor reads of an escaped message: backslash escapes and word joiners dropped."""
    import re

    return re.sub(r"\\(.)", r"\1", markdown).replace("\u2060", "")


def test_a_visitors_text_never_becomes_markup_on_another_visitors_page():
    """Names and specs in messages are a stranger's text: no link, image, emphasis or colour survives
    escape.plain, bare URLs and addresses are not linked, and a message is cut to PLAIN_CHARS."""
    import re

    attack = "**Session expired** [log in](https://evil.example/a) ![](http://x/p.png) :red[x] $x$ <b>h</b> www.evil.example me@evil.example"
    escaped = escape.plain(attack)
    assert shown(escaped) == attack
    assert not re.search(r"(?<!\\)[*\[\]()!<>$:`]", escaped.replace("(", "").replace(")", ""))
    assert "://" not in escaped and "www." not in escaped and "e@" not in escaped
    assert len(escape.plain("x" * 10 ** 6)) == escape.PLAIN_CHARS
    listed = escape.bullets([f"problem {i}" for i in range(9000)])
    assert listed.count("\n- ") == 8 and "8,992 more problems" in listed


def test_a_share_link_and_a_run_name_show_as_text_on_the_page(app_env):
    """The reviewer's two ways in: a layer kind in a share link (quoted in the link's error) and a run name
    (in the Train page's progress line, which every visitor watching the run sees)."""
    import base64
    import re
    import zlib

    evil = "**Session expired** [log in again](https://evil.example/login)"
    spec = preset_net("fast").to_dict()
    spec["blocks"][0]["layers"][0]["kind"] = evil
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params["arch"] = base64.urlsafe_b64encode(zlib.compress(json.dumps(spec).encode())).decode()
    at.switch_page("../pages/architect.py").run()
    assert not at.exception and len(at.error) == 1
    assert evil[:30] in shown(at.error[0].value) and "https://" not in at.error[0].value
    assert "[log in again]" not in at.error[0].value and "**Session" not in at.error[0].value
    data = load_dataset(str(app_env))
    net = preset_net("fast")
    net.name = evil[:50]
    run_id, _ = execute(server.store(), RunSpec(net, train=TrainSpec(epochs=1, batch_size=32, device="cpu"),
                                            data=str(app_env)), data, [])
    train = open_page("train")
    train.query_params["run"] = run_id
    train.run()
    texts = [p.proto.text for p in train.get("progress")]
    assert texts and all(not re.search(r"(?<!\\)\*\*|(?<!\\)\]\(|https?://", t) for t in texts), texts


def test_architect_json_editor_refuses_hostile_text_in_one_line_and_keeps_the_spec(app_env):
    at = open_page("architect")
    before = at.session_state["net"]
    big = json.dumps({**preset_net("fast").to_dict(), "in_channels": 10 ** 6})
    for text, words in (("[" * 50_000, "nested more than"), ('{"name": "\\ud800"}', "not valid Unicode"),
                        ('{"seed": ' + "9" * 5000 + "}", "thousands of digits"), (big, "channels must be between 1 and")):
        at.text_area(key="json_text").set_value(text).run()
        at.button(key="apply_json").click().run()
        assert not at.exception
        assert any(words in shown(e.value) for e in at.error), [shown(e.value) for e in at.error]
        assert at.session_state["net"] == before


def test_share_link_restores_and_a_bad_link_is_refused_with_one_error(app_env):
    import base64
    import json
    import zlib

    at = AppTest.from_file(APP, default_timeout=60)
    net = preset_net("seed-004")
    at.query_params.update(share_links.share_query(net, AugSpec()))
    at.run()
    assert Net.from_dict(at.session_state["net"]) == net
    foo = json.loads(json.dumps(net.to_dict()).replace('"sep"', '"foo"'))
    for raw, words in (("not-base64!!", "damaged"),
                       (base64.urlsafe_b64encode(zlib.compress(json.dumps(foo).encode())).decode(),
                        "unknown layer kind 'foo'"),
                       (base64.urlsafe_b64encode(zlib.compress(json.dumps(
                           {**net.to_dict(), "version": 2.0}).encode())).decode(), "version")):
        bad = AppTest.from_file(APP, default_timeout=60)
        bad.query_params["arch"] = raw
        bad.run()  # Home: the page the link opens says it
        assert not bad.exception and any(words in shown(e.value) for e in bad.error), [shown(e.value) for e in bad.error]
        bad.switch_page("../pages/architect.py").run()
        assert Net.from_dict(bad.session_state["net"]) == preset_net("fast")  # the visitor's spec is untouched
    both = AppTest.from_file(APP, default_timeout=60)  # two bad parts: two lines (the second had replaced the first)
    both.query_params.update(arch="not-base64!!", aug="not-base64!!")
    both.switch_page("../pages/train.py").run()  # a link that opens Train, where a visitor may start at once
    assert [shown(e.value).split(":")[0] for e in both.error] == ["The share link's arch part was ignored",
                                                                 "The share link's aug part was ignored"]
    assert both.get("form")  # the Train page itself is drawn below the lines


def test_augment_preview_and_pipeline_editing(app_env):
    at = open_page("augment")
    assert len(at.get("image")) >= 1
    n = len(at.session_state["aug"]["transforms"])
    at.selectbox(key="add_name").set_value("ToGray").run()
    at.button(key="add").click().run()
    assert len(at.session_state["aug"]["transforms"]) == n + 1
    at.button(key="rm_0").click().run()
    assert len(at.session_state["aug"]["transforms"]) == n and not at.exception
    at.slider(key="a_1_CoarseDropout_p").set_value(1.0).run()
    assert at.session_state["aug"]["transforms"][1]["p"] == 1.0
    at.button(key="resample").click().run()
    assert not at.exception


def wait_for_run(at: AppTest, timeout: float = 90) -> str:
    return server.launcher().wait(at.session_state["watch"], timeout).status


def test_train_runs_a_worker_and_refuses_a_second_run_per_visitor(app_env, monkeypatch):
    monkeypatch.setenv("PLAYGROUND_HOSTED", "1")
    at = open_page("train")
    at.number_input(key="t_subset").set_value(60)  # form values are sent with the submit click
    at.number_input(key="t_epochs").set_value(1)
    at.selectbox(key="t_shift").set_value(1)
    at.checkbox(key="t_bf16").set_value(True)  # fp32 where the CPU has no bf16 units: the spec says what was asked
    at.number_input(key="t_ema").set_value(0.9)
    at.button(key="t_start").click().run()
    assert not at.exception and not at.error and "watch" in at.session_state
    run_id = at.session_state["watch"]
    record = server.store().get(run_id)
    assert record.owner == at.session_state["owner"] and record.pid is not None  # a worker process, not a thread
    at.button(key="t_start").click().run()
    assert any("already running for you" in shown(e.value) for e in at.error)
    assert wait_for_run(at) == "finished"
    assert {k: server.store().get(run_id).spec["train"][k] for k in ("tta_shift", "bf16", "ema")} == dict(
        tta_shift=1, bf16=True, ema=0.9)
    at.run()
    assert any(f"Finished run {run_id}" in shown(s.value) for s in at.success)
    assert at.button(key="stop").disabled and at.button(key="resume").disabled


def test_train_rejects_missing_device(app_env):
    import torch
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    at = open_page("train")
    at.selectbox(key="t_device").set_value("cuda")
    at.button(key="t_start").click().run()
    assert any("no CUDA GPU" in shown(e.value) for e in at.error)


def test_server_busy_message(app_env, monkeypatch):
    monkeypatch.setattr(server.launcher(), "limit", 0)
    at = open_page("train")
    at.number_input(key="t_subset").set_value(60)
    at.button(key="t_start").click().run()
    assert any("server is busy" in shown(e.value) for e in at.error)


def test_train_distils_from_a_chosen_teacher(app_env):
    from playground.training.sources import resolve_source
    data = load_dataset(str(app_env))
    teacher = RunSpec(preset_net("fast"), train=TrainSpec(epochs=1, batch_size=32, device="cpu"),
                      data=resolve_source(None))
    teacher_id = execute(server.store(), teacher, data)[0]
    _stored_run(app_env)  # trained on another source: not offered, it may have seen the test images
    at = open_page("train")
    best = server.store().get(teacher_id).best_acc
    assert at.multiselect(key="t_teachers").options == [f"fast · {teacher_id} · {best:.1%}"]
    at.number_input(key="t_subset").set_value(60)
    at.number_input(key="t_epochs").set_value(1)
    at.multiselect(key="t_teachers").select(teacher_id)
    at.button(key="t_start").click().run()
    assert not at.exception and not at.error, [shown(e.value) for e in at.error]
    assert wait_for_run(at) == "finished"
    assert server.store().get(at.session_state["watch"]).spec["train"]["teachers"] == [teacher_id]


def _stored_run(image_folder) -> str:
    data = load_dataset(str(image_folder))
    run = RunSpec(preset_net("fast"), train=TrainSpec(epochs=1, batch_size=32, device="cpu"))
    return execute(server.store(), run, data)[0]


def test_results_and_runs_pages(app_env):
    run_id = _stored_run(app_env)
    at = open_page("results")
    assert at.metric[0].label == "Test accuracy"
    record = server.store().get(run_id)
    assert at.metric[0].value == f"{record.epochs[-1]['test_acc']:.2%}"  # the accuracy the run recorded
    assert any("Equal to the accuracy the run recorded at epoch" in shown(c.value) for c in at.caption)
    assert len(at.get("image")) > 2  # the gallery and the Grad-CAM pair
    at.selectbox(key="r_sort").set_value("confidence").run()
    at.slider(key="r_alpha").set_value(0.8).run()
    assert not at.exception
    plain_tiles = [im.proto.imgs[0].url for im in at.get("image")]
    at.toggle(key="r_tile_cam").set_value(True).run()  # the gallery's tiles with their Grad-CAM, one batch
    with_cam = [im.proto.imgs[0].url for im in at.get("image")]
    assert not at.exception and len(with_cam) == len(plain_tiles) and with_cam[:-2] != plain_tiles[:-2]
    at.selectbox(key=f"r_shift_{run_id}").set_value(1).run()
    assert not at.exception and at.metric[0].label == "Test accuracy"
    runs = open_page("runs")
    assert run_id in runs.dataframe[0].value["id"].tolist()
    runs.selectbox(key="manage_pick").set_value(run_id).run()
    runs.checkbox(key="del_confirm").check().run()
    runs.button(key="del_go").click().run()
    assert server.store().get(run_id) is None and not runs.exception
    assert any(f"Deleted {run_id}" in shown(s.value) for s in runs.success)


def test_results_evaluates_a_run_anew_when_its_checkpoint_changes(app_env):
    """A resumed run saves new weights under the same run id: the cached evaluation is keyed by the
    checkpoint's hash, so the page shows the new weights' accuracy, and downloads the new file."""
    run_id = _stored_run(app_env)
    at = open_page("results")
    before = at.metric[0].value
    store = server.store()
    ckpt = store.load_checkpoint(run_id)
    ckpt["state_dict"]["head.fc.weight"].zero_()  # equal logits: every image gets class 0, 10% of balanced data
    store.save_checkpoint(run_id, ckpt)
    at.run()
    assert not at.exception and at.metric[0].value == "10.00%" != before, (before, at.metric[0].value)
    assert at.get("download_button")[0].proto.label == "checkpoint (.pt)"


def test_results_refuses_an_evaluation_over_the_budget_in_one_line_and_recovers(app_env, monkeypatch):
    """The page evaluates in the server's process: shift TTA (18 views) over eval_macs is refused in one
    line, with the TTA controls still there; flip alone fits and shows the accuracy."""
    from dataclasses import replace

    from playground.specs import limits
    from playground.specs.geometry import trace

    run_id = _stored_run(app_env)
    one_pass = len(load_dataset(str(app_env)).y_test) * trace(preset_net("fast")).macs
    monkeypatch.setitem(limits.TIERS, "local", replace(limits.TIERS["local"], eval_macs=4 * one_pass))
    at = open_page("results")
    at.toggle(key=f"r_tta_{run_id}").set_value(True).run()
    assert not at.error and at.metric[0].label == "Test accuracy"
    at.selectbox(key=f"r_shift_{run_id}").set_value(1).run()
    assert not at.exception and not at.metric
    assert len(at.error) == 1 and shown(at.error[0].value).startswith("eval_macs: evaluating run ")
    assert "18 TTA views" in shown(at.error[0].value) and "use fewer TTA views" in shown(at.error[0].value)
    at.selectbox(key=f"r_shift_{run_id}").set_value(0).run()
    assert not at.exception and not at.error and at.metric[0].label == "Test accuracy"


def test_results_says_in_one_line_when_other_evaluations_held_the_server_too_long(app_env, monkeypatch):
    """Evaluations in the server take turns; a visitor kept waiting past TURN_WAIT_S gets one line and
    the page works again once the other evaluation is over."""
    import playground.results.evaluate as ev

    _stored_run(app_env)
    monkeypatch.setattr(ev, "TURN_WAIT_S", 0.2)
    with ev.TURN:  # another visitor's evaluation, still going
        at = open_page("results")
    assert not at.exception and not at.metric
    assert len(at.error) == 1 and shown(at.error[0].value).startswith("the server has been evaluating other runs")
    at.toggle(key=at.toggle[0].key).set_value(True).run()  # a new setting: evaluated, not the cached refusal
    assert not at.exception and not at.error and at.metric[0].label == "Test accuracy"


def test_results_handles_deleted_run(app_env):
    run_id = _stored_run(app_env)
    at = open_page("results")
    server.store().checkpoint_path(run_id).unlink()
    at.run()
    assert any("deleted" in shown(e.value) or "No finished runs" in shown(e.value) for e in at.error) or at.info
    assert not at.exception


def test_a_run_stopped_in_its_first_epoch_says_it_has_nothing_to_resume(app_env):
    data = load_dataset(str(app_env))
    stop = StopSignal()

    def stop_in_epoch_one(event):
        if event.kind == "batch":
            stop.set()

    run = RunSpec(preset_net("fast"), train=TrainSpec(epochs=3, batch_size=32, device="cpu"), data=str(app_env))
    run_id, result = execute(server.store(), run, data, [stop_in_epoch_one], stop)
    assert result.status == "stopped" and server.store().get(run_id).epochs == []
    at = open_page("train", watch=run_id)
    said = [shown(w.value) for w in at.warning]
    assert any("nothing to resume" in w for w in said) and not any("saved with run" in w for w in said), said
    assert at.button(key="resume").disabled


def test_runs_page_resumes_a_stopped_run_to_its_planned_epochs(app_env):
    data = load_dataset(str(app_env))
    stop = StopSignal()

    def stop_in_epoch_two(event):
        if event.kind == "batch" and event.data["epoch"] == 2:
            stop.set()

    run = RunSpec(preset_net("fast"), train=TrainSpec(epochs=3, batch_size=32, device="cpu"), data=str(app_env))
    run_id, result = execute(server.store(), run, data, [stop_in_epoch_two], stop)
    assert result.status == "stopped" and len(server.store().get(run_id).epochs) == 1
    at = open_page("runs")
    at.selectbox(key="manage_pick").set_value(run_id).run()
    at.button(key="run_resume").click().run()
    assert not at.exception and any(f"Resuming {run_id}" in shown(s.value) for s in at.success)
    record = server.launcher().wait(run_id, 120)
    assert record.status == "finished" and [e["epoch"] for e in record.epochs] == [1, 2, 3]


def test_a_damaged_run_store_is_one_error_line_on_every_page(app_env, monkeypatch, tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    (runs / "runs.sqlite").write_bytes(b"this is not a database" * 100)
    monkeypatch.setenv("PLAYGROUND_RUNS", str(runs))
    for page in ("train", "results", "runs"):
        at = AppTest.from_file(APP, default_timeout=60)
        at.run()
        at.switch_page(f"../pages/{page}.py").run()
        assert not at.exception, (page, at.exception)
        assert any("run store cannot be used" in shown(e.value) and "damaged" in shown(e.value) for e in at.error), \
            (page, [shown(e.value) for e in at.error])


def test_results_classifies_an_uploaded_photo_and_compares_two_runs(app_env):
    import io

    import numpy as np
    from PIL import Image

    first, second = _stored_run(app_env), _stored_run(app_env)
    at = open_page("results", last_run_id=first)
    at.selectbox(key="r_other").set_value(second).run()
    assert not at.exception and not at.error, [shown(e.value) for e in at.error]
    assert any("A alone is right on" in shown(c.value) for c in at.caption), [shown(c.value) for c in at.caption]
    photo = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(photo, "PNG")
    at.file_uploader(key="r_photo").set_value(("cat.png", photo.getvalue(), "image/png")).run()
    assert not at.exception and not at.error, [shown(e.value) for e in at.error]
    (top,) = [d.value for d in at.dataframe if list(d.value.columns) == ["class", "probability"]]
    assert len(top) == 3 and set(top["class"]) <= set(load_dataset(str(app_env)).classes)
    at.file_uploader(key="r_photo").set_value(("cat.png", b"not an image at all", "image/png")).run()
    assert not at.exception and any("the photo cannot be used: not an image" in shown(e.value) for e in at.error)

"""Real-browser tests that what a student sees at 1280x800 is true (issue 32): rules that a no-op does not
pass, whole-number and distinct ticks, messages that match the stored state, labels not cut, the net Start
trains named, an estimate before Start, and a server log without Streamlit's warnings after the walk."""
import re
import subprocess
import sys
from dataclasses import replace

import pytest

from playground.runs.store import RunStore
from playground.specs.config import RunSpec, TrainSpec
from playground.specs.presets import preset_net

from .browser import ROOT, needs_chromium, new_page, settle, streamlit_server
from .test_browser_state import browser, choose  # noqa: F401 - browser is a module-scoped fixture

pytestmark = needs_chromium
expect = pytest.importorskip("playwright.sync_api").expect
PAGES = ("", "augment", "architect", "train", "results", "inside", "runs", "sweep")
# text that overflows its box and is clipped (an ellipsis, or hidden overflow) on a visible element
CUT = """() => [...document.querySelectorAll('[data-testid=stMain] *')].filter(e => {
  if (!e.offsetParent || !e.innerText || !e.innerText.trim() || e.children.length > 3) return false;
  const cs = getComputedStyle(e);
  return e.scrollWidth > e.clientWidth + 1 && (cs.textOverflow === 'ellipsis' || cs.overflowX === 'hidden');
}).map(e => e.innerText.slice(0, 80))"""


@pytest.fixture(scope="module")
def site(image_folder, tmp_path_factory):
    """One server, with a finished run (trained by the CLI) and a run stopped before its first epoch ended."""
    runs = tmp_path_factory.mktemp("truth-runs")
    subprocess.run([sys.executable, "-m", "playground", "train", "--preset", "seed-004", "--epochs", "3",
                    "--batch-size", "16", "--device", "cpu", "--data", str(image_folder), "--runs", str(runs),
                    "--quiet"], cwd=ROOT, check=True, timeout=300)
    store = RunStore(runs)
    finished = store.list()[0].id
    run = RunSpec(preset_net("fast"), train=TrainSpec(epochs=3, device="cpu"), data=str(image_folder))
    early = store.create("stopped early", run.to_dict(), params=1, device="cpu")
    store.finish(early, "stopped", "stopped by request during epoch 1")
    resumable = stopped_in_epoch_two(store, image_folder)
    log = runs.parent / "truth-server.log"
    with streamlit_server(image_folder, runs, log=log) as url:
        yield dict(url=url, finished=finished, early=early, resumable=resumable, log=log)


def stopped_in_epoch_two(store: RunStore, image_folder) -> str:
    """A run stopped after its first epoch was saved: one that Resume continues."""
    from playground.runs.runner import execute
    from playground.training.data import load_dataset
    from playground.training.trainer import StopSignal

    stop = StopSignal()
    run = RunSpec(preset_net("seed-004"), train=TrainSpec(epochs=3, batch_size=32, device="cpu"),
                  data=str(image_folder))
    run_id, result = execute(store, run, load_dataset(str(image_folder)),
                             [lambda e: e.kind == "batch" and e.data["epoch"] == 2 and stop.set()], stop)
    assert result.status == "stopped"
    return run_id


@pytest.fixture
def page(browser, site):
    with new_page(browser, 1280, 800) as page:
        yield page


def visit(page, site, path: str) -> None:
    page.goto(f"{site['url']}/{path}")
    page.get_by_test_id("stSidebarNav").wait_for(timeout=60_000)
    settle(page, 120_000)


def ticks(chart, axis: str) -> list[str]:
    """The tick labels plotly drew on one axis of a chart (xtick, ytick, x2tick, y2tick, …)."""
    return [t for t in chart.locator(f"g.{axis} text").all_text_contents() if t.strip()]


def test_a_dilated_1x1_conv_does_not_pass_the_rule_and_its_dilation_is_not_offered(page, site):
    visit(page, site, "architect")
    net = preset_net("seed-001")
    blocks = [replace(b, layers=[replace(layer, dilation=1) for layer in b.layers]) for b in net.blocks]
    blocks[2].layers[1] = replace(blocks[2].layers[1], dilation=2)  # a 1x1 conv: one tap, nothing to spread
    page.get_by_text("Advanced: edit the JSON spec").click()
    text = page.get_by_label("Architecture JSON")
    text.fill(replace(net, name="one-tap dilation", blocks=blocks).to_json())
    text.press("Control+Enter")
    settle(page)
    page.get_by_role("button", name="Apply JSON").click()
    settle(page)
    board = page.locator(".st-key-arch_board")
    expect(board).to_contain_text("✗ dilated + depthwise")
    expect(board).not_to_contain_text("✓ dilated + depthwise")
    for box in page.get_by_role("combobox", name="dilation").all():  # each 1x1 row's dilation is disabled
        row = box.locator("xpath=ancestor::div[contains(@class, 'st-key-arch_row_')]")
        if row.get_by_role("combobox", name="kernel").input_value() == "1":
            expect(box).to_be_disabled()


def test_every_chart_has_whole_epoch_ticks_and_distinct_labels(page, site):
    visit(page, site, f"train?run={site['finished']}")
    chart = page.locator(".js-plotly-plot").first
    expect(chart).to_be_visible(timeout=60_000)
    for axis in ("xtick", "x2tick", "x3tick"):
        labels = ticks(chart, axis)
        assert labels and all(re.fullmatch(r"\d+", t) for t in labels), (axis, labels)
    accuracy = ticks(chart, "y2tick")
    assert len(accuracy) == len(set(accuracy)) >= 2 and all(t.endswith("%") for t in accuracy), accuracy
    visit(page, site, "runs")
    chart = page.locator(".js-plotly-plot").first
    expect(chart).to_be_visible()
    assert all(re.fullmatch(r"\d+", t) for t in ticks(chart, "xtick")), ticks(chart, "xtick")
    percent = ticks(chart, "ytick")
    assert len(percent) == len(set(percent)) and all(0 <= float(t.rstrip("%")) <= 100 for t in percent), percent
    assert chart.locator("g.legend").count() == 1
    visit(page, site, "architect")
    rf = page.locator(".js-plotly-plot").first
    rf.scroll_into_view_if_needed()
    for axis in ("ytick", "y2tick"):
        labels = ticks(rf, axis)
        assert labels and all(re.fullmatch(r"\d+", t) for t in labels), (axis, labels)


def test_a_run_stopped_before_its_first_epoch_says_there_is_nothing_to_resume(page, site):
    visit(page, site, f"train?run={site['early']}")
    main = page.get_by_test_id("stMain")
    expect(main).to_contain_text("Nothing is saved")
    expect(main).not_to_contain_text("is saved with run")
    expect(page.locator(".st-key-resume button")).to_be_disabled()
    expect(main.locator(".js-plotly-plot").first).to_contain_text("no test yet")


def test_no_label_is_cut_at_1280x800(page, site):
    for path in (*PAGES, f"train?run={site['finished']}"):  # the followed run's Stop and Resume too
        visit(page, site, path)
        assert page.evaluate(CUT) == [], path or "home"
    visit(page, site, "runs")
    choose(page, "Run", 0, site["early"])  # typed, as a list opening below the window shows nothing
    page.get_by_text(f"Yes, delete run {site['early']}").click()
    settle(page)
    expect(page.get_by_role("button", name="Delete", exact=True)).to_be_visible()
    assert page.evaluate(CUT) == []


def test_the_train_page_names_what_start_trains_and_estimates_it(page, site):
    visit(page, site, "architect")
    page.get_by_role("combobox", name="Start from a preset").click()
    page.get_by_role("option", name=re.compile(r"^seed-000")).click()
    settle(page)
    page.get_by_role("button", name="Load preset").click()
    settle(page)
    page.get_by_role("slider").nth(2).focus()  # C1's first width: an edit renames the net
    page.keyboard.press("ArrowRight")
    settle(page)
    page.get_by_test_id("stSidebarNavItems").get_by_role("link", name="Train").click()
    settle(page)
    main = page.get_by_test_id("stMain")
    expect(main).to_contain_text("Start trains seed-000 (edited)")
    expect(main).to_contain_text("Load recipe sets architecture seed-000 (edited) → fast")
    page.get_by_role("button", name="Estimate time").click()
    expect(main).to_contain_text(re.compile(r"Expected: about \d+:\d\d per epoch"), timeout=120_000)


SHAPES = """() => [...document.querySelectorAll('.js-plotly-plot')].flatMap(el => {
  const fl = el._fullLayout;
  return (el.layout.shapes || []).filter(s => s.name === 'theoretical RF').map(s => ({
    x0: s.x0, x1: s.x1, y0: s.y0, y1: s.y1,
    px: [fl.xaxis.l2p(s.x0) + fl.xaxis._offset, fl.xaxis.l2p(s.x1) + fl.xaxis._offset],
    drawn: [...el.querySelectorAll('.shapelayer path')].map(p => p.getBoundingClientRect().width)
      .map(w => Math.round(w)), left: el.getBoundingClientRect().left}));
})"""


def test_the_inside_view_draws_a_picked_units_field_where_the_trace_puts_it(page, site):
    from playground.results import inside
    from playground.specs.geometry import trace

    visit(page, site, "inside")
    page.get_by_text("A finished run's weights").click()
    settle(page, 120_000)
    choose(page, "Run", 0, site["finished"])
    settle(page, 120_000)
    choose(page, "Layer", 0, "C2.1")
    settle(page)
    row = trace(preset_net("seed-004")).rows[3]
    assert inside.layer_id(row) == "C2.1"
    for label, value in ((f"Row (0 to {row.n - 1})", 0), (f"Column (0 to {row.n - 1})", 3)):
        field = page.get_by_label(label)
        field.fill(str(value))
        field.press("Enter")
        settle(page)
    box = inside.theoretical_box(row, 0, 3)
    expect(page.get_by_test_id("stMetric").first).to_contain_text(f"{row.r:g} px")
    shapes = page.evaluate(SHAPES)
    assert len(shapes) == 1, shapes
    s = shapes[0]
    assert (s["x0"], s["x1"], s["y0"], s["y1"]) == (box.left - 0.5, box.right + 0.5, box.top - 0.5, box.bottom + 0.5)
    width = s["px"][1] - s["px"][0]  # the box's side on the screen: the trace's RF times the pixels per image pixel
    assert round(width) in s["drawn"] or round(width) + 1 in s["drawn"] or round(width) - 1 in s["drawn"]


def test_a_walk_of_every_page_leaves_no_warning_in_the_server_log(page, site):
    """Last in the module: the log holds every earlier test's walk too. Resume is pressed in the Train page's
    live fragment first: a callback that drew there (a toast) was logged as a warning."""
    visit(page, site, f"train?run={site['resumable']}")
    page.get_by_role("button", name="Resume").click()
    expect(page.get_by_text(f"Resuming run {site['resumable']}")).to_be_visible(timeout=30_000)
    for path in PAGES:
        visit(page, site, path)
    for name in ("Train", "Runs", "Train"):  # in one session: back to the form after another page, its kept
        page.get_by_test_id("stSidebarNavItems").get_by_role("link", name=name).click()  # values are written
        settle(page)  # to its widgets again, which warned where a widget also had a default
    lines = [ln for ln in site["log"].read_text(errors="replace").splitlines() if re.search(r"warn|error", ln, re.I)]
    assert lines == []


"""Real-browser tests for widget state that AppTest cannot see (issue 17, Broken 1 and 2): a browser keeps
each widget's value by key, so a page that changes its spec behind the widgets' back shows stale values."""
import re
import subprocess
import sys
import time

import pytest

from playground.specs.arch import Net
from playground.specs.geometry import trace
from playground.specs.presets import preset_net

from .browser import ROOT, chromium, needs_chromium, new_page, settle, streamlit_server

pytestmark = needs_chromium
expect = pytest.importorskip("playwright.sync_api").expect


@pytest.fixture(scope="module")
def server(image_folder, tmp_path_factory):
    """One server for the module, with one finished run (for Results) trained by the CLI beforehand."""
    runs = tmp_path_factory.mktemp("browser-runs")
    subprocess.run([sys.executable, "-m", "playground", "train", "--preset", "fast", "--epochs", "1",
                    "--batch-size", "32", "--device", "cpu", "--data", str(image_folder), "--runs", str(runs),
                    "--quiet"], cwd=ROOT, check=True, timeout=300)
    with streamlit_server(image_folder, runs) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    with chromium() as b:
        yield b


@pytest.fixture
def page(browser, server):
    with new_page(browser, 1400, 1000) as page:
        yield page


def open_architect(page, server) -> None:
    page.goto(f"{server}/architect")
    expect(params(page)).to_have_text(f"{trace(preset_net('fast')).params:,}", timeout=60_000)


def params(page):
    return page.get_by_test_id("stMetricValue").first


def wider(page, slider: int) -> None:
    """One step right on the n-th slider (Blocks, C1 layers, C1 layer 1 width, C1 layer 2 width, ...)."""
    page.get_by_role("slider").nth(slider).focus()
    page.keyboard.press("ArrowRight")


def choose(page, label: str, nth: int, option: str) -> None:
    """Pick an option in the n-th select box with this label (C1's rows come first), typing as a user can.
    Scroll first: a scroll while the list opens closes it again. An Enter pressed before the filtered list
    has drawn picks nothing (CI, under load, kept the old kernel): the typed text then shows until the box
    loses focus, so check after a blur, and type it again as a user would."""
    box = page.get_by_role("combobox", name=label).nth(nth)
    chosen = re.compile(rf"^{re.escape(option)}\b")  # a preset's label goes on after its name
    for attempt in range(3):
        box.evaluate("e => e.scrollIntoView({block: 'center'})")
        box.fill(option)
        page.keyboard.press("Enter")
        box.blur()
        try:
            expect(box).to_have_value(chosen, timeout=5_000)
            break
        except AssertionError:
            if attempt == 2:
                raise
    settle(page)


def json_editor(page):
    text = page.get_by_label("Architecture JSON")
    if not text.is_visible():
        page.get_by_text("Advanced: edit the JSON spec").click()
    return text


def apply_json(page, net: Net) -> None:
    text = json_editor(page)
    text.fill(net.to_json())
    text.press("Control+Enter")  # commit the text before the click
    settle(page)
    json_editor(page)  # reopened if the run collapsed it
    page.get_by_role("button", name="Apply JSON").click()


def assert_shows(page, net: Net) -> None:
    """The metric and the JSON editor both show exactly this spec."""
    expect(params(page)).to_have_text(f"{trace(net).params:,}")
    expect(json_editor(page)).to_have_value(net.to_json())


def assert_layer_counts(page, blocks: int, c1_layers: int) -> None:
    sliders = page.get_by_role("slider")
    expect(sliders.nth(0)).to_have_value(str(blocks))
    expect(sliders.nth(1)).to_have_value(str(c1_layers))


def test_architect_load_preset_then_edit(page, server):
    open_architect(page, server)
    choose(page, "Start from a preset", 0, "seed-002")
    page.get_by_role("button", name="Load preset").click()
    net = preset_net("seed-002")
    expect(params(page)).to_have_text("100,416")
    assert_layer_counts(page, 4, 3)
    assert_shows(page, net)
    choose(page, "dilation", 1, "2")  # C1's grouped 3x3
    net.blocks[0].layers[1].dilation, net.blocks[0].layers[1].padding = 2, 2
    net.name = "seed-002 (edited)"  # named from its origin at the first edit
    assert_shows(page, net)


def test_architect_apply_json_then_edit(page, server):
    open_architect(page, server)
    net = preset_net("seed-001")
    apply_json(page, net)
    expect(params(page)).to_have_text("68,992")
    assert_layer_counts(page, 3, 2)
    assert_shows(page, net)
    wider(page, 2)
    net.blocks[0].layers[0].out += 4
    net.name = "seed-001 (edited)"
    assert_shows(page, net)


def test_architect_keeps_values_outside_the_widget_ranges(page, server):
    open_architect(page, server)
    net = preset_net("seed-001")
    first = net.blocks[0].layers[0]
    first.out, first.kernel, first.padding = 512, 9, 4
    net.blocks[1].layers[1].stride = 3
    dilated = net.blocks[2].layers[0]
    dilated.dilation, dilated.padding = 6, 6
    apply_json(page, net)
    assert_shows(page, net)
    expect(page.get_by_role("slider").nth(2)).to_have_value("512")
    wider(page, 3)  # an unrelated edit leaves the unusual values alone
    net.blocks[0].layers[1].out += 4
    net.name = "seed-001 (edited)"
    assert_shows(page, net)


def pool_toggle(page, nth: int):
    return page.get_by_role("switch", name="pool", exact=True).nth(nth)


def test_architect_pool_toggle_follows_the_spec(page, server):
    """The pooled-conv toggle shows the spec through edits of its own row, and a preset loaded over an edit."""
    open_architect(page, server)
    net = preset_net("fast")
    expect(pool_toggle(page, 0)).to_be_checked()
    pool_toggle(page, 0).evaluate("e => e.scrollIntoView({block: 'center'})")
    pool_toggle(page, 0).click(force=True)
    settle(page)
    net.blocks[0].layers[0].order, net.name = "bn-relu", "fast (edited)"
    assert_shows(page, net)
    expect(page.get_by_test_id("stMetricValue").nth(3)).to_have_text("288×8×8")
    choose(page, "kernel", 0, "5")  # another edit of the same row keeps the toggle's choice
    first = net.blocks[0].layers[0]
    first.kernel, first.padding = 5, 2
    assert_shows(page, net)
    expect(pool_toggle(page, 0)).not_to_be_checked()
    choose(page, "Start from a preset", 0, "fast")
    page.get_by_role("button", name="Load preset").click()
    settle(page)
    assert_shows(page, preset_net("fast"))
    expect(pool_toggle(page, 0)).to_be_checked()


CM = ".st-key-cm .js-plotly-plot"  # the confusion matrix, whichever chart the page mounts first
HAS_HEATMAP = "sel => (gd => gd?.calcdata?.some(c => c?.[0]?.trace?.type === 'heatmap'))(document.querySelector(sel))"
CELL = """gd => {
  const hm = gd.data.findIndex(t => t.type === 'heatmap');
  const z = gd.calcdata[hm][0].z, x = gd.data[hm].x, y = gd.data[hm].y;
  let best = null;
  for (let i = 0; i < z.length; i++) for (let j = 0; j < z[i].length; j++)
    if (i !== j && z[i][j] > 0 && (!best || z[i][j] > best.count)) best = {i, j, count: z[i][j]};
  const xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis, box = gd.getBoundingClientRect();
  return {x: box.left + xa._offset + xa.l2p(best.j), y: box.top + ya._offset + ya.l2p(best.i),
          true: y[best.i], pred: x[best.j], count: best.count};
}"""


def click_cell(page) -> dict:
    """Hover over the off-diagonal cell with the most images, then click it; its classes and count."""
    chart = page.locator(CM)
    page.wait_for_function(HAS_HEATMAP, arg=CM)  # Plotly has laid out this chart's heatmap, not only mounted it
    chart.evaluate("e => e.scrollIntoView({block: 'center'})")  # not under the app's top bar
    cell = chart.evaluate(CELL)
    page.mouse.move(cell["x"], cell["y"])
    page.locator(".hoverlayer .hovertext").wait_for()
    page.mouse.click(cell["x"], cell["y"])
    return cell


def assert_filters(page, true: str, pred: str) -> None:
    for label, value in (("True class", true), ("Predicted class", pred)):
        expect(page.get_by_role("combobox", name=label)).to_have_value(value, timeout=15_000)


def test_results_confusion_cell_filters_gallery(page, server):
    page.goto(f"{server}/results")
    page.get_by_text("Misclassified images", exact=True).wait_for(timeout=60_000)
    cell = click_cell(page)
    assert_filters(page, cell["true"], cell["pred"])
    captions = page.get_by_test_id("stImage").filter(has_text="→")
    expect(captions).to_have_count(min(cell["count"], 24))
    for text in captions.all_inner_texts():
        assert text.startswith(f"{cell['true']} → {cell['pred']} ("), text
    framed = page.locator(CM).evaluate("e => JSON.stringify(e.layout.shapes)")
    choose(page, "True class", 0, "any")  # a filter changed by hand...
    assert_filters(page, "any", cell["pred"])
    page.wait_for_function(  # the chart has redrawn with the new frame (on a loaded machine it lags the script)
        "([sel, old]) => (p => p?.layout && JSON.stringify(p.layout.shapes) !== old)(document.querySelector(sel))",
        arg=[CM, framed])
    click_cell(page)  # ...and a click on the same cell filters to it again
    assert_filters(page, cell["true"], cell["pred"])
    assert page.get_by_test_id("stException").count() == 0


def grid(page):
    """What the Augment grid shows: each picture (the media URL is a hash of its pixels) with its caption."""
    settle(page)
    images = page.get_by_test_id("stMain").get_by_test_id("stImage")
    return [(im.locator("img").get_attribute("src"), im.inner_text().strip()) for im in images.all()]


def stable_grid(page, timeout_s: float = 20, unlike: list | None = None) -> list:
    """The grid once three reads 750 ms apart agree (and, given ``unlike``, differ from it: a click that
    must redraw the pictures): a click's rerun may not have redrawn it yet when settle() returns, and
    a picture read before it would be compared against forever (two agreeing reads were not enough in
    one loaded full-suite run, 2026-12-03)."""
    deadline, shown, agreed = time.monotonic() + timeout_s, grid(page), 0
    while time.monotonic() < deadline:
        page.wait_for_timeout(750)
        again = grid(page)
        agreed = agreed + 1 if again == shown and shown != unlike else 0
        shown = again
        if agreed == 2:
            break
    assert shown != unlike, "the click did not redraw the grid"
    return shown


def expect_grid(page, expected, timeout_s: float = 20, **others) -> None:
    """The grid comes to show ``expected``: a rerun can start after settle() has already seen the
    previous one finished (a loaded machine), so the pictures are polled, not read once. ``others``:
    grids read earlier, named in the failure (which one it shows says what went wrong)."""
    deadline = time.monotonic() + timeout_s
    while (shown := grid(page)) != expected and time.monotonic() < deadline:
        page.wait_for_timeout(250)
    same = [name for name, g in others.items() if g == shown]
    differ = [k for k, (a, b) in enumerate(zip(shown, expected)) if a != b]
    assert shown == expected, f"pictures {differ} differ; the grid equals {same or 'no earlier grid'}"


def assert_samples(page, n: int, cls: str, seed: int) -> None:
    """The sidebar shows these sample settings and the grid draws with them."""
    expect(page.get_by_test_id("stSidebar").get_by_role("slider")).to_have_value(str(n))
    expect(page.get_by_role("combobox", name="Class")).to_have_value(cls)
    expect(page.get_by_label("Seed")).to_have_value(str(seed))
    shown = grid(page)
    assert [caption for _, caption in shown] == [cls] * n, shown


def opened(page, title: str, inside):
    """``inside`` (a locator within the pipeline step titled ``title``), its expander opened first if
    needed. A rerun can redraw the step while it opens (a loaded machine): the click is retried."""
    step = page.get_by_test_id("stExpander").filter(has_text=title)
    expect(step).to_have_count(1, timeout=30_000)
    target = inside(step)
    for _ in range(3):
        if target.is_visible():
            return target
        step.get_by_text(title, exact=True).click()
        try:
            expect(target).to_be_visible(timeout=5_000)
        except AssertionError:
            settle(page)
    expect(target).to_be_visible()
    return target


def pipeline_button(page, title: str, button: str, then: str | None = None) -> None:
    """Click a button in the pipeline step with this title; with ``then`` (the step's title after a move),
    until the step has that title, and for a remove until the step is gone. A click that lands while a
    rerun redraws the step can go to the element being replaced (one loaded full-suite run here drew
    another grid after the moves, most likely the old order; another kept the removed step's grid): a
    user clicks again, and so do we."""
    removing = "remove" in button
    for attempt in range(3):
        opened(page, title, lambda step: step.get_by_role("button", name=button)).click()
        settle(page)
        moved = page.get_by_test_id("stExpander").filter(has_text=then or title)
        try:
            if then or removing:
                expect(moved).to_have_count(0 if removing else 1, timeout=5_000)
            return
        except AssertionError:
            if attempt == 2:
                raise
            settle(page)
            if moved.count() == (0 if removing else 1):  # it was only slow
                return


def step_slider(page, title: str, nth: int = 0):
    """The n-th slider (p first) of the pipeline step with this title, its expander opened."""
    return opened(page, title, lambda step: step.get_by_role("slider").nth(nth))


def test_augment_pipeline_edits_keep_the_sample_settings(page, server):
    page.goto(f"{server}/augment")
    expect(page.get_by_test_id("stMain").get_by_test_id("stImage")).to_have_count(12, timeout=60_000)
    step_slider(page, "2. Affine").focus()
    page.keyboard.press("End")  # Affine always applied
    settle(page)
    page.get_by_test_id("stSidebar").get_by_role("slider").focus()
    page.keyboard.press("ArrowLeft")  # 12 -> 8 samples
    settle(page)
    choose(page, "Class", 0, "cat")
    seed = page.get_by_label("Seed")
    seed.fill("5")
    seed.press("Enter")
    settle(page)
    drawn = stable_grid(page)
    page.get_by_role("button", name="Resample").click()
    expect(page.get_by_label("Seed")).not_to_have_value("5")  # Resample writes the seed it draws with
    settle(page)
    resampled = int(page.get_by_label("Seed").input_value())
    assert_samples(page, 8, "cat", resampled)
    before = stable_grid(page, unlike=drawn)  # a loaded machine had read the grid before Resample redrew it

    page.get_by_role("button", name="Add", exact=True).click()  # a fourth step: HorizontalFlip
    settle(page)
    assert_samples(page, 8, "cat", resampled)
    added = stable_grid(page)
    choose(page, "Add a transform", 0, "ToGray")  # an unrelated interaction: the grid stays as it is
    assert grid(page) == added
    pipeline_button(page, "4. HorizontalFlip", "✕ remove")
    assert_samples(page, 8, "cat", resampled)
    expect_grid(page, before, drawn_before_resample=drawn, with_the_added_step=added)  # same pipeline, same pictures

    pipeline_button(page, "1. HorizontalFlip", "↓ down", then="2. HorizontalFlip")
    assert_samples(page, 8, "cat", resampled)
    expect(step_slider(page, "1. Affine")).to_have_value("1")  # the step's widgets moved with it
    expect(step_slider(page, "2. HorizontalFlip")).to_have_value("0.5")
    pipeline_button(page, "2. HorizontalFlip", "↑ up", then="1. HorizontalFlip")
    assert_samples(page, 8, "cat", resampled)
    expect_grid(page, before)
    assert page.get_by_test_id("stException").count() == 0


def test_train_settings_survive_a_visit_to_another_page_and_enter_does_not_start(page, server):
    """Streamlit forgot the Train form's values once another page had run: Epochs 3, Max LR 0.1 and a
    200-image subset came back as the defaults. And Enter in a field submitted the form: a run started."""
    page.goto(f"{server}/train")
    epochs = page.get_by_label("Epochs", exact=True)
    epochs.wait_for(timeout=60_000)
    for label, value in (("Epochs", "3"), ("Max LR", "0.1000"), ("Train subset (images, 0 = all)", "100")):
        page.get_by_label(label, exact=True).fill(value)
        page.get_by_label(label, exact=True).press("Enter")  # edits the field; before, it started a training
    settle(page)
    page.wait_for_timeout(1500)  # a run started by Enter shows its progress line within a second
    assert page.get_by_text(re.compile(r" · run \d{8}-")).count() == 0
    page.get_by_role("button", name="Start training").click()
    expect(page.get_by_text(re.compile(r" · run \d{8}-.* · epoch \d+/3 ")).first).to_be_visible(timeout=60_000)
    page.get_by_role("link", name="Augment").click()
    page.get_by_role("button", name="Resample").wait_for(timeout=60_000)
    settle(page)
    page.get_by_role("link", name="Train").click()
    expect(page.get_by_label("Epochs", exact=True)).to_have_value("3", timeout=60_000)
    expect(page.get_by_label("Max LR", exact=True)).to_have_value("0.1000")
    expect(page.get_by_label("Train subset (images, 0 = all)", exact=True)).to_have_value("100")
    assert page.get_by_test_id("stException").count() == 0
    assert page.get_by_test_id("stAlertContentWarning").count() == 0  # no "set via the Session State API"

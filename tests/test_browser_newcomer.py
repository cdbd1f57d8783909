"""Real-browser tests for a newcomer's first steps (issue 17, Awkward): what only a browser shows, the guide's
dismissal kept across a reload (a cookie), and the previews and metrics beside their controls, in view at 1280x800
and 1400x1000 while the controls below are edited."""
import pytest

from .browser import needs_chromium, streamlit_server
from .test_browser_state import browser, settle  # noqa: F401 - browser is a module-scoped fixture

pytestmark = needs_chromium
expect = pytest.importorskip("playwright.sync_api").expect


@pytest.fixture(scope="module")
def server(image_folder, tmp_path_factory):
    with streamlit_server(image_folder, tmp_path_factory.mktemp("newcomer-runs")) as url:
        yield url


@pytest.fixture
def context(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 800})  # its own cookies
    context.set_default_timeout(30_000)
    yield context
    context.close()


def show_button(page):
    return page.get_by_role("button", name="Show the “Start here” guide")


def test_the_guide_stays_dismissed_after_a_reload_and_in_a_new_tab(context, server):
    page = context.new_page()
    page.goto(server)
    guide, show = page.get_by_text("Start here", exact=True), show_button(page)
    expect(guide).to_be_visible(timeout=60_000)
    page.get_by_role("button", name="Got it, hide this guide").click()
    expect(show).to_be_visible(timeout=60_000)  # the last thing the page draws, after the data status
    expect(guide).to_have_count(0)
    settle(page)
    page.reload()
    expect(show).to_be_visible(timeout=30_000)
    expect(guide).to_have_count(0)
    tab = context.new_page()
    tab.goto(server)
    guide, show = tab.get_by_text("Start here", exact=True), show_button(tab)
    expect(show).to_be_visible(timeout=30_000)
    expect(guide).to_have_count(0)
    show.click()
    expect(guide).to_be_visible()
    settle(tab)
    tab.reload()
    expect(guide).to_be_visible(timeout=30_000)
    settle(tab)
    expect(show).to_have_count(0)


def test_a_reload_and_a_new_tab_keep_the_architecture_and_the_pipeline(context, server):
    """A reload starts a new Streamlit session: the architecture and pipeline a newcomer had built were gone."""
    page = context.new_page()
    page.goto(f"{server}/architect")
    name = page.get_by_label("Name", exact=True)
    expect(name).to_have_value("fast", timeout=60_000)
    name.fill("my reload net")
    name.press("Enter")
    settle(page)
    page.get_by_role("link", name="Augment").click()
    page.get_by_role("button", name="Add", exact=True).click()  # a fourth step
    settle(page)
    expect(page.get_by_text("4. HorizontalFlip")).to_be_visible()
    page.reload()
    expect(page.get_by_text("4. HorizontalFlip")).to_be_visible(timeout=60_000)
    tab = context.new_page()
    tab.goto(f"{server}/architect")
    expect(tab.get_by_label("Name", exact=True)).to_have_value("my reload net", timeout=60_000)
    settle(tab)
    assert tab.get_by_test_id("stException").count() == 0


def still(page, locator, timeout_ms: int = 10_000) -> None:
    """Wait until the element has stopped moving (an opening expander animates the layout below it)."""
    box = None
    for _ in range(timeout_ms // 150):
        page.wait_for_timeout(150)
        if box == (box := locator.bounding_box()) and box is not None:
            return
    raise AssertionError(f"still moving after {timeout_ms} ms: {box}")


def assert_in_view(page, locator) -> None:
    """The element lies inside the viewport and nothing (the app's top bar) covers its centre."""
    box, view = locator.bounding_box(), page.viewport_size
    assert box and box["y"] >= 0 and box["y"] + box["height"] <= view["height"], (box, view)
    assert 0 <= box["x"] and box["x"] + box["width"] <= view["width"], (box, view)
    centre = (box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    assert locator.evaluate("(e, [x, y]) => e.contains(document.elementFromPoint(x, y))", centre), box


@pytest.mark.parametrize("size", [(1280, 800), (1400, 1000)])
def test_the_architect_metrics_stay_beside_the_editors(context, server, size):
    page = context.new_page()
    page.set_viewport_size({"width": size[0], "height": size[1]})
    page.goto(f"{server}/architect")
    params = page.get_by_test_id("stMetricValue").first
    expect(params).to_have_text("196,480", timeout=60_000)
    page.get_by_text("C4", exact=True).click()  # the last block, at the bottom of the editors
    settle(page)
    widths = page.get_by_test_id("stSlider").filter(has=page.get_by_role("slider", name="width"))  # C1's and C4's
    last = widths.nth(widths.count() - 1)
    still(page, last)  # the expander opens with an animation: scrolling during it lands anywhere
    last.evaluate("e => e.scrollIntoView({block: 'center'})")  # scrolled down to it, as a user would
    still(page, last)
    thumb = last.get_by_role("slider")
    thumb.focus()
    page.keyboard.press("ArrowLeft")  # 288 -> 284 channels
    expect(thumb).to_have_value("284")  # the key reached the slider
    settle(page)
    expect(params).not_to_have_text("196,480", timeout=30_000)  # the rerun, slow on a loaded machine
    assert_in_view(page, last)
    assert_in_view(page, params)
    for i in range(widths.count()):  # room to drag a width: not squeezed into a fifth of the row
        assert widths.nth(i).bounding_box()["width"] >= 200, widths.nth(i).bounding_box()


@pytest.mark.parametrize("size", [(1280, 800), (1400, 1000)])
def test_the_augment_preview_stays_beside_the_pipeline(context, server, size):
    page = context.new_page()
    page.set_viewport_size({"width": size[0], "height": size[1]})
    page.goto(f"{server}/augment")
    images = page.get_by_test_id("stMain").get_by_test_id("stImage")
    expect(images).to_have_count(12, timeout=60_000)
    for title in ("1. HorizontalFlip", "2. Affine", "3. CoarseDropout"):  # every step opened, as when editing
        page.get_by_text(title, exact=True).click()
    settle(page)
    before = [im.get_attribute("src") for im in images.locator("img").all()]
    last = page.get_by_test_id("stExpander").filter(has_text="3. CoarseDropout").get_by_test_id("stSlider").first
    last.evaluate("e => e.scrollIntoView({block: 'center'})")
    last.get_by_role("slider").focus()
    page.keyboard.press("End")  # CoarseDropout always applied: the preview changes
    settle(page)
    assert [im.get_attribute("src") for im in images.locator("img").all()] != before
    assert_in_view(page, last)
    assert_in_view(page, images.first)


def test_a_started_training_shows_its_progress_and_chart_without_scrolling(context, server):
    """At 1280x800 the Start button is in view on arrival, and what it starts (progress, Stop, the live
    chart) appears in view after the click, not below the long form."""
    page = context.new_page()
    page.goto(f"{server}/train")
    start = page.get_by_role("button", name="Start training")
    expect(start).to_be_enabled(timeout=60_000)
    expect(page.get_by_text("No training to follow yet")).to_be_visible()
    settle(page)
    assert_in_view(page, start)
    start.click()
    progress = page.get_by_test_id("stProgress")
    expect(progress).to_contain_text("run ", timeout=60_000)
    chart = page.locator(".js-plotly-plot").first
    expect(chart).to_be_visible(timeout=30_000)
    assert_in_view(page, progress)
    assert_in_view(page, page.locator(".st-key-stop button"))  # not the toolbar's Stop of a running script
    box = chart.bounding_box()
    assert box["y"] < page.viewport_size["height"] - 150, box  # the chart starts in view, most of it

"""Real-browser tests of the tuning tools: the LR range test runs in its own process from the Train page, a
reload finds it again, and "Use this max LR" writes its suggestion into the form."""
import pytest

from playground.runs import lr_tests
from playground.runs.store import RunStore
from playground.specs import links

from .browser import needs_chromium, settle, streamlit_server
from .test_browser_state import browser  # noqa: F401 - a module-scoped fixture
from .test_training import tiny_net

pytestmark = needs_chromium
expect = pytest.importorskip("playwright.sync_api").expect


def test_find_max_lr_then_use_it_fills_the_form(browser, image_folder, tmp_path):  # noqa: F811
    runs = tmp_path / "runs"
    with streamlit_server(image_folder, runs) as url:
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.set_default_timeout(60_000)
        page.goto(f"{url}/train?arch={links.encode(tiny_net())}")  # a small net: 100 batches in seconds
        page.get_by_role("button", name="Find max LR").wait_for(timeout=90_000)
        settle(page, 90_000)
        page.get_by_role("button", name="Find max LR").click()
        use = page.get_by_role("button", name="Use this max LR")
        use.wait_for(timeout=180_000)
        (test,) = lr_tests.tests(RunStore(runs))
        assert test.status == lr_tests.FINISHED and test.result.suggested_max_lr is not None
        assert RunStore(runs).list() == []  # a range test is no training run
        page.reload()  # the test is kept in the store: a new session of the same visitor finds it
        use.wait_for(timeout=60_000)
        use.click()
        settle(page)
        field = page.get_by_label("Max LR")
        want = min(5.0, max(1e-5, test.result.suggested_max_lr))
        expect(field).to_have_value(f"{want:.4f}")
        assert page.get_by_test_id("stException").count() == 0
        page.close()

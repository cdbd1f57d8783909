"""Real-browser tests of whole flows: Debian's chromium driven by Playwright against a live server."""
import os
import re
import shutil
from pathlib import Path

import pytest

from .browser import CHROMIUM, LAUNCH_ARGS, needs_chromium, streamlit_server

pytestmark = needs_chromium


@pytest.fixture
def server(image_folder, tmp_path):
    with streamlit_server(image_folder, tmp_path / "runs") as url:
        yield url


@pytest.fixture
def hosted_server(tmp_path):
    """Hosted mode allows at most 100 epochs: 1,000 images make a run that lasts minutes."""
    from tests.conftest import make_image_folder

    data = make_image_folder(tmp_path / "data", n_train=100, n_test=4)
    with streamlit_server(data, tmp_path / "runs", PLAYGROUND_HOSTED="1", PLAYGROUND_THREADS="1") as url:
        yield url


def test_click_through_and_train(server, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=LAUNCH_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(f"{server}/architect")
        params = page.get_by_test_id("stMetricValue").first
        params.wait_for(timeout=60_000)
        before = params.inner_text()
        slider = page.get_by_role("slider").nth(2)  # blocks, C1 layers, then C1 layer 1 width
        slider.focus()
        for _ in range(3):
            page.keyboard.press("ArrowRight")
        # expect() retries through a rerun that briefly replaces the metric (a querySelector read null there)
        sync_api.expect(params).not_to_have_text(before, timeout=30_000)
        page.screenshot(path=str(tmp_path / "architect.png"))

        page.get_by_role("link", name="Train").click()
        page.get_by_role("button", name="Start training").click()
        # get_by_text matches substrings case-insensitively, and the teachers' label says "finished runs":
        # match the success message itself, or Results can open before the run has finished
        page.get_by_text(re.compile(r"Finished run \d{8}-\d{6}-")).wait_for(timeout=120_000)
        points = page.locator(".js-plotly-plot .scatterlayer .trace .points path")
        page.wait_for_function("() => document.querySelectorAll('.js-plotly-plot .scatterlayer .trace').length > 2",
                               timeout=30_000)
        assert points.count() >= 2  # train/test accuracy points for the epochs
        page.screenshot(path=str(tmp_path / "train.png"))

        page.get_by_role("link", name="Results").click()
        page.get_by_text("Misclassified images", exact=True).wait_for(timeout=60_000)
        page.get_by_test_id("stImage").first.wait_for(timeout=60_000)
        assert page.get_by_test_id("stImage").count() >= 1
        page.screenshot(path=str(tmp_path / "results.png"), full_page=True)
        shots = os.environ.get("PLAYGROUND_SCREENSHOTS")
        if shots:
            for name in ("architect", "train", "results"):
                shutil.copy(tmp_path / f"{name}.png", Path(shots) / f"{name}.png")
        browser.close()


def test_a_run_survives_reloads_and_only_its_owner_stops_it(hosted_server, tmp_path):
    """Hosted mode: start a run, reload on another page, find it again on Train, stop it; another
    visitor (other cookies) sees it read-only."""
    sync_api = pytest.importorskip("playwright.sync_api")
    from playground.runs.store import RunStore

    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=LAUNCH_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(f"{hosted_server}/train")
        epochs = page.get_by_label("Epochs", exact=True)
        epochs.wait_for(timeout=90_000)  # the first visit decodes the data in a child process
        epochs.fill("100")  # the hosted limit
        page.get_by_role("button", name="Start training").click()
        progress = page.get_by_text(re.compile(r"run \d{8}-\d{6}-\w+ · running"))
        progress.wait_for(timeout=90_000)
        run_id = re.search(r"run (\d{8}-\d{6}-\w+)", progress.inner_text()).group(1)

        page.goto(f"{hosted_server}/runs")  # a reload on another page: a new Streamlit session
        page.get_by_text("Stop, resume or delete").wait_for(timeout=30_000)
        page.get_by_text("Run", exact=True).wait_for(timeout=30_000)  # the picker of the visitor's own runs
        assert page.get_by_text("Runs that other visitors started are read-only").count() == 0
        page.reload()
        page.get_by_role("link", name="Train").click()
        page.get_by_text(re.compile(f"run {run_id} · running")).wait_for(timeout=30_000)

        other = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
        other.goto(f"{hosted_server}/train?run={run_id}")
        other.get_by_text("Another visitor started this run").wait_for(timeout=30_000)
        assert other.locator(".st-key-stop button").is_disabled()  # (the toolbar has a "Stop" of its own)

        page.locator(".st-key-stop button").click()
        page.get_by_text(re.compile(r"Stopped: stopped by request")).wait_for(timeout=30_000)
        page.screenshot(path=str(tmp_path / "stopped.png"))
        record = RunStore(tmp_path / "runs").get(run_id)
        assert record.status == "stopped" and len(record.epochs) < 100  # stopped before its 100 epochs (a slow
        # machine may stop it inside the first epoch: CI's did, 10 s after the start at 125 img/s)
        browser.close()


def test_deleting_runs_while_rows_are_ticked(server, image_folder, tmp_path):
    """Runs page: with rows ticked for comparison, a run deleted elsewhere (another visitor, another tab) and
    one deleted here must not break the page on the stale selection (it raised IndexError), and the
    "Deleted" message must survive the rerun."""
    sync_api = pytest.importorskip("playwright.sync_api")
    from playground.runs.runner import execute
    from playground.runs.store import RunStore
    from playground.training.data import load_dataset
    from tests.test_training import tiny_run

    store, data = RunStore(tmp_path / "runs"), load_dataset(str(image_folder))
    first, second = (execute(store, tiny_run(seed=i), data)[0] for i in range(2))
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=LAUNCH_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(f"{server}/runs")
        grid = page.get_by_test_id("stDataFrame")
        grid.wait_for(timeout=90_000)
        box = grid.bounding_box()
        for row in (0, 1):  # the row-selection checkboxes, drawn on the grid's canvas
            page.mouse.click(box["x"] + 18, box["y"] + 35 * (row + 1) + 17)
            page.wait_for_timeout(1500)
        page.wait_for_function("() => document.querySelectorAll('.js-plotly-plot .scatterlayer .trace').length == 4",
                               timeout=30_000)  # both runs ticked: both runs' test and training curves overlaid
        page.get_by_text("How the 2 ticked runs differ").wait_for(timeout=30_000)
        diff = page.get_by_test_id("stDataFrame").nth(1)  # the settings that differ: the seed alone
        sync_api.expect(diff.locator("tr[aria-rowindex='2'] td[aria-colindex='1']")).to_have_text("train.seed")
        sync_api.expect(diff.locator("tr[aria-rowindex='3']")).to_have_count(0)
        store.delete(first)  # the older run, the second row, goes elsewhere
        page.get_by_text("Wall-clock minutes on the x axis").click()  # any rerun
        page.wait_for_timeout(3000)
        assert page.get_by_test_id("stException").count() == 0
        page.get_by_role("combobox", name="Run", exact=True).click()
        page.get_by_role("option", name=re.compile(second)).click()
        page.get_by_text(f"Yes, delete run {second}").click()
        page.get_by_role("button", name="Delete").click()
        page.get_by_text(f"Deleted {second}.").wait_for(timeout=30_000)
        assert page.get_by_test_id("stException").count() == 0 and store.list() == []
        browser.close()

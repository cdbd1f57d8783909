"""Real-browser test: Debian's chromium driven by Playwright against a live server."""
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="chromium not installed (apt-get install chromium)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(image_folder, tmp_path):
    yield from _serve(image_folder, tmp_path)


@pytest.fixture
def hosted_server(image_folder, tmp_path):
    yield from _serve(image_folder, tmp_path, PLAYGROUND_HOSTED="1", PLAYGROUND_THREADS="1")


def _serve(image_folder, tmp_path, **extra):
    port = free_port()
    env = {**os.environ, "PLAYGROUND_DATA": str(image_folder), "PLAYGROUND_RUNS": str(tmp_path / "runs"), **extra}
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "playground/app.py", "--server.port",
                             str(port), "--server.headless", "true"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=1).read() == b"ok":
                break
        except OSError:
            time.sleep(0.3)
    else:
        proc.kill()
        pytest.fail("streamlit server did not start: " + proc.stdout.read().decode()[-2000:])
    yield url
    proc.terminate()
    proc.wait(10)


LAUNCH_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--no-first-run", "--disable-sync"]


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
        page.wait_for_function("b => document.querySelector('[data-testid=stMetricValue]').innerText !== b",
                               arg=before, timeout=30_000)
        assert params.inner_text() != before
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
        page.get_by_text("Misclassified images").wait_for(timeout=60_000)
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
    from playground.store import RunStore

    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=LAUNCH_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(f"{hosted_server}/train")
        epochs = page.get_by_label("Epochs", exact=True)
        epochs.wait_for(timeout=90_000)  # the first visit decodes the data in a child process
        epochs.fill("500")
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
        assert record.status == "stopped" and 0 < len(record.epochs) < 500
        browser.close()

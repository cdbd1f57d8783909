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
    port = free_port()
    env = {**os.environ, "PLAYGROUND_DATA": str(image_folder), "PLAYGROUND_RUNS": str(tmp_path / "runs")}
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


def test_click_through_and_train(server, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                     args=["--no-sandbox", "--headless", "--disable-gpu",
                                           "--disable-background-networking", "--disable-component-update",
                                           "--no-first-run", "--disable-sync"])
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

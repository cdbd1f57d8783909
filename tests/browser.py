"""Helpers for real-browser tests: a live streamlit server and Debian's chromium driven by Playwright."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ROOT = Path(__file__).resolve().parents[1]
needs_chromium = pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                    reason="chromium not installed (apt-get install chromium)")
LAUNCH_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--no-first-run", "--disable-sync"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def streamlit_server(data: Path, runs: Path, log: Path | None = None, **settings: str) -> Iterator[str]:
    """The app on a free port with PLAYGROUND_DATA, PLAYGROUND_RUNS and ``settings`` set; yields its URL.
    Its output goes to ``log`` (default: a file beside ``runs``), which a test may read for warnings."""
    port = free_port()
    env = {**os.environ, "PLAYGROUND_DATA": str(data), "PLAYGROUND_RUNS": str(runs), **settings}
    log = log or runs.parent / f"{runs.name}-server.log"
    out = open(log, "wb")  # a pipe nobody reads fills up and blocks the server's logging
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "playground/app.py", "--server.port",
                             str(port), "--server.headless", "true"], cwd=ROOT, env=env,
                            stdout=out, stderr=subprocess.STDOUT)
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
        out.close()
        pytest.fail("streamlit server did not start: " + log.read_text(errors="replace")[-2000:])
    try:
        yield url
    finally:
        proc.terminate()
        proc.wait(10)
        out.close()


@contextmanager
def chromium():
    """A Playwright browser; a test opens its own page (a fresh streamlit session) with new_page()."""
    sync_api = pytest.importorskip("playwright.sync_api")
    # A rerun that takes 1 s here took over 5 s (expect's default) in CI's loaded container
    sync_api.expect.set_options(timeout=15_000)
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=LAUNCH_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def settle(page, timeout_ms: int = 30_000) -> None:
    """Wait until the script run that the last action started has finished (the Results page evaluates the
    chosen run in it; a picture taken earlier shows the previous run greyed out under a spinner)."""
    page.wait_for_timeout(500)
    page.wait_for_selector("[data-testid=stApp][data-test-script-state=notRunning]", timeout=timeout_ms)


@contextmanager
def new_page(browser, width: int, height: int, timeout_ms: int = 30_000):
    """A tab of this size for one test, closed after it."""
    page = browser.new_page(viewport={"width": width, "height": height})
    page.set_default_timeout(timeout_ms)
    try:
        yield page
    finally:
        page.close()

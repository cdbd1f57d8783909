"""Measure the Home page's first paint on a cold server (issue 17, cold start); not a test.

    python -m tests.measure_first_paint [DATA]

Starts a fresh streamlit server (empty PLAYGROUND_CACHE, so the data source is decoded anew) and
opens Home in headless chromium; prints the seconds from the navigation to the title, the presets
table and the data status (the success or warning line)."""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from .browser import ROOT, chromium, streamlit_server

DEFAULT = ROOT.parent / "shared" / "data" / "cifar10-dev-jpeg.tar.gz"


def measure(data: str) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp, \
            streamlit_server(Path(data), Path(tmp) / "runs", PLAYGROUND_CACHE=str(Path(tmp) / "cache")) as url, \
            chromium() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.set_default_timeout(180_000)
        t0 = time.perf_counter()
        page.goto(url)
        out = {}
        for what, locator in (("title", page.get_by_role("heading", name="CIFAR-10 CNN Playground")),
                              ("presets table", page.get_by_test_id("stDataFrame").first),
                              ("data status", page.get_by_text("Using ").or_(page.get_by_text(
                                  "No dataset is available")).first)):
            locator.wait_for()
            out[what] = round(time.perf_counter() - t0, 2)
        return out


if __name__ == "__main__":
    print(measure(sys.argv[1] if len(sys.argv) > 1 else str(DEFAULT)))

"""Tour every page of a live app in Debian's chromium and save one screenshot per page.

    python scripts/screenshots.py --data ../shared/data/cifar10-dev-jpeg.tar.gz --runs runs --out docs/screenshots \
        [--run RUN_ID]

It starts a tiny training run on the Train page (2,000 images, 2 epochs) and, with --run, shows that
run on Results; the Sweep page shows the studies already in the runs folder. At 1280x800. It prints how
many exceptions each page showed (expect 0).
"""
import argparse
import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.browser import settle  # noqa: E402
ap = argparse.ArgumentParser()
ap.add_argument("--data", required=True)
ap.add_argument("--runs", required=True)
ap.add_argument("--out", default="docs/screenshots")
ap.add_argument("--run", help="run id to show on Results (default: the tiny run trained here)")
ap.add_argument("--port", type=int, default=8765)
args = ap.parse_args()
out = Path(args.out)
out.mkdir(parents=True, exist_ok=True)
env = {**os.environ, "PLAYGROUND_DATA": str(Path(args.data).resolve()),
       "PLAYGROUND_RUNS": str(Path(args.runs).resolve())}
server = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "playground/app.py", "--server.port",
                           str(args.port), "--server.headless", "true"], cwd=ROOT, env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
url = f"http://127.0.0.1:{args.port}"


def nav(page, name: str) -> None:
    """The sidebar's link (Home's guide links to the pages too)."""
    page.get_by_test_id("stSidebarNavItems").get_by_role("link", name=name).click()


def pick(page, label: str, option: str) -> None:
    """Choose ``option`` in the select box with this label, as a user types it."""
    box = page.get_by_role("combobox", name=label).first
    box.fill(option)
    page.keyboard.press("Enter")
    settle(page, 120_000)


def shot(page, name: str) -> None:
    time.sleep(2)  # let charts finish drawing
    print(f"{name}: {page.get_by_test_id('stException').count()} exceptions", flush=True)
    page.screenshot(path=str(out / f"{name}.png"))


try:
    for _ in range(200):
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=1).read() == b"ok":
                break
        except OSError:
            time.sleep(0.3)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", headless=True,
                                     args=["--no-sandbox", "--headless", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1280, "height": 800})  # a laptop: what a newcomer sees
        page.goto(url)
        page.get_by_text("Using").first.wait_for(timeout=120_000)
        shot(page, "home")
        nav(page, "Augment")
        page.get_by_test_id("stImage").first.wait_for(timeout=60_000)
        shot(page, "augment")
        nav(page, "Architect")
        page.get_by_test_id("stMetricValue").first.wait_for(timeout=60_000)
        shot(page, "architect")
        nav(page, "Train")
        page.get_by_role("button", name="Start training").click()
        # not get_by_text("Finished run"): it also matches the teachers' label "... finished runs ..."
        page.get_by_text(re.compile(r"Finished run \d{8}-\d{6}-")).wait_for(timeout=600_000)
        shot(page, "train")
        page.get_by_role("button", name="Find max LR").click()
        page.get_by_role("button", name="Use this max LR").wait_for(timeout=600_000)
        page.get_by_text("LR range test", exact=False).first.evaluate("e => e.scrollIntoView({block: 'start'})")
        shot(page, "lr-find")
        nav(page, "Results")
        page.get_by_text("Misclassified images", exact=True).wait_for(timeout=120_000)
        if args.run:
            page.get_by_test_id("stSelectbox").first.click()
            page.get_by_role("option", name=args.run).click()
        settle(page, 600_000)  # 18 views of 5,000 test images on a CPU
        shot(page, "results")
        page.mouse.move(800, 600)
        page.mouse.wheel(0, 850)  # the app scrolls inside its own container, not the window
        shot(page, "gallery")
        nav(page, "Inside")
        page.get_by_text("A finished run's weights").click()
        settle(page, 120_000)
        if args.run:
            pick(page, "Run", args.run)
        pick(page, "Class", "cat")
        index = page.get_by_label("Index", exact=False).first
        index.fill("1")
        index.press("Enter")
        settle(page, 120_000)
        page.get_by_text("The image", exact=True).evaluate("e => e.scrollIntoView({block: 'start'})")
        shot(page, "inside")
        pick(page, "Layer", "C3.1")
        for label in ("Row", "Column"):
            field = page.get_by_label(label, exact=False).first
            field.fill("2")
            field.press("Enter")
            settle(page, 60_000)
        page.get_by_text("Where one unit looks", exact=True).evaluate("e => e.scrollIntoView({block: 'start'})")
        shot(page, "inside-rf")
        nav(page, "Runs")
        page.get_by_test_id("stDataFrame").first.wait_for(timeout=60_000)
        shot(page, "runs")
        nav(page, "Sweep")
        page.get_by_role("heading", name="Trials").wait_for(timeout=60_000)
        time.sleep(4)  # the trials fragment
        page.get_by_text("Accuracy against", exact=True).first.evaluate("e => e.scrollIntoView({block: 'start'})")
        shot(page, "sweep")
        browser.close()
finally:
    server.terminate()
    server.wait(10)

"""The hosted demo's memory and responsiveness, measured as a visitor uses it.

    python benchmarks/memory.py --data PATH [--cgroup-mib 1024] [--cpu-python /venv/bin/python]

It starts the app with the hosted settings of docs/hosted.md (PLAYGROUND_HOSTED=1, PLAYGROUND_MAX_JOBS=2,
PLAYGROUND_THREADS=1) and drives it in Debian's chromium:

1. a visitor starts the default demo training on the Train page and opens Results (of a run
   finished beforehand) in a second tab, until the training finishes;
2. two workers train (CLI runs) while the visitor's Results page evaluates a run with shift TTA.

Throughout, it samples the PSS of the server and every process below it (the workers, the data
decoder) every 0.25 s, and asks the server's health endpoint every 0.25 s. It prints the peak
summed PSS, raw and as with torch's CPU wheel (what the hosted platform installs): per process that
imports torch, it subtracts the difference in ``import torch`` PSS between this interpreter's torch
and ``--cpu-python``'s (or ``--torch-delta-mib`` when given). ``--cgroup-mib`` runs the server (and
so its workers) inside a cgroup-v1 memory limit and reports whether the kernel killed anything.
"""
import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.browser import CHROMIUM, LAUNCH_ARGS, free_port  # noqa: E402
from playground.training.bench import cpu_description  # noqa: E402

MIB = 2**20
TORCH_PSS = "import torch, psutil, sys; print(psutil.Process().memory_full_info().pss, flush=True); sys.stdin.read()"


def torch_pss(python: str) -> float:
    """PSS per process of two processes that import torch at once (they share its libraries)."""
    procs = [subprocess.Popen([python, "-c", TORCH_PSS], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
             for _ in range(2)]
    [p.stdout.readline() for p in procs]  # both have imported torch
    total = sum(psutil.Process(p.pid).memory_full_info().pss for p in procs)
    for p in procs:
        p.communicate("")
    return total / 2 / MIB


class Sampler(threading.Thread):
    """Summed PSS of a process tree and health-endpoint latencies, tagged with the current phase."""

    def __init__(self, root_pid: int, url: str, torch_delta: float):
        super().__init__(daemon=True)
        self.root, self.url, self.delta = psutil.Process(root_pid), url, torch_delta
        self.phase, self.done = "start", threading.Event()
        self.memory: list[tuple[str, float, float, int, float]] = []  # phase, raw, CPU wheel, processes, server
        self.health: list[tuple[str, float]] = []
        threading.Thread(target=self._health, daemon=True).start()

    def run(self) -> None:
        while not self.done.wait(0.25):
            procs, sizes = [self.root, *self.root.children(recursive=True)], []
            for p in procs:
                try:
                    sizes.append(p.memory_full_info().pss / MIB)
                except psutil.Error:
                    sizes.append(0.0)
            total, pythons = sum(sizes), sum(1 for p in procs if _is_python(p))
            self.memory.append((self.phase, total, total - pythons * self.delta, pythons, sizes[0]))

    def _health(self) -> None:
        while not self.done.is_set():
            t0 = time.perf_counter()
            try:
                urllib.request.urlopen(f"{self.url}/_stcore/health", timeout=30).read()
                self.health.append((self.phase, time.perf_counter() - t0))
            except OSError:
                self.health.append((self.phase, float("inf")))
            time.sleep(0.25)


def _is_python(p: psutil.Process) -> bool:
    try:
        return "python" in Path(p.exe()).name
    except psutil.Error:
        return False


def make_cgroup(mib: int, pid: int) -> Path:
    group = Path(f"/sys/fs/cgroup/memory/playground-bench-{os.getpid()}")
    group.mkdir()
    (group / "memory.limit_in_bytes").write_text(str(mib * MIB))
    (group / "memory.memsw.limit_in_bytes").write_text(str(mib * MIB)) if (group / "memory.memsw.limit_in_bytes"
                                                                           ).exists() else None
    (group / "cgroup.procs").write_text(str(pid))
    return group


def cli(runs: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "playground", "train", "--preset", "fast", "--device", "cpu",
                             "--runs", runs, "--quiet", *args], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env={**os.environ, "PLAYGROUND_THREADS": "1"})


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--cgroup-mib", type=int, help="run the server and its workers under this memory limit")
    ap.add_argument("--cpu-python", help="an interpreter with torch's CPU wheel, to measure the import difference")
    ap.add_argument("--torch-delta-mib", type=float, help="the difference itself, if already measured")
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    delta = args.torch_delta_mib
    if delta is None:
        here = torch_pss(sys.executable)
        cpu = torch_pss(args.cpu_python) if args.cpu_python else here
        delta = here - cpu
        print(f"import torch PSS: {here:.0f} MiB here, {cpu:.0f} MiB with {args.cpu_python or 'the same'}; "
              f"difference {delta:.0f} MiB per process")
    runs = tempfile.mkdtemp(prefix="playground-bench-")
    data = os.path.abspath(args.data)
    # a finished run for the Results page (trained before the server starts)
    cli(runs, "--data", data, "--train-subset", "2000", "--epochs", "1").wait()
    port = free_port()
    env = {**os.environ, "PLAYGROUND_DATA": data, "PLAYGROUND_RUNS": runs, "PLAYGROUND_HOSTED": "1",
           "PLAYGROUND_MAX_JOBS": "2", "PLAYGROUND_THREADS": "1"}
    server = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "playground/app.py", "--server.port",
                               str(port), "--server.headless", "true"], cwd=ROOT, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    group = make_cgroup(args.cgroup_mib, server.pid) if args.cgroup_mib else None
    url = f"http://127.0.0.1:{port}"
    for _ in range(240):  # until the server answers
        try:
            urllib.request.urlopen(f"{url}/_stcore/health", timeout=1).read()
            break
        except OSError:
            time.sleep(0.25)
    sampler = Sampler(server.pid, url, delta)
    sampler.start()
    others: list[subprocess.Popen] = []
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=LAUNCH_ARGS)
            context = browser.new_context(viewport={"width": 1400, "height": 1000})
            train = context.new_page()
            sampler.phase = "1: open the app"
            train.goto(f"{url}/train", timeout=120_000)
            train.get_by_role("button", name="Start training").wait_for(timeout=120_000)
            sampler.phase = "1: demo training + Results"
            train.get_by_role("button", name="Start training").click()
            results = context.new_page()
            results.goto(f"{url}/results", timeout=120_000)
            results.get_by_text("Misclassified images", exact=True).wait_for(timeout=300_000)
            train.get_by_text(re.compile(r"Finished run \d{8}-")).wait_for(timeout=900_000)
            sampler.phase = "2: two workers + Results shift TTA"
            others = [cli(runs, "--data", data, "--train-subset", "5000", "--epochs", "3") for _ in range(2)]
            time.sleep(8)  # both workers past their start-up
            results.reload()
            results.get_by_text("Misclassified images", exact=True).wait_for(timeout=300_000)
            t0 = time.time()
            results.get_by_label("Shift TTA: also average views moved by this many px").click()
            results.get_by_role("option", name="2 px (9× the views)").click()
            spinner = results.get_by_text("Evaluating the run")
            try:
                spinner.wait_for(timeout=20_000)
            except Exception:  # noqa: BLE001 - already done, or never shown
                print("(no evaluation spinner seen)")
            spinner.wait_for(state="hidden", timeout=600_000)
            print(f"shift-TTA evaluation on Results: {time.time() - t0:.1f} s")
            sampler.phase = "done"
            browser.close()
    finally:
        sampler.done.set()
        for p in others:
            p.kill()
        server.terminate()
        server.wait(20)
    print(f"CPU: {cpu_description()}, {os.cpu_count()} cores; torch difference used: {delta:.0f} MiB per process")
    for phase in dict.fromkeys(m[0] for m in sampler.memory):
        mem = [m for m in sampler.memory if m[0] == phase]
        lat = [h[1] for h in sampler.health if h[0] == phase]
        raw, cpu = max(m[1] for m in mem), max(m[2] for m in mem)
        procs, server_peak = max(m[3] for m in mem), max(m[4] for m in mem)
        p95 = statistics.quantiles(lat, n=20)[-1] if len(lat) >= 2 else float("nan")
        print(f"{phase:40s} peak PSS {raw:6.0f} MiB raw, {cpu:6.0f} MiB as CPU wheel ({procs} python processes; "
              f"server alone up to {server_peak:.0f} MiB raw); "
              f"health p50 {statistics.median(lat) * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms, max {max(lat) * 1000:.0f}"
              f" ms ({len(lat)} probes)")
    if group is not None:
        peak = int((group / 'memory.max_usage_in_bytes').read_text()) / MIB
        print(f"cgroup limit {args.cgroup_mib} MiB: max usage {peak:.0f}"
              f" MiB, failcnt {(group / 'memory.failcnt').read_text().strip()}, "
              f"oom: {(group / 'memory.oom_control').read_text().split()}; server exit code {server.returncode}")
        for pid in (group / "cgroup.procs").read_text().split():
            Path("/sys/fs/cgroup/memory/cgroup.procs").write_text(pid)
        group.rmdir()


if __name__ == "__main__":
    main()

"""Decoding a data source for the web server: in a child process (``python -m playground data``), so
that its memory and CPU never burden the server, one decoder at a time, and time-limited when hosted."""
from __future__ import annotations

import subprocess
import threading

from .. import cli_child
from ..settings import hosted
from ..specs.serde import short
from .data import Dataset, NotCached, load_dataset
from .sources import DataError

DECODE_TURN = threading.Lock()  # one decoder at a time per server: each child peaked near 600 MiB
DECODE_WAIT_S = 180.0  # how long a visitor waits behind another visitor's decoding
HOSTED_DECODE_S = 300.0  # a hosted decoder's wall time (CIFAR-10 takes about a minute on 2 cores)


def load_in_subprocess(source: str) -> Dataset:
    """The dataset with its training images memory-mapped, decoding it first (if it is not cached)
    in a child process (``python -m playground data``), so that the decoding's memory and CPU
    never burden the web server. Decoders take turns (two at once held 1.2 GiB), and in hosted
    mode one is ended after HOSTED_DECODE_S: 100,000 large images fit in a 4 MB upload and took
    minutes of both cores each."""
    try:
        return load_dataset(source, mmap_train=True, decode=False)
    except NotCached:
        pass
    if not DECODE_TURN.acquire(timeout=DECODE_WAIT_S):
        raise DataError(f"the server has been decoding other visitors' data for {DECODE_WAIT_S:.0f} s; "
                        f"try again in a few minutes")
    try:
        try:  # another visitor's turn may have decoded this very source
            return load_dataset(source, mmap_train=True, decode=False)
        except NotCached:
            pass
        argv, env = cli_child("data", "--data", source)
        limit = HOSTED_DECODE_S if hosted() else None
        try:
            done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=limit)
        except subprocess.TimeoutExpired:  # run() has killed the child; the next load sweeps its folder
            raise DataError(f"decoding {short(source, 60)} took over {limit:.0f} s, the hosted limit: use "
                            f"fewer or smaller images (they become 32×32 anyway)") from None
    finally:
        DECODE_TURN.release()
    if done.returncode != 0:
        lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
        raise DataError(lines[-1].removeprefix("error: ") if lines else f"decoding {source} failed")
    return load_dataset(source, mmap_train=True, decode=False)

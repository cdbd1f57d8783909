"""The ``rename`` command: a stored run's new name, note or both (the store checks them, as it does for the
Runs page), in one line."""
from __future__ import annotations

import sys

from .specs.serde import SpecError, printable


def add_rename_parser(sub):
    """The subcommand's parser; cli.py adds --runs to it with the others."""
    rn = sub.add_parser("rename", help="give a run a new name, a note or both (to tell its runs apart)")
    rn.add_argument("run_id")
    rn.add_argument("--name", help="one line of printable text")
    rn.add_argument("--note", help="what the run tries, one paragraph")
    return rn


def cmd_rename(args) -> int:
    from .runs.store import RunStore

    try:
        name, note = RunStore(args.runs, existing=True).label(args.run_id, args.name, args.note)
    except SpecError as e:
        print(printable(f"error: run {args.run_id} kept its name and note: {e}"), file=sys.stderr)
        return 2
    print(printable(f"run {args.run_id}: name {name!r}, note {note!r}"))
    return 0

"""The run store's own commands: ``runs`` lists the stored runs, ``rename`` gives one a new name, note or both
(the store checks them, as it does for the Runs page), in one line."""
from __future__ import annotations

import datetime as dt
import json
import sys
from functools import partial

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


def cmd_runs(args) -> int:
    from .runs.lifecycle import as_seen, reconcile
    from .runs.records import DAMAGED
    from .runs.store import RunStore

    store = RunStore(args.runs, existing=True)
    reconcile(store)
    rows = [dict(id=r.id, name=r.name, status=r.status, epochs_done=len(r.epochs), epochs_planned=r.planned_epochs,
                 best_acc=r.best_acc, params=r.params, started=dt.datetime.fromtimestamp(r.created).isoformat(
                     timespec="seconds"), message=r.message) for r in map(partial(as_seen, store), store.list())]
    if args.json:
        print(json.dumps(rows))
        return 0
    print(f"{'id':24} {'name':12} {'status':11} {'epochs':>9} {'best acc':>8} {'params':>9}  started")
    for r in rows:
        acc = f"{r['best_acc']:.2%}" if r["best_acc"] else "-"
        epochs = f"{r['epochs_done']:>4}/{r['epochs_planned']:<4}"
        print(f"{r['id']:24} {printable(r['name'])[:12]:12} {r['status']:11} {epochs} "
              f"{acc:>8} {r['params'] or 0:>9,}  {r['started'].replace('T', ' ')}")
        if r["status"] == DAMAGED:
            print(f"  {printable(r['message'])}")
    return 0

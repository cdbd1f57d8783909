"""``python -m playground inside``: a network's activations and a unit's receptive fields on one image, written as
a PNG, with the figures as one line of JSON."""
from __future__ import annotations

import json
import sys

from .errors import UserError
from .specs.serde import printable

IMAGE_HELP = "a photo (PNG, JPEG, WebP…, read as 32×32 RGB) or test:CLASS:INDEX (the INDEX-th test image of CLASS)"


def add_inside_parser(sub):
    """The subcommand's parser; cli.py adds --data and --runs to it with the others."""
    p = sub.add_parser("inside", help="every layer's activations and a unit's receptive fields on one image, as a PNG")
    p.add_argument("run_id", nargs="?", help="a finished run (its weights, and a fresh initialisation beside them)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--preset", help="a preset at its initialisation (see `presets`)")
    g.add_argument("--spec", help="an architecture JSON file, at its initialisation")
    p.add_argument("--image", required=True, help=IMAGE_HELP)
    p.add_argument("--layer", help="the layer, e.g. C3.2 (default: the last, whose RF the rule counts)")
    p.add_argument("--at", help="ROW,COL of the unit in the layer's map (default: its centre)")
    p.add_argument("--out", required=True, help="the PNG to write")
    return p


def parse_at(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != 2 or not all(p.removeprefix("-").isdigit() and p.isascii() and len(p) <= 9 for p in parts):
        raise UserError(f"--at: expected ROW,COL (two whole numbers, e.g. 3,4), got {text[:40]!r}")
    return int(parts[0]), int(parts[1])  # one outside the layer's map is refused with its range by inside.look


def test_image(spec: str, data):
    """The image that test:CLASS:INDEX names: CLASS by name or number, INDEX counted within the class."""
    import numpy as np

    parts = spec.split(":")
    if len(parts) != 3:
        raise UserError(f"--image: expected test:CLASS:INDEX, e.g. test:cat:0, got {spec[:60]!r}")
    _, cls, idx = parts
    names = [c.lower() for c in data.classes]
    if cls.lower() in names:
        k = names.index(cls.lower())
    elif cls.isdigit() and int(cls) < len(names):
        k = int(cls)
    else:
        raise UserError(f"--image: class {cls[:40]!r} is not one of {', '.join(data.classes)} "
                        f"(or 0 to {len(names) - 1})")
    members = np.flatnonzero(data.y_test == k)
    if not idx.isdigit() or int(idx) >= len(members):
        raise UserError(f"--image: index {idx[:20]!r} of class {data.classes[k]}: choose 0 to {len(members) - 1}")
    return data.x_test[members[int(idx)]]


def photo(path: str):
    """A photo file read as the app reads an upload: a regular file (a FIFO or a device is refused unread), at
    most MAX_PHOTO_BYTES, decoded as the data's images are."""
    from .results.evaluate import MAX_PHOTO_BYTES, read_photo
    from .specs.serde import SpecError, read_bounded

    try:
        raw = read_bounded(path, MAX_PHOTO_BYTES, "a photo")
    except SpecError as e:
        raise UserError(f"--image: {'; '.join(e.problems)} (give a photo file or test:CLASS:INDEX)") from None
    try:
        return read_photo(raw)
    except UserError as e:
        raise UserError(f"--image: {printable(path)[:80]}: {e}") from None


def subject_from_args(args):
    """The network to look inside and the data its test images come from (None where none is needed)."""
    from .cli_specs import net_from_args, warn_skipped
    from .results import inside
    from .training.data import load_dataset

    if args.run_id and (args.preset or args.spec):
        raise UserError("give a run id or --preset or --spec, not both")
    data = None
    if args.run_id:
        from .runs.loading import load_run
        from .runs.store import RunStore

        store = RunStore(args.runs, existing=True)
        record = store.get(args.run_id)
        if record is None:
            raise UserError(f"no run {args.run_id[:40]!r} in {store.root}")
        if args.image.startswith("test:"):
            data = load_dataset(args.data or record.spec.get("data") or None)
        return inside.from_run(load_run(store, args.run_id, data)), data
    net = net_from_args(args)
    data = load_dataset(args.data)  # its channel statistics normalise the image, as training will
    warn_skipped(data)
    return inside.from_net(net, data.mean, data.std, data.classes), data


def cmd_inside(args) -> int:
    from .faults import cause_of_os_error
    from .results import inside
    from .results.inside_png import write_png

    at = parse_at(args.at)
    subject, data = subject_from_args(args)
    image = test_image(args.image, data) if args.image.startswith("test:") else photo(args.image)
    view = inside.look(subject, image, args.layer, at)
    try:
        path = write_png(view, args.out)
    except OSError as e:
        raise UserError(f"--out: {cause_of_os_error(e, args.out, 'the picture')}; nothing was written") from None
    print(json.dumps({**view.summary(), "out": str(path)}, allow_nan=False))
    sys.stdout.flush()
    return 0

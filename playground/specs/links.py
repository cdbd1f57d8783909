"""Share links: a spec packed into a URL parameter (compact JSON, zlib, base64url), and unpacked
with bounds, through the one validator.

A link is untrusted input from anyone: a short one can inflate to gigabytes, or carry a spec
the page would crash on. ``decode`` reads at most MAX_LINK_CHARS of link, inflates at most the
JSON size limit, and hands the JSON to the spec's ``from_json`` (types, values, limits); every
failure is a one-line SpecError.
"""
from __future__ import annotations

import base64
import binascii
import json
import zlib
from typing import TypeVar

from .limits import current
from .serde import JsonSpec, SpecError

MAX_LINK_CHARS = 16_384  # browsers and proxies cut URLs at 8-64 KB; our specs pack to well under 2 KB
S = TypeVar("S", bound=JsonSpec)


def encode(spec: JsonSpec) -> str:
    compact = json.dumps(spec.to_dict(), separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(zlib.compress(compact, 9)).decode()


def decode(cls: type[S], text: str) -> S:
    """The spec a link parameter holds, validated; SpecError (one line) for anything else."""
    if len(text) > MAX_LINK_CHARS:
        raise SpecError([f"the link part is {len(text):,} characters; the limit is {MAX_LINK_CHARS:,}"])
    try:
        packed = base64.b64decode(text.encode("ascii"), altchars=b"-_", validate=True)  # strict: no junk in a link
    except (UnicodeEncodeError, binascii.Error, ValueError):
        raise SpecError(["the link part is damaged (not base64)"]) from None
    limit = current().json_bytes
    inflater = zlib.decompressobj()
    try:
        raw = inflater.decompress(packed, limit + 1)
    except zlib.error:
        raise SpecError(["the link part is damaged (not compressed data)"]) from None
    if len(raw) > limit or inflater.unconsumed_tail:
        raise SpecError([f"the link part inflates past the {limit:,}-byte limit for a spec"])
    if not inflater.eof:
        raise SpecError(["the link part is cut short" if packed else "the link part is damaged (empty)"])
    if inflater.unused_data:
        raise SpecError([f"the link part is damaged ({len(inflater.unused_data):,} bytes after its data)"])
    return cls.from_json(raw)

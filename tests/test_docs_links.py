"""README.md is the front door and docs/ holds the rest: every relative link between them must resolve."""
import re
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.M | re.S)
CODE = re.compile(r"`[^`\n]*`")
# [text](target) and ![alt](target), with an optional "title"; the text may hold one level of brackets
INLINE = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$", re.M)


def links(text: str) -> list[str]:
    text = CODE.sub("", FENCE.sub("", text))
    return INLINE.findall(text) + REFERENCE.findall(text)


def relative_targets(page: Path) -> list[str]:
    out = []
    for target in links(page.read_text(encoding="utf-8")):
        if re.match(r"(?i)^(https?:|mailto:)", target):
            continue
        path = unquote(target.split("#", 1)[0].split("?", 1)[0])
        if path:  # a bare #anchor points into the page itself
            out.append(path)
    return out


def test_the_link_parser_finds_what_it_should():
    text = ("[a](x.md) ![b](img/y.png) [c](z.md#part) [d](https://e.org) [f](mailto:g@h) [i](#anchor)\n"
            "`[not](code.md)`\n```\n[nor](fenced.md)\n```\n[ref]: ref.md\n[k [l]](m.md \"title\")\n")
    assert links(text) == ["x.md", "img/y.png", "z.md#part", "https://e.org", "mailto:g@h", "#anchor",
                           "m.md", "ref.md"]


def test_there_are_pages_and_links():
    assert (ROOT / "README.md") in PAGES and len(PAGES) > 2
    assert any("docs/" in t for t in relative_targets(ROOT / "README.md"))


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page: Path):
    missing = [t for t in relative_targets(page) if not (page.parent / t).exists()]
    assert missing == [], f"{page.relative_to(ROOT)} links to missing files: {missing}"


def test_the_readme_is_a_front_door():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 250, f"README.md has {len(lines)} lines; move detail into docs/"

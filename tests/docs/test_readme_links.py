"""The README is the front door of the documentation: every link in it leads somewhere."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def slugs(markdown: str) -> set[str]:
    """The anchors of a Markdown file's headings, as GitHub and mkdocs' toc make them."""
    out: set[str] = set()
    fence = False
    for line in markdown.splitlines():
        if line.startswith("```"):
            fence = not fence
        if not fence and re.match(r"#{1,6} ", line):
            title = line.split(" ", 1)[1].strip().lower()
            out.add(re.sub(r"\s+", "-", re.sub(r"[^\w\s-]", "", title)))
    return out


def test_every_relative_link_in_the_readme_resolves() -> None:
    readme = (ROOT / "README.md").read_text()
    links = re.findall(r"\]\(([^)\s]+)\)", readme)
    relative = [link for link in links if not re.match(r"[a-z]+://", link)]
    assert relative, "the README links into the documentation"
    for link in relative:
        path, _, anchor = link.partition("#")
        target = ROOT / path if path else ROOT / "README.md"
        assert target.exists(), link
        if anchor:
            assert anchor in slugs(target.read_text()), link

"""The documentation site documents the whole public API (``./dev test`` builds it with
``mkdocs build --strict``, which fails on a broken reference, link or anchor)."""

from __future__ import annotations

import re
import types
from pathlib import Path

import kinesio

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
PUBLIC_MODULES = (
    "aggregation",
    "awslambda",
    "metrics.cloudwatch",
    "events",
    "local",
    "multilang",
    "metrics.prometheus",
    "testing",
)


def _documented() -> set[str]:
    names: set[str] = set()
    for page in (DOCS / "api").glob("*.md"):
        names.update(re.findall(r"^::: ([\w.]+)$", page.read_text(), re.M))
    return names


def test_every_public_name_has_an_api_entry() -> None:
    documented = _documented()
    missing = set()
    for name in kinesio.__all__:
        value = getattr(kinesio, name)
        if name == "__version__" or isinstance(value, types.ModuleType):
            continue
        # a name re-exported from a public module is documented on that module's entry
        if f"kinesio.{name}" not in documented and value.__module__ not in documented:
            missing.add(name)
    missing |= {m for m in PUBLIC_MODULES if f"kinesio.{m}" not in documented}
    assert missing == set()


def test_every_api_entry_names_something_public() -> None:
    for dotted in _documented():
        name = dotted.removeprefix("kinesio.")
        assert name in kinesio.__all__ or name in PUBLIC_MODULES, dotted


def test_every_page_is_in_the_navigation() -> None:
    nav = set(re.findall(r"^\s+- [^:]+: (\S+\.md)$", (ROOT / "mkdocs.yml").read_text(), re.M))
    on_disk = {str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md")}
    assert nav == on_disk

"""The documentation's "Testing your code" example runs as written."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

PAGE = Path(__file__).resolve().parents[2] / "docs" / "testing.md"


async def test_the_test_kit_example_passes() -> None:
    code = re.search(r"```python\n(.*?)```", PAGE.read_text(), re.S)
    assert code is not None
    namespace: dict[str, Any] = {}
    exec(compile(code.group(1), "docs/testing.md", "exec"), namespace)
    await namespace["test_my_handler_sees_every_record"]()

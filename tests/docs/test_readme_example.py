"""The README's "Testing your code" example runs as written."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

README = Path(__file__).resolve().parents[2] / "README.md"


async def test_the_readme_test_kit_example_passes() -> None:
    text = README.read_text()
    section = text.split("## Testing your code", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code is not None
    namespace: dict[str, Any] = {}
    exec(compile(code.group(1), "README.md", "exec"), namespace)
    await namespace["test_my_handler_sees_every_record"]()

"""amazon_kclpy 3.2.0 from its PyPI sdist: the Python side of the multilang protocol and its
sample application, unpacked once into the git-ignored ``tests/.kclpy/``.

Its ``setup.py`` downloads the Java daemon's jars when installed, so it is never installed:
the tests put the unpacked sources on the children's ``PYTHONPATH``. ``python
tests/_kclpy.py`` fetches it ahead of the tests.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
CACHE = HERE / ".kclpy"
VERSION = "3.2.0"


def ensure_kclpy() -> Path:
    """The unpacked sdist's root (``amazon_kclpy/``, ``samples/``), downloading it once."""
    root = CACHE / f"amazon_kclpy-{VERSION}"
    if (root / "amazon_kclpy" / "kcl.py").is_file() and (root / "samples").is_dir():
        return root
    CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary=:all:",
             "--no-build-isolation", "-d", tmp, f"amazon_kclpy=={VERSION}"],
            check=True,
        )  # fmt: skip
        (archive,) = Path(tmp).glob("amazon_kclpy-*.tar.gz")
        with tarfile.open(archive) as tar:
            tar.extractall(tmp, filter="data")
        if root.exists():
            shutil.rmtree(root)
        shutil.move(str(Path(tmp) / f"amazon_kclpy-{VERSION}"), root)
    return root


if __name__ == "__main__":
    print(ensure_kclpy())

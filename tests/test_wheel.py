"""The built wheel: what it ships, and that it imports from a plain install of it."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def pip(*args: str, what: str) -> None:
    """``python -m pip ARGS`` (2 min at most); fails the test with pip's output."""
    proc = subprocess.run(
        [sys.executable, "-m", "pip", *args], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, f"{what} failed:\n{proc.stdout}\n{proc.stderr}"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel built from a copy of the sources (a stale ``build/`` in the tree could add
    files that are no longer in ``src/``)."""
    tmp = tmp_path_factory.mktemp("wheel")
    source = tmp / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    shutil.copytree(
        ROOT / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
    )
    out = tmp / "dist"
    pip(
        "wheel",
        "--no-deps",
        "--no-build-isolation",
        "--no-index",
        "-q",
        "-w",
        str(out),
        str(source),
        what="pip wheel",
    )
    wheels = list(out.glob("kinesio-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def test_wheel_ships_the_package_and_its_metadata_only(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    dist_info = [n for n in names if n.split("/")[0].endswith(".dist-info")]
    package = [n for n in names if n.startswith("kinesio/")]
    assert sorted(dist_info + package) == sorted(names), "files outside kinesio/ and dist-info"
    assert "kinesio/py.typed" in names
    assert "kinesio/_loopback.js" in names  # package data the local emulators need
    assert "kinesio/__main__.py" in names
    assert "kinesio/cli/__init__.py" in names
    assert not [n for n in names if "tests/" in n or "benchmarks/" in n or n.endswith(".pyc")]
    # every module in the source tree is in the wheel
    source = {
        p.relative_to(ROOT / "src").as_posix() for p in (ROOT / "src" / "kinesio").rglob("*.py")
    }
    assert source <= set(package), sorted(source - set(package))


def test_wheel_metadata_names_the_command_and_the_extras(wheel: Path) -> None:
    archive = zipfile.ZipFile(wheel)
    info = next(n.split("/")[0] for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
    metadata = archive.read(f"{info}/METADATA").decode()
    assert "Classifier: Typing :: Typed" in metadata
    assert "Requires-Python: >=3.11" in metadata
    assert 'Requires-Dist: moto[server]>=5.0; extra == "local"' in metadata
    entry_points = archive.read(f"{info}/entry_points.txt").decode()
    assert "kinesio = kinesio.cli:main" in entry_points


def test_wheel_installs_and_imports_from_its_own_folder(wheel: Path, tmp_path: Path) -> None:
    target = tmp_path / "site"
    pip(
        "install",
        "--no-deps",
        "--no-index",
        "-q",
        "--target",
        str(target),
        str(wheel),
        what="pip install",
    )
    # -I: no user site, no PYTHONPATH, no current directory; the dependencies come from this
    # interpreter's site-packages, kinesio from the installed wheel put first on sys.path.
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); import kinesio, kinesio.cli; "
        "print(kinesio.__file__); print(len(kinesio.__all__))"
    )
    proc = subprocess.run(
        [sys.executable, "-I", "-c", code, str(target)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    where, exported = proc.stdout.split()
    assert Path(where).resolve().is_relative_to(target.resolve()), where
    assert int(exported) > 0
    # python -m kinesio from the installed wheel
    proc = subprocess.run(
        [sys.executable, "-I", "-c", _RUN_MAIN, str(target), "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Usage: kinesio" in proc.stdout
    assert "playground" in proc.stdout
    # Without the [local] extra (moto hidden the way an install without it lacks it), the
    # playground names the extra exactly.
    proc = subprocess.run(
        [sys.executable, "-I", "-c", _WITHOUT_MOTO + _RUN_MAIN, str(target), "playground"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.splitlines() == [
        "error: the playground needs the embedded emulator",
        "hint: pip install 'kinesio[local]'",
    ]


_WITHOUT_MOTO = "import sys; sys.modules['moto'] = sys.modules['moto.server'] = None; "
_RUN_MAIN = (
    "import runpy, sys; sys.path.insert(0, sys.argv[1]); del sys.argv[1]; "
    "sys.argv[0] = 'kinesio'; runpy.run_module('kinesio', run_name='__main__')"
)

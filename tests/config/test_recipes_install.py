"""The real install: a wheel built from this tree, installed without ``-e`` into a fresh virtual
environment, run from an empty working directory with no checkout in sight.

The fresh environment borrows this environment's dependencies (torch, ...) through a ``.pth`` line
naming its site-packages: such a line only extends ``sys.path``, it does not run the ``.pth`` files
there, so the editable install's finder never loads and ``import kdlab`` can only find the wheel's
copy (checked). CI (``.ci/run``, ``pytest -ra``) runs this test.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
#: what a build reads: the package (with its kdlab/configs link), the recipes it links to, the metadata
SOURCES = ("pyproject.toml", "README.md", "kdlab", "configs")
KD = "cifar100/kd/resnet32x4_resnet8x4"


def _version(dist: str) -> tuple[int, ...]:
    try:
        text = metadata.version(dist)
    except metadata.PackageNotFoundError:
        return ()
    return tuple(int(part) for part in text.split(".")[:2] if part.isdigit())


def _builds_without_the_index() -> bool:
    """setuptools here can build the wheel itself (>= 70.1; older ones need the ``wheel`` package)."""
    setuptools = _version("setuptools")
    return setuptools >= (70, 1) or (setuptools >= (64,) and _version("wheel") >= (0, 38))


def _run(argv: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: int = 300) -> str:
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{' '.join(argv)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wheel built from a copy of this tree (the build's egg-info and build/ stay out of the checkout)."""
    src = tmp_path_factory.mktemp("src")
    skip = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for name in SOURCES:
        if not (REPO / name).exists():  # e.g. no top-level configs/ beside an unpacked sdist's real kdlab/configs
            continue
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, src / name, symlinks=True, ignore=skip)
        else:
            shutil.copy2(REPO / name, src / name)
    out = tmp_path_factory.mktemp("wheel")
    isolation = ["--no-build-isolation"] if _builds_without_the_index() else []
    _run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", *isolation, "--quiet", "-w", str(out)], cwd=src)
    (built,) = out.glob("kdlab-*.whl")
    return built


@dataclass(frozen=True)
class Installed:
    """A fresh venv holding the wheel: its interpreter, its ``kdlab`` script, where packages go, how to run it."""

    python: Path
    kdlab: Path
    site_packages: Path
    env: dict[str, str]

    def run(self, *argv: str, cwd: Path) -> str:
        return _run([str(a) for a in argv], cwd=cwd, env=self.env)


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Installed:
    """The wheel installed (no ``-e``) into a fresh venv that borrows only this environment's dependencies."""
    home = tmp_path_factory.mktemp("venv")
    venv.create(home, with_pip=False, symlinks=os.name != "nt")
    python = home / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    site_packages = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                              cwd=home).strip())
    ours = dict.fromkeys(sysconfig.get_paths()[key] for key in ("purelib", "platlib"))
    (site_packages / "kdlab_test_dependencies.pth").write_text("".join(f"{path}\n" for path in ours))
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index",
          "--no-compile", "--quiet", str(wheel)], cwd=home)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")}
    env.update(PATH=f"{python.parent}{os.pathsep}{env.get('PATH', '')}", VIRTUAL_ENV=str(home),
               PYTHONNOUSERSITE="1", MPLBACKEND="Agg")
    return Installed(python=python, kdlab=python.parent / "kdlab", site_packages=site_packages, env=env)


def test_the_wheel_ships_every_recipe_and_module(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        files = set(archive.namelist())
    recipes = {f"kdlab/configs/{p.relative_to(REPO / 'configs').as_posix()}" for p in (REPO / "configs").rglob("*.yaml")}
    assert recipes and recipes <= files, sorted(recipes - files)[:5]
    assert "kdlab/configs/cifar100/_base_/standard.yaml" in files  # the includes travel with the recipes
    modules = {p.relative_to(REPO).as_posix() for p in (REPO / "kdlab").rglob("*.py") if "__pycache__" not in p.parts}
    assert modules <= files, sorted(modules - files)[:5]
    assert "kdlab/py.typed" in files


def test_the_installed_kdlab_works_from_an_empty_directory(installed: Installed, tmp_path: Path) -> None:
    work = tmp_path / "empty"
    work.mkdir()
    where = installed.run(installed.python, "-c", "import kdlab; print(kdlab.__file__)", cwd=work).strip()
    assert Path(where).is_relative_to(installed.site_packages), where  # the wheel's copy, not the checkout
    launcher = "\n".join(installed.kdlab.read_text().splitlines()[:3])  # a long path gets a /bin/sh trampoline
    assert launcher.startswith("#!") and str(installed.python) in launcher  # the script runs the new venv
    assert not any(work.iterdir())

    names = installed.run(installed.kdlab, "list-configs", cwd=work).split()
    assert KD in names and "demo/teacher" in names and not [n for n in names if "_base_" in n]

    printed = installed.run(installed.kdlab, "print-config", KD, "trainer.epochs=3", cwd=work)
    assert "name: resnet8x4" in printed and "epochs: 3" in printed and "150, 180, 210" in printed  # _base_ read

    installed.run(installed.kdlab, "train", "demo/student", "trainer.epochs=1", "trainer.device=cpu", cwd=work)
    run_dir = work / "runs" / "demo" / "student"
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    assert len(rows) == 1 and "val_top1" in rows[0] and (run_dir / "final.json").is_file()

    installed.run(installed.kdlab, "demo", "--seeds", "1", "--epochs", "1", "--methods", "kd",
                  "--no-embedding-plot", "--out", "runs/demo-check", cwd=work)
    results = json.loads((work / "runs" / "demo-check" / "results.json").read_text())
    assert [row["method"] for row in results] == ["teacher", "kd"]
    assert [p.name for p in work.iterdir()] == ["runs"]  # everything it wrote is below runs/

"""bindiff.adapters must come from a built wheel, never as a bare `adapters` package."""

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    # built from a copy: setuptools builds in the source folder (build/, bindiff.egg-info/), and a stale
    # build/lib would carry deleted modules into every later wheel of the checkout
    source = tmp_path_factory.mktemp("source") / "bindiff"
    shutil.copytree(ROOT, source, symlinks=True, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "dist", "*.egg-info", "runs", "__pycache__", ".hypothesis", ".pytest_cache"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(out)], check=True, capture_output=True)
    (path,) = out.glob("bindiff-*.whl")
    return path


def source_packages() -> set[str]:
    found = set()
    for top, name in (("bindiff", "bindiff"), ("adapters", "bindiff.adapters"), ("recipes", "bindiff.recipes")):
        for init in (ROOT / top).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / top).parts
            found.add(".".join((name, *rel)))
    return found


def test_wheel_maps_adapters_under_bindiff(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert not any(n.startswith("adapters/") for n in names), "a bare 'adapters' package would shadow PyPI's"
    packages = {str(Path(n).parent).replace("/", ".") for n in names if n.endswith("__init__.py")}
    assert packages == source_packages(), "pyproject's package list is out of step with the source tree"
    shipped = {Path(n).name for n in names if n.startswith("bindiff/recipes/") and n.endswith(".yaml")}
    assert shipped == {p.name for p in (ROOT / "recipes").glob("*.yaml")}, "every recipe ships as package data"
    assert "bindiff/py.typed" in names
    licences = [n for n in names if n.endswith("/LICENSE")]
    assert licences and b"MIT License" in zipfile.ZipFile(wheel).read(licences[0]), "the licence ships with the wheel"
    entry = [n for n in names if n.endswith("entry_points.txt")]
    assert "bindiff = bindiff.cli:main" in zipfile.ZipFile(wheel).read(entry[0]).decode()


def test_wheel_imports_as_bindiff_adapters(wheel, tmp_path):
    zipfile.ZipFile(wheel).extractall(tmp_path / "site")
    code = ("import importlib.util, bindiff.adapters.interactions as a, bindiff;"
            "assert bindiff.__file__.startswith(%r), bindiff.__file__;"
            "assert a.__file__.startswith(%r), a.__file__;"
            "print(importlib.util.find_spec('adapters'))") % (str(tmp_path / "site"), str(tmp_path / "site"))
    # run outside the repository so neither the source tree nor the editable install is used first
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                            env={"PYTHONPATH": str(tmp_path / "site"), "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "None"


def test_core_imports_no_adapter_and_no_scipy():
    code = ("import sys, bindiff.core;"
            "bad = sorted(m for m in sys.modules if m.startswith(('bindiff.adapters', 'scipy', 'nibabel', "
            "'SimpleITK', 'typer', 'yaml', 'bindiff.training', 'bindiff.metrics')));"
            "print(bad)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_ci_runs_the_readme_commands():
    readme = (ROOT / "README.md").read_text()
    blocks = [b.split("```", 1)[0].strip() for b in readme.split("```bash\n")[1:]]
    setup_and_train, tests = blocks[0], blocks[1]
    setup = setup_and_train.split(" && BINDIFF_DATA_DIR")[0]
    assert "bindiff train recipes/ml1m.yaml" in setup_and_train
    ci = (ROOT / ".ci" / "run").read_text()
    assert setup in ci and tests in ci

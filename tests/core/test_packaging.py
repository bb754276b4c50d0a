"""The layering holds: the library imports no backbone or runner, and a non-editable install works."""

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

REPO = Path(__file__).resolve().parents[2]
# Import name -> folder, as pyproject.toml's [tool.setuptools.package-dir] maps them.
FOLDERS = {"msft": "msft", "msft_backbones": "backbones", "msft_runner": "runner"}


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


#: what the core (msft/) never imports: a backbone, the runner, or the experiment stack
NOT_IN_CORE = ("msft_backbones", "msft_runner", "backbones", "lightning", "pytorch_lightning", "hydra", "omegaconf")


def _module_strings(path: Path) -> set[str]:
    """String constants that name a module (``"msft_runner.api"``): lazy exports import by string."""
    return {
        node.value
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.split(".")[0] in NOT_IN_CORE
    }


def test_the_core_imports_no_backbone_runner_lightning_or_hydra():
    offending = {
        f"{path.relative_to(REPO)}: {name}"
        for path in (REPO / "msft").rglob("*.py")
        for name in _imports(path) | _module_strings(path)
        if name.split(".")[0] in NOT_IN_CORE
    }
    # msft.finetune / Forecaster / from_pretrained: the one declared door, resolved only when used
    import msft

    door = {f"msft/__init__.py: {module}" for module in msft.RUNNER_EXPORTS.values()}
    assert offending == door, sorted(offending - door)


def test_backbones_import_the_core_only_not_the_runner():
    offending = {
        f"{path.relative_to(REPO)}: {name}"
        for path in (REPO / "backbones").rglob("*.py")
        for name in _imports(path)
        if name.split(".")[0] == "msft_runner"
    }
    assert not offending, sorted(offending)


def test_pyproject_lists_every_package_folder():
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    found = {"msft_runner.configs"}
    for name, folder in FOLDERS.items():
        for init in (REPO / folder).rglob("__init__.py"):
            parts = init.parent.relative_to(REPO / folder).parts
            found.add(".".join((name, *parts)))
    assert listed == found
    assert config["package-dir"] == {
        "msft_backbones": "backbones",
        "msft_runner": "runner",
        "msft_runner.configs": "configs",
    }


def test_import_msft_loads_no_backbone_package():
    code = (
        "import sys, msft, msft.model, msft.layers, msft.data, msft.protocols\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('uni2ts', 'momentfm', 'transformers', 'msft_backbones', 'msft_runner', 'lightning', 'hydra'))\n"
        "print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_a_non_editable_install_runs_msft_train(tmp_path):
    """Build and install the project as a user would (not editable), then run msft-train from an
    unrelated directory: the configs, the embedded checkpoint and the backbones come from the install."""
    target = tmp_path / "site"
    build = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--no-cache-dir",
            "--target",
            str(target),
            str(REPO),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if build.returncode != 0 and "No module named" in build.stderr and "setuptools" in build.stderr:
        pytest.skip("setuptools is not installed in this environment")
    assert build.returncode == 0, build.stderr
    assert (target / "msft_runner" / "configs" / "train.yaml").is_file()
    assert (target / "msft_backbones" / "moirai" / "tiny_moirai" / "model.safetensors").is_file()
    assert not (target / "backbones").exists()
    work = tmp_path / "work"
    work.mkdir()
    env = dict(os.environ, PYTHONPATH=str(target), MSFT_CACHE_DIR=str(tmp_path / "cache"), HF_HUB_OFFLINE="1")
    env.pop("MSFT_CONFIG_DIR", None)
    code = (
        "import msft, msft_runner, msft_backbones; print(msft.__file__, msft_runner.__file__, msft_backbones.__file__)"
    )
    where = subprocess.run([sys.executable, "-c", code], cwd=work, env=env, capture_output=True, text=True)
    assert all(path.startswith(str(target)) for path in where.stdout.split()), where.stdout + where.stderr
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "msft_runner.cli",
            "backbone=toy_tiny",
            "trainer=tiny",
            "method=msft",
            "data.context_length=32",
            "data.horizon=8",
            "data.batch_size=32",
            "data.eval_batch_size=1024",
            "plots=false",
            "experiment=installed",
            "hydra.sweeper.params={}",
        ],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-4000:]
    assert (work / "results" / "installed.md").is_file()

"""Repository hygiene: committed files carry no machine paths, default runs never overwrite them."""

import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MACHINE_PATHS = ("/work/", "/root/", "/home/", "/tmp/pytest-")


def _tracked_files() -> list[Path]:
    try:
        out = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout: cannot list the committed files")
    return [REPO / name for name in out.stdout.split("\0") if name]


def test_committed_text_files_hold_no_machine_paths():
    offending = []
    for path in _tracked_files():
        if path.suffix not in (".md", ".json", ".csv", ".py", ".yaml", ".toml", ".sh", ".txt") or not path.is_file():
            continue
        text = path.read_text(errors="replace")
        offending += [
            f"{path.relative_to(REPO)}: {p}" for p in MACHINE_PATHS if p in text and path.name != Path(__file__).name
        ]
    assert not offending, offending


def test_a_run_left_at_the_default_experiment_writes_no_committed_table():
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        cfg = compose(config_name="train", overrides=["data=csv", "data.path=my.csv"])
    committed = {p.relative_to(REPO).as_posix() for p in _tracked_files()}
    name = cfg.experiment
    assert f"{cfg.results_dir}/{name}.md" not in committed and f"{cfg.results_dir}/{name}.csv" not in committed
    assert "experiment=main" in (REPO / "scripts" / "main.sh").read_text()


def test_every_results_file_cited_in_readme_and_docs_exists():
    """A cited result file that is not committed is a claim nobody can check."""
    import re

    cited = set()
    for doc in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        for path in re.findall(r"(?<![\w/.-])(results/[\w./-]+\.(?:md|csv|json|png|svg))", doc.read_text()):
            cited.add((doc.relative_to(REPO).as_posix(), path))
    assert cited, "no results/ file is cited: the pattern is broken"
    missing = sorted(f"{doc}: {path}" for doc, path in cited if not (REPO / path).is_file())
    assert not missing, missing

"""README states only what committed result files show (issue 31, item 7).

Every number the README writes with three or more decimals (scores, ratios, fusion weights) must be
the rounding of a number in some committed file under ``results/`` (``.md``, ``.csv``, ``.json``). A
number typed by hand, or left behind when a table was regenerated, fails here with its line.
Percentages and two-decimal numbers are derived in prose and are not checked.
"""

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
README_NUMBER = re.compile(r"(?<![\w.])(\d+\.\d{3,})(?!\d)")
FILE_NUMBER = re.compile(r"-?\d+\.\d+(?:[eE][-+]?\d+)?")
NOT_RESULTS = re.compile(r"arXiv \d{4}\.\d{4,5}|https?://\S+")


def _result_numbers() -> list[float]:
    values = set()
    for path in (REPO / "results").rglob("*"):
        if path.suffix in {".md", ".csv", ".json"} and path.is_file():
            values.update(abs(float(v)) for v in FILE_NUMBER.findall(path.read_text(errors="replace")))
    return sorted(values)


def _rounds_to(value: float, text: str) -> bool:
    decimals = len(text.split(".")[1])
    return f"{value:.{decimals}f}" == text


def test_every_readme_number_is_in_a_committed_result_file():
    values = _result_numbers()
    assert values, "no result files found under results/"
    missing = []
    for lineno, line in enumerate((REPO / "README.md").read_text().splitlines(), start=1):
        for text in README_NUMBER.findall(NOT_RESULTS.sub("", line)):
            if not any(_rounds_to(v, text) for v in values):
                missing.append(f"README.md:{lineno}: {text}")
    assert not missing, "README numbers that no committed result file holds:\n" + "\n".join(missing)


def test_the_check_catches_a_number_typed_by_hand():
    values = _result_numbers()
    assert not any(_rounds_to(v, "0.70741234") for v in values)
    assert _rounds_to(0.70736, "0.7074") and not _rounds_to(0.70749, "0.7074")

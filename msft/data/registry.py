"""Known datasets: where each file lives, how to get it, how to verify it and how it is split.

One table instead of per-dataset classes: adding a dataset is adding a row. The relative paths are the
ones of the standard Time-Series-Library / Autoformer distribution (and of ``../shared/data``), so a
directory laid out for those projects works unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

# ETT files are served by the dataset's own repository; the others are distributed through the
# Autoformer Google-Drive folder, which has no stable direct-download URL. For those, downloading
# works when ``MSFT_DATA_MIRROR`` names a base URL serving the same relative paths (checksums make any
# mirror safe); otherwise the error message says where to get the file by hand.
ETT_BASE_URL = "https://raw.githubusercontent.com/zhouhaoyi/ETDataset/main/"
AUTOFORMER_SOURCE = "https://drive.google.com/drive/folders/1ZOYpTUa82_jCcxIdTmyr0LXQfvaM9vIy"


@dataclass(frozen=True)
class DatasetSpec:
    """A known LSF dataset file.

    ``split`` is ``"ett_hour"`` (8640/2880/2880 rows), ``"ett_minute"`` (×4) or ``"ratio"``
    (``int(0.7 N)`` train, ``int(0.2 N)`` test, validation the rest).
    ``sha256``/``size`` are ``None`` where no published checksum is known to this project: such files
    are used with a logged warning instead of a verification.
    """

    name: str
    relpath: str
    split: str
    freq: str
    season: int  # default period of the seasonal-naive baseline, in steps (one day)
    url: str | None = None
    source: str = AUTOFORMER_SOURCE
    sha256: str | None = None
    size: int | None = None


_ROWS = [
    DatasetSpec(
        "ETTh1",
        "ETT-small/ETTh1.csv",
        "ett_hour",
        "h",
        24,
        ETT_BASE_URL + "ETT-small/ETTh1.csv",
        "https://github.com/zhouhaoyi/ETDataset",
        "f18de3ad269cef59bb07b5438d79bb3042d3be49bdeecf01c1cd6d29695ee066",
        2589657,
    ),
    DatasetSpec(
        "ETTh2",
        "ETT-small/ETTh2.csv",
        "ett_hour",
        "h",
        24,
        ETT_BASE_URL + "ETT-small/ETTh2.csv",
        "https://github.com/zhouhaoyi/ETDataset",
        "a3dc2c597b9218c7ce1cd55eb77b283fd459a1d09d753063f944967dd6b9218b",
        2417960,
    ),
    DatasetSpec(
        "ETTm1",
        "ETT-small/ETTm1.csv",
        "ett_minute",
        "15min",
        96,
        ETT_BASE_URL + "ETT-small/ETTm1.csv",
        "https://github.com/zhouhaoyi/ETDataset",
        "6ce1759b1a18e3328421d5d75fadcb316c449fcd7cec32820c8dafda71986c9e",
        10360719,
    ),
    DatasetSpec(
        "ETTm2",
        "ETT-small/ETTm2.csv",
        "ett_minute",
        "15min",
        96,
        ETT_BASE_URL + "ETT-small/ETTm2.csv",
        "https://github.com/zhouhaoyi/ETDataset",
        "db973ca252c6410a30d0469b13d696cf919648d0f3fd588c60f03fdbdbadd1fd",
        9677236,
    ),
    DatasetSpec(
        "Weather",
        "weather/weather.csv",
        "ratio",
        "10min",
        144,
        sha256="34ee981d07313e51da2a50bb600072c8ae4a69cb4b0651f4cb93a069d7a2ba63",
        size=7235425,
    ),
    DatasetSpec(
        "Electricity",
        "electricity/electricity.csv",
        "ratio",
        "h",
        24,
        sha256="7e45845d54c5219bad0ae6bc1b5316cf8ff9cead5d33fa998a5a51c2e4a497ad",
        size=95581762,
    ),
    DatasetSpec(
        "Traffic",
        "traffic/traffic.csv",
        "ratio",
        "h",
        24,
        sha256="cb06463d56fa17d87f47027cd9389ceae82a69eddee51cdb61480e120dab0b16",
        size=136478119,
    ),
    # No published checksum known to this project for these two: loaded unverified, with a warning.
    DatasetSpec("Exchange", "exchange_rate/exchange_rate.csv", "ratio", "D", 5),
    DatasetSpec("ILI", "illness/national_illness.csv", "ratio", "W", 52),
]

LSF_DATASETS: dict[str, DatasetSpec] = {row.name.lower(): row for row in _ROWS}
# Common alternative spellings.
LSF_DATASETS["ecl"] = LSF_DATASETS["electricity"]
LSF_DATASETS["exchange_rate"] = LSF_DATASETS["exchange"]
LSF_DATASETS["illness"] = LSF_DATASETS["ili"]


def get_spec(name: str) -> DatasetSpec:
    """The spec of a known LSF dataset (case-insensitive); ValueError listing the known names."""
    try:
        return LSF_DATASETS[name.lower()]
    except KeyError:
        known = sorted({row.name for row in _ROWS})
        raise ValueError(
            f"unknown dataset {name!r}; expected one of {known}, 'synthetic', a CSV path or a pandas DataFrame"
        ) from None

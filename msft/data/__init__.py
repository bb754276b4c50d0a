"""Datasets for msft experiments: LSF / PF loaders, windows, synthetic series (not imported by ``import msft``).

S2 series-symbol data from the authors' generator live in ``msft.data.s2`` (extra ``msft[pretrain]``), imported on demand.

The Lightning data module that serves these windows to a trainer is the runner's
(``msft_runner.lsf_data.LSFDataModule``): the core imports no Lightning.
"""

from msft.data.files import ChecksumError, DataNotFoundError, download, resolve_data_dir
from msft.data.lsf import LSFSplit, load_lsf, prepare_lsf, read_csv, split_borders
from msft.data.pf import PF_DATASETS, RollingWindows, load_pf, rolling_windows
from msft.data.registry import LSF_DATASETS, DatasetSpec, get_spec
from msft.data.synthetic import add_trend_seasonality, arma_series, s2_series, synthetic_frame
from msft.data.windows import Windows

__all__ = [
    "ChecksumError",
    "DataNotFoundError",
    "DatasetSpec",
    "LSFSplit",
    "LSF_DATASETS",
    "PF_DATASETS",
    "RollingWindows",
    "Windows",
    "add_trend_seasonality",
    "arma_series",
    "download",
    "get_spec",
    "load_lsf",
    "load_pf",
    "prepare_lsf",
    "read_csv",
    "resolve_data_dir",
    "rolling_windows",
    "s2_series",
    "split_borders",
    "synthetic_frame",
]

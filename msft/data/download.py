"""``python -m msft.data.download NAME [NAME ...] [--data-dir DIR]``: fetch known datasets into the cache."""

from __future__ import annotations

import argparse
import logging

from msft.data.files import ChecksumError, DataNotFoundError, download
from msft.data.pf import PF_DATASETS
from msft.data.registry import get_spec


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("names", nargs="+", help="dataset names, e.g. ETTh1 Weather pf:electricity")
    parser.add_argument("--data-dir", default=None, help="target directory (default: MSFT_DATA_DIR or cache)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for name in args.names:
        if name.lower().startswith("pf:"):
            spec = PF_DATASETS[name[3:].lower()].file
        else:
            spec = get_spec(name)
        try:
            path = download(spec, args.data_dir)
        except (DataNotFoundError, ChecksumError) as error:
            raise SystemExit(f"{name}: {error}") from None
        logging.info("%s: %s", name, path)


if __name__ == "__main__":
    main()

"""Write the 24 MOIRAI presets (configs/preset/moirai_{1.0,1.1}_{small,base}_{dataset}.yaml) from one
table: the MSFT authors' context length, patch size and learning rate per dataset (their scripts,
zqiao11/uni2ts branch finetune, cli/conf/lsf/multi_scale/; MOIRAI-base uses 1e-7 everywhere).

    python scripts/moirai_presets.py          # (re)write the files
    python scripts/moirai_presets.py --check  # exit 1 if a committed file differs from the table
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

PRESETS = Path(__file__).resolve().parents[1] / "configs" / "preset"
#: dataset -> (context length, patch size, MOIRAI-small learning rate)
AUTHORS = {
    "ETTh1": (5000, 64, "5e-7"),
    "ETTh2": (3000, 64, "5e-7"),
    "ETTm1": (4000, 128, "5e-6"),
    "ETTm2": (3000, 64, "5e-6"),
    "Weather": (2000, 128, "5e-6"),
    "Electricity": (5000, 64, "1e-4"),
}
BASE_LR = "1e-7"
VERSIONS, SIZES = ("1.0", "1.1"), ("small", "base")

TEMPLATE = """\
# @package _global_
# MOIRAI {version}-R {size} on {dataset}: the MSFT authors' context length, patch size and learning rate (their
# scripts; MOIRAI-base uses 1e-7 everywhere), plus their optimiser settings (moirai_recipe). Their
# fusion prior and scale-weight lr are data.msft_recipe; method=msft_authors is their whole recipe.
# Written by scripts/moirai_presets.py from its table: edit the table, not this file.
defaults:
  - moirai_recipe
  - _self_

data:
  context_length: {context}
  lr:
    lr: {lr}
backbone:
  wrap_options:
    patch_size: {patch}
"""


def presets() -> dict[Path, str]:
    """Every preset file and its text, from the table."""
    files = {}
    for version in VERSIONS:
        for size in SIZES:
            for dataset, (context, patch, small_lr) in AUTHORS.items():
                lr = small_lr if size == "small" else BASE_LR
                text = TEMPLATE.format(version=version, size=size, dataset=dataset, context=context, patch=patch, lr=lr)
                files[PRESETS / f"moirai_{version}_{size}_{dataset}.yaml"] = text
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    args = parser.parse_args(argv)
    stale = [path for path, text in presets().items() if not path.is_file() or path.read_text() != text]
    if args.check:
        for path in stale:
            print(f"{path.name} differs from the table in scripts/moirai_presets.py", file=sys.stderr)
        return 1 if stale else 0
    for path in stale:
        path.write_text(presets()[path])
    print(f"wrote {len(stale)} of {len(presets())} presets")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

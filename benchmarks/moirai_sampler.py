"""Time MOIRAI's mixture sampling: uni2ts' `Mixture.sample` against msft's chosen-component sampler.

    .venv/bin/python -m benchmarks.moirai_sampler          # writes results/pf/moirai_sampler.md

MOIRAI-1.1-R-small's geometry with random weights (the hub is not needed), one thread, patch 32 (of
the packed width 128), 32 series, H = 96: the time of drawing 100 sample paths from one forward's
head (`MoiraiOutput.sample`), and of `MSFTModel.predict_samples` end to end (forward + sampling),
each sampler in turn over interleaved rounds so that load on a shared machine hits both alike.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

import msft
from benchmarks.tiny_moirai_common import machine_line
from msft_backbones.moirai.load import GEOMETRY_DIR, moirai_from_config
from msft_backbones.moirai.spec import MoiraiOutput

SERIES, CONTEXT, HORIZON, PATCH, PATHS = 32, 512, 96, 32, 100


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--out", type=Path, default=Path("results/pf"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    config = json.loads((GEOMETRY_DIR / "moirai-1.1-R-small.json").read_text())
    model = msft.wrap(moirai_from_config(config, seed=0), scales=[1], patch_size=PATCH).eval()
    past = torch.randn(SERIES, CONTEXT, 1, generator=torch.Generator().manual_seed(0)).cumsum(1)
    original = MoiraiOutput.sample

    def uni2ts(self, num_samples):  # the distribution's own sampler over the whole packed width
        self.distr_output = None
        return original(self, num_samples)

    samplers = {"uni2ts Mixture.sample": uni2ts, "chosen component (msft)": original}
    times: dict[str, dict[str, list[float]]] = {name: {"sample": [], "predict_samples": []} for name in samplers}
    with torch.no_grad():
        output = model._forward(*model._check_past(past, None), HORIZON)[0]
        for _ in range(args.rounds):
            for name, sampler in samplers.items():
                MoiraiOutput.sample = sampler
                try:
                    output.distr_output = model.backbone.distr_output
                    start = time.perf_counter()
                    output.sample(PATHS)
                    times[name]["sample"].append(time.perf_counter() - start)
                    start = time.perf_counter()
                    model.predict_samples(past, HORIZON, num_samples=PATHS)
                    times[name]["predict_samples"].append(time.perf_counter() - start)
                finally:
                    MoiraiOutput.sample = original
    command = f".venv/bin/python -m benchmarks.moirai_sampler --rounds {args.rounds}"
    lines = [
        "# MOIRAI mixture sampling: uni2ts' sampler and the chosen-component sampler",
        "",
        f"Regenerate: `{command}`",
        "",
        machine_line(),
        "",
        f"MOIRAI-1.1-R-small geometry (random weights), patch {PATCH} of 128, {SERIES} series, context "
        f"{CONTEXT}, H={HORIZON}, {PATHS} paths; seconds, median (min) over {args.rounds} interleaved rounds.",
        "",
        "| sampler | draw 100 paths | predict_samples (forward + draw) |",
        "|---|---|---|",
    ]
    for name, spans in times.items():
        lines.append(
            f"| {name} | {statistics.median(spans['sample']):.3f} ({min(spans['sample']):.3f}) | "
            f"{statistics.median(spans['predict_samples']):.3f} ({min(spans['predict_samples']):.3f}) |"
        )
    lines += [
        "",
        "- Same distribution (tests/backbones/test_moirai_sampler.py: per-step two-sample KS test); uni2ts "
        "draws all 4 components at all 128 packed positions, msft one component at the 32 a path reads.",
        "",
    ]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "moirai_sampler.md").write_text("\n".join(lines))
    (args.out / "moirai_sampler.json").write_text(json.dumps({"command": command, "seconds": times}, indent=1))


if __name__ == "__main__":
    main()

"""Time-DPD under msft [1,2,4]: one prompt shared by every scale against a prompt per scale, on validation.

    HF_HUB_OFFLINE=1 MSFT_DATA_DIR=../shared/data python -m benchmarks.time_dpd_prompt_sharing

The tiny Time-DPD of the tests (context 64, horizon 16, d_model 8, 2 heads x 8, 16 prototypes, head
channels 16, no dropout, fp32) on the tiny random-weight GPT-2 decoder of `msft_backbones.time_dpd.tiny`
(width 32, 2 layers), with the data config's description in the prompt. ETTh1 and ETTm1 with the LSF
borders, z-scored with the train split's statistics, every variate its own series. For each dataset,
seed and ``prompt_sharing``: the same backbone (built from the seed), ``msft.wrap(scales=[1, 2, 4])``
with the runner's msft options (configs/method/msft.yaml), Adam on `MSFTModel.parameter_groups` with
the data config's learning rates, ``--steps`` steps of ``--batch`` training windows drawn with the
seed (the same windows for both modes); validation MSE (z-scored units) on every ``--val-stride``-th
validation window every ``--eval-every`` steps, the best kept (the runner also selects on
validation). Test windows are never read: the default is chosen on validation alone.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf

REPO = Path(__file__).resolve().parents[1]
DATASETS = ("ETTh1", "ETTm1")
MODES = ("shared", "per_scale")
CONTEXT, HORIZON = 64, 16
#: the tiny Time-DPD of tests/backbones/test_time_dpd.py (SMALL)
TINY = dict(
    context_length=CONTEXT,
    horizon=HORIZON,
    d_model=8,
    num_heads=2,
    d_keys=8,
    num_prototypes=16,
    head_channels=16,
    dropout=0.0,
)


def data_config(name: str):
    return OmegaConf.load(REPO / "configs" / "data" / f"{name}.yaml")


def msft_options() -> dict:
    return dict(OmegaConf.to_container(OmegaConf.load(REPO / "configs" / "method" / "msft.yaml"))["options"])


def run_one(dataset: str, split, mode: str, seed: int, args) -> dict:
    import msft
    from msft_backbones.time_dpd.tiny import tiny_time_dpd

    cfg = data_config(dataset)
    backbone = tiny_time_dpd("gpt2", seed=seed, description=str(cfg.description), prompt_sharing=mode, **TINY)
    torch.manual_seed(seed)  # LoRA A
    model = msft.wrap(backbone, horizon=HORIZON, **msft_options())
    lrs = {k: v for k, v in OmegaConf.to_container(cfg.lr).items() if v is not None}
    optimiser = torch.optim.Adam(model.parameter_groups(**lrs))
    train = split.windows("train", HORIZON, mode="S")
    val = split.windows("val", HORIZON, mode="S", stride=args.val_stride)
    draws = torch.Generator().manual_seed(seed)
    best, curve, start = float("inf"), [], time.process_time()
    for step in range(1, args.steps + 1):
        model.train()
        batch = train[torch.randint(len(train), (args.batch,), generator=draws)]
        loss = model.loss(
            batch["past_target"], batch["future_target"], batch["past_observed"], batch["future_observed"]
        )
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        if step % args.eval_every == 0 or step == args.steps:
            mse = validation_mse(model, val)
            curve.append((step, mse))
            best = min(best, mse)
    return dict(
        dataset=dataset,
        mode=mode,
        seed=seed,
        val_mse=best,
        curve=curve,
        cpu_s=time.process_time() - start,
        tokens=sum(t.hidden.shape[1] for t in tokens_of(model, val)),
    )


@torch.no_grad()
def validation_mse(model, val) -> float:
    model.eval()
    total, count = 0.0, 0
    for batch in val.batches(512):
        forecast = model.predict(batch["past_target"], HORIZON, batch["past_observed"])
        observed = batch["future_observed"]
        total += float(((forecast - batch["future_target"]) ** 2 * observed).sum())
        count += int(observed.sum())
    return total / count


@torch.no_grad()
def tokens_of(model, val) -> list:
    """Every scale's tokens of the first validation window (how many tokens the LLM reads per series)."""
    from msft.sampling import downsample, scaled_length

    series = val[0:1]["past_target"][:, :, 0]
    observed = torch.ones_like(series, dtype=torch.bool)
    tokens = []
    for idx, scale in enumerate(model.scales):
        context, context_observed = downsample(series, observed, scale)
        with model._state.use(idx):
            tokens.append(model.spec.embed(context, context_observed, scaled_length(HORIZON, scale), idx))
    return tokens


def main(argv: list[str] | None = None) -> None:
    from benchmarks.meta import cpu_run_meta
    from msft.data.lsf import prepare_lsf

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "results" / "time_dpd")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--eval-every", type=int, default=100)
    parser.add_argument("--val-stride", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    runs = []
    for dataset in DATASETS:
        split = prepare_lsf(dataset, CONTEXT)
        for seed in args.seeds:
            for mode in MODES:  # both modes of a seed back to back: load hits them alike
                runs.append(run_one(dataset, split, mode, seed, args))
                print(json.dumps({k: v for k, v in runs[-1].items() if k != "curve"}), flush=True)
    command = "HF_HUB_OFFLINE=1 MSFT_DATA_DIR=../shared/data python -m benchmarks.time_dpd_prompt_sharing " + " ".join(
        argv if argv is not None else sys.argv[1:]
    )
    meta = dict(
        **cpu_run_meta(command),
        **{k: getattr(args, k) for k in ("seeds", "steps", "batch", "eval_every", "val_stride")},
    )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "prompt_sharing.json").write_text(json.dumps(dict(meta=meta, runs=runs), indent=2))
    text = render(meta, runs)
    (args.out / "prompt_sharing.md").write_text(text)
    print(text)


def render(meta: dict, runs: list[dict]) -> str:
    def cell(values: list[float]) -> str:
        return (
            f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}" if len(values) > 1 else f"{values[0]:.4f}"
        )

    lines = [
        "# Time-DPD under msft [1,2,4]: one shared prompt vs a prompt per scale (validation only)",
        "",
        f"Regenerate: `{meta['command']}`",
        "",
        "Tiny Time-DPD of the tests (context 64, horizon 16) on the tiny random-weight GPT-2 decoder (width 32, "
        "2 layers); every variate its own series; msft [1,2,4] with the runner's msft options; "
        f"{meta['steps']} Adam steps of {meta['batch']} training windows per run (seeds {meta['seeds']}, the same "
        f"windows for both modes of a seed); validation MSE (z-scored) on every {meta['val_stride']}-th validation "
        f"window, best of the evaluations every {meta['eval_every']} steps. Test windows are never read. "
        f"Machine: {meta['cpu_cores']} CPU cores shared with other jobs, torch {meta['torch']} with "
        f"{meta['torch_threads']} thread(s); load average after the run "
        f"{', '.join(f'{x:.1f}' for x in meta['load_average_after'])}.",
        "",
        "| dataset | prompt_sharing | val MSE (mean ± sd over seeds) | per seed | LLM tokens per series | CPU s per run |",
        "|---|---|---:|---|---:|---:|",
    ]
    means = {}
    for dataset in DATASETS:
        for mode in MODES:
            rs = sorted((r for r in runs if r["dataset"] == dataset and r["mode"] == mode), key=lambda r: r["seed"])
            values = [r["val_mse"] for r in rs]
            means[dataset, mode] = statistics.mean(values)
            lines.append(
                f"| {dataset} | {mode} | {cell(values)} | {', '.join(f'{v:.4f}' for v in values)} | {rs[0]['tokens']} | "
                f"{statistics.mean(r['cpu_s'] for r in rs):.0f} |"
            )
    wins = {
        mode: sum(
            r["val_mse"] < o["val_mse"]
            for r in runs
            for o in runs
            if r["mode"] == mode and o["mode"] != mode and (r["dataset"], r["seed"]) == (o["dataset"], o["seed"])
        )
        for mode in MODES
    }
    overall = {mode: statistics.mean(means[d, mode] for d in DATASETS) for mode in MODES}
    chosen = min(MODES, key=lambda m: overall[m])
    lines += [
        "",
        "Paired by dataset and seed, lower validation MSE: "
        + ", ".join(f"{mode} {wins[mode]} of {len(runs) // 2}" for mode in MODES)
        + ". Mean over the datasets: "
        + ", ".join(f"{mode} {overall[mode]:.4f}" for mode in MODES)
        + f"; lower: **{chosen}**.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()

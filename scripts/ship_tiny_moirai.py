"""Copy a finished tiny-MOIRAI pretraining run into the package and write its model card.

    python scripts/ship_tiny_moirai.py --run runs/tiny_moirai

Copies ``<run>/model/{config.json, model.safetensors}`` to ``msft/pretrained/tiny_moirai/`` and
writes ``README.md`` there from ``<run>/train_log.json`` and, when present,
``results/pretrained/zero_shot.json`` (the zero-shot table) and ``results/pretrained/finetune.json``.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET = ROOT / "msft" / "pretrained" / "tiny_moirai"
RESULTS = ROOT / "results" / "pretrained"


def _zero_shot_table() -> list[str]:
    path = RESULTS / "zero_shot.json"
    if not path.exists():
        return ["(not yet measured: run `python -m benchmarks.tiny_moirai_zero_shot`)"]
    data = json.loads(path.read_text())
    lines = [f"Command: `{data['command']}`", "",
             "| dataset (H=96, S mode, context 512) | tiny MOIRAI MSE | MAE | last value MSE | seasonal naive MSE |",
             "|---|---|---|---|---|"]
    for name, row in data["results"].items():
        lines.append(f"| {name} | {row['tiny_moirai']['mse']:.4f} | {row['tiny_moirai']['mae']:.4f} | "
                     f"{row['last_value']['mse']:.4f} | {row['seasonal_naive']['mse']:.4f} |")
    return lines


def _command(a: dict) -> str:
    return (f"nice -n 10 python scripts/pretrain_tiny_moirai.py --out {a['out']} --seed {a['seed']} "
            f"--steps {a['steps']} --batch-size {a['batch_size']} --lr {a['lr']} "
            f"--warmup {a['warmup']} --d-model {a['d_model']} --num-layers {a['num_layers']} "
            f"--patch-sizes {' '.join(map(str, a['patch_sizes']))} "
            f"--patch-weights {' '.join(str(w) for w in a['patch_weights'])} --max-seq-len {a['max_seq_len']} "
            f"--max-tokens {a['max_tokens']} --pool {a['pool']} --s2-share {a.get('s2_share', 0.25)} "
            f"--walk-max {a.get('walk_max', 0.3)} --threads {a['threads']}")


def card(log: dict, size_bytes: int, n_params: int, stage1: dict | None = None) -> str:
    a = log["args"]
    if stage1 is None:
        command = f"`{_command(a)}`"
    else:
        s1 = stage1["args"]
        command = (f"two stages. Stage 1 ({stage1['steps']} steps, {stage1['train_seconds'] / 60:.1f} min): "
                   f"`{_command(s1)}`. Stage 2 continues stage 1's `state.pt` (weights, AdamW state, step) with "
                   f"a longer cosine schedule (a warm restart at lr ≈ 7e-4) and a recipe with fewer pure-S2 series "
                   f"and gentler random walks, because stage 1 had not learned to continue seasonal patterns: "
                   f"`mkdir -p {a['out']} && cp {s1['out']}/state.pt {a['out']}/ && {_command(a)}`")
    final = log["history"][-1]["loss"] if log["history"] else float("nan")
    lines = [
        "# tiny MOIRAI (msft's embedded backbone)",
        "",
        "A small uni2ts `MoiraiModule` pretrained **from scratch on synthetic series only** so that msft's",
        "main job, tests and tables finetune a real pretrained MOIRAI without any download. It is an",
        "ordinary MOIRAI checkpoint directory: `MoiraiModule.from_pretrained(dir)`,",
        "`backbones.moirai.load_moirai(dir)` and `msft.pretrained.load_tiny_moirai()` all read it.",
        "",
        "## Architecture",
        "",
        f"- d_model {a['d_model']}, {a['num_layers']} layers, max_seq_len {a['max_seq_len']}, patch sizes "
        f"{a['patch_sizes']} (a subset of MOIRAI's 8–128), MOIRAI's mixture head (StudentT, Normal with fixed "
        "scale 0.001, NegativeBinomial, LogNormal), MOIRAI's std scaler.",
        f"- {n_params:,} parameters, {size_bytes / 2**20:.1f} MiB (config.json + model.safetensors).",
        "",
        "## How it was made",
        "",
        f"- Command (seed {a['seed']}): {command}",
        f"- steps: {log['steps']} AdamW steps (weight decay 0.1, betas 0.9/0.98), batch {a['batch_size']} series, "
        f"lr {a['lr']} with {a['warmup']} warm-up steps then cosine to 10%; grad-norm clip 1.",
        f"- wall time: {log['train_seconds'] / 60:.1f} minutes of training in total on a shared 2-core CPU machine "
        f"(torch threads {a['threads']}, other jobs running); final training loss {final:.3f} (mean NLL per "
        "masked point, on the series' original scale).",
        "- Objective: MOIRAI's masked-prediction NLL. Per batch one patch size (16/32/64 with weights "
        f"{a['patch_weights']}), 6–{a['max_tokens']} patches per series, the last 15–50% of patches replaced "
        "by the mask embedding; loss = mixture NLL on the observed points of the masked patches, averaged per "
        "series (uni2ts PackedNLLLoss with one series per row). Random left padding, missing points and a "
        "partial last patch teach the layouts msft produces.",
        "- Data recipe (stage 2: --s2-share 0.1 --walk-max 0.05; no benchmark data, so zero-shot numbers are not leaked): per batch, generated from "
        "`numpy.random.default_rng([seed, step])`: 25% pure S2 series (`msft.data.synthetic.s2_series`, "
        "mixture draws or stationary ARMA, cropped from a pool generated once), otherwise a sum of "
        "seasonal profiles (random Fourier shapes, 1–4 harmonics, periods 4, 7, 12, 24, 30, 48, 52, 96, 144, "
        "168, 288, 365, 672, 1008 and slightly off-grid ones, optional weekly modulation) + trend (none, "
        "linear, piecewise-linear, random walk) + noise (Gaussian, Student-t, AR(1) with φ up to 0.97, rare "
        "spikes) + sometimes an S2 component; 10% count-like non-negative series; a random scale "
        "10^U(-2,3) and offset.",
        "- Resumable: the run directory's `state.pt` (weights, optimiser, step) is rewritten every 2 minutes and "
        "the same command continues from it with identical batches.",
        "",
        "## Zero-shot (LSF protocol, H=96; point forecast = the mixture mean)",
        "",
        *_zero_shot_table(),
        "",
        "## Limits",
        "",
        "- Tiny and briefly trained (CPU minutes, not GPU days): a smoke-scale stand-in for MOIRAI-small, not a "
        "competitive forecaster. Use the published MOIRAI checkpoints for real numbers.",
        "- It has not learned to continue a clean seasonal cycle (on a pure sine it forecasts roughly the "
        "context mean): zero-shot it beats last value and seasonal naive on ETTh2, ETTm2 and Weather but "
        "loses to seasonal naive on ETTh1 and ETTm1, whose daily cycles dominate. Finetuning (LoRA, full, "
        "MSFT) closes part of that gap.",
        "- Trained with context up to a few hundred points per patch size (at most "
        f"{a['max_tokens']} patches); longer contexts are outside what it has seen.",
        "- Licence: Apache-2.0, as msft and uni2ts.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", type=Path, default=ROOT / "runs" / "tiny_moirai")
    p.add_argument("--stage1", type=Path, default=None, help="the run that --run continued (for the card)")
    p.add_argument("--card-only", action="store_true", help="rewrite README.md only (after new zero-shot numbers)")
    args = p.parse_args(argv)
    TARGET.mkdir(parents=True, exist_ok=True)
    if not args.card_only:
        for name in ("config.json", "model.safetensors"):
            shutil.copyfile(args.run / "model" / name, TARGET / name)
        shutil.copyfile(args.run / "train_log.json", TARGET.parent / "tiny_moirai_train_log.json")
        if args.stage1 is not None:
            shutil.copyfile(args.stage1 / "train_log.json", TARGET.parent / "tiny_moirai_train_log_stage1.json")
    log = json.loads((TARGET.parent / "tiny_moirai_train_log.json").read_text())
    stage1_path = TARGET.parent / "tiny_moirai_train_log_stage1.json"
    stage1 = json.loads(stage1_path.read_text()) if stage1_path.exists() else None
    from safetensors.torch import load_file

    n_params = sum(t.numel() for t in load_file(TARGET / "model.safetensors").values())
    size = sum((TARGET / n).stat().st_size for n in ("config.json", "model.safetensors"))
    (TARGET / "README.md").write_text(card(log, size, n_params, stage1))
    print(f"wrote {TARGET}")


if __name__ == "__main__":
    main()

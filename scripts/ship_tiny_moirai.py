"""Copy a finished tiny-MOIRAI pretraining run into the package and write its model card.

    python scripts/ship_tiny_moirai.py --run runs/tiny_moirai

Copies ``<run>/model/{config.json, model.safetensors}`` to ``backbones/moirai/tiny_moirai/`` and
writes ``README.md`` there from the train logs of every stage (``backbones/moirai/tiny_moirai_train_logs/
stageN.json``; the run's ``train_log.json`` is appended as the next stage) and, when present,
``results/pretrained/zero_shot.json`` and ``results/pretrained/seasonal_probe.json``.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET = ROOT / "backbones" / "moirai" / "tiny_moirai"
RESULTS = ROOT / "results" / "pretrained"


def _result(name: str) -> dict | None:
    """results/pretrained/<name>.json, written by ``benchmarks.tiny_moirai_<name>``, or None."""
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def _not_measured(name: str) -> list[str]:
    return [f"(not yet measured: run `python -m benchmarks.tiny_moirai_{name}`)"]


def _table(name: str) -> list[str]:
    """The regenerate line, table and notes of results/pretrained/<name>.md (written by a benchmark)."""
    path = RESULTS / f"{name}.md"
    if not path.exists():
        return [f"(not yet measured: results/pretrained/{name}.md)"]
    lines = path.read_text().splitlines()
    keep = [line for line in lines if line.startswith(("Regenerate:", "|", "- "))]
    return [line if not line.startswith("Regenerate:") else line + "\n" for line in keep]


#: The card's model-specific limits (edit with the checkpoint they describe).
LIMITS = [
    "- Stage 3's seasonal emphasis taught it to continue cycles (ETTh1 zero-shot MSE 0.707 -> 0.444, ETTm1 "
    "0.569 -> 0.414, now below seasonal naive) at a cost on the less periodic series. Earlier stages' numbers "
    "are in git history (results/pretrained/zero_shot.md at e7d810f and 8414534).",
    "- Stage 5 (2747 CPU steps of the 4000 run, chosen on validation) made long contexts help: on the test "
    "splits context 2048 beats 512 on four of five datasets (stage 4: on none). At context 512 it is better "
    "than stage 4 on four datasets, worse on ETTm1, and only a few percent better on average; on held-out "
    "random walks it is within 5% of the last value at context 512 but about 20% behind it at 2048 (see "
    "the tables). The CPU is the bound: the held-out synthetic loss was still falling when the run ended "
    '(`results/pretrained/stage5_curves.md`). The GPU stage in "Stage 5\'s data mix" above is the next '
    "step (prepared and dry-run on the CPU, not run).",
]


def _command(a: dict) -> str:
    extra = ""
    if a.get("seasonal_share"):
        extra += f" --seasonal-share {a['seasonal_share']}"
    if a.get("init_from"):
        extra += f" --init-from {a['init_from']}"
    if a.get("scales", [1]) != [1]:  # stage 4 on: multi-scale copies, long contexts, s2generator pool
        extra += (
            f" --scales {' '.join(map(str, a['scales']))}"
            + (f" --scale-weights {' '.join(str(w) for w in a['scale_weights'])}" if a.get("scale_weights") else "")
            + f" --min-tokens {a['min_tokens']} --token-sampling {a['token_sampling']}"
            + (f" --tokens-per-batch {a['tokens_per_batch']}" if a.get("tokens_per_batch") else "")
            + f" --s2-length {a['s2_length']} --s2-seed {a['s2_seed']} --s2-time-limit {a['s2_time_limit']}"
            + (f" --short-horizon-share {a['short_horizon_share']}" if a.get("short_horizon_share") else "")
            + (
                f" --horizon-sampling {a['horizon_sampling']} --max-context {a['max_context']}"
                if a.get("horizon_sampling", "share") != "share"
                else ""
            )
            + (f" --mix {a['mix']}" if a.get("mix") else "")
            + (f" --val-batches {a['val_batches']}" if a.get("val_batches") else "")
            + f" --checkpoint-minutes {a['checkpoint_minutes']}"
        )
    nice = "nice -n 10 " if a.get("scales", [1]) == [1] else ""  # stages 1-3 ran niced
    return (
        f"{nice}python scripts/pretrain_tiny_moirai.py --out {a['out']} --seed {a['seed']} "
        f"--steps {a['steps']} --batch-size {a['batch_size']} --lr {a['lr']} "
        f"--warmup {a['warmup']} --d-model {a['d_model']} --num-layers {a['num_layers']} "
        f"--patch-sizes {' '.join(map(str, a['patch_sizes']))} "
        f"--patch-weights {' '.join(str(w) for w in a['patch_weights'])} --max-seq-len {a['max_seq_len']} "
        f"--max-tokens {a['max_tokens']} --pool {a['pool']} --s2-share {a.get('s2_share', 0.25)} "
        f"--walk-max {a.get('walk_max', 0.3)}{extra} --threads {a['threads']}"
    )


#: Why each stage after the first was run, and how it starts from the previous one.
STAGE_NOTES = {
    2: (
        "continues stage 1's `state.pt` (weights, AdamW state, step) with a longer cosine schedule (a warm "
        "restart at lr ≈ 7e-4) and a recipe with fewer pure-S2 series and gentler random walks, because stage 1 "
        "had not learned to continue seasonal patterns: `mkdir -p {out} && cp {prev}/state.pt {out}/ && {command}`"
    ),
    3: (
        "starts from stage 2's weights (`--init-from {prev}/model`, a fresh AdamW state; the stage-2 checkpoint "
        "is also the one shipped at commit e7d810f), a new seed (new batches) and half of every batch clean "
        "periodic series (`--seasonal-share 0.5`: on-grid periods, low noise), because stage 2 still forecast a "
        "pure period-24 sine as its mean (`results/pretrained/seasonal_probe.md`): `{command}`"
    ),
    4: (
        "starts from stage 3's weights (`--init-from {prev}/model`, the checkpoint shipped at commit 8414534; "
        "a fresh AdamW state) with the S2 series-symbol pool of the authors' `s2generator` (`msft.data.s2`, "
        "length 1024, seed 0: excitations and responses), every batch's series average-pooled by 1, 2, 4 or 8 "
        "(weights 4:2:2:1) and contexts of 6-128 patches drawn log-uniformly at about 1536 tokens per batch, "
        "because stage 3 had seen at most 24 patches and never a coarsened series. Stages 1-3 ran the script "
        "as of commit 8414534 (its S2 pool was `msft.data.synthetic`'s excitations). The pool was generated "
        "while stage 4 ran, and the validation-split check of a step-429 snapshot showed context 2048 still well behind "
        "context 512, so the run was resumed from `state.pt` twice: steps 0-366 with the first 16 draws (`--pool 16`, "
        "schedule `--steps 1200`), steps 366-538 with 143 draws (`--steps 1000`), then steps 538-800 with the "
        "command below, which adds `--short-horizon-share 0.5` (half the batches mask only 1-3 patches: H=96 after "
        "a 2048 context is 2-3 patches, 2-6% of the tokens, while every earlier batch masked 15-50%) and shortens the cosine "
        "to 800 steps to end within the session's CPU time): `{command}`"
    ),
    5: (
        "starts from stage 4's weights (`--init-from`, the checkpoint shipped before it; a fresh AdamW state) on "
        "the CPU, with the broader mix of issue 33 (`--mix 0.4`: KernelSynth compositions, random walks with "
        "drift and level shifts, multiplicative seasonality, intermittent and count series, `msft.data.pretrain_mix`) "
        "and LSF horizons after contexts of up to 4096 steps (`--horizon-sampling lsf --max-context 4096`), about "
        "6144 tokens per batch, because stage 4 lost to the last value on held-out random walks and forecast worse "
        "from 2048 steps than from 512: `{command}`"
    ),
}


def _own_counts(stages: list[dict]) -> list[tuple[int, float]]:
    """(steps, seconds) each stage trained itself. A stage that continued the previous stage's
    ``state.pt`` (no ``--init-from``) logs cumulative counts; one started with ``--init-from`` starts at 0."""
    counts = []
    for number, stage in enumerate(stages):
        resumed = number > 0 and not stage["args"].get("init_from")
        previous = stages[number - 1] if resumed else {"steps": 0, "train_seconds": 0.0}
        counts.append((stage["steps"] - previous["steps"], stage["train_seconds"] - previous["train_seconds"]))
    return counts


def card(stages: list[dict], size_bytes: int, n_params: int, kept: list[str] = ()) -> str:
    """The model card from the train logs of every stage, in order (the last one made the weights)."""
    log = stages[-1]
    a = log["args"]
    own = _own_counts(stages)
    if len(stages) == 1:
        command = f"`{_command(a)}`"
    else:
        parts = [
            f"{len(stages)} stages. Stage 1 ({own[0][0]} steps, "
            f"{own[0][1] / 60:.1f} min): `{_command(stages[0]['args'])}`."
        ]
        for number, stage in enumerate(stages[1:], start=2):
            prev = stages[number - 2]["args"]["out"]
            stage_args = dict(stage["args"])
            if stage_args.get("init_from"):  # the run read the then-shipped copy of the previous stage's weights
                stage_args["init_from"] = f"{prev}/model"
            note = STAGE_NOTES[number].format(out=stage_args["out"], prev=prev, command=_command(stage_args))
            steps, seconds = own[number - 1]
            parts.append(f"Stage {number} ({steps} steps, {seconds / 60:.1f} min) {note}.")
            if stage.get("shipped"):
                parts.append(
                    f"That run went on to step {stage['run_steps']} ({stage['run_seconds'] / 60:.1f} min); the "
                    f"weights are its validation snapshot at step {steps} ({stage['shipped']['snapshot']}), "
                    f"{stage['shipped']['reason']}."
                )
        command = " ".join(parts)
    total_steps = sum(steps for steps, _ in own)
    total_minutes = sum(seconds for _, seconds in own) / 60
    shipped_history = [h for h in log["history"] if h["step"] <= log["steps"]]
    final = shipped_history[-1]["loss"] if shipped_history else float("nan")
    lines = [
        "# tiny MOIRAI (msft's embedded backbone)",
        "",
        "A small uni2ts `MoiraiModule` pretrained **from scratch on synthetic series only** so that msft's",
        "main job, tests and tables finetune a real pretrained MOIRAI without any download. It is an",
        "ordinary MOIRAI checkpoint directory: `MoiraiModule.from_pretrained(dir)`,",
        "`msft_backbones.moirai.load_moirai(dir)` and `msft_backbones.moirai.load_tiny_moirai()` all read it.",
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
        f"- Command (each stage's seed is in its command line): {command}",
        f"- steps: {total_steps} AdamW steps over all stages (weight decay 0.1, betas 0.9/0.98), batch "
        f"{a['batch_size']} series; each stage warms up then decays its lr by cosine to 10%; grad-norm clip 1.",
        f"- wall time: {total_minutes:.1f} minutes of training in total on a shared 2-core CPU machine "
        f"(torch threads {a['threads']}, other jobs running); final training loss {final:.3f} (mean NLL per "
        "masked point, on the series' original scale).",
        "- Objective: MOIRAI's masked-prediction NLL. Per batch one patch size (16/32/64 with weights "
        f"{a['patch_weights']}), the last 15–50% of patches replaced by the mask embedding; loss = mixture NLL on "
        "the observed points of the masked patches, averaged per series (uni2ts PackedNLLLoss with one series per "
        "row). Random left padding, missing points and a partial last patch teach the layouts msft produces. "
        "Stages 1-3: 6–24 patches per series, 64 series per batch. Stage 4: 6–128 patches (log-uniform; "
        "L up to 2048 at patch 16, 4096 at 32, 8192 at 64), about 1536 tokens per batch (4–64 series). Stage 5: "
        "the LSF horizons 96/192/336/720 (divided by the pooling scale) after contexts of 8 patches up to 4096 "
        "steps, about 6144 tokens per batch.",
        "- Data recipe (no benchmark data, so zero-shot numbers are not leaked; the flags of each stage are in its "
        "command): per batch, generated from `numpy.random.default_rng([seed, step])`: pure S2 series "
        "(stages 1-3: `msft.data.synthetic`'s mixture/ARMA excitations; stage 4: the authors' `s2generator` "
        "series-symbol pool, excitations X and responses Y = f(X), via `msft.data.s2`), otherwise a sum of "
        "seasonal profiles (random Fourier shapes, 1–4 harmonics, periods 4, 7, 12, 24, 30, 48, 52, 96, 144, "
        "168, 288, 365, 672, 1008 and slightly off-grid ones, optional weekly modulation) + trend (none, "
        "linear, piecewise-linear, random walk) + noise (Gaussian, Student-t, AR(1) with φ up to 0.97, rare "
        "spikes) + sometimes an S2 component; 10% count-like non-negative series; a random scale "
        "10^U(-2,3) and offset. With `--seasonal-share p` (stage 3: 0.5, stage 4: 0.4), a share p of the "
        "series is instead a clean periodic one (on-grid periods, noise std 0.02–0.3, sometimes a linear "
        "trend). Stage 4 generates each batch s times longer and average-pools it by s (s in 1, 2, 4, 8): "
        "the same processes at the coarse resolutions MSFT builds.",
        "- Resumable: the run directory's `state.pt` (weights, optimiser, step) is rewritten every 2 minutes and "
        "the same command continues from it with identical batches.",
        "",
        *kept,
        "## Zero-shot (LSF protocol, H=96; point forecast = the mixture mean)",
        "",
        f"`new` is this checkpoint, `current` the one it replaced (stage {len(stages) - 1}). Full protocol "
        "(every test window), "
        "`results/pretrained/zero_shot.md`:",
        "",
        *_table("zero_shot"),
        "",
        "Validation split (subsampled to about 200 windows per dataset; the criterion this checkpoint was "
        "shipped on: the stage's last three snapshots against the previous stage), "
        "`results/pretrained/zero_shot_val_s5.md`:",
        "",
        *_table("zero_shot_val_s5"),
        "",
        "## Held-out synthetic families (never trained on; `results/pretrained/zero_shot_heldout.md`)",
        "",
        "256 generated series per family, H=96, one window each, z-scored with the 2048-step context's "
        "statistics, so both contexts forecast the same future. `walk_heldout` is a martingale (driftless "
        "Student-t walks with level shifts): the last value is the optimal point forecast there.",
        "",
        *_table("zero_shot_heldout"),
        "",
        "## Pretraining curves (stage 5; `results/pretrained/stage5_curves.md`)",
        "",
        "![stage 5](../../../results/pretrained/stage5_curves.png)",
        "",
        *_table("stage5_curves"),
        "",
        "## Multi-scale probe (series pooled by 2 and 4; `results/pretrained/multiscale_probe_sub.md`)",
        "",
        *_table("multiscale_probe_sub"),
        "",
        "## Seasonal probe (synthetic, `results/pretrained/seasonal_probe.md`)",
        "",
        *_table("seasonal_probe"),
        "",
        "## Limits",
        "",
        "- Tiny and briefly trained (CPU minutes, not GPU days): a smoke-scale stand-in for MOIRAI-small, not a "
        "competitive forecaster. Use the published MOIRAI checkpoints for real numbers.",
        *LIMITS,
        f"- Trained with at most {a['max_tokens']} patches per series (context + horizon).",
        "- Licence: Apache-2.0, as msft and uni2ts.",
        "",
    ]
    return "\n".join(lines)


#: sections of the card written by hand (not from the logs); `card` keeps them from the current README
KEPT_SECTIONS = ("## Regenerate the pretraining data", "## Stage 5's data mix")


def kept_sections(readme: str) -> list[str]:
    """The hand-written sections (`KEPT_SECTIONS`) of an existing card, verbatim, in order."""
    sections, current = [], None
    for line in readme.splitlines():
        if line.startswith("## "):
            current = [] if line.startswith(KEPT_SECTIONS) else None
            if current is not None:
                sections.append(current)
        if current is not None:
            current.append(line)
    return ["\n".join(section).rstrip() + "\n" for section in sections]


def snapshot_log(log: dict, snapshot: str, reason: str | None) -> dict:
    """The train log of a run cut at its validation snapshot ``step_NNNNNN``: the steps and seconds
    that made the shipped weights (not the whole run's), the run's length kept under ``run_steps``; the
    history and validations stay whole (the curves show the run on both sides of the snapshot)."""
    step = int(snapshot.removeprefix("step_"))
    marks = [v for v in log.get("validation", []) if v["step"] == step]
    if not marks:
        raise SystemExit(f"snapshot {snapshot!r}: the run's train log has no validation at step {step}")
    if not reason:
        raise SystemExit("--snapshot needs --snapshot-reason (why this snapshot, on which validation)")
    return {
        **log,
        "steps": step,
        "train_seconds": marks[0]["elapsed_s"],
        "run_steps": log["steps"],
        "run_seconds": log["train_seconds"],
        "shipped": {"snapshot": snapshot, "reason": reason},
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", type=Path, default=ROOT / "runs" / "tiny_moirai")
    p.add_argument(
        "--previous",
        type=Path,
        nargs="*",
        default=None,
        help="train_log.json of the earlier stages, in order (default: the ones already in the package)",
    )
    p.add_argument("--card-only", action="store_true", help="rewrite README.md only (after new zero-shot numbers)")
    p.add_argument(
        "--snapshot",
        default=None,
        help="ship <run>/snapshots/<name> (a validation snapshot, e.g. step_002747) instead of <run>/model",
    )
    p.add_argument("--snapshot-reason", default=None, help="why that snapshot (recorded in the stage's log and card)")
    args = p.parse_args(argv)
    TARGET.mkdir(parents=True, exist_ok=True)
    logs = TARGET.parent / "tiny_moirai_train_logs"
    logs.mkdir(exist_ok=True)
    if not args.card_only:
        earlier = sorted(logs.glob("stage*.json")) if args.previous is None else list(args.previous)
        stages = [json.loads(Path(path).read_text()) for path in earlier]
        source = args.run / "snapshots" / args.snapshot if args.snapshot else args.run / "model"
        for name in ("config.json", "model.safetensors"):
            shutil.copyfile(source / name, TARGET / name)
        log = json.loads((args.run / "train_log.json").read_text())
        stages.append(snapshot_log(log, args.snapshot, args.snapshot_reason) if args.snapshot else log)
        for old in logs.glob("stage*.json"):
            old.unlink()
        for number, stage in enumerate(stages, start=1):
            (logs / f"stage{number}.json").write_text(json.dumps(stage, indent=1) + "\n")
    stages = [json.loads(path.read_text()) for path in sorted(logs.glob("stage*.json"))]
    from safetensors.torch import load_file

    n_params = sum(t.numel() for t in load_file(TARGET / "model.safetensors").values())
    size = sum((TARGET / n).stat().st_size for n in ("config.json", "model.safetensors"))
    readme = TARGET / "README.md"
    kept = kept_sections(readme.read_text()) if readme.exists() else []
    readme.write_text(card(stages, size, n_params, kept))
    print(f"wrote {TARGET}")


if __name__ == "__main__":
    main()

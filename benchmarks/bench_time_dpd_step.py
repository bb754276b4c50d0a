"""Time-DPD training step: msft [1,2,4] against Time-DPD's own single-scale step, and where time goes.

    HF_HUB_OFFLINE=1 python -m benchmarks.bench_time_dpd_step --out results/time_dpd

Random weights with the GPT-2 (small) geometry: width 768, vocabulary 50,257, the first
``--llm-layers`` decoder layers (Time-LLM truncates its LLM the same way), fp32 on CPU; the
word-level stand-in tokenizer of `msft_backbones.time_dpd.tiny` (nothing is downloaded). Batch
``--batch`` univariate series, context 512, horizon 96. One step = forward, MSE, backward.

Variants: Time-DPD's own step (its trainable parts train, the prototype map included: its 1000 x V
map is part of every step) and ``msft.wrap(scales=[1, 2, 4])`` (the backbone frozen, msft's parts
train). Steps are timed round-robin (one step of each variant per round) so that load from other
processes hits both alike; the median over rounds is reported. The profile table is one more step
of each variant under torch.profiler, its CPU time attributed to the pieces of the forward (text
prototypes, reprogramming, prompt text and its tokenisation, decoder layers, heads) and the backward.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import time
from pathlib import Path

import torch

from benchmarks.meta import cpu_run_meta

REPO = Path(__file__).resolve().parents[1]
OWN, MSFT = "Time-DPD single-scale step", "msft [1,2,4]"
#: (label, owner, attribute): the pieces of the forward the profile attributes time to.
PIECES = (
    ("text prototypes (W E)", "model", "text_prototypes"),
    ("reprogramming attention", "model_module", "Reprogramming.forward"),
    ("prompt statistics + text", "model_module", "prompt_statistics"),
    ("prompt tokenisation + embedding", "model", "_prefix"),
    ("decoder layers", "llm_module", "run_decoder_layer"),
    ("head + RevIN inverse", "model", "decode"),
)


def build(args):
    from transformers import GPT2Config, GPT2Model

    import msft
    from msft_backbones.time_dpd import TimeDPD, TimeDPDConfig
    from msft_backbones.time_dpd.tiny import tiny_tokenizer

    def backbone():
        torch.manual_seed(0)
        config = GPT2Config(
            vocab_size=50257,
            n_embd=768,
            n_layer=args.llm_layers,
            n_head=12,
            n_positions=1024,
            resid_pdrop=0.0,
            embd_pdrop=0.0,
            attn_pdrop=0.0,
        )
        llm = GPT2Model(config)
        cfg = TimeDPDConfig(
            llm="gpt2", llm_dtype="float32", context_length=args.context, horizon=args.horizon, dropout=0.0
        )
        return TimeDPD(cfg, llm=llm, tokenizer=tiny_tokenizer()).train()

    own = backbone()

    def own_step(batch):
        loss = own.loss(*batch)
        loss.backward()
        return loss

    wrapped = msft.wrap(backbone(), scales=[1, 2, 4]).train()

    def msft_step(batch):
        loss = wrapped.loss(*batch)
        loss.backward()
        return loss

    def count(m):
        return sum(p.numel() for p in m.parameters() if p.requires_grad)

    return {OWN: (own_step, own, count(own)), MSFT: (msft_step, wrapped, count(wrapped))}


@contextlib.contextmanager
def labelled_pieces():
    """Wrap the forward's pieces in torch.profiler.record_function for the profile table."""
    from msft_backbones.time_dpd import llm as llm_module
    from msft_backbones.time_dpd import model as model_module

    owners = {"model": model_module.TimeDPD, "model_module": model_module, "llm_module": llm_module}
    undo = []
    for label, owner, attr in PIECES:
        target = owners[owner]
        if "." in attr:
            cls_name, attr = attr.split(".")
            target = getattr(target, cls_name)
        original = getattr(target, attr)

        def labelled(*a, _original=original, _label=label, **k):
            with torch.profiler.record_function(_label):
                return _original(*a, **k)

        setattr(target, attr, labelled)
        undo.append((target, attr, original))  # prompt_statistics: the name the model module calls
    try:
        yield
    finally:
        for target, attr, original in reversed(undo):
            setattr(target, attr, original)


def profile_step(step, batch, module) -> dict[str, float]:
    """CPU ms per labelled piece of one step (top-level pieces only), plus forward / backward totals."""
    module.zero_grad(set_to_none=True)
    with labelled_pieces(), torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        with torch.profiler.record_function("forward + loss"):
            loss = module.loss(*batch)
        with torch.profiler.record_function("backward"):
            loss.backward()
    totals = {e.key: e.cpu_time_total / 1e3 for e in prof.key_averages()}
    counts = {e.key: e.count for e in prof.key_averages()}
    labels = [label for label, _, _ in PIECES] + ["forward + loss", "backward"]
    return {label: dict(ms=totals.get(label, 0.0), calls=counts.get(label, 0)) for label in labels}


def make_batch(args):
    torch.manual_seed(0)
    past = torch.randn(args.batch, args.context, 1).cumsum(1) + 10
    future = torch.randn(args.batch, args.horizon, 1) + past[:, -1:]
    return past, future


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "results" / "time_dpd")
    parser.add_argument("--name", default="bench_time_dpd_step", help="output file stem (e.g. a 'before' run)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--context", type=int, default=512)
    parser.add_argument("--horizon", type=int, default=96)
    parser.add_argument("--llm-layers", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    batch = make_batch(args)
    variants = build(args)
    for _ in range(args.warmup):
        for step, module, _ in variants.values():
            step(batch)
            module.zero_grad(set_to_none=True)
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name, (step, module, _) in variants.items():
            start = time.perf_counter()
            step(batch)
            times[name].append(time.perf_counter() - start)
            module.zero_grad(set_to_none=True)
    profiles = {name: profile_step(step, batch, module) for name, (step, module, _) in variants.items()}
    own = statistics.median(times[OWN])
    rows = [
        dict(
            variant=name,
            median_ms=1e3 * statistics.median(t),
            min_ms=1e3 * min(t),
            vs_single_scale=statistics.median(t) / own,
            trainable_params=variants[name][2],
        )
        for name, t in times.items()
    ]
    command = "HF_HUB_OFFLINE=1 python -m benchmarks.bench_time_dpd_step " + " ".join(
        argv if argv is not None else sys.argv[1:]
    )
    meta = dict(
        **cpu_run_meta(command),
        **{k: getattr(args, k) for k in ("batch", "context", "horizon", "llm_layers", "warmup", "rounds")},
    )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.name}.json").write_text(json.dumps(dict(meta=meta, rows=rows, profile=profiles), indent=2))
    (args.out / f"{args.name}.md").write_text(render(meta, rows, profiles))
    print(render(meta, rows, profiles))


def render(meta, rows, profiles) -> str:
    lines = [
        "# Time-DPD training step: msft [1,2,4] vs its own single-scale step (GPT-2 geometry, random weights)",
        "",
        f"Regenerate: `{meta['command']}`",
        "",
        f"Machine: {meta['machine']}, {meta['cpu_cores']} CPU cores shared with other jobs, torch {meta['torch']} "
        f"with {meta['torch_threads']} thread(s); load average after the run: "
        f"{', '.join(f'{x:.1f}' for x in meta['load_average_after'])}. Width 768, vocabulary 50,257, "
        f"{meta['llm_layers']} decoder layers, fp32; batch {meta['batch']}, context {meta['context']}, horizon "
        f"{meta['horizon']}; forward + MSE + backward, median of {meta['rounds']} round-robin rounds after "
        f"{meta['warmup']} warm-up round(s).",
        "",
        "| variant | median step (ms) | min (ms) | × single-scale | trainable params |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['variant']} | {r['median_ms']:.0f} | {r['min_ms']:.0f} | {r['vs_single_scale']:.2f} | "
            f"{r['trainable_params']:,} |"
        )
    names = list(profiles)
    lines += [
        "",
        "Where the time goes (one profiled step each; CPU ms of each piece including what it calls, "
        "and how many times it ran):",
        "",
        "| piece | " + " | ".join(names) + " |",
        "|---|" + "---:|" * len(names),
    ]
    for label in next(iter(profiles.values())):
        cells = [f"{profiles[n][label]['ms']:.0f} ({profiles[n][label]['calls']}×)" for n in names]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()

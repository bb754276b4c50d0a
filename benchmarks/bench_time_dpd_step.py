"""Time-DPD training step, like for like: msft [1,2,4] against msft [1] and peft LoRA on the same frozen model.

    HF_HUB_OFFLINE=1 python -m benchmarks.bench_time_dpd_step

Random weights with the GPT-2 (small) geometry: width 768, vocabulary 50,257, the first
``--llm-layers`` decoder layers (Time-LLM truncates its LLM the same way), fp32 on CPU; the
word-level stand-in tokenizer of `msft_backbones.time_dpd.tiny` (nothing is downloaded). Batch
``--batch`` univariate series, context 512, horizon 96. One step = forward, loss, backward.

Like-for-like variants: the same frozen Time-DPD (every backbone parameter frozen, the prototype
map included) under the runner's methods (`msft_runner.methods.build_model` with
configs/method/{msft,msft_single_scale,lora}.yaml): msft [1,2,4] with one shared prompt (the default)
and with a prompt per scale, msft [1], and peft LoRA on the same q/k/v projections. Time-DPD's own
training step (its trainable parts train, the 1000 x V prototype map included) is a separate,
labelled row: not the same job. Steps are timed round-robin (one step of each variant per round, the
order rotated every round) so that load from other processes hits all alike; a step's time is the
process's CPU time (one thread: time slices given to other jobs are not counted, as they are in the
wall time, also recorded), and the median over rounds is reported. Memory per variant: the bytes autograd keeps for backward (distinct storages, weights
excluded, as benchmarks/time_dpd_memory.py measures) and the trainable state (fp32 weights, gradients
and two Adam moments, 16 B per parameter); the frozen weights are the same for every variant. The
7B default's numbers come from ``results/time_dpd/memory.json`` (benchmarks/time_dpd_memory.py). The
profile table is ``--profile-steps`` more round-robin steps of each variant with the CPU time of
the forward's pieces (decoder layers, reprogramming, prompt, aggregation, heads) and of the backward.
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
from omegaconf import OmegaConf

from benchmarks.meta import cpu_run_meta

REPO = Path(__file__).resolve().parents[1]
SHARED, PER_SCALE, SINGLE, LORA = (
    "msft [1,2,4], shared prompt (default)",
    "msft [1,2,4], prompt per scale",
    "msft [1]",
    "peft LoRA",
)
OWN = "Time-DPD's own training step (not like for like: trains the prototype map)"
LIKE_FOR_LIKE = (SHARED, PER_SCALE, SINGLE, LORA)
#: variant -> (runner method config, prompt_sharing)
METHODS = {
    SHARED: ("msft", "shared"),
    PER_SCALE: ("msft", "per_scale"),
    SINGLE: ("msft_single_scale", "shared"),
    LORA: ("lora", "shared"),
}
#: (label, owner, attribute): the pieces of the forward whose CPU time the profile reports (none calls another).
PIECES = (
    ("text prototypes (W E)", "model", "TimeDPD.text_prototypes"),
    ("reprogramming attention", "model", "Reprogramming.forward"),
    ("prompt statistics + text", "model", "TimeDPD.prompts"),
    ("prompt tokenisation + embedding", "model", "TimeDPD._prefix"),
    ("decoder layers (with LoRA)", "llm", "run_decoder_layer"),
    ("cross-scale aggregation", "layers", "CrossScaleAggregation.forward"),
    ("head + RevIN inverse", "model", "TimeDPD.decode"),
)


def method_config(name: str) -> dict:
    """configs/method/<name>.yaml merged over its defaults."""
    cfg = OmegaConf.load(REPO / "configs" / "method" / f"{name}.yaml")
    bases = [OmegaConf.create(method_config(d)) for d in cfg.pop("defaults", []) if d != "_self_"]
    return OmegaConf.to_container(OmegaConf.merge(*bases, cfg), resolve=True)


def build_variant(label: str, make_backbone, horizon: int, wrap_options: dict | None = None):
    """``label``'s module (with ``loss(past, future)``) on a backbone from ``make_backbone(prompt_sharing)``,
    through the runner's method for the like-for-like ones; and its trainable parameter count."""
    from msft_runner.methods import build_model

    if label == OWN:
        module = make_backbone("shared")
    else:
        method, sharing = METHODS[label]
        cfg = method_config(method)
        built = build_model(
            make_backbone(sharing), cfg["kind"], horizon, cfg.get("options"), cfg.get("peft"), wrap_options=wrap_options
        )
        module = built.model
    return module.train(), sum(p.numel() for p in module.parameters() if p.requires_grad)


def build_variants(make_backbone, horizon: int) -> dict:
    """label -> `build_variant`, each on its own backbone."""
    return {label: build_variant(label, make_backbone, horizon) for label in (*LIKE_FOR_LIKE, OWN)}


def gpt2_backbone(args):
    from transformers import GPT2Config, GPT2Model

    from msft_backbones.time_dpd import TimeDPD, TimeDPDConfig
    from msft_backbones.time_dpd.tiny import tiny_tokenizer

    def backbone(sharing: str):
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
        cfg = TimeDPDConfig(
            llm="gpt2",
            llm_dtype="float32",
            context_length=args.context,
            horizon=args.horizon,
            dropout=0.0,
            prompt_sharing=sharing,
        )
        return TimeDPD(cfg, llm=GPT2Model(config), tokenizer=tiny_tokenizer())

    return backbone


def step(module, batch) -> None:
    module.loss(*batch).backward()
    module.zero_grad(set_to_none=True)


def saved_bytes(module, batch) -> int:
    """Bytes of the distinct storages autograd saves for backward during one loss, weights excluded."""
    weights = {p.untyped_storage().data_ptr() for p in module.parameters()}
    weights |= {b.untyped_storage().data_ptr() for b in module.buffers()}
    seen: dict[int, int] = {}

    def pack(t):
        storage = t.untyped_storage()
        if storage.data_ptr() not in weights:
            seen[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = module.loss(*batch)
    loss.backward()
    module.zero_grad(set_to_none=True)
    return sum(seen.values())


@contextlib.contextmanager
def timed_pieces(spent: dict[str, list[float]]):
    """Add each piece's CPU seconds and calls to ``spent[label]`` (``[seconds, calls]``) while inside."""
    from msft import layers as layers_module
    from msft_backbones.time_dpd import llm as llm_module
    from msft_backbones.time_dpd import model as model_module

    owners = {"model": model_module, "llm": llm_module, "layers": layers_module}
    undo = []
    for label, owner, path in PIECES:
        target, *inner, attr = [owners[owner], *path.split(".")]
        for name in inner:
            target = getattr(target, name)
        original = getattr(target, attr)

        def timed(*a, _original=original, _label=label, **k):
            start = time.process_time()
            try:
                return _original(*a, **k)
            finally:
                entry = spent.setdefault(_label, [0.0, 0])
                entry[0] += time.process_time() - start
                entry[1] += 1

        setattr(target, attr, timed)
        undo.append((target, attr, original))
    try:
        yield
    finally:
        for target, attr, original in reversed(undo):
            setattr(target, attr, original)


def profile_steps(batch, variants: dict, steps: int) -> dict[str, dict]:
    """CPU ms per piece of the forward (median over ``steps`` round-robin steps, and calls per step),
    plus the forward + loss and backward totals."""
    samples: dict[str, dict[str, list]] = {name: {} for name in variants}
    for _ in range(steps):
        for name, (module, _) in variants.items():
            spent: dict[str, list[float]] = {}
            with timed_pieces(spent):
                start = time.process_time()
                loss = module.loss(*batch)
                middle = time.process_time()
                loss.backward()
                end = time.process_time()
            module.zero_grad(set_to_none=True)
            spent["forward + loss"], spent["backward"] = [middle - start, 1], [end - middle, 1]
            for label, value in spent.items():
                samples[name].setdefault(label, []).append(value)
    labels = [label for label, _, _ in PIECES] + ["forward + loss", "backward"]
    return {
        name: {
            label: dict(
                ms=1e3 * statistics.median(v[0] for v in s[label]) if label in s else 0.0,
                calls=s[label][0][1] if label in s else 0,
            )
            for label in labels
        }
        for name, s in samples.items()
    }


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
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--profile-steps", type=int, default=3, help="steps per variant behind the profile table")
    parser.add_argument("--memory-json", type=Path, default=REPO / "results" / "time_dpd" / "memory.json")
    parser.add_argument("--render-only", action="store_true", help="rewrite the .md from the .json and memory.json")
    args = parser.parse_args(argv)
    seven_b = json.loads(args.memory_json.read_text()) if args.memory_json.is_file() else None
    if args.render_only:
        result = json.loads((args.out / f"{args.name}.json").read_text())
        (args.out / f"{args.name}.md").write_text(render(result["meta"], result["rows"], result["profile"], seven_b))
        return

    torch.set_num_threads(args.threads)
    batch = make_batch(args)
    variants = build_variants(gpt2_backbone(args), args.horizon)
    names = list(variants)
    for _ in range(args.warmup):
        for module, _ in variants.values():
            step(module, batch)
    times: dict[str, list[float]] = {name: [] for name in names}  # CPU seconds of the process
    walls: dict[str, list[float]] = {name: [] for name in names}
    for r in range(args.rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            start, wall = time.process_time(), time.perf_counter()
            step(variants[name][0], batch)
            times[name].append(time.process_time() - start)
            walls[name].append(time.perf_counter() - wall)
    memory = {name: saved_bytes(module, batch) for name, (module, _) in variants.items()}
    profiles = profile_steps(batch, variants, args.profile_steps)
    median = {name: statistics.median(t) for name, t in times.items()}
    rows = [
        dict(
            variant=name,
            median_ms=1e3 * median[name],
            min_ms=1e3 * min(times[name]),
            median_wall_ms=1e3 * statistics.median(walls[name]),
            paired_vs_msft_1=statistics.median(t / s for t, s in zip(times[name], times[SINGLE])),
            paired_vs_peft_lora=statistics.median(t / s for t, s in zip(times[name], times[LORA])),
            vs_msft_1=median[name] / median[SINGLE],
            vs_peft_lora=median[name] / median[LORA],
            trainable_params=variants[name][1],
            saved_for_backward_bytes=memory[name],
            trainable_state_bytes=16 * variants[name][1],
            times_ms=[1e3 * t for t in times[name]],
            wall_ms=[1e3 * t for t in walls[name]],
        )
        for name in names
    ]
    command = "HF_HUB_OFFLINE=1 python -m benchmarks.bench_time_dpd_step " + " ".join(
        argv if argv is not None else sys.argv[1:]
    )
    meta = dict(
        **cpu_run_meta(command),
        **{
            k: getattr(args, k)
            for k in ("batch", "context", "horizon", "llm_layers", "warmup", "rounds", "profile_steps")
        },
    )
    args.out.mkdir(parents=True, exist_ok=True)
    result = dict(meta=meta, rows=rows, profile=profiles)
    (args.out / f"{args.name}.json").write_text(json.dumps(result, indent=2))
    text = render(meta, rows, profiles, seven_b)
    (args.out / f"{args.name}.md").write_text(text)
    print(text)


def render(meta, rows, profiles, seven_b) -> str:
    mib = lambda b: f"{b / 2**20:,.0f}"  # noqa: E731
    lines = [
        "# Time-DPD training step, like for like: msft [1,2,4] vs msft [1] vs peft LoRA (GPT-2 geometry, random "
        "weights)",
        "",
        f"Regenerate: `{meta['command']}`",
        "",
        f"Machine: {meta['machine']}, {meta['cpu_cores']} CPU cores **shared with other jobs**, torch {meta['torch']} "
        f"with {meta['torch_threads']} thread(s); load average after the run: "
        f"{', '.join(f'{x:.1f}' for x in meta['load_average_after'])}. Width 768, vocabulary 50,257, "
        f"{meta['llm_layers']} decoder layers, fp32; batch {meta['batch']} series, context {meta['context']}, horizon "
        f"{meta['horizon']}; forward + loss + backward, median of {meta['rounds']} round-robin rounds (order rotated "
        f"each round) after {meta['warmup']} warm-up round(s). Step time is the CPU time of the (single-threaded) "
        "process, which time slices given to other jobs do not count, unlike the wall time (shown too); the "
        "paired ratio is the median over rounds of the step's time over the reference's in the same round. "
        "The same frozen Time-DPD under the runner's methods "
        "(configs/method/msft.yaml, msft_single_scale.yaml, lora.yaml); Time-DPD's own step is a different job "
        "(it trains the 1000 x V prototype map) and is shown apart.",
        "",
        "| variant | median step, CPU (ms) | min (ms) | wall (ms) | × msft [1] (paired) | × peft LoRA (paired) | "
        "trainable params | saved for backward (MiB) | trainable state (MiB) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['variant']} | {r['median_ms']:.0f} | {r['min_ms']:.0f} | {r['median_wall_ms']:.0f} | "
            f"{r['vs_msft_1']:.2f} ({r['paired_vs_msft_1']:.2f}) | {r['vs_peft_lora']:.2f} "
            f"({r['paired_vs_peft_lora']:.2f}) | {r['trainable_params']:,} | {mib(r['saved_for_backward_bytes'])} | "
            f"{mib(r['trainable_state_bytes'])} |"
        )
    shared = next(r for r in rows if r["variant"] == SHARED)
    lines += [
        "",
        f"Goal (issue 35): msft [1,2,4] ≤ 1.5× msft [1] and ≤ 2.0× peft LoRA per step. Measured (ratio of the "
        f"medians): {shared['vs_msft_1']:.2f}× msft [1] ({'met' if shared['vs_msft_1'] <= 1.5 else 'missed'}), "
        f"{shared['vs_peft_lora']:.2f}× peft LoRA ({'met' if shared['vs_peft_lora'] <= 2.0 else 'missed'}). "
        "Saved for backward: bytes autograd keeps (distinct storages, weights excluded); trainable state: fp32 "
        "weights + gradients + two Adam moments (16 B per trainable parameter). The frozen weights are the same "
        "for every variant.",
    ]
    if seven_b is not None and "variants" in seven_b:
        lines += ["", *seven_b_lines(seven_b)]
    names = list(profiles)
    lines += [
        "",
        f"Where the time goes (CPU ms of each piece of the forward, including what it calls, median of "
        f"{meta.get('profile_steps', 1)} more round-robin steps per variant, and how many times it ran per step):",
        "",
        "| piece | " + " | ".join(names) + " |",
        "|---|" + "---:|" * len(names),
    ]
    for label in next(iter(profiles.values())):
        cells = [f"{profiles[n][label]['ms']:.0f} ({profiles[n][label]['calls']}×)" for n in names]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def seven_b_lines(r: dict) -> list[str]:
    """The 7B default's activation memory per variant, from benchmarks/time_dpd_memory.py's result."""
    gib = lambda b: f"{b / 2**30:,.2f}"  # noqa: E731
    lines = [
        "At the 7B default (DeepSeek-R1-Distill-Qwen-7B geometry, bf16, 28 layers, context 512, horizon 96; "
        f"`{r['command']}`, [memory.md](memory.md)), per series:",
        "",
        "| variant | LLM tokens per series | saved for backward, 28 layers (GiB) | with gradient checkpointing "
        "(GiB, estimate) | trainable state (GiB) |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, v in r["variants"].items():
        checkpointed = gib(v["checkpointed_bytes"]) if "checkpointed_bytes" in v else "—"
        lines.append(
            f"| {name} | {v['tokens']} | {gib(v['total_bytes'])} | {checkpointed} | {gib(16 * v['trainable'])} |"
        )
    return lines


if __name__ == "__main__":
    main()

"""GPU training-step time and peak memory: MOIRAI full / LoRA / msft [1,2,4] (fp32 and bf16), Time-DPD 7B memory.

    HF_HUB_OFFLINE=1 python -m benchmarks.bench_gpu                 # on one GPU, < 5 minutes; writes results/gpu/
    HF_HUB_OFFLINE=1 python -m benchmarks.bench_gpu --dry-run --out /tmp/gpu   # tiny sizes on CPU (the test)

MOIRAI: random weights with the moirai-1.1-R-small geometry (shipped) and -base (the same with
d_model 768 and 12 layers, as published), batch ``--batch`` univariate series, context 5000, horizon
96, patch 64 (the paper's ETTh1 setting). One step = forward, NLL, backward. Variants: full
finetuning, LoRA via peft (r=16, q/k/v), msft [1,2,4]; each in fp32 and under bf16 autocast (the
trainable parameters stay fp32). Steps are timed round-robin per geometry and precision with CUDA
synchronisation; peak memory is ``torch.cuda.max_memory_allocated`` over one step (weights included).
``--compile`` adds msft [1,2,4] under ``torch.compile`` (its compile time reported separately).

Time-DPD: the DeepSeek-R1-Distill-Qwen-7B geometry (28 layers, width 3584) with random bf16 weights
built directly on the GPU, the word-level stand-in tokenizer (nothing is downloaded); weights memory
and the peak of one training step of Time-DPD alone and of msft [1,2,4] at batch ``--tdpd-batch``.

``--dry-run`` runs every code path on CPU at toy sizes so that the script is tested without a GPU;
its numbers mean nothing.
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import statistics
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
FULL, LORA, MSFT, MSFT_COMPILED = "full finetuning", "LoRA (peft, r=16, q/k/v)", "msft [1,2,4]", "msft [1,2,4] compiled"
PRECISIONS = ("fp32", "bf16")
GiB = 2**30


def moirai_geometry(name: str, dry_run: bool) -> dict:
    from msft_backbones.moirai.load import GEOMETRY_DIR

    config = json.loads((GEOMETRY_DIR / "moirai-1.1-R-small.json").read_text())
    if name == "base":  # moirai-1.1-R-base: the small config at width 768 and 12 layers
        config.update(d_model=768, num_layers=12)
    if dry_run:
        config.update(d_model=64, num_layers=2)  # one head of 64
    return config


class Timer:
    def __init__(self, device: torch.device):
        self.device = device

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def reset_peak(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)

    def peak_gib(self) -> float | None:
        return torch.cuda.max_memory_allocated(self.device) / GiB if self.device.type == "cuda" else None


def moirai_variants(geometry: dict, args, device: torch.device) -> dict:
    from peft import LoraConfig, get_peft_model

    import msft
    from msft_backbones.moirai import moirai_from_config, pack_series

    pristine = moirai_from_config(geometry, seed=0)

    def single_scale(module):
        def step(past, future):
            packed = pack_series(
                past[..., 0],
                ~torch.isnan(past[..., 0]),
                future.shape[1],
                args.patch,
                max(module.patch_sizes),
                future=future[..., 0],
            )
            distr = module(*packed.module_inputs())
            mask = packed.prediction_mask.unsqueeze(-1) & packed.observed_mask
            log_prob = distr.log_prob(packed.target)
            return -torch.where(mask, log_prob, torch.zeros_like(log_prob)).sum() / mask.sum()

        return step

    full = copy.deepcopy(pristine).to(device).train().requires_grad_(True)
    lora = get_peft_model(
        copy.deepcopy(pristine),
        LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules=["q_proj", "k_proj", "v_proj"]),
    )
    lora_inner = lora.get_base_model().to(device).train()
    wrapped = msft.wrap(copy.deepcopy(pristine), scales=[1, 2, 4], patch_size=args.patch).to(device).train()
    variants = {
        FULL: (single_scale(full), full),
        LORA: (single_scale(lora_inner), lora_inner),
        MSFT: (wrapped.loss, wrapped),
    }
    if args.compile:
        compiled = msft.wrap(copy.deepcopy(pristine), scales=[1, 2, 4], patch_size=args.patch).to(device).train()
        variants[MSFT_COMPILED] = (torch.compile(compiled.loss), compiled)
    return variants


def bench_moirai(args, device: torch.device) -> list[dict]:
    timer = Timer(device)
    rows = []
    for geometry_name in args.geometries:
        geometry = moirai_geometry(geometry_name, args.dry_run)
        variants = moirai_variants(geometry, args, device)
        g = torch.Generator().manual_seed(0)
        past = (torch.randn(args.batch, args.context, 1, generator=g).cumsum(1) + 10).to(device)
        future = (torch.randn(args.batch, args.horizon, 1, generator=g) + past[:, -1:].cpu()).to(device)
        for precision in PRECISIONS:

            def run(step, module, precision=precision, past=past, future=future):
                bf16 = torch.autocast(device.type, dtype=torch.bfloat16) if precision == "bf16" else nullcontext()
                with bf16:
                    loss = step(past, future)
                loss.backward()
                module.zero_grad(set_to_none=True)

            first = {}
            for name, (step, module) in variants.items():  # warm-up (compiles the compiled variant)
                timer.sync()
                start = time.perf_counter()
                for _ in range(args.warmup):
                    run(step, module)
                timer.sync()
                first[name] = time.perf_counter() - start
            times: dict[str, list[float]] = {name: [] for name in variants}
            for _ in range(args.steps):
                for name, (step, module) in variants.items():
                    timer.sync()
                    start = time.perf_counter()
                    run(step, module)
                    timer.sync()
                    times[name].append(time.perf_counter() - start)
            for name, (step, module) in variants.items():
                timer.reset_peak()
                run(step, module)
                timer.sync()
                rows.append(
                    dict(
                        geometry=f"moirai-1.1-R-{geometry_name}",
                        precision=precision,
                        variant=name,
                        median_ms=1e3 * statistics.median(times[name]),
                        min_ms=1e3 * min(times[name]),
                        warmup_s=first[name],
                        peak_gib=timer.peak_gib(),
                        trainable_params=sum(p.numel() for p in module.parameters() if p.requires_grad),
                    )
                )
            lora_ms = next(r["median_ms"] for r in rows[-len(variants) :] if r["variant"] == LORA)
            for r in rows[-len(variants) :]:
                r["vs_lora"] = r["median_ms"] / lora_ms
            print(json.dumps(rows[-len(variants) :]), flush=True)
        del variants
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return rows


def bench_time_dpd(args, device: torch.device) -> list[dict]:
    """Weights and one training step's peak memory of Time-DPD (7B geometry) alone and under msft [1,2,4]."""
    from transformers import Qwen2Model

    import msft
    from msft_backbones.time_dpd import TimeDPD, TimeDPDConfig, default_llm_config
    from msft_backbones.time_dpd.tiny import tiny_llm, tiny_tokenizer

    timer = Timer(device)
    rows = []
    for variant in ("Time-DPD single-scale", MSFT):
        timer.reset_peak()
        with torch.device(device):
            if args.dry_run:
                llm = tiny_llm("qwen2", hidden=32, layers=2, dtype=torch.bfloat16)
                sizes = dict(num_prototypes=16, head_channels=16)
            else:
                llm = Qwen2Model._from_config(default_llm_config(), torch_dtype=torch.bfloat16)
                sizes = {}
            model = (
                TimeDPD(
                    TimeDPDConfig(llm_dtype="bfloat16", context_length=512, horizon=96, **sizes),
                    llm=llm.to(device),
                    tokenizer=tiny_tokenizer(),
                )
                .to(device)
                .train()
            )
        timer.sync()
        weights = timer.peak_gib()
        g = torch.Generator().manual_seed(0)
        past = torch.randn(args.tdpd_batch, 512, 1, generator=g).cumsum(1).to(device)
        future = torch.randn(args.tdpd_batch, 96, 1, generator=g).to(device)
        trained = msft.wrap(model, scales=[1, 2, 4]).train() if variant == MSFT else model
        timer.reset_peak()
        timer.sync()
        start = time.perf_counter()
        trained.loss(past, future).backward()
        timer.sync()
        rows.append(
            dict(
                variant=variant,
                weights_gib=weights,
                step_peak_gib=timer.peak_gib(),
                step_s=time.perf_counter() - start,
                batch=args.tdpd_batch,
                trainable_params=sum(p.numel() for p in trained.parameters() if p.requires_grad),
            )
        )
        print(json.dumps(rows[-1]), flush=True)
        del trained, model, llm
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return rows


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "results" / "gpu")
    parser.add_argument(
        "--dry-run", action="store_true", help="toy sizes on CPU: exercises every path, numbers mean nothing"
    )
    parser.add_argument("--geometries", nargs="+", default=["small", "base"], choices=["small", "base"])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--context", type=int, default=5000)
    parser.add_argument("--horizon", type=int, default=96)
    parser.add_argument("--patch", type=int, default=64)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--tdpd-batch", type=int, default=4)
    parser.add_argument("--compile", action="store_true", help="add msft [1,2,4] under torch.compile")
    parser.add_argument("--skip-time-dpd", action="store_true")
    args = parser.parse_args(argv)
    if args.dry_run:
        args.context, args.horizon, args.patch, args.batch = 300, 24, 16, 2
        args.warmup, args.steps, args.tdpd_batch = 1, 1, 1
        device = torch.device("cpu")
    else:
        if not torch.cuda.is_available():
            raise SystemExit("bench_gpu: no CUDA device (use --dry-run to exercise the script on CPU)")
        device = torch.device("cuda")
        torch.backends.cuda.matmul.allow_tf32 = False  # fp32 means fp32 here
    start = time.perf_counter()
    moirai = bench_moirai(args, device)
    time_dpd = [] if args.skip_time_dpd else bench_time_dpd(args, device)
    command = "HF_HUB_OFFLINE=1 python -m benchmarks.bench_gpu " + " ".join(argv if argv is not None else sys.argv[1:])
    meta = dict(
        command=command.strip(),
        device=torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        dry_run=args.dry_run,
        torch=torch.__version__,
        machine=platform.platform(),
        cuda=torch.version.cuda,
        wall_s=time.perf_counter() - start,
        **{
            k: getattr(args, k)
            for k in ("batch", "context", "horizon", "patch", "warmup", "steps", "tdpd_batch", "compile")
        },
    )
    result = dict(meta=meta, moirai=moirai, time_dpd=time_dpd)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_gpu.json").write_text(json.dumps(result, indent=2))
    (args.out / "bench_gpu.md").write_text(render(result))
    print(render(result))
    return result


def render(result: dict) -> str:
    meta = result["meta"]

    def gib(x):
        return "n/a" if x is None else f"{x:.2f}"

    lines = [
        "# GPU training step: MOIRAI full / LoRA / msft, fp32 vs bf16; Time-DPD 7B memory",
        "",
        f"Regenerate: `{meta['command']}`",
        "",
        f"Device: {meta['device']} (torch {meta['torch']}, CUDA {meta['cuda']}); whole run {meta['wall_s']:.0f} s."
        + (" **Dry run on CPU at toy sizes: the numbers mean nothing.**" if meta["dry_run"] else ""),
        f"MOIRAI: batch {meta['batch']}, context {meta['context']}, horizon {meta['horizon']}, patch {meta['patch']}; "
        f"forward + NLL + backward, median of {meta['steps']} round-robin steps after {meta['warmup']} warm-up steps; "
        "peak = max_memory_allocated over one step (weights included).",
        "",
        "| geometry | precision | variant | median step (ms) | × LoRA | peak memory (GiB) | warm-up (s) | trainable params |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in result["moirai"]:
        lines.append(
            f"| {r['geometry']} | {r['precision']} | {r['variant']} | {r['median_ms']:.1f} | "
            f"{r['vs_lora']:.2f} | {gib(r['peak_gib'])} | {r['warmup_s']:.1f} | {r['trainable_params']:,} |"
        )
    if result["time_dpd"]:
        lines += [
            "",
            f"Time-DPD, DeepSeek-R1-Distill-Qwen-7B geometry, random bf16 weights built on the device; "
            f"context 512, horizon 96, batch {meta['tdpd_batch']}:",
            "",
            "| variant | weights (GiB) | peak of one step (GiB) | step (s) | trainable params |",
            "|---|---:|---:|---:|---:|",
        ]
        for r in result["time_dpd"]:
            lines.append(
                f"| {r['variant']} | {gib(r['weights_gib'])} | {gib(r['step_peak_gib'])} | "
                f"{r['step_s']:.2f} | {r['trainable_params']:,} |"
            )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()

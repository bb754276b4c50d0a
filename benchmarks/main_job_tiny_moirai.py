"""The main job on the shipped tiny MOIRAI: ETTh1, H=96; zero-shot vs LoRA vs full finetuning vs MSFT.

    MSFT_DATA_DIR=/work/shared/data python -m benchmarks.main_job_tiny_moirai

A standalone version of the README's run (made for 2 CPU cores, well under 15 minutes): the same
methods and protocol as ``benchmarks.tiny_moirai_finetune`` (see its docstring), one dataset,
one seed by default. Prints the table and writes results/pretrained/main_job.{md,json}.
"""

from __future__ import annotations

from benchmarks.tiny_moirai_finetune import compare, parser


def main(argv: list[str] | None = None) -> dict:
    p = parser(__doc__.split("\n\n")[0])
    p.set_defaults(datasets=["ETTh1"], seeds=[0], name="main_job")
    args = p.parse_args(argv)
    results = compare(args, argv, "benchmarks.main_job_tiny_moirai",
                      f"Main job: tiny MOIRAI on ETTh1, H={args.horizon}")
    print((args.out / f"{args.name}.md").read_text())
    return results


if __name__ == "__main__":
    main()

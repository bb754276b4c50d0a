"""The evidence suites' rules (issue 31, `msft_runner.evidence`): the learning-rate grid is extended
beyond an edge choice until interior (at most twice, then flagged), every method gets the same
number of knob values, and the paired statistics equal a hand computation."""

import json
import math
import subprocess
import threading
from pathlib import Path

import pytest

from msft_runner import evidence as rules

REPO = Path(__file__).resolve().parents[2]


def test_next_lr_scale_extends_an_edge_choice_at_most_twice():
    assert rules.next_lr_scale(list(rules.GRID), 1.0) is None  # interior
    assert rules.next_lr_scale(list(rules.GRID), 10.0) == 30.0
    assert rules.next_lr_scale(list(rules.GRID), 0.1) == pytest.approx(0.0333, rel=1e-3)
    assert rules.next_lr_scale([*rules.GRID, 30.0], 30.0) == 90.0
    assert rules.next_lr_scale([*rules.GRID, 30.0, 90.0], 90.0) is None  # two extensions used: flagged instead
    assert rules.at_edge([*rules.GRID, 30.0, 90.0], 90.0) and not rules.at_edge(list(rules.GRID), 3.0)


def test_every_method_with_a_knob_gets_three_values_the_first_its_default():
    for method, (setting, values) in rules.KNOBS.items():
        assert len(values) == 3 and values[0].tag == "" and not values[0].overrides, method
        assert all(v.tag and v.overrides for v in values[1:]), method
        assert len({v.tag for v in values}) == 3 and setting


def test_the_long_context_knob_is_the_past_length_of_lora_and_full():
    for method in ("lora", "full"):
        setting, values = rules.LONG_CONTEXT_KNOBS[method]
        assert values[0] == rules.Knob("", "512") and values[1].overrides == ("data.context_length=2048",)
    assert rules.knob_values("msft", rules.LONG_CONTEXT_KNOBS) == (rules.Knob("", "default"),)
    assert rules.knob_values("lora")[1].tag == "r8"  # the other suites keep their knobs


def test_run_tag_reads_back_lr_dir():
    for scale, tag in ((1.0, ""), (0.0333, "r8"), (30.0, "wd0.01")):
        assert rules.run_tag(Path("x") / rules.lr_dir(scale, tag) / "seed0") == (scale, tag)
    with pytest.raises(ValueError, match="lr<scale>"):
        rules.run_tag("runs/x/msft/seed0")


def test_paired_difference_equals_a_hand_computation():
    a, b = {0: 1.0, 1: 2.0, 2: 3.0, 3: 9.0}, {0: 0.5, 1: 1.0, 2: 2.5}  # seed 3 has no partner: left out
    d = rules.paired_difference(a, b)
    diffs = [0.5, 1.0, 0.5]
    mean = sum(diffs) / 3
    sd = math.sqrt(sum((x - mean) ** 2 for x in diffs) / 2)
    half = 4.302652729911275 * sd / math.sqrt(3)  # t_{0.975, 2}
    # float64 arithmetic on a handful of values: agreement to 1e-12 leaves room for the order of operations
    assert d.seeds == 3 and d.mean == pytest.approx(mean, abs=1e-12)
    assert (d.low, d.high) == (pytest.approx(mean - half, abs=1e-9), pytest.approx(mean + half, abs=1e-9))
    from scipy import stats

    assert d.p == pytest.approx(stats.ttest_rel([1.0, 2.0, 3.0], [0.5, 1.0, 2.5]).pvalue, abs=1e-12)
    assert d.verdict == "tie"  # the interval covers 0
    assert rules.paired_difference({0: 1.0, 1: 1.1, 2: 1.2}, {0: 2.0, 1: 2.1, 2: 2.25}).verdict == "lower"
    assert rules.paired_difference({0: 1.0}, {0: 2.0}).verdict == "n/a"


def _fake_msft_train(tmp_path, val_of):
    """A stand-in for msft-train that writes each run's record: validation score ``val_of(method, lr, overrides)``."""

    def run(args, **kwargs):
        if not args[0].endswith("msft-train"):
            return subprocess.CompletedProcess(args, 0)
        opts = dict(a.split("=", 1) for a in args[2:] if "=" in a)
        subdir = opts["hydra.sweep.subdir"]
        extra = tuple(a for a in args if a.startswith(("method.", "weight_decay=", "data.context_length=")))
        for method in opts["method"].split(","):
            for seed in opts["seed"].split(","):
                for lr in opts["lr_scale"].split(","):
                    path = subdir.replace("${data.name}_H${data.horizon}", f"{opts['data']}_H96")
                    path = path.replace("${hydra:runtime.choices.backbone}", "tiny_moirai")
                    path = path.replace("${method.name}", method).replace("${lr_scale}", lr).replace("${seed}", seed)
                    run_dir = tmp_path / "runs" / opts["experiment"] / path
                    run_dir.mkdir(parents=True, exist_ok=True)
                    record = dict(status="ok", backbone="tiny_moirai", dataset=opts["data"], horizon=96)
                    record.update(method=method, seed=int(seed), lr_scale=float(lr))
                    record.update(val_score=val_of(method, float(lr), extra), trainable_params=10)
                    (run_dir / "metrics.json").write_text(json.dumps(record))
        return subprocess.CompletedProcess(args, 0)

    return run


def test_the_search_extends_an_edge_twice_then_flags_it_and_tries_every_knob(evidence, tmp_path, monkeypatch):
    def val_of(method, lr, extra):  # lora improves without end as the rate grows; full is best at 1
        score = 1.0 / lr if method == "lora" else abs(math.log(lr))
        return score - (0.01 if "method.peft.r=64" in extra else 0.0)

    monkeypatch.setattr(evidence.subprocess, "run", _fake_msft_train(tmp_path, val_of))
    monkeypatch.setitem(
        evidence.SUITES, "lsf", dict(data=["ETTh1"], methods=["lora", "full"], zero_shot=False, seeds=3)
    )
    evidence.run_dataset("lsf", "ETTh1", {"lsf/ETTh1": threading.Event()})
    from msft_runner.results import collect

    records = collect([tmp_path / "runs" / "evidence_lsf"])
    rows = {r["method"]: r for r in rules.search_rows(records)}
    assert rows["lora"]["grid"] == [0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 90.0] and rows["lora"]["edge"]
    assert rows["lora"]["lr_scale"] == 90.0 and rows["lora"]["knob_chosen"] == "64"
    assert rows["full"]["grid"] == list(rules.GRID) and not rows["full"]["edge"] and rows["full"]["lr_scale"] == 1.0
    assert rows["full"]["candidates"] == len(rules.GRID) + 2  # the grid plus two more knob values
    # seeds 1 and 2 train at seed 0's whole choice (rate and knob)
    lora_seeds = {(r["seed"], *rules.run_tag(r["run_dir"])) for r in records if r["method"] == "lora" and r["seed"]}
    assert lora_seeds == {(1, 90.0, "r64"), (2, 90.0, "r64")}
    table = rules.search_table(records)
    assert "90 **(edge)**" in table and "extended: 30, 90" in table


def test_the_long_context_suite_searches_the_context_of_lora_and_full_and_no_knob_of_msft(
    evidence, tmp_path, monkeypatch
):
    """Issue 30's suite: LoRA and full finetuning at the better of 512 and 2048 past steps (their knob,
    at the chosen rate), the msft variants at their own contexts; the other seeds at the whole choice."""

    def val_of(method, lr, extra):  # a longer context helps LoRA only
        return abs(math.log(lr)) - (0.1 if method == "lora" and "data.context_length=2048" in extra else 0.0)

    monkeypatch.setattr(evidence.subprocess, "run", _fake_msft_train(tmp_path, val_of))
    spec = dict(evidence.SUITES["long_context"], data=["ETTh1"])
    monkeypatch.setitem(evidence.SUITES, "long_context", spec)
    evidence.run_dataset("long_context", "ETTh1", {"long_context/ETTh1": threading.Event()})
    from msft_runner.results import collect

    records = collect([tmp_path / "runs" / "evidence_long_context"])
    rows = {r["method"]: r for r in rules.search_rows(records, knobs=rules.LONG_CONTEXT_KNOBS)}
    assert set(rows) == {"msft", "msft_equal_tokens", "msft_single_scale_long", "lora", "full"}
    assert rows["lora"]["knob"] == "context length" and rows["lora"]["knob_values"] == ["512", "2048"]
    assert rows["lora"]["knob_chosen"] == "2048" and rows["full"]["knob_chosen"] == "512"
    assert rows["msft_equal_tokens"]["candidates"] == len(rules.GRID)  # no knob: the rate grid only
    later = {(r["method"], r["seed"], rules.run_tag(r["run_dir"])[1]) for r in records if r["seed"]}
    assert ("lora", 2, "L2048") in later and ("full", 2, "") in later and len(later) == 2 * 5
    assert "| context length | 512, 2048 | 2048 |" in rules.search_table(records, knobs=rules.LONG_CONTEXT_KNOBS)


def test_paired_table_compares_msft_with_every_trained_method_and_marks_the_validation_best():
    def rec(method, seed, val, mse):
        return dict(dataset="ETTh1", horizon=96, method=method, seed=seed, val_score=val, mse=mse)

    chosen = [rec("msft", s, 0.70, 0.40 + 0.001 * s) for s in range(3)]
    chosen += [rec("full", s, 0.69, 0.42 + 0.001 * s) for s in range(3)]  # best on validation, worse on test
    chosen += [rec("lora", s, 0.75, 0.39 + 0.002 * s) for s in range(3)]
    chosen += [rec("zero_shot", s, 0.80, 0.43) for s in range(3)]  # not a finetuning baseline
    table = rules.paired_table(chosen, "mse")
    lines = table.splitlines()[2:]
    assert len(lines) == 2 and "full (best on validation)" in lines[0] and "zero_shot" not in table
    assert "-0.0200" in lines[0] and "msft lower" in lines[0]
    assert "lora" in lines[1] and "+0.0090" in lines[1]
    # one row per dataset: msft (mean ± std), the validation-best baseline, the paired verdict, the counts
    (row,) = rules.verdict_table(chosen, "mse").splitlines()[2:]
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[:6] == ["ETTh1", "96", "3", "0.4010 ± 0.0010", "full", "0.4210 ± 0.0010"]
    assert cells[6].startswith("-0.0200") and cells[8] == "msft lower"
    assert cells[9] == "1 / 0 / 1"  # below full, above lora (+0.0090, interval above 0)


def test_variants_table_pairs_each_data_variant_with_the_plain_one_per_method():
    """The covariate suite (issue 28): each variant minus the target alone, seed by seed, per method."""

    def rec(dataset, method, seed, val, mse):
        return dict(dataset=dataset, horizon=96, method=method, seed=seed, val_score=val, mse=mse)

    chosen = [rec("OT", "msft", s, 0.10, 0.060 + 0.001 * s) for s in range(3)]
    chosen += [rec("OT_past", "msft", s, 0.12, 0.070 + 0.002 * s) for s in range(3)]  # diffs .010, .011, .012
    chosen += [rec("OT_known", "msft", s, 0.11, (0.059, 0.062, 0.061)[s]) for s in range(3)]  # -.001, +.001, -.001
    chosen += [rec("OT", "zero_shot", s, 0.2, 0.063) for s in range(3)]  # no zero-shot run of the variants
    lines = rules.variants_table(chosen, "mse", "OT").splitlines()[2:]
    assert len(lines) == 2  # msft's two variants; the plain data and zero-shot (no variant) give no row
    known, past = ([c.strip() for c in line.strip("|").split("|")] for line in lines)
    assert past[:7] == ["msft", "OT_past", "3", "0.1200", "0.0720 ± 0.0020", "0.1000", "0.0610 ± 0.0010"]
    half = 4.302652729911275 * 0.001 / math.sqrt(3)  # t(0.975, 2) * sd of (.010, .011, .012) / sqrt(3)
    assert past[7] == f"+0.0110 [{0.011 - half:+.4f}, {0.011 + half:+.4f}]" and past[9] == "OT_past higher"
    assert known[1] == "OT_known" and known[7].startswith("-0.0003") and known[9] == "tie"

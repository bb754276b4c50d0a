"""benchmarks/quantiles.py trains and scores every model it lists (a tiny run on ETTh1), and its table
says the settings it ran with: it had broken silently once when a backbone builder it imported moved."""

import json

from benchmarks import quantiles


def test_every_model_trains_and_scores_and_the_table_names_its_settings(tmp_path, monkeypatch, data_dir):
    monkeypatch.setenv("MSFT_DATA_DIR", str(data_dir))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    args = ["--datasets", "ETTh1", "--context", "128", "--horizon", "24", "--stride", "960", "--steps", "1"]
    args += ["--batch-size", "4", "--samples", "10", "--out", str(tmp_path)]
    results = quantiles.main(args)
    assert sorted(results) == sorted(f"ETTh1/{name}" for name in quantiles.MODELS)
    for key, row in results.items():
        assert 0.0 <= row["coverage_10_90"] <= 1.0, key
        assert row["crps"] > 0.0, key
        assert row["quantile_crossings"] == 0.0, key  # sorted per level (heads) or sample quantiles (MOIRAI)
    assert results["ETTh1/moirai_zero_shot"]["steps"] == 0
    assert results["ETTh1/moment_quantile_heads"]["steps"] >= 1
    table = (tmp_path / "quantiles.md").read_text()
    assert "--context 128 --horizon 24 --stride 960 --steps 1 --batch-size 4" in table
    assert "S mode, context 128, H=24" in table
    assert json.loads((tmp_path / "quantiles.json").read_text())["results"] == results

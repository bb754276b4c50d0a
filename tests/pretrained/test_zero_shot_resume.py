"""benchmarks.tiny_moirai_zero_shot resumes from its JSON only for the same weights: a checkpoint name
that now holds other weights (``new`` after shipping) is scored again, the baselines are kept."""

from benchmarks.tiny_moirai_zero_shot import reusable, weights_digest


def test_stored_rows_of_other_weights_are_not_reused(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "model.safetensors").write_bytes(b"weights a")
    digest = weights_digest(tmp_path / "a")
    saved = {
        "checkpoints": {"new": "x", "old": "y"},
        "checkpoint_sha256": {"new": "something else", "old": digest},
        "results": {
            "ETTh1|L512|s1": {"last_value": {"mse": 1.0}, "new": {"mse": 2.0}, "old": {"mse": 3.0}},
            "walk_heldout|L512|s1": {"last_value": {"mse": 1.0}, "new": {"mse": 2.0}},
        },
    }
    kept = reusable(saved, {"new": digest, "old": digest})
    assert kept["ETTh1|L512|s1"] == {"last_value": {"mse": 1.0}, "old": {"mse": 3.0}}
    assert kept["walk_heldout|L512|s1"] == {}  # a family row is rescored as a whole
    legacy = {"checkpoints": {"new": "x"}, "results": {"ETTh1|L512|s1": {"new": {"mse": 2.0}}}}
    assert reusable(legacy, {"new": digest}) == {"ETTh1|L512|s1": {}}  # no digest stored: never trusted

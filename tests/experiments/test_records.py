"""The run record (`msft_runner.records.RunRecord`): one declared set of fields, read and written in
one place; every run the suite makes writes through `write_record`, which refuses undeclared keys."""

import pytest

from msft_runner import records, results


def test_a_key_the_record_does_not_declare_is_refused_by_name(tmp_path):
    with pytest.raises(ValueError, match=r"\['val_sccore'\] are not declared"):
        records.write_record(tmp_path, {"status": "ok", "val_sccore": 0.5})
    assert not (tmp_path / records.METRICS).exists()


def test_written_records_read_back_and_per_scale_scores_are_declared_by_pattern(tmp_path):
    record = {"status": "ok", "dataset": "ETTh1", "val_score": 0.7, "val_mse_scale2": 0.8, "tests": {"1": {}}}
    records.write_record(tmp_path, record)
    assert records.read_record(tmp_path) == record
    with pytest.raises(FileNotFoundError, match="no metrics.json"):
        records.read_record(tmp_path / "elsewhere")


def test_every_table_column_is_a_record_field():
    assert set(results.FIELDS) <= records.FIELDS
    assert set(results.TEST_FIELDS) <= records.FIELDS

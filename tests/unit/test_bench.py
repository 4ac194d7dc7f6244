"""A seconds-long smoke of ``make bench``: every case runs and the engine really emits records."""

from __future__ import annotations

import pytest

from dataflow import bench


async def test_every_bench_case_routes_records() -> None:
    results = await bench.main_async(0.05)
    assert [r.name for r in results] == [c.name for c in bench.CASES]
    for case, result in zip(bench.CASES, results, strict=True):
        assert result.records > 0
        # one output per input record; a join emits once per pair
        assert result.emitted == result.records // case.records_per_message, case.name


def test_bench_prints_a_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert bench.main(["--seconds", "0.02"]) == 0
    out = capsys.readouterr().out
    assert "records/s" in out and "peak RSS" in out

"""Smoke test of ``benchmarks/parallel_time.py`` on tiny shapes, so that it cannot rot."""

import json

from benchmarks import parallel_time


def test_parallel_time_reports_every_implementation_and_deer(tmp_path):
    path, png = tmp_path / "parallel_time.json", tmp_path / "parallel_time.png"
    parallel_time.main(
        ["--batch", "2", "--hidden", "4", "--min-len", "8", "--max-len", "8", "--repeats", "1"]
        + ["--impls", "mingru-assoc,gru-auto", "--modes", "train", "--deer-hidden", "3"]
        + ["--json", str(path), "--png", str(png)]
    )
    report = json.loads(path.read_text())
    layers = [r for r in report["records"] if r["part"] == "layers"]
    assert {(r["mode"], r["impl"], r["T"]) for r in layers} == {
        (mode, impl, t)
        for mode in ("train",)
        for impl in ("mingru-assoc", "gru-auto")
        for t in (8,)
    }
    deer = [r for r in report["records"] if r["part"] == "deer"]
    assert {(r["impl"], r["T"]) for r in deer} == {
        (impl, 8) for impl in ("sequential", "deer", "quasi-deer")
    }
    for r in deer:
        if r["impl"] != "sequential":  # converged to the sequential scan's states
            assert 1 <= r["iterations"] <= r["T"] and r["max_error_vs_scan"] < 1e-4
    assert png.stat().st_size > 1000

"""Smoke test of benchmarks/seq2seq_speed.py on tiny shapes, so that it cannot rot."""

import json

from benchmarks import seq2seq_speed


def test_seq2seq_speed_reports_every_number(tmp_path):
    path = tmp_path / "s2s.json"
    seq2seq_speed.main(
        ["--hidden", "8", "--batch", "4", "--length", "3", "--src-vocab", "11"]
        + ["--tgt-vocab", "13", "--decode-batch", "4", "--decode-sentences", "6"]
        + ["--repeats", "1", "--torch-threads", "1", "--backends", "scan", "--json", str(path)]
    )
    report = json.loads(path.read_text())
    results = report["results"]
    for name in ("rnnjax-scan", "torch"):
        assert results[f"train step {name} ms"] > 0
    for name in ("rnnjax greedy", "rnnjax beam5", "torch greedy"):
        assert results[f"{name} sentences/s"] > 0
    assert {"compile rnnjax-scan train step s", "compile rnnjax beam5 s"} <= set(results)

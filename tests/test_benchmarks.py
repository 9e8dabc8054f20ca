"""Smoke tests of the benchmark scripts on tiny shapes, so that they cannot rot."""

import json

from benchmarks import memory, speed


def test_speed_runs_every_library_and_writes_json(tmp_path):
    path = tmp_path / "speed.json"
    speed.main(
        ["--shapes", "2x3x4x5", "--stream-shape", "1x1x4x5", "--cells", "lstm,gru,rnn"]
        + ["--modes", "train,infer,stream", "--repeats", "1", "--stream-repeats", "1"]
        + ["--warmup", "1", "--json", str(path)]
        + ["--impls", "rnnjax,rnnjax-native-openblas,rnnjax-fused-hoist,torch,flax"]
    )
    report = json.loads(path.read_text())
    assert {"date", "cpu", "jax", "torch"} <= set(report["machine"])
    assert len(report["records"]) == 9
    for record in report["records"]:
        assert set(record) >= {"shape", "cell", "mode", "gflop", "results", "ratios"}
        assert set(record["ratios"]) == {"rnnjax/torch", "rnnjax/flax"}
        if record["mode"] != "stream":  # the native kernels on OpenBLAS ran as well
            assert "rnnjax-native-openblas" in record["results"]
        for result in record["results"].values():
            assert result["ms"] > 0 and result["tokens_per_s"] > 0 and result["gflops"] > 0


def test_memory_reports_each_configuration(tmp_path):
    path = tmp_path / "memory.json"
    memory.main(
        ["--steps", "8", "--batch", "2", "--inputs", "4", "--hidden", "4"]
        + ["--budget-gib", "2", "--json", str(path)]
    )
    report = json.loads(path.read_text())
    assert [r["impl"] for r in report["records"]] == list(memory.IMPLS)
    assert all(r["status"] == "ok" and r["peak_rss_gib"] > 0 for r in report["records"])
    # A budget below the step's own size is reported, not run.
    over = memory.measure("rnnjax", 8, memory.parse_args(["--budget-gib", "1e-9"]))
    assert over["status"] == "over budget"

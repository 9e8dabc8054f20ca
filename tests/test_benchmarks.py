"""Smoke tests of the benchmark scripts on tiny shapes, so that they cannot rot."""

import json
import os

import numpy as np
import pytest

from benchmarks import (
    _timing,
    blas_bf16,
    memory,
    mixed_precision,
    native_profile,
    options,
    rnn_vs_transformer,
    speed,
)
from rnnjax.recurrence.backends import _native_loading

IMPLS = ("rnnjax", "rnnjax-native-openblas", "rnnjax-fused-hoist", "rnnjax-bf16", "torch")
IMPLS += ("torch-bf16", "flax")


def test_speed_runs_every_library_and_writes_json(tmp_path):
    path = tmp_path / "speed.json"
    speed.main(
        ["--shapes", "2x3x4x5", "--stream-shape", "1x1x4x5", "--cells", "lstm,gru,rnn"]
        + ["--modes", "train,infer,stream", "--repeats", "1", "--stream-repeats", "1"]
        + ["--warmup", "1", "--json", str(path)]
        + ["--impls", ",".join(IMPLS)]
    )
    report = json.loads(path.read_text())
    assert {"date", "cpu", "cpu_flags", "jax", "torch"} <= set(report["machine"])
    assert len(report["records"]) == 9
    for record in report["records"]:
        assert set(record) >= {"shape", "cell", "mode", "gflop", "results", "ratios"}
        assert set(record["ratios"]) == {
            "rnnjax/torch",
            "rnnjax/flax",
            "rnnjax-bf16/torch",
            "rnnjax-bf16/torch-bf16",
        }
        for key, ratio in record["ratios"].items():  # one round: the quartiles are its ratio
            assert record["ratio_quartiles"][key] == pytest.approx([ratio, ratio])
        assert "rnnjax-bf16" in record["results"]  # the bfloat16 policy too
        if record["mode"] != "stream":  # the native kernels on OpenBLAS ran as well
            assert "rnnjax-native-openblas" in record["results"]
        for result in record["results"].values():
            assert result["ms"] > 0 and result["tokens_per_s"] > 0 and result["gflops"] > 0
            assert result["min_ms"] <= result["ms"] <= result["max_ms"]


def test_ratio_quartiles_come_from_the_rounds_not_the_medians():
    # The load changes 16-fold across the rounds; within each, rnnjax takes half torch's time.
    rnnjax, torch = [0.1, 0.2, 0.4, 0.8, 1.6], [0.2, 0.4, 0.8, 1.6, 3.2]
    assert _timing.round_ratios(rnnjax, torch) == pytest.approx([0.5] * 5)
    assert _timing.quartiles([1.0, 2.0, 3.0, 4.0, 5.0]) == pytest.approx((2.0, 4.0))
    assert _timing.quartiles([0.7]) == (0.7, 0.7)
    with pytest.raises(ValueError, match="one entry per round, got 2 and 3"):
        _timing.round_ratios([1.0, 2.0], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="at least one value"):
        _timing.quartiles([])


@pytest.mark.skipif(
    _native_loading.unavailable_reason() is not None, reason="needs the native CPU backend"
)
def test_options_times_each_option_on_each_backend(tmp_path):
    path = tmp_path / "options.json"
    options.main(["--shape", "2x3x4x8", "--repeats", "1", "--json", str(path)])
    records = json.loads(path.read_text())["records"]
    assert [(r["option"], r["mode"]) for r in records] == [
        (option, mode) for option in options.OPTIONS for mode in ("train", "infer")
    ]
    assert all(r["ms"][backend] > 0 for r in records for backend in options.BACKENDS)
    with pytest.raises(SystemExit, match="--options: unknown"):
        options.main(["--options", "lstm,gru2"])


def test_memory_reports_each_configuration(tmp_path):
    path = tmp_path / "memory.json"
    # One subprocess per implementation: the three kinds of worker (rnnjax, here with remat on
    # the native kernels; flax; torch), not every option of each.
    impls = ["rnnjax-remat", "flax", "torch"]
    memory.main(
        ["--steps", "8", "--batch", "2", "--inputs", "4", "--hidden", "4"]
        + ["--impls", ",".join(impls), "--budget-gib", "2", "--json", str(path)]
    )
    report = json.loads(path.read_text())
    assert [r["impl"] for r in report["records"]] == impls
    assert all(r["status"] == "ok" and r["peak_rss_gib"] > 0 for r in report["records"])
    # A budget below the step's own size is reported, not run (the bf16 policy's layer compiles).
    over = memory.measure("rnnjax-bf16", 8, memory.parse_args(["--budget-gib", "1e-9"]))
    assert over["status"] == "over budget"


def _metrics(workdir, evals):
    workdir.mkdir()
    lines = [{"split": "train", "step": 1, "loss": 9.0}]
    lines += [{"split": "eval", "step": s, "loss": v, "tokens": n} for s, v, n in evals]
    (workdir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))


def test_rnn_vs_transformer_compares_equal_evaluations_only(tmp_path):
    # Intermediate evaluations read 50 characters, the final one the whole split (a harder text).
    _metrics(tmp_path / "rnn", [(10, 2.0, 50), (20, 1.0, 50), (30, 1.9, 500)])
    _metrics(tmp_path / "tf", [(10, 3.0, 50), (20, 2.0, 50), (25, 2.5, 500)])
    assert rnn_vs_transformer.eval_curve(str(tmp_path / "rnn")) == ([10, 20], [2.0, 1.0], (30, 1.9))
    result = rnn_vs_transformer.main(
        ["--small", "--lstm_workdir", str(tmp_path / "rnn")]
        + ["--transformer_workdir", str(tmp_path / "tf"), "--out", str(tmp_path / "out")]
    )
    step = {k: result["throughput"][k]["step_seconds"] for k in ("rnn", "transformer")}
    equal = min(20 * step["rnn"], 20 * step["transformer"])
    assert result["equal_time_s"] == equal and result["curve_tokens"] == 50
    for kind, losses in (("rnn", [2.0, 1.0]), ("transformer", [3.0, 2.0])):
        want = np.interp(equal, [10 * step[kind], 20 * step[kind]], losses)
        assert result["loss_at_equal_time"][kind] == f"{want:.3f}"
    assert result["final_loss"]["rnn"].startswith("1.900 (30,")
    assert all(os.path.exists(p) for p in result["pngs"])


def test_mixed_precision_inference_on_auto_times_the_scan_too(capsys):
    mixed_precision.main(
        ["--shape", "2,3,4,8", "--repeats", "1", "--mode", "infer", "--cells", "gru"]
    )
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("inference, 2,3,4,8 (B,T,I,H), backend auto")
    assert lines[1].endswith("| bf16 / f32 | bf16 on the scan ms |")
    name, *times = (v.strip() for v in lines[3].strip("|").split("|"))
    assert name == "gru" and len(times) == 4 and all(float(t) > 0 for t in times)


def test_mixed_precision_prints_the_ratio(capsys):
    mixed_precision.main(["--shape", "2,3,4,8", "--repeats", "1", "--backend", "scan"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[1] == "| cell | float32 ms | bf16 matmuls ms | bf16 / f32 |"
    for line, cell in zip(lines[3:], ["lstm", "gru"], strict=True):
        name, f32, bf16, ratio = (v.strip() for v in line.strip("|").split("|"))
        assert name == cell and float(f32) >= 0 and float(bf16) >= 0 and float(ratio) > 0


@pytest.mark.skipif(
    _native_loading.blas_addresses("mkl") is None, reason="needs the mkl wheel (rnnjax[mkl])"
)
def test_blas_bf16_times_both_types(capsys):
    blas_bf16.main(["--shapes", "4x8x16,2x3x5", "--seconds", "0.01"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("| M x K x N | float32 us |")
    rows = [[v.strip() for v in line.strip("|").split("|")] for line in lines[2:]]
    assert [row[0] for row in rows] == ["4x8x16", "2x3x5"]
    for _, f32_us, f32_rate, bf16_us, bf16_rate, speed_up in rows:
        assert float(f32_us) > 0 and float(bf16_us) > 0 and float(speed_up) > 0
        assert float(f32_rate) >= 0 and float(bf16_rate) >= 0  # tiny shapes: 0 GFLOP/s


def test_bf16_rounding_is_to_nearest_even():
    # Against float64 arithmetic: the nearest multiple of bfloat16's spacing (8 significant
    # bits), ties to even (np.round).
    values = np.array([1.0, 1 + 2**-8, 1 + 3 * 2**-8, 1 + 2**-9, -2.5, 3.0e38, 0.1], np.float32)
    got = (blas_bf16._bf16(values).astype(np.uint32) << 16).view(np.float32)
    exact = values.astype(np.float64)
    spacing = 2.0 ** (np.floor(np.log2(np.abs(exact))) - 7)
    np.testing.assert_array_equal(got, np.round(exact / spacing) * spacing)


@pytest.mark.skipif(
    _native_loading.unavailable_reason() is not None, reason="needs the native CPU backend"
)
def test_native_profile_tabulates_each_kernel_and_rank(capsys, tmp_path):
    report = native_profile.main(
        ["--shape", "4x8x3x64", "--cell", "gru", "--mode", "train", "--repeats", "2"]
        + ["--json", str(tmp_path / "p.json")]
    )
    rows = report["rows"]
    assert [r["kernel"] for r in rows][:1] == ["forward"] and rows[-1]["kernel"] == "backward"
    assert all(r["calls"] == 2 and r["product_gflops"] > 0 for r in rows)
    assert "prod GF/s" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        native_profile.main(["--impl", "torch"])

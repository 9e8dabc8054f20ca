"""Where the native CPU kernels spend a layer's time, phase by phase and thread by thread.

    python -m benchmarks.native_profile --shape 64x256x128x512 --cell gru --mode infer
    python -m benchmarks.native_profile --impl rnnjax-native-openblas --mode train --json p.json

Runs one ``benchmarks.speed`` iteration (``--impl``, default the layer's defaults) with
``RNNJAX_NATIVE_PROFILE`` pointing at a temporary file, to which every kernel call appends one
JSON line of per-thread phase times (``csrc/profile.h``): the setup (weight columns copied and
packed for the thread), the input projection, the per-step
recurrent products, the gate math, the weight gradients (backward) and the waits at the
barriers. The table gives, per kernel and thread, the median over the timed iterations of each
phase in ms and the recurrent products' rate in GFLOP/s. Waits are what one thread idled for the
others: an uneven split of the units, or two cores running the same work at different speeds.

The same variable profiles any program: ``RNNJAX_NATIVE_PROFILE=/tmp/p.jsonl python train.py``.
"""

import argparse
import json
import os
import statistics
import tempfile

from benchmarks import _peers, _report

PHASES = ("setup", "input", "product", "gates", "weights", "wait")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shape", default="64x256x128x256", help="BxTxIxH")
    parser.add_argument("--cell", default="lstm", choices=_peers.CELLS)
    parser.add_argument("--mode", default="infer", choices=("train", "infer"))
    parser.add_argument("--impl", default="rnnjax", help="an rnnjax impl of benchmarks.speed")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", default="", help="output path ('' = none)")
    args = parser.parse_args(argv)
    if not args.impl.startswith("rnnjax") or args.impl not in _peers.IMPLS:
        parser.error(f"--impl: expected an rnnjax impl of {_peers.IMPLS}, got {args.impl!r}")
    if args.repeats < 1:
        parser.error(f"--repeats: expected at least 1, got {args.repeats}")
    return args


def read_profile(path: str) -> list[dict]:
    """The kernel calls recorded in ``path``, one dict per line."""
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def recurrent_gflop(call: dict) -> float:
    """The per-step products' GFLOP of one call: h @ W_hh forward, dZ @ W_hh^T backward."""
    return 2 * call["T"] * call["B"] * call["P"] * call["G"] * call["H"] / 1e9


def summarize(calls: list[dict]) -> list[dict]:
    """Per kernel and rank, the median of each phase over the calls, and the products' rate."""
    rows = []
    for kernel in sorted({c["kernel"] for c in calls}, key=("forward", "backward").index):
        mine = [c for c in calls if c["kernel"] == kernel]
        ranks = min(len(c["ranks"]) for c in mine)
        wall = statistics.median(c["wall_ms"] for c in mine)
        # Each rank multiplies by its share of the columns: the team's rate is the whole
        # product over the slowest rank's product time.
        slowest = statistics.median(max(r["product_ms"] for r in c["ranks"][:ranks]) for c in mine)
        gflops = recurrent_gflop(mine[0]) / (slowest / 1e3) if slowest else 0.0
        for rank in range(ranks):
            row = {"kernel": kernel, "rank": rank, "calls": len(mine)}
            for phase in PHASES:
                times = [c["ranks"][rank][f"{phase}_ms"] for c in mine]
                row[f"{phase}_ms"] = statistics.median(times)
            rows.append({**row, "wall_ms": wall, "product_gflops": gflops})
    return rows


def format_row(row: dict) -> str:
    phases = " ".join(f"{row[f'{p}_ms']:9.2f}" for p in PHASES)
    return (
        f"{row['kernel']:>8} {row['rank']:>4} {phases} {row['wall_ms']:9.2f}"
        f" {row['product_gflops']:8.1f}"
    )


HEADER = f"{'kernel':>8} {'rank':>4} {' '.join(f'{p:>9}' for p in PHASES)}      wall  prod GF/s"


def main(argv=None) -> dict:
    args = parse_args(argv)
    shape = _peers.Shape(*(int(v) for v in args.shape.split("x")))
    run = _peers.build(args.impl, args.cell, args.mode, shape)
    run()  # compiles; its calls are not profiled
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "profile.jsonl")
        previous = os.environ.get("RNNJAX_NATIVE_PROFILE")
        os.environ["RNNJAX_NATIVE_PROFILE"] = path
        try:
            for _ in range(args.repeats):
                run()
        finally:
            if previous is None:
                del os.environ["RNNJAX_NATIVE_PROFILE"]
            else:
                os.environ["RNNJAX_NATIVE_PROFILE"] = previous
        calls = read_profile(path) if os.path.exists(path) else []
    if not calls:
        raise SystemExit(
            f"{args.impl} made no native kernel call for {args.cell} {args.mode} on {shape}: "
            "it runs on another backend here (see rnnjax.recurrence.backends._native)"
        )
    rows = summarize(calls)
    print(f"{args.impl} {args.cell} {args.mode} {shape}: medians of {args.repeats} iterations, ms")
    print(HEADER)
    for row in rows:
        print(format_row(row))
    report = {"args": vars(args), "rows": rows, "calls": calls}
    _report.save(report, args.json)
    return report


if __name__ == "__main__":
    main()

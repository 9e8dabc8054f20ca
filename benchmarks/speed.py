"""Speed of rnnjax against torch.nn and flax.linen ``nn.RNN`` on identical work.

    python -m benchmarks.speed                       # full run, about 6 min on 2 CPU cores
    python -m benchmarks.speed --quick               # one shape, LSTM and GRU, 3 repeats
    python -m benchmarks.speed --gpu                 # GPU: adds 64x512x256x1024 and the backends
    python -m benchmarks.speed --shapes 64x256x128x256 --cells lstm --modes train --repeats 5 \\
        --impls rnnjax,rnnjax-scan,torch,flax --json /tmp/speed.json

For every (shape B x T x I x H, cell, mode) the implementations alternate within one loop after
warm-up (``benchmarks._timing.interleaved``); the table gives medians in ms, tokens/s, achieved
GFLOP/s (matmul FLOPs, ``benchmarks._peers.flops``) and the ratios rnnjax/torch and rnnjax/flax
(below 1 = rnnjax faster) with, in brackets, the quartiles of the per-round ratios (the
implementations alternate within each round, so a round's ratio is taken under one load: a wide
bracket says the machine drifted and the ratio is not to be trusted). Modes: ``train`` (forward
+ backward + clip + Adam), ``infer`` (forward), ``stream`` (one step of batch one: latency).
Results go to ``--json``. An implementation that does not run a configuration (``jax-cudnn``
for a GRU, ``rnnjax-cudnn`` on a CPU) is left out of that row with its reason.
"""

import argparse
import datetime
import json
import os
import platform
import sys

from benchmarks import _peers, _report, _timing

FULL_SHAPES = "64x256x128x256,64x256x128x512,8x1024x64x128"
STREAM_SHAPE = "1x1x128x256"
GPU_SHAPES = "64x256x128x256,64x512x256x1024"
CPU_IMPLS = "rnnjax,rnnjax-native-openblas,rnnjax-scan,torch,flax"
GPU_IMPLS = "rnnjax,rnnjax-fused-nohoist,rnnjax-scan,rnnjax-cudnn,jax-cudnn,torch,flax"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shapes", default=FULL_SHAPES, help="comma-separated BxTxIxH")
    parser.add_argument("--stream-shape", default=STREAM_SHAPE, help="BxTxIxH of mode stream")
    parser.add_argument("--cells", default="lstm,gru,rnn")
    parser.add_argument("--modes", default="train,infer,stream")
    parser.add_argument("--impls", default=CPU_IMPLS, help=f"of {_peers.IMPLS}")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--stream-repeats", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="first shape, lstm+gru, 3 repeats")
    parser.add_argument("--gpu", action="store_true", help="GPU shapes and every backend")
    parser.add_argument("--json", default="benchmarks/speed.json", help="output path ('' = none)")
    args = parser.parse_args(argv)
    if args.quick:
        args.shapes, args.cells, args.repeats = FULL_SHAPES.split(",")[0], "lstm,gru", 3
        args.stream_repeats = 50
    if args.gpu:
        if args.shapes == FULL_SHAPES:
            args.shapes = GPU_SHAPES
        args.impls = GPU_IMPLS
    return args


def _shape(text: str) -> _peers.Shape:
    return _peers.Shape(*(int(v) for v in text.split("x")))


def configurations(args):
    """(shape, cell, mode) triples: train/infer on each shape, stream on the stream shape."""
    shapes = [_shape(s) for s in args.shapes.split(",") if s]
    cells, modes = args.cells.split(","), args.modes.split(",")
    for cell in cells:
        for mode in modes:
            for shape in [_shape(args.stream_shape)] if mode == "stream" else shapes:
                yield shape, cell, mode


# The CPU features that decide which kernels run (AVX-512, bf16 units): two hosts with the same
# core count can differ by 2x in matmul rate, so a table records which one it came from.
CPU_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")


def cpu_flags() -> list[str]:
    from rnnjax.recurrence.backends import _native_loading

    flags = _native_loading.cpuinfo("flags").split()
    return [flag for flag in CPU_FLAGS if flag in flags]


def machine() -> dict:
    import jax
    import torch

    from rnnjax.recurrence.backends import _native, _native_loading

    cpu = _native_loading.cpuinfo("model name") or platform.processor()
    return {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "cpu": cpu,
        "cpu_flags": cpu_flags(),
        "cores": os.cpu_count(),
        "load_average": os.getloadavg(),
        "jax": jax.__version__,
        "jax_backend": jax.default_backend(),
        "jax_device": jax.devices()[0].device_kind,
        "torch_device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "rnnjax_native_blas": _native.blas(),
        "python": sys.version.split()[0],
    }


# The ratios printed and saved, where both were run: float32 against float32, and bfloat16
# against torch in either precision.
RATIOS = (
    ("rnnjax", "torch"),
    ("rnnjax", "flax"),
    ("rnnjax-bf16", "torch"),
    ("rnnjax-bf16", "torch-bf16"),
)


def run_one(shape, cell, mode, impls, repeats, warmup):
    runs, skipped = {}, {}
    for impl in impls:
        try:
            run = _peers.build(impl, cell, mode, shape)
            run()  # the first call compiles, and fails where the impl cannot run
            runs[impl] = run
        except (NotImplementedError, ValueError) as error:
            skipped[impl] = f"{type(error).__name__}: {error}"
    samples = _timing.interleaved(runs, repeats=repeats, warmup=warmup)
    flop = _peers.flops(cell, mode, shape)
    results = {}
    for impl, times in samples.items():
        ms = _timing.median_ms(times)
        results[impl] = {
            "ms": ms,
            "samples_ms": [1e3 * t for t in times],
            "min_ms": 1e3 * min(times),
            "max_ms": 1e3 * max(times),
            "tokens_per_s": _peers.tokens(mode, shape) / (ms / 1e3),
            "gflops": flop / (ms / 1e3) / 1e9,
        }
    ratios = {
        f"{ours}/{peer}": results[ours]["ms"] / results[peer]["ms"]
        for ours, peer in RATIOS
        if ours in results and peer in results
    }
    quartiles = {
        key: _timing.quartiles(_timing.round_ratios(*(samples[impl] for impl in key.split("/"))))
        for key in ratios
    }
    return {
        "shape": shape._asdict(),
        "cell": cell,
        "mode": mode,
        "gflop": flop / 1e9,
        "results": results,
        "ratios": ratios,
        "ratio_quartiles": quartiles,
        "skipped": skipped,
    }


def format_row(record) -> str:
    shape = "x".join(str(v) for v in record["shape"].values())
    cols = [f"{shape:>16} {record['cell']:>4} {record['mode']:>6}"]
    for impl, r in record["results"].items():
        cols.append(f"{impl} {r['ms']:8.2f} ms {r['gflops']:6.1f} GF/s")
    for key, ratio in record["ratios"].items():
        q1, q3 = record["ratio_quartiles"][key]
        cols.append(f"{key} {ratio:5.2f} [{q1:4.2f}-{q3:4.2f}]")
    if record["skipped"]:
        cols.append("skipped " + ",".join(record["skipped"]))
    return " | ".join(cols)


def main(argv=None) -> dict:
    args = parse_args(argv)
    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    report = {"machine": machine(), "args": vars(args), "records": []}
    print(json.dumps(report["machine"]))
    for shape, cell, mode in configurations(args):
        repeats = args.stream_repeats if mode == "stream" else args.repeats
        record = run_one(shape, cell, mode, args.impls.split(","), repeats, args.warmup)
        report["records"].append(record)
        print(format_row(record), flush=True)
        if args.json:  # after every row, so that a run cut short keeps what it measured
            _report.write_json(report, args.json)
    if args.json:
        print(f"wrote {args.json}")
    return report


if __name__ == "__main__":
    main()

"""Training step in float32 against bfloat16 matmuls (``rnnjax.cells.MixedPrecisionCell``).

    python -m benchmarks.mixed_precision                       # GPU: 64x512x256x1024, fused
    python -m benchmarks.mixed_precision --shape 64,256,128,256 --mode infer   # a CPU's size

B x T x I x H. The step is the gradient of a sum of squared outputs over all parameters of one
LSTM and one GRU layer (``--mode infer``: the outputs only), jitted, timed interleaved
(``benchmarks._timing``), medians printed as a markdown table with the bf16/f32 ratio; ``--json``
writes them. ``auto`` picks the fused backend on a GPU and the native kernels on a CPU (bf16 with
MKL's bf16 GEMM, else the scan), which is what a user gets; with ``auto`` the bf16 step on the
plain scan is timed too.
"""

import argparse
import datetime
import platform


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shape", default="64,512,256,1024", help="B,T,I,H")
    parser.add_argument("--cells", default="lstm,gru")
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--mode", default="train", choices=("train", "infer"))
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--json", default="", help="write the results here ('' = none)")
    return parser.parse_args(argv)


def _ms(value: float) -> str:
    """Three significant digits below 100 ms (a tiny shape's 0.04 ms is not 0.0), whole ms above."""
    return f"{value:.3g}" if value < 100 else f"{value:.0f}"


def _step(layer, params, x, mode):
    import jax
    import jax.numpy as jnp

    def loss(p):
        out, _ = layer(p, x)
        return jnp.sum(out.astype(jnp.float32) ** 2)

    step = jax.jit(jax.grad(loss) if mode == "train" else lambda p: layer(p, x)[0])
    return lambda: jax.block_until_ready(step(params))


def main(argv=None):
    args = parse_args(argv)
    import jax

    import rnnjax
    from benchmarks import _report, _timing
    from rnnjax import cells

    b, t, i, h = (int(v) for v in args.shape.split(","))
    x = jax.random.normal(jax.random.key(1), (b, t, i))
    make = {"lstm": cells.LSTMCell, "gru": cells.GRUCell}
    runs = {}
    for name in args.cells.split(","):
        cell = make[name](h)
        mixed = cells.MixedPrecisionCell(cell)
        variants = [("f32", cell, args.backend), ("bf16", mixed, args.backend)]
        if args.backend == "auto":
            variants.append(("bf16 scan", mixed, "scan"))
        for label, c, backend in variants:
            layer = rnnjax.Stack(cell=c, backend=backend)
            params = layer.init(jax.random.key(0), i)
            runs[f"{name} {label}"] = _step(layer, params, x, args.mode)
    samples = _timing.interleaved(runs, repeats=args.repeats)
    ms = {k: _timing.median_ms(v) for k, v in samples.items()}
    device = jax.devices()[0].device_kind
    what = "training step" if args.mode == "train" else "inference"
    print(f"{what}, {args.shape} (B,T,I,H), backend {args.backend}, {device}, "
          f"medians of {args.repeats}")  # fmt: skip
    scan = args.backend == "auto"
    print(
        "| cell | float32 ms | bf16 matmuls ms | bf16 / f32 |"
        + (" bf16 on the scan ms |\n|---|---|---|---|---|" if scan else "\n|---|---|---|---|")
    )
    for name in args.cells.split(","):
        f32, bf16 = ms[f"{name} f32"], ms[f"{name} bf16"]
        tail = f" {_ms(ms[f'{name} bf16 scan'])} |" if scan else ""
        print(f"| {name} | {_ms(f32)} | {_ms(bf16)} | {bf16 / f32:.2f} |{tail}")
    if args.json:
        record = {
            "date": datetime.date.today().isoformat(),
            "device": device,
            "machine": platform.processor() or platform.machine(),
            "shape": args.shape,
            "backend": args.backend,
            "mode": args.mode,
            "ms": ms,
        }
        _report.write_json(record, args.json)


if __name__ == "__main__":
    main()

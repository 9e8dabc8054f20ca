"""Layer options on each backend: the time of a training step and of inference, side by side.

    python -m benchmarks.options                       # 64x256x128x256, 5 repeats, about 2 min
    python -m benchmarks.options --shape 16x1024x128x128 --repeats 3 --json ''

Options: the reset-before GRU (``reset_after=False``, a second matmul per step), the projected LSTM
(``proj_size`` = H/4, LSTMP: a second matmul per step whose output is the state) and ``remat=True``
on an LSTM, each on the native kernels (CPU) and on the scan; the plain layer on the native kernels
as the baseline. Work as ``benchmarks.speed`` (``_peers``: MSE loss, clipping, Adam, interleaved
repeats, medians).
"""

import argparse

import jax
import jax.numpy as jnp

from benchmarks import _peers, _report, _timing

OPTIONS = {
    "gru": ("gru", {}),
    "gru reset_after=False": ("gru", {"reset_after": False}),
    "lstm": ("lstm", {}),
    "lstm proj_size=H/4": ("lstm", {"proj_size": lambda hidden: hidden // 4}),
    "lstm remat=True": ("lstm", {"remat": True}),
}
BACKENDS = ("native", "scan")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shape", default="64x256x128x256", help="BxTxIxH")
    parser.add_argument("--options", default=",".join(OPTIONS), help=f"of {list(OPTIONS)}")
    parser.add_argument("--modes", default="train,infer")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", default="benchmarks/options.json", help="output path ('' = none)")
    return parser.parse_args(argv)


def _build(option: str, backend: str, mode: str, shape: _peers.Shape):
    import rnnjax

    cell, options = OPTIONS[option]
    options = {k: v(shape.hidden) if callable(v) else v for k, v in options.items()}
    kind = {"lstm": rnnjax.LSTM, "gru": rnnjax.GRU}[cell]
    layer = kind(shape.hidden, backend=backend, **options)
    params = layer.init(jax.random.key(0), shape.inputs)
    # The loss reads [B, T, H]: a projected layer's P features, then zeros.
    pad = ((0, 0), (0, 0), (0, shape.hidden - layer.output_size))
    return _peers._jax_runs(lambda p, x: jnp.pad(layer(p, x)[0], pad), params, mode, shape)


def main(argv=None) -> dict:
    args = parse_args(argv)
    unknown = set(args.options.split(",")) - set(OPTIONS)
    if unknown:
        raise SystemExit(f"--options: unknown {sorted(unknown)}; known: {list(OPTIONS)}")
    b, t, i, h = (int(n) for n in args.shape.split("x"))
    shape = _peers.Shape(b, t, i, h)
    from benchmarks import speed

    report = {"machine": speed.machine(), "shape": shape._asdict(), "records": []}
    print(f"{'option':<24}{'mode':<7}" + "".join(f"{b + ' ms':>12}" for b in BACKENDS))
    for option in args.options.split(","):
        for mode in args.modes.split(","):
            runs = {b: _build(option, b, mode, shape) for b in BACKENDS}
            for run in runs.values():
                run()  # compiles
            samples = _timing.interleaved(runs, repeats=args.repeats)
            ms = {b: _timing.median_ms(samples[b]) for b in BACKENDS}
            report["records"].append({"option": option, "mode": mode, "ms": ms})
            print(f"{option:<24}{mode:<7}" + "".join(f"{ms[b]:>12.1f}" for b in BACKENDS))
    _report.save(report, args.json)
    return report


if __name__ == "__main__":
    main()

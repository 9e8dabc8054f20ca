"""Parallel in time: linear cells by associative scan, GRU by Newton (DEER), against sequential.

    python -m benchmarks.parallel_time                       # B=16, H=256, T = 256 ... 16,384
    python -m benchmarks.parallel_time --max-len 65536       # the issue's full range (memory!)
    python -m benchmarks.parallel_time --max-len 1024 --repeats 1 --json '' --png ''   # smoke

Part 1, at B x T x H (input features = H): the training step (forward and backward of a sum of
squared outputs, gradients of all parameters) and inference (forward) of one layer of
minGRU / minLSTM / LRU with ``backend="associative"`` and the same cells with
``backend="scan"``, and of GRU / LSTM with ``backend="auto"`` (the compiled native kernels on
CPU, the fused backward on a GPU). Every step is jitted; implementations are timed interleaved
(``benchmarks._timing``), medians reported. An implementation whose median at one T exceeded
``--skip-above-s`` is not run at longer T (its time only grows), and one whose arrays would
exceed ``--max-gib`` is skipped too.

Part 2, DEER for GRU at ``--deer-hidden`` units: the forward pass by Newton iterations with full
Jacobians (DEER) and diagonal ones (quasi-DEER) against the sequential scan, for T up to
``--deer-max-len``: milliseconds and the iterations to converge (tol 1e-5).

Writes a JSON (``--json``), a markdown table to stdout and a PNG of time against T (``--png``).
"""

import argparse
import datetime
import platform
import sys

from benchmarks import _report

LINEAR = ("mingru", "minlstm", "lru")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--min-len", type=int, default=256)
    parser.add_argument("--max-len", type=int, default=16384, help="the issue's range: 65536")
    parser.add_argument("--modes", default="train,infer")
    parser.add_argument("--impls", default="all", help="comma-separated names, or all")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-above-s", type=float, default=2.0)
    parser.add_argument("--max-gib", type=float, default=8.0, help="skip larger estimates")
    parser.add_argument("--deer-hidden", type=int, default=16)
    parser.add_argument("--deer-max-len", type=int, default=4096)
    parser.add_argument("--json", default="benchmarks/parallel_time.json", help="'' = none")
    parser.add_argument("--png", default="experiments/results/parallel_time.png", help="'' = none")
    return parser.parse_args(argv)


def _layers(hidden):
    import rnnjax
    from rnnjax import cells

    layers = {}
    for name, cell in (
        ("mingru", cells.MinGRUCell(hidden)),
        ("minlstm", cells.MinLSTMCell(hidden)),
        ("lru", cells.LRUCell(hidden)),
    ):
        layers[f"{name}-assoc"] = rnnjax.Stack(cell=cell, backend="associative")
        layers[f"{name}-scan"] = rnnjax.Stack(cell=cell, backend="scan")
    layers["gru-auto"] = rnnjax.GRU(hidden)
    layers["lstm-auto"] = rnnjax.LSTM(hidden)
    return layers


def _runner(layer, params, x, mode):
    import jax
    import jax.numpy as jnp

    def loss(params, x):
        out, _ = layer(params, x)
        return jnp.mean(out**2)

    fn = jax.jit(jax.grad(loss) if mode == "train" else lambda p, x: layer(p, x)[0])
    return lambda: jax.block_until_ready(fn(params, x))


def _gib(name, batch, steps, hidden, mode):
    """A rough upper estimate of the live arrays: the associative scan keeps ~12 [T, B, H]
    intermediates (complex for the LRU), the scans ~6 per saved step for the backward."""
    per = batch * steps * hidden * 4 / 2**30
    factor = 12 if "assoc" in name else 6
    factor *= 2 if name.startswith("lru") else 1
    return per * factor * (2 if mode == "train" else 1)


def time_layers(args, lengths):
    import jax

    from benchmarks._timing import interleaved, median_ms

    layers = _layers(args.hidden)
    if args.impls != "all":
        layers = {k: v for k, v in layers.items() if k in args.impls.split(",")}
    records, stopped = [], set()
    for mode in args.modes.split(","):
        for steps in lengths:
            x = jax.random.normal(jax.random.key(1), (args.batch, steps, args.hidden))
            runs = {}
            for name, layer in layers.items():
                if (mode, name) in stopped:
                    continue
                if _gib(name, args.batch, steps, args.hidden, mode) > args.max_gib:
                    stopped.add((mode, name))
                    continue
                params = layer.init(jax.random.key(0), args.hidden)
                runs[name] = _runner(layer, params, x, mode)
            if not runs:
                continue
            samples = interleaved(runs, repeats=args.repeats)
            for name, times in samples.items():
                ms = median_ms(times)
                records.append(
                    dict(
                        part="layers",
                        mode=mode,
                        impl=name,
                        T=steps,
                        ms=ms,
                        tokens_per_s=args.batch * steps / ms * 1e3,
                    )
                )
                if ms / 1e3 > args.skip_above_s:
                    stopped.add((mode, name))
            print(
                f"{mode} T={steps}: "
                + ", ".join(f"{k} {median_ms(v):.1f} ms" for k, v in samples.items()),
                file=sys.stderr,
            )
    return records


def time_deer(args, lengths):
    import jax

    from benchmarks._timing import interleaved, median_ms
    from rnnjax import cells
    from rnnjax.recurrence import scan_time_major
    from rnnjax.recurrence.backends import Newton, newton_states

    cell = cells.GRUCell(args.deer_hidden)
    params = cell.init(jax.random.key(0), args.deer_hidden)
    h0 = jax.numpy.zeros((args.batch, args.deer_hidden))
    configs = {"deer": Newton(tol=1e-5, quasi=False), "quasi-deer": Newton(tol=1e-5, quasi=True)}
    records = []
    for steps in [t for t in lengths if t <= args.deer_max_len]:
        xs = jax.random.normal(jax.random.key(1), (steps, args.batch, args.deer_hidden))
        solvers = {
            name: jax.jit(lambda xs, c=config: newton_states(cell, params, xs, h0, config=c))
            for name, config in configs.items()
        }
        scan = jax.jit(lambda xs: scan_time_major(cell, params, xs, h0, backend="scan"))
        truth = scan(xs)[0]
        runs = {
            name: (lambda s=s, xs=xs: jax.block_until_ready(s(xs))) for name, s in solvers.items()
        }
        runs["sequential"] = lambda scan=scan, xs=xs: jax.block_until_ready(scan(xs))
        samples = interleaved(runs, repeats=args.repeats)
        for name, times in samples.items():
            record = dict(part="deer", mode="infer", impl=name, T=steps, H=args.deer_hidden)
            record["ms"] = median_ms(times)
            if name != "sequential":
                result = solvers[name](xs)
                record["iterations"] = int(result.iterations)
                record["residual"] = float(result.residual)
                record["max_error_vs_scan"] = float(abs(result.states - truth).max())
            records.append(record)
        print(
            f"deer T={steps}: " + ", ".join(f"{r['impl']} {r['ms']:.1f} ms" for r in records[-3:]),
            file=sys.stderr,
        )
    return records


def table(records) -> str:
    lines = []
    for mode in ("train", "infer"):
        rows = [r for r in records if r["part"] == "layers" and r["mode"] == mode]
        if not rows:
            continue
        lengths = sorted({r["T"] for r in rows})
        impls = list(dict.fromkeys(r["impl"] for r in rows))
        lines += [f"\n{mode} (ms)", "| impl | " + " | ".join(f"T={t}" for t in lengths) + " |"]
        lines.append("|---" * (len(lengths) + 1) + "|")
        for impl in impls:
            ms = {r["T"]: r["ms"] for r in rows if r["impl"] == impl}
            cells = [f"{ms[t]:.1f}" if t in ms else "-" for t in lengths]
            lines.append(f"| {impl} | " + " | ".join(cells) + " |")
        ratios = []
        for t in lengths:
            ms = {r["impl"]: r["ms"] for r in rows if r["T"] == t}
            if "mingru-assoc" in ms and "gru-auto" in ms:
                ratios.append(f"T={t}: {ms['gru-auto'] / ms['mingru-assoc']:.1f}x")
        if ratios:
            lines.append("\nGRU / minGRU-associative: " + ", ".join(ratios))
    deer = [r for r in records if r["part"] == "deer"]
    if deer:
        lines += [
            "\nDEER for GRU (forward, ms; iterations)",
            "| T | sequential | DEER | quasi-DEER |",
        ]
        lines.append("|---|---|---|---|")
        for t in sorted({r["T"] for r in deer}):
            got = {r["impl"]: r for r in deer if r["T"] == t}

            row = [_deer_cell(got[name]) for name in ("sequential", "deer", "quasi-deer")]
            lines.append(f"| {t} | " + " | ".join(row) + " |")
    return "\n".join(lines)


def _deer_cell(record) -> str:
    iterations = f" ({record['iterations']} it)" if "iterations" in record else ""
    return f"{record['ms']:.1f}{iterations}"


def plot(records, path, title):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("train", "layers"), ("infer", "layers"), ("infer", "deer")]
    panels = [p for p in panels if any(r["mode"] == p[0] and r["part"] == p[1] for r in records)]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6), squeeze=False)
    for ax, (mode, part) in zip(axes[0], panels, strict=True):
        rows = [r for r in records if r["mode"] == mode and r["part"] == part]
        for impl in dict.fromkeys(r["impl"] for r in rows):
            pts = sorted((r["T"], r["ms"]) for r in rows if r["impl"] == impl)
            style = "-" if ("assoc" in impl or "deer" in impl) else "--"
            ax.loglog(*zip(*pts, strict=True), style, marker="o", ms=3, label=impl)
        ax.set_xlabel("T")
        ax.set_ylabel("ms")
        ax.set_title(f"{mode}" if part == "layers" else "GRU forward: DEER vs sequential")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=6)
    fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=80)


def main(argv=None):
    args = parse_args(argv)
    import jax

    lengths = []
    t = args.min_len
    while t <= args.max_len:
        lengths.append(t)
        t *= 4
    records = time_layers(args, lengths) + time_deer(args, lengths)
    machine = dict(
        date=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        cpu=platform.processor() or platform.machine(),
        device=str(jax.devices()[0]),
        jax=jax.__version__,
        batch=args.batch,
        hidden=args.hidden,
    )
    print(table(records))
    _report.save(dict(machine=machine, records=records), args.json)
    if args.png:
        title = f"B={args.batch}, H={args.hidden}, {machine['device']}, {machine['date']}"
        plot(records, args.png, title)
    return records


if __name__ == "__main__":
    main()

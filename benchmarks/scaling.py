"""Data-parallel scaling of the char-LM training step: steps/s and tokens/s on 1, 2, 4 devices.

    python -m benchmarks.scaling                         # 1, 2, 4 fake CPU devices of this machine
    python -m benchmarks.scaling --platform gpu          # the GPUs there are (an H200 box: one)
    python -m benchmarks.scaling --batch 128 --json ''   # another global batch, no file written

The step is the trainer's (``rnnjax.training.make_train_step``: forward, backward, clipping,
Adam) on the char-LM preset's model (one LSTM layer of 256, embedding 64, vocabulary 100,
T = 100, truncated BPTT with the state carried), with the global batch split over a ``data``
mesh of the first N devices (``rnnjax.training.make_mesh``), parameters replicated. Device
counts are timed interleaved (``benchmarks._timing``), ``--repeats`` rounds of ``--steps``
steps each; medians reported.

Fake CPU devices (``--xla_force_host_platform_device_count``) share the machine's cores: on a
2-core CPU, 4 devices cannot be faster than 1. What this measures there is the cost of the
sharding itself (partitioned program, all-reduce, per-device kernels); on real devices, the
speed-up.
"""

import argparse
import json
import os
import statistics
import sys

_DEVICE_FLAG = "--xla_force_host_platform_device_count"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--devices", default="1,2,4", help="comma-separated device counts")
    parser.add_argument("--platform", default="cpu", choices=("cpu", "gpu", "tpu"))
    parser.add_argument("--batch", type=int, default=32, help="global batch B")
    parser.add_argument("--seq-len", type=int, default=100)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--backend", default="auto", help="the LSTM's backend")
    parser.add_argument("--steps", type=int, default=10, help="train steps per timed repeat")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", default="benchmarks/scaling.json", help="output ('' = none)")
    return parser.parse_args(argv)


def _setup_platform(args, counts) -> None:
    """Fake CPU devices must be requested before JAX starts."""
    os.environ["JAX_PLATFORMS"] = args.platform
    if args.platform == "cpu":
        flags = [f for f in os.environ.get("XLA_FLAGS", "").split() if _DEVICE_FLAG not in f]
        os.environ["XLA_FLAGS"] = " ".join([*flags, f"{_DEVICE_FLAG}={max(counts)}"])


def _make_runner(args, count: int):
    import jax
    import numpy as np
    import optax

    import rnnjax
    from rnnjax import training

    vocab, embed = 100, 64
    layer = rnnjax.LSTM(args.hidden, backend=args.backend)
    mesh = training.make_mesh(jax.devices()[:count])
    rng = np.random.default_rng(0)
    optimizer = training.make_optimizer(optax.adam(1e-3), 1.0)

    def init():
        k1, k2, k3 = jax.random.split(jax.random.PRNGKey(0), 3)
        params = {
            "embed": jax.random.normal(k1, (vocab, embed)),
            "rnn": layer.init(k2, embed),
            "out": 0.05 * jax.random.normal(k3, (args.hidden, vocab)),
        }
        carry = layer.initial_state(args.batch)
        return training.create_train_state(params, optimizer, jax.random.PRNGKey(1), carry)

    def loss_fn(params, carry, batch, key):
        del key
        x = params["embed"][batch["inputs"]]
        y, carry = layer(params["rnn"], x, initial_state=carry)
        logits = y @ params["out"]
        nll = optax.softmax_cross_entropy_with_integer_labels(logits, batch["targets"])
        return nll.mean(), (carry, {})

    carry = training.batch_axis_sharding(layer.initial_state, args.batch, mesh)
    shardings = training.train_state_sharding(jax.eval_shape(init), mesh, carry)
    state = jax.jit(init, out_shardings=shardings)()
    step_fn = training.make_train_step(loss_fn, optimizer, max_norm=1.0)
    tokens = rng.integers(0, vocab, (args.batch, args.seq_len + 1)).astype(np.int32)
    batch = training.make_global_batch(
        {"inputs": tokens[:, :-1], "targets": tokens[:, 1:]}, mesh, args.batch
    )
    holder = [state]

    def run():
        with jax.set_mesh(mesh):
            s = holder[0]
            for _ in range(args.steps):
                s, metrics = step_fn(s, batch)
            jax.block_until_ready(metrics["loss"])
            holder[0] = s

    return run, training.per_device_batch(args.batch, mesh)


def main(argv=None) -> int:
    args = parse_args(argv)
    counts = [int(c) for c in args.devices.split(",")]
    _setup_platform(args, counts)
    import jax

    from benchmarks import _timing

    available = jax.device_count()
    skipped = [c for c in counts if c > available]
    counts = [c for c in counts if c <= available]
    if skipped:
        print(f"only {available} {args.platform} device(s) here: skipping {skipped}")
    runners, per_device = {}, {}
    for count in counts:
        runners[count], per_device[count] = _make_runner(args, count)
    samples = _timing.interleaved(
        {str(c): runners[c] for c in counts}, repeats=args.repeats, warmup=1
    )
    tokens = args.batch * args.seq_len
    rows = []
    print(f"char-LM step, B={args.batch} T={args.seq_len} H={args.hidden}, {args.platform}, "
          f"{jax.devices()[0].device_kind}, backend {args.backend}")  # fmt: skip
    print("devices | per-device batch | ms/step | steps/s | tokens/s | vs 1 device")
    base = None
    for count in counts:
        ms = 1e3 * statistics.median(samples[str(count)]) / args.steps
        base = base or ms
        row = {
            "devices": count,
            "per_device_batch": per_device[count],
            "ms_per_step": round(ms, 3),
            "steps_per_s": round(1e3 / ms, 2),
            "tokens_per_s": round(tokens * 1e3 / ms),
            "speedup": round(base / ms, 3),
        }
        rows.append(row)
        print(f"{count} | {row['per_device_batch']} | {ms:.2f} | {row['steps_per_s']} | "
              f"{row['tokens_per_s']} | {row['speedup']}x")  # fmt: skip
    if args.json:
        result = {
            "platform": args.platform,
            "device_kind": jax.devices()[0].device_kind,
            "devices_available": available,
            "skipped_device_counts": skipped,
            "batch": args.batch,
            "seq_len": args.seq_len,
            "hidden": args.hidden,
            "backend": args.backend,
            "steps_per_repeat": args.steps,
            "repeats": args.repeats,
            "rows": rows,
        }
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())

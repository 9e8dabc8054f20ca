"""Peak memory of one LSTM training step against sequence length, with and without remat.

    python -m benchmarks.memory                          # T = 1k, 4k, 16k, 64k; budget 6 GiB
    python -m benchmarks.memory --steps 1024,65536 --budget-gib 4 --json /tmp/memory.json

Every (implementation, T) runs in its own subprocess, so peaks do not mix. Work: a one-layer LSTM,
B x T x I x H = 16 x T x 128 x 128, MSE loss, forward + backward + clip + Adam (as
``benchmarks.speed``). Implementations: ``rnnjax`` (the default backend: on CPU the native
kernels, which keep 5 floats per hidden unit and step), ``rnnjax-scan`` (plain BPTT through
``lax.scan``), ``rnnjax-remat`` (``remat=True`` on the default backend: on CPU the native kernels
keep the states entering segments of about sqrt(T) steps and rerun each segment's forward call),
``rnnjax-scan-remat`` (the scan with each step recomputed: only the carry is stored per step),
``rnnjax-bf16`` (the default backend with the cell in a bfloat16 ``MixedPrecisionCell``: on CPU the
native kernels also hold bf16 copies of the chunk's operands),
``flax`` (``nn.RNN`` with ``OptimizedLSTMCell``) and ``torch`` (``nn.LSTM``).

For JAX the compiler's own accounting (``compiled.memory_analysis()``: arguments + outputs +
temporaries) is known before running; a step predicted over ``--budget-gib`` is reported as
``over budget`` and not run. Torch runs under an address-space limit of its setup plus the budget
and reports ``OOM`` when an allocation fails. Each run also reports the process's peak RSS (which
includes the runtime, about 0.3-0.6 GiB).
"""

import argparse
import json
import os
import resource
import subprocess
import sys

from benchmarks import _report

IMPLS = (
    "rnnjax",
    "rnnjax-bf16",
    "rnnjax-scan",
    "rnnjax-remat",
    "rnnjax-scan-remat",
    "flax",
    "torch",
)
GIB = 2**30


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", default="1024,4096,16384,65536", help="comma-separated T")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--inputs", type=int, default=128)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--impls", default=",".join(IMPLS))
    parser.add_argument("--budget-gib", type=float, default=6.0)
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per subprocess")
    parser.add_argument("--json", default="benchmarks/memory.json", help="output path ('' = none)")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)  # impl, in subprocess
    return parser.parse_args(argv)


def _peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GIB  # Linux: KiB


def _jax_worker(impl, shape, budget):
    import jax
    import jax.numpy as jnp

    from benchmarks import _peers

    x, target = _peers._data(shape)
    if impl == "flax":
        import flax.linen as nn

        model = nn.RNN(nn.OptimizedLSTMCell(shape.hidden))
        params, apply = model.init(jax.random.key(0), x[:1, :2]), model.apply
    else:
        import rnnjax

        backend = "scan" if impl.startswith("rnnjax-scan") else "auto"
        layer = rnnjax.LSTM(shape.hidden, remat=impl.endswith("remat"), backend=backend)
        layer = rnnjax.with_compute_dtype(layer, jnp.bfloat16 if impl == "rnnjax-bf16" else None)
        params, apply = layer.init(jax.random.key(0), shape.inputs), lambda p, x: layer(p, x)[0]
    step, opt_state = _peers.jax_train_step(apply, params)
    compiled = step.lower(params, opt_state, x, target).compile()
    analysis = compiled.memory_analysis()
    predicted = (
        analysis.argument_size_in_bytes
        + analysis.output_size_in_bytes
        + analysis.temp_size_in_bytes
        - analysis.alias_size_in_bytes
    ) / GIB
    result = {"predicted_gib": predicted, "temp_gib": analysis.temp_size_in_bytes / GIB}
    if predicted > budget:
        return {**result, "status": "over budget"}
    jax.block_until_ready(compiled(params, opt_state, x, target))
    return {**result, "status": "ok", "peak_rss_gib": _peak_rss_gib()}


def _torch_worker(shape, budget):
    import torch

    from benchmarks import _peers

    torch.set_num_threads(os.cpu_count() or 1)
    x_np, target_np = _peers._data(shape)
    x, target = torch.from_numpy(x_np), torch.from_numpy(target_np)
    model = torch.nn.LSTM(shape.inputs, shape.hidden, batch_first=True)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    with open("/proc/self/status") as f:
        vm = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize"))
    limit = vm + int(budget * GIB)
    resource.setrlimit(resource.RLIMIT_AS, (limit, resource.RLIM_INFINITY))
    try:
        loss = torch.mean((model(x)[0] - target) ** 2)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
    except (RuntimeError, MemoryError) as error:
        return {"status": "OOM", "error": str(error)[:200]}
    return {"status": "ok", "peak_rss_gib": _peak_rss_gib()}


def worker(args):
    from benchmarks import _peers

    steps = int(args.steps)
    shape = _peers.Shape(args.batch, steps, args.inputs, args.hidden)
    if args.worker == "torch":
        result = _torch_worker(shape, args.budget_gib)
    else:
        result = _jax_worker(args.worker, shape, args.budget_gib)
    print("RESULT " + json.dumps(result))


def measure(impl, steps, args) -> dict:
    """Runs one configuration in a subprocess and returns its result dict."""
    command = [sys.executable, "-m", "benchmarks.memory", "--worker", impl, "--steps", str(steps)]
    for flag in ("batch", "inputs", "hidden", "budget_gib"):
        command += [f"--{flag.replace('_', '-')}", str(getattr(args, flag))]
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=args.timeout, cwd=root
        )
    except subprocess.TimeoutExpired:
        return {"status": "timeout"}
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if not lines:  # killed (e.g. by the kernel's OOM killer) or crashed
        return {"status": f"failed (exit {done.returncode})", "stderr": done.stderr[-300:]}
    return json.loads(lines[-1][len("RESULT ") :])


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.worker:
        worker(args)
        return {}
    from benchmarks import speed

    report = {"machine": speed.machine(), "args": vars(args), "records": []}
    for steps in (int(s) for s in args.steps.split(",")):
        for impl in args.impls.split(","):
            result = measure(impl, steps, args)
            report["records"].append({"impl": impl, "steps": steps, **result})
            gib = {k: round(v, 3) for k, v in result.items() if k.endswith("gib")}
            print(f"T={steps:>6} {impl:>17}: {result['status']:>12} {gib}", flush=True)
    _report.save(report, args.json)
    return report


if __name__ == "__main__":
    main()

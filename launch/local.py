"""Runs N processes of one command on this machine, as a cluster would: multi-process JAX locally.

    python -m launch.local -n 2 --cpu-devices 2 -- \\
        python -m experiments.train --config=experiments/configs/char_lm.py:tiny --workdir=/tmp/w

Process i gets ``JAX_COORDINATOR_ADDRESS=127.0.0.1:PORT``, ``JAX_NUM_PROCESSES=N`` and
``JAX_PROCESS_ID=i``, which ``rnnjax.training.maybe_initialize_distributed`` reads; with
``--cpu-devices K`` it runs on K fake CPU devices (``JAX_PLATFORMS=cpu`` and XLA's
``--xla_force_host_platform_device_count``), with ``--gpus-per-process G`` on its own G GPUs
(``CUDA_VISIBLE_DEVICES``). Output lines are prefixed with ``[i]``.

When any process fails, the others are sent SIGTERM and, ``--grace`` seconds later, SIGKILL, and
the launcher exits with the failed process's status: a job never hangs on a dead peer. SIGTERM or
SIGINT to the launcher is passed on to every process (preemption: they save and exit 143).
"""

import argparse
import os
import signal
import socket
import subprocess
import sys
import threading
import time

_DEVICE_FLAG = "--xla_force_host_platform_device_count"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def with_cpu_devices(xla_flags: str, devices: int) -> str:
    """``xla_flags`` with its CPU device count (if any) replaced by ``devices``."""
    flags = [f for f in xla_flags.split() if not f.startswith(_DEVICE_FLAG)]
    return " ".join([*flags, f"{_DEVICE_FLAG}={devices}"])


def _child_env(args, index: int, port: int) -> dict:
    env = dict(os.environ)
    env.update(
        JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}",
        JAX_NUM_PROCESSES=str(args.num_processes),
        JAX_PROCESS_ID=str(index),
        PYTHONUNBUFFERED="1",  # lines reach the log before a crash
    )
    if args.cpu_devices:
        env["XLA_FLAGS"] = with_cpu_devices(env.get("XLA_FLAGS", ""), args.cpu_devices)
        env["JAX_PLATFORMS"] = "cpu"
    if args.gpus_per_process:
        first = index * args.gpus_per_process
        gpus = range(first, first + args.gpus_per_process)
        env["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, gpus))
    return env


def _forward(stream, prefix: str) -> None:
    for line in iter(stream.readline, b""):
        sys.stdout.buffer.write(prefix.encode() + line)
        sys.stdout.buffer.flush()
    stream.close()


def _describe(code: int) -> str:
    if code < 0:
        return f"was killed by {signal.Signals(-code).name}"
    return f"exited with status {code}"


def _signal_all(procs, sig) -> None:
    for p in procs:
        if p.poll() is None:
            try:
                os.killpg(p.pid, sig)  # the process group of a child started here
            except ProcessLookupError:
                pass


def run(args) -> int:
    port = args.port or _free_port()
    procs, threads = [], []
    for i in range(args.num_processes):
        p = subprocess.Popen(
            args.command,
            env=_child_env(args, i, port),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so that stopping it stops its children
        )
        procs.append(p)
        t = threading.Thread(target=_forward, args=(p.stdout, f"[{i}] "), daemon=True)
        t.start()
        threads.append(t)

    preempted = []

    def on_signal(signum, frame):
        del frame
        preempted.append(signum)
        _signal_all(procs, signal.SIGTERM)

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    status = 0
    try:
        while [p.poll() for p in procs].count(None):  # polls every process (any() would stop)
            failed = [(i, p) for i, p in enumerate(procs) if p.returncode not in (None, 0)]
            if failed and not preempted:
                i, p = failed[0]
                status = p.returncode if p.returncode > 0 else 128 - p.returncode
                running = sum(q.poll() is None for q in procs)
                print(
                    f"launch.local: process {i} (pid {p.pid}) {_describe(p.returncode)}; "
                    f"stopping the other {running} process(es)",
                    file=sys.stderr,
                    flush=True,
                )
                _signal_all(procs, signal.SIGTERM)
                deadline = time.monotonic() + args.grace
                while time.monotonic() < deadline and [q.poll() for q in procs].count(None):
                    time.sleep(0.05)
                _signal_all(procs, signal.SIGKILL)
                for q in procs:
                    q.wait()
                break
            time.sleep(0.05)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    for t in threads:
        t.join(timeout=5)
    if status:
        return status
    codes = [p.returncode for p in procs]
    bad = [(i, c) for i, c in enumerate(codes) if c != 0]
    if bad:
        i, code = bad[0]
        if not preempted:
            print(f"launch.local: process {i} {_describe(code)}", file=sys.stderr, flush=True)
        return code if code > 0 else 128 - code
    return 0


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="python -m launch.local",
        description="Run N processes of a JAX program on this machine (coordinator on localhost).",
    )
    parser.add_argument("-n", "--num-processes", type=int, required=True)
    parser.add_argument(
        "--cpu-devices", type=int, default=0, help="fake CPU devices per process (0: leave as is)"
    )
    parser.add_argument("--gpus-per-process", type=int, default=0, help="GPUs per process")
    parser.add_argument("--port", type=int, default=0, help="coordinator port (0: a free one)")
    parser.add_argument(
        "--grace", type=float, default=5.0, help="seconds between SIGTERM and SIGKILL on failure"
    )
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- then the command to run")
    args = parser.parse_args(argv)
    if args.command[:1] == ["--"]:
        args.command = args.command[1:]
    if not args.command:
        parser.error("a command to run is required after --")
    if args.num_processes < 1:
        parser.error(f"--num-processes must be at least 1, got {args.num_processes}")
    if args.cpu_devices < 0 or args.gpus_per_process < 0:
        parser.error("--cpu-devices and --gpus-per-process must be non-negative")
    if args.cpu_devices and args.gpus_per_process:
        parser.error("give --cpu-devices or --gpus-per-process, not both")
    return args


def main(argv=None) -> int:
    return run(parse_args(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    sys.exit(main())

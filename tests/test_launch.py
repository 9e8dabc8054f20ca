"""launch/: what can be checked without a cluster (syntax, shellcheck, the manifest's structure,
the XLA flags, the local launcher's arguments). The launcher's runs are in test_multiprocess.py."""

import os
import pathlib
import re
import shutil
import subprocess
import sys

import pytest

from launch import local

LAUNCH = pathlib.Path(__file__).resolve().parents[1] / "launch"
SCRIPTS = [LAUNCH / "slurm.sbatch", LAUNCH / "tpu_vm.sh"]
MANIFEST = LAUNCH / "kubernetes" / "jobset.yaml"


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_scripts_parse_and_pass_shellcheck(script):
    subprocess.run(["bash", "-n", str(script)], check=True)
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck is not installed (apt-get install shellcheck)")
    done = subprocess.run(["shellcheck", "-s", "bash", str(script)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout


def test_scripts_run_the_trainer_and_resume_from_the_workdir():
    slurm = (LAUNCH / "slurm.sbatch").read_text()
    for line in ("#SBATCH --requeue", "#SBATCH --signal=B:TERM@", "export JAX_COORDINATOR_PORT="):
        assert line in slurm
    assert "srun --kill-on-bad-exit=1" in slurm and "scontrol requeue" in slurm
    tasks = re.search(r"--ntasks-per-node=(\d+)", slurm).group(1)
    assert re.search(r"--gpus-per-node=(\d+)", slurm).group(1) == tasks  # one process per GPU
    tpu = (LAUNCH / "tpu_vm.sh").read_text()
    assert "--worker=all" in tpu and "RNNJAX_DISTRIBUTED=auto" in tpu
    for text in (slurm, tpu):
        assert "python -m experiments.train --config=" in text.replace("\\\n", " ")


def test_manifest_structure():
    yaml = pytest.importorskip("yaml")
    if shutil.which("yamllint"):
        rules = "{extends: default, rules: {line-length: {max: 100}, document-start: disable}}"
        done = subprocess.run(["yamllint", "-d", rules, str(MANIFEST)], capture_output=True)
        assert done.returncode == 0, done.stdout.decode()
    docs = {d["kind"]: d for d in yaml.safe_load_all(MANIFEST.read_text())}
    assert set(docs) == {"ServiceAccount", "Role", "RoleBinding", "PersistentVolumeClaim", "JobSet"}
    namespace = {d["metadata"]["namespace"] for d in docs.values()}
    assert len(namespace) == 1
    account = docs["ServiceAccount"]["metadata"]["name"]
    binding = docs["RoleBinding"]
    assert binding["subjects"][0]["name"] == account
    assert binding["roleRef"]["name"] == docs["Role"]["metadata"]["name"]
    allowed = {(g, r, v) for rule in docs["Role"]["rules"] for g in rule["apiGroups"]
               for r in rule["resources"] for v in rule["verbs"]}  # fmt: skip
    assert {("", "pods", "list"), ("", "services", "list"), ("batch", "jobs", "get")} <= allowed

    jobset = docs["JobSet"]
    assert jobset["apiVersion"] == "jobset.x-k8s.io/v1alpha2"
    assert jobset["spec"]["network"]["enableDNSHostnames"] is True
    (replicated,) = jobset["spec"]["replicatedJobs"]
    job = replicated["template"]["spec"]
    assert job["completionMode"] == "Indexed" and job["completions"] == job["parallelism"]
    pod = job["template"]["spec"]
    assert pod["serviceAccountName"] == account and pod["restartPolicy"] == "Never"
    (container,) = pod["containers"]
    assert container["command"] == ["python", "-m", "experiments.train"]
    assert any(a.startswith("--workdir=/workdir/") for a in container["args"])
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    claim = {v["name"]: v.get("persistentVolumeClaim", {}) for v in pod["volumes"]}
    assert mounts["workdir"] == "/workdir"
    assert claim["workdir"]["claimName"] == docs["PersistentVolumeClaim"]["metadata"]["name"]
    assert docs["PersistentVolumeClaim"]["spec"]["accessModes"] == ["ReadWriteMany"]


def _xla_flags():
    slurm = re.search(r'export XLA_FLAGS="([^"]+)"', (LAUNCH / "slurm.sbatch").read_text())
    yaml = pytest.importorskip("yaml")
    (jobset,) = [d for d in yaml.safe_load_all(MANIFEST.read_text()) if d["kind"] == "JobSet"]
    pod = jobset["spec"]["replicatedJobs"][0]["template"]["spec"]["template"]["spec"]
    env = {e["name"]: e["value"] for e in pod["containers"][0]["env"]}
    return slurm.group(1), env["XLA_FLAGS"]


def test_xla_flags_are_known_to_this_jaxlib():
    """XLA aborts at start-up on a flag it does not know (flags are renamed and retired)."""
    slurm, kubernetes = _xla_flags()
    assert slurm.split() == kubernetes.split()
    env = dict(os.environ, XLA_FLAGS=slurm, JAX_PLATFORMS="cpu")
    done = subprocess.run(
        [sys.executable, "-c", "import jax; jax.numpy.zeros(1).block_until_ready()"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-2000:]


def test_local_launcher_arguments():
    args = local.parse_args(["-n", "2", "--cpu-devices", "3", "--", "python", "-V"])
    assert args.command == ["python", "-V"]
    env = local._child_env(args, 1, 1234)
    assert env["JAX_COORDINATOR_ADDRESS"] == "127.0.0.1:1234" and env["JAX_PROCESS_ID"] == "1"
    assert "--xla_force_host_platform_device_count=3" in env["XLA_FLAGS"].split()
    gpus = local.parse_args(["-n", "2", "--gpus-per-process", "4", "--", "x"])
    assert local._child_env(gpus, 1, 1)["CUDA_VISIBLE_DEVICES"] == "4,5,6,7"
    for bad in (
        ["-n", "2"],
        ["-n", "0", "--", "x"],
        ["-n", "1", "--cpu-devices", "1", "--gpus-per-process", "1", "--", "x"],
    ):
        with pytest.raises(SystemExit):
            local.parse_args(bad)


def test_local_launcher_passes_a_failure_on():
    """One process fails at once, the other would sleep: the launcher stops it and reports."""
    code = "import os, sys, time\nif os.environ['JAX_PROCESS_ID'] == '1': sys.exit(3)\n"
    code += "time.sleep(60)"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "launch.local",
            "-n",
            "2",
            "--grace",
            "1",
            "--",
            sys.executable,
            "-c",
            code,
        ],  # fmt: skip
        cwd=LAUNCH.parent,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 3
    assert "process 1 (pid" in done.stderr and "exited with status 3" in done.stderr

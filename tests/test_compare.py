"""experiments.compare end to end on a tiny preset: table, plot, and reruns that skip done runs."""

import gzip
import os
import pathlib
import subprocess
import sys

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_compare_writes_a_table_and_a_plot_and_resumes(tmp_path):
    rng = np.random.default_rng(0)
    words = ["good", "bad", "plot", "film", "the"]
    rows = [f"{' '.join(rng.choice(words, size=rng.integers(1, 9)))}\t{i % 2}" for i in range(80)]
    for name in ("train.tsv.gz", "dev.tsv"):
        text = "sentence\tlabel\n" + "\n".join(rows) + "\n"
        path = tmp_path / name
        if name.endswith(".gz"):
            path.write_bytes(gzip.compress(text.encode()))
        else:
            path.write_text(text, encoding="utf-8")
    out = tmp_path / "out"
    command = [
        sys.executable, "-m", "experiments.compare", f"--data_dir={tmp_path}", f"--out={out}",
        "--preset=tiny", "--cells=gru", "--directions=bi", "--seeds=2",
        "--num_steps=4", "--hidden_size=8", "--embed_size=4",
    ]  # fmt: skip
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    first = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr[-3000:]
    table = (out / "compare.md").read_text().splitlines()
    assert len(table) == 2 + 1 and table[2].startswith("| GRU | 2 | ")
    assert "(2) |" in table[2] and (out / "compare.png").read_bytes()[:4] == b"\x89PNG"
    again = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and (out / "compare.md").read_text().splitlines() == table

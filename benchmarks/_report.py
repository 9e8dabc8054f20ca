"""Writing a benchmark's JSON report: whole or not at all.

The report goes to a temporary file beside ``path`` that then replaces it, so a run killed while
writing (or one that writes after every row, as ``benchmarks.speed``) never leaves half a file.
"""

import json
import os


def write_json(report, path: str) -> None:
    """Writes ``report`` to ``path`` (its directories made as needed), atomically."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path + ".tmp", "w") as f:
        json.dump(report, f, indent=1)
    os.replace(path + ".tmp", path)


def save(report, path: str) -> None:
    """``write_json`` where ``path`` is given (a benchmark's ``--json``; '' writes nothing), and
    says where."""
    if path:
        write_json(report, path)
        print(f"wrote {path}")

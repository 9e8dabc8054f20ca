"""Files a task writes into its workdir, atomically: a killed run never leaves half a file."""

import os


def write_atomically(path: str, content: str) -> None:
    """Writes ``content`` to ``path`` through a temporary file and a rename."""
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        f.write(content)
    os.replace(path + ".tmp", path)

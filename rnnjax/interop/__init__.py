"""Interoperability with other frameworks; importing this package imports none of them.

``rnnjax.interop.torch`` converts ``torch.nn.RNN/LSTM/GRU`` modules and state_dicts to rnnjax layers
and parameters and back. It needs PyTorch (``pip install rnnjax[torch]``) and is imported on first
use, by ``import rnnjax.interop.torch`` or by the attribute access ``rnnjax.interop.torch``.
"""

import importlib

__all__ = ["torch"]


def __getattr__(name: str):
    # Lazy submodule: `import rnnjax` must never import torch (it takes seconds and is optional).
    if name == "torch":
        return importlib.import_module("rnnjax.interop.torch")
    raise AttributeError(f"module 'rnnjax.interop' has no attribute {name!r}")

"""What the hand-written backward passes do not define, said in the error: use the scan.

The fused and native backends are ``jax.custom_vjp`` functions: reverse mode (``jax.grad``) is
their one derivative. JAX refuses forward mode (``jax.jvp``, ``jax.jacfwd``) of a custom VJP
with a TypeError that names no way out, and differentiating the native backward pass again
(``jax.grad`` of ``jax.grad``, ``jax.hessian``) fails inside the FFI call. Both errors here say
to pass ``backend="scan"``, whose derivatives JAX writes to any order.
"""

import contextlib

import jax


def _message(backend: str, what: str) -> str:
    return (
        f"backend={backend!r} defines reverse-mode derivatives only (jax.grad, jax.vjp): "
        f"{what} needs backend='scan' (e.g. rnnjax.LSTM(..., backend='scan'))"
    )


@contextlib.contextmanager
def forward_mode_hint(backend: str):
    """Turns JAX's refusal of forward mode on a custom VJP into a ValueError naming the fix."""
    try:
        yield
    except TypeError as error:
        if "custom_vjp" not in str(error):
            raise
        raise ValueError(_message(backend, "forward mode (jax.jvp, jax.jacfwd)")) from error


def reverse_mode_only(function, backend: str):
    """``function`` of positional arrays, whose own derivative raises a ValueError naming the fix.

    Wraps the FFI calls: a first derivative never differentiates them (the custom VJP gives it),
    so the rule runs only for a second one, or forward mode through the backward pass.
    """
    guarded = jax.custom_jvp(function)

    @guarded.defjvp
    def _refuse(primals, tangents):
        del primals, tangents
        raise ValueError(_message(backend, "a derivative of a gradient (grad of grad, hessian)"))

    return guarded

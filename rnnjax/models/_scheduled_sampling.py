"""Schedules of the teacher-forcing probability for scheduled sampling (Bengio et al., 2015).

At training step i the decoder is fed the ground truth with probability epsilon_i and its own
sample otherwise (``Decoder.scheduled_sampling``, ``Seq2Seq(..., teacher_prob=...)``). The paper's
three decays, each evaluated on a traced step so that one compiled train step serves them all::

    linear            epsilon_i = max(minimum, k - c * i)
    exponential       epsilon_i = max(minimum, k ** i)            (k < 1)
    inverse_sigmoid   epsilon_i = max(minimum, k / (k + exp(i / k)))   (k >= 1)

Example: ``TeacherForcingSchedule("inverse_sigmoid", k=500.0)(step)`` stays near 1 for the first
~1000 steps and reaches 0.5 at step k * ln(k) (about 3100).
"""

import dataclasses

import jax.numpy as jnp

from rnnjax._shapes import Array, Float, Int

SCHEDULES = ("constant", "linear", "exponential", "inverse_sigmoid")


@dataclasses.dataclass(frozen=True)
class TeacherForcingSchedule:
    """epsilon_i, the probability of feeding the ground truth at training step i.

    Attributes:
      kind: one of ``SCHEDULES`` (``"constant"`` is epsilon_i = k).
      k: the paper's k: the start value (linear, constant), the decay base (exponential, in
        (0, 1)) or the steepness (inverse_sigmoid, >= 1).
      c: the slope of ``"linear"`` per step.
      minimum: the floor epsilon never goes below.
    """

    kind: str = "inverse_sigmoid"
    k: float = 1.0
    c: float = 0.0
    minimum: float = 0.0

    def __post_init__(self):
        if self.kind not in SCHEDULES:
            raise ValueError(f"kind must be one of {SCHEDULES}, got {self.kind!r}")
        if not 0.0 <= self.minimum <= 1.0:
            raise ValueError(f"minimum must be in [0, 1], got {self.minimum!r}")
        if self.kind == "exponential" and not 0.0 < self.k < 1.0:
            raise ValueError(f"k of the exponential schedule must be in (0, 1), got {self.k!r}")
        if self.kind == "inverse_sigmoid" and self.k < 1.0:
            raise ValueError(f"k of the inverse_sigmoid schedule must be >= 1, got {self.k!r}")
        if self.kind in ("linear", "constant") and not 0.0 <= self.k <= 1.0:
            raise ValueError(f"k of the {self.kind} schedule must be in [0, 1], got {self.k!r}")
        if self.c < 0.0:
            raise ValueError(f"c must be >= 0, got {self.c!r}")

    def __call__(self, step: Int[Array, ""] | int) -> Float[Array, ""]:
        """epsilon at ``step`` (a Python int or a traced integer)."""
        i = jnp.asarray(step, jnp.float32)
        if self.kind == "constant":
            value = jnp.full((), self.k, jnp.float32)
        elif self.kind == "linear":
            value = self.k - self.c * i
        elif self.kind == "exponential":
            value = jnp.power(jnp.float32(self.k), i)
        else:
            # k / (k + exp(i/k)) = sigmoid(ln k - i/k), which does not overflow for large i.
            value = 1.0 / (1.0 + jnp.exp(i / self.k - jnp.log(jnp.float32(self.k))))
        return jnp.clip(value, self.minimum, 1.0)

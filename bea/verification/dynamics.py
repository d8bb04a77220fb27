"""What :func:`bea.verify` checks: a discrete dynamics and its modified field.

:class:`Dynamics` is the small public protocol behind every verification.  ``bea`` builds
one from a :class:`bea.ModifiedEquation` or a method (:func:`bea.verification.as_dynamics`);
anything else that can make one real step and evaluate a truncated modified field (a
numeric modified field of an optax optimiser, say) implements it and is verified the same
way::

    class MyDynamics:
        method_order = 1                     # order q of the update as a method (1 if unknown)

        def step(self, state, h):            # one real iterate, batches bound inside
            ...
        def modified_field(self, params, h, order):
            # f_0 + h f_1 + ... + h^order f_order at params (order: a static int)
            ...

    bea.verify(MyDynamics(), params0=..., orders=(0, 1, 2))

Optional members: ``initial_state(params, h) -> state`` when a step needs more than the
parameters (previous iterates, an optimiser state; default: the parameters themselves)
and ``params_of(state) -> params`` to read the parameters back (default: identity).  All
of them must be traceable by JAX (they run under ``jit``/``vmap``).

``method_order`` matters for the expected slopes: an update of order ``q`` has
``f_1 = .. = f_{q-1} = 0``, so the flow truncated after ``h^p`` is off by
``h^max(p+1, q)`` over a fixed time and ``h^max(p+2, q+1)`` in one step
(:func:`expected_slopes`).
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

__all__ = ["Dynamics", "expected_slopes", "method_order_of"]

PyTree = Any


@runtime_checkable
class Dynamics(Protocol):
    """A discrete update ``x_{n+1} = step(x_n, h)`` and its modified field: the flow of
    ``modified_field(., h, p) = f_0 + h f_1 + .. + h^p f_p`` for time ``n h`` tracks the
    iterates with global error ``O(h^max(p+1, method_order))`` (see the module docstring)."""

    method_order: int

    def step(self, state: PyTree, h: Any) -> PyTree:
        """One real iterate of the update with step size ``h``."""
        ...

    def modified_field(self, params: PyTree, h: Any, order: int) -> PyTree:
        """The truncated modified field ``f_0 + h f_1 + .. + h^order f_order`` at
        ``params`` (``order`` is a static Python int)."""
        ...


def method_order_of(dynamics: Any) -> int:
    """``dynamics.method_order`` (1 when it is not given)."""
    q = getattr(dynamics, "method_order", 1)
    if isinstance(q, bool) or not isinstance(q, int) or q < 1:
        raise ValueError(f"method_order must be a positive integer, got {q!r}")
    return q


def expected_slopes(order: int, method_order: int = 1) -> tuple[int, int]:
    """``(global, local)`` error slopes of the flow truncated after ``h^order`` for an
    update of order ``method_order``: ``(max(p+1, q), max(p+2, q+1))``.

    Why: the modified field of an order-q method is ``f_0 + h^q f_q + ...``, so truncating
    after ``h^p`` with ``p < q`` leaves the error of the plain flow, ``O(h^q)`` globally.
    """
    return max(order + 1, method_order), max(order + 2, method_order + 1)

"""An optax optimiser as a one-step map in the step size ``h`` (with its state).

Step-size convention.  ``h`` is the optimiser's learning rate.  Two ways to say how the
update depends on it:

* a **factory** ``h -> GradientTransformation`` (``lambda h: optax.adam(h, b1=0.9)``):
  the update is ``factory(h).update(g, s, x)`` with ``h`` traced, exact for any
  optimiser (also where ``h`` enters the state, e.g. schedule-free);
* a **transformation** with ``learning_rate=lr`` (the rate it was built with, a number or
  an optax schedule): the update at step size ``h`` is ``(h / lr(count)) * update``.  This
  is exact when ``lr`` enters only as the final factor, as in every optax alias built as
  ``chain(..., scale_by_learning_rate(lr))`` (sgd with or without momentum, adam, adamw,
  rmsprop, adagrad, lion, ...): there the state never sees ``lr``.  Schedules are
  evaluated at ``count``.

Step counters.  Integer state leaves (optax's ``count``) are held fixed so that the map is
autonomous: at ``count`` when given, else at :data:`ASYMPTOTIC_COUNT` (``2**30``), where
Adam's bias corrections ``1 - b**count`` are exactly 1 in floating point: the regime of a
long run.  ``count=n`` gives the frozen-coefficient map of step ``n + 1``.

Gradients: ``g = grad loss(x)`` (``grad loss(x, batch)`` when ``batch`` is given).  A
``GradientTransformationExtraArgs`` also receives ``value=``, ``grad=`` and ``value_fn=``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

from kernels.tree_util import tree_add, tree_scale

from .errors import LearningRateError, NonSmoothUpdateError, NotAnOptimizerError

__all__ = ["ASYMPTOTIC_COUNT", "OptaxMap", "NON_SMOOTH_PRIMITIVES"]

PyTree = Any

#: step counter used when ``count`` is not given: every ``b**count`` underflows to 0
ASYMPTOTIC_COUNT = 2 ** 30

#: primitives whose derivative is zero almost everywhere (or undefined): a jvp through
#: them drops the dependence of the update on the gradient, so Taylor mode would be wrong
NON_SMOOTH_PRIMITIVES = frozenset({"sign", "floor", "ceil", "round", "stop_gradient"})


def _is_inexact(a: Any) -> bool:
    return jnp.issubdtype(jnp.result_type(a), jnp.inexact)


class OptaxMap:
    """The joint map ``(h, x, s) -> (x + u(h, x, s), S(h, x, s))`` of an optax optimiser
    on the float leaves ``s`` of its state (integer leaves frozen, see module docstring)."""

    def __init__(self, optimizer: Any, loss: Callable, *, batch: Any = None,
                 learning_rate: Any = None, count: int | None = None):
        if isinstance(optimizer, optax.GradientTransformation):
            self.factory = None
            self.transform = optimizer
            if learning_rate is None:
                raise LearningRateError(
                    "a ready-made optax transformation hides its learning rate: pass "
                    "learning_rate= (the rate it was built with, e.g. learning_rate=1e-3 "
                    "for optax.adam(1e-3)), or pass a factory: lambda h: optax.adam(h)")
            if callable(learning_rate):
                if count is None:
                    raise LearningRateError("a learning-rate schedule needs count= (the "
                                            "step at which to evaluate it)")
                lr0 = learning_rate(count)
            else:
                lr0 = learning_rate
            lr0 = float(lr0)
            if not jnp.isfinite(lr0) or lr0 == 0.0:
                raise LearningRateError(f"learning_rate must be finite and non-zero, got "
                                        f"{lr0}: the update is scaled by h / learning_rate")
            self.lr0 = lr0
        elif callable(optimizer) and not isinstance(optimizer, type):
            self.factory = optimizer
            try:
                probe = optimizer(1.0)
            except Exception as e:  # noqa: BLE001 - re-raised with the convention
                raise NotAnOptimizerError(
                    f"{optimizer!r} is not an optax GradientTransformation, and calling it "
                    f"as a factory h -> GradientTransformation failed ({e})") from e
            if not isinstance(probe, optax.GradientTransformation):
                raise NotAnOptimizerError(
                    f"the factory returned {type(probe).__name__}, not an optax "
                    f"GradientTransformation; pass lambda h: optax.adam(h) or optax.adam(lr) "
                    f"with learning_rate=lr")
            self.transform = probe
            self.lr0 = None
        else:
            raise NotAnOptimizerError(
                f"expected an optax GradientTransformation (e.g. optax.adam(1e-3) with "
                f"learning_rate=1e-3) or a factory lambda h: optax.adam(h), got "
                f"{type(optimizer).__name__}")
        self.loss = loss
        self.batch = batch
        self.count = count
        self.extra = isinstance(self.transform, optax.GradientTransformationExtraArgs)

    # ------------------------------------------------------------------ pieces
    def value(self, x: PyTree) -> jax.Array:
        return self.loss(x) if self.batch is None else self.loss(x, self.batch)

    def grad(self, x: PyTree) -> PyTree:
        return jax.grad(self.value)(x)

    def init(self, params: PyTree) -> PyTree:
        """``optimizer.init(params)`` with the counters frozen (see module docstring)."""
        return self.freeze(self.transform.init(params))

    def freeze(self, state: PyTree) -> PyTree:
        c = ASYMPTOTIC_COUNT if self.count is None else int(self.count)
        return jax.tree.map(lambda a: a if _is_inexact(a) or jnp.result_type(a) == jnp.bool_
                            else jnp.full_like(a, c), state)

    def split(self, state: PyTree) -> tuple[list, Callable[[list], PyTree]]:
        """``(float leaves, merge)`` with ``merge(floats)`` the full state again."""
        leaves, treedef = jax.tree.flatten(state)
        mask = [_is_inexact(a) for a in leaves]
        frozen = [a for a, m in zip(leaves, mask, strict=True) if not m]

        def merge(floats: list) -> PyTree:
            fi, ii = iter(floats), iter(frozen)
            return jax.tree.unflatten(treedef, [next(fi) if m else next(ii) for m in mask])

        return [a for a, m in zip(leaves, mask, strict=True) if m], merge

    def update(self, h: jax.Array, x: PyTree, state: PyTree) -> tuple[PyTree, PyTree]:
        """``(u(h, x, s), new state)``: the parameter increment at step size ``h``."""
        g = self.grad(x)
        if self.factory is not None:
            opt = self.factory(h)
        else:
            opt = self.transform
        kw = {}
        if self.extra:
            kw = {"value": self.value(x), "grad": g, "value_fn": self.value}
        u, s1 = opt.update(g, state, x, **kw)
        if self.factory is None:
            u = tree_scale(h / self.lr0, u)
        return u, self.freeze(s1)

    def step(self, h: jax.Array, x: PyTree, state: PyTree) -> tuple[PyTree, PyTree]:
        """One real iterate ``(x', s')`` (counters held, see module docstring)."""
        u, s1 = self.update(h, x, state)
        return tree_add(x, u), s1

    def joint(self, merge: Callable) -> Callable:
        """``(h, x, floats) -> (x', floats')``: the map :mod:`kernels.slaved` works on."""

        def J(h, x, sf):
            x1, s1 = self.step(h, x, merge(sf))
            return x1, self.split(s1)[0]

        return J

    # ------------------------------------------------------------------ smoothness
    def check_smooth(self, x: PyTree, state: PyTree) -> None:
        """Refuse updates that pass the gradient through a zero-derivative primitive
        (``sign`` in Lion/signSGD, rounding, ``stop_gradient``): their jvp in ``x`` and
        ``h`` is zero while their value moves with the gradient, so a Taylor expansion
        describes nothing (see :data:`NON_SMOOTH_PRIMITIVES`)."""
        sf, merge = self.split(state)
        J = self.joint(merge)
        h = jnp.asarray(self.lr0 or 1e-3, dtype=jnp.result_type(float))
        closed = jax.make_jaxpr(J)(h, x, sf)
        found = _dependent_non_smooth(closed.jaxpr, [True] * len(closed.jaxpr.invars))
        if found:
            names = ", ".join(sorted(found))
            raise NonSmoothUpdateError(
                f"the update passes the gradient through {names}, whose derivative is zero "
                f"almost everywhere (e.g. Lion and signSGD use sign): the iterates follow "
                f"no smooth modified flow in h, and a Taylor expansion would silently drop "
                f"the gradient's influence.  Use a smooth surrogate (e.g. replace sign(m) by "
                f"tanh(m / tau) in a custom transformation) or a smooth optimiser "
                f"(optax.adam / optax.rmsprop with eps > 0)")


def _sub_jaxprs(params: dict) -> list:
    out = []
    for v in params.values():
        for item in (v if isinstance(v, (tuple, list)) else (v,)):
            j = getattr(item, "jaxpr", item)
            if hasattr(j, "eqns") and hasattr(j, "invars"):
                out.append(j)
    return out


def _dependent_non_smooth(jaxpr: Any, dep_in: list[bool]) -> set[str]:
    """Names of non-smooth primitives in ``jaxpr`` whose operands depend on the inputs
    flagged in ``dep_in`` (forward dependence; sub-jaxprs positionally, else conservatively)."""
    dep = {v for v, d in zip(jaxpr.invars, dep_in, strict=True) if d}
    found: set[str] = set()

    def is_dep(v):
        return not type(v).__name__ == "Literal" and v in dep

    for eqn in jaxpr.eqns:
        flags = [is_dep(v) for v in eqn.invars]
        if not any(flags):
            continue
        name = eqn.primitive.name
        if name in NON_SMOOTH_PRIMITIVES:
            found.add(name)
        for sub in _sub_jaxprs(eqn.params):
            n = len(sub.invars)
            sub_flags = flags[-n:] if n <= len(flags) and n == len(flags) else [True] * n
            found |= _dependent_non_smooth(sub, sub_flags)
        dep.update(eqn.outvars)
    return found

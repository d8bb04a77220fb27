r"""``numeric_drift_correction``: correct any (elementwise) optax optimiser to its own
leading-order flow, from its numeric modified field.

Maths.  On its slaved manifold (:mod:`bea.numeric.equation`) an optimiser fed the gradient
field ``g = grad L`` follows the modified field ``f~[g] = f_0 + h f_1 + h^2 f_2 + ..``.  For
the optimisers here the leading term is an elementwise function of the gradient,

    f_0 = -phi(g)     (sgd: g;  momentum: g/(1-beta);  Adam: g/(|g|+eps);
                       RMSProp: g/sqrt(g^2+eps)),

with ``D = d f_0/d g = -phi'(g)`` a diagonal.  Feed the optimiser instead the *corrected
gradient*

    G_h(x) = g(x) + h c_1(x) + h^2 c_2(x) + .. + h^p c_p(x).

Adding ``h^k c_k`` changes the modified field first at order ``h^k`` (the step is ``h``
times a function of the gradient), and there only through ``f_0``: ``f~_k[G] =
f~_k[g + sum_{j<k} h^j c_j] + D c_k``.  So, order by order,

    c_k = -D^(-1) r_k,     r_k = f~_k of the optimiser fed g + h c_1 + .. + h^(k-1) c_(k-1),

makes ``f~[G_h] = f_0 + O(h^(p+1))``: the iterates then follow the flow ``x' = f_0(x)``
with global error ``O(h^(p+1))`` instead of ``O(h)``.  For sgd, ``D = -1`` and ``G_h`` is
the modifying integrator of GD (:func:`bea.optax.drift_correction`): order 1 gives
``g - (h/2) H g``.  Each ``r_k`` comes from :func:`bea.numeric_modified_equation` (Taylor
mode in ``h``) applied to ``optax.chain(correction of order k-1, optimizer)``, so
``c_k`` is a pure JAX function of the parameters; ``D`` is one ``jvp`` of ``f_0`` of the
optimiser fed a constant gradient.  Nothing ``d x d`` is formed.

Conditions.  ``D`` must be diagonal (an elementwise optimiser) and invertible:
``phi'(g) = 0`` is refused (:class:`CorrectionNotInvertibleError`; Adam and RMSProp with
``eps = 0``: ``f_0 = -sign(g)`` does not see the size of the gradient, so no gradient
correction can change the field).  Where ``phi'`` is small (Adam with ``eps << |g|``,
``phi' = eps/(|g|+eps)^2``) the series needs ``h |c_k| << |g|``, i.e. ``h`` well below
``eps/|g|``: the correction is asymptotic in ``h`` at fixed ``eps``.  The optimiser's
state must be affine in itself at ``h = 0`` (EMAs, momentum traces), as for every optax
optimiser named above.  Momentum and moment estimates should start on the slaved manifold
(:meth:`NumericCorrection.corrected_equation` gives it); optax's zero initial state adds
an ``O(h)`` offset that decays like ``b^n``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

import kernels
from kernels.modified_flow import modified_field_functions
from kernels.slaved import slaved_manifold, state_diagonal

from ..numeric import NumericBEAError, numeric_modified_equation
from ..numeric.maps import OptaxMap
from .transform import (
    PyTree,
    ScalarOrSchedule,
    TransformInfo,
    check_scalar,
    make_transform,
    schedule_value,
)

__all__ = ["NumericCorrection", "numeric_correction", "numeric_drift_correction",
           "CorrectionNotElementwiseError", "CorrectionNotInvertibleError"]


class CorrectionNotElementwiseError(NumericBEAError):
    """``d f_0 / d g`` is not diagonal (the optimiser couples gradient entries), or its
    state map is not affine: the order-by-order solve is elementwise."""


class CorrectionNotInvertibleError(NumericBEAError):
    """``d f_0 / d g`` vanishes (or is not finite) somewhere: the leading field does not
    depend on the gradient's size there, so no gradient correction can change it."""


def _added(h: Any, terms: list[Callable]) -> optax.GradientTransformation:
    """Stateless transform adding ``sum_k h^k c_k(params)`` to the incoming gradient."""

    def init(params):
        return optax.EmptyState()

    def update(updates, state, params=None):
        out = updates
        for k, c in enumerate(terms, start=1):
            out = jax.tree.map(lambda u, v, k=k: u + h ** k * v, out, c(params))
        return out, state

    return optax.GradientTransformation(init, update)


def _lead_derivative(optimizer: Callable, params: PyTree) -> Callable[[PyTree], PyTree]:
    """``(x, g) -> f_0`` of ``optimizer`` fed the constant gradient ``g`` at ``x``, and the
    check that its state map is affine (closed-form slaved state, differentiable in g)."""

    def f0(x, g):
        omap = OptaxMap(optimizer, lambda y: kernels.tree_vdot(g, y))
        sf, merge = omap.split(omap.init(x))
        J = omap.joint(merge)
        if not sf:
            step = lambda h, y: J(h, y, [])[0]  # noqa: E731
        else:
            step = slaved_manifold(J, 0, sf, affine=True)[1]
        return modified_field_functions(step, 0)[0](x)

    # the affine check, once at the given point with its gradient-like probe
    omap = OptaxMap(optimizer, lambda y: kernels.tree_vdot(params, y))
    sf, merge = omap.split(omap.init(params))
    if sf:
        J = omap.joint(merge)
        zero = jnp.zeros((), dtype=jnp.result_type(float))
        S = lambda s_: J(zero, params, s_)[1]  # noqa: E731
        zeros = [jnp.zeros_like(a) for a in sf]
        base, D = S(zeros), state_diagonal(S, zeros)
        v = [1.0 + 2.0 * jax.random.uniform(k, jnp.shape(a), jnp.result_type(a))
             for k, a in zip(jax.random.split(jax.random.PRNGKey(3), len(sf)), sf,
                             strict=True)]
        lin = jax.tree.map(lambda b, d, u: b + d * u, base, D, v)
        err = float(kernels.tree_norm(kernels.tree_sub(S(v), lin)))
        if not err <= 1e-12 * (1.0 + float(kernels.tree_norm(lin))):
            raise CorrectionNotElementwiseError(
                f"the optimiser's state map is not affine in the state at h = 0 (residual "
                f"{err:.3g}); numeric_correction supports EMA/trace states (sgd, momentum, "
                f"nesterov, adam, rmsprop)")
    return f0


class NumericCorrection:
    r"""The corrected gradient ``G_h = g + h c_1 + .. + h^p c_p`` of an optax optimiser (see
    the module docstring): ``terms[k-1]`` is ``c_k`` as a pure JAX function of the
    parameters, ``lead_derivative(x)`` the diagonal ``D = d f_0/d g`` at ``x``.

    ``gradient(x, h)``: ``G_h(x)``; ``transform(learning_rate)``: the optax transformation
    adding ``G_h - g`` to the incoming gradient (chain it before the optimiser);
    ``corrected(h)``: the optimiser fed ``G_h`` (``chain(add G_h - g, optimizer(h))``), a
    factory that
    :func:`bea.numeric_modified_equation` accepts; ``corrected_equation(params, order)``:
    its numeric modified equation, whose ``f_1..f_p`` vanish (and which gives the slaved
    initial state, ``initial_state``).
    """

    def __init__(self, optimizer: Callable, loss: Callable, params: PyTree, order: int,
                 batch: Any = None):
        self.optimizer = optimizer
        self.loss = loss
        self.batch = batch
        self.order = order
        value = loss if batch is None else (lambda x: loss(x, batch))
        omap = OptaxMap(optimizer, loss, batch=batch)
        omap.check_smooth(params, omap.init(params))   # Lion/sign: refused by name
        f0 = _lead_derivative(optimizer, params)

        def lead_derivative(x):
            g = jax.grad(value)(x)
            ones = jax.tree.map(jnp.ones_like, g)
            return jax.jvp(lambda g_: f0(x, g_), (g,), (ones,))[1]

        self.lead_derivative = jax.jit(lead_derivative)
        g0 = jax.grad(value)(params)
        D0 = self.lead_derivative(params)
        self._check_diagonal(f0, params, g0, D0)
        self.terms: list[Callable] = []
        for k in range(1, order + 1):
            eq = numeric_modified_equation(self.partial(k - 1), loss, params, k, batch=batch)
            r_k = eq.term(k)

            def c_k(x, r_k=r_k):
                return jax.tree.map(lambda r, d: -r / d, r_k(x), self.lead_derivative(x))

            self.terms.append(jax.jit(c_k))

    @staticmethod
    def _check_diagonal(f0: Callable, x: PyTree, g: PyTree, D: PyTree) -> None:
        leaves = jax.tree.leaves(D)
        scale = [jnp.abs(a) for a in jax.tree.leaves(f0(x, g))]
        small = [bool(jnp.any(~jnp.isfinite(d) | (jnp.abs(d) <= 1e-12 * (1.0 + s))))
                 for d, s in zip(leaves, scale, strict=True)]
        if any(small):
            raise CorrectionNotInvertibleError(
                "d f_0/d g vanishes (or is not finite) at this point: the optimiser's "
                "leading field does not see the size of the gradient there (Adam/RMSProp "
                "with eps = 0 give f_0 = -sign(g)), so no gradient correction changes it.  "
                "Use eps > 0 (the correction is asymptotic in h at fixed eps)")
        v = kernels.tree_random_normal(jax.random.PRNGKey(5), g)
        Jv = jax.jvp(lambda g_: f0(x, g_), (g,), (v,))[1]
        off = float(kernels.tree_norm(kernels.tree_sub(Jv, jax.tree.map(jnp.multiply, D, v))))
        if not off <= 1e-9 * (1.0 + float(kernels.tree_norm(Jv))):
            raise CorrectionNotElementwiseError(
                f"d f_0/d g is not diagonal (|J v - diag(J) v| = {off:.3g}): the optimiser "
                f"couples gradient entries, and the correction is solved elementwise")

    # ------------------------------------------------------------------ the pieces
    def partial(self, k: int) -> Callable:
        """Factory ``h -> chain(add h c_1 + .. + h^k c_k, optimizer(h))``."""
        terms = self.terms[:k]
        return lambda h: optax.chain(_added(h, terms), self.optimizer(h))

    def correction(self, x: PyTree, h: Any) -> PyTree:
        """``G_h(x) - g(x) = sum_k h^k c_k(x)``."""
        out = jax.tree.map(jnp.zeros_like, x)
        for k, c in enumerate(self.terms, start=1):
            out = jax.tree.map(lambda a, b, k=k: a + h ** k * b, out, c(x))
        return out

    def gradient(self, x: PyTree, h: Any) -> PyTree:
        """The corrected gradient ``G_h(x)``."""
        value = self.loss if self.batch is None else (lambda y: self.loss(y, self.batch))
        return kernels.tree_add(jax.grad(value)(x), self.correction(x, h))

    def transform(self, learning_rate: ScalarOrSchedule, guard: bool = True
                  ) -> optax.GradientTransformationExtraArgs:
        """The :mod:`bea.optax` transform adding ``sum_k h^k c_k(params)`` (``h`` =
        ``learning_rate``, a number or schedule) to the incoming gradient; not finite ->
        not applied (``state.skipped``) unless ``guard=False``."""
        who = f"numeric_drift_correction(order={self.order})"
        check_scalar(learning_rate, f"{who}: learning_rate", positive=True)

        def correction(updates, params, count, extra):
            return self.correction(params, schedule_value(learning_rate, count))

        return make_transform(who, correction, TransformInfo(who, None, learning_rate),
                              guard=guard)

    def corrected(self, h: Any) -> optax.GradientTransformation:
        """The corrected optimiser: ``optax.chain(add sum_k h^k c_k, optimizer(h))``, the
        same update as ``chain(transform(h), optimizer(h))`` without the transform's
        counters (whose norm is not smooth at ``h = 0``), for the numeric engine."""
        return self.partial(self.order)(h)

    def corrected_equation(self, params: PyTree, order: int | None = None):
        """:func:`bea.numeric_modified_equation` of :meth:`corrected` at ``params``."""
        return numeric_modified_equation(self.corrected, self.loss, params,
                                         self.order if order is None else order,
                                         batch=self.batch)


def numeric_correction(optimizer: Callable, loss: Callable, params: PyTree, order: int = 1,
                       *, batch: Any = None) -> NumericCorrection:
    """Corrected gradient ``G_h = g + sum_{k=1..order} h^k c_k`` for the optax optimiser
    factory ``optimizer`` (``lambda h: optax.adam(h, eps=0.1)``) on ``loss(params)``
    (``loss(params, batch)``), built once outside ``jit`` at ``params`` (module
    docstring: ``c_k = -(d f_0/d g)^(-1) r_k``)."""
    if isinstance(order, bool) or not isinstance(order, int) or order < 1:
        raise ValueError(f"order must be an int >= 1 (the highest corrected power of h), "
                         f"got {order!r}")
    if not callable(optimizer) or isinstance(optimizer, optax.GradientTransformation):
        from ..numeric import NotAnOptimizerError

        raise NotAnOptimizerError(
            "numeric_correction needs a factory h -> GradientTransformation (e.g. "
            "lambda h: optax.adam(h, eps=0.1)): the correction is built from how the "
            "update depends on h")
    if not all(math.isfinite(float(jnp.max(jnp.abs(a)))) for a in jax.tree.leaves(params)):
        from ..numeric import NonFiniteInputError

        raise NonFiniteInputError("params contain NaN or inf: pass finite values")
    return NumericCorrection(optimizer, loss, params, order, batch=batch)


def numeric_drift_correction(optimizer: Callable, loss: Callable, params: PyTree,
                             order: int = 1, learning_rate: ScalarOrSchedule | None = None,
                             *, batch: Any = None, guard: bool = True
                             ) -> optax.GradientTransformationExtraArgs:
    """Correction that makes an optax optimiser follow its own leading-order flow
    ``x' = f_0(x)`` to ``O(h^(order+1))`` (global error), from its numeric modified field::

        h = 1e-2
        tx = optax.chain(numeric_drift_correction(lambda h: optax.adam(h, eps=0.5), loss,
                                                  params, 1, h),
                         optax.adam(h, eps=0.5))

    Adds ``sum_k h^k c_k(params)`` to the incoming gradient (module docstring); the
    optimiser after it must be ``optimizer(learning_rate)``.  The terms are built once, here
    (outside ``jit``); the update is jittable.  Errors: a factory is required
    (:class:`bea.numeric.NotAnOptimizerError`), non-smooth optimisers are refused by the
    engine, ``d f_0/d g`` singular or not diagonal -> :class:`CorrectionNotInvertibleError`
    / :class:`CorrectionNotElementwiseError`.  ``guard=False``: no finite check
    (:func:`bea.optax.transform.make_transform`).
    """
    if learning_rate is None:
        raise ValueError("numeric_drift_correction: pass learning_rate= (the step size h "
                         "of the optimiser it precedes)")
    return numeric_correction(optimizer, loss, params, order, batch=batch).transform(
        learning_rate, guard=guard)

"""``numeric_modified_equation``: the modified field of any optax optimiser at a point.

Maths (HLW, *Geometric Numerical Integration*, ch. IX and XV.2; ``../shared/dynamics.md``
section 5).  An optax optimiser is a joint map on parameters ``x`` and state ``s``,

    x' = x + u(h, x, s),     s' = S(h, x, s),     u(0, x, s) = 0,

with ``h`` the learning rate (:mod:`bea.numeric.maps` for the convention).

* ``mode="slaved"`` (default).  At ``h = 0`` the state map ``s -> S(0, x, s)`` contracts
  (rate ``beta`` for momentum, ``b1, b2`` for Adam, ``decay`` for RMSProp) to a fixed point
  ``sigma_0(x)`` (momentum: ``g/(1-beta)``; Adam: ``mu = g``, ``nu = g^2``).  The joint map
  then has an attracting invariant manifold ``s = S_h(x) = sum_k h^k sigma_k(x)``, defined
  by ``S_h(x + u(h, x, S_h(x))) = S(h, x, S_h(x))`` and solved order by order
  (:func:`kernels.slaved.slaved_manifold`).  On it the parameters follow the *underlying
  one-step map* ``Psi_h(x) = x + u(h, x, S_h(x))``, and the result is the modified field
  ``f~ = f_0 + h f_1 + ... + h^p f_p`` of ``Psi_h``: its time-h flow equals ``Psi_h`` to
  ``O(h^(p+2))`` (:func:`kernels.modified_flow.modified_field_functions`).  Iterates started
  on (or attracted to) the manifold follow the flow of ``f~`` with global error
  ``O(h^(p+1))``.  Needs a contraction: a state with rate ``>= 1`` (an accumulator such as
  Adagrad's, or betas tied to ``h``) raises :class:`StateNotContractingError`.
* ``mode="full"``.  The modified field of the joint map ``z = (x, s) -> (x', s')`` itself,
  a field on parameters *and* state, for iterates that start anywhere.  Backward error
  analysis needs ``J(0, z) = z``: the state must move by ``O(h)`` per step, i.e. its decay
  rates are tied to the step (``lambda h: optax.adam(h, b1=1 - c1*h, b2=1 - c2*h)``, the
  scaling of continuous-time models of Adam).  With fixed betas the state jumps by
  ``O(1)`` at ``h = 0`` and :class:`StateJumpError` says so.

All derivatives in ``h`` are nested ``jax.jvp`` (Taylor mode), never finite differences;
memory is ``O(params x order)``, nothing ``d x d`` is formed.  The term functions are pure
JAX and can be jitted, vmapped and differentiated again.

Smoothness: the expansion needs an update that is smooth where it is evaluated.  ``sign``
(Lion, signSGD), rounding and ``stop_gradient`` are refused up front
(:class:`NonSmoothUpdateError`); ``sqrt(nu)`` at ``nu = 0`` (Adam/RMSProp at a point where
a gradient component vanishes, with ``eps_root = 0``) shows up as non-finite terms and is
refused too.  Adam's ``eps`` regime: ``eps`` is a fixed constant of the map, the expansion
is in ``h`` at fixed ``eps``, valid for any ``eps >= 0`` where every ``g_i != 0``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from kernels.modified_flow import modified_field_functions
from kernels.slaved import slaved_manifold, state_diagonal
from kernels.tree_util import tree_norm, tree_sub

from .. import limits as L
from .errors import (
    NonFiniteInputError,
    NonSmoothUpdateError,
    StateJumpError,
    StateNotContractingError,
    StateNotElementwiseError,
)
from .maps import OptaxMap

__all__ = ["NumericModifiedEquation", "numeric_modified_equation", "MODES"]

PyTree = Any
MODES = ("slaved", "full")


def _check_order(order: Any) -> int:
    if isinstance(order, bool) or not isinstance(order, int):
        raise TypeError(f"order must be an int, got {type(order).__name__}")
    if order < 0:
        raise ValueError(f"order must be >= 0 (f_0 is the order-0 field), got {order}")
    limit = L.LIMITS.numeric_order
    if order > limit:
        raise L.LimitError(
            f"numeric order {order} needs about 2^{order + 1} = {2 ** (order + 1):,} nested "
            f"jvps per term (and more for the slaved state), over the limit of order "
            f"{limit}; {L._hint('numeric_order')}")
    return order


def _check_finite(tree: PyTree, what: str) -> None:
    for a in jax.tree.leaves(tree):
        if jnp.issubdtype(jnp.result_type(a), jnp.inexact) and not bool(
                jnp.all(jnp.isfinite(a))):
            raise NonFiniteInputError(f"{what} contain NaN or inf: pass finite values "
                                      f"(check the initialisation or an earlier diverged step)")


def _poly(coeffs: list, h: Any) -> PyTree:
    out = coeffs[0]
    for k, c in enumerate(coeffs[1:], start=1):
        out = jax.tree.map(lambda a, b, k=k: a + h ** k * b, out, c)
    return out


class NumericModifiedEquation:
    """Modified field ``f~ = f_0 + h f_1 + .. + h^p f_p`` of an optax optimiser (numeric).

    ``terms[k]``: ``f_k`` at the point (a pytree like the parameters; in ``mode="full"``
    the pair ``(params, float state leaves)``); ``term(k)``: ``f_k`` as a function;
    ``field(h)``: ``x -> f~(x)``; ``eq(x, h)``: the same, called directly.  It is a
    :class:`bea.Dynamics` (``step``, ``modified_field``, ``initial_state``, ``params_of``),
    so ``bea.verify(eq, params0=...)`` compares real iterates with the truncated flow::

        eq = bea.numeric_modified_equation(lambda h: optax.adam(h), loss, params, 2)
        eq.terms[1]        # f_1 at params
    """

    method_order = 1

    def __init__(self, omap: OptaxMap, fns: list[Callable], order: int, mode: str,
                 point: PyTree, sigmas: list[Callable] | None, merge: Callable | None,
                 name: str):
        self._map = omap
        self._fns = fns
        self.order = order
        self.mode = mode
        self.point = point
        self._sigmas = sigmas
        self._merge = merge
        self.name = name
        vals = jax.jit(lambda x: [f(x) for f in fns])(point)
        for k, v in enumerate(vals):
            if not all(bool(jnp.all(jnp.isfinite(a))) for a in jax.tree.leaves(v)):
                raise NonSmoothUpdateError(
                    f"f_{k} is not finite at this point: the update is not smooth here "
                    f"(typically sqrt(nu) at nu = 0, a gradient component that vanishes, in "
                    f"Adam/RMSProp with eps_root=0).  Evaluate at a point where every "
                    f"gradient component is non-zero, or build the optimiser with "
                    f"eps_root > 0")
        #: ``f_0..f_p`` at the point
        self.terms: list[PyTree] = vals

    # ------------------------------------------------------------------ fields
    def term(self, k: int) -> Callable[[PyTree], PyTree]:
        """``f_k`` as a pure JAX function of the parameters (of ``(params, state)`` in
        ``mode="full"``)."""
        if not 0 <= k <= self.order:
            raise IndexError(f"order {k} not computed (0..{self.order})")
        return self._fns[k]

    def modified_field(self, params: PyTree, h: Any, order: int | None = None) -> PyTree:
        """``f_0(x) + h f_1(x) + .. + h^order f_order(x)`` (``order`` defaults to all)."""
        order = self.order if order is None else order
        if not 0 <= order <= self.order:
            raise ValueError(f"order {order} not computed (0..{self.order}): build the "
                             f"equation with order={order}")
        return _poly([self._fns[k](params) for k in range(order + 1)], h)

    def field(self, h: Any, order: int | None = None) -> Callable[[PyTree], PyTree]:
        """``x -> f~(x)`` summed for step size ``h`` (jitted)."""
        return jax.jit(lambda x: self.modified_field(x, h, order))

    def __call__(self, x: PyTree, h: Any) -> PyTree:
        return self.modified_field(x, h)

    # ------------------------------------------------------------------ Dynamics
    def state_on_manifold(self, params: PyTree, h: Any) -> PyTree:
        """The full optax state on the slaved manifold, ``S_h(params)`` truncated after
        ``h^order`` (``mode="slaved"``)."""
        if self.mode != "slaved":
            raise ValueError('state_on_manifold needs mode="slaved"')
        if self._sigmas is None:
            return self._merge([])
        return self._merge(_poly([s(params) for s in self._sigmas], h))

    def initial_state(self, params: PyTree, h: Any) -> PyTree:
        """Slaved: ``(params, S_h(params))``; full: the joint point itself."""
        if self.mode == "full":
            return params
        return params, self.state_on_manifold(params, h)

    def step(self, state: PyTree, h: Any) -> PyTree:
        """One real optimiser iterate (counters held at ``count``, see
        :mod:`bea.numeric.maps`)."""
        if self.mode == "full":
            x, sf = state
            return self._map.joint(self._merge)(h, x, sf)
        x, s = state
        return self._map.step(h, x, s)

    def params_of(self, state: PyTree) -> PyTree:
        """The parameters of a :meth:`step` state (full mode: the joint point)."""
        return state if self.mode == "full" else state[0]

    # ------------------------------------------------------------------ printing
    def __repr__(self) -> str:
        norms = ", ".join(f"|f_{k}|={float(tree_norm(t)):.3g}" for k, t in enumerate(self.terms))
        n = sum(int(jnp.size(a)) for a in jax.tree.leaves(self.point))
        return (f"<NumericModifiedEquation {self.name} mode={self.mode!r} order={self.order} "
                f"size={n}: {norms}>")


def _factory_name(optimizer: Any) -> str:
    name = getattr(optimizer, "__name__", None)
    return name if name and name != "<lambda>" else "optax optimiser"


def numeric_modified_equation(optimizer: Any, loss: Callable, params: PyTree, order: int, *,
                              state: PyTree = None, batch: Any = None, mode: str = "slaved",
                              count: int | None = None, learning_rate: Any = None
                              ) -> NumericModifiedEquation:
    """The modified field ``f_0 + h f_1 + .. + h^order f_order`` of an optax optimiser at
    ``params``, by Taylor mode in the learning rate ``h`` (see the module docstring).

    ``optimizer``: a factory ``h -> GradientTransformation`` (``lambda h: optax.adam(h)``)
    or a transformation with ``learning_rate=`` the rate it was built with (number or
    schedule, evaluated at ``count``).  ``loss(params)`` (``loss(params, batch)`` with
    ``batch``).  ``state``: an optax state (default ``optimizer.init(params)``), the Newton
    guess in ``mode="slaved"``, the point's state in ``mode="full"``.  ``count``: step
    counters held at this value (default: large, bias corrections off).  Example::

        eq = numeric_modified_equation(lambda h: optax.sgd(h, momentum=0.9), loss, p, 2)
        eq.terms[0]   # -grad L(p) / (1 - 0.9)
    """
    order = _check_order(order)
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    omap = OptaxMap(optimizer, loss, batch=batch, learning_rate=learning_rate, count=count)
    _check_finite(params, "params")
    s0 = omap.init(params) if state is None else omap.freeze(state)
    _check_finite(s0, "the optimiser state")
    omap.check_smooth(params, s0)
    sf0, merge = omap.split(s0)
    J = omap.joint(merge)
    zero = jnp.zeros((), dtype=jnp.result_type(float))
    name = _factory_name(optimizer)

    x1 = J(zero, params, sf0)[0]
    if float(tree_norm(tree_sub(x1, params))) != 0.0:
        raise ValueError("the update does not vanish at h = 0: h must be the learning rate "
                         "(pass lambda h: optax.adam(h), not a fixed rate)")

    if mode == "full":
        def joint_step(h, z):
            return J(h, z[0], z[1])

        jump = float(tree_norm(tree_sub(joint_step(zero, (params, sf0))[1], sf0)))
        if jump > 1e-12 * (1.0 + float(tree_norm(sf0))):
            raise StateJumpError(
                f"the state moves by {jump:.3g} at h = 0: with fixed decay rates the state "
                f"is a fast variable and the joint map has no modified field.  Use "
                f'mode="slaved" (the state on its invariant manifold), or tie the rates to '
                f"h, e.g. lambda h: optax.adam(h, b1=1 - 10*h, b2=1 - h)")
        fns = modified_field_functions(joint_step, order)
        return NumericModifiedEquation(omap, fns, order, mode, (params, sf0), None, merge, name)

    if not sf0:  # stateless (plain sgd): the map is already one-step
        fns = modified_field_functions(lambda h, x: J(h, x, [])[0], order)
        return NumericModifiedEquation(omap, fns, order, mode, params, None, merge, name)

    _check_contraction(J, params, sf0)
    sigmas, phi = slaved_manifold(J, order, sf0, affine=_is_affine(J, params, sf0))
    _check_contraction(J, params, jax.jit(sigmas[0])(params))
    fns = modified_field_functions(phi, order)
    return NumericModifiedEquation(omap, fns, order, mode, params, sigmas, merge, name)


def _check_contraction(J: Callable, x: PyTree, sf: list) -> None:
    """``d_s S(0, x, s)`` must be diagonal (elementwise state) with entries of modulus < 1."""
    zero = jnp.zeros((), dtype=jnp.result_type(float))
    S = lambda s_: J(zero, x, s_)[1]  # noqa: E731
    D = state_diagonal(S, sf)
    keys = jax.random.split(jax.random.PRNGKey(0), len(sf))
    v = [jax.random.normal(k, jnp.shape(a), jnp.result_type(a)) for k, a in zip(keys, sf,
                                                                               strict=True)]
    Jv = jax.jvp(S, (sf,), (v,))[1]
    Dv = jax.tree.map(jnp.multiply, D, v)
    off = float(tree_norm(tree_sub(Jv, Dv)))
    if off > 1e-10 * (1.0 + float(tree_norm(Jv))):
        raise StateNotElementwiseError(
            f"the state map couples state entries (|J v - diag(J) v| = {off:.3g}); the slaved "
            f'manifold is solved elementwise.  Use mode="full" if the state moves by O(h)')
    rate = max((float(jnp.max(jnp.abs(d))) for d in D if jnp.size(d)), default=0.0)
    if not math.isfinite(rate) or rate >= 1.0 - 1e-9:
        raise StateNotContractingError(
            f"the optimiser's state does not contract at h = 0 (rate {rate:.6g} >= 1, e.g. an "
            f"accumulator such as Adagrad's, or decay rates tied to h): it has no invariant "
            f'manifold to slave it to.  Use mode="full" (the field on params and state) '
            f"when the state moves by O(h) per step")




def _is_affine(J: Callable, x: PyTree, sf: list) -> bool:
    """Is ``s -> S(0, x, s)`` affine (EMA and trace states are)?  Checked on two random
    states; then ``sigma_0`` has a closed form (no Newton loop in the traced graph)."""
    zero = jnp.zeros((), dtype=jnp.result_type(float))
    S = lambda s_: J(zero, x, s_)[1]  # noqa: E731
    zeros = [jnp.zeros_like(a) for a in sf]
    base = S(zeros)
    D = state_diagonal(S, zeros)
    for seed in (1, 2):
        keys = jax.random.split(jax.random.PRNGKey(seed), len(sf))
        v = [3.0 * jax.random.normal(k, jnp.shape(a), jnp.result_type(a))
             for k, a in zip(keys, sf, strict=True)]
        lin = jax.tree.map(lambda b, d, u: b + d * u, base, D, v)
        err = float(tree_norm(tree_sub(S(v), lin)))
        if not err <= 1e-12 * (1.0 + float(tree_norm(lin))):
            return False
    return True

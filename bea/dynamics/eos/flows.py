r"""Limiting flows of normalised GD and GD on sqrt(L) on the zero-loss manifold.

Arora, Li, Panigrahi (ICML 2022): near a manifold ``Gamma`` of minimisers with
``L = 0`` on ``Gamma``, both optimisers 2-cycle across ``Gamma`` along the top Hessian
eigenvector ``u`` and drift along it.  In the time ``t = eta^2 * steps``::

    normalised GD      x <- x - eta g/|g|:             dX/dt = -(1/4) P_T grad log lambda_1(X)
    GD on sqrt(L)      x <- x - eta grad sqrt(L):      dX/dt = -(1/8) P_T grad lambda_1(X)

``P_T`` the orthogonal projection onto the tangent space of ``Gamma`` at ``X``.
*Derived here* (and checked numerically in ``tests/test_eos_flows.py`` against discrete
runs on toy manifolds with an error that shrinks with ``eta``): write ``x = X + s u``;
``grad L(x) = lambda_1 s u + (s^2/2) D^3L[u, u, .] + O(s^3)`` and
``D^3L[u, u, .] = grad lambda_1``.  Normalised GD moves ``eta`` along ``-sign(s) u``, so
``s`` 2-cycles with ``(|s_k| + |s_{k+1}|)/2 = eta/2``; its tangential step is
``-eta (|s|/2) P grad lambda_1 / lambda_1``, on average ``-(eta^2/4) P grad log lambda_1``.
GD on sqrt(L) moves ``eta sqrt(lambda_1/2)`` along ``-sign(s) u`` (mean ``|s| =
eta sqrt(lambda_1/2)/2``) and its tangential step ``-eta |s| P grad lambda_1 /
(4 sqrt(lambda_1/2))`` averages ``-(eta^2/8) P grad lambda_1``.

**Matrix-free projection.**  For a regression loss ``L = (1/2)|r|^2`` (any positive
multiple) ``Gamma = {r = 0}`` and ``T Gamma = null(J)``, ``J = Dr``.  Then
``P v = v - J^T w`` with ``(J J^T) w = J v``, solved by conjugate gradients (lineax) on
the operator ``w -> J (J^T w)`` (one VJP and one JVP per iteration; no Jacobian is
formed).  ``lambda_1`` and ``u`` come from Lanczos on HVPs, ``grad lambda_1`` from
:func:`.sharpness.sharpness_gradient`; the ODE is integrated with diffrax.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx

from .sharpness import EosInputError, check_loss, sharpness, sharpness_gradient

__all__ = ["FLOW_COEFFICIENTS", "limiting_flow", "limiting_flow_field", "tangent_projection"]

PyTree = Any

# dX/dt = -c P grad F(lambda_1):  F = log for normalised GD, F = id for GD on sqrt(L)
FLOW_COEFFICIENTS = {"normalized_gd": 0.25, "sqrt_loss": 0.125}


def tangent_projection(residuals: Callable[[PyTree], jax.Array], x: PyTree, *,
                       rtol: float = 1e-10, atol: float = 1e-12,
                       max_steps: int = 1000) -> Callable[[PyTree], PyTree]:
    """``v -> P v``: orthogonal projection onto ``null(Dr(x))`` by CG on ``J J^T``."""
    diff, static = eqx.partition(x, eqx.is_inexact_array)
    r0, jvp = jax.linearize(lambda d: residuals(eqx.combine(d, static)), diff)
    vjp = jax.linear_transpose(jvp, diff)
    op = lx.FunctionLinearOperator(lambda w: jvp(vjp(w)[0]),
                                   jax.eval_shape(lambda: r0),
                                   tags=lx.positive_semidefinite_tag)
    solver = lx.CG(rtol=rtol, atol=atol, max_steps=max_steps)

    def project(v: PyTree) -> PyTree:
        w = lx.linear_solve(op, jvp(v), solver, throw=False).value
        return jax.tree.map(lambda a, b: a - b, v, vjp(w)[0])

    return project


def limiting_flow_field(loss: Callable[[PyTree], jax.Array],
                        residuals: Callable[[PyTree], jax.Array],
                        kind: str = "normalized_gd", *,
                        num_steps: int = 20) -> Callable[[PyTree], PyTree]:
    """The vector field ``X -> -c P_T grad F(lambda_1)(X)`` of :func:`limiting_flow`."""
    if kind not in FLOW_COEFFICIENTS:
        raise EosInputError(f"kind must be one of {sorted(FLOW_COEFFICIENTS)}, got "
                            f"{kind!r}")
    c = FLOW_COEFFICIENTS[kind]

    def field(x: PyTree) -> PyTree:
        eig = sharpness(loss, x, 1, num_steps=num_steps)
        lam, g = sharpness_gradient(loss, x, eig=eig)
        if kind == "normalized_gd":
            g = jax.tree.map(lambda a: a / lam, g)
        pg = tangent_projection(residuals, x)(g)
        return jax.tree.map(lambda a: -c * a, pg)

    return field


def limiting_flow(loss: Callable[[PyTree], jax.Array],
                  residuals: Callable[[PyTree], jax.Array], x0: PyTree, t1: float,
                  kind: str = "normalized_gd", *, ts: Any = None, num_steps: int = 20,
                  rtol: float = 1e-8, atol: float = 1e-10,
                  max_steps: int = 100_000) -> diffrax.Solution:
    """Integrate the limiting flow from ``x0`` (a point on ``Gamma``) to time ``t1``
    (``= eta^2 * steps``) with diffrax (Tsit5, adaptive); ``ts`` the save times (default
    ``t1`` only).  ``loss(x)`` is the training loss (``L = 0`` on ``Gamma``),
    ``residuals(x)`` the array whose zero set is ``Gamma`` (for ``L = (1/2n)|r|^2``: ``r``).
    Bad input raises before integrating: :class:`.sharpness.NonScalarLossError` for a loss
    that is not scalar, :class:`.sharpness.EosInputError` for an unknown ``kind``, a
    ``t1 <= 0``, or residuals that are not an array of real numbers.
    """
    for name, v in (("loss", loss), ("residuals", residuals)):
        if not callable(v):
            raise TypeError(f"{name} must be callable")
    if not float(t1) > 0:
        raise EosInputError(f"t1 (= eta^2 x steps) must be > 0, got {t1!r}")
    check_loss(loss, x0, None, None)
    r = eqx.filter_eval_shape(residuals, x0)
    if not (hasattr(r, "dtype") and jnp.issubdtype(r.dtype, jnp.floating)):
        raise EosInputError(f"residuals(x) must return a float array (its zero set is the "
                            f"manifold), got {getattr(r, 'dtype', type(r).__name__)}")
    field = limiting_flow_field(loss, residuals, kind, num_steps=num_steps)
    ts = jnp.asarray([t1] if ts is None else ts, dtype=jnp.result_type(float))
    diff, static = eqx.partition(x0, eqx.is_inexact_array)
    term = diffrax.ODETerm(lambda t, y, args: field(eqx.combine(y, static)))
    return diffrax.diffeqsolve(
        term, diffrax.Tsit5(), 0.0, float(t1), float(t1) / 100, diff,
        saveat=diffrax.SaveAt(ts=ts),
        stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol),
        max_steps=max_steps)

r"""Sharpness at network scale: top-k Hessian eigenpairs, the Hessian trace, grad lambda_1.

The training loss on a fixed data subset ``D`` of ``n`` examples is the mean
``L(p) = (1/n) sum_i l(p, x_i)``.  With ``chunk_size = c`` dividing ``n``, the data are cut
into ``n / c`` chunks and every Hessian-vector product is accumulated over them::

    H v = sum_chunks (c / n) H_chunk v,        H_chunk v = D(grad L_chunk)(p)[v]

(forward-over-reverse, one chunk's activations in memory at a time: Cohen et al. 2021
use 5,000 examples in chunks of 1,000).  Without ``data`` the loss is ``loss(p)`` and
``grad L`` is linearised once.  No ``d x d`` object is built; memory is ``O(num_steps d)``
(the Lanczos basis).

* :func:`sharpness`: top-``k`` eigenpairs by Lanczos (:func:`kernels.krylov.lanczos_eigh`),
  warm-started from a previous result (``init=``: the sum of its eigenvectors starts the
  Krylov space, so a slowly moving top eigenspace is found again in a few steps).
* :func:`hessian_trace`: Hutchinson, ``tr H = E[z^T H z]``, Rademacher ``z``.
* :func:`sharpness_gradient`: ``grad lambda_1 = D^3L[u, u, .]`` for a simple top eigenpair
  ``(lambda_1, u)`` (Hellmann-Feynman: ``d lambda_1 = u^T dH u``), one reverse pass
  through the forward-over-forward quadratic form ``u^T H(p) u``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from kernels.hvp import hessian_quadratic
from kernels.krylov import lanczos_eigh

__all__ = ["ChunkingError", "DimensionError", "EosInputError", "NonScalarLossError",
           "Sharpness", "hessian_trace", "hvp_fn", "sharpness", "sharpness_gradient"]

PyTree = Any


class EosInputError(ValueError):
    """Bad input to the edge-of-stability lab."""


class NonScalarLossError(EosInputError):
    """The loss does not return a scalar."""


class ChunkingError(EosInputError):
    """The data subset cannot be cut into equal chunks of ``chunk_size``."""


class DimensionError(EosInputError):
    """``k`` (or the Krylov depth) larger than the number of parameters."""


class Sharpness(NamedTuple):
    """Top-k Hessian eigenpairs: ``values[0] = lambda_1`` (descending), ``vectors`` a pytree
    like the (array part of the) parameters with a leading axis ``k``, ``residuals`` the
    Lanczos bounds ``|H x - theta x|``, ``num_hvps`` the HVPs used."""

    values: jax.Array
    vectors: PyTree
    residuals: jax.Array
    num_hvps: int

    @property
    def top(self) -> jax.Array:
        return self.values[0]


def split_params(params: PyTree) -> tuple[PyTree, PyTree]:
    """``(arrays, static)``: the inexact-array part of ``params`` (what is differentiated)
    and the rest (``eqx.partition``)."""
    return eqx.partition(params, eqx.is_inexact_array)


def _cast(tree: PyTree, dtype: Any) -> PyTree:
    if dtype is None:
        return tree
    return jax.tree.map(lambda x: x.astype(dtype) if eqx.is_inexact_array(x) else x, tree)


def _num_examples(data: PyTree) -> int:
    sizes = {x.shape[0] if getattr(x, "ndim", 0) else None for x in jax.tree.leaves(data)}
    if len(sizes) != 1 or None in sizes:
        raise ChunkingError(f"data must be arrays with one common leading (example) axis; "
                            f"got leading sizes {sorted(map(str, sizes))}")
    return sizes.pop()


def check_chunks(data: PyTree, chunk_size: int | None) -> tuple[int, int]:
    """``(n, c)``: examples in ``data`` and the chunk size (all of them by default);
    :class:`ChunkingError` unless ``c`` divides ``n``."""
    n = _num_examples(data)
    c = n if chunk_size is None else int(chunk_size)
    if c < 1 or n % c:
        hint = max(q for q in range(1, max(min(n, c), 1) + 1) if n % q == 0)
        raise ChunkingError(f"the data subset has {n} examples, which is not a multiple of "
                            f"chunk_size={chunk_size}; choose a chunk size that divides {n} "
                            f"(e.g. {hint}) or a subset of a multiple of {chunk_size} "
                            f"examples")
    return n, c


def check_loss(loss: Callable, params: PyTree, data: PyTree | None, c: int | None) -> None:
    """:class:`NonScalarLossError` unless ``loss`` (on a chunk of ``c`` examples when
    ``data`` is given) returns a scalar; shape evaluation only."""
    if data is None:
        out = eqx.filter_eval_shape(loss, params)
    else:
        chunk = jax.tree.map(lambda x: x[:c], data)
        out = eqx.filter_eval_shape(loss, params, chunk)
    if not (hasattr(out, "shape") and out.shape == ()):
        shape = getattr(out, "shape", type(out).__name__)
        raise NonScalarLossError(f"the loss must return a scalar (the mean over the batch), "
                                 f"got shape {shape}; reduce it with jnp.mean")


def chunked(data: PyTree, n: int, c: int) -> PyTree:
    """``data`` reshaped to ``(n // c, c, ...)``: the chunks a scan walks over."""
    return jax.tree.map(lambda x: x.reshape(n // c, c, *x.shape[1:]), data)


def chunk_sum(fn: Callable, chunks: PyTree | None, scale: float) -> Callable:
    """``(*args) -> sum_chunks scale * fn(*args, chunk)`` by a scan (one chunk in memory:
    a full-batch mean from chunk means with ``scale = c / n``), or ``fn(*args, None)``
    without data."""
    if chunks is None:
        return lambda *args: fn(*args, None)

    def run(*args):
        def body(acc, chunk):
            out = fn(*args, chunk)
            return jax.tree.map(lambda a, o: a + scale * o, acc, out), None

        shape = jax.eval_shape(lambda: fn(*args, jax.tree.map(lambda x: x[0], chunks)))
        zero = jax.tree.map(lambda a: jnp.zeros(a.shape, a.dtype), shape)
        return jax.lax.scan(body, zero, chunks)[0]

    return run


def hvp_fn(loss: Callable, params: PyTree, *, data: PyTree | None = None,
           chunk_size: int | None = None) -> Callable[[PyTree], PyTree]:
    """``v -> H v`` on the array part of ``params`` (chunked over ``data`` if given)."""
    diff, static = split_params(params)
    if data is None:
        check_loss(loss, params, None, None)
        _, lin = jax.linearize(jax.grad(lambda d: loss(eqx.combine(d, static))), diff)
        return lin
    n, c = check_chunks(data, chunk_size)
    check_loss(loss, params, data, c)

    def hv(v, chunk):
        return jax.jvp(jax.grad(lambda d: loss(eqx.combine(d, static), chunk)), (diff,), (v,))[1]

    return chunk_sum(hv, chunked(data, n, c), c / n)


@eqx.filter_jit
def _sharpness_core(loss, params, data, v0, k, m, n, c):
    diff, _ = split_params(params)
    flat, unravel = ravel_pytree(diff)
    if data is None:
        mv = hvp_fn(loss, params)
    else:
        mv = hvp_fn(loss, params, data=data, chunk_size=c)
    res = lanczos_eigh(lambda x: ravel_pytree(mv(unravel(x)))[0], v0.astype(flat.dtype), m)
    vecs = jax.vmap(unravel)(res.vectors[:k])
    return res.values[:k], vecs, res.residuals[:k]


def sharpness(loss: Callable, params: PyTree, k: int = 1, *, data: PyTree | None = None,
              chunk_size: int | None = None, num_steps: int = 20,
              init: Sharpness | PyTree | None = None, key: jax.Array | None = None,
              dtype: Any = None) -> Sharpness:
    """Top-``k`` eigenpairs of the Hessian of the training loss, matrix-free.

    ``loss(params)`` or, with ``data`` (a pytree of arrays with a leading example axis),
    ``loss(params, batch)`` returning the *mean* loss over ``batch``; ``chunk_size`` must
    divide the number of examples (:class:`ChunkingError` otherwise).  ``num_steps``
    Lanczos steps (HVPs), at least ``k``; ``init`` a previous :class:`Sharpness` (warm start)
    or a direction shaped like the parameters' arrays; ``key`` seeds a random start
    (default ``PRNGKey(0)``).  ``dtype`` casts parameters and data (``jnp.float64`` needs
    x64 enabled); otherwise the parameters' dtype is used.  Equinox models are fine: only
    their inexact arrays count as parameters.
    """
    params = _cast(params, dtype)
    if data is not None:
        data = _cast(data, dtype)
    diff, _ = split_params(params)
    leaves = jax.tree.leaves(diff)
    d = sum(x.size for x in leaves)
    if not isinstance(k, int) or k < 1:
        raise EosInputError(f"k must be a positive integer, got {k!r}")
    if k > d:
        raise DimensionError(f"k={k} eigenpairs asked for, but the model has only {d} "
                             f"parameters; pass k <= {d}")
    m = min(max(int(num_steps), k), d)
    flat, _ = ravel_pytree(diff)
    if isinstance(init, Sharpness):
        v0 = ravel_pytree(jax.tree.map(lambda x: jnp.sum(x, axis=0), init.vectors))[0]
    elif init is not None:
        v0 = ravel_pytree(init)[0]
        if v0.shape != flat.shape:
            raise EosInputError(f"init has {v0.size} entries, the parameters {flat.size}")
    else:
        key = jax.random.PRNGKey(0) if key is None else key
        v0 = jax.random.normal(key, flat.shape, flat.dtype)
    if data is None:
        check_loss(loss, params, None, None)
        n = c = None
    else:
        n, c = check_chunks(data, chunk_size)
        check_loss(loss, params, data, c)
    vals, vecs, resid = _sharpness_core(loss, params, data, v0, k, m, n, c)
    return Sharpness(vals, vecs, resid, m)


def hessian_trace(loss: Callable, params: PyTree, *, data: PyTree | None = None,
                  chunk_size: int | None = None, num_samples: int = 100,
                  key: jax.Array | None = None) -> jax.Array:
    """Hutchinson estimate ``tr H ~ (1/S) sum_s z_s^T H z_s`` (Rademacher ``z``, unbiased,
    variance ``2 (|H|_F^2 - sum_i H_ii^2) / S``); ``num_samples`` HVPs."""
    diff, _ = split_params(params)
    mv = hvp_fn(loss, params, data=data, chunk_size=chunk_size)
    flat, unravel = ravel_pytree(diff)
    key = jax.random.PRNGKey(0) if key is None else key

    @jax.jit
    def run(keys):
        def one(kk):
            z = jax.random.rademacher(kk, flat.shape, flat.dtype)
            return jnp.vdot(z, ravel_pytree(mv(unravel(z)))[0])

        return jax.lax.map(one, keys)

    return jnp.mean(run(jax.random.split(key, num_samples)))


def sharpness_gradient(loss: Callable, params: PyTree, *, data: PyTree | None = None,
                       chunk_size: int | None = None, eig: Sharpness | None = None,
                       num_steps: int = 20) -> tuple[jax.Array, PyTree]:
    """``(lambda_1, grad lambda_1)`` with ``grad lambda_1 = D^3L[u, u, .]`` (``u`` the top
    unit eigenvector; valid where ``lambda_1`` is simple).  ``eig``: a :func:`sharpness`
    result at ``params`` to reuse, else one is computed with ``num_steps``."""
    if eig is None:
        eig = sharpness(loss, params, 1, data=data, chunk_size=chunk_size,
                        num_steps=num_steps)
    diff, static = split_params(params)
    u = jax.tree.map(lambda x: x[0], eig.vectors)
    if data is None:
        g = jax.grad(lambda dd: hessian_quadratic(lambda e: loss(eqx.combine(e, static)),
                                                  dd, u))(diff)
        return eig.values[0], g
    n, c = check_chunks(data, chunk_size)

    def grad_quadratic(chunk):
        return jax.grad(lambda dd: hessian_quadratic(
            lambda e: loss(eqx.combine(e, static), chunk), dd, u))(diff)

    g = jax.jit(chunk_sum(grad_quadratic, chunked(data, n, c), c / n))()
    return eig.values[0], g

"""The :class:`Game` container (two losses, two players' pytrees) and its point checks."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

PyTree = Any
Array = jax.Array

# ----------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------


def default_float() -> np.dtype:
    """The default floating dtype (float64 when ``jax_enable_x64`` is on, else float32)."""
    return jnp.zeros(()).dtype


def as_float_array(a: Any) -> Array:
    """Convert one leaf to a jax array; integer/bool/python-scalar leaves become floats."""
    if isinstance(a, jax.ShapeDtypeStruct):
        return a
    arr = jnp.asarray(a)
    if not jnp.issubdtype(arr.dtype, jnp.inexact) or getattr(arr, "weak_type", False):
        arr = jnp.asarray(a, dtype=default_float())
    return arr


def as_float_tree(tree: PyTree) -> PyTree:
    """Map :func:`as_float_array` over a pytree (``None`` is left alone)."""
    if tree is None:
        return None
    return jax.tree.map(as_float_array, tree)


def _as_optional_pair(pair: Any) -> tuple[PyTree, PyTree] | None:
    if pair is None:
        return None
    if not (isinstance(pair, tuple | list) and len(pair) == 2):
        raise ValueError("equilibrium must be a pair (x_star, y_star) or None")
    return (as_float_tree(pair[0]), as_float_tree(pair[1]))


def _tree_signature(tree: PyTree) -> tuple[Any, tuple[tuple[tuple[int, ...], Any], ...]]:
    """Tree structure plus (shape, dtype) of each leaf -- what a compatible point must share."""
    leaves, treedef = jax.tree.flatten(tree)
    return treedef, tuple((tuple(np.shape(a)), jnp.result_type(a)) for a in leaves)


def check_compatible(ref: PyTree, other: PyTree, what: str) -> None:
    """Raise ``ValueError`` unless ``other`` has the tree structure and leaf shapes of ``ref``.

    Dtypes are not compared (a float32 point may be used in a float64 game and vice versa);
    structure and shapes are.
    """
    ref_def, ref_leaves = _tree_signature(ref)
    oth_def, oth_leaves = _tree_signature(other)
    if ref_def != oth_def:
        raise ValueError(
            f"{what} has pytree structure {oth_def}, but the game expects {ref_def}"
        )
    ref_shapes = [s for s, _ in ref_leaves]
    oth_shapes = [s for s, _ in oth_leaves]
    if ref_shapes != oth_shapes:
        raise ValueError(
            f"{what} has leaf shapes {oth_shapes}, but the game expects {ref_shapes}"
        )


# ----------------------------------------------------------------------------------------
# the Game container
# ----------------------------------------------------------------------------------------


class Game(eqx.Module):
    r"""A two-player differentiable game.

    Player 1 minimises ``loss1(x, y)`` over ``x``; player 2 minimises ``loss2(x, y)`` over
    ``y``.  For batch-taking games (``batch_fn`` not ``None``) the losses are
    ``loss(x, y, batch)`` and ``batch_fn(key)`` samples a batch.

    Attributes:
        loss1: player 1's loss :math:`\ell_1(x, y[, b])`, a real scalar.
        loss2: player 2's loss :math:`\ell_2(x, y[, b])`, a real scalar.
        x0: default initial point of player 1 (a pytree of float arrays).
        y0: default initial point of player 2 (a pytree of float arrays).
        name: a human-readable name.
        equilibrium: optional known fixed point :math:`(x^*, y^*)` with
            :math:`\xi(x^*, y^*) = 0`.
        batch_fn: ``None`` for deterministic games; otherwise ``key -> batch``.

    Validation (at construction): ``x0`` and ``y0`` must be distinct objects sharing no
    array leaf (the two players own disjoint parameters), every leaf must be a
    floating-point array (python scalars and integer arrays are cast to the default float
    dtype), both losses must accept ``(x0, y0[, batch])`` and return a real scalar, and the
    equilibrium (if given) must have the structure of ``(x0, y0)``.  Any violation raises
    ``ValueError``.

    ``Game`` is an equinox Module, hence a pytree: the loss functions are non-array leaves
    (treated as static by :func:`equinox.filter_jit`), ``x0``/``y0`` are array leaves.

    **Loss convention.** Each player *minimises* its own loss (a GAN generator's loss is
    its own, not minus the discriminator's); a loss is written ``loss(x, y[, batch])``.
    ``bea`` takes losses on the joint parameters, ``L_c(params[, batch])`` with
    ``params = (x, y)``: :meth:`joint_losses` is that view, the one bridge between the two.
    """

    loss1: Callable[..., Array]
    loss2: Callable[..., Array]
    x0: PyTree = eqx.field(converter=as_float_tree)
    y0: PyTree = eqx.field(converter=as_float_tree)
    name: str = eqx.field(default="game", static=True)
    equilibrium: tuple[PyTree, PyTree] | None = eqx.field(
        default=None, converter=_as_optional_pair
    )
    batch_fn: Callable[[Array], PyTree] | None = None

    def __check_init__(self) -> None:
        if not callable(self.loss1) or not callable(self.loss2):
            raise ValueError(f"game {self.name!r}: loss1 and loss2 must be callables")
        if self.x0 is None or self.y0 is None:
            raise ValueError(f"game {self.name!r}: x0 and y0 must be given (not None)")
        if self.x0 is self.y0:
            raise ValueError(
                f"game {self.name!r}: x0 and y0 are the same object; the two players must "
                "own distinct parameter pytrees"
            )
        x_leaves = jax.tree.leaves(self.x0)
        y_leaves = jax.tree.leaves(self.y0)
        if not x_leaves or not y_leaves:
            raise ValueError(
                f"game {self.name!r}: each player needs at least one array parameter "
                f"(got {len(x_leaves)} leaves in x0, {len(y_leaves)} in y0)"
            )
        shared = {id(a) for a in x_leaves} & {id(a) for a in y_leaves}
        if shared:
            raise ValueError(
                f"game {self.name!r}: x0 and y0 share {len(shared)} array leaf/leaves; the "
                "players' parameters must not overlap"
            )
        for who, leaves in (("x0", x_leaves), ("y0", y_leaves)):
            for a in leaves:
                if not jnp.issubdtype(jnp.result_type(a), jnp.inexact):
                    raise ValueError(
                        f"game {self.name!r}: {who} has a non-floating leaf of dtype "
                        f"{jnp.result_type(a)}; parameters must be floating point"
                    )
        self._check_losses()
        if self.equilibrium is not None:
            check_compatible(self.x0, self.equilibrium[0], f"game {self.name!r}: x_star")
            check_compatible(self.y0, self.equilibrium[1], f"game {self.name!r}: y_star")

    def _check_losses(self) -> None:
        """Abstractly evaluate both losses at ``(x0, y0)`` and check they are real scalars."""
        args: tuple[Any, ...] = (self.x0, self.y0)
        if self.batch_fn is not None:
            try:
                batch = jax.eval_shape(self.batch_fn, jax.random.PRNGKey(0))
            except Exception as err:  # noqa: BLE001 - re-raised with context
                raise ValueError(
                    f"game {self.name!r}: batch_fn(key) failed: {err}"
                ) from err
            args = (*args, batch)
        for label, fn in (("loss1", self.loss1), ("loss2", self.loss2)):
            try:
                out = jax.eval_shape(fn, *args)
            except Exception as err:  # noqa: BLE001 - re-raised with context
                sig = "(x0, y0, batch)" if self.batch_fn is not None else "(x0, y0)"
                raise ValueError(
                    f"game {self.name!r}: {label} does not accept {sig} -- the initial points' "
                    f"pytree structure/shapes do not match what the loss expects: "
                    f"{type(err).__name__}: {err}"
                ) from err
            if not isinstance(out, jax.ShapeDtypeStruct) or out.shape != ():
                raise ValueError(
                    f"game {self.name!r}: {label} must return a scalar, got "
                    f"{getattr(out, 'shape', type(out))}"
                )
            if not jnp.issubdtype(out.dtype, jnp.floating):
                raise ValueError(
                    f"game {self.name!r}: {label} must return a real float, got {out.dtype}"
                )

    # -- evaluation --------------------------------------------------------------------

    @property
    def takes_batch(self) -> bool:
        """Whether the losses take a third ``batch`` argument."""
        return self.batch_fn is not None

    def _args(self, x: PyTree, y: PyTree, batch: PyTree) -> tuple[Any, ...]:
        if self.batch_fn is None:
            if batch is not None:
                raise ValueError(f"game {self.name!r} is deterministic; do not pass a batch")
            return (x, y)
        if batch is None:
            raise ValueError(f"game {self.name!r} takes a batch; pass batch=...")
        return (x, y, batch)

    def losses(self, x: PyTree, y: PyTree, batch: PyTree = None) -> tuple[Array, Array]:
        r"""Return :math:`(\ell_1(x, y), \ell_2(x, y))`."""
        args = self._args(x, y, batch)
        return self.loss1(*args), self.loss2(*args)

    def grads(self, x: PyTree, y: PyTree, batch: PyTree = None) -> tuple[PyTree, PyTree]:
        r"""Simultaneous gradient :math:`\xi = (\nabla_x \ell_1, \nabla_y \ell_2)` at ``(x, y)``."""
        if self.batch_fn is None:
            if batch is not None:
                raise ValueError(f"game {self.name!r} is deterministic; do not pass a batch")
            gx = jax.grad(lambda x_: self.loss1(x_, y))(x)
            gy = jax.grad(lambda y_: self.loss2(x, y_))(y)
        else:
            if batch is None:
                raise ValueError(f"game {self.name!r} takes a batch; pass batch=...")
            gx = jax.grad(lambda x_: self.loss1(x_, y, batch))(x)
            gy = jax.grad(lambda y_: self.loss2(x, y_, batch))(y)
        return gx, gy

    def grad_x(self, x: PyTree, y: PyTree, batch: PyTree = None) -> PyTree:
        r""":math:`\nabla_x \ell_1(x, y)` only (player 1's gradient)."""
        args = self._args(x, y, batch)
        return jax.grad(lambda x_: self.loss1(x_, *args[1:]))(x)

    def grad_y(self, x: PyTree, y: PyTree, batch: PyTree = None) -> PyTree:
        r""":math:`\nabla_y \ell_2(x, y)` only (player 2's gradient)."""
        args = self._args(x, y, batch)
        return jax.grad(lambda y_: self.loss2(x, y_, *args[2:]))(y)

    def vector_field(self, x: PyTree, y: PyTree, batch: PyTree = None) -> tuple[PyTree, PyTree]:
        r"""The gradient-flow field :math:`-\xi(z) = (-\nabla_x \ell_1, -\nabla_y \ell_2)`."""
        gx, gy = self.grads(x, y, batch)
        return jax.tree.map(jnp.negative, gx), jax.tree.map(jnp.negative, gy)

    def joint_losses(self) -> tuple[Callable[..., Array], Callable[..., Array]]:
        r"""The losses on the joint parameters, ``L_c((x, y)[, batch]) = loss_c(x, y[,
        batch])``: what :func:`bea.modified_equation` ``.to_jax`` and
        :func:`games.optax.game_drift_regularizer` take."""
        return (lambda p, *b: self.loss1(p[0], p[1], *b),
                lambda p, *b: self.loss2(p[0], p[1], *b))

    def sample_batch(self, key: Array) -> PyTree:
        """Sample one batch with ``batch_fn`` (``ValueError`` for deterministic games)."""
        if self.batch_fn is None:
            raise ValueError(f"game {self.name!r} is deterministic and has no batch_fn")
        return self.batch_fn(key)


class Trajectory(NamedTuple):
    """Stacked iterates: ``x[i]``, ``y[i]`` are the players' parameters at saved index ``i``."""

    x: PyTree
    y: PyTree


def check_int(value: Any, name: str, minimum: int) -> int:
    """``value`` as an int, or ``ValueError`` unless it is an integer ``>= minimum``."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def as_point(game: Game, value: PyTree, default: PyTree, what: str) -> PyTree:
    """A starting point: ``default`` when ``value`` is None, else ``value`` as floats,
    checked to match the structure and shapes of ``default``."""
    if value is None:
        return default
    value = as_float_tree(value)
    check_compatible(default, value, what)
    return value


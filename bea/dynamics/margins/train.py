r"""Training runner for margin experiments: steepest descent (or any optax optimiser) on the
log-space loss, with the margins of every step recorded inside one ``lax.scan``.

The optimiser receives ``grad log L`` (``objective="log"``, default): softmax-weighted,
never underflowing (see :mod:`.geometry`); with normalised steepest descent this is the
same step as on ``L``, with the dual-scaled one it is steepest descent on ``L`` with the
loss-normalised step ``eta / L``.  ``objective="loss"`` feeds ``grad L`` itself (plain GD
with a fixed step, the slow ``1/log t`` baseline; its gradient genuinely shrinks with
``L``).  Per step the runner records, *before* the update: ``log_loss``, ``accuracy``
and for each norm the normalised margin ``margin_<norm>`` and soft margin ``soft_<norm>``
(one forward pass already made for the gradient, plus O(parameters) norms).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ...optax.steepest import NORMS, norm_exponent
from ...progress import progress_bar
from .geometry import check_labels, homogeneity_degree, log_loss, param_norm, soft_margin

__all__ = ["Run", "linear_model", "relu_net", "init_relu_net", "monotone_after_fit",
           "run_function", "train"]

PyTree = Any


def linear_model(w: jax.Array, x: jax.Array) -> jax.Array:
    """``f(x; w) = <w, x>`` (degree 1)."""
    return x @ w


def relu_net(params: Sequence[Any], x: jax.Array) -> jax.Array:
    """ReLU net ``W_L^T relu(... relu(x W_1))``: ``params`` a list of weight matrices (last
    one a vector), bias-free (degree ``L``), or of ``(W, b)`` pairs (with biases)."""
    h = x
    for i, layer in enumerate(params):
        w, b = (layer if isinstance(layer, (tuple, list)) else (layer, None))
        h = h @ w + (0.0 if b is None else b)
        if i < len(params) - 1:
            h = jax.nn.relu(h)
    return h


def init_relu_net(key: jax.Array, sizes: Sequence[int], *, bias: bool = False,
                  dtype: Any = jnp.float64) -> list[Any]:
    """He-initialised weights for layer widths ``sizes = (d, m_1, ..., m_{L-1})`` and a
    scalar output; ``bias=True`` adds small nonzero biases (a non-homogeneous net)."""
    dims = list(sizes) + [1]
    keys = jax.random.split(key, 2 * (len(dims) - 1))
    out = []
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:], strict=True)):
        w = jax.random.normal(keys[2 * i], (a, b), dtype) * jnp.sqrt(2.0 / a)
        if b == 1:
            w = w[:, 0]
        if bias:
            bb = 0.1 * jax.random.normal(keys[2 * i + 1], (b,), dtype)
            out.append((w, bb[0] if b == 1 else bb))
        else:
            out.append(w)
    return out


def run_function(model: Callable, optimizer: optax.GradientTransformation, steps: int, *,
                 degree: float, loss: str = "exp", norms: Sequence[str] = NORMS,
                 objective: str = "log") -> Callable:
    """Pure ``(params, opt_state, x, y, active=steps) -> (params, opt_state, metrics)``
    running ``steps`` scan steps, of which the first ``active`` update the parameters (the
    rest only record metrics: one compiled chunk serves every chunk of a run).  jit or
    vmap it yourself; :func:`train` runs it in chunks with a progress bar."""
    ll_fn = log_loss(loss)
    if objective not in ("log", "loss"):
        raise ValueError(f"objective must be 'log' (grad log L) or 'loss' (grad L), got "
                         f"{objective!r}")
    ps = [(n, norm_exponent(n)) for n in norms]

    def obj(params, x, y):
        z = y * model(params, x)
        ll = ll_fn(z)
        return (ll if objective == "log" else jnp.exp(ll)), (ll, z)

    def step(carry, i, x, y, active):
        params, state = carry
        (_, (ll, z)), g = jax.value_and_grad(obj, has_aux=True)(params, x, y)
        m = {"log_loss": ll, "accuracy": jnp.mean(z > 0)}
        for name, p in ps:
            m[f"margin_{name}"] = jnp.min(z) / param_norm(params, p) ** degree
            m[f"soft_{name}"] = soft_margin(z, params, degree, p, loss)
        upd, new_state = optimizer.update(g, state, params)
        new_params = optax.apply_updates(params, upd)
        keep = i < active
        pick = lambda a, b: jax.tree.map(lambda u, v: jnp.where(keep, u, v), a, b)
        return (pick(new_params, params), pick(new_state, state)), m

    def run(params, state, x, y, active=steps):
        (params, state), m = jax.lax.scan(lambda c, i: step(c, i, x, y, active),
                                          (params, state), jnp.arange(steps))
        return params, state, m

    return run


@dataclass
class Run:
    """Final ``params``, ``degree``, per-step ``metrics`` (numpy arrays of length
    ``steps + 1``; entry ``t`` is at the parameters after ``t`` steps)."""

    params: PyTree
    degree: float
    metrics: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def steps(self) -> int:
        return len(self.metrics["log_loss"]) - 1


def train(model: Callable, params: PyTree, x: Any, y: Any,
          optimizer: optax.GradientTransformation, steps: int, *, loss: str = "exp",
          degree: float | None = None, norms: Sequence[str] = NORMS, objective: str = "log",
          chunk: int = 2000, progress: bool = True, desc: str = "train") -> Run:
    """Train ``model(params, x)`` on labels ``y`` in {-1, +1} for ``steps`` steps.

    ``degree``: the homogeneity degree (checked numerically by
    :func:`homogeneity_degree` when not given, which refuses non-homogeneous models).
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    x = jnp.asarray(x)
    y = jnp.asarray(check_labels(y, x.shape[0]), dtype=x.dtype)
    if degree is None:
        degree = homogeneity_degree(model, params, x)
    state = optimizer.init(params)
    total = steps + 1               # the last entry: metrics of the final parameters
    chunk = max(1, min(int(chunk), total))
    fn = jax.jit(run_function(model, optimizer, chunk, degree=degree, loss=loss, norms=norms,
                              objective=objective))
    parts: list[dict[str, np.ndarray]] = []
    with progress_bar(steps, desc=desc, enabled=progress) as bar:
        done = 0
        while done < total:
            k = min(chunk, total - done)
            active = min(k, steps - done)       # steps that update (the rest record only)
            params, state, m = fn(params, state, x, y, active)
            parts.append({key: np.asarray(v)[:k] for key, v in m.items()})
            done += k
            bar.update(active)
            bar.set_postfix(log10_loss=f"{float(m['log_loss'][k - 1]) / np.log(10):.3g}")
    metrics = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
    return Run(params, float(degree), metrics)


def monotone_after_fit(run: Run, norm: str, *, rtol: float = 1e-10) -> dict[str, Any]:
    """Is ``soft_<norm>`` non-decreasing at every step from the step on which training
    accuracy is 100% for good (``fit_step``)?  A drop counts if it exceeds
    ``rtol * max|soft|`` (round-off of the log-sum-exp and the norm in float64).
    Returns ``fit_step`` (None if never fitted), ``drops`` (their number),
    ``max_drop``, ``monotone``, ``rise`` (last - at
    fit)."""
    s = run.metrics[f"soft_{norm}"]
    acc = run.metrics["accuracy"]
    miss = np.nonzero(acc < 1.0)[0]
    t0 = 0 if miss.size == 0 else int(miss[-1]) + 1   # 100% accuracy from t0 on
    if t0 >= len(acc):
        return {"fit_step": None, "drops": 0, "max_drop": 0.0, "monotone": False,
                "rise": 0.0}
    tail = s[t0:]
    diff = np.diff(tail)
    tol = rtol * max(1.0, float(np.max(np.abs(tail))))
    drops = diff < -tol
    return {"fit_step": t0, "drops": int(np.sum(drops)),
            "max_drop": float(max(0.0, -float(np.min(diff)))) if diff.size else 0.0,
            "monotone": bool(not np.any(drops)),
            "rise": float(tail[-1] - tail[0])}

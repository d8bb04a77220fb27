r"""Full-batch training of an equinox model with any optax optimiser, EoS diagnostics logged.

:func:`train` runs ``steps`` full-batch steps ``p <- p + update(grad L(p))`` and logs

* every step: the loss (before the step) and ``|grad L|``;
* every ``log_every`` steps: the accuracy (``accuracy_fn``);
* every ``sharpness_every`` steps: the top-``k`` Hessian eigenvalues on ``sharpness_data``
  (:func:`.sharpness.sharpness`, chunked, warm-started from the previous call);
  ``eta_eff * lambda_1 = eta lambda_1 / |grad L|`` when ``normalized_lr=eta`` (normalised
  GD: it settles at 2); the distance ``|p_k - X(k eta)|`` to the gradient-flow trajectory
  ``X' = -grad L(X)`` when ``flow_lr=eta`` (integrated alongside with diffrax, Tsit5,
  adaptive, as in Cohen et al.'s comparison with gradient flow).

The optimiser's ``update`` gets ``value=L(p)`` (for :func:`bea.optax.sqrt_loss`, polyak
steps); plain optax transforms are wrapped with :func:`optax.with_extra_args_support`.
With ``checkpoint=path`` the whole state (parameters, optimiser state, flow state, warm
start, logs) is kept in a :class:`bea.files.Checkpoint` after each sharpness point and a
run with ``resume=True`` continues from there; the result is identical to an
uninterrupted run.  ``out=path`` writes the logs as JSON atomically at the same points.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.flatten_util import ravel_pytree

from ...files import Checkpoint, atomic_write_json, check_writable
from ...progress import progress_bar
from .sharpness import EosInputError, Sharpness, sharpness

__all__ = ["train"]

PyTree = Any


def _leaves_to_json(tree: PyTree) -> list:
    return [np.asarray(x).tolist() for x in jax.tree.leaves(tree)]


def _leaves_from_json(like: PyTree, stored: list) -> PyTree:
    leaves, treedef = jax.tree.flatten(like)
    if len(leaves) != len(stored):
        raise ValueError("checkpoint does not match the model/optimiser structure")
    new = [jnp.asarray(np.asarray(s, dtype=np.asarray(x).dtype).reshape(np.shape(x)))
           for x, s in zip(leaves, stored, strict=True)]
    return jax.tree.unflatten(treedef, new)


def train(model: PyTree, loss_fn: Callable[[PyTree, PyTree], jax.Array],
          optimizer: optax.GradientTransformation, data: PyTree, *, steps: int,
          log_every: int = 10, sharpness_every: int | None = None,
          sharpness_data: PyTree | None = None, chunk_size: int | None = None,
          k: int = 1, num_lanczos: int = 20,
          accuracy_fn: Callable[[PyTree, PyTree], jax.Array] | None = None,
          normalized_lr: float | None = None, flow_lr: float | None = None,
          flow_rtol: float = 1e-6, checkpoint: str | None = None, resume: bool = False,
          config: Mapping[str, Any] | None = None, out: str | None = None,
          progress: bool = True, desc: str = "train",
          stop_at: int | None = None) -> dict[str, Any]:
    """Train and log (see the module docstring); returns the logs as a dict of lists and
    the final model under ``"model"``.  ``stop_at`` ends the run early at that step (the
    checkpoint then holds it, as after an interruption)."""
    if steps < 1 or log_every < 1:
        raise EosInputError(f"steps and log_every must be >= 1, got {steps}, {log_every}")
    sharpness_every = log_every if sharpness_every is None else int(sharpness_every)
    if sharpness_every % log_every:
        raise EosInputError(f"sharpness_every={sharpness_every} must be a multiple of "
                            f"log_every={log_every}")
    if out is not None:
        check_writable(out, what="log file")
    sdata = data if sharpness_data is None else sharpness_data
    opt = optax.with_extra_args_support(optimizer)
    diff, static = eqx.partition(model, eqx.is_inexact_array)
    opt_state = opt.init(diff)

    def full_loss(d):
        return loss_fn(eqx.combine(d, static), data)

    # validates the loss, k and the chunking before any training
    eig = sharpness(loss_fn, model, k, data=sdata, chunk_size=chunk_size,
                    num_steps=num_lanczos)

    @eqx.filter_jit
    def run_block(d, st, n):
        def one(carry, _):
            d, st = carry
            v, g = jax.value_and_grad(full_loss)(d)
            u, st = opt.update(g, st, d, value=v)
            return (optax.apply_updates(d, u), st), (v, optax.tree.norm(g))

        (d, st), (vals, norms) = jax.lax.scan(one, (d, st), None, length=n)
        return d, st, vals, norms

    @eqx.filter_jit
    def grad_norm(d):
        return optax.tree.norm(jax.grad(full_loss)(d))

    flow_y = diff
    if flow_lr is not None:
        term = diffrax.ODETerm(lambda t, y, args: jax.tree.map(jnp.negative,
                                                                jax.grad(full_loss)(y)))

        @eqx.filter_jit
        def advance(y, t0, t1):
            sol = diffrax.diffeqsolve(
                term, diffrax.Tsit5(), t0, t1, (t1 - t0) / 10, y,
                stepsize_controller=diffrax.PIDController(rtol=flow_rtol, atol=flow_rtol),
                max_steps=1_000_000)
            return jax.tree.map(lambda x: x[-1], sol.ys)

    log: dict[str, list] = {"loss": [], "grad_norm": [], "log_step": [], "accuracy": [],
                            "sharpness_step": [], "sharpness": [], "eta_eff_sharpness": [],
                            "flow_distance": []}
    step = 0
    ckpt = None
    if checkpoint is not None:
        cfg = {"config": dict(config or {}), "log_every": log_every,
               "sharpness_every": sharpness_every, "k": k, "num_lanczos": num_lanczos,
               "normalized_lr": normalized_lr, "flow_lr": flow_lr,
               "shapes": [list(np.shape(x)) for x in jax.tree.leaves(diff)]}
        ckpt = Checkpoint(checkpoint, cfg, resume=resume)
        saved = ckpt.get("state")
        if saved is not None and saved["step"] <= steps:
            step = saved["step"]
            diff = _leaves_from_json(diff, saved["params"])
            opt_state = _leaves_from_json(opt_state, saved["opt_state"])
            flow_y = _leaves_from_json(flow_y, saved["flow"])
            vecs = _leaves_from_json(eig.vectors, saved["eig"])
            eig = Sharpness(eig.values, vecs, eig.residuals, eig.num_hvps)
            log = saved["log"]

    def save():
        if ckpt is not None:
            ckpt.put("state", {"step": step, "params": _leaves_to_json(diff),
                               "opt_state": _leaves_to_json(opt_state),
                               "flow": _leaves_to_json(flow_y),
                               "eig": _leaves_to_json(eig.vectors), "log": log})
        if out is not None:
            atomic_write_json(out, {"step": step, **log})

    end = steps if stop_at is None else min(stop_at, steps)
    bar = progress_bar(total=steps, desc=desc, enabled=progress, initial=step)
    try:
        while step < end:
            n = min(log_every, end - step)
            if step % sharpness_every == 0 and (not log["sharpness_step"]
                                                or log["sharpness_step"][-1] != step):
                m = eqx.combine(diff, static)
                eig = sharpness(loss_fn, m, k, data=sdata, chunk_size=chunk_size,
                                num_steps=num_lanczos, init=eig)
                lam = [float(x) for x in eig.values]
                log["sharpness_step"].append(step)
                log["sharpness"].append(lam)
                if normalized_lr is not None:
                    log["eta_eff_sharpness"].append(
                        float(normalized_lr * lam[0] / grad_norm(diff)))
                if flow_lr is not None:
                    t_prev = flow_lr * (log["sharpness_step"][-2]
                                        if len(log["sharpness_step"]) > 1 else 0)
                    if step > 0:
                        flow_y = advance(flow_y, float(t_prev), float(flow_lr * step))
                    dist = ravel_pytree(jax.tree.map(jnp.subtract, diff, flow_y))[0]
                    log["flow_distance"].append(float(jnp.linalg.norm(dist)))
                bar.set_postfix(sharp=f"{lam[0]:.3g}")
            if step % log_every == 0 and accuracy_fn is not None:
                log["log_step"].append(step)
                log["accuracy"].append(float(accuracy_fn(eqx.combine(diff, static), data)))
            diff, opt_state, vals, norms = run_block(diff, opt_state, n)
            log["loss"].extend(np.asarray(vals, dtype=float).tolist())
            log["grad_norm"].extend(np.asarray(norms, dtype=float).tolist())
            step += n
            bar.update(n)
            bar.set_postfix(loss=f"{log['loss'][-1]:.3g}")
            if step % sharpness_every == 0 or step == end:
                save()
    finally:
        bar.close()
    save()
    return {**log, "steps": step, "model": eqx.combine(diff, static)}

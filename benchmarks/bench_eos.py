"""Top Hessian eigenvalue of a >= 1M-parameter network on CPU: three Lanczos codes on the
same HVP operator, same run.

Net: tanh MLP 64 -> 1024 -> 1024 -> 10 (1,125,642 parameters, float32), MSE on 256
digits examples, HVPs accumulated over 2 chunks of 128 (:func:`bea.dynamics.eos.hvp_fn`,
forward-over-reverse).  One flat jitted HVP ``v -> H v`` is shared by

* ``kernels.krylov.lanczos_eigh`` (the lab's: 20 steps, full re-orthogonalisation, jitted);
* ``matfree.eig.eigh_partial(matfree.decomp.tridiag_sym(20))`` (full re-orthogonalisation,
  jitted);
* ``scipy.sparse.linalg.eigsh(k=1, which="LA", ncv=20)`` on a ``LinearOperator`` wrapping
  the jitted HVP, run to the relative residual the 20-step kernels Lanczos reached (the
  same accuracy: ARPACK restarts until then).

Costs are wall seconds (median of ``REPS`` runs after a warm-up; compilation excluded)
and *HVP units* (wall / the median time of one HVP); HVP counts are counted by a host
callback in a separate instrumented run (scipy's by its Python matvec).  The machine is
shared and loaded (``loadavg``).  Writes ``benchmarks/results/eos_cpu.{json,md}``.

    .venv/bin/python benchmarks/bench_eos.py
"""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from _markdown import table  # benchmarks/ is on sys.path when a script here is run
from jax.flatten_util import ravel_pytree

from bea.dynamics.eos import digits as D
from bea.dynamics.eos import hvp_fn
from bea.files import atomic_write_json, atomic_write_text
from kernels.krylov import lanczos_eigh

STEPS, REPS, WIDTH, N, CHUNK = 20, 3, 1024, 256, 128


def _median_time(fn, reps=REPS):
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        jax.block_until_ready(fn())
        ts.append(time.perf_counter() - t)
    return float(np.median(ts))


def main() -> None:
    import scipy
    import scipy.sparse.linalg as sla
    from matfree import decomp, eig

    x, y = D.digits_data(N, dtype=jnp.float32)
    model = D.tanh_mlp(WIDTH, key=jax.random.PRNGKey(0), dtype=jnp.float32)
    diff, static = eqx.partition(model, eqx.is_inexact_array)
    flat0, unravel = ravel_pytree(diff)
    d = flat0.size
    calls = [0]

    def count(_):
        calls[0] += 1

    # parameters and start vector are jit *arguments* (as in the lab's _sharpness_core):
    # closed over, XLA folds the 1M-parameter constants into the program and every
    # method slows down unevenly (measured: kernels 3x)
    def hvp_flat(p, v, counted=False):
        if counted:
            jax.debug.callback(count, v[0])
        mv = hvp_fn(D.mse_loss, eqx.combine(unravel(p), static), data=(x, y),
                    chunk_size=CHUNK)
        return ravel_pytree(mv(unravel(v)))[0]

    hvp_j = jax.jit(hvp_flat)

    def hvp(v):
        return hvp_j(flat0, v)

    v0 = jax.random.normal(jax.random.PRNGKey(1), (d,), jnp.float32)
    jax.block_until_ready(hvp(v0))
    t_hvp = _median_time(lambda: hvp(v0), reps=5)

    def kern(p, v, counted=False):
        return lanczos_eigh(lambda u: hvp_flat(p, u, counted), v, STEPS)

    kern_c = jax.jit(kern, static_argnums=2)
    kern_j = lambda: kern_c(flat0, v0)  # noqa: E731
    mf_eigh = eig.eigh_partial(decomp.tridiag_sym(STEPS, reortho="full"))

    def mf(p, v, counted=False):
        return mf_eigh(lambda u: hvp_flat(p, u, counted), v / jnp.linalg.norm(v))

    mf_c = jax.jit(mf, static_argnums=2)
    mf_j = lambda: mf_c(flat0, v0)  # noqa: E731
    res = {}

    r = kern_j()
    jax.block_until_ready(r)
    t = _median_time(kern_j)
    lam_k = float(r.values[0])
    rel_k = float(r.residuals[0] / abs(r.values[0]))
    calls[0] = 0
    jax.block_until_ready(kern_c(flat0, v0, True))
    res["kernels"] = {"lambda": lam_k, "rel_residual": rel_k, "hvps": calls[0], "wall_s": t}

    vals, vecs = mf_j()
    jax.block_until_ready(vals)
    t = _median_time(mf_j)
    i = int(jnp.argmax(vals))
    u = vecs[i] / jnp.linalg.norm(vecs[i])
    rel_m = float(jnp.linalg.norm(hvp(u) - vals[i] * u) / abs(vals[i]))
    calls[0] = 0
    jax.block_until_ready(mf_c(flat0, v0, True))
    res["matfree"] = {"lambda": float(vals[i]), "rel_residual": rel_m, "hvps": calls[0],
                      "wall_s": t}

    n_sc = [0]

    def sc_mv(v):
        n_sc[0] += 1
        return np.asarray(hvp(jnp.asarray(v.ravel(), jnp.float32)))

    op = sla.LinearOperator((d, d), matvec=sc_mv, dtype=np.float32)
    ts, out = [], None
    for _ in range(REPS):
        n_sc[0] = 0
        t0 = time.perf_counter()
        out = sla.eigsh(op, k=1, which="LA", ncv=STEPS, v0=np.asarray(v0), tol=rel_k)
        ts.append(time.perf_counter() - t0)
    lam_s = float(out[0][0])
    us = jnp.asarray(out[1][:, 0])
    rel_s = float(jnp.linalg.norm(hvp(us) - lam_s * us) / abs(lam_s))
    res["scipy_eigsh"] = {"lambda": lam_s, "rel_residual": rel_s, "hvps": n_sc[0],
                          "wall_s": float(np.median(ts))}
    for v in res.values():
        v["hvp_units"] = v["wall_s"] / t_hvp
        v["vs_scipy"] = v["wall_s"] / res["scipy_eigsh"]["wall_s"]
    info = {"params": int(d), "examples": N, "chunk": CHUNK, "lanczos_steps": STEPS,
            "dtype": "float32", "hvp_s": t_hvp, "reps": REPS, "methods": res,
            "machine": platform.platform(), "processor": platform.processor(),
            "cpus": os.cpu_count(), "jax": jax.__version__, "scipy": scipy.__version__,
            "matfree": "0.6.3", "device": str(jax.devices()[0]), "loadavg": os.getloadavg()}
    out_dir = Path(__file__).resolve().parent / "results"
    atomic_write_json(out_dir / "eos_cpu.json", info)
    rows = [[k, f"{v['lambda']:.6g}", f"{v['rel_residual']:.1e}", str(v["hvps"]),
             f"{v['wall_s']:.2f}", f"{v['hvp_units']:.1f}", f"{v['vs_scipy']:.2f}"]
            for k, v in res.items()]
    md = "\n".join([
        "# EoS lab: top Hessian eigenvalue of a 1.1M-parameter net (CPU)", "",
        f"tanh MLP 64-{WIDTH}-{WIDTH}-10, d = {d:,} parameters, float32, MSE on {N} digits "
        f"examples in chunks of {CHUNK}; one HVP = {t_hvp:.3f} s (median of 5). "
        f"{STEPS} Lanczos steps (kernels, matfree: full re-orthogonalisation); scipy eigsh "
        f"(ARPACK, ncv={STEPS}) run to the kernels' relative residual {rel_k:.1e}. "
        f"Median of {REPS} runs, compile excluded; shared, loaded machine.", "",
        *table(["method", "lambda_1", "rel. residual", "HVPs", "wall (s)", "HVP units",
                "wall / scipy"], rows), "",
        f"loadavg {os.getloadavg()}; {platform.platform()}, {os.cpu_count()} CPUs, "
        f"jax {jax.__version__}, scipy {scipy.__version__}, matfree 0.6.3.", ""])
    atomic_write_text(out_dir / "eos_cpu.md", md)
    print(md)


if __name__ == "__main__":
    main()

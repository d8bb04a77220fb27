"""Numeric JAX kernels for backward error analysis.

Parameters are arbitrary pytrees (dicts, tuples, equinox modules filtered to
arrays).  Everything is matrix-free: derivatives are nested ``jax.jvp`` /
``jax.grad`` and Hessian-vector products; no Hessian or other ``d x d`` object
is ever built.  All functions are ``jax.jit`` / ``jax.vmap`` compatible, with
tree DAGs, colours, callables and iteration counts as static Python values.
"""

from kernels.directional import nested_jvp
from kernels.elementary import (
    Nodes,
    elementary_differential,
    elementary_differentials,
    gradient_elementary_differential,
    gradient_elementary_differentials,
    loss_contraction,
    node_orders,
    validate_nodes,
)
from kernels.hvp import hessian_quadratic, hvp, hvp_operator
from kernels.per_example import (
    batch_size_of,
    gradient_noise_covariance_trace,
    per_example_grads,
)
from kernels.spectrum import (
    hutchinson_samples,
    hutchinson_trace,
    lanczos,
    lanczos_tridiagonal,
    top_hessian_eigenpair,
    top_hessian_eigenvalue,
)
from kernels.steepest import (
    Scale,
    coordinate_direction,
    dual_exponent,
    l2_direction,
    lp_direction,
    normalized_direction,
    sign_direction,
    steepest_direction,
    tree_lp_norm,
)
from kernels.tree_util import (
    PyTree,
    check_float_params,
    check_same_structure,
    linear_combination,
    tree_add,
    tree_axpy,
    tree_norm,
    tree_rademacher,
    tree_random_normal,
    tree_scale,
    tree_sub,
    tree_vdot,
    tree_zeros_like,
)

__all__ = [
    "Nodes",
    "PyTree",
    "Scale",
    "batch_size_of",
    "check_float_params",
    "check_same_structure",
    "coordinate_direction",
    "dual_exponent",
    "elementary_differential",
    "elementary_differentials",
    "gradient_elementary_differential",
    "gradient_elementary_differentials",
    "gradient_noise_covariance_trace",
    "hessian_quadratic",
    "hutchinson_samples",
    "hutchinson_trace",
    "hvp",
    "hvp_operator",
    "l2_direction",
    "lanczos",
    "lanczos_tridiagonal",
    "linear_combination",
    "lp_direction",
    "loss_contraction",
    "nested_jvp",
    "node_orders",
    "normalized_direction",
    "per_example_grads",
    "sign_direction",
    "steepest_direction",
    "top_hessian_eigenpair",
    "top_hessian_eigenvalue",
    "tree_add",
    "tree_axpy",
    "tree_lp_norm",
    "tree_norm",
    "tree_rademacher",
    "tree_random_normal",
    "tree_scale",
    "tree_sub",
    "tree_vdot",
    "tree_zeros_like",
    "validate_nodes",
]

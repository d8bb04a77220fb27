"""Dynamics labs: where the step-size series is not the whole story.

* :mod:`bea.dynamics.eos`: edge of stability (sharpness, normalised GD, GD on sqrt(L)).
* :mod:`bea.dynamics.sde`: SGD as an SDE, SVAG, the linear scaling rule.
* :mod:`bea.dynamics.manifold`: noisy GD on the zero-loss manifold.
* :mod:`bea.dynamics.margins`: steepest descent and the margins it maximises.

Each lab is a module of its own (imported on use, they need JAX), with a runner, a
``reproduce`` experiment for ``bea reproduce`` (see :mod:`bea.experiments`) and a notebook.
"""

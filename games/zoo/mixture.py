"""The mixture-of-Gaussians GAN (:class:`MixtureGAN`) and its sample-quality measures."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .game import Game, default_float

PyTree = Any
Array = jax.Array


# ----------------------------------------------------------------------------------------
# mixture-of-Gaussians GAN
# ----------------------------------------------------------------------------------------


def mog_centers(n_modes: int = 8, radius: float = 2.0) -> Array:
    r"""Centres :math:`\mu_k = r(\cos 2\pi k/K, \sin 2\pi k/K)`, :math:`k < K`, shape ``(K, 2)``."""
    angles = 2.0 * np.pi * np.arange(n_modes) / n_modes
    c = radius * np.stack([np.cos(angles), np.sin(angles)], axis=-1)
    return jnp.asarray(c, dtype=default_float())


def _nearest_mode(samples: Array, centers: Array) -> tuple[Array, Array]:
    """Index of and distance to the nearest centre for each sample."""
    d = jnp.linalg.norm(samples[:, None, :] - centers[None, :, :], axis=-1)
    return jnp.argmin(d, axis=1), jnp.min(d, axis=1)


@jax.jit
def high_quality_fraction(
    samples: Array, centers: Array, std: float, n_std: float = 3.0
) -> Array:
    r"""Fraction of samples within ``n_std`` standard deviations of some mode.

    :math:`\frac1N \#\{i : \min_k \|s_i - \mu_k\| \le n_{\rm std}\,\sigma\}`.
    """
    _, dist = _nearest_mode(jnp.asarray(samples), jnp.asarray(centers))
    return jnp.mean(dist <= n_std * std)


@partial(jax.jit, static_argnames=("min_fraction",))
def mode_coverage(
    samples: Array,
    centers: Array,
    std: float,
    n_std: float = 3.0,
    min_fraction: float | None = None,
) -> Array:
    r"""Number of modes that receive at least ``min_fraction`` of the samples within ``n_std``.

    Mode :math:`k` is *covered* when
    :math:`\frac1N\#\{i : \|s_i - \mu_k\| \le n_{\rm std}\sigma\} \ge` ``min_fraction``.
    ``min_fraction`` defaults to :math:`1/(4K)`, a quarter of the mass a mode receives under
    the (uniform) data distribution.
    """
    samples = jnp.asarray(samples)
    centers = jnp.asarray(centers)
    k = centers.shape[0]
    if min_fraction is None:
        min_fraction = 1.0 / (4 * k)
    idx, dist = _nearest_mode(samples, centers)
    good = dist <= n_std * std
    counts = jnp.zeros(k).at[idx].add(good.astype(jnp.zeros(()).dtype))
    return jnp.sum(counts / samples.shape[0] >= min_fraction)


def _init_mlp(
    key: Array,
    in_size: int,
    out_size: int | str,
    width: int,
    depth: int,
    activation: Callable[[Array], Array],
    dtype: Any,
) -> eqx.nn.MLP:
    r"""An :class:`equinox.nn.MLP` initialised on the host with NumPy.

    Same distribution as equinox's default (weights and biases of each linear layer
    :math:`\sim U(-1/\sqrt{\text{fan\_in}}, 1/\sqrt{\text{fan\_in}})`), seeded from ``key``;
    this avoids compiling the PRNG-heavy initialiser, which dominates start-up on CPU.
    """
    abstract = eqx.filter_eval_shape(
        eqx.nn.MLP, in_size, out_size, width, depth, activation=activation, key=key,
        dtype=dtype,
    )
    rng = np.random.default_rng(np.asarray(jax.random.key_data(key)).ravel().tolist())
    weights, biases = [], []
    for layer in abstract.layers:
        lim = 1.0 / np.sqrt(layer.weight.shape[-1])
        weights.append(jnp.asarray(rng.uniform(-lim, lim, layer.weight.shape), dtype=dtype))
        biases.append(jnp.asarray(rng.uniform(-lim, lim, layer.bias.shape), dtype=dtype))
    return eqx.tree_at(
        lambda m: [f(layer) for layer in m.layers for f in (lambda u: u.weight, lambda u: u.bias)],
        abstract,
        [a for pair in zip(weights, biases, strict=True) for a in pair],
    )


class MixtureGAN(Game):
    r"""A small MLP GAN on a ring of Gaussians (returned by :func:`mog_gan`).

    Player 1 (``x``) is the **generator** parameters, player 2 (``y``) the **discriminator**
    parameters; both are pytrees of arrays (the array part of an :class:`equinox.nn.MLP`,
    obtained with :func:`equinox.partition`; the non-array part is stored in
    ``gen_static``/``disc_static``).  A batch is ``(real, z)`` with ``real`` of shape
    ``(B, 2)`` and latent noise ``z`` of shape ``(B, latent_dim)``.  With
    :math:`D` the discriminator logit and :math:`G` the generator,

    .. math::

        \ell_1(x, y; b) = -\tfrac1B\sum_j \log\sigma(D_y(G_x(z_j)))
        \quad\text{(non-saturating generator loss)},

        \ell_2(x, y; b) = -\tfrac1B\sum_j \big[\log\sigma(D_y(r_j))
                          + \log\sigma(-D_y(G_x(z_j)))\big] \quad\text{(BCE)}.
    """

    centers: Array
    std: float = eqx.field(static=True)
    latent_dim: int = eqx.field(static=True)
    batch_size: int = eqx.field(static=True)
    gen_static: Any
    disc_static: Any

    def __init__(
        self,
        key: Array,
        *,
        n_modes: int = 8,
        radius: float = 2.0,
        std: float = 0.02,
        latent_dim: int = 2,
        width: int = 32,
        depth: int = 2,
        batch_size: int = 128,
    ) -> None:
        if latent_dim < 1 or width < 1 or depth < 1 or batch_size < 1 or n_modes < 1:
            raise ValueError("mog_gan: n_modes, latent_dim, width, depth, batch_size must be >= 1")
        if std <= 0 or radius <= 0:
            raise ValueError("mog_gan: std and radius must be positive")
        kg, kd = jax.random.split(key)
        dt = default_float()
        gen = _init_mlp(kg, latent_dim, 2, width, depth, jax.nn.relu, dt)
        disc = _init_mlp(kd, 2, "scalar", width, depth, jax.nn.leaky_relu, dt)
        gen_params, gen_static = eqx.partition(gen, eqx.is_inexact_array)
        disc_params, disc_static = eqx.partition(disc, eqx.is_inexact_array)
        centers = mog_centers(n_modes, radius)

        def generate(x: PyTree, z: Array) -> Array:
            return jax.vmap(eqx.combine(x, gen_static))(z)

        def logits(y: PyTree, u: Array) -> Array:
            return jax.vmap(eqx.combine(y, disc_static))(u)

        def loss1(x: PyTree, y: PyTree, batch: tuple[Array, Array]) -> Array:
            _, z = batch
            return -jnp.mean(jax.nn.log_sigmoid(logits(y, generate(x, z))))

        def loss2(x: PyTree, y: PyTree, batch: tuple[Array, Array]) -> Array:
            real, z = batch
            fake = generate(x, z)
            return -jnp.mean(jax.nn.log_sigmoid(logits(y, real))) - jnp.mean(
                jax.nn.log_sigmoid(-logits(y, fake))
            )

        @jax.jit
        def batch_fn(k: Array) -> tuple[Array, Array]:
            k1, k2 = jax.random.split(k)
            return (
                _sample_mog(k1, batch_size, centers, std),
                jax.random.normal(k2, (batch_size, latent_dim), dtype=dt),
            )

        self.loss1 = loss1
        self.loss2 = loss2
        self.x0 = gen_params
        self.y0 = disc_params
        self.name = f"mog_gan({n_modes} modes, latent={latent_dim}, width={width})"
        self.equilibrium = None
        self.batch_fn = batch_fn
        self.centers = centers
        self.std = float(std)
        self.latent_dim = int(latent_dim)
        self.batch_size = int(batch_size)
        self.gen_static = gen_static
        self.disc_static = disc_static

    @eqx.filter_jit
    def sample_data(self, key: Array, n: int) -> Array:
        """``n`` samples from the data mixture: a uniform mode plus ``std`` Gaussian noise."""
        return _sample_mog(key, n, self.centers, self.std)

    def sample_latent(self, key: Array, n: int) -> Array:
        """``n`` standard-normal latent vectors, shape ``(n, latent_dim)``."""
        return jax.random.normal(key, (n, self.latent_dim), dtype=self.centers.dtype)

    @eqx.filter_jit
    def generate(self, x: PyTree, z: Array) -> Array:
        """Generator samples :math:`G_x(z)` for a batch of latents ``z`` (shape ``(B, 2)``)."""
        return jax.vmap(eqx.combine(x, self.gen_static))(z)

    @eqx.filter_jit
    def sample_generator(self, x: PyTree, key: Array, n: int) -> Array:
        """``n`` generator samples with fresh latent noise."""
        return self.generate(x, self.sample_latent(key, n))

    @eqx.filter_jit
    def discriminator(self, y: PyTree, u: Array) -> Array:
        """Discriminator logits :math:`D_y(u)` for points ``u`` of shape ``(B, 2)``."""
        return jax.vmap(eqx.combine(y, self.disc_static))(u)

    def mode_coverage(
        self, samples: Array, n_std: float = 3.0, min_fraction: float | None = None
    ) -> Array:
        """Number of covered modes; see the module function :func:`mode_coverage`."""
        return mode_coverage(samples, self.centers, self.std, n_std, min_fraction)

    def high_quality_fraction(self, samples: Array, n_std: float = 3.0) -> Array:
        """Fraction of samples within ``n_std`` std of a mode; see :func:`high_quality_fraction`."""
        return high_quality_fraction(samples, self.centers, self.std, n_std)


@partial(jax.jit, static_argnums=(1,))
def _sample_mog(key: Array, n: int, centers: Array, std: float) -> Array:
    k1, k2 = jax.random.split(key)
    idx = jax.random.randint(k1, (n,), 0, centers.shape[0])
    return centers[idx] + std * jax.random.normal(k2, (n, 2), dtype=centers.dtype)


def mog_gan(
    key: Array,
    *,
    n_modes: int = 8,
    radius: float = 2.0,
    std: float = 0.02,
    latent_dim: int = 2,
    width: int = 32,
    depth: int = 2,
    batch_size: int = 128,
) -> MixtureGAN:
    r"""A small GAN on a 2-D mixture of ``n_modes`` Gaussians on a circle.

    Data: :math:`\mu_k = r(\cos\frac{2\pi k}{K}, \sin\frac{2\pi k}{K})` plus isotropic noise of
    standard deviation ``std`` (defaults :math:`K=8`, :math:`r=2`, :math:`\sigma=0.02`).
    Generator and discriminator are :class:`equinox.nn.MLP` s of ``depth`` hidden layers of
    ``width`` units (ReLU / leaky-ReLU).  Player 1 = generator (non-saturating loss),
    player 2 = discriminator (BCE loss); losses are ``loss(x, y, batch)`` with
    ``batch = (real, z)``.  See :class:`MixtureGAN` for the helpers ``sample_data``,
    ``generate``, ``mode_coverage``, ``high_quality_fraction``.  Defaults are CPU-sized.
    """
    return MixtureGAN(
        key,
        n_modes=n_modes,
        radius=radius,
        std=std,
        latent_dim=latent_dim,
        width=width,
        depth=depth,
        batch_size=batch_size,
    )

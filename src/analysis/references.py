"""Reference generators: signals with known answers, beside every model.

A check is evidence only if it ranks generators whose quality is known the way it claims.
Each reference has the models' interface — ``n`` signals for each test image, shape
``(n_images, n, n_channels, n_times)`` — and a known place in the ranking:

- ``oracle`` (simulated data only): the saved noiseless mean plus trial noise drawn from the
  simulator's own noise process, a perfect generator;
- ``real_half``: real test repetitions held out from the target (the other half), the
  data's own ceiling for any metric;
- ``ridge_noise``: the ridge prediction plus Gaussian residuals with the training
  residuals' channel × time covariance, the linear-Gaussian generative model;
- ``mean_noise``: the training mean plus the same residuals, which knows nothing of the image;
- ``shuffled``: other signals with the image labels permuted (a derangement); the book
  permutes ``ridge_noise`` (:data:`analysis.names.SHUFFLED_SOURCE`).

The names and their expected ranks live in :mod:`analysis.names`. Scoring against real
data must then use the repetitions ``real_half`` did not take:
:func:`split_repetitions` gives both halves.
"""

from __future__ import annotations

import numpy as np


def split_repetitions(trials: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Split each image's repetitions into two halves at random (the same split per image).

    Parameters
    ----------
    trials : ndarray, shape (n_images, n_reps, n_channels, n_times), n_reps >= 2

    Returns
    -------
    (generator_half, target_half) : ndarrays, shapes (n_images, n_reps // 2, ...) and
        (n_images, n_reps - n_reps // 2, ...): ``real_half`` draws from the first; every
        generator, references included, is then scored against the second.
    """
    if trials.ndim != 4 or trials.shape[1] < 2:
        raise ValueError("trials: expected shape (n_images, n_reps >= 2, n_channels, n_times), "
                         f"found {trials.shape}")
    order = np.random.default_rng(seed).permutation(trials.shape[1])
    half = trials.shape[1] // 2
    return trials[:, order[:half]], trials[:, order[half:]]


class ResidualNoise:
    """Gaussian trial noise with the channel × time covariance of residuals around image means.

    Fit on single trials ``(n_images, n_reps, n_channels, n_times)``: the residuals ``R`` of
    the trials from their image's mean give ``Σ = Rᵀ R / (n_images · (n_reps − 1))``, the
    unbiased covariance of the (channel, time) noise (each image's mean costs one degree of
    freedom); samples are ``Σ^{1/2} z``, ``z ~ N(0, I)``.

    When ``R`` has more than ``max_rank`` columns and rows, ``Σ`` is approximated by
    probabilistic PCA (Tipping & Bishop 1999): its ``max_rank`` leading components (a
    randomized SVD) plus the remaining variance spread evenly over every entry, so the total
    power is kept. The exact SVD of THINGS-EEG2's 66 176 residual trials × 63 × 250 would
    need about 25 GB and hours on 2 cores; the built-in data (17 × 100) stay exact.
    """

    def __init__(self, max_rank: int = 2048, seed: int = 0) -> None:
        self.max_rank, self.seed = max_rank, seed
        self.factor: np.ndarray | None = None  # (n_features, rank): Σ ≈ factor @ factor.T + σ² I
        self.isotropic = 0.0  # σ, the standard deviation of the evenly spread remainder
        self.shape: tuple[int, int] | None = None

    def fit(self, trials: np.ndarray) -> "ResidualNoise":
        if trials.ndim != 4 or trials.shape[1] < 2:
            raise ValueError("trials: expected shape (n_images, n_reps >= 2, n_channels, "
                             f"n_times), found {trials.shape}")
        n_img, n_reps, n_ch, n_t = trials.shape
        residuals = (trials - trials.mean(axis=1, keepdims=True)).reshape(-1, n_ch * n_t)
        dof = n_img * (n_reps - 1)
        self.shape, self.isotropic = (n_ch, n_t), 0.0
        if min(residuals.shape) <= self.max_rank:
            # The square-root factor of Σ comes from the SVD of R, without forming Σ.
            _, s, vt = np.linalg.svd(residuals.astype(np.float64), full_matrices=False)
            self.factor = (vt.T * (s / np.sqrt(dof))).astype(np.float32)
            return self
        from sklearn.utils.extmath import randomized_svd

        _, s, vt = randomized_svd(residuals, self.max_rank, n_iter=2, random_state=self.seed)
        leading = s.astype(np.float64) ** 2 / dof
        # The trace of Σ, in float64 a block of trials at a time (not a second copy of R).
        total = sum(float(np.square(residuals[i:i + 4096], dtype=np.float64).sum())
                    for i in range(0, len(residuals), 4096)) / dof
        rest = max(total - leading.sum(), 0.0) / (residuals.shape[1] - self.max_rank)
        self.factor = (vt.T * np.sqrt(np.maximum(leading - rest, 0.0))).astype(np.float32)
        self.isotropic = float(np.sqrt(rest))
        return self

    @property
    def covariance(self) -> np.ndarray:
        """Σ, shape (n_channels * n_times, n_channels * n_times)."""
        self._check()
        sigma = self.factor.astype(np.float64) @ self.factor.T.astype(np.float64)
        return sigma + self.isotropic ** 2 * np.eye(len(sigma))

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` noise epochs, shape (n, n_channels, n_times), float32."""
        self._check()
        z = rng.standard_normal((n, self.factor.shape[1])).astype(np.float32)
        draws = z @ self.factor.T
        if self.isotropic:
            draws += self.isotropic * rng.standard_normal(draws.shape).astype(np.float32)
        return draws.reshape(n, *self.shape)

    def _check(self) -> None:
        if self.factor is None:
            raise RuntimeError("ResidualNoise used before fit")


def mean_plus_noise(means: np.ndarray, noise: ResidualNoise, n: int, seed: int = 0) -> np.ndarray:
    """``n`` signals per image: its predicted mean plus independent residual noise.

    Parameters
    ----------
    means : ndarray, shape (n_images, n_channels, n_times) or (n_channels, n_times)
        Per-image predictions (``ridge_noise``) or one mean for all (``mean_noise``).
    n_images is taken from ``means``; a single mean needs :func:`numpy.broadcast_to` first.

    Returns
    -------
    ndarray, float32, shape (n_images, n, n_channels, n_times)
    """
    if means.ndim != 3:
        raise ValueError(f"means: expected shape (n_images, n_channels, n_times), found {means.shape}")
    rng = np.random.default_rng(seed)
    draws = noise.sample(len(means) * n, rng).reshape(len(means), n, *means.shape[1:])
    return (means[:, None].astype(np.float32) + draws).astype(np.float32)


def real_half(generator_half: np.ndarray, n: int) -> np.ndarray:
    """The first ``n`` held-out real repetitions of each image (cycled if fewer are held out).

    Parameters
    ----------
    generator_half : ndarray, shape (n_images, n_held_out, n_channels, n_times)
        From :func:`split_repetitions`.
    """
    index = np.arange(n) % generator_half.shape[1]
    return generator_half[:, index].astype(np.float32)


def shuffled(samples: np.ndarray, seed: int = 0) -> np.ndarray:
    """A model's samples with image labels permuted so that no image keeps its own.

    Parameters
    ----------
    samples : ndarray, shape (n_images, n_samples, n_channels, n_times), n_images >= 2
    """
    n = len(samples)
    if n < 2:
        raise ValueError(f"samples: expected at least 2 images to permute, found {n}")
    rng = np.random.default_rng(seed)
    # A random cyclic shift of a random order is a derangement: every image moves.
    order = rng.permutation(n)
    target = np.empty(n, dtype=int)
    target[order] = np.roll(order, int(rng.integers(1, n)))
    return samples[target]

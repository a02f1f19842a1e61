"""Baselines that every generator is compared against, with the same interface.

- :class:`RidgeEncoder`: the field's linear encoding model (Gifford et al. 2022, BERG):
  ridge regression from the image embedding to every channel × time of the
  repetition-averaged response, the penalty chosen by efficient leave-one-out
  cross-validation (scikit-learn's ``RidgeCV``, one alpha per output).
- :class:`KernelRidgeEncoder`: a non-linear read-out of the same embedding (RBF kernel
  ridge, penalty and kernel width by K-fold CV). Beside ridge it asks whether the features
  hold image information that a linear map misses, which a neural generator could use.
- :class:`MeanResponse`: predicts the training grand-average response for every image; any
  model worth having must beat it on image-specific metrics.

All are fit on training images and ``predict(pooled) -> (n_images, n_channels, n_times)``.
"""

from __future__ import annotations

import numpy as np
from sklearn.kernel_approximation import Nystroem
from sklearn.kernel_ridge import KernelRidge
from sklearn.linear_model import RidgeCV
from sklearn.model_selection import GridSearchCV, KFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

DEFAULT_ALPHAS = np.logspace(-1, 6, 22)


def _check_xy(features: np.ndarray, responses: np.ndarray | None = None) -> None:
    if features.ndim != 2:
        raise ValueError(f"features: expected shape (n_images, embed_dim), found {features.shape}")
    if responses is not None:
        if responses.ndim != 3:
            raise ValueError("responses: expected shape (n_images, n_channels, n_times), "
                             f"found {responses.shape}")
        if len(responses) != len(features):
            raise ValueError(f"features has {len(features)} images but responses has "
                             f"{len(responses)}")


class RidgeEncoder:
    """Linear encoding model: standardised image embedding → channel × time response.

    Parameters
    ----------
    alphas : array-like
        Candidate penalties; the best per output (channel × time) is chosen by efficient
        leave-one-out CV on the training images (``RidgeCV(alpha_per_target=True)``).
    max_block : int
        Most image × output values fit at once. Every output has its own penalty and
        weights, so fitting the outputs in blocks gives the same model; it bounds the
        leave-one-out arrays, which at THINGS-EEG2's 250 Hz layout in one piece (16 544
        images × 63 × 250 outputs, several float64 copies) took more than 20 GB.
    """

    name = "ridge"

    def __init__(self, alphas: np.ndarray = DEFAULT_ALPHAS, max_block: int = 20_000_000):
        self.alphas = np.asarray(alphas, dtype=float)
        self.max_block = max_block
        self.scaler: StandardScaler | None = None
        self.coef_: np.ndarray | None = None
        self.intercept_: np.ndarray | None = None
        self._alpha: np.ndarray | None = None
        self.shape: tuple[int, int] | None = None

    def fit(self, features: np.ndarray, responses: np.ndarray) -> "RidgeEncoder":
        """Fit on training images.

        Parameters
        ----------
        features : ndarray, shape (n_images, embed_dim)
        responses : ndarray, shape (n_images, n_channels, n_times)
            Repetition-averaged training responses.
        """
        _check_xy(features, responses)
        self.shape = responses.shape[1:]
        self.scaler = StandardScaler().fit(features)
        x = self.scaler.transform(features)
        y = responses.reshape(len(responses), -1)
        block = max(1, self.max_block // len(y))
        coef, intercept, alpha = [], [], []
        for start in range(0, y.shape[1], block):
            ridge = RidgeCV(alphas=self.alphas, alpha_per_target=True)
            ridge.fit(x, y[:, start:start + block])
            coef.append(ridge.coef_.reshape(-1, x.shape[1]))
            intercept.append(np.atleast_1d(ridge.intercept_))
            alpha.append(np.atleast_1d(ridge.alpha_))
        self.coef_, self.intercept_ = np.concatenate(coef), np.concatenate(intercept)
        self._alpha = np.concatenate(alpha)
        return self

    @property
    def alpha_(self) -> np.ndarray:
        """Chosen penalty per channel × time, shape (n_channels, n_times)."""
        return self._alpha.reshape(self.shape)

    def predict(self, features: np.ndarray) -> np.ndarray:
        """Predicted responses, shape (n_images, n_channels, n_times)."""
        if self.coef_ is None:
            raise RuntimeError("RidgeEncoder.predict called before fit")
        _check_xy(features)
        out = self.scaler.transform(features) @ self.coef_.T + self.intercept_
        return out.reshape(len(features), *self.shape).astype(np.float32)


class KernelRidgeEncoder:
    """Non-linear encoding model: RBF kernel ridge on the standardised image embedding.

    One penalty and one kernel width for all outputs, chosen by ``n_folds``-fold CV over
    ``alphas`` × ``gammas`` (the widths are given per feature dimension: ``gamma = g / d``,
    so that ``g = 1`` is the usual ``1 / n_features`` scale of standardised inputs).

    Up to ``max_exact`` training images the kernel is exact. Beyond, its O(n³) solves
    dominate, so the kernel is Nyström-approximated on ``n_landmarks`` random images
    (sklearn ``Nystroem``; ridge on those features without intercept is kernel ridge with
    the approximated kernel), its penalty chosen by efficient leave-one-out inside each
    fit: O(n · n_landmarks²). At THINGS-EEG2's 16 544 images on 2 cores: about 290 s
    exact, 50 s approximated.
    """

    name = "kernel_ridge"

    def __init__(self, alphas=(0.3, 1.0, 3.0, 10.0), gammas=(0.3, 1.0, 3.0), n_folds: int = 3,
                 seed: int = 0, max_exact: int = 2000, n_landmarks: int = 1000):
        self.alphas, self.gammas = tuple(alphas), tuple(gammas)
        self.n_folds, self.seed = n_folds, seed
        self.max_exact, self.n_landmarks = max_exact, n_landmarks
        self.pipeline = None
        self.shape: tuple[int, int] | None = None

    def fit(self, features: np.ndarray, responses: np.ndarray) -> "KernelRidgeEncoder":
        """Fit on training images (shapes as :meth:`RidgeEncoder.fit`)."""
        _check_xy(features, responses)
        self.shape = responses.shape[1:]
        gammas = [g / features.shape[1] for g in self.gammas]
        if len(features) <= self.max_exact:
            pipeline = make_pipeline(StandardScaler(), KernelRidge(kernel="rbf"))
            grid = {"kernelridge__alpha": self.alphas, "kernelridge__gamma": gammas}
        else:
            # One SVD per fit serves every alpha; the folds search the kernel width only.
            pipeline = make_pipeline(StandardScaler(),
                                     Nystroem(kernel="rbf", n_components=self.n_landmarks,
                                              random_state=self.seed),
                                     RidgeCV(alphas=self.alphas, fit_intercept=False))
            grid = {"nystroem__gamma": gammas}
        search = GridSearchCV(pipeline, grid,
                              cv=KFold(self.n_folds, shuffle=True, random_state=self.seed))
        self.pipeline = search.fit(features, responses.reshape(len(responses), -1)).best_estimator_
        return self

    @property
    def approximate(self) -> bool:
        """Whether the fitted kernel is Nyström-approximated (more than ``max_exact`` images)."""
        return "nystroem" in self.pipeline.named_steps

    @property
    def params_(self) -> dict:
        """The chosen ``alpha`` and ``gamma``."""
        steps = self.pipeline.named_steps
        if self.approximate:
            return {"alpha": steps["ridgecv"].alpha_, "gamma": steps["nystroem"].gamma}
        return {"alpha": steps["kernelridge"].alpha, "gamma": steps["kernelridge"].gamma}

    def predict(self, features: np.ndarray) -> np.ndarray:
        """Predicted responses, shape (n_images, n_channels, n_times)."""
        if self.pipeline is None:
            raise RuntimeError("KernelRidgeEncoder.predict called before fit")
        _check_xy(features)
        return self.pipeline.predict(features).reshape(len(features), *self.shape).astype(np.float32)


class MeanResponse:
    """Predicts the training grand-average response for every image."""

    name = "train_mean"

    def __init__(self):
        self.mean_: np.ndarray | None = None

    def fit(self, features: np.ndarray, responses: np.ndarray) -> "MeanResponse":
        _check_xy(features, responses)
        self.mean_ = responses.mean(axis=0).astype(np.float32)
        return self

    def predict(self, features: np.ndarray) -> np.ndarray:
        if self.mean_ is None:
            raise RuntimeError("MeanResponse.predict called before fit")
        _check_xy(features)
        return np.broadcast_to(self.mean_, (len(features), *self.mean_.shape)).copy()

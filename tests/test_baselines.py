"""Baselines: ridge encoding model and train-mean response."""

import numpy as np
import pytest

from analysis.models.baselines import MeanResponse, RidgeEncoder


def linear_data(n_images, rng, noise=0.0, weights=None):
    features = rng.standard_normal((n_images, 12))
    weights = rng.standard_normal((12, 3 * 5)) if weights is None else weights
    responses = features @ weights + noise * rng.standard_normal((n_images, 15))
    return features, responses.reshape(n_images, 3, 5), weights


def test_ridge_recovers_a_noiseless_linear_map():
    rng = np.random.default_rng(0)
    x_train, y_train, w = linear_data(200, rng)
    x_test, y_test, _ = linear_data(50, rng, weights=w)
    model = RidgeEncoder().fit(x_train, y_train)
    prediction = model.predict(x_test)
    assert prediction.shape == (50, 3, 5) and prediction.dtype == np.float32
    np.testing.assert_allclose(prediction, y_test, atol=0.05 * y_test.std())
    assert model.alpha_.shape == (3, 5)
    assert model.alpha_.max() <= 1.0  # no noise: cross-validation picks the weakest penalty


def test_ridge_penalises_more_when_the_targets_are_pure_noise():
    rng = np.random.default_rng(1)
    x, _, _ = linear_data(200, rng)
    noise = rng.standard_normal((200, 3, 5))
    model = RidgeEncoder().fit(x, noise)
    assert np.median(model.alpha_) >= 1e3
    assert np.abs(model.predict(x)).mean() < 0.2 * np.abs(noise).mean()


def test_mean_response_predicts_the_training_grand_average():
    rng = np.random.default_rng(2)
    x, y, _ = linear_data(30, rng)
    prediction = MeanResponse().fit(x, y).predict(x[:4])
    assert prediction.shape == (4, 3, 5)
    np.testing.assert_allclose(prediction, np.broadcast_to(y.mean(0), (4, 3, 5)), rtol=1e-6)


def test_shape_errors_name_the_argument():
    rng = np.random.default_rng(3)
    x, y, _ = linear_data(10, rng)
    with pytest.raises(ValueError, match=r"responses: expected shape \(n_images, n_channels, n_times\)"):
        RidgeEncoder().fit(x, y.reshape(10, -1))
    with pytest.raises(ValueError, match="features has 10 images but responses has 9"):
        RidgeEncoder().fit(x, y[:9])
    with pytest.raises(RuntimeError, match="before fit"):
        RidgeEncoder().predict(x)

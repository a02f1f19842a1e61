"""Baselines: ridge and kernel-ridge encoding models and the train-mean response."""

import numpy as np
import pytest
from sklearn.linear_model import RidgeCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from analysis.models.baselines import KernelRidgeEncoder, MeanResponse, RidgeEncoder


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


def test_ridge_fit_in_blocks_of_outputs_is_the_same_model():
    rng = np.random.default_rng(5)
    x, y, _ = linear_data(200, rng, noise=3.0)  # noisy: the penalties differ by output
    whole = RidgeEncoder().fit(x, y)
    blocks = RidgeEncoder(max_block=200 * 4).fit(x, y)  # 4 of the 15 outputs at a time
    assert len(np.unique(whole.alpha_)) > 1
    np.testing.assert_array_equal(blocks.alpha_, whole.alpha_)
    np.testing.assert_allclose(blocks.predict(x), whole.predict(x), rtol=1e-5, atol=1e-6)
    # The same as scikit-learn's RidgeCV on the standardised features in one piece.
    reference = make_pipeline(StandardScaler(), RidgeCV(alphas=whole.alphas, alpha_per_target=True))
    reference.fit(x, y.reshape(200, -1))
    np.testing.assert_allclose(whole.predict(x).reshape(200, -1), reference.predict(x),
                               rtol=1e-5, atol=1e-6)


def test_ridge_penalises_more_when_the_targets_are_pure_noise():
    rng = np.random.default_rng(1)
    x, _, _ = linear_data(200, rng)
    noise = rng.standard_normal((200, 3, 5))
    model = RidgeEncoder().fit(x, noise)
    assert np.median(model.alpha_) >= 1e3
    assert np.abs(model.predict(x)).mean() < 0.2 * np.abs(noise).mean()


def test_kernel_ridge_learns_what_a_linear_map_cannot():
    # Responses that depend on the features only through |x0| (an even function): no linear
    # map of x explains any of their variance, an RBF kernel does.
    rng = np.random.default_rng(4)
    x = rng.standard_normal((400, 2))
    y = np.repeat(np.abs(x[:, :1])[:, :, None], 3, axis=2) * np.arange(1, 4)  # (400, 1, 3)
    train, test = slice(0, 300), slice(300, None)
    kernel = KernelRidgeEncoder(alphas=(0.01, 0.1), gammas=(0.3, 1.0)).fit(x[train], y[train])
    linear = RidgeEncoder().fit(x[train], y[train])
    residual = {name: np.mean((m.predict(x[test]) - y[test]) ** 2) / y[test].var()
                for name, m in (("kernel", kernel), ("linear", linear))}
    assert kernel.predict(x[test]).shape == (100, 1, 3)
    assert residual["kernel"] < 0.1 and residual["linear"] > 0.5
    assert kernel.params_["alpha"] in (0.01, 0.1) and kernel.params_["gamma"] in (0.15, 0.5)
    assert not kernel.approximate
    # More training images than max_exact: Nyström on 100 landmarks still learns |x0|.
    nystroem = KernelRidgeEncoder(alphas=(0.01, 0.1), gammas=(0.3, 1.0), max_exact=200,
                                  n_landmarks=100).fit(x[train], y[train])
    assert nystroem.approximate and nystroem.params_["gamma"] in (0.15, 0.5)
    assert np.mean((nystroem.predict(x[test]) - y[test]) ** 2) / y[test].var() < 0.1
    with pytest.raises(RuntimeError, match="before fit"):
        KernelRidgeEncoder().predict(x)
    with pytest.raises(ValueError, match="features has 400 images but responses has 399"):
        KernelRidgeEncoder().fit(x, y[:399])


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

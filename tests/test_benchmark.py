"""The speed benchmark (``python -m analysis bench``) at a tiny size: every figure present."""

from __future__ import annotations

import pytest

from analysis import benchmark
from analysis.models.diffusion import DDIMSampler


def test_model_benchmark_times_training_and_each_sampler(monkeypatch):
    # DDPM's 1000 network calls would dominate the test; its rate is computed the same way.
    monkeypatch.setattr(benchmark, "DDPMSampler", lambda: DDIMSampler(2))
    result = benchmark.bench_model("ci", device="cpu", n_channels=4, n_times=16, train_steps=1,
                                   sample_batch=2, ddpm_batch=1)
    assert result["profile_sampler"] == "DPMSolverSampler(steps=10)"  # the ci profile's own
    for key in ("train_samples_per_s", "ddim50_signals_per_s", "ddpm_signals_per_s",
                "profile_sampler_signals_per_s"):
        assert result[key] > 0, key


def test_training_benchmark_follows_the_conditioning_and_batch_size():
    from analysis.benchmark import bench_training

    attention = bench_training("ci", "cross_attention", batch_size=8, device="cpu",
                               train_steps=2)
    blind = bench_training("ci", "none", batch_size=4, device="cpu", train_steps=2)
    assert attention["conditioning"] == "cross_attention" and attention["batch_size"] == 8
    assert blind["batch_size"] == 4 and blind["n_parameters"] < attention["n_parameters"]
    for row in (attention, blind):
        assert row["train_samples_per_s"] > 0
        assert row["steps_per_s"] == pytest.approx(row["train_samples_per_s"] / row["batch_size"],
                                                   rel=0.01, abs=0.01)


def test_network_input_shapes_are_the_profiles_feature_components():
    from analysis.benchmark import encoder_shapes, network_input_shapes
    from analysis.config import get_profile

    default = get_profile("default")  # EfficientNet-Lite0: 1776-dim pooled and 7 × 7 tokens
    assert encoder_shapes(default.encoder) == (1776, 49, 1776)
    assert network_input_shapes(default) == (128, 49, 128)  # unet feature_components=128
    ci = get_profile("ci")  # keeps every dimension
    assert network_input_shapes(ci) == encoder_shapes(ci.encoder)

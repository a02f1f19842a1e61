"""The speed benchmark (``python -m analysis bench``) at a tiny size: every figure present."""

from __future__ import annotations

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

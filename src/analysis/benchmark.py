"""Speed and memory figures, printed and recorded rather than asserted in tests.

``python -m analysis bench`` runs these for the chosen profiles on the current device and
prints one JSON document; ``--output`` keeps it (``benchmarks/results/``) so runs on
different machines can be compared.
"""

from __future__ import annotations

import os
import platform
import resource
import tempfile
import time
import warnings
from pathlib import Path

import torch

from .config import EncoderConfig, get_profile
from .devices import select_device
from .models.conditioning import Condition, n_feature_dims
from .models.diffusion import DDIMSampler, DDPMSampler, make_sampler
from .models.unet1d import UNet1D, UNetConfig
from .training import TrainConfig, make_diffusion, make_optimizer


def machine() -> dict:
    return {"python": platform.python_version(), "torch": torch.__version__,
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "cuda": torch.cuda.is_available(),
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def sync_device(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_simulation(profile: str) -> dict:
    """Seconds to simulate and write the profile's whole built-in dataset."""
    from .data.simulated import config_for_profile, simulate_dataset

    config = config_for_profile(profile)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        simulate_dataset(Path(tmp) / "sim", config, progress=False)
        seconds = time.perf_counter() - start
    return {"profile": profile, "seconds": round(seconds, 2), "subjects": config.size.n_subjects,
            "train_images": config.size.n_train_images, "test_images": config.size.n_test_concepts}


def encoder_shapes(encoder: EncoderConfig) -> tuple[int, int, int]:
    """(embed_dim, n_tokens, token_dim) of an encoder, read off a random-init copy (the
    shapes do not depend on the weights, and random init needs no download)."""
    from .encoders import build_encoder

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the random-init warning: no features are used
        built = build_encoder(encoder.changed(pretrained=""), device="cpu")
    return built.embed_dim, built.n_tokens, built.token_dim


def network_input_shapes(spec) -> tuple[int, int, int]:
    """(embed_dim, n_tokens, token_dim) the profile ``spec``'s network reads: its encoder's
    shapes (:func:`encoder_shapes`), with the feature dimensions cut to the leading principal
    components where the profile keeps some (``unet['feature_components']``,
    :class:`~analysis.models.conditioning.FeatureScaler`)."""
    embed, n_tokens, token_dim = encoder_shapes(spec.encoder)
    components = spec.unet.get("feature_components")
    return n_feature_dims(embed, components), n_tokens, n_feature_dims(token_dim, components)


def _model_and_inputs(profile: str, conditioning: str, device: torch.device,
                      n_channels: int, n_times: int):
    """The profile's U-Net with ``conditioning``, its diffusion and train config, and a
    maker of synthetic batches of the real shapes (speed does not depend on the values)."""
    spec = get_profile(profile)
    embed, n_tokens, token_dim = network_input_shapes(spec)
    unet = UNetConfig(n_channels=n_channels, conditioning=conditioning, embed_dim=embed,
                      token_dim=token_dim, n_tokens=n_tokens, **spec.unet)
    train = TrainConfig(**spec.train)
    torch.manual_seed(0)
    model = UNet1D(unet).to(device)

    def batch(n):
        return (torch.randn(n, n_channels, n_times, device=device),
                Condition(torch.randn(n, embed, device=device),
                          torch.randn(n, n_tokens, token_dim, device=device)))

    return model, make_diffusion(train), train, batch


def _training_rate(model, diffusion, train: TrainConfig, batch, batch_size: int,
                   device: torch.device, steps: int) -> float:
    """Training samples per second of the training loop's loss (its timestep draw,
    weighting, condition dropout and precision), backward pass and AdamW step; two warm-up
    steps are not timed."""
    optimizer = make_optimizer(model, train)
    x0, cond = batch(batch_size)
    for step in range(steps + 2):
        if step == 2:
            sync_device(device)
            start = time.perf_counter()
        with train.autocast(device):  # the training loop's precision
            loss = diffusion.loss(model, x0, cond=cond, cond_drop_prob=train.cond_drop_prob)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    sync_device(device)
    return steps * batch_size / (time.perf_counter() - start)


def bench_training(profile: str, conditioning: str = "cross_attention", *,
                   batch_size: int | None = None, device: str | None = None,
                   n_channels: int = 17, n_times: int = 100, train_steps: int = 10) -> dict:
    """Training samples/s of the profile's U-Net with one conditioning and batch size
    (default: the profile's), on synthetic inputs of the real shapes."""
    device = select_device(device)
    model, diffusion, train, batch = _model_and_inputs(profile, conditioning, device,
                                                       n_channels, n_times)
    batch_size = batch_size or train.batch_size
    rate = _training_rate(model, diffusion, train, batch, batch_size, device, train_steps)
    return {"profile": profile, "conditioning": conditioning, "device": str(device),
            "threads": torch.get_num_threads(), "batch_size": batch_size,
            "n_parameters": model.n_parameters(), "train_samples_per_s": round(rate, 1),
            "steps_per_s": round(rate / batch_size, 2)}


def bench_model(profile: str, *, device: str | None = None, n_channels: int = 17,
                n_times: int = 100, train_steps: int = 10, sample_batch: int = 32,
                ddpm_batch: int = 4) -> dict:
    """Training samples/s; DDIM-50, DDPM and the profile's own sampler's signals/s of the
    profile's cross-attention U-Net.

    Synthetic inputs of the real shapes are used: speed does not depend on the values.
    """
    device = select_device(device)
    spec = get_profile(profile)
    model, diffusion, train, batch = _model_and_inputs(profile, "cross_attention", device,
                                                       n_channels, n_times)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    train_rate = _training_rate(model, diffusion, train, batch, train.batch_size, device,
                                train_steps)

    model.eval()
    rates = {}
    own = spec.sampling
    samplers = {"ddim50": (DDIMSampler(50), sample_batch), "ddpm": (DDPMSampler(), ddpm_batch),
                "profile": (make_sampler(own.method, own.steps, own.eta), sample_batch)}
    for name, (sampler, n) in samplers.items():
        _, cond = batch(n)
        sync_device(device)
        start = time.perf_counter()
        with train.autocast(device):  # as TrainedModel.generate samples
            diffusion.sample(model, (n, n_channels, n_times), sampler, cond=cond, device=device)
        sync_device(device)
        rates[name] = n / (time.perf_counter() - start)
    return {"profile": profile, "device": str(device), "n_parameters": model.n_parameters(),
            "batch_size": train.batch_size, "train_samples_per_s": round(train_rate, 1),
            "ddim50_signals_per_s": round(rates["ddim50"], 2),
            "ddpm_signals_per_s": round(rates["ddpm"], 3),
            "profile_sampler": repr(samplers["profile"][0]),
            "profile_sampler_signals_per_s": round(rates["profile"], 2),
            "diffusion_steps": train.n_diffusion_steps,
            "peak_memory_mb": round(peak_memory_mb(device), 1)}


def bench_features(profile: str, *, n_images: int = 64, pretrained: bool = True,
                   device: str | None = None) -> dict:
    """Feature extraction speed of the profile's encoder (``pretrained=False``: random init)."""
    from .encoders import benchmark_features, build_encoder

    encoder = get_profile(profile).encoder
    if not pretrained:
        encoder = encoder.changed(pretrained="")
    return benchmark_features(build_encoder(encoder, device=device), n_images=n_images)

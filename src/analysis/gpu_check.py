"""One GPU check: the ``paper`` model trained on full-size data for a fixed number of steps.

``make gpu-check`` runs it on one GPU and then with DDP on every GPU (``torchrun``); each
run prints one JSON line: training samples/s (over all ranks), DDIM signals/s, peak memory
and the sizes. The data are random tensors of the real shapes held in host memory, so a
step pays for moving its batch to the device as real training does (speed does not depend
on the values). On a machine without CUDA the same code runs on CPU; the tests use the
``tiny`` size there.

Command line::

    python -m analysis.gpu_check --size things-eeg2-250hz --steps 50
    torchrun --nproc_per_node=8 -m analysis.gpu_check --size things-eeg2-250hz --steps 50
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from .benchmark import peak_memory_mb, sync_device, network_input_shapes
from .config import get_profile
from .models.conditioning import Condition
from .models.diffusion import DDIMSampler
from .models.unet1d import UNet1D, UNetConfig
from .training import TrainConfig, init_distributed, make_diffusion, make_optimizer


@dataclass(frozen=True)
class CheckSize:
    """Training set of the check: ``n_train`` images × ``n_reps`` single trials of
    ``n_channels`` × ``n_times`` (float32, host memory)."""

    n_train: int
    n_reps: int
    n_channels: int
    n_times: int


#: The real datasets' training sets (16 540 THINGS-EEG2 images × 4 repetitions; 22 248
#: THINGS-MEG images shown once), and a size the CPU tests can afford.
SIZES = {"things-eeg2": CheckSize(16540, 4, 17, 100),
         "things-eeg2-250hz": CheckSize(16540, 4, 63, 250),
         "things-meg": CheckSize(22248, 1, 271, 281),
         "tiny": CheckSize(24, 2, 4, 32)}


def _setup() -> tuple[int, int, torch.device]:
    """(rank, world size, device), the process group joined as training joins it."""
    rank, world, local = init_distributed()
    cuda = torch.cuda.is_available()
    device = torch.device(f"cuda:{local}") if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
        torch.cuda.reset_peak_memory_stats(device)
    return rank, world, device


def run_check(size: str, steps: int, *, profile: str = "paper", batch_size: int | None = None,
              sample_batch: int = 32, sample_steps: int = 50, seed: int = 0) -> dict:
    """Train the profile's cross-attention U-Net for ``steps`` optimiser steps on random
    data of :data:`SIZES` ``[size]``, then draw ``sample_batch`` DDIM signals; returns the
    figures (rank 0's, rates summed over ranks).

    Every rank takes the same ``steps`` (the DDP all-reduce needs every rank's step).
    """
    if size not in SIZES:
        raise ValueError(f"size must be one of {sorted(SIZES)}, got {size!r}")
    shape = SIZES[size]
    rank, world, device = _setup()
    spec = get_profile(profile)
    train = TrainConfig(**{**spec.train, **({"batch_size": batch_size} if batch_size else {})})
    embed, n_tokens, token_dim = network_input_shapes(spec)
    generator = torch.Generator().manual_seed(seed + rank)
    signals = torch.randn(shape.n_train * shape.n_reps, shape.n_channels, shape.n_times,
                          generator=generator)
    pooled = torch.randn(shape.n_train, embed, generator=generator)
    tokens = torch.randn(shape.n_train, n_tokens, token_dim, generator=generator)
    if device.type == "cuda":
        signals, pooled, tokens = signals.pin_memory(), pooled.pin_memory(), tokens.pin_memory()
    unet = UNetConfig(n_channels=shape.n_channels, conditioning="cross_attention",
                      embed_dim=embed, token_dim=token_dim, n_tokens=n_tokens, **spec.unet)
    torch.manual_seed(seed)  # the same initial weights on every rank
    model = UNet1D(unet).to(device)
    network = (DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda"
                                       else None) if world > 1 else model)
    diffusion = make_diffusion(train)
    optimizer = make_optimizer(model, train)

    def step() -> None:
        rows = torch.randint(len(signals), (train.batch_size,), generator=generator)
        images = rows // shape.n_reps
        x0 = signals[rows].to(device, non_blocking=True)
        cond = Condition(pooled[images].to(device, non_blocking=True),
                         tokens[images].to(device, non_blocking=True))
        with train.autocast(device):
            loss = diffusion.loss(network, x0, cond=cond, cond_drop_prob=train.cond_drop_prob)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    step()  # warm-up (kernels, allocator), not timed
    sync_device(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    sync_device(device)
    train_seconds = time.perf_counter() - start

    model.eval()
    cond = Condition(pooled[:sample_batch].to(device), tokens[:sample_batch].to(device))
    sync_device(device)
    start = time.perf_counter()
    with torch.no_grad(), train.autocast(device):
        diffusion.sample(model, (len(cond.pooled), shape.n_channels, shape.n_times),
                         DDIMSampler(sample_steps), cond=cond, device=device)
    sync_device(device)
    sample_seconds = time.perf_counter() - start
    result = {
        "size": size, "profile": profile, "world_size": world, "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "n_parameters": model.n_parameters(), "batch_size_per_rank": train.batch_size,
        "steps": steps, "data_shape": [len(signals), shape.n_channels, shape.n_times],
        "host_data_gb": round(signals.numel() * 4 / 1e9, 2),
        "train_samples_per_s": round(world * steps * train.batch_size / train_seconds, 1),
        f"ddim{sample_steps}_signals_per_s": round(world * len(cond.pooled) / sample_seconds, 2),
        "peak_memory_mb": round(peak_memory_mb(device), 1),
        "torch": torch.__version__,
    }
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
    return result if rank == 0 else {}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m analysis.gpu_check", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=sorted(SIZES), default="things-eeg2-250hz")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--profile", default="paper")
    parser.add_argument("--batch-size", type=int, help="per rank (default: the profile's)")
    parser.add_argument("--sample-batch", type=int, default=32)
    args = parser.parse_args(argv)
    result = run_check(args.size, args.steps, profile=args.profile,
                       batch_size=args.batch_size, sample_batch=args.sample_batch)
    if result:
        print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

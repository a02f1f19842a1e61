"""The GPU check (analysis.gpu_check) on CPU at its tiny size: one process, and two gloo
processes under torchrun (the DDP path of `make gpu-check`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from analysis.gpu_check import SIZES, main, run_check


def test_one_process_trains_samples_and_reports_its_figures(capsys):
    assert main(["--size", "tiny", "--steps", "3", "--profile", "ci", "--sample-batch", "4"]) == 0
    result = json.loads(capsys.readouterr().out)
    tiny = SIZES["tiny"]
    assert result["world_size"] == 1 and result["device"] == "cpu"
    assert result["data_shape"] == [tiny.n_train * tiny.n_reps, tiny.n_channels, tiny.n_times]
    assert result["steps"] == 3 and result["batch_size_per_rank"] == 32
    assert result["train_samples_per_s"] > 0 and result["ddim50_signals_per_s"] > 0
    assert result["peak_memory_mb"] > 0


def test_real_sizes_are_the_datasets_and_an_unknown_size_is_refused():
    assert SIZES["things-eeg2-250hz"].n_train * SIZES["things-eeg2-250hz"].n_reps == 66160
    assert (SIZES["things-meg"].n_channels, SIZES["things-meg"].n_times) == (271, 281)
    with pytest.raises(ValueError, match="size must be one of"):
        run_check("huge", 1)


def test_two_gloo_processes_take_the_same_steps_and_finish():
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         "-m", "analysis.gpu_check", "--size", "tiny", "--steps", "3", "--profile", "ci",
         "--batch-size", "5", "--sample-batch", "4"],
        capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert len(lines) == 1  # rank 0 reports for both
    assert lines[0]["world_size"] == 2 and lines[0]["batch_size_per_rank"] == 5

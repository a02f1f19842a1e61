"""The command line, run as a user would: ``python -m analysis …``."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import warnings

import numpy as np
import pytest

from analysis.cli import main
from analysis.data.simulated import load_simulated
from analysis.data.things_eeg2 import DataFormatError


def run_cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "analysis", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=300)


def test_help_lists_every_command_and_reads_well():
    result = run_cli("--help")
    assert result.returncode == 0
    for command in ("simulate", "features", "bench", "book"):
        assert command in result.stdout
    assert "built-in simulated dataset" in result.stdout


def test_simulate_help_documents_its_options():
    result = run_cli("simulate", "--help")
    assert result.returncode == 0
    for option in ("--profile", "--out", "--subjects", "--seed", "--modality"):
        assert option in result.stdout


def test_unknown_profile_is_refused_with_the_valid_names():
    result = run_cli("simulate", "--profile", "huge")
    assert result.returncode == 2
    assert "invalid choice: 'huge'" in result.stderr and "default" in result.stderr


def test_simulate_ci_profile_writes_a_dataset_the_loader_reads(tmp_path, capsys):
    out = tmp_path / "sim"
    assert main(["simulate", "--profile", "ci", "--out", str(out), "--subjects", "1",
                 "--quiet"]) == 0
    assert "simulated EEG dataset (ci, seed 0, subjects [1])" in capsys.readouterr().out
    dataset = load_simulated(out, 1)
    assert dataset.train.signals.shape == (120, 4, 17, 100)
    assert dataset.test.signals.shape == (40, 16, 17, 100)
    manifest = json.loads((out / "simulation.json").read_text())
    assert manifest["config"]["seed"] == 0 and manifest["versions"]["mne"]
    assert np.isfinite(dataset.test.signals).all()


def test_features_on_a_missing_root_names_the_metadata_file(tmp_path, capsys):
    args = ["features", "--root", str(tmp_path / "nowhere"), "--quiet"]
    assert main(args) == 2
    assert "error: image_metadata.npy: file not found" in capsys.readouterr().err
    with pytest.raises(DataFormatError, match="image_metadata.npy"):  # the traceback on demand
        main(["--verbose", *args])


@pytest.fixture(scope="module")
def simulated_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli") / "sim"
    assert main(["simulate", "--profile", "ci", "--out", str(root), "--subjects", "1", "--quiet"]) == 0
    return root


def _one_error_line(result) -> str:
    """What a user sees on bad input: exit status 2, no traceback, one ``error:`` line."""
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr
    return errors[0]


def test_bad_input_prints_one_error_line_not_a_traceback(simulated_root, tmp_path):
    train = ["train", "--profile", "ci", "--quiet", "--checkpoints", str(tmp_path / "ckpt"),
             "--cache-dir", str(tmp_path / "cache")]
    # A missing root, a subject the root does not have, a truncated data file: each names
    # what is wrong.
    line = _one_error_line(run_cli(*train, "--root", str(tmp_path / "nowhere")))
    assert "nowhere" in line and "simulate" in line
    line = _one_error_line(run_cli(*train, "--root", str(simulated_root), "--subject", "7"))
    assert "sub-07" in line or "subject 7" in line
    broken = tmp_path / "broken"
    shutil.copytree(simulated_root, broken)
    data = broken / "preprocessed_data" / "sub-01" / "preprocessed_eeg_training.npy"
    data.write_bytes(data.read_bytes()[:1000])
    line = _one_error_line(run_cli(*train, "--root", str(broken)))
    assert "preprocessed_eeg_training.npy" in line


def test_features_reports_random_init_and_reuses_its_cache(tmp_path, capsys):
    root, cache = tmp_path / "sim", tmp_path / "cache"
    main(["simulate", "--profile", "ci", "--out", str(root), "--subjects", "1", "--quiet"])
    args = ["features", "--profile", "ci", "--root", str(root), "--cache-dir", str(cache), "--quiet"]
    with pytest.warns(UserWarning, match="random init"):
        assert main(args) == 0
    first = capsys.readouterr().out
    assert "160 images" in first and "CLIP weights: random init" in first
    assert "cache written" in first
    with pytest.warns(UserWarning, match="random init"):
        main(args)
    assert "cache hit" in capsys.readouterr().out
    assert len(list(cache.glob("*.npz"))) == 1
    # Any encoder through the command: the pretrained CNN, with its label.
    main(args + ["--encoder", "timm", "--stages", "blocks.4", "conv_head"])
    out = capsys.readouterr().out
    assert "ImageNet-pretrained EfficientNet-Lite0, not CLIP" in out and "tokens (160, 49, 1392)" in out
    assert len(list(cache.glob("*.npz"))) == 2


def test_a_missing_weights_file_is_an_error_naming_it(tmp_path, capsys):
    assert main(["features", "--profile", "ci", "--root", str(tmp_path), "--encoder", "timm",
                 "--pretrained", str(tmp_path / "missing.pth"), "--quiet"]) == 2
    assert "missing.pth" in capsys.readouterr().err


def test_features_for_things_meg_serve_the_loaded_participant(tmp_path, capsys):
    """`features --dataset things-meg` lists the images from the epochs' metadata (no
    signals read) in the loader's order, so the run that loads the participant hits the
    same cache."""
    from analysis import pipeline
    from analysis.config import get_profile

    root, cache = tmp_path / "meg", tmp_path / "cache"
    main(["simulate", "--profile", "ci", "--modality", "meg", "--out", str(root),
          "--subjects", "1", "--quiet"])
    args = ["features", "--profile", "ci", "--dataset", "things-meg", "--root", str(root),
            "--cache-dir", str(cache), "--quiet"]
    with pytest.warns(UserWarning, match="random init"):
        assert main(args) == 0
    assert "160 images" in capsys.readouterr().out
    dataset = pipeline.load_dataset("things-meg", root, 1)
    assert dataset.train.n_images + dataset.test.n_images == 160
    with warnings.catch_warnings():  # the random-init warning, once per process at most
        warnings.simplefilter("ignore")
        features = pipeline.dataset_features(dataset, get_profile("ci").encoder, cache,
                                             progress=False)
    assert features.meta.get("cache_hit")
    assert len(list(cache.glob("*.npz"))) == 1

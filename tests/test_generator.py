"""Signals for any image from a trained checkpoint, as MNE epochs; the model card."""

from __future__ import annotations

import json
import warnings

import mne
import numpy as np
import pytest
from PIL import Image

from analysis import pipeline
from analysis.cli import main
from analysis.config import SamplingConfig, get_profile
from analysis.data import simulated as sim
from analysis.data.contract import DataFormatError
from analysis.generator import TO_SI, image_paths, load_generator, write_epochs
from analysis.model_card import card_markdown, read_model_card
from analysis.training import RECORDING_INFO


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A ci-profile cross-attention generator trained for one epoch (the tiny random ViT)."""
    root = tmp_path_factory.mktemp("gen")
    profile = get_profile("ci")
    sim.simulate_dataset(root / "data", sim.config_for_profile("ci"), subjects=[1], progress=False)
    dataset = pipeline.load_dataset("simulated", root / "data", 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the random-init encoder warns, as it should
        features = pipeline.dataset_features(dataset, profile.encoder, root / "cache",
                                             progress=False)
        trained = pipeline.train_generator(dataset, features, "cross_attention", profile,
                                           root / "checkpoints", progress=False, epochs=1)
    return trained.path.parent, dataset


@pytest.fixture()
def images(tmp_path):
    """Three new images in a folder (two PNG, one JPEG) and a file that is not a picture."""
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in ("b.png", "a.png", "c.jpg"):
        Image.fromarray(rng.integers(0, 255, (40, 30, 3), dtype=np.uint8)).save(folder / name)
    (folder / "notes.md").write_text("not an image: folders are read by suffix")
    return folder


def test_any_images_become_mne_epochs_with_the_recordings_channels(checkpoint, images, tmp_path):
    folder, dataset = checkpoint
    generator = load_generator(folder)
    epochs = generator.generate([images], n_samples=3, sampling=SamplingConfig(steps=4))
    out = tmp_path / "signals-epo.fif"
    written = write_epochs(epochs, out, npz=True)
    assert written == [out, tmp_path / "signals.npz"]

    back = mne.read_epochs(out, verbose=False)
    assert back.ch_names == dataset.ch_names
    assert back.info["sfreq"] == dataset.sfreq
    assert back.get_channel_types() == dataset.info.get_channel_types()
    assert back.tmin == pytest.approx(dataset.times[0]) and len(back.times) == len(dataset.times)
    # Sensor positions (the montage) travel with the channels.
    np.testing.assert_allclose([ch["loc"][:3] for ch in back.info["chs"]],
                               [ch["loc"][:3] for ch in dataset.info["chs"]])
    # 3 images (sorted, the .md skipped) × 3 samples, image by image.
    meta = back.metadata
    assert len(back) == 9 and list(meta["sample"]) == [0, 1, 2] * 3
    assert [p.split("/")[-1] for p in meta["image_path"][::3]] == ["a.png", "b.png", "c.jpg"]
    assert set(meta["model"]) == {"cross_attention"} and set(meta["sampling_steps"]) == {4}
    assert set(meta["checkpoint"]) == {str(folder)}
    # Simulated EEG is in µV; MNE stores volts.
    arrays = np.load(tmp_path / "signals.npz")
    np.testing.assert_allclose(arrays["signals"], back.get_data() , rtol=1e-5)
    raw = generator.trained.generate(
        pipeline.match_features(generator.encode(image_paths([images])), [f"{i:06d}" for i in range(3)]),
        n_samples=3, steps=4)
    np.testing.assert_allclose(back.get_data(), raw.reshape(9, *raw.shape[2:]) * TO_SI["µV"],
                               rtol=1e-4, atol=1e-12)


def test_list_files_and_single_files_are_read(images, tmp_path):
    listing = tmp_path / "list.txt"
    listing.write_text("# my images\nimages/a.png\n\n" + str(images / "c.jpg") + "\n")
    assert image_paths([listing, images / "b.png"]) == [images / "a.png", images / "c.jpg",
                                                         images / "b.png"]
    with pytest.raises(FileNotFoundError, match="nowhere.png"):
        image_paths([tmp_path / "nowhere.png"])
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="no image files"):
        image_paths([empty])


def test_an_unreadable_image_is_named_before_any_work(images):
    (images / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(DataFormatError, match="broken.png"):
        image_paths([images])


def test_a_checkpoint_from_another_version_is_refused_by_name(checkpoint, tmp_path):
    folder, _ = checkpoint
    old = tmp_path / "old"
    old.mkdir()
    for f in folder.iterdir():
        if f.name != RECORDING_INFO:
            (old / f.name).write_bytes(f.read_bytes())
    with pytest.raises(DataFormatError, match=f"checkpoint.pt.*{RECORDING_INFO}"):
        load_generator(old)
    with pytest.raises(FileNotFoundError, match="no finished checkpoint"):
        load_generator(tmp_path)


def test_nothing_written_is_replaced_by_a_partial_file(checkpoint, images, tmp_path):
    epochs = load_generator(checkpoint[0]).generate([images / "a.png"], n_samples=1,
                                                    sampling=SamplingConfig(steps=2))
    out = tmp_path / "x-epo.fif"
    out.write_bytes(b"earlier results")
    with pytest.raises(FileExistsError):
        write_epochs(epochs, out)
    assert out.read_bytes() == b"earlier results"
    assert not list(tmp_path.glob(".*tmp"))
    write_epochs(epochs, out, overwrite=True)
    assert len(mne.read_epochs(out, verbose=False)) == 1
    with pytest.raises(ValueError, match="-epo.fif"):
        write_epochs(epochs, tmp_path / "x.fif")


def test_generate_command_for_a_folder_of_images(checkpoint, images, tmp_path, capsys):
    out = tmp_path / "cli-epo.fif"
    args = ["generate", "--checkpoint", str(checkpoint[0]), "--images", str(images),
            "--n-samples", "2", "--steps", "3", "--guidance", "1.5", "--out", str(out), "--quiet"]
    assert main(args) == 0
    assert "6 epochs (3 images × 2 samples, 17 channels, 100 Hz)" in capsys.readouterr().out
    meta = mne.read_epochs(out, verbose=False).metadata
    assert set(meta["sampling_guidance_scale"]) == {1.5}
    assert main(args) == 2  # the output exists: one error line, nothing replaced
    assert "refusing to overwrite" in capsys.readouterr().err
    assert main(["generate", "--checkpoint", str(checkpoint[0]), "--quiet"]) == 2
    assert "needs --images" in capsys.readouterr().err


def test_model_card_beside_the_checkpoint(checkpoint):
    folder, dataset = checkpoint
    card = read_model_card(folder)
    assert card == json.loads((folder / "model-card.json").read_text())
    assert card["data"]["dataset"] == "simulated" and card["data"]["subject"] == "1"
    assert card["data"]["channels"] == dataset.ch_names and card["data"]["sfreq_hz"] == 100
    assert card["data"]["epoch_s"] == [round(dataset.times[0], 4), round(dataset.times[-1], 4)]
    assert card["data"]["units"] == "µV" and card["data"]["preprocessing"]
    assert card["encoder"]["model"] == "i2b-tiny-vit" and card["encoder"]["weights_digest"]
    assert card["encoder"]["random_init"] is True
    # 1 epoch of single trials (120 images × 4 repetitions) at batch 32: 480 / 32 = 15 steps.
    assert card["training"]["targets"] == "trials"
    assert card["training"]["epochs_done"] == 1 and card["training"]["optimiser_steps"] == 15
    assert card["validation"] is None and card["versions"]["torch"]
    text = (folder / "model-card.md").read_text()
    assert text == card_markdown(card)
    assert "17 eeg channels, 100 Hz" in text and "not measured" in text
    assert "1 epochs on single trials, 15 optimiser steps" in text
    trained_on_averages = {**card["training"], "targets": "average", "trial_epochs": 8,
                           "epochs_done": 40}
    assert "40 epochs (32 on repetition averages, then 8 on single trials)" in card_markdown(
        {**card, "training": trained_on_averages})
    scored = card_markdown({**card, "validation": {
        "metric": "encoding score", "value": 0.1234, "ci_low": 0.1, "ci_high": 0.15,
        "pct_of_ceiling": 61.0, "baseline": "ridge", "baseline_value": 0.125, "n_images": 40,
        "note": "A twin."}})
    assert "encoding score 0.123 [95 % CI 0.100, 0.150] on 40 validation images (61.0 % of" in scored
    assert "ridge 0.125 on the same images" in scored

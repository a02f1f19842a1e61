"""Read-outs of what features carry, and the fixed validation split, on known answers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from analysis.data.images import CONTINUOUS_RANGES, HUES, SHAPES, TEXTURES, all_concepts
from analysis.readouts import (attribute_features, encoder_name, pixel_features, split_rows,
                               stage_slices, token_grid_means, validation_score)
from analysis.encoders import ImageFeatures
from analysis.training import dataset_fingerprint
from analysis.validation import concept_draw, rows_of, split_validation, validation_mask


def test_pixel_features_are_down_sampled_rgb_in_unit_range(tmp_path):
    path = tmp_path / "red.png"
    Image.fromarray(np.tile(np.array([255, 0, 51], np.uint8), (40, 30, 1))).save(path)
    pixels = pixel_features([path], size=4)
    assert pixels.shape == (1, 4 * 4 * 3) and pixels.dtype == np.float32
    np.testing.assert_allclose(pixels.reshape(4, 4, 3), np.broadcast_to([1.0, 0.0, 0.2], (4, 4, 3)))


def test_attribute_features_one_hot_plus_continuous():
    table = pd.DataFrame([{"shape": "star", "hue": "blue", "texture": "solid", "curved": True,
                           **{k: 0.5 for k in CONTINUOUS_RANGES}}])
    table.loc[0, "rotation"] = np.pi / 2
    x = attribute_features(table)
    n_cat = len(SHAPES) + len(HUES) + len(TEXTURES)
    assert x.shape == (1, n_cat + 1 + len(CONTINUOUS_RANGES) + 1)  # rotation → cos, sin
    assert x[0, :n_cat].sum() == 3 and x[0, SHAPES.index("star")] == 1
    assert x[0, len(SHAPES) + HUES.index("blue")] == 1 and x[0, n_cat] == 1  # curved
    np.testing.assert_allclose(x[0, -2:], [0.0, 1.0], atol=1e-6)


def test_validation_score_is_high_for_informative_and_near_zero_for_blind_features():
    rng = np.random.default_rng(0)
    informative = rng.standard_normal((300, 5))
    responses = np.einsum("nf,fct->nct", informative, rng.standard_normal((5, 3, 4)))
    responses += 0.1 * rng.standard_normal(responses.shape)
    mask = np.arange(300) % 5 == 0
    assert validation_score(informative, responses, mask) > 0.95
    assert abs(validation_score(rng.standard_normal((300, 5)), responses, mask)) < 0.2


def test_stage_slices_follow_the_pooled_layout():
    meta = {"stage_channels": {"a": 2, "b": 3}, "grid": 2}
    assert stage_slices(meta) == {"a": slice(0, 8), "b": slice(8, 20)}
    assert stage_slices({"model": "ViT-B-32"}) == {}


def test_split_rows_reorders_by_image_id():
    features = ImageFeatures(["x", "y", "z"], np.arange(6, dtype=np.float32).reshape(3, 2),
                             np.zeros((3, 1, 1), np.float16))
    train, test = split_rows(features, (["z", "x"], ["y"]))
    np.testing.assert_array_equal(train, [[4, 5], [0, 1]])
    np.testing.assert_array_equal(test, [[2, 3]])


def test_validation_split_is_fixed_by_concept_names_alone():
    names = [c.name for c in all_concepts()]
    mask = validation_mask(names)
    assert 0.05 < mask.mean() < 0.15  # about the 10 % asked for (576 concepts)
    # Other concepts (e.g. a different test set) do not move any concept across the split.
    subset = names[::3]
    np.testing.assert_array_equal(validation_mask(subset), mask[::3])
    # Images of one concept go together.
    repeated = [n for n in names[:50] for _ in range(4)]
    assert (validation_mask(repeated).reshape(50, 4).all(axis=1)
            == validation_mask(repeated).reshape(50, 4).any(axis=1)).all()
    assert concept_draw("red_solid_star") == concept_draw("red_solid_star")


def test_validation_split_refuses_a_degenerate_split():
    with pytest.raises(ValueError, match="fraction: expected a number in"):
        validation_mask(["a", "b"], fraction=1.5)
    lonely = next(n for n in (f"c{i}" for i in range(100)) if concept_draw(n) >= 0.1)
    with pytest.raises(ValueError, match="leaves no validation concept"):
        validation_mask([lonely] * 4)


def _dataset(seed: int = 0):
    import mne

    from analysis.data.contract import EpochedDataset, Split

    rng = np.random.default_rng(seed)
    concepts = [f"concept{i // 2}" for i in range(80)]  # 40 concepts × 2 images
    ids = [f"img{i}" for i in range(80)]
    train = Split(rng.standard_normal((80, 2, 3, 5)).astype(np.float32), ids, concepts)
    test = Split(rng.standard_normal((4, 2, 3, 5)).astype(np.float32), ids[:4], concepts[:4])
    info = mne.create_info(["O1", "Oz", "O2"], 100.0, "eeg")
    noiseless = {"train": train.signals.mean(axis=1), "test": test.signals.mean(axis=1)}
    return EpochedDataset(train, test, info, np.arange(5) / 100.0,
                          {"dataset": "simulated", "subject": 1}, noiseless)


def test_the_fitting_and_validation_splits_share_their_training_images():
    dataset = _dataset()
    held = validation_mask(dataset.train.concepts)
    assert 0 < held.sum() < len(held)
    fitting, validation = split_validation(dataset)
    # Models fit on one are the other's: the very same training split.
    assert fitting.train is validation.train
    assert fitting.train.image_ids == [i for i, m in zip(dataset.train.image_ids, held) if not m]
    assert fitting.test is dataset.test
    np.testing.assert_array_equal(fitting.noiseless["test"], dataset.noiseless["test"])
    np.testing.assert_array_equal(fitting.noiseless["train"], dataset.noiseless["train"][~held])
    assert validation.test.image_ids == [i for i, m in zip(dataset.train.image_ids, held) if m]
    np.testing.assert_array_equal(validation.noiseless["test"], dataset.noiseless["train"][held])
    assert (fitting.meta["split"], validation.meta["split"]) == ("fitting", "validation")
    assert "split" not in dataset.meta  # the recording's own meta is left alone
    # ... and so the same checkpoint key.
    assert dataset_fingerprint(fitting) == dataset_fingerprint(validation)


def test_a_large_validation_split_is_memory_mapped_from_the_cache(tmp_path):
    dataset = _dataset()
    held = validation_mask(dataset.train.concepts)
    in_memory = split_validation(dataset)[1]
    assert not isinstance(in_memory.train.signals, np.memmap)
    np.testing.assert_array_equal(in_memory.train.signals, dataset.train.signals[~held])
    np.testing.assert_array_equal(in_memory.test.signals, dataset.train.signals[held])
    # Over the limit (here: 100 bytes), the fitting part is a read-only memory map of a
    # cached file, written in blocks, with the same values; the small held-out part stays
    # in memory.
    mapped = split_validation(dataset, tmp_path, max_in_memory_bytes=100)[1]
    assert isinstance(mapped.train.signals, np.memmap) and not mapped.train.signals.flags.writeable
    np.testing.assert_array_equal(mapped.train.signals, in_memory.train.signals)
    np.testing.assert_array_equal(mapped.noiseless["train"], in_memory.noiseless["train"])
    assert not isinstance(mapped.test.signals, np.memmap)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert len(files) == 2 and files[0].startswith("fitting-") and "noiseless" in files[1]
    # The same data again reuse the files; other data get their own.
    stamp = {p: p.stat().st_mtime_ns for p in tmp_path.iterdir()}
    split_validation(dataset, tmp_path, max_in_memory_bytes=100)
    assert {p: p.stat().st_mtime_ns for p in tmp_path.iterdir()} == stamp
    other = split_validation(_dataset(seed=1), tmp_path, max_in_memory_bytes=100)[1]
    assert len(list(tmp_path.iterdir())) == 4
    assert not np.array_equal(other.train.signals, mapped.train.signals)


def test_rows_of_writes_in_blocks_and_copies_below_the_limit(tmp_path):
    array = np.arange(7 * 3, dtype=np.float32).reshape(7, 3)
    mask = np.array([1, 0, 1, 1, 0, 1, 1], bool)
    # 12 bytes a row, a limit of 24 bytes: blocks of max(1, 24 // 8 // 12) = 1 row.
    mapped = rows_of(array, mask, tmp_path / "x.npy", max_in_memory_bytes=24)
    assert isinstance(mapped, np.memmap)
    np.testing.assert_array_equal(mapped, array[mask])
    assert not list(tmp_path.glob(".*tmp*"))  # written atomically: no partial file left
    copied = rows_of(array, mask, tmp_path / "y.npy", max_in_memory_bytes=10 ** 6)
    assert not isinstance(copied, np.memmap) and not (tmp_path / "y.npy").exists()


def test_token_grid_means_average_square_blocks_of_positions():
    tokens = np.arange(16, dtype=np.float32).reshape(1, 16, 1)  # a 4 × 4 grid, one channel
    np.testing.assert_allclose(token_grid_means(tokens), [[2.5, 4.5, 10.5, 12.5]])
    assert token_grid_means(np.zeros((2, 49, 3))).shape == (2, 12)
    with pytest.raises(ValueError, match="square number of tokens, found 5"):
        token_grid_means(np.zeros((1, 5, 2)))


def test_encoder_names_are_short_and_say_the_weights():
    assert encoder_name({"family": "timm", "model": "tf_efficientnet_lite0",
                         "random_init": False}) == "EffNet-Lite0 (ImageNet)"
    assert encoder_name({"family": "open_clip", "model": "ViT-B-32",
                         "random_init": True}) == "CLIP ViT-B-32 (random init)"

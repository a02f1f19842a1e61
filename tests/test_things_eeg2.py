"""THINGS-EEG2 loader and writer, on small files in the published on-disk formats."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from analysis.data.contract import DataFormatError, EpochedDataset
from analysis.data.things_eeg2 import (
    CHANNELS,
    VARIANT_NICE,
    VARIANT_OFFICIAL,
    load_things_eeg2,
    write_image_metadata,
    write_things_eeg2,
)

OFFICIAL_CH = list(CHANNELS["official"])  # the published order
NICE_CH = list(CHANNELS["nice"])
OFFICIAL_TIMES = np.round(np.arange(-20, 80) / 100.0, 2)  # -0.2 … 0.79 s, 100 Hz
# NICE/ATM files store the uncropped epoch times (-0.2 … 0.996 s, 300 samples) next to
# data cropped to 0 … 1 s (250 samples): the data's times are the last 250.
NICE_STORED_TIMES = np.arange(-50, 250) / 250.0
N_TRAIN, N_TEST, TRAIN_REPS, TEST_REPS = 6, 3, 4, 5
TRAIN_CONCEPTS = ["00001_aardvark", "00001_aardvark", "00002_abacus", "00002_abacus",
                  "00003_accordion", "00003_accordion"]
TRAIN_FILES = ["aardvark_01b.jpg", "aardvark_02s.jpg", "abacus_01b.jpg", "abacus_02s.jpg",
               "accordion_01b.jpg", "accordion_02s.jpg"]
TEST_CONCEPTS = ["00004_banana", "00005_bike", "00006_cake"]
TEST_FILES = ["banana_15s.jpg", "bike_14s.jpg", "cake_13s.jpg"]


def _signals(n_images, n_reps, n_ch, n_t, seed):
    return np.random.default_rng(seed).standard_normal((n_images, n_reps, n_ch, n_t))


def _write_images(images_root: Path, *, skip: int = 0) -> None:
    """Tiny placeholder image files; the loader only checks that they exist."""
    pairs = [("training_images", c, f) for c, f in zip(TRAIN_CONCEPTS, TRAIN_FILES)]
    pairs += [("test_images", c, f) for c, f in zip(TEST_CONCEPTS, TEST_FILES)]
    for folder, concept, name in pairs[skip:]:
        path = images_root / folder / concept / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"\xff\xd8\xff")


def _write_metadata(root: Path, *, sub="image_set", **override) -> Path:
    lists = dict(train_concepts=TRAIN_CONCEPTS, train_files=TRAIN_FILES,
                 test_concepts=TEST_CONCEPTS, test_files=TEST_FILES)
    lists.update(override)
    images_root = root / sub if sub else root
    _write_images(images_root)
    return write_image_metadata(images_root, **lists)


def make_dataset(root: Path, variant="official", subject=1, *, metadata=True, **override):
    """Write one subject (and image set) in a published format; return what was written."""
    if variant == "official":
        ch, times, n_t = OFFICIAL_CH, OFFICIAL_TIMES, 100
    else:
        ch, times, n_t = NICE_CH, NICE_STORED_TIMES, 250
    content = dict(train_signals=_signals(N_TRAIN, TRAIN_REPS, len(ch), n_t, 0),
                   test_signals=_signals(N_TEST, TEST_REPS, len(ch), n_t, 1),
                   ch_names=ch, times=times)
    content.update(override)
    paths = write_things_eeg2(root, subject, variant=variant, **content)
    if metadata:
        _write_metadata(root)
    return content, paths


def _resave(path: Path, mutate) -> None:
    """Rewrite an official-format file with a mutated dict (to build broken inputs)."""
    content = np.load(path, allow_pickle=True).item()
    mutate(content)
    np.save(path, content, allow_pickle=True)


# ------------------------------------------------------------------ happy paths


def test_official_variant_loads_with_shapes_ids_and_montage(tmp_path):
    content, paths = make_dataset(tmp_path)
    ds = load_things_eeg2(tmp_path, 1)

    assert isinstance(ds, EpochedDataset)
    assert ds.train.signals.shape == (N_TRAIN, TRAIN_REPS, 17, 100)
    assert ds.test.signals.shape == (N_TEST, TEST_REPS, 17, 100)
    assert ds.train.signals.dtype == np.float32 and ds.test.signals.dtype == np.float32
    np.testing.assert_allclose(ds.train.signals, content["train_signals"], rtol=1e-6)
    np.testing.assert_allclose(ds.test.signals, content["test_signals"], rtol=1e-6)
    assert ds.train.image_ids == [Path(f).stem for f in TRAIN_FILES]
    assert ds.test.image_ids == ["banana_15s", "bike_14s", "cake_13s"]
    assert ds.train.concepts == TRAIN_CONCEPTS and ds.test.concepts == TEST_CONCEPTS
    assert ds.train.image_paths[2] == (tmp_path / "image_set" / "training_images"
                                       / "00002_abacus" / "abacus_01b.jpg")
    assert ds.test.image_paths[0] == (tmp_path / "image_set" / "test_images"
                                      / "00004_banana" / "banana_15s.jpg")
    assert ds.train.missing_images() == [] and ds.test.missing_images() == []

    assert ds.sfreq == 100.0
    np.testing.assert_allclose(ds.times, OFFICIAL_TIMES)
    assert ds.ch_names == OFFICIAL_CH
    assert set(ds.info.get_channel_types()) == {"eeg"}
    positions = np.array([ch["loc"][:3] for ch in ds.info["chs"]])
    assert np.all(np.linalg.norm(positions, axis=1) > 0.05), "montage positions missing"

    assert ds.meta["dataset"] == "things-eeg2" and ds.meta["subject"] == 1
    assert ds.meta["variant"] == VARIANT_OFFICIAL and ds.meta["container"] == "np.save"
    assert ds.meta["units"] == "MVNN-whitened (unitless)"
    assert "official" in ds.meta["preprocessing"] and "100 Hz" in ds.meta["preprocessing"]
    assert ds.meta["files"]["train"] == str(paths["train"])
    assert ds.meta["files"]["image_metadata"].endswith("image_set/image_metadata.npy")
    assert "things-eeg2 sub-1" in ds.summary()


def test_official_writer_uses_exact_published_container(tmp_path):
    _, paths = make_dataset(tmp_path)
    assert paths["train"] == tmp_path / "preprocessed_data" / "sub-01" / \
        "preprocessed_eeg_training.npy"
    assert paths["train"].read_bytes()[:6] == b"\x93NUMPY"
    loaded = np.load(paths["test"], allow_pickle=True).item()
    assert set(loaded) == {"preprocessed_eeg_data", "ch_names", "times"}
    assert loaded["preprocessed_eeg_data"].shape == (N_TEST, TEST_REPS, 17, 100)
    meta = np.load(tmp_path / "image_set" / "image_metadata.npy", allow_pickle=True).item()
    assert meta["test_img_files"] == TEST_FILES


def test_nice_variant_pickle_container_and_last_n_times(tmp_path):
    content, paths = make_dataset(tmp_path, "nice")
    assert paths["train"].parent.parent.name == "Preprocessed_data_250Hz"
    # pickle.dump under a .npy name: np.load returns the dict itself, .item() fails.
    raw = np.load(paths["train"], allow_pickle=True)
    assert isinstance(raw, dict) and len(raw["times"]) == 300
    with pytest.raises(AttributeError):
        raw.item()

    ds = load_things_eeg2(tmp_path, 1)
    assert ds.train.signals.shape == (N_TRAIN, TRAIN_REPS, 63, 250)
    assert ds.test.signals.shape == (N_TEST, TEST_REPS, 63, 250)
    assert ds.train.signals.dtype == np.float32
    np.testing.assert_allclose(ds.test.signals, content["test_signals"], rtol=1e-6)
    assert ds.sfreq == 250.0
    np.testing.assert_allclose(ds.times, NICE_STORED_TIMES[-250:])
    assert ds.times[0] == pytest.approx(0.0) and ds.times[-1] == pytest.approx(0.996)
    assert ds.ch_names == NICE_CH
    assert ds.meta["variant"] == VARIANT_NICE and ds.meta["container"] == "pickle"
    assert "NICE" in ds.meta["preprocessing"] and "50 extra" in ds.meta["preprocessing"]


def test_generic_variant_is_labelled_with_channels_and_rate(tmp_path):
    make_dataset(tmp_path, train_signals=_signals(N_TRAIN, 4, 17, 20, 0),
                 test_signals=_signals(N_TEST, 5, 17, 20, 1), times=np.arange(20) / 250.0)
    ds = load_things_eeg2(tmp_path, 1)
    assert ds.meta["variant"] == "generic-17ch-250Hz"
    assert ds.sfreq == 250.0


def test_search_order_and_explicit_data_dir(tmp_path):
    make_dataset(tmp_path, "nice")
    make_dataset(tmp_path, "official", metadata=False)
    # preprocessed_data is searched before Preprocessed_data_250Hz.
    assert load_things_eeg2(tmp_path, 1).meta["variant"] == VARIANT_OFFICIAL
    nice = load_things_eeg2(tmp_path, 1, data_dir=tmp_path / "Preprocessed_data_250Hz")
    assert nice.meta["variant"] == VARIANT_NICE

    custom = tmp_path / "elsewhere"
    write_things_eeg2(tmp_path, 3, data_dir=custom, train_signals=_signals(6, 4, 17, 100, 2),
                      test_signals=_signals(3, 5, 17, 100, 3), ch_names=OFFICIAL_CH,
                      times=OFFICIAL_TIMES)
    assert load_things_eeg2(tmp_path, 3, data_dir=custom).meta["subject"] == 3
    # An explicit data_dir is the only folder searched: no silent fallback.
    with pytest.raises(DataFormatError, match="elsewhere/sub-01"):
        load_things_eeg2(tmp_path, 1, data_dir=custom)


def test_image_metadata_directly_under_root(tmp_path):
    make_dataset(tmp_path, metadata=False)
    _write_metadata(tmp_path, sub=None)
    ds = load_things_eeg2(tmp_path, 1)
    assert ds.test.image_paths[1] == tmp_path / "test_images" / "00005_bike" / "bike_14s.jpg"


def test_require_images_false_allows_missing_images_and_metadata(tmp_path):
    make_dataset(tmp_path, metadata=False)
    ds = load_things_eeg2(tmp_path, 1, require_images=False)
    assert ds.train.image_ids == [f"train{i:05d}" for i in range(N_TRAIN)]
    assert ds.test.image_ids == ["test000", "test001", "test002"]
    assert ds.train.image_paths is None and ds.meta["files"]["image_metadata"] is None

    write_image_metadata(tmp_path / "image_set", TRAIN_CONCEPTS, TRAIN_FILES, TEST_CONCEPTS,
                         TEST_FILES)  # metadata, but no image files on disk
    ds = load_things_eeg2(tmp_path, 1, require_images=False)
    assert ds.test.concepts == TEST_CONCEPTS and len(ds.test.missing_images()) == N_TEST


# ------------------------------------------------------------------ writer safety


def test_writer_refuses_to_overwrite_and_leaves_no_temp_files(tmp_path):
    content, paths = make_dataset(tmp_path)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        write_things_eeg2(tmp_path, 1, **content)
    with pytest.raises(FileExistsError, match="image_metadata.npy"):
        write_image_metadata(tmp_path / "image_set", TRAIN_CONCEPTS, TRAIN_FILES,
                             TEST_CONCEPTS, TEST_FILES)
    content["train_signals"] = content["train_signals"] * 2
    write_things_eeg2(tmp_path, 1, overwrite=True, **content)
    ds = load_things_eeg2(tmp_path, 1)
    np.testing.assert_allclose(ds.train.signals, content["train_signals"], rtol=1e-6)
    assert sorted(p.name for p in paths["train"].parent.iterdir()) == [
        "preprocessed_eeg_test.npy", "preprocessed_eeg_training.npy"]


def test_writer_argument_errors(tmp_path):
    with pytest.raises(ValueError, match="variant"):
        write_things_eeg2(tmp_path, 1, train_signals=np.zeros((1, 1, 1, 2)),
                          test_signals=np.zeros((1, 1, 1, 2)), ch_names=["Oz"],
                          times=[0, 0.01], variant="bogus")
    with pytest.raises(ValueError, match="2 concepts but 1 files"):
        write_image_metadata(tmp_path, ["a", "b"], ["a.jpg"], [], [])
    with pytest.raises(TypeError, match="subject"):
        load_things_eeg2(tmp_path, "01")


# ------------------------------------------------------------------ errors


def test_missing_subject_folder_lists_paths_searched(tmp_path):
    make_dataset(tmp_path)
    with pytest.raises(DataFormatError) as err:
        load_things_eeg2(tmp_path, 2)
    msg = str(err.value)
    assert "file not found" in msg
    assert str(tmp_path / "preprocessed_data" / "sub-02" / "preprocessed_eeg_training.npy") in msg
    assert str(tmp_path / "Preprocessed_data_250Hz" / "sub-02") in msg
    assert "expected layout" in msg and "data_dir" in msg


def test_missing_test_file_is_named(tmp_path):
    _, paths = make_dataset(tmp_path)
    paths["test"].unlink()
    with pytest.raises(DataFormatError, match=r"preprocessed_eeg_test\.npy: file not found"):
        load_things_eeg2(tmp_path, 1)


def test_missing_key_names_file_and_key(tmp_path):
    _, paths = make_dataset(tmp_path)
    _resave(paths["train"], lambda d: d.pop("times"))
    with pytest.raises(DataFormatError) as err:
        load_things_eeg2(tmp_path, 1)
    msg = str(err.value)
    assert "preprocessed_eeg_training.npy" in msg and "'times'" in msg
    assert "to be present" in msg and "preprocessed_eeg_data" in msg  # keys found


def test_file_that_is_not_a_dict(tmp_path):
    _, paths = make_dataset(tmp_path)
    np.save(paths["test"], np.zeros((3, 5, 17, 100)))
    with pytest.raises(DataFormatError, match=r"preprocessed_eeg_test\.npy.*expected a dict.*"
                                              r"found ndarray"):
        load_things_eeg2(tmp_path, 1)


def test_corrupt_file_is_reported(tmp_path):
    _, paths = make_dataset(tmp_path)
    paths["train"].write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(DataFormatError, match=r"preprocessed_eeg_training\.npy.*unreadable"):
        load_things_eeg2(tmp_path, 1)


def test_wrong_rank(tmp_path):
    make_dataset(tmp_path, train_signals=_signals(6, 4, 17, 100, 0).mean(axis=1))
    with pytest.raises(DataFormatError) as err:
        load_things_eeg2(tmp_path, 1)
    msg = str(err.value)
    assert "preprocessed_eeg_training.npy" in msg and "'preprocessed_eeg_data'" in msg
    assert "expected rank 4" in msg and "found rank 3 with shape (6, 17, 100)" in msg


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_or_inf(tmp_path, bad):
    test = _signals(3, 5, 17, 100, 1)
    test[1, 2, 3, 4] = bad
    make_dataset(tmp_path, test_signals=test)
    with pytest.raises(DataFormatError) as err:
        load_things_eeg2(tmp_path, 1)
    msg = str(err.value)
    assert "preprocessed_eeg_test.npy" in msg and "'preprocessed_eeg_data'" in msg
    assert "only finite values" in msg and "1 NaN/inf values, first at index (1, 2, 3, 4)" in msg


def test_channel_count_does_not_match_data(tmp_path):
    make_dataset(tmp_path, ch_names=OFFICIAL_CH[:16])
    with pytest.raises(DataFormatError, match=r"preprocessed_eeg_training\.npy: field "
                                              r"'preprocessed_eeg_data': expected 16 channels"):
        load_things_eeg2(tmp_path, 1)


def test_unknown_channel_names(tmp_path):
    make_dataset(tmp_path, ch_names=OFFICIAL_CH[:15] + ["EXG1", "pz"])
    with pytest.raises(DataFormatError) as err:
        load_things_eeg2(tmp_path, 1)
    msg = str(err.value)
    assert "preprocessed_eeg_training.npy" in msg and "'ch_names'" in msg
    assert "colin27_1005" in msg and "unknown names ['EXG1', 'pz']" in msg


def test_duplicate_channel_names(tmp_path):
    make_dataset(tmp_path, ch_names=OFFICIAL_CH[:16] + ["Pz"])
    with pytest.raises(DataFormatError, match=r"'ch_names': expected unique.*\['Pz'\]"):
        load_things_eeg2(tmp_path, 1)


def test_train_and_test_channel_names_differ(tmp_path):
    _, paths = make_dataset(tmp_path)
    _resave(paths["test"], lambda d: d.__setitem__("ch_names", OFFICIAL_CH[:16] + ["Cz"]))
    with pytest.raises(DataFormatError) as err:
        load_things_eeg2(tmp_path, 1)
    msg = str(err.value)
    assert "preprocessed_eeg_test.npy" in msg and "preprocessed_eeg_training.npy" in msg
    assert "'ch_names'" in msg and "identical channel names" in msg
    assert "only in training ['P2'], only in test ['Cz']" in msg


def test_train_and_test_channel_order_differs(tmp_path):
    _, paths = make_dataset(tmp_path)
    _resave(paths["test"], lambda d: d.__setitem__("ch_names", OFFICIAL_CH[::-1]))
    with pytest.raises(DataFormatError, match="different order"):
        load_things_eeg2(tmp_path, 1)


def test_official_times_length_must_match_exactly(tmp_path):
    make_dataset(tmp_path, times=np.arange(-20, 81) / 100.0)  # 101 for 100 samples
    with pytest.raises(DataFormatError) as err:
        load_things_eeg2(tmp_path, 1)
    msg = str(err.value)
    assert "preprocessed_eeg_training.npy" in msg and "'times'" in msg
    assert "expected 100 samples" in msg and "found 101 samples" in msg


def test_nice_times_shorter_than_data(tmp_path):
    make_dataset(tmp_path, "nice", times=np.arange(200) / 250.0)
    with pytest.raises(DataFormatError) as err:
        load_things_eeg2(tmp_path, 1)
    msg = str(err.value)
    assert "'times'" in msg and "expected 250 samples" in msg and "last n" in msg
    assert "found 200 samples" in msg


def test_train_and_test_times_differ(tmp_path):
    _, paths = make_dataset(tmp_path)
    _resave(paths["test"], lambda d: d.__setitem__("times", OFFICIAL_TIMES + 0.1))
    with pytest.raises(DataFormatError, match=r"preprocessed_eeg_test\.npy.*'times': "
                                              r"expected identical time vectors"):
        load_things_eeg2(tmp_path, 1)


def test_irregular_times(tmp_path):
    times = OFFICIAL_TIMES.copy()
    times[50:] += 0.005
    make_dataset(tmp_path, times=times)
    with pytest.raises(DataFormatError, match="'times': expected increasing, evenly spaced"):
        load_things_eeg2(tmp_path, 1)


def test_metadata_missing_key(tmp_path):
    make_dataset(tmp_path)
    path = tmp_path / "image_set" / "image_metadata.npy"
    _resave(path, lambda d: d.pop("test_img_files"))
    with pytest.raises(DataFormatError) as err:
        load_things_eeg2(tmp_path, 1)
    msg = str(err.value)
    assert "image_metadata.npy" in msg and "'test_img_files'" in msg and "to be present" in msg


@pytest.mark.parametrize("key", ["train_files", "train_concepts"])
def test_metadata_length_mismatch(tmp_path, key):
    make_dataset(tmp_path, metadata=False)
    lists = dict(train_concepts=TRAIN_CONCEPTS, train_files=TRAIN_FILES)
    lists = {k: v[:5] for k, v in lists.items()}  # 5 images listed, 6 in the signals
    _write_metadata(tmp_path, **lists)
    with pytest.raises(DataFormatError) as err:
        load_things_eeg2(tmp_path, 1)
    msg = str(err.value)
    assert "image_metadata.npy" in msg and "'train_img_" in msg
    assert "expected 6 entries (images in preprocessed_eeg_training.npy)" in msg
    assert "found 5 entries" in msg


def test_metadata_missing_when_images_required(tmp_path):
    make_dataset(tmp_path, metadata=False)
    with pytest.raises(DataFormatError) as err:
        load_things_eeg2(tmp_path, 1)
    msg = str(err.value)
    assert "image_metadata.npy: file not found" in msg
    assert str(tmp_path / "image_set" / "image_metadata.npy") in msg
    assert "require_images=False" in msg


def test_missing_images_are_counted_and_listed(tmp_path):
    make_dataset(tmp_path)
    images = tmp_path / "image_set" / "training_images"
    (images / "00001_aardvark" / "aardvark_02s.jpg").unlink()
    (images / "00003_accordion" / "accordion_01b.jpg").unlink()
    with pytest.raises(DataFormatError) as err:
        load_things_eeg2(tmp_path, 1)
    msg = str(err.value)
    assert "image_metadata.npy" in msg and "'train_img_files'" in msg
    assert "expected all 6 train images on disk" in msg and "2 missing" in msg
    assert "aardvark_02s.jpg" in msg and "accordion_01b.jpg" in msg


def test_pickle_file_is_loaded_only_as_dict(tmp_path):
    """A NICE-style pickle holding something other than a dict is refused cleanly."""
    _, paths = make_dataset(tmp_path, "nice")
    with open(paths["train"], "wb") as fh:
        pickle.dump([1, 2, 3], fh)
    with pytest.raises(DataFormatError, match="expected a dict.*found list"):
        load_things_eeg2(tmp_path, 1)

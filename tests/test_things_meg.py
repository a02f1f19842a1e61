"""THINGS-MEG loader and writer, on small MNE epochs files in the derivatives layout."""

from __future__ import annotations

import logging
from pathlib import Path

import mne
import numpy as np
import pandas as pd
import pytest

from analysis.data.contract import DataFormatError, EpochedDataset
from analysis.data.things_meg import (
    CATCH_CODE,
    epochs_path,
    load_things_meg,
    write_things_meg,
)

MEG_CH = ["MLO11", "MLO12", "MRO11", "MRO12", "MZO01", "MLT11", "MRT11", "MLP11", "MRP11",
          "MZC01"]
SFREQ, TMIN, N_TIMES = 200.0, -0.1, 281  # -0.1 … 1.3 s, as in THINGS-MEG
TRAIN_CODES = [5, 1, 4, 2, 6, 3]
TEST_CODES = [201, 202, 203]
N_REPS = 4


def _event_codes(test_reps=None) -> list[int]:
    """Interleaved session order: training images once, test images repeated, catches."""
    test_reps = test_reps or {c: N_REPS for c in TEST_CODES}
    codes = list(TRAIN_CODES) + [CATCH_CODE, CATCH_CODE]
    for rep in range(max(test_reps.values())):
        codes += [c for c in TEST_CODES if test_reps[c] > rep]
    order = np.random.default_rng(0).permutation(len(codes))
    return [codes[i] for i in order]


def make_epochs(codes=None, *, extra_types=(), metadata=None, data=None) -> mne.EpochsArray:
    """EpochsArray with one epoch per event code; the data encode (epoch index, channel)."""
    codes = _event_codes() if codes is None else codes
    names = MEG_CH + [f"X{i:03d}" for i in range(len(extra_types))]
    types = ["mag"] * len(MEG_CH) + list(extra_types)
    info = mne.create_info(names, SFREQ, types)
    if data is None:
        rng = np.random.default_rng(1)
        data = 1e-13 * rng.standard_normal((len(codes), len(names), N_TIMES))
    events = np.column_stack([np.arange(len(codes)) * 300, np.zeros(len(codes), int), codes])
    event_id = {str(c): c for c in sorted(set(codes))}
    return mne.EpochsArray(data, info, events=events, tmin=TMIN, event_id=event_id,
                           metadata=metadata, verbose="error")


def _epochs_by_code(epochs: mne.BaseEpochs, code: int) -> np.ndarray:
    return epochs.get_data(picks="meg")[epochs.events[:, 2] == code]


# ------------------------------------------------------------------ happy paths


def test_loads_splits_in_code_order_and_drops_catch_trials(tmp_path):
    epochs = make_epochs(extra_types=("ref_meg", "eeg"))
    path = write_things_meg(tmp_path, 2, epochs)
    assert path == tmp_path / "derivatives" / "preprocessed" / "preprocessed_P2-epo.fif"

    ds = load_things_meg(tmp_path, 2)
    assert isinstance(ds, EpochedDataset)
    assert ds.train.signals.shape == (6, 1, len(MEG_CH), N_TIMES)
    assert ds.test.signals.shape == (3, N_REPS, len(MEG_CH), N_TIMES)
    assert ds.train.signals.dtype == np.float32 and ds.test.signals.dtype == np.float32
    # One repetition per training image: its "average" is a read-only view, not a copy.
    average = ds.train.average()
    assert np.shares_memory(average, ds.train.signals) and not average.flags.writeable
    np.testing.assert_array_equal(average, ds.train.signals[:, 0])
    np.testing.assert_allclose(ds.test.average(), ds.test.signals.mean(axis=1))
    assert ds.train.image_ids == [f"img{c:06d}" for c in sorted(TRAIN_CODES)]
    assert ds.test.image_ids == ["img000201", "img000202", "img000203"]
    assert ds.test.concepts == ds.test.image_ids and ds.test.image_paths is None
    # Values: each image's repetitions in file order, float32 of the tesla values.
    np.testing.assert_allclose(ds.train.signals[0, 0], _epochs_by_code(epochs, 1)[0],
                               rtol=1e-6)
    np.testing.assert_allclose(ds.test.signals[1], _epochs_by_code(epochs, 202), rtol=1e-6)

    assert ds.ch_names == MEG_CH  # reference and EEG channels dropped
    assert ds.sfreq == SFREQ and len(ds.times) == N_TIMES
    assert ds.times[0] == pytest.approx(-0.1) and ds.times[-1] == pytest.approx(1.3)
    assert ds.meta["dataset"] == "things-meg" and ds.meta["subject"] == 2
    assert ds.meta["units"] == "T" and ds.meta["n_catch_dropped"] == 2
    assert ds.meta["n_test_reps"] == N_REPS
    assert "200 Hz" in ds.meta["preprocessing"]
    assert ds.meta["files"]["epochs"] == str(path)


def test_metadata_gives_image_paths_and_concepts(tmp_path):
    codes = _event_codes()
    concept = {c: f"concept{c}" for c in set(codes)}
    md = pd.DataFrame({"image_path": [f"images/{concept[c]}/{concept[c]}_{c:02d}s.jpg"
                                      for c in codes],
                       "concept": [concept[c] for c in codes]})
    write_things_meg(tmp_path, 1, make_epochs(codes, metadata=md))
    ds = load_things_meg(tmp_path, 1, images_root=tmp_path / "imgs")
    assert ds.test.image_ids == ["concept201_201s", "concept202_202s", "concept203_203s"]
    assert ds.train.concepts == [f"concept{c}" for c in sorted(TRAIN_CODES)]
    assert ds.test.image_paths[0] == (tmp_path / "imgs" / "images" / "concept201"
                                      / "concept201_201s.jpg")


def test_metadata_image_file_without_concept_column(tmp_path):
    codes = _event_codes()
    md = pd.DataFrame({"image_file": [f"pic_{c}.png" for c in codes]})
    write_things_meg(tmp_path, 1, make_epochs(codes, metadata=md))
    ds = load_things_meg(tmp_path, 1)
    assert ds.train.image_ids[:2] == ["pic_1", "pic_2"]
    assert ds.train.concepts == ds.train.image_ids
    assert ds.train.image_paths[0] == Path("pic_1.png")


def test_unequal_repetitions_keep_minimum_with_warning(tmp_path, caplog):
    codes = _event_codes({201: 4, 202: 3, 203: 5})
    epochs = make_epochs(codes)
    write_things_meg(tmp_path, 1, epochs)
    with caplog.at_level(logging.WARNING, logger="analysis.data.things_meg"):
        ds = load_things_meg(tmp_path, 1)
    assert ds.test.signals.shape[1] == 3 and ds.meta["n_test_reps"] == 3
    assert "shown 3 to 5 times" in caplog.text and "first 3" in caplog.text
    # The first occurrences (in file order) are the ones kept.
    np.testing.assert_allclose(ds.test.signals[2], _epochs_by_code(epochs, 203)[:3], rtol=1e-6)


def test_n_test_reps_caps_repetitions_without_warning(tmp_path, caplog):
    write_things_meg(tmp_path, 1, make_epochs())
    with caplog.at_level(logging.WARNING, logger="analysis.data.things_meg"):
        ds = load_things_meg(tmp_path, 1, n_test_reps=2)
    assert ds.test.signals.shape[1] == 2 and caplog.text == ""
    assert load_things_meg(tmp_path, 1, n_test_reps=None).test.n_reps == N_REPS
    with pytest.raises(ValueError, match="n_test_reps"):
        load_things_meg(tmp_path, 1, n_test_reps=1)


def test_writer_refuses_overwrite_and_leaves_no_temp_files(tmp_path):
    path = write_things_meg(tmp_path, 1, make_epochs())
    with pytest.raises(FileExistsError, match="overwrite=True"):
        write_things_meg(tmp_path, 1, make_epochs())
    write_things_meg(tmp_path, 1, make_epochs(_event_codes({201: 2, 202: 2, 203: 2})),
                     overwrite=True)
    assert load_things_meg(tmp_path, 1).test.n_reps == 2
    assert [p.name for p in path.parent.iterdir()] == [path.name]



def test_large_files_are_written_in_parts_and_read_back_chunk_by_chunk(tmp_path, monkeypatch):
    # Real participants exceed FIF's 2 GB part size and MNE's float64 copy of them would not
    # fit beside the float32 splits: the writer splits, the loader reads a few epochs at a time.
    import analysis.data.things_meg as things_meg

    codes = list(range(1, 61)) + TEST_CODES * N_REPS  # 72 epochs, 0.9 MB in single precision
    epochs = make_epochs(codes, extra_types=("ref_meg",))
    # MNE keeps ~1 MiB of each part in reserve, so parts of 1.2 MB hold ~13 epochs each.
    path = write_things_meg(tmp_path, 1, epochs, split_size=1_200_000)
    parts = {p.name for p in path.parent.iterdir()}
    assert len(parts) >= 3
    assert parts == {path.name} | {f"preprocessed_P1-epo-{k}.fif" for k in range(1, len(parts))}
    whole = load_things_meg(tmp_path, 1)
    assert whole.train.signals.shape[0] == 60
    monkeypatch.setattr(things_meg, "CHUNK", 7)
    chunked = load_things_meg(tmp_path, 1)
    np.testing.assert_array_equal(chunked.train.signals, whole.train.signals)
    np.testing.assert_array_equal(chunked.test.signals, whole.test.signals)
    for code, image in zip(sorted(TEST_CODES), chunked.test.signals):
        np.testing.assert_allclose(image, _epochs_by_code(epochs, code).astype(np.float32))
    # A smaller file replacing it leaves no stale parts behind.
    write_things_meg(tmp_path, 1, make_epochs(), overwrite=True)
    assert [p.name for p in path.parent.iterdir()] == [path.name]

# ------------------------------------------------------------------ errors


def test_missing_file_names_expected_path(tmp_path):
    with pytest.raises(DataFormatError) as err:
        load_things_meg(tmp_path, 3)
    msg = str(err.value)
    assert str(epochs_path(tmp_path, 3)) in msg and "file not found" in msg
    assert "derivatives/preprocessed/preprocessed_P{n}-epo.fif" in msg


def test_unreadable_file(tmp_path):
    path = epochs_path(tmp_path, 1)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a fif file")
    with pytest.raises(DataFormatError, match=r"preprocessed_P1-epo\.fif.*unreadable"):
        load_things_meg(tmp_path, 1)


def test_no_meg_channels(tmp_path):
    codes = _event_codes()
    info = mne.create_info(["Oz", "Pz"], SFREQ, "eeg")
    events = np.column_stack([np.arange(len(codes)) * 300, np.zeros(len(codes), int), codes])
    epochs = mne.EpochsArray(np.zeros((len(codes), 2, N_TIMES)), info, events=events,
                             tmin=TMIN, event_id={str(c): c for c in set(codes)},
                             verbose="error")
    write_things_meg(tmp_path, 1, epochs)
    with pytest.raises(DataFormatError) as err:
        load_things_meg(tmp_path, 1)
    msg = str(err.value)
    assert "preprocessed_P1-epo.fif" in msg and "info['chs']" in msg
    assert "expected MEG channels" in msg and "channel types ['eeg']" in msg


def test_no_repeated_images(tmp_path):
    write_things_meg(tmp_path, 1, make_epochs(TRAIN_CODES + [CATCH_CODE, CATCH_CODE]))
    with pytest.raises(DataFormatError) as err:
        load_things_meg(tmp_path, 1)
    msg = str(err.value)
    assert "preprocessed_P1-epo.fif" in msg and "'events[:, 2]'" in msg
    assert "occur more than once" in msg and "6 codes, each shown once" in msg


def test_no_single_shown_images(tmp_path):
    write_things_meg(tmp_path, 1, make_epochs([201, 202, 201, 202]))
    with pytest.raises(DataFormatError, match=r"'events\[:, 2\]': expected training images"
                                              r".*all 2 codes repeated"):
        load_things_meg(tmp_path, 1)


def test_nan_values(tmp_path):
    codes = _event_codes()
    data = 1e-13 * np.ones((len(codes), len(MEG_CH), N_TIMES))
    data[codes.index(202), 3, 10] = np.nan
    write_things_meg(tmp_path, 1, make_epochs(codes, data=data))
    with pytest.raises(DataFormatError) as err:
        load_things_meg(tmp_path, 1)
    msg = str(err.value)
    assert "preprocessed_P1-epo.fif" in msg and "epochs data (test images)" in msg
    assert "only finite values" in msg and "1 NaN/inf values" in msg


def test_inconsistent_metadata_for_one_code(tmp_path):
    codes = _event_codes()
    paths = [f"img_{c}.jpg" for c in codes]
    paths[len(codes) - 1 - codes[::-1].index(203)] = "other.jpg"  # last repetition of 203
    write_things_meg(tmp_path, 1, make_epochs(codes, metadata=pd.DataFrame(
        {"image_path": paths})))
    with pytest.raises(DataFormatError, match=r"metadata\['image_path'\]'.*code 203.*"
                                              r"'img_203.jpg' and 'other.jpg'"):
        load_things_meg(tmp_path, 1)

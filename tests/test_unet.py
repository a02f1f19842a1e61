"""The 1-D U-Net denoiser and its conditioning mechanisms."""

import pytest
import torch

from analysis.models.conditioning import Condition
from analysis.models.unet1d import UNet1D, UNetConfig, timestep_embedding

SMALL = dict(base_channels=16, channel_mults=(1, 2), embed_dim=8, token_dim=6, n_tokens=5,
             context_dim=16, concat_maps=4, heads=2)


def make(conditioning, n_channels=17, **kw):
    torch.manual_seed(0)
    model = UNet1D(UNetConfig(n_channels=n_channels, conditioning=conditioning, **{**SMALL, **kw}))
    # Zero-initialised output layers make a fresh net ignore its inputs; randomise them so
    # the tests see how information flows.
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model.eval()


def condition(batch, seed=1):
    g = torch.Generator().manual_seed(seed)
    return Condition(torch.randn(batch, 8, generator=g), torch.randn(batch, 5, 6, generator=g))


@pytest.mark.parametrize("conditioning", ["cross_attention", "concat", "film", "none"])
@pytest.mark.parametrize("n_times", [100, 281, 7])
def test_output_has_the_input_shape(conditioning, n_times):
    model = make(conditioning, channel_mults=(1, 2, 2))
    x = torch.randn(3, 17, n_times)
    out = model(x, torch.tensor([0, 10, 999]), condition(3))
    assert out.shape == x.shape and torch.isfinite(out).all()


@pytest.mark.parametrize("conditioning", ["cross_attention", "concat", "film"])
def test_the_condition_changes_the_output_and_dropping_it_uses_the_null(conditioning):
    model = make(conditioning)
    x, t = torch.randn(2, 17, 100), torch.tensor([500, 500])
    a, b = condition(2, seed=1), condition(2, seed=2)
    assert not torch.allclose(model(x, t, a), model(x, t, b))
    dropped = torch.tensor([True, False])
    out_a, out_b = model(x, t, a, dropped), model(x, t, b, dropped)
    torch.testing.assert_close(out_a[0], out_b[0])  # null condition: same whatever the image
    assert not torch.allclose(out_a[1], out_b[1])


def test_unconditional_model_ignores_the_condition():
    model = make("none")
    x, t = torch.randn(2, 17, 100), torch.tensor([3, 4])
    torch.testing.assert_close(model(x, t, condition(2, 1)), model(x, t, None))


def test_conditional_model_without_condition_says_what_to_pass():
    with pytest.raises(ValueError, match="pass cond"):
        make("concat")(torch.randn(1, 17, 100), torch.tensor([1]))


def test_unknown_conditioning_lists_the_choices():
    with pytest.raises(ValueError, match="cross_attention.*concat.*film.*none"):
        UNet1D(UNetConfig(n_channels=17, conditioning="adagn"))


def test_film_reads_only_the_pooled_embedding_and_reaches_every_level():
    # The capacity control: tokens must not matter (that is what it controls for), and the
    # condition enters through the timestep embedding, which every residual block reads.
    model = make("film")
    x, t = torch.randn(2, 17, 100), torch.tensor([500, 500])
    a = condition(2, seed=1)
    other_tokens = Condition(a.pooled, torch.randn_like(a.tokens))
    torch.testing.assert_close(model(x, t, a), model(x, t, other_tokens))
    model.train()
    model(x, t, a).pow(2).mean().backward()
    blocks = [b for level in (*model.down, model.mid, *model.up) for b in level.blocks]
    assert all(b.film[1].weight.grad.abs().sum() > 0 for b in blocks)
    assert model.film.proj[1].weight.grad.abs().sum() > 0


def test_timestep_matters_and_embedding_is_sinusoidal():
    emb = timestep_embedding(torch.tensor([0, 1]), 8)
    torch.testing.assert_close(emb[0], torch.tensor([1.0] * 4 + [0.0] * 4))
    model = make("none")
    x = torch.randn(1, 17, 100)
    assert not torch.allclose(model(x, torch.tensor([1])), model(x, torch.tensor([900])))


def test_cross_attention_gets_gradients_from_the_loss():
    model = make("cross_attention").train()
    loss = model(torch.randn(4, 17, 100), torch.randint(0, 1000, (4,)), condition(4)).pow(2).mean()
    loss.backward()
    assert model.context.token_proj[1].weight.grad.abs().sum() > 0


@pytest.mark.parametrize("kdim", [None, 6])  # self-attention (packed weights) and cross
def test_attention_by_matrix_products_is_torchs_multi_head_attention(kdim):
    from torch import nn

    from analysis.models.conditioning import multi_head_attention

    torch.manual_seed(0)
    attn = nn.MultiheadAttention(16, 4, kdim=kdim, vdim=kdim, batch_first=True)
    with torch.no_grad():
        for p in attn.parameters():
            p.add_(0.3 * torch.randn_like(p))  # biases and out_proj non-zero
    query = torch.randn(3, 11, 16, requires_grad=True)
    memory = torch.randn(3, 5, kdim or 16, requires_grad=True)
    expected, _ = attn(query, memory, memory, need_weights=False)
    got = multi_head_attention(attn, query, memory)
    assert got.shape == (3, 11, 16)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    # The same gradients, for the inputs and every weight.
    grads = torch.autograd.grad(expected.square().sum(), [query, memory, *attn.parameters()])
    mine = torch.autograd.grad(got.square().sum(), [query, memory, *attn.parameters()])
    for a, b in zip(grads, mine):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-4)  # the key bias: ~0 by theory


def test_principal_axes_recover_a_known_rotation_in_order_of_variance():
    from analysis.models.conditioning import principal_axes

    g = torch.Generator().manual_seed(0)
    rotation, _ = torch.linalg.qr(torch.randn(4, 4, generator=g))
    latent = torch.randn(20000, 4, generator=g) * torch.tensor([5.0, 3.0, 1.0, 0.2])
    axes = principal_axes(latent @ rotation.T + 7.0, 2)  # an offset changes nothing
    assert axes.shape == (4, 2)
    # The first two columns of the rotation, each up to its sign.
    torch.testing.assert_close(axes.T @ rotation[:, :2], torch.diag(torch.sign(
        (axes.T @ rotation[:, :2]).diagonal())), atol=0.02, rtol=0)
    assert principal_axes(latent, 9).shape == (4, 4)  # never more than there are
    with pytest.raises(ValueError, match="n_components: expected at least 1"):
        principal_axes(latent, 0)


def test_feature_scaler_keeps_leading_components_of_pooled_and_tokens(monkeypatch):
    from analysis.models import conditioning
    from analysis.models.conditioning import FeatureScaler

    g = torch.Generator().manual_seed(1)
    cond = Condition(torch.randn(50, 8, generator=g) @ torch.randn(8, 8, generator=g),
                     torch.randn(50, 5, 6, generator=g))
    full = FeatureScaler.fit(cond)
    reduced = FeatureScaler.fit(cond, n_components=3)
    out = reduced(cond)
    assert out.pooled.shape == (50, 3) and out.tokens.shape == (50, 5, 3)
    # The projection of the z-scored features onto their leading axes, by decreasing variance.
    torch.testing.assert_close(out.pooled, full(cond).pooled @ reduced.pooled_basis)
    variances = out.pooled.var(0)
    assert (variances[:-1] >= variances[1:]).all()
    # It survives the checkpoint (state), and without components nothing is projected.
    again = FeatureScaler(**reduced.state())(cond)
    torch.testing.assert_close(again.tokens, out.tokens)
    assert "pooled_basis" not in full.state() and full(cond).pooled.shape == (50, 8)
    torch.testing.assert_close(full.tokens_mean, cond.tokens.mean(0))
    torch.testing.assert_close(full.tokens_std, cond.tokens.std(0) + 1e-6)
    # Fit and applied a few images at a time (memory), the same numbers.
    monkeypatch.setattr(conditioning, "CHUNK_IMAGES", 7)
    chunked = FeatureScaler.fit(cond, n_components=3)
    torch.testing.assert_close(chunked.tokens_basis, reduced.tokens_basis, atol=1e-5, rtol=0)
    torch.testing.assert_close(chunked(cond).tokens, out.tokens, atol=1e-5, rtol=0)
    # The network's input sizes follow (training.model_config_for).
    from analysis.models.conditioning import n_feature_dims
    assert (n_feature_dims(1776, 128), n_feature_dims(32, 128), n_feature_dims(32, None)) == (128, 32, 32)


def test_cross_attention_levels_count_from_the_lowest_resolution():
    from analysis.models.conditioning import CrossAttention

    def attending(levels):
        model = make("cross_attention", channel_mults=(1, 2, 2), cross_attention_levels=levels)
        return [name for name, m in model.named_modules() if isinstance(m, CrossAttention)]

    assert len(attending(None)) == 7  # 3 down, the middle, 3 up
    # Without the finest resolution: its down and up levels lose theirs.
    assert sorted(set(attending(None)) - set(attending(2))) == ["down.0.cross_attn",
                                                                 "up.2.cross_attn"]
    assert attending(0) == ["mid.cross_attn"]

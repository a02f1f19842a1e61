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

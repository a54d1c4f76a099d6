"""The generic environment encoder V: shapes, the optional flattened-latent MLP, save/load."""

from __future__ import annotations

import pytest
import torch

from codi_sdk.env_encoder import EnvironmentEncoder


@pytest.mark.parametrize("flat_hidden", [0, 32])
def test_environment_tokens_have_the_configured_shape_for_any_token_count(flat_hidden):
    env = EnvironmentEncoder(in_channels=4, max_tokens=16, width=32, num_tokens=3, out_dim=8, flat_hidden=flat_hidden)
    t = torch.tensor([0, 500])
    assert env(torch.randn(2, 16, 4), t).shape == (2, 3, 8)
    assert env(torch.randn(2, 9, 4), t).shape == (2, 3, 8)  # fewer tokens than max: padded for the MLP
    with pytest.raises(ValueError, match="max_tokens"):
        env(torch.randn(2, 17, 4), t)


def test_the_flat_mlp_sees_where_a_token_is():
    """Attention pooling with tiny position embeddings hardly tells positions apart at first; the
    flattened-latent path does at once, which is what reading a shape needs."""
    torch.manual_seed(0)
    env = EnvironmentEncoder(in_channels=1, max_tokens=4, width=16, num_tokens=1, out_dim=4, flat_hidden=16).eval()
    a, b = torch.zeros(1, 4, 1), torch.zeros(1, 4, 1)
    a[0, 0], b[0, 3] = 1.0, 1.0
    t = torch.tensor([0])
    with torch.no_grad():
        gap_flat = (env(a, t) - env(b, t)).abs().sum()
        flat, env.flat = env.flat, None
        gap_attn = (env(a, t) - env(b, t)).abs().sum()
        env.flat = flat
    assert gap_flat > 5 * gap_attn


def test_flat_hidden_round_trips_through_save_pretrained(tmp_path):
    env = EnvironmentEncoder(max_tokens=8, width=16, flat_hidden=24)
    env.save_pretrained(tmp_path)
    back = EnvironmentEncoder.from_pretrained(tmp_path)
    assert back.config.flat_hidden == 24
    x, t = torch.randn(2, 8, 4), torch.tensor([10, 20])
    torch.testing.assert_close(back(x, t), env(x, t))
    # folders written before the option existed load as before (no MLP)
    assert EnvironmentEncoder(max_tokens=8, width=16).flat is None

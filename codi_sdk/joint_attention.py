"""Joint attention: extra cross-attention onto the *other* streams' environment tokens.

CoDi adds to every cross-attention layer of a denoiser a second attention whose keys and values
come from the environment encodings V(z_t) of the other outputs being generated. We add it as a
diffusers attention processor with its own key/value/output projections (decoupled
cross-attention, as in IP-Adapter). The output projection starts at zero, so installing the
processors leaves a trained denoiser's output unchanged; stage 3 trains only these projections
(and the environment encoders) with the denoiser frozen.

Pass the environment through ``cross_attention_kwargs={"env": tokens}``; ``env=None`` skips it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import Attention, AttnProcessor2_0
from torch import nn


class EnvIgnoringAttnProcessor(AttnProcessor2_0):
    """diffusers' default processor that accepts (and ignores) ``env``, for self-attention layers."""

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, env=None, **kwargs):
        return super().__call__(attn, hidden_states, encoder_hidden_states, attention_mask, temb)


class JointAttnProcessor(nn.Module):
    """Cross-attention to the prompt context plus a zero-initialised attention to ``env`` tokens."""

    def __init__(self, hidden_size: int, env_dim: int):
        super().__init__()
        self.base = EnvIgnoringAttnProcessor()
        self.to_k_env = nn.Linear(env_dim, hidden_size, bias=False)
        self.to_v_env = nn.Linear(env_dim, hidden_size, bias=False)
        self.to_out_env = nn.Linear(hidden_size, hidden_size)
        nn.init.zeros_(self.to_out_env.weight)
        nn.init.zeros_(self.to_out_env.bias)

    def __call__(self, attn: Attention, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, env=None, **kwargs):
        out = self.base(attn, hidden_states, encoder_hidden_states, attention_mask, temb)
        if env is None:
            return out
        if hidden_states.ndim != 3:
            raise ValueError("joint attention expects token inputs [B, N, C] (transformer-block cross-attention)")
        b = hidden_states.shape[0]
        if env.shape[0] != b:
            if b % env.shape[0]:
                raise ValueError(f"env batch {env.shape[0]} does not divide the denoiser batch {b}")
            env = env.repeat_interleave(b // env.shape[0], dim=0)  # frames of a video share one env
        heads = attn.heads
        q = attn.to_q(hidden_states)
        k = self.to_k_env(env.to(q.dtype))
        v = self.to_v_env(env.to(q.dtype))
        q, k, v = (x.view(b, -1, heads, x.shape[-1] // heads).transpose(1, 2) for x in (q, k, v))
        joint = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, -1, heads * (q.shape[-1]))
        return out + self.to_out_env(joint) / attn.rescale_output_factor


def add_joint_attention(unet: nn.Module, env_dim: int) -> nn.ModuleDict:
    """Install joint attention on every cross-attention layer (``attn2``) of a diffusers model.

    Self-attention layers get :class:`EnvIgnoringAttnProcessor`. Returns the new joint layers as a
    ``ModuleDict`` (keys: processor names with ``.`` replaced by ``__``) to save or train them
    separately from the pretrained denoiser weights.
    """
    processors: dict[str, object] = {}
    joint = nn.ModuleDict()
    for name, module in unet.named_modules():
        if not isinstance(module, Attention):
            continue
        key = f"{name}.processor"
        if module.is_cross_attention:
            proc = JointAttnProcessor(module.to_q.out_features, env_dim)
            proc.to(device=module.to_q.weight.device, dtype=module.to_q.weight.dtype)
            joint[key.replace(".", "__")] = proc
            processors[key] = proc
        else:
            processors[key] = EnvIgnoringAttnProcessor()
    if not joint:
        raise ValueError("no cross-attention layer found to attach joint attention to")
    unet.set_attn_processor(processors)
    return joint


def save_joint_attention(joint: nn.ModuleDict, path, env_dim: int) -> None:
    """Write joint-attention layers as a component folder: ``config.json`` + safetensors."""
    import json
    from pathlib import Path

    from safetensors.torch import save_file

    from .io import atomic_path, atomic_write_text

    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in joint.state_dict().items() if not k.split(".")[-2] == "base"}
    with atomic_path(folder / "model.safetensors") as tmp:
        save_file(state, str(tmp))
    atomic_write_text(folder / "config.json", json.dumps({"_class_name": "JointAttention", "env_dim": env_dim, "layers": sorted(joint.keys())}, indent=2))


def load_joint_attention(unet: nn.Module, path) -> nn.ModuleDict:
    """Install joint attention on ``unet`` and load its weights from a folder written by
    :func:`save_joint_attention` (strict: every layer must match)."""
    import json
    from pathlib import Path

    from safetensors.torch import load_file

    folder = Path(path)
    config = json.loads((folder / "config.json").read_text())
    joint = add_joint_attention(unet, config["env_dim"])
    joint.load_state_dict(load_file(str(folder / "model.safetensors")), strict=True)
    return joint

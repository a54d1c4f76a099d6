"""The official-checkpoint converter: safe loading, the report, folders that load back strictly."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from codi_sdk.official import layout
from codi_sdk.official.convert import (
    OfficialCheckpointError,
    convert_official,
    load_checkpoint,
    official_state_dict_template,
    plan_conversion,
)
from codi_sdk.official.mapping import map_key

codi_audio_official = pytest.importorskip("codi_audio.official")


class NotATensor:
    """An arbitrary object: loading a pickle of it would need full unpickling."""


def test_full_layout_report_has_no_unused_or_missing_keys():
    state = official_state_dict_template(include_lazy=True)  # meta tensors: no memory
    report = plan_conversion(state).report
    assert report.unused == [] and report.missing == [] and report.shape_errors == []
    assert report.ok
    assert report.mapped + sum(len(v) for v in report.dropped.values()) == len(state)
    assert len(report.components) == 8
    assert report.skipped_targets == {}
    assert len(report.targets) == 19
    assert report.tied == [("optimus.decoder.transformer.wte.weight", "optimus.decoder.lm_head.weight")]


def test_report_lists_unused_missing_and_wrong_shapes():
    state = official_state_dict_template(["autokl"])
    del state["autokl.decoder.conv_out.bias"]
    state["autokl.extra.weight"] = torch.empty(3, device="meta")
    state["autokl.quant_conv.bias"] = torch.empty(9, device="meta")
    report = plan_conversion(state).report
    assert report.unused == ["autokl.extra.weight"]
    assert report.missing == ["autokl.decoder.conv_out.bias"]
    assert report.shape_errors and "autokl.quant_conv.bias" in report.shape_errors[0]
    assert "image/vae" in report.skipped_targets
    text = report.format()
    assert "keys unused: 1" in text and "keys missing: 1" in text


def test_a_tied_key_stored_once_fills_its_twin():
    state = official_state_dict_template(["optimus"])
    del state["optimus.decoder.lm_head.weight"]
    plan = plan_conversion(state)
    assert plan.report.missing == []
    assert plan.assignments["text/vae/decoder"]["lm_head.weight"][0] == "optimus.decoder.transformer.wte.weight"


def test_a_pickle_with_an_arbitrary_object_is_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"model.weight": torch.zeros(2), "payload": NotATensor()}, path)
    with pytest.raises(OfficialCheckpointError, match="full unpickling"):
        load_checkpoint(path)


def test_a_wrapped_state_dict_is_unwrapped(tmp_path):
    path = tmp_path / "wrapped.pth"
    torch.save({"state_dict": {"betas": torch.zeros(1000)}, "epoch": 3}, path)
    assert list(load_checkpoint(path)) == ["betas"]


def _synthetic_checkpoint(folder):
    """Random tensors in the official layout for a subset: the audio environment encoder, AudioLDM's
    STFT front end, the root schedule buffers and some documented drops, in two files."""
    gen = torch.Generator().manual_seed(0)
    shapes = {e.key: (e.shape, e.dtype) for e in layout.entries(include_lazy=True)}
    enc = {
        k: torch.randn(s, generator=gen) * 0.02
        for k, (s, d) in shapes.items()
        if k.startswith("model.diffusion_model.unet_audio.connecters_out.") or k.startswith("audioldm.fn_STFT.")
    }
    enc["clip.model.text_model.embeddings.position_ids"] = torch.arange(77)[None]
    enc["clap.model.audio_branch.logmel_extractor.melW"] = torch.rand(513, 64, generator=gen)
    root = {e.key: torch.rand(e.shape, generator=gen) for e in layout.entries("root")}
    torch.save(enc, folder / "CoDi_encoders.pth")
    torch.save(root, folder / "CoDi_root.pth")
    return enc


def test_synthetic_checkpoint_converts_and_loads_strictly(tmp_path):
    src, dst = tmp_path / "official", tmp_path / "converted"
    src.mkdir()
    original = _synthetic_checkpoint(src)

    with pytest.raises(OfficialCheckpointError, match="strict"):
        convert_official(src, tmp_path / "strict", dtype="fp16", strict=True)
    assert not (tmp_path / "strict").exists()

    report = convert_official(src, dst, dtype="fp16")
    assert report.unused == []
    assert set(report.targets) == {"audio/env_encoder", "audio/mel"}
    assert report.missing and all(k.startswith(("model.diffusion_model.unet_audio.", "audioldm.", "clip.", "clap.")) for k in report.missing)
    assert not any(p.name.endswith(".partial") for p in tmp_path.iterdir())

    env = codi_audio_official.load_official_component(dst, "audio/env_encoder")
    tensors = load_file(str(dst / "audio" / "env_encoder" / "diffusion_pytorch_model.safetensors"))
    assert all(t.dtype == torch.float16 for t in tensors.values())
    env.load_state_dict(tensors, strict=True)  # raises on any missing or unexpected key
    prefix = "model.diffusion_model.unet_audio."
    for key in ("connecters_out.1.0.in_layers.2.weight", "connecters_out.6.2.bias"):
        ours = map_key(prefix + key, tuple(original[prefix + key].shape)).key
        torch.testing.assert_close(tensors[ours].float(), original[prefix + key].half().float())

    mel = codi_audio_official.load_official_component(dst, "audio/mel")
    torch.testing.assert_close(mel.forward_basis.float(), original["audioldm.fn_STFT.stft_fn.forward_basis"].half().float())
    mel_tensors = load_file(str(dst / "audio" / "mel" / "diffusion_pytorch_model.safetensors"))
    mel.load_state_dict(mel_tensors, strict=True)
    torch.testing.assert_close(mel.mel_basis.float(), original["audioldm.fn_STFT.mel_basis"].half().float())

    profile = json.loads((dst / "codi_official.json").read_text())
    assert profile["modalities"]["audio"]["scale_factor"] == 0.9228
    assert profile["modalities"]["audio"]["folders_written"] == ["mel", "env_encoder"]
    sched = json.loads((dst / "scheduler" / "scheduler_config.json").read_text())
    assert sched["beta_schedule"] == "scaled_linear" and sched["_class_name"] == "DDIMScheduler"

    with pytest.raises(Exception, match="not empty"):
        convert_official(src, dst)


def test_split_and_reshaped_tensors_keep_their_values():
    from codi_sdk.official.convert import _take

    qkv = torch.randn(768, 256)
    state = {"clap.model.audio_branch.layers.0.blocks.0.attn.qkv.weight": qkv}
    assert "audio/encoder" not in plan_conversion(state).assignments  # an incomplete folder is not written
    key = "clap.model.audio_branch.layers.0.blocks.0.attn.qkv.weight"
    outcome = map_key(key, (768, 256))
    parts = [_take(state, (key, p.shape, i, 3), torch.float32) for i, p in enumerate(outcome.parts)]
    torch.testing.assert_close(torch.cat(parts), qkv)
    q = torch.randn(512, 512, 1, 1)
    outcome = map_key("autokl.encoder.mid.attn_1.q.weight", (512, 512, 1, 1))
    got = _take({"k": q}, ("k", outcome.shape, None, 1), torch.float16)
    assert got.shape == (512, 512) and got.dtype == torch.float16
    torch.testing.assert_close(got.float(), q[:, :, 0, 0].half().float())


def test_cli_converts_and_prints_the_report(tmp_path):
    from typer.testing import CliRunner

    from codi_sdk.cli import app

    src = tmp_path / "official"
    src.mkdir()
    torch.save({e.key: torch.rand(e.shape) for e in layout.entries("audioldm") if "fn_STFT" in e.key}, src / "CoDi_encoders.pth")
    result = CliRunner().invoke(app, ["convert-official", "--from", str(src), "--to", str(tmp_path / "out"), "--dtype", "fp32"])
    assert result.exit_code == 0, result.output
    assert "keys unused: 0" in result.output and "audio/mel (3)" in result.output
    result = CliRunner().invoke(app, ["convert-official", "--from", str(src), "--to", str(tmp_path / "out2"), "--strict"])
    assert result.exit_code == 1
    assert not (tmp_path / "out2").exists()
    result = CliRunner().invoke(app, ["convert-official", "--from", str(src), "--to", str(tmp_path / "out3"), "--dtype", "bf16"])
    assert result.exit_code == 1 and "dtype" in result.output

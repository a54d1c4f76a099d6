"""The codi-official modules have exactly the official state-dict layout after key mapping.

Every module is built on the meta device (no memory for its ~5.7 B parameters); the official side
is the shipped layout (``codi_sdk/official/layout.json.gz``), itself checked against the project's
shared manifest when that folder is present.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from codi_sdk.official import layout
from codi_sdk.official.mapping import (
    FILLED,
    TARGETS,
    Dropped,
    Mapped,
    Split,
    map_key,
    mapped_layout,
)

codi_image_official = pytest.importorskip("codi_image.official")
codi_audio_official = pytest.importorskip("codi_audio.official")
codi_text_official = pytest.importorskip("codi_text.official")

BUILDERS = {}
for _mod in (codi_image_official, codi_audio_official, codi_text_official):
    for _t in _mod.OFFICIAL_TARGETS:
        BUILDERS[_t] = _mod.build_official_component

MANIFEST = Path(__file__).resolve().parents[2] / "shared" / "codi-official"

#: Official keys our modules rebuild instead of loading, per component (documented in the manifest README).
EXPECTED_DROPS = {"unet_image": 0, "unet_text": 0, "unet_audio": 0, "autokl": 0, "audioldm": 0, "optimus": 12, "clip": 2, "clap": 8 + 3, "root": 12}


def _our_shapes(target: str) -> dict[str, tuple[int, ...]]:
    with torch.device("meta"):
        module = BUILDERS[target](target)
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


def test_every_folder_has_a_builder():
    folders = {t for ts in TARGETS.values() for t in ts}
    assert folders == set(BUILDERS)


@pytest.mark.parametrize("component", [c for c in layout.COMPONENTS])
def test_mapping_is_a_bijection_with_equal_shapes(component):
    mapped = mapped_layout(component, include_lazy=True)
    assert mapped.unmapped == []
    assert mapped.collisions == []
    assert len(mapped.dropped) == EXPECTED_DROPS[component]
    for target, official in mapped.targets.items():
        ours = _our_shapes(target)
        assert set(ours) - set(official) == set(), f"{target}: keys only in our module"
        assert set(official) - set(ours) == set(), f"{target}: official keys our module lacks"
        wrong = {k: (official[k], ours[k]) for k in ours if ours[k] != official[k]}
        assert wrong == {}, f"{target}: shapes differ"


def test_all_6109_entries_are_accounted_for():
    entries = layout.entries()
    assert len(entries) == 6109
    assert len({e.key for e in entries}) == 6109
    mapped = mapped_layout(include_lazy=False)
    n_ours = sum(len(t) for t in mapped.targets.values()) - sum(len(f) for f in FILLED.values())
    n_split = sum(1 for e in entries if isinstance(map_key(e.key, e.shape), Split))
    # each official key is either dropped, mapped to one of our keys, or split into 3 of them
    assert n_ours == len(entries) - len(mapped.dropped) + 2 * n_split
    assert n_split == 2 * 18  # HTSAT qkv weight + bias in each of its 18 blocks


def test_unknown_keys_are_not_mapped():
    assert map_key("model.diffusion_model.unet_image.not_a_module.weight", (1,)) is None
    assert map_key("something_else.weight", (1,)) is None


def test_documented_drops_and_ties():
    assert isinstance(map_key("betas", (1000,)), Dropped)
    assert isinstance(map_key("optimus.decoder.transformer.h.3.attn.bias", (1, 1, 1024, 1024)), Dropped)
    assert isinstance(map_key("clip.model.text_model.embeddings.position_ids", (1, 77)), Dropped)
    assert isinstance(map_key("clap.model.audio_branch.logmel_extractor.melW", (513, 64)), Dropped)
    assert layout.tied_groups() == [("optimus.decoder.transformer.wte.weight", "optimus.decoder.lm_head.weight")]
    wte = map_key("optimus.decoder.transformer.wte.weight", (50260, 768))
    assert wte == Mapped("text/vae/decoder", "transformer.wte.weight")


def test_examples_of_renames():
    p = "model.diffusion_model.unet_image."
    assert map_key(p + "input_blocks.1.0.0.in_layers.2.weight", (320, 320, 3, 3)) == Mapped("image/unet", "down_blocks.0.resnets.0.conv1.weight")
    assert map_key(p + "input_blocks.1.0.1.temporal_attn.to_q.weight", (640, 320)) == Mapped("video/temporal", "down.0.0.temporal_attn.to_q.weight")
    assert map_key(p + "output_blocks.5.2.conv.weight", (1280, 1280, 3, 3)) == Mapped("image/unet", "up_blocks.1.upsamplers.0.conv.weight")
    assert map_key(p + "output_block_connecters_in.5.0.proj_in.weight", (1280, 1280, 1, 1)) == Mapped("image/joint", "up.1.2.proj_in.weight")
    assert map_key("autokl.decoder.up.3.block.0.conv1.weight", (512, 512, 3, 3)) == Mapped("image/vae", "decoder.up_blocks.0.resnets.0.conv1.weight")
    assert map_key("autokl.encoder.mid.attn_1.q.weight", (512, 512, 1, 1)) == Mapped("image/vae", "encoder.mid_block.attentions.0.to_q.weight", (512, 512))
    qkv = map_key("clap.model.audio_branch.layers.0.blocks.0.attn.qkv.weight", (768, 256))
    assert isinstance(qkv, Split) and [p.key.rsplit(".", 2)[1] for p in qkv.parts] == ["query", "key", "value"]
    assert all(part.shape == (256, 256) for part in qkv.parts)


@pytest.mark.skipif(not MANIFEST.is_dir(), reason="shared manifest folder not present")
def test_shipped_layout_equals_the_shared_manifest():
    rows = [json.loads(line) for line in (MANIFEST / "all_entries.jsonl").read_text().splitlines() if line.strip()]
    ours = [(e.key, list(e.shape), e.dtype, e.kind) for e in layout.entries()]
    assert sorted(ours) == sorted((r[0], r[1], r[2], r[3]) for r in rows)

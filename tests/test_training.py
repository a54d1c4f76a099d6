"""Training stages: losses, data-parallel consistency, a tiny end-to-end run that resumes."""

from __future__ import annotations

import json
import shutil
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from codi_sdk.training.data import render_pairs
from codi_sdk.training.losses import multi_positive_info_nce, positives_from_keys


def test_multi_positive_info_nce_is_clip_loss_with_a_diagonal_mask():
    from codi_sdk.bridge import Bridge

    a, b = torch.randn(6, 8), torch.randn(6, 8)
    scale = torch.tensor(2.0)
    eye = torch.eye(6, dtype=torch.bool)
    torch.testing.assert_close(multi_positive_info_nce(a, b, eye, scale), Bridge.info_nce(a, b, scale))


def test_positives_treat_equal_descriptions_as_matches():
    keys = [(("color", "red"),), (("color", "blue"),), (("color", "red"),)]
    mask = positives_from_keys(keys, keys)
    assert mask.tolist() == [[True, False, True], [False, True, False], [True, False, True]]


def test_positives_match_a_partial_description_to_every_compatible_full_one():
    full = [(("color", "red"), ("shape", "circle"), ("motion", "left")),
            (("color", "red"), ("shape", "square"), ("motion", "up")),
            (("color", "blue"), ("shape", "circle"), ("motion", "left"))]
    partial = [(("color", "red"),), (("shape", "circle"), ("motion", "left")), ()]
    mask = positives_from_keys(full, partial)
    assert mask.tolist() == [[True, True, True], [True, False, True], [False, True, True]]
    # an image shows no motion: it matches its colour and shape in any motion, and nothing else
    image = [(("color", "red"), ("shape", "circle"))]
    assert positives_from_keys(image, full).tolist() == [[True, False, False]]


def test_bridge_paraphrases_come_from_the_same_scene():
    p = render_pairs("text", 64, progress=False)
    assert len(p.paraphrases) == 64
    for full, para, key in zip(p.captions, p.paraphrases, p.keys):
        assert all(v in para and v in full for _, v in key)
    assert any(a != b for a, b in zip(p.captions, p.paraphrases))  # other templates, same meaning


def test_training_pairs_are_text_paired_and_never_hold_a_heldout_pair():
    p = render_pairs("image", 48, progress=False)
    assert p.samples.shape == (48, 3, 32, 32) and len(p.captions) == 48
    held = {(("color", "red"), ("shape", "triangle")), (("color", "green"), ("shape", "square")), (("color", "blue"), ("shape", "circle"))}
    assert not any(k[:2] in held for k in p.keys)


def test_auxiliary_colours_mix_in_every_shape_and_keep_heldout_pairs_out():
    from codi_sdk.toyworld.probes import probe
    from codi_sdk.toyworld.scenes import AUXILIARY_COLORS, COLORS, HELDOUT

    n = 400
    plain = render_pairs("audio", 24, progress=False)
    p = render_pairs("image", n, progress=False, auxiliary=0.25)
    colours = [dict(k)["color"] for k in p.keys]
    aux = [i for i, c in enumerate(colours) if c in AUXILIARY_COLORS]
    assert 0.18 * n < len(aux) < 0.32 * n  # about the share asked for
    assert {dict(p.keys[i])["shape"] for i in aux} == {"circle", "square", "triangle"}  # every shape, in new colours
    assert {colours[i] for i in aux} == set(AUXILIARY_COLORS)
    assert not any((dict(k)["color"], dict(k)["shape"]) in HELDOUT for k in p.keys)
    for i in aux:  # a partial caption of an auxiliary item always names its colour
        assert colours[i] in p.partial[i] and ("color", colours[i]) in p.partial_keys[i]
        assert colours[i] in p.captions[i]
    # the other items are exactly what a run without auxiliary colours draws
    same = render_pairs("image", n, progress=False)
    rest = [i for i in range(n) if i not in set(aux)]
    assert [p.captions[i] for i in rest] == [same.captions[i] for i in rest]
    assert torch.equal(p.samples[rest], same.samples[rest])
    # the renderings show the auxiliary colour: its own RGB (the probe knows only ToyWorld's four hues)
    i = aux[0]
    img = ((p.samples[i].permute(1, 2, 0) + 1) * 127.5).round().numpy()
    fill = img[img.max(-1) > 0].mean(0)
    assert abs(fill - AUXILIARY_COLORS[colours[i]][0]).max() <= 20.5
    assert probe("image", img.astype("uint8"))["shape"] == dict(p.keys[i])["shape"]
    assert plain.samples.shape == (24, 16000) and not set(AUXILIARY_COLORS) & {dict(k)["color"] for k in plain.keys}
    assert set(COLORS).isdisjoint(AUXILIARY_COLORS)


def test_auxiliary_audio_sounds_its_own_pitch():
    import numpy as np

    from codi_sdk.toyworld.render import render_audio
    from codi_sdk.toyworld.scenes import AUXILIARY_COLORS, TrainingScene

    wave = render_audio(TrainingScene("purple", "circle", "down"), np.random.default_rng(0))
    spectrum = np.abs(np.fft.rfft(wave))
    peak = np.fft.rfftfreq(len(wave), 1 / 16000)[int(spectrum.argmax())]
    assert abs(peak - AUXILIARY_COLORS["purple"][1]) < 0.02 * AUXILIARY_COLORS["purple"][1]


def test_training_scenes_accept_auxiliary_colours_only_there():
    from codi_sdk.errors import InvalidInputError
    from codi_sdk.toyworld.scenes import Scene, TrainingScene

    assert TrainingScene("cyan", "square", "up").color == "cyan"
    assert TrainingScene("red", "circle", "up").as_dict() == Scene("red", "circle", "up").as_dict()
    with pytest.raises(InvalidInputError, match="accepted: red, green, blue, yellow"):
        Scene("cyan", "square", "up")  # evaluation scenes stay ToyWorld's 48
    with pytest.raises(InvalidInputError, match="shape 'hexagon'"):
        TrainingScene("cyan", "hexagon", "up")
    with pytest.raises(InvalidInputError, match="color 'mauve'; accepted: red, green, blue, yellow, orange, cyan"):
        TrainingScene("mauve", "square", "up")


def test_recipe_rejects_an_auxiliary_share_outside_zero_to_one():
    from pydantic import ValidationError

    from codi_sdk.training.recipe import ToyWorldRecipe

    assert ToyWorldRecipe().auxiliary_colors == {"text": 0.25, "image": 0.25, "audio": 0.25}  # the default: not video
    assert ToyWorldRecipe(auxiliary_colors=0.25).auxiliary_colors == 0.25 and ToyWorldRecipe(auxiliary_colors=0).auxiliary_colors == 0
    for bad in (-0.1, 1.0, {"image": 0.25, "video": 1.0}):
        with pytest.raises(ValidationError, match="auxiliary_colors"):
            ToyWorldRecipe(auxiliary_colors=bad)
    per = ToyWorldRecipe(auxiliary_colors={"text": 0.25, "image": 0.3})
    assert [per.per(per.auxiliary_colors, m, 0.0) for m in ("text", "image", "video")] == [0.25, 0.3, 0.0]


def test_a_per_modality_auxiliary_share_reaches_only_that_modality_s_pairs(tmp_path, monkeypatch):
    from codi_sdk.training import stages
    from codi_sdk.training.recipe import ToyWorldRecipe

    seen = {}
    monkeypatch.setattr(stages, "render_pairs", lambda m, n, seed, progress, renderer, auxiliary: seen.setdefault(m, auxiliary))
    trainer = stages.ToyWorldTrainer(tmp_path, ToyWorldRecipe(auxiliary_colors={"image": 0.25}, n_pairs={"image": 4, "video": 4}),
                                     progress=False)
    trainer.pairs("image"), trainer.pairs("video")
    assert seen == {"image": 0.25, "video": 0.0}


def test_alignment_pairs_take_their_own_auxiliary_share_and_the_other_stages_keep_theirs(tmp_path, monkeypatch):
    from codi_sdk.training import stages
    from codi_sdk.training.recipe import ToyWorldRecipe

    calls = []
    monkeypatch.setattr(stages, "render_pairs", lambda m, n, seed, progress, renderer, auxiliary: calls.append((m, auxiliary)) or object())
    recipe = ToyWorldRecipe(auxiliary_colors={"image": 0.25}, auxiliary_colors_align={"audio": 0.3}, n_pairs={"image": 4, "audio": 4})
    trainer = stages.ToyWorldTrainer(tmp_path, recipe, progress=False)
    assert trainer.pairs("image", 1) is trainer.pairs("image")  # no stage-1 share of its own: the same pairs
    assert trainer.pairs("audio", 1) is not trainer.pairs("audio")
    assert trainer.pairs("audio", 1) is trainer.pairs("audio", 1)  # rendered once
    assert sorted(calls) == [("audio", 0.0), ("audio", 0.3), ("image", 0.25)]
    assert ToyWorldRecipe().auxiliary_colors_align == {"audio": 0.25}
    with pytest.raises(ValueError, match=r"each share must be in \[0, 1\)"):
        ToyWorldRecipe(auxiliary_colors_align={"audio": 1.0})


def test_exclusive_unnamed_colours_are_negatives_of_every_caption_naming_a_colour(tmp_path):
    from codi_sdk.training.losses import positives_from_keys
    from codi_sdk.training.recipe import ToyWorldRecipe
    from codi_sdk.training.stages import UNNAMED_COLOR, ToyWorldTrainer

    small = dict(n_pairs={"text": 40, "audio": 16}, unnamed_colors=0.25, auxiliary_colors_align={})
    plain = ToyWorldTrainer(tmp_path / "a", ToyWorldRecipe(**small, unnamed_colors_exclusive=[]), progress=False)
    excl = ToyWorldTrainer(tmp_path / "b", ToyWorldRecipe(**small, unnamed_colors_exclusive=["audio"]), progress=False)
    a, b = plain._alignment_batch("audio", 2, 8), excl._alignment_batch("audio", 2, 8)
    assert a["captions"] == b["captions"] and a["sample_keys"][:6] == b["sample_keys"][:6]  # named items: as before
    assert all(dict(k)["color"] == UNNAMED_COLOR and dict(k).items() >= dict(ka).items()
               for k, ka in zip(b["sample_keys"][6:], a["sample_keys"][6:]))
    red = [(("color", "red"), ("shape", "circle"), ("motion", "left"))]
    assert positives_from_keys(a["sample_keys"][6:], red).any()  # as trained before: "a red circle" could match
    for k, cap in zip(b["sample_keys"][6:], b["keys"][6:]):
        assert not positives_from_keys([k], [(("color", c),) for c in ("red", "green", "blue", "yellow")]).any()
        assert positives_from_keys([k], [cap]).all()  # its own colour-less caption stays a positive
    most = ToyWorldTrainer(tmp_path / "c", ToyWorldRecipe(**small | {"unnamed_colors": 0.6}, unnamed_colors_exclusive=["audio"]),
                           progress=False)
    tiny = most._alignment_batch("audio", 2, 1)  # rounding gives the one item to the unnamed share: no named part
    assert "color" not in dict(tiny["keys"][0]) and dict(tiny["sample_keys"][0])["color"] == UNNAMED_COLOR


def test_unnamed_colour_scenes_stay_away_from_every_toyworld_colour_and_pitch():
    import colorsys

    import numpy as np

    from codi_sdk.toyworld.render import PITCH
    from codi_sdk.toyworld.scenes import COLORS, UNNAMED, unnamed_color_scene

    def hue(rgb):
        return 360 * colorsys.rgb_to_hsv(*(c / 255 for c in rgb))[0]

    scenes = [unnamed_color_scene(np.random.default_rng(i)) for i in range(300)]
    assert {s.color for s in scenes} == {UNNAMED} and {s.shape for s in scenes} == {"circle", "square", "triangle"}
    assert {s.motion for s in scenes} == {"left", "right", "up", "down"} and not any(s.heldout for s in scenes)
    for s in scenes:
        for base in COLORS.values():
            d = abs(hue(s.rgb) - hue(base))
            assert min(d, 360 - d) >= 25 and max(abs(a - b) for a, b in zip(s.rgb, base)) > 40
        assert all(abs(12 * np.log2(s.pitch / p)) >= 1 for p in PITCH.values()) and 200 <= s.pitch <= 680
    hues = sorted(hue(s.rgb) for s in scenes)
    assert hues[-1] - hues[0] > 250  # spread round the wheel, not one colour
    assert unnamed_color_scene(np.random.default_rng(5)) == scenes[5]  # seeded


def test_subharmonic_unnamed_scenes_sound_a_toyworld_pitch_divided_and_keep_away_from_it():
    import numpy as np

    from codi_sdk.toyworld.render import PITCH
    from codi_sdk.toyworld.scenes import UNNAMED_SUBHARMONICS, unnamed_color_scene

    plain = [unnamed_color_scene(np.random.default_rng(i)) for i in range(300)]
    assert [unnamed_color_scene(np.random.default_rng(i), 0.0) for i in range(300)] == plain  # 0: as before
    sub = [unnamed_color_scene(np.random.default_rng(i), 0.3) for i in range(300)]
    divided = [s for s in sub if any(np.isclose(s.pitch, p / k) for p in PITCH.values() for k in UNNAMED_SUBHARMONICS)]
    assert 60 <= len(divided) <= 120  # about 0.3 of them
    assert {round(s.pitch, 1) for s in divided} >= {130.8, 164.8, 196.0}  # an octave below red, green, blue
    assert all(95 <= s.pitch <= 680 and all(abs(12 * np.log2(s.pitch / p)) >= 1 for p in PITCH.values()) for s in sub)
    assert min(s.pitch for s in sub if s not in divided) < 200  # the range reaches below the plain one
    assert [(s.shape, s.motion, s.rgb) for s in sub] == [(s.shape, s.motion, s.rgb) for s in plain]  # pitch only
    with pytest.raises(ValueError, match="share"):
        unnamed_color_scene(np.random.default_rng(0), 1.5)


def test_stage_one_draws_its_unnamed_sounds_with_subharmonics_and_the_vae_keeps_the_plain_ones(tmp_path):
    from codi_sdk.training.recipe import ToyWorldRecipe
    from codi_sdk.training.stages import ToyWorldTrainer

    kw = dict(n_pairs={"text": 40, "audio": 20}, unnamed_colors=0.5, unnamed_colors_vae={"audio": 0.5})
    trainer = ToyWorldTrainer(tmp_path / "a", ToyWorldRecipe(**kw, unnamed_subharmonics={"audio": 0.5}), progress=False)
    plain = ToyWorldTrainer(tmp_path / "b", ToyWorldRecipe(**kw, unnamed_subharmonics={}), progress=False)
    one, two = trainer.unnamed_pairs("audio", stage=1), trainer.unnamed_pairs("audio")
    assert one is not two and one is trainer.unnamed_pairs("audio", stage=1) and len(one) == len(two) == 10
    assert torch.equal(two.samples, plain.unnamed_pairs("audio").samples)  # the VAE's data: unchanged
    assert plain.unnamed_pairs("audio", stage=1) is plain.unnamed_pairs("audio")  # share 0: one set
    assert not torch.equal(one.samples, two.samples) and one.keys == two.keys  # same scenes, other pitches
    batch = trainer._alignment_batch("audio", 0, 8)
    assert any(any(torch.equal(x, u) for u in one.samples) for x in batch["samples"][4:])
    assert ToyWorldRecipe().unnamed_subharmonics == {"audio": 0.3} and ToyWorldRecipe().align_partial == {"audio": 1.0}
    with pytest.raises(ValueError, match=r"each share must be in \[0, 1\)"):
        ToyWorldRecipe(unnamed_subharmonics={"audio": 1.0})
    with pytest.raises(ValueError):
        ToyWorldRecipe(align_partial={"audio": -1.0})


def test_alignment_loss_reads_the_encoder_against_second_captions_with_a_partial_weight():
    from codi_sdk.registry import get_registry
    from codi_sdk.training.losses import AlignmentLoss

    torch.manual_seed(0)
    reg = get_registry()
    text, enc = reg.get("text").init_encoder().eval(), reg.get("image").init_encoder()
    caps = ["a red circle moving left", "a blue square moving up", "a green triangle moving down", "a yellow circle moving right"]
    keys = [(("color", c), ("shape", s), ("motion", m)) for c, s, m in
            (("red", "circle", "left"), ("blue", "square", "up"), ("green", "triangle", "down"), ("yellow", "circle", "right"))]
    paras = ["a red circle moving left", "something blue moving up", "a green triangle", "a yellow circle moving right"]
    pkeys = [keys[0], (("color", "blue"), ("motion", "up")), (("color", "green"), ("shape", "triangle")), keys[3]]
    x = torch.rand(4, 3, 32, 32)
    with_part = AlignmentLoss(text, enc, train_text=False, partial=0.5)
    logs = with_part(caps, keys, x, paraphrases=paras, paraphrase_keys=pkeys)
    assert set(logs) == {"nce", "gap", "part", "loss"} and "para" not in logs
    torch.testing.assert_close(logs["loss"], logs["nce"] + logs["gap"] + 0.5 * logs["part"])
    logs["loss"].backward()
    assert all(p.grad is None for p in text.parameters()) and any(p.grad is not None for p in enc.parameters())
    plain = AlignmentLoss(text, enc, train_text=False)(caps, keys, x, paraphrases=paras, paraphrase_keys=pkeys)
    assert set(plain) == {"nce", "gap", "loss"}  # weight 0: the second captions are not read
    with pytest.raises(ValueError, match="train_text=False"):
        AlignmentLoss(text, enc, train_text=True, partial=1.0)


def test_unnamed_colour_pairs_are_captioned_without_colour_and_show_their_own_colour():
    from codi_sdk.toyworld.probes import probe
    from codi_sdk.toyworld.render import PARTIAL_TEMPLATES
    from codi_sdk.training.data import render_unnamed_pairs

    colour_words = {"red", "green", "blue", "yellow", "orange", "cyan", "purple", "pink", "unnamed"}
    p = render_unnamed_pairs("image", 60, progress=False)
    assert p.samples.shape == (60, 3, 32, 32)
    for texts in (p.captions, p.paraphrases, p.partial):
        assert not any(colour_words & set(t.split()) for t in texts)
    assert all(dict(k).keys() == {"shape", "motion"} for k in p.keys)
    assert {frozenset(dict(k)) for k in p.partial_keys} == {frozenset({"shape", "motion"}), frozenset({"shape"})}
    assert all(dict(k)["shape"] in c and dict(k)["motion"] in c for k, c in zip(p.keys, p.captions))
    img = ((p.samples[0].permute(1, 2, 0) + 1) * 127.5).round().numpy().astype("uint8")
    assert probe("image", img)["shape"] == dict(p.keys[0])["shape"]
    assert torch.equal(render_unnamed_pairs("image", 3, progress=False).samples, p.samples[:3])  # item i is item i
    v = render_unnamed_pairs("video", 2, progress=False)
    a = render_unnamed_pairs("audio", 2, progress=False)
    assert v.samples.shape == (2, 8, 3, 32, 32) and a.samples.shape == (2, 16000)
    with pytest.raises(ValueError, match="image, video and audio; got 'text'"):
        render_unnamed_pairs("text", 2)
    assert frozenset({"shape", "motion"}) in PARTIAL_TEMPLATES


def test_unnamed_colour_audio_sounds_its_own_pitch():
    import numpy as np

    from codi_sdk.toyworld.render import render_audio
    from codi_sdk.toyworld.scenes import TrainingScene

    wave = render_audio(TrainingScene("unnamed", "circle", "down", rgb=(200, 120, 40), pitch=610.0), np.random.default_rng(0))
    spectrum = np.abs(np.fft.rfft(wave))
    assert abs(np.fft.rfftfreq(len(wave), 1 / 16000)[int(spectrum.argmax())] - 610.0) < 0.02 * 610


def test_training_scenes_give_rgb_and_pitch_exactly_for_unnamed_colours():
    from codi_sdk.errors import InvalidInputError
    from codi_sdk.toyworld.scenes import TrainingScene

    with pytest.raises(InvalidInputError, match="rgb and pitch exactly when its colour is 'unnamed'"):
        TrainingScene("unnamed", "circle", "up")
    with pytest.raises(InvalidInputError, match="rgb and pitch exactly"):
        TrainingScene("red", "circle", "up", rgb=(1, 2, 3), pitch=300.0)
    with pytest.raises(InvalidInputError, match="three values in 0..255"):
        TrainingScene("unnamed", "circle", "up", rgb=(1, 2, 300), pitch=300.0)


def test_alignment_batches_mix_in_the_unnamed_share_and_leave_the_rest_as_before(tmp_path):
    from codi_sdk.training.recipe import ToyWorldRecipe
    from codi_sdk.training.stages import ToyWorldTrainer

    small = {"text": 40, "image": 40, "video": 8, "audio": 8}
    plain = ToyWorldTrainer(tmp_path / "a", ToyWorldRecipe(n_pairs=small, unnamed_colors=0, unnamed_colors_vae=0), progress=False)
    mixed = ToyWorldTrainer(tmp_path / "b", ToyWorldRecipe(n_pairs=small, unnamed_colors=0.25, unnamed_colors_vae=0), progress=False)
    assert plain.unnamed_pairs("image") is None and mixed.unnamed_pairs("text") is None
    assert len(mixed.unnamed_pairs("image")) == 10
    a = plain._alignment_batch("image", 3, 16, paraphrases=True)
    b = mixed._alignment_batch("image", 3, 16, paraphrases=True)
    assert len(b["captions"]) == 16 and b["samples"].shape == (16, 3, 32, 32)
    assert b["captions"][:12] == plain._alignment_batch("image", 3, 12)["captions"]  # the named part: as without
    assert set(a) == set(b) == {"captions", "keys", "samples", "sample_keys", "paraphrases", "paraphrase_keys"}
    assert all("color" not in dict(k) for k in b["keys"][12:]) and all("color" in dict(k) for k in b["keys"][:12])
    assert all(dict(k).keys() == {"shape"} for k in b["sample_keys"][12:])  # an image shows no motion
    assert set(plain._alignment_batch("image", 3, 16)) == {"captions", "keys", "samples", "sample_keys"}


@pytest.mark.slow
def test_vae_and_decoder_batches_mix_in_unnamed_colours_when_asked(tmp_path, monkeypatch):
    from codi_sdk.training import stages
    from codi_sdk.training.recipe import ToyWorldRecipe

    seen = {"vae": [], "decoder": []}

    class SpyVAE(stages.VAELoss):
        def forward(self, batch):
            seen["vae"].append(batch)
            return super().forward(batch)

    class SpyDecoder(stages.DecoderLoss):
        def forward(self, batch, features):
            seen["decoder"].append((batch, features))
            return super().forward(batch, features)

    monkeypatch.setattr(stages, "VAELoss", SpyVAE)
    monkeypatch.setattr(stages, "DecoderLoss", SpyDecoder)
    recipe = ToyWorldRecipe(**{**TINY, "vae_batch": {"text": 8, "audio": 4}, "decoder_batch": {"audio": 4}},
                            unnamed_colors=0.25, unnamed_colors_vae={"audio": 0.5})  # per modality
    trainer = stages.ToyWorldTrainer(tmp_path / "run", recipe, modalities=["text", "audio"], progress=False)
    trainer.run(stages=(1, 2))
    unnamed = trainer.unnamed_pairs("audio")
    assert len(unnamed) == 12  # 24 pairs × the larger share
    audio_vae = [b for b in seen["vae"] if isinstance(b, torch.Tensor)]
    assert audio_vae and all(b.shape == (4, 16000) for b in audio_vae)
    for batch in audio_vae:  # two named items, then two unnamed ones
        assert all(any(torch.equal(x, u) for u in unnamed.samples) for x in batch[2:])
        assert not any(any(torch.equal(x, u) for u in unnamed.samples) for x in batch[:2])
    batch, features = seen["decoder"][0]
    assert batch.shape[0] == features.shape[0] == 4
    assert all(any(torch.equal(x, u) for u in unnamed.samples) for x in batch[2:])


def test_denoiser_batches_mix_in_unnamed_colours_with_their_own_captions_when_asked(tmp_path, monkeypatch):
    from codi_sdk.training import stages
    from codi_sdk.training.recipe import ToyWorldRecipe

    seen = []

    class SpyDiffusion(stages.DiffusionLoss):
        def forward(self, latents, contexts):
            seen.append((self.diffuser, latents.clone(), contexts.clone()))
            return super().forward(latents, contexts)

    monkeypatch.setattr(stages, "DiffusionLoss", SpyDiffusion)
    recipe = ToyWorldRecipe(**{**TINY, "unet_batch": {"text": 8, "audio": 4}}, unnamed_colors=0.25,
                            unnamed_colors_vae=0, unnamed_colors_unet={"audio": 0.5})
    trainer = stages.ToyWorldTrainer(tmp_path / "run", recipe, modalities=["text", "audio"], progress=False)
    trainer.run(stages=(1, 2))
    unnamed = trainer.unnamed_pairs("audio")
    assert len(unnamed) == 12  # 24 pairs × the larger share
    audio = [(lat, ctx) for d, lat, ctx in seen if d.modality == "audio"]
    assert len(audio) == 3  # 2 unet steps + 1 refine step
    d = trainer.diffuser("audio")
    own = trainer._latents(d, unnamed)
    named = trainer._latents(d, trainer.pairs("audio"))
    # the captions' contexts of the unnamed items: full or partial, never a colour word
    ctx_unnamed = torch.cat([trainer._contexts(unnamed.captions), trainer._contexts(unnamed.partial)])
    ctx_named = torch.cat([trainer._contexts(trainer.pairs("audio").captions), trainer._contexts(trainer.pairs("audio").partial)])
    for lat, ctx in audio:  # two named items, then two unnamed ones with their own captions
        assert all(torch.isclose(x, own, atol=1e-5).flatten(1).all(1).any() for x in lat[2:])
        assert all(torch.isclose(x, named, atol=1e-5).flatten(1).all(1).any() for x in lat[:2])
        assert all(torch.isclose(c, ctx_unnamed, atol=1e-5).flatten(1).all(1).any() for c in ctx[2:])
        assert all(torch.isclose(c, ctx_named, atol=1e-5).flatten(1).all(1).any() for c in ctx[:2])


def test_context_noise_perturbs_only_that_modality_s_denoiser_contexts_and_keeps_them_unit(tmp_path, monkeypatch):
    from codi_sdk.training import stages
    from codi_sdk.training.recipe import ToyWorldRecipe

    seen = []

    class SpyDiffusion(stages.DiffusionLoss):
        def forward(self, latents, contexts):
            seen.append((self.diffuser.modality, contexts.clone()))
            return super().forward(latents, contexts)

    monkeypatch.setattr(stages, "DiffusionLoss", SpyDiffusion)
    recipe = ToyWorldRecipe(**{**TINY, "unet_batch": {"text": 8, "audio": 4}}, context_noise={"text": 0.1})
    trainer = stages.ToyWorldTrainer(tmp_path / "run", recipe, modalities=["text", "audio"], progress=False)
    trainer.run(stages=(1, 2))
    clean = {m: torch.cat([trainer._contexts(trainer.pairs(m).captions), trainer._contexts(trainer.pairs(m).partial)])[:, 0]
             for m in ("text", "audio")}
    assert {m for m, _ in seen} == {"text", "audio"}
    for m, ctx in seen:
        ctx = ctx[:, 0]
        assert torch.allclose(ctx.norm(dim=-1), torch.ones(len(ctx)), atol=1e-5)
        nearest = (ctx @ clean[m].T).max(-1).values  # cosine with the closest clean caption context
        if m == "audio":
            assert torch.allclose(nearest, torch.ones_like(nearest), atol=1e-5)  # untouched
        else:  # 64 coordinates of sigma 0.1: a noise of norm ~0.8, so cosine ~0.8, never a clean context
            assert nearest.max() < 0.99 and nearest.min() > 0.4


def test_recipe_refuses_a_negative_context_noise():
    from codi_sdk.training.recipe import ToyWorldRecipe

    assert ToyWorldRecipe().context_noise == {"text": 0.06}
    with pytest.raises(ValueError, match="context_noise"):
        ToyWorldRecipe(context_noise={"text": -0.1})


def test_recipe_diffuser_options_reach_the_plugin_and_unknown_ones_are_refused(tmp_path):
    from codi_sdk.training.recipe import ToyWorldRecipe
    from codi_sdk.training.stages import ToyWorldTrainer

    recipe = ToyWorldRecipe(diffuser_options={"text": {"encoder_pooling": "tokens"}, "image": {"bogus": 1}})
    trainer = ToyWorldTrainer(tmp_path / "run", recipe, progress=False)
    assert trainer.new_diffuser("text").vae.config.encoder_pooling == "tokens"
    assert ToyWorldTrainer(tmp_path / "default", progress=False).new_diffuser("text").vae.config.encoder_pooling == "tokens"
    plain = ToyWorldTrainer(tmp_path / "plain", ToyWorldRecipe(diffuser_options={}), progress=False)
    assert plain.new_diffuser("text").vae.config.encoder_pooling == "mean"  # the plugin's own default
    with pytest.raises(ValueError, match=r"diffuser_options\['image'\] = \{'bogus': 1\} are not options of the image plugin"):
        trainer.new_diffuser("image")


def test_the_harmonic_audio_latent_trains_without_a_vae_fit_or_a_decoder_sub_stage(tmp_path):
    """Audio's harmonic latent: a codec without parameters in the VAE's place, so 2-vae-audio only sets
    the latent scale, and the recipe's decoder steps (for the mel inverter) do not apply."""
    from codi_audio.harmonic import HarmonicAudioDiffuser

    from codi_sdk.composer import Composer
    from codi_sdk.training.card import training_card
    from codi_sdk.training.recipe import ToyWorldRecipe
    from codi_sdk.training.stages import ToyWorldTrainer

    options = ToyWorldRecipe().diffuser_options  # the default: harmonic audio with pitch bins
    assert options["audio"]["latent"] == "harmonic" and options["audio"]["pitch_step"] == 2.0
    recipe = ToyWorldRecipe(**{**TINY, "diffuser_options": options})  # TINY asks 2 decoder steps of audio
    run = tmp_path / "run"
    trainer = ToyWorldTrainer(run, recipe, modalities=["text", "audio"], progress=False)
    assert trainer.plan_lanes((1, 2, 3)) == [] or all("2-decoder-audio" not in lane for lane in trainer.plan_lanes((1, 2, 3)))
    trainer.run(stages=(1, 2, 3))
    done = json.loads((run / "state.json").read_text())["done"]
    assert "2-decoder-audio" not in done
    assert done["2-vae-audio"]["steps"] == 0 and done["2-vae-audio"]["final"] == {}
    assert done["2-unet-audio"]["steps"] == 2 and "loss" in done["3-joint-audio"]["final"]
    assert not (run / "audio" / "vae").exists() and (run / "audio" / "harmonic" / "harmonic_config.json").is_file()
    d = trainer.diffuser("audio")
    assert isinstance(d, HarmonicAudioDiffuser) and d.codec.pitch_channels == 11 and d.latent_shape == (22, 1, 32)
    assert d.latent_scale != 1.0  # set from the training latents' spread
    assert "| 2-vae-audio | 0 |" in training_card("audio", run)
    composer = Composer(weights={m: run / m for m in ("text", "audio")})
    out = composer({"text": "a red circle"}, ["audio"], steps=2, seed=0, progress=False)
    assert out["audio"][0].waveform.shape == (16000,)


def test_recipe_rejects_an_unnamed_share_outside_zero_to_one():
    from pydantic import ValidationError

    from codi_sdk.training.recipe import ToyWorldRecipe

    assert ToyWorldRecipe().unnamed_colors == 0.4 and ToyWorldRecipe().unnamed_colors_vae == {"audio": 0.5}  # the defaults
    assert ToyWorldRecipe().unnamed_colors_unet == 0.0
    for field in ("unnamed_colors", "unnamed_colors_vae", "unnamed_colors_unet"):
        for bad in (-0.1, 1.0):
            with pytest.raises(ValidationError, match=field):
                ToyWorldRecipe(**{field: bad})
    with pytest.raises(ValidationError, match="unnamed_colors_vae"):
        ToyWorldRecipe(unnamed_colors_vae={"audio": 1.5})
    with pytest.raises(ValidationError, match="unnamed_colors"):
        ToyWorldRecipe(unnamed_colors={"audio": 0.5})  # stage 1 takes one share for all


def test_a_per_modality_vae_share_renders_unnamed_pairs_for_that_modality_only(tmp_path):
    from codi_sdk.training.recipe import ToyWorldRecipe
    from codi_sdk.training.stages import ToyWorldTrainer

    trainer = ToyWorldTrainer(tmp_path, ToyWorldRecipe(unnamed_colors=0, unnamed_colors_vae={"audio": 0.5}, n_pairs={"audio": 6, "image": 6}),
                              progress=False)
    assert len(trainer.unnamed_pairs("audio")) == 3 and trainer.unnamed_pairs("image") is None


def test_auxiliary_colour_words_come_last_in_the_vocabulary():
    from codi_text.tokenizer import AUXILIARY_COLORS, VOCABULARY, build_toyworld_tokenizer

    from codi_sdk.toyworld.scenes import AUXILIARY_COLORS as SCENE_AUX

    assert VOCABULARY[-len(AUXILIARY_COLORS):] == AUXILIARY_COLORS == tuple(SCENE_AUX)
    tok = build_toyworld_tokenizer()
    ids = tok("a purple triangle").input_ids
    assert tok.unk_token_id not in ids and VOCABULARY.index("red") == 15  # older words keep their ids


def test_two_cpu_processes_keep_identical_parameters(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
           "-m", "codi_sdk.training.ddp_selfcheck", str(tmp_path)]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    r0, r1 = load_file(str(tmp_path / "rank0.safetensors")), load_file(str(tmp_path / "rank1.safetensors"))
    assert not torch.equal(r0.pop("seen_indices"), r1.pop("seen_indices"))  # the ranks saw different data
    assert r0.keys() == r1.keys()
    for k in r0:
        assert torch.equal(r0[k], r1[k]), k


TINY = {
    # audio on the mel latent, so that these runs also train a VAE and the mel inverter (2-decoder-audio)
    "diffuser_options": {"text": {"encoder_pooling": "tokens"}, "audio": {"latent": "mel"}},
    "n_pairs": {"text": 48, "image": 48, "audio": 24},
    "bridge_steps": 2, "align_steps": {"image": 2, "audio": 2}, "align_batch": 8,
    "vae_steps": {"text": 2, "image": 2, "audio": 2}, "vae_batch": {"text": 8, "image": 4, "audio": 2},
    "unet_steps": {"text": 2, "image": 2, "audio": 2}, "unet_batch": {"text": 8, "image": 4, "audio": 2},
    "unet_refine_steps": {"text": 1, "image": 1, "audio": 1},
    "decoder_steps": {"audio": 2}, "decoder_batch": {"audio": 2},
    "joint_steps": {"image": 2, "audio": 2}, "joint_batch": {"image": 4, "audio": 2},
}


@pytest.mark.slow
def test_codi_train_runs_all_stages_writes_loadable_weights_and_resumes(tmp_path):
    from typer.testing import CliRunner

    from codi_sdk.cli import app
    from codi_sdk.composer import Composer

    recipe = tmp_path / "recipe.json"
    recipe.write_text(json.dumps(TINY))
    out = tmp_path / "run"
    args = ["train", "toyworld", "--out", str(out), "--modalities", "text,image,audio", "--recipe", str(recipe)]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    state = json.loads((out / "state.json").read_text())
    assert set(state["done"]) == {
        "1-bridge-image", "1-align-image", "1-align-audio", "2-vae-text", "2-unet-text", "2-vae-image", "2-unet-image",
        "2-vae-audio", "2-decoder-audio", "2-unet-audio", "3-joint-image", "3-joint-audio", "2-refine-text", "2-refine-image",
        "2-refine-audio",
    }
    assert (out / "audio" / "mel_inverter" / "config.json").is_file() and not (out / "image" / "mel_inverter").exists()
    assert "loss" in (out / "losses.csv").read_text()
    before = (out / "losses.csv").read_text()
    res = CliRunner().invoke(app, args)  # everything recorded: nothing is trained again
    assert res.exit_code == 0, res.output
    assert (out / "losses.csv").read_text() == before
    # a run from before the decoder sub-stage existed: resuming trains just that, from a new inverter
    shutil.rmtree(out / "audio" / "mel_inverter")
    del state["done"]["2-decoder-audio"]
    (out / "state.json").write_text(json.dumps(state))
    unet_before = (out / "audio" / "unet" / "diffusion_pytorch_model.safetensors").read_bytes()
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    added = (out / "losses.csv").read_text()[len(before):]
    assert "2-decoder-audio" in added and not any(f"2-unet-{m}" in added or f"3-joint-{m}" in added for m in ("text", "image", "audio"))
    assert (out / "audio" / "mel_inverter" / "config.json").is_file()
    assert (out / "audio" / "unet" / "diffusion_pytorch_model.safetensors").read_bytes() == unet_before
    composer = Composer(weights={m: out / m for m in ("text", "image", "audio")})
    result = composer({"text": "a red circle"}, ["image", "audio"], steps=2, seed=0, progress=False)
    assert result["image"][0].array.shape == (32, 32, 3)

    # shipping stores float16 files; loading casts back, and generation barely moves
    from safetensors.torch import load_file

    from codi_sdk.training.ship import ship

    shipped = {m: tmp_path / "shipped" / m for m in ("text", "image", "audio")}
    for m, target in shipped.items():
        ship(out / m, target)
    assert all(v.dtype == torch.float16 for v in load_file(str(shipped["image"] / "unet" / "diffusion_pytorch_model.safetensors")).values())
    again = Composer(weights=shipped)({"text": "a red circle"}, ["image", "audio"], steps=2, seed=0, progress=False)
    diff = abs(again["image"][0].array.astype(int) - result["image"][0].array.astype(int))
    assert diff.mean() < 3, diff.mean()


def _tensors(folder):
    from safetensors.torch import load_file

    return {f"{f.relative_to(folder)}:{k}": v for f in sorted(folder.rglob("*.safetensors")) for k, v in load_file(str(f)).items()}


@pytest.mark.slow
def test_training_is_seeded_stage_by_stage_and_refines_after_the_weighted_run(tmp_path):
    """Same seed: the same weights, whether the stages run in one command or one command each; the
    refine sub-stage runs after the denoiser's main run with the plain loss."""
    from typer.testing import CliRunner

    from codi_sdk.cli import app

    recipe = tmp_path / "recipe.json"
    tiny = {**TINY, "unet_refine_steps": {"image": 2}, "unet_high_noise_weight": {"image": 5.0}}
    recipe.write_text(json.dumps(tiny))
    common = ["--modalities", "text,image", "--recipe", str(recipe)]
    res = CliRunner().invoke(app, ["train", "toyworld", "--out", str(tmp_path / "all"), *common])
    assert res.exit_code == 0, res.output
    for stage in ("1", "2", "3"):
        res = CliRunner().invoke(app, ["train", "toyworld", "--out", str(tmp_path / "split"), "--stage", stage, *common])
        assert res.exit_code == 0, res.output
    res = CliRunner().invoke(app, ["train", "toyworld", "--out", str(tmp_path / "seed1"), "--seed", "1", *common])
    assert res.exit_code == 0, res.output

    state = json.loads((tmp_path / "all" / "state.json").read_text())
    names = list(state["done"])
    assert names.index("2-unet-image") < names.index("2-refine-image") < names.index("3-joint-image")
    assert state["done"]["2-refine-image"]["steps"] == 2 and "2-refine-text" not in state["done"]
    assert "2-refine-image" in (tmp_path / "all" / "losses.csv").read_text()
    a, b, c = (_tensors(tmp_path / run / "image") for run in ("all", "split", "seed1"))
    assert a.keys() == b.keys() and len(a) > 10
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])][:5]
    assert any(not torch.equal(a[k], c[k]) for k in a)


@pytest.mark.parametrize(
    "field, value",
    [("unet_refine_steps", {"video": -1}), ("unet_refine_lr", 0.0), ("unet_refine_lr_schedule", "exponential")],
)
def test_recipe_refuses_bad_refine_settings(field, value):
    from pydantic import ValidationError

    from codi_sdk.training.recipe import ToyWorldRecipe

    with pytest.raises(ValidationError, match=field):
        ToyWorldRecipe(**{field: value})


def test_linear_schedule_ends_at_zero_and_constant_keeps_the_rate():
    from accelerate import Accelerator

    from codi_sdk.training.loop import LossLog, fit

    class Probe(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.ones(1))
            self.seen: list[float] = []

        def forward(self, x):
            return {"loss": (self.w * x).sum()}

    for schedule, moved in (("constant", [0.1] * 4), ("linear", [0.1, 0.075, 0.05, 0.025])):
        probe = Probe()
        before = []

        def batches(step, probe=probe, before=before):
            before.append(float(probe.w.detach()))
            return {"x": torch.ones(1)}

        fit(probe, batches, 4, 0.1, Accelerator(cpu=True), "probe", LossLog(Path("unused.csv"), enabled=False), lr_schedule=schedule)
        before.append(float(probe.w.detach()))
        steps = [round(a - b, 4) for a, b in zip(before, before[1:])]  # AdamW moves by ~lr on a constant gradient
        assert steps == pytest.approx(moved, abs=2e-3), (schedule, steps)


@pytest.mark.slow
def test_two_lanes_train_the_same_weights_as_one_process(tmp_path):
    """`--jobs 2`: the side lane (image, then the joint stages) and the main lane (bridge, alignments,
    text, audio) run in two processes; at one thread per process the weights are
    bit-identical to a sequential run's, and every sub-stage is recorded once in state.json."""
    recipe = tmp_path / "recipe.json"
    recipe.write_text(json.dumps(TINY))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    common = ["-m", "codi_sdk", "train", "toyworld", "--modalities", "text,image,audio", "--recipe", str(recipe)]
    for run, jobs in (("lanes", "2"), ("one", "1")):
        res = subprocess.run([sys.executable, *common, "--out", str(tmp_path / run), "--jobs", jobs],
                             capture_output=True, text=True, env=env, timeout=600)
        assert res.returncode == 0, res.stderr[-3000:]
    lanes, one = (json.loads((tmp_path / run / "state.json").read_text())["done"] for run in ("lanes", "one"))
    assert set(lanes) == set(one) and len(one) == 15
    names = list(lanes)  # recorded in the order they finished
    assert names.index("2-refine-image") < names.index("3-joint-image") < names.index("3-joint-audio")
    assert {p.name for p in (tmp_path / "lanes" / "lanes").iterdir()} == {"0.done", "1.done"}
    for m in ("text", "image", "audio"):
        a, b = _tensors(tmp_path / "lanes" / m), _tensors(tmp_path / "one" / m)
        assert a.keys() == b.keys() and len(a) > 10
        assert all(torch.equal(a[k], b[k]) for k in a), (m, [k for k in a if not torch.equal(a[k], b[k])][:5])


def test_lanes_split_stage_2_and_keep_joint_stages_in_order(tmp_path):
    from codi_sdk.training.recipe import ToyWorldRecipe
    from codi_sdk.training.stages import ToyWorldTrainer

    trainer = ToyWorldTrainer(tmp_path, ToyWorldRecipe(**TINY), modalities=["text", "image", "video", "audio"], progress=False)
    side, main = trainer.plan_lanes([1, 2, 3])
    # the side lane starts with the image VAE while the main lane trains the bridge, and ends with
    # the joint stage of its last modality (nothing is left for the parent process)
    assert side == {"2-vae-image", "2-unet-image", "2-refine-image", "2-vae-video", "2-unet-video", "3-joint-video"}
    assert {"1-bridge-image", "1-align-image", "1-align-video", "1-align-audio", "2-unet-text", "2-decoder-audio",
            "2-refine-audio", "3-joint-image", "3-joint-audio"} <= main and not main & side
    assert trainer.plan_lanes([3]) == []
    assert "1-bridge-image" not in trainer.plan_lanes([2, 3])[1]
    with pytest.raises(RuntimeError, match="must run before"):  # stage 3 without the denoisers
        trainer.train_joint()
    # in a lane, a sub-stage of another lane is waited for, unless every other lane has finished
    lane = ToyWorldTrainer(tmp_path, ToyWorldRecipe(**TINY), modalities=["text", "image"], progress=False,
                           allowed={"3-joint-image"}, lane=1)
    lane._peers = [tmp_path / "0.done"]
    lane._peers[0].write_text("")
    with pytest.raises(RuntimeError, match="2-unet-image"):
        lane._await(["2-unet-image"], poll=0.01)
    lane._mark("2-unet-image", {}, 0.0)
    lane.state["done"].pop("2-unet-image")  # recorded on disk only, as by another process
    lane._await(["2-unet-image"], poll=0.01)
    assert lane.done("2-unet-image")
    # a lane reads the text encoder only once the lane that trains the bridge has recorded it
    side = ToyWorldTrainer(tmp_path / "side", ToyWorldRecipe(**TINY), modalities=["text", "image"], progress=False,
                           allowed={"2-unet-image"}, lane=0)
    side._bridge_elsewhere = True
    side._peers = lane._peers  # ... and stops, naming it, once no lane is left to train it
    with pytest.raises(RuntimeError, match="1-bridge-image"):
        side._contexts(["a red circle"])


_ORPHAN_PARENT = """
import multiprocessing as mp, os, threading, time
from codi_sdk.training.stages import _exit_with_parent

def lane(parent):
    threading.Thread(target=_exit_with_parent, args=(parent, 0.05), daemon=True).start()
    time.sleep(120)

if __name__ == "__main__":
    p = mp.get_context("spawn").Process(target=lane, args=(os.getpid(),))
    p.start()
    print(p.pid, flush=True)
    time.sleep(120)
"""


def test_a_lane_stops_once_its_training_process_is_killed(tmp_path):
    """`kill` of `codi train --jobs 2` reaches only the main process: its lanes must not train on
    as orphans (writing into the run folder beside a restarted run)."""
    import time

    import psutil

    script = tmp_path / "parent.py"
    script.write_text(_ORPHAN_PARENT)
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        lane = psutil.Process(int(parent.stdout.readline()))
        time.sleep(0.5)
        assert lane.status() != psutil.STATUS_ZOMBIE  # it waits while its parent lives
    finally:
        parent.kill()
        parent.wait()

    def gone() -> bool:
        try:
            return lane.status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return True

    deadline = time.time() + 30
    while time.time() < deadline and not gone():
        time.sleep(0.1)
    ended = gone()
    if not ended:
        lane.kill()
    assert ended, "the lane outlived its training process"


def test_bad_stage_is_refused():
    from typer.testing import CliRunner

    from codi_sdk.cli import app

    res = CliRunner().invoke(app, ["train", "toyworld", "--out", "x", "--stage", "4"])
    assert res.exit_code == 2 and "accepted: all, 1, 2, 3" in res.output
    res = CliRunner().invoke(app, ["train", "toyworld", "--out", "x", "--jobs", "3"])
    assert res.exit_code == 2 and "accepted: 1 or 2" in res.output


def test_a_bad_recipe_file_is_refused_by_name_before_anything_is_written(tmp_path):
    from typer.testing import CliRunner

    from codi_sdk.cli import app

    out = tmp_path / "run"
    cases = {"typo.json": ('{"unet_step": {"text": 10}}', "unet_step"), "list.json": ("[1, 2]", "holds a JSON list"),
             "broken.json": ('{"seed": ', "Expecting value"), "bad.json": ('{"context_noise": {"text": -1}}', "context_noise")}
    for name, (text, named) in cases.items():
        (tmp_path / name).write_text(text)
        res = CliRunner().invoke(app, ["train", "toyworld", "--out", str(out), "--recipe", str(tmp_path / name)])
        assert res.exit_code == 2, res.output
        assert named in res.output and "accepted" in res.output and name in res.output
    assert not out.exists()


def test_video_alignment_can_start_from_the_image_encoder_and_keep_its_frames_fixed(tmp_path):
    """`align_warm_start` copies the bridge's image encoder into the video frame encoder;
    `align_frozen` keeps it as copied while the temporal pooler learns."""
    from codi_sdk.training.recipe import ToyWorldRecipe
    from codi_sdk.training.stages import ToyWorldTrainer

    tiny = dict(n_pairs={"text": 16, "image": 16, "video": 8}, bridge_steps=1, align_steps={"image": 1, "video": 2},
                align_batch=4)
    recipe = ToyWorldRecipe(**tiny, align_warm_start=["video"], align_frozen={"video": ["frames"]})
    trainer = ToyWorldTrainer(tmp_path / "run", recipe, modalities=["text", "image", "video"], progress=False)
    trainer.train_alignment()
    image, video = trainer.encoder("image"), trainer.encoder("video")
    frames, pooler = video.frames.model.state_dict(), video.temporal.state_dict()
    assert all(torch.equal(frames[k], v) for k, v in image.model.state_dict().items())
    new = trainer.registry.get("video").init_encoder().temporal.state_dict()
    assert any(not torch.equal(pooler[k], v) for k, v in new.items())  # the pooler trained (its projection starts at 0)

    plain = ToyWorldTrainer(tmp_path / "plain", ToyWorldRecipe(**tiny, align_warm_start=[], align_frozen={}),
                            modalities=["text", "image", "video"], progress=False)
    plain.train_alignment()
    assert not torch.equal(plain.encoder("video").frames.model.state_dict()["vision_model.embeddings.patch_embedding.weight"],
                           plain.encoder("image").model.state_dict()["vision_model.embeddings.patch_embedding.weight"])

    bad = ToyWorldTrainer(tmp_path / "bad", ToyWorldRecipe(**tiny, align_frozen={"video": ["frame"]}),
                          modalities=["text", "image", "video"], progress=False)
    with pytest.raises(ValueError, match=r"align_frozen\['video'\] names 'frame', which is not a part of the video encoder.*frames, temporal"):
        bad.train_alignment()


def test_video_encoder_warm_start_skips_an_image_encoder_of_other_shapes(caplog):
    from codi_image.encoder import ImageEncoder
    from codi_video.encoder import VideoEncoder
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    video = VideoEncoder.toyworld()
    other = ImageEncoder(CLIPVisionModelWithProjection(CLIPVisionConfig(
        hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2, image_size=32, patch_size=8,
        projection_dim=64)))
    before = {k: v.clone() for k, v in video.state_dict().items()}
    assert video.warm_start({"text": object(), "image": other}) == set()
    assert "does not have the frame encoder's shapes" in caplog.text
    assert video.warm_start({}) == set()
    assert all(torch.equal(before[k], v) for k, v in video.state_dict().items())


@pytest.mark.slow
def test_a_new_modality_trains_against_a_frozen_base_run(tmp_path):
    """`--base RUN --modalities audio`: the bridge and image are adopted unchanged, only audio trains."""
    from typer.testing import CliRunner

    from codi_sdk.cli import app

    recipe = tmp_path / "recipe.json"
    recipe.write_text(json.dumps(TINY))
    base = tmp_path / "base"
    res = CliRunner().invoke(app, ["train", "toyworld", "--out", str(base), "--modalities", "text,image", "--recipe", str(recipe)])
    assert res.exit_code == 0, res.output
    out = tmp_path / "new"
    res = CliRunner().invoke(app, ["train", "toyworld", "--out", str(out), "--base", str(base), "--modalities", "audio", "--recipe", str(recipe)])
    assert res.exit_code == 0, res.output
    state = json.loads((out / "state.json").read_text())
    trained = {k for k, v in state["done"].items() if v["final"]}
    assert trained == {"1-align-audio", "2-vae-audio", "2-decoder-audio", "2-unet-audio", "2-refine-audio", "3-joint-audio"}
    for comp in ("encoder/model.safetensors", "unet/diffusion_pytorch_model.safetensors"):
        for m in ("text", "image"):
            files = list((base / m).rglob(comp.split("/")[-1]))
            assert files, (m, comp)
            for f in files:
                assert f.read_bytes() == (out / m / f.relative_to(base / m)).read_bytes(), f


class _FakeStream(torch.nn.Module):
    """The parts of a Diffuser that JointLoss touches; records the timesteps it is called with."""

    def __init__(self):
        super().__init__()
        self.env_encoder = torch.nn.Linear(4, 8)
        self.joint = torch.nn.Linear(8, 4)
        self.seen_t = []

    def environment(self, z, t):
        self.seen_t.append(t.clone())
        return self.env_encoder(z)[:, None, :].expand(-1, 2, -1)

    def denoise(self, z, t, ctx, env):
        return z + self.joint(env.mean(1))


@pytest.mark.parametrize("same_t", [False, True])
def test_joint_loss_noises_each_stream_at_its_own_timestep_unless_asked(same_t):
    from codi_sdk.training.losses import JointLoss

    torch.manual_seed(0)
    text, other = _FakeStream(), _FakeStream()
    loss = JointLoss(text, other, same_t=same_t)
    keys = [(("color", c),) for c in ("red", "blue", "green", "yellow")] * 4
    out = loss(torch.randn(16, 4), torch.randn(16, 4), torch.zeros(16, 1, 8), keys, targets=torch.randn(16, 8))
    assert set(out) == {"loss", "text", "other", "env", "pull"} and torch.isfinite(out["loss"])
    assert torch.equal(text.seen_t[0], other.seen_t[0]) is same_t
    out["loss"].backward()
    assert text.env_encoder.weight.grad is not None and other.env_encoder.weight.grad is not None


class _RecordingDenoiser(torch.nn.Module):
    """A stand-in diffuser whose prediction is zero: the ε-loss of a sample is the mean of noise²."""

    def __init__(self):
        super().__init__()
        self.bias = torch.nn.Parameter(torch.zeros(()))
        self.seen_t = None

    def denoise(self, z, t, ctx):
        self.seen_t = t
        return torch.zeros_like(z) + self.bias


def test_diffusion_loss_weights_high_noise_by_one_over_snr_up_to_the_cap():
    from codi_sdk.training.losses import DiffusionLoss

    model = _RecordingDenoiser()
    latents, ctx = torch.randn(64, 4, 2, 2), torch.zeros(64, 1, 8)
    plain = DiffusionLoss(model, torch.zeros(1, 1, 8), p_uncond=0.0)
    torch.manual_seed(1)
    out = plain(latents, ctx)["loss"]
    torch.manual_seed(1)
    torch.rand(64), torch.randint(0, 1000, (64,))  # the same draws as inside: dropout, t, then the noise
    noise = torch.randn_like(latents)
    assert out.item() == pytest.approx(noise.pow(2).mean().item(), rel=1e-5)  # w = 1: the plain ε-loss

    weighted = DiffusionLoss(model, torch.zeros(1, 1, 8), p_uncond=0.0, high_noise_weight=20.0)
    torch.manual_seed(1)
    out = weighted(latents, ctx)["loss"]
    abar = weighted.noise.alphas_cumprod.float()
    w = ((1 - abar) / abar).clamp(1, 20)[model.seen_t]
    assert out.item() == pytest.approx((w * noise.pow(2).flatten(1).mean(1)).mean().item(), rel=1e-5)
    assert w.min() == 1 and w.max() == 20  # low noise unweighted, high noise capped
    assert abar[999] < 1 / 21 and abar[0] > 0.5  # so both ends of the clamp are reached by some t
    with pytest.raises(ValueError, match="high_noise_weight"):
        DiffusionLoss(model, torch.zeros(1, 1, 8), high_noise_weight=0.5)


def test_diffusion_loss_draws_a_share_of_timesteps_from_the_capped_high_noise_range():
    from codi_sdk.training.losses import DiffusionLoss

    model = _RecordingDenoiser()
    loss = DiffusionLoss(model, torch.zeros(1, 1, 8), p_uncond=0.0, high_noise_weight=20.0, high_noise_share=0.5)
    abar = loss.noise.alphas_cumprod.float()
    snr_inv = (1 - abar) / abar
    assert snr_inv[loss.t_high] >= 20 > snr_inv[loss.t_high - 1]  # where the weight reaches its cap
    torch.manual_seed(2)
    loss(torch.randn(4000, 1, 1, 1), torch.zeros(4000, 1, 8))
    high = (model.seen_t >= loss.t_high).float().mean().item()
    uniform_high = (1000 - loss.t_high) / 1000
    assert high == pytest.approx(0.5 + 0.5 * uniform_high, abs=0.03)
    with pytest.raises(ValueError, match="high_noise_share"):
        DiffusionLoss(model, torch.zeros(1, 1, 8), high_noise_share=1.5)
    # a cap above every 1/SNR: nothing is capped, the extra draws go to the last timestep
    assert DiffusionLoss(model, torch.zeros(1, 1, 8), high_noise_weight=1e4, high_noise_share=0.5).t_high == 999


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("unet_high_noise_weight", {"video": 0.5}, r"video\n.*greater than or equal to 1"),
        ("unet_high_noise_share", {"video": 2.0}, r"video\n.*less than or equal to 1"),
    ],
)
def test_recipe_refuses_bad_high_noise_settings(field, value, message):
    from pydantic import ValidationError

    from codi_sdk.training.recipe import ToyWorldRecipe

    with pytest.raises(ValidationError, match=message):
        ToyWorldRecipe(**{field: value})


def test_training_card_lists_sub_stages_recipe_and_the_auxiliary_share(tmp_path):
    from codi_sdk.training.card import training_card

    (tmp_path / "image" / "unet").mkdir(parents=True)
    (tmp_path / "image" / "unet" / "w.safetensors").write_bytes(b"0" * 1000)
    state = {"recipe": {"seed": 3, "auxiliary_colors": 0.25, "unet_steps": {"image": 1800}},
             "done": {"2-unet-image": {"final": {"loss": 0.0247}, "seconds": 760.4},
                      "2-unet-audio": {"final": {"loss": 0.5}, "seconds": 1.0}}}
    (tmp_path / "state.json").write_text(json.dumps(state))
    card = training_card("image", tmp_path, [{"split": "heldout", "n": 48, "tasks": [
        {"task": "text->image", "inputs": ["text"], "outputs": ["image"], "accuracy": 0.823, "coherence": None},
        {"task": "text->audio", "inputs": ["text"], "outputs": ["audio"], "accuracy": 0.5}]}])
    assert "- seed: 3" in card and "in 25% of the items" in card and "- files: unet" in card
    assert "| 2-unet-image | 1800 | 760.4 | loss 0.0247 |" in card and "2-unet-audio" not in card
    assert "| `text->image` | 82.3 % | – |" in card and "text->audio" not in card
    noted = training_card("image", tmp_path, [{"split": "seen", "n": 4, "note": "rows put together", "tasks": [
        {"task": "text->image", "inputs": ["text"], "outputs": ["image"], "accuracy": 1.0, "coherence": None}]}])
    assert "scenes per task)\n\nrows put together\n\n| task |" in noted and "rows put together" not in card
    state["recipe"]["auxiliary_colors"] = 0.0
    (tmp_path / "state.json").write_text(json.dumps(state))
    assert "training-only colours" not in training_card("image", tmp_path)
    state["recipe"]["auxiliary_colors"] = {"image": 0.3}
    (tmp_path / "state.json").write_text(json.dumps(state))
    assert "in 30% of the items" in training_card("image", tmp_path)
    (tmp_path / "audio").mkdir()
    assert "training-only colours" not in training_card("audio", tmp_path)

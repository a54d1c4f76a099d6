"""Tests of the codi-sketch tutorial plugin: rendering rules, probe, conversion, components, registry."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import ndimage

from codi_sdk.errors import InvalidInputError, WeightsNotFoundError
from codi_sdk.outputs import ImageOutput
from codi_sdk.registry import Registry
from codi_sdk.toyworld import ALL_SCENES, SHAPES, Scene, item_rng
from codi_sketch import plugin
from codi_sketch.modality import SketchModality
from codi_sketch.probe import probe_sketch
from codi_sketch.render import render_sketch


@pytest.fixture(scope="module")
def modality() -> SketchModality:
    return SketchModality()


def _sketches(n: int = 96):
    for i in range(n):
        scene = ALL_SCENES[i % len(ALL_SCENES)]
        yield scene, render_sketch(scene, item_rng("seen", i, "generate"))


# -- rendering rules ------------------------------------------------------------------------------
def test_sketch_is_a_closed_one_pixel_white_outline_inside_the_margin():
    for scene, sketch in _sketches():
        assert sketch.shape == (32, 32) and sketch.dtype == np.uint8
        assert set(np.unique(sketch)) == {0, 255}
        ys, xs = np.nonzero(sketch)
        assert ys.min() >= 1 and xs.min() >= 1 and ys.max() <= 30 and xs.max() <= 30, scene
        lines = sketch > 0
        filled = ndimage.binary_fill_holes(lines)
        assert filled.sum() > lines.sum(), f"{scene}: the outline encloses nothing"
        # 1 pixel thick: no line pixel is surrounded by line pixels on all four sides
        inner = ndimage.binary_erosion(lines, structure=ndimage.generate_binary_structure(2, 1))
        assert not inner.any(), scene


def test_sketch_shows_shape_only():
    rng_a, rng_b = item_rng("seen", 7, "generate"), item_rng("seen", 7, "generate")
    red = render_sketch(Scene("red", "square", "left"), rng_a)
    blue = render_sketch(Scene("blue", "square", "up"), rng_b)
    assert np.array_equal(red, blue)


def test_equal_area_shapes_fill_their_bounding_box_as_toyworld_says():
    areas = {s: [] for s in SHAPES}
    for scene, sketch in _sketches(240):
        areas[scene.shape].append(ndimage.binary_fill_holes(sketch > 0).sum())
    means = {s: np.mean(a) for s, a in areas.items()}
    # r in [4.5, 6.5] and equal areas: every mean near π·5.5² ≈ 95 px
    for shape, mean in means.items():
        assert 75 < mean < 115, (shape, mean)


# -- probe ----------------------------------------------------------------------------------------
def test_probe_reads_the_shape_of_every_rendering():
    wrong = [(s.shape, probe_sketch(k)["shape"]) for s, k in _sketches(144) if probe_sketch(k)["shape"] != s.shape]
    assert not wrong


def test_probe_survives_a_gap_and_canonical_input(modality):
    scene = Scene("green", "square", "down")
    sketch = render_sketch(scene, np.random.default_rng(3))
    ys, xs = np.nonzero(sketch)
    gapped = sketch.copy()
    gapped[ys[len(ys) // 2], xs[len(xs) // 2]] = 0
    assert probe_sketch(gapped)["shape"] == "square"
    assert probe_sketch(modality.convert(sketch))["shape"] == "square"
    assert probe_sketch(modality.to_output(sketch))["shape"] == "square"
    assert probe_sketch(np.zeros((32, 32), np.uint8)) == {"shape": None}


# -- modality -------------------------------------------------------------------------------------
def test_convert_accepts_arrays_pil_tensors_and_png(modality, tmp_path):
    sketch = render_sketch(Scene("red", "triangle", "left"), np.random.default_rng(0))
    expected = torch.from_numpy(sketch).float()[None] / 127.5 - 1
    values = [
        sketch,
        sketch[:, :, None],
        sketch.astype(np.float32) / 127.5 - 1,
        Image.fromarray(sketch),
        torch.from_numpy(sketch),
        expected,
        modality.to_output(sketch),
    ]
    for value in values:
        x = modality.convert(value)
        assert x.shape == (1, 32, 32) and x.dtype == torch.float32
        assert torch.allclose(x, expected, atol=1e-2), type(value)
    path = modality.save(expected, tmp_path / "s.png")
    assert torch.allclose(modality.convert(str(path)), expected, atol=1e-2)
    assert modality.convert(np.zeros((64, 64), np.uint8)).shape == (1, 32, 32)


@pytest.mark.parametrize(
    "value, words",
    [
        (np.zeros((2, 32, 32), np.uint8), "shape"),
        (np.full((32, 32), 3.0, np.float32), "[-1, 1]"),
        ("no/such/sketch.png", "not an existing file"),
        (12, "int"),
    ],
)
def test_convert_refuses_with_a_clear_error(modality, value, words):
    with pytest.raises(InvalidInputError, match="sketch") as err:
        modality.convert(value)
    assert words in str(err.value)


def test_to_output_is_gray_rgb_and_save_wants_png(modality, tmp_path):
    out = modality.to_output(modality.render_toyworld(Scene("red", "circle", "up"), np.random.default_rng(1)))
    assert isinstance(out, ImageOutput) and out.array.shape == (32, 32, 3)
    assert np.array_equal(out.array[..., 0], out.array[..., 2])
    with pytest.raises(InvalidInputError, match=".png"):
        modality.save(out, tmp_path / "s.jpg")


# -- components -----------------------------------------------------------------------------------
def test_diffuser_and_encoder_shapes_and_round_trip(modality, tmp_path):
    torch.manual_seed(0)
    diffuser, encoder = modality.init_diffuser().eval(), modality.init_encoder().eval()
    batch = torch.stack([modality.render_toyworld(s, np.random.default_rng(i)) for i, s in enumerate(ALL_SCENES[:3])])
    with torch.no_grad():
        z = diffuser.encode(batch)
        assert z.shape == (3, *diffuser.latent_shape) == (3, 4, 8, 8)
        assert [x.shape for x in diffuser.decode(z)] == [(1, 32, 32)] * 3
        t = torch.tensor([10, 500, 900])
        env = diffuser.environment(z, t)
        assert env.shape == (3, 4, 64)
        for p in diffuser.joint.parameters():  # make joint attention matter before saving it
            p.add_(0.05 * torch.randn_like(p))
        ctx = torch.randn(3, 1, 64)
        eps = diffuser.denoise(z, t, ctx, env)
        assert eps.shape == z.shape
        assert not torch.allclose(eps, diffuser.denoise(z, t, ctx, None))
        enc = encoder(batch)
        assert enc.tokens.shape == (3, 1, 64)
        assert torch.allclose(enc.pooled.norm(dim=-1), torch.ones(3), atol=1e-5)
    diffuser.save_pretrained(tmp_path / "w")
    encoder.save_pretrained(tmp_path / "w" / "encoder")
    assert sorted(modality.weights_found(tmp_path / "w")) == sorted(modality.components)
    d2, e2 = modality.load_diffuser(tmp_path / "w"), modality.load_encoder(tmp_path / "w")
    with torch.no_grad():
        assert torch.allclose(d2.denoise(z, t, ctx, env), eps, atol=1e-5)
        assert torch.allclose(e2(batch).pooled, enc.pooled, atol=1e-5)
    with pytest.raises(WeightsNotFoundError):
        modality.load_diffuser(tmp_path / "w" / "encoder")


def test_vae_loss_weights_the_outline(modality):
    torch.manual_seed(0)
    diffuser = modality.init_diffuser()
    batch = torch.stack([modality.render_toyworld(s, np.random.default_rng(i)) for i, s in enumerate(ALL_SCENES[:2])])
    losses = diffuser.vae_loss(batch)
    assert set(losses) >= {"loss", "rec", "kl"} and losses["loss"].requires_grad


# -- plugin ---------------------------------------------------------------------------------------
def test_plugin_registers_the_sketch_modality():
    reg = Registry.from_plugins({"sketch": plugin})
    assert reg.names() == ["sketch"] and isinstance(reg.get("sketch"), SketchModality)


def test_entry_point_is_installed():
    reg = Registry.load()
    assert "sketch" in reg.names(), reg.failures
    assert reg.plugins["sketch"].distribution == "codi-sketch"

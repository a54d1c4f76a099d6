"""ToyWorld (shared/TOYWORLD.md): renderers, splits, probes, datasets, the CLI and the evaluation harness."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from codi_sdk.cli import app
from codi_sdk.errors import CodiError, InvalidInputError
from codi_sdk.eval import DEFAULT_TASKS, evaluate, get_generator, parse_task, parse_tasks, write_results
from codi_sdk.toyworld import (
    ALL_SCENES,
    COLORS,
    FULL_TEMPLATES,
    HELDOUT,
    PITCH,
    Scene,
    ToyWorldCaptions,
    ToyWorldPairs,
    caption,
    item_rng,
    partial_caption,
    probe,
    probe_text,
    render_audio,
    render_image,
    render_pairs,
    render_video,
    scene_at,
    split_scenes,
    to_tensor,
)
from codi_sdk.toyworld.probes import SHOWS
from codi_sdk.toyworld.render import half_extent, shape_mask

RENDER = {"image": render_image, "video": render_video, "audio": render_audio, "text": caption}
SEEDS = range(10)


def _rng(scene: Scene, seed: int) -> np.random.Generator:
    return np.random.default_rng([seed, ALL_SCENES.index(scene)])


def _bbox(mask: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(mask)
    return xs.min(), xs.max() + 1, ys.min(), ys.max() + 1  # pixel edges


# -- scenes and splits ----------------------------------------------------------------------------
def test_world_has_48_scenes_with_the_contract_colours():
    assert len(ALL_SCENES) == len(set(ALL_SCENES)) == 48
    assert COLORS == {"red": (220, 40, 40), "green": (40, 200, 60), "blue": (50, 80, 230), "yellow": (230, 210, 40)}
    assert HELDOUT == {("red", "triangle"), ("green", "square"), ("blue", "circle")}


def test_train_split_never_contains_a_heldout_pair():
    train = split_scenes("train")
    assert len(train) == 36 and not any((s.color, s.shape) in HELDOUT for s in train)
    assert set(split_scenes("seen")) == set(train)
    assert len(split_scenes("heldout")) == 12 and all(s.heldout for s in split_scenes("heldout"))
    assert set(train) | set(split_scenes("heldout")) == set(ALL_SCENES)
    assert not any(scene_at("train", i, seed=7).heldout for i in range(300))
    assert not any(ToyWorldPairs("image", size=100).scene(i).heldout for i in range(100))


def test_split_items_are_balanced_and_seed_streams_disjoint():
    assert {scene_at("seen", i) for i in range(36)} == set(split_scenes("seen"))
    a = item_rng("train", 3, "image", seed=0).random(4)
    assert np.array_equal(a, item_rng("train", 3, "image", seed=0).random(4))
    for other in (item_rng("seen", 3, "image", 0), item_rng("train", 4, "image", 0), item_rng("train", 3, "audio", 0)):
        assert not np.array_equal(a, other.random(4))


def test_invalid_names_are_refused_with_the_accepted_values():
    with pytest.raises(InvalidInputError, match="accepted: red, green, blue, yellow"):
        Scene("purple", "circle", "up")
    with pytest.raises(InvalidInputError, match="train, seen, heldout"):
        split_scenes("test")


# -- renderers ------------------------------------------------------------------------------------
def test_renderers_shapes_dtypes_ranges_and_determinism():
    scene = Scene("green", "triangle", "right")
    for name, shape, dtype in (("image", (32, 32, 3), np.uint8), ("video", (8, 32, 32, 3), np.uint8), ("audio", (16000,), np.float32)):
        x = RENDER[name](scene, np.random.default_rng(5))
        assert x.shape == shape and x.dtype == dtype, name
        assert np.array_equal(x, RENDER[name](scene, np.random.default_rng(5))), name
        assert not np.array_equal(x, RENDER[name](scene, np.random.default_rng(6))), name
    audio = render_audio(scene, np.random.default_rng(5))
    assert np.abs(audio).max() <= 1.0
    assert caption(scene, np.random.default_rng(1)) == caption(scene, np.random.default_rng(1))


def test_image_is_one_jittered_colour_on_black_inside_the_border():
    for scene in ALL_SCENES:
        for seed in range(3):
            img = render_image(scene, _rng(scene, seed))
            mask = img.any(axis=-1)
            colours = np.unique(img[mask], axis=0)
            assert len(colours) == 1
            assert np.all(np.abs(colours[0].astype(int) - COLORS[scene.color]) <= 20)
            x0, x1, y0, y1 = _bbox(mask)
            assert x0 >= 1 and y0 >= 1 and x1 <= 31 and y1 <= 31


def test_shapes_have_equal_area_pi_r_squared():
    rng = np.random.default_rng(0)
    for r in (4.0, 5.0, 6.5):
        for shape in ("circle", "square", "triangle"):
            areas = [shape_mask(shape, *rng.uniform(12, 20, 2), r).sum() for _ in range(200)]
            assert np.mean(areas) == pytest.approx(np.pi * r * r, rel=0.03), (shape, r)
    assert half_extent("square", 1.0) * 2 == pytest.approx(np.sqrt(np.pi))
    assert half_extent("triangle", 1.0) * 2 == pytest.approx(np.sqrt(2 * np.pi))


def test_video_moves_two_pixels_per_frame_and_stays_inside():
    for scene in ALL_SCENES:
        video = render_video(scene, _rng(scene, 0))
        masks = video.any(axis=-1)
        dx, dy = {"left": (-2, 0), "right": (2, 0), "up": (0, -2), "down": (0, 2)}[scene.motion]
        for t in range(7):
            assert np.array_equal(np.roll(masks[t], (dy, dx), axis=(0, 1)), masks[t + 1]), (scene, t)
            x0, x1, y0, y1 = _bbox(masks[t])
            assert x0 >= 1 and y0 >= 1 and x1 <= 31 and y1 <= 31
        assert len(np.unique(video[masks], axis=0)) == 1  # same colour in every frame


def test_audio_pitch_gain_and_fades():
    for color, f0 in PITCH.items():
        x = render_audio(Scene(color, "circle", "down"), np.random.default_rng(0))
        freqs = np.fft.rfftfreq(16000, 1 / 16000)
        peak = freqs[np.argmax(np.abs(np.fft.rfft(x)))]
        assert abs(peak / f0 - 1) <= 0.011
        assert 0.5 * 0.4 < np.abs(x).max() < 0.6 * 0.55 + 0.02  # constant envelope 0.55 × gain
        assert np.abs(x[:8]).max() < 0.02 and np.abs(x[-8:]).max() < 0.02


def test_captions_use_the_contract_templates_and_partials_name_only_what_is_kept():
    scene = Scene("yellow", "square", "up")
    rng = np.random.default_rng(0)
    full = {caption(scene, rng) for _ in range(200)}
    for template in FULL_TEMPLATES[:4]:
        assert template.format(color="yellow", shape="square", motion="up") in full
    assert all(set(probe_text(c)) == {"color", "shape", "motion"} for c in full)
    kept_sets = set()
    for _ in range(200):
        text, kept = partial_caption(scene, rng)
        assert set(probe_text(text)) == set(kept) and 0 < len(kept) < 3 and text == text.lower()
        kept_sets.add(kept)
    assert len(kept_sets) == 6
    assert partial_caption(scene, rng, keep=["shape"])[0] == "a square"
    with pytest.raises(InvalidInputError):
        partial_caption(scene, rng, keep=["size"])


# -- probes ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("modality", ["image", "video", "audio", "text"])
def test_probes_read_at_least_99_percent_of_48_scenes_by_10_seeds(modality):
    correct = total = 0
    for scene in ALL_SCENES:
        for seed in SEEDS:
            reading = probe(modality, RENDER[modality](scene, _rng(scene, seed)))
            assert set(reading) == set(SHOWS[modality])
            for attr, value in reading.items():
                total += 1
                correct += value == getattr(scene, attr)
    assert total == 480 * len(SHOWS[modality])
    assert correct / total >= 0.99


def test_probes_read_canonical_tensors_and_survive_noise_and_blur():
    rng = np.random.default_rng(0)
    ok = 0
    for i, scene in enumerate(ALL_SCENES):
        img = render_image(scene, rng)
        assert probe("image", to_tensor("image", img)) == probe("image", img)
        video = render_video(scene, rng)
        assert probe("video", to_tensor("video", video))["motion"] == scene.motion
        if i % 4 == 0:
            assert probe("audio", torch.from_numpy(render_audio(scene, rng))) == scene.as_dict()
        # a generated-looking sample: blurred edges and a noisy grey background
        x = img.astype(float)
        x = (x + np.roll(x, 1, 0) + np.roll(x, -1, 0) + np.roll(x, 1, 1) + np.roll(x, -1, 1)) / 5
        x = np.clip(x + 25 + rng.normal(0, 8, x.shape), 0, 255).astype(np.uint8)
        ok += probe("image", x) == {"color": scene.color, "shape": scene.shape}
    assert ok / len(ALL_SCENES) >= 0.9


def test_probes_report_nothing_on_blank_samples_and_refuse_bad_ones():
    assert probe("image", np.zeros((32, 32, 3), np.uint8)) == {"color": None, "shape": None}
    assert probe("audio", np.zeros(16000, np.float32)) == {"color": None, "shape": None, "motion": None}
    assert probe("text", "a lovely day") == {}
    with pytest.raises(InvalidInputError, match="accepted"):
        probe("smell", "x")
    with pytest.raises(InvalidInputError, match="image must be"):
        probe("image", np.zeros((32, 32), np.uint8))


# -- datasets -------------------------------------------------------------------------------------
@pytest.mark.parametrize("modality,shape", [("image", (3, 32, 32)), ("video", (8, 3, 32, 32)), ("audio", (16000,))])
def test_pair_datasets_yield_only_text_and_one_canonical_sample(modality, shape):
    ds = ToyWorldPairs(modality, split="train", size=6, seed=1, partial_prob=0.5)
    item = ds[2]
    assert isinstance(item, tuple) and len(item) == 2
    text, sample = item
    assert isinstance(text, str) and isinstance(sample, torch.Tensor)
    assert sample.shape == shape and sample.dtype == torch.float32
    assert sample.min() >= -1 and sample.max() <= 1
    assert ds[2][0] == text and torch.equal(ds[2][1], sample)
    reading = probe(modality, sample)
    assert all(reading[a] == getattr(ds.scene(2), a) for a in probe_text(text) if a in reading)


def test_datasets_cache_partial_captions_and_text_only():
    cached = ToyWorldPairs("image", size=5, cache=True)
    plain = ToyWorldPairs("image", size=5)
    assert all(cached[i][0] == plain[i][0] and torch.equal(cached[i][1], plain[i][1]) for i in range(5))
    pairs = render_pairs("audio", "seen", 3, seed=2)
    assert pairs.samples.shape == (3, 16000) and len(pairs.captions) == len(pairs.scenes) == 3
    captions = ToyWorldCaptions(size=40, partial_prob=1.0)
    assert all(isinstance(c, str) and len(probe_text(c)) < 3 for c in captions)
    with pytest.raises(InvalidInputError, match="ToyWorldCaptions"):
        ToyWorldPairs("text")
    with pytest.raises(IndexError):
        plain[5]


# -- CLI ------------------------------------------------------------------------------------------
runner = CliRunner()


@pytest.mark.parametrize("modality,ext", [("image", "png"), ("video", "gif"), ("audio", "wav"), ("text", "txt"), ("video", "npy")])
def test_cli_renders_a_file_that_probes_back_to_the_scene(tmp_path, modality, ext):
    out = tmp_path / f"x.{ext}"
    args = ["toyworld", "render", "--modality", modality, "--color", "blue", "--shape", "square", "--motion", "down"]
    result = runner.invoke(app, [*args, "--seed", "4", "-o", str(out)])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["toyworld", "probe", str(out), "--modality", modality])
    assert result.exit_code == 0, result.output
    expected = {"color": "blue", "shape": "square", "motion": "down"}
    assert json.loads(result.stdout) == {k: v for k, v in expected.items() if k in SHOWS[modality]}


@pytest.mark.parametrize(
    "args,message",
    [
        (["render", "-m", "image", "--color", "purple", "--shape", "circle", "--motion", "up", "-o", "{tmp}/a.png"], "unknown color"),
        (["render", "-m", "smell", "--color", "red", "--shape", "circle", "--motion", "up", "-o", "{tmp}/a.png"], "unknown modality"),
        (["render", "-m", "image", "--color", "red", "--shape", "circle", "--motion", "up", "-o", "{tmp}/a.wav"], "accepted: .png"),
        (["probe", "{tmp}/missing.png"], "no such file"),
        (["probe", "{tmp}/bad.png"], "cannot read bad.png"),
        (["probe", "{tmp}/bad.png", "-m", "audio"], "audio files must end in"),
        (["probe", "{tmp}/flat.npy"], "cannot tell the modality"),
    ],
)
def test_cli_errors_are_clear_and_exit_2(tmp_path, args, message):
    (tmp_path / "bad.png").write_text("not an image")
    np.save(tmp_path / "flat.npy", np.zeros((2, 2)))
    result = runner.invoke(app, ["toyworld", *[a.format(tmp=tmp_path) for a in args]])
    assert result.exit_code == 2
    assert message in result.output and "Traceback" not in result.output
    assert isinstance(result.exception, SystemExit)


# -- evaluation -----------------------------------------------------------------------------------
def test_tasks_parse_and_refuse_bad_specs():
    assert parse_task("image+audio->video").inputs == ("image", "audio")
    assert parse_task("text->image+audio").partial and not parse_task("audio->image").joint
    assert len(parse_tasks(None)) == len(DEFAULT_TASKS) >= 12
    for bad in ("text", "text->smell", "text->image+image", "->image"):
        with pytest.raises(InvalidInputError):
            parse_task(bad)


def test_oracle_scores_at_least_99_percent_on_every_default_task(tmp_path):
    res = evaluate(get_generator("oracle"), list(DEFAULT_TASKS), split="heldout", n=12, seed=3)
    assert all(t["accuracy"] >= 0.99 for t in res["tasks"]), [(t["task"], t["accuracy"]) for t in res["tasks"]]
    assert all(t["coherence"] >= 0.99 for t in res["tasks"] if t["joint"])
    assert res["matrix"]["rows"] == ["text", "image", "video", "audio"]
    paths = write_results(res, tmp_path)
    assert json.loads(paths["json"].read_text())["generator"] == "oracle"
    assert "| `text->image` | 100.0 %" in paths["markdown"].read_text()
    assert paths["heatmap"].read_bytes()[:4] == b"\x89PNG"


def test_chance_scores_about_chance():
    tasks = parse_tasks("text->image,audio->video,text->image+audio,text->video+audio")
    res = evaluate(get_generator("chance"), tasks, split="seen", n=48, seed=0)
    acc = np.mean([t["accuracy"] for t in res["tasks"]])
    chance = np.mean([t["chance_accuracy"] for t in res["tasks"]])
    assert abs(acc - chance) < 0.1 and 0.25 < chance < 0.34
    coherence = [t["coherence"] for t in res["tasks"] if t["joint"]]
    assert all(0.1 < c < 0.55 for c in coherence)


def test_eval_refuses_training_split_and_a_broken_generator():
    with pytest.raises(InvalidInputError, match="train"):
        evaluate(get_generator("oracle"), parse_tasks("text->image"), split="train", n=2)

    class Broken:
        name = "broken"

        def generate(self, inputs, outputs, seed):
            return [{"image": np.zeros((4,), np.uint8)} for _ in inputs]

    with pytest.raises(CodiError, match="unreadable image"):
        evaluate(Broken(), parse_tasks("text->image"), n=2)
    with pytest.raises(InvalidInputError, match="available: autoencode, cascade, chance, compose, independent, oracle"):
        get_generator("nope")


def test_cli_eval_writes_results_and_reports_errors(tmp_path):
    args = ["eval", "--generator", "oracle", "--tasks", "text->image,audio->text", "--n", "4", "--out", str(tmp_path)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert {p.name for p in tmp_path.iterdir()} >= {"results.json", "results.md", "heatmap.png"}
    data = json.loads((tmp_path / "results.json").read_text())
    assert [t["accuracy"] for t in data["tasks"]] == [1.0, 1.0]
    for bad, message in ((["--generator", "nope"], "unknown generator"), (["--generator", "oracle", "--split", "train"], "unknown split")):
        result = runner.invoke(app, ["eval", *bad, "--out", str(tmp_path)])
        assert result.exit_code == 2 and message in result.output

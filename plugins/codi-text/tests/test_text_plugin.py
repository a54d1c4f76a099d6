"""Tests of the codi-text plugin: tokenizer, modality, text VAE, denoiser, diffuser, prompt encoder."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from transformers import (
    BertConfig,
    BertModel,
    BertTokenizer,
    CLIPTextConfig,
    CLIPTextModelWithProjection,
    CLIPTokenizer,
    GPT2Config,
    GPT2LMHeadModel,
    GPT2Tokenizer,
)

from codi_sdk.errors import InvalidInputError, WeightsNotFoundError
from codi_sdk.joint_attention import add_joint_attention
from codi_sdk.outputs import TextOutput
from codi_text import plugin
from codi_text.denoiser import TextDenoiser
from codi_text.diffuser import TextDiffuser
from codi_text.encoder import TextEncoder
from codi_text.modality import MAX_WORDS, TextModality
from codi_text.tokenizer import COLORS, MOTIONS, SHAPES, build_toyworld_tokenizer, load_tokenizer
from codi_text.vae import TextVAE

FULL_TEMPLATES = (
    "a {color} {shape} moving {motion}",
    "a {color} {shape} that moves {motion}",
    "the {shape} is {color} and goes {motion}",
    "{color} {shape} heading {motion}",
)
PARTIAL_TEMPLATES = (
    "a {color} {shape}",
    "a {shape} moving {motion}",
    "something {color} moving {motion}",
    "a {color} thing",
    "a {shape}",
    "something moving {motion}",
)


def toyworld_captions() -> list[str]:
    out = set()
    for color, shape, motion in itertools.product(COLORS, SHAPES, MOTIONS):
        for template in FULL_TEMPLATES + PARTIAL_TEMPLATES:
            out.add(template.format(color=color, shape=shape, motion=motion))
    return sorted(out)


@pytest.fixture(autouse=True)
def one_thread():
    """The tiny models run fastest on one thread, and the machine is shared."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# -- tokenizer ------------------------------------------------------------------------------------
def test_tokenizer_round_trips_every_toyworld_caption_without_unknown_words(tmp_path):
    tok = build_toyworld_tokenizer()
    captions = toyworld_captions()
    assert len(captions) == 48 * 4 + 51  # full captions + distinct partial ones
    ids = tok(captions).input_ids
    assert all(row[0] == tok.bos_token_id and row[-1] == tok.eos_token_id for row in ids)
    assert not any(tok.unk_token_id in row for row in ids)
    assert tok.batch_decode(ids, skip_special_tokens=True) == captions
    tok.save_pretrained(tmp_path)
    assert (tmp_path / "tokenizer.json").is_file()
    assert load_tokenizer(tmp_path)(captions).input_ids == ids


def test_tokenizer_lowercases_splits_punctuation_and_maps_unknown_words():
    tok = build_toyworld_tokenizer()
    assert tok("A RED Circle.").input_ids == tok("a red circle .").input_ids
    ids = tok("a magenta circle").input_ids
    assert ids[2] == tok.unk_token_id
    assert tok("").input_ids == [tok.bos_token_id, tok.eos_token_id]
    assert tok.eos_token_id != 2  # CLIP would take eos id 2 for a legacy config and pool at the wrong token


# -- modality -------------------------------------------------------------------------------------
def test_convert_accepts_strings_bytes_outputs_and_txt_files(tmp_path):
    m = TextModality()
    assert m.convert("  A red circle moving left \n") == "A red circle moving left"
    assert m.convert("a blue square".encode("utf-8")) == "a blue square"
    assert m.convert(TextOutput(modality="text", text="a green thing")) == "a green thing"
    file = tmp_path / "caption.txt"
    file.write_text("the square is red and goes up\n", encoding="utf-8")
    assert m.convert(file) == "the square is red and goes up"
    assert m.convert(str(file)) == "the square is red and goes up"
    assert m.convert("notes.txt") == "notes.txt"  # not an existing file: it is text


@pytest.mark.parametrize(
    "value, message",
    [
        ("", "empty"),
        ("   \n\t ", "empty"),
        (b"  ", "empty"),
        (None, "NoneType"),
        (3, "int"),
        (["a red circle"], "list"),
        (torch.zeros(3), "Tensor"),
        (b"\xff\xfe", "UTF-8"),
        (" ".join(["red"] * (MAX_WORDS + 1)), "too long"),
    ],
)
def test_convert_refuses_with_a_message_naming_the_problem_and_what_is_accepted(value, message):
    with pytest.raises(InvalidInputError) as err:
        TextModality().convert(value)
    assert message in str(err.value)
    assert "accepted: a non-empty str" in str(err.value)


def test_load_refuses_missing_empty_and_non_txt_files(tmp_path):
    m = TextModality()
    with pytest.raises(InvalidInputError, match="not found"):
        m.convert(tmp_path / "missing.txt")
    (tmp_path / "empty.txt").write_text("  \n")
    with pytest.raises(InvalidInputError, match="empty"):
        m.load(tmp_path / "empty.txt")
    (tmp_path / "caption.md").write_text("a red circle")
    with pytest.raises(InvalidInputError, match=r"only \.txt"):
        m.load(tmp_path / "caption.md")


def test_save_writes_txt_that_loads_back_and_to_output(tmp_path):
    m = TextModality()
    path = m.save("a yellow triangle heading down", tmp_path / "out" / "caption.txt")
    assert path.read_text() == "a yellow triangle heading down\n"
    assert m.load(path) == "a yellow triangle heading down"
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]  # no temporary left behind
    with pytest.raises(InvalidInputError, match=r"\.txt"):
        m.save("a red circle", tmp_path / "caption.png")
    out = m.to_output("a red circle")
    assert isinstance(out, TextOutput) and str(out) == "a red circle"
    assert str(m.to_output("")) == ""  # an (untrained) generation may be empty: wrapped, not refused


def test_plugin_provides_the_text_modality_with_weights_in_its_package():
    import codi_text

    assert plugin.codi_api_version() == 1
    (modality,) = plugin.codi_modalities()
    assert isinstance(modality, TextModality) and modality.name == "text"
    assert modality.shipped_weights_dir() == Path(codi_text.__file__).parent / "weights" / "toyworld"
    assert codi_text.TextModality is TextModality


# -- shapes ---------------------------------------------------------------------------------------
def test_encoder_gives_unit_pooled_vectors_and_one_token_and_encodes_the_empty_string():
    enc = TextModality().init_encoder()
    out = enc.encode(["a red circle moving left", "", "a blue square"])
    assert out.tokens.shape == (3, 1, 64) and out.pooled.shape == (3, 64)
    assert torch.allclose(out.pooled.norm(dim=-1), torch.ones(3), atol=1e-5)
    assert torch.equal(out.tokens[:, 0], out.pooled)
    assert not torch.allclose(out.pooled[0], out.pooled[1])
    # padding does not change an encoding (CLIP pools at [EOS])
    alone = enc.encode(["a blue square"]).pooled
    assert torch.allclose(alone[0], out.pooled[2], atol=1e-5)


def test_encoder_refuses_non_string_batches():
    enc = TextEncoder.toyworld()
    with pytest.raises(InvalidInputError, match="list"):
        enc.encode("a red circle")
    with pytest.raises(InvalidInputError, match="int"):
        enc.encode(["a red circle", 3])
    with pytest.raises(InvalidInputError, match="at least one"):
        enc.encode([])


def test_diffuser_components_have_the_toyworld_shapes():
    d = TextModality().init_diffuser()
    assert d.latent_shape == (4, 8) and d.env_dim == 64
    z = d.encode(["a red circle moving left", "a green thing"])
    assert z.shape == (2, 4, 8)
    t = torch.tensor([10, 900])
    context = torch.randn(2, 1, 64)
    assert d.denoise(z, t, context).shape == (2, 4, 8)
    assert d.denoise(z, torch.tensor(5), context).shape == (2, 4, 8)
    assert d.latent_tokens(z).shape == (2, 8, 4)
    assert torch.equal(d.latent_tokens(z)[:, 3], z[:, :, 3])
    env = d.environment(z, t)
    assert env.shape == (2, 4, 64)
    assert d.denoise(z, t, context, env).shape == (2, 4, 8)
    texts = d.decode(z)
    assert isinstance(texts, list) and len(texts) == 2 and all(isinstance(s, str) for s in texts)
    losses = d.vae_loss(["a red circle", "a blue square moving up"])
    assert set(losses) == {"loss", "rec", "kl"} and losses["loss"].requires_grad
    assert isinstance(d.collate(("a", "b")), list)


def test_denoiser_refuses_wrong_latent_and_context_shapes():
    unet = TextDenoiser()
    with pytest.raises(ValueError, match=r"latent \[B, 4"):
        unet(torch.randn(2, 3, 8), 1, encoder_hidden_states=torch.randn(2, 1, 64))
    with pytest.raises(ValueError, match=r"context \[B, K, 64\]"):
        unet(torch.randn(2, 4, 8), 1, encoder_hidden_states=torch.randn(2, 1, 32))


# -- text VAE -------------------------------------------------------------------------------------
def test_text_vae_learns_to_reconstruct_toyworld_captions_exactly():
    torch.manual_seed(0)
    vae = TextVAE()
    captions = [
        "a red circle moving left",
        "the square is blue and goes up",
        "yellow triangle heading down",
        "a green thing",
        "something red moving right",
        "a triangle that moves left",
    ]
    opt = torch.optim.AdamW(vae.parameters(), lr=3e-3)
    first = vae.loss(captions)["rec"].item()
    decoded: list[str] = []
    for step in range(1, 401):
        loss = vae.loss(captions)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 25 == 0:
            decoded = vae.decode(vae.encode(captions).latent_dist.mode())
            if decoded == captions:
                break
    assert decoded == captions, f"after {step} steps (reconstruction loss {first:.1f} at start)"


def test_per_token_latents_write_back_a_colour_shape_pair_never_trained_on():
    torch.manual_seed(0)
    vae = TextVAE(encoder_pooling="tokens")
    # as in the recipe's training-only colours: some colours come in every shape
    pairs = [(c, s) for c in ("red", "green", "blue", "orange", "cyan", "purple") for s in ("circle", "square", "triangle")]
    unseen = [("red", "triangle"), ("green", "square"), ("blue", "circle")]
    train = [f"a {c} {s} moving {m}" for c, s in pairs if (c, s) not in unseen for m in ("left", "up")]
    test = [f"a {c} {s} moving left" for c, s in unseen]
    assert vae.encode(test).latent_dist.mode().shape == (3, 4, 8)
    opt = torch.optim.AdamW(vae.parameters(), lr=3e-3)
    for step in range(1, 601):
        loss = vae.loss(train)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 50 == 0 and vae.decode(vae.encode(train).latent_dist.mode()) == train:
            break
    assert vae.decode(vae.encode(train).latent_dist.mode()) == train
    assert vae.decode(vae.encode(test).latent_dist.mode()) == test
    with pytest.raises(ValueError, match="'mean', 'cls' or 'tokens'"):
        TextVAE(encoder_pooling="max")


def test_text_vae_decode_refuses_a_wrong_latent_shape():
    with pytest.raises(ValueError, match=r"\[B, 4, 8\]"):
        TextVAE().decode(torch.zeros(1, 32))


def test_text_vae_folders_write_their_size_and_older_ones_load_with_their_own_vocabulary(tmp_path):
    from codi_text.tokenizer import AUXILIARY_COLORS, VOCABULARY
    from codi_text.vae import toyworld_bert_config, toyworld_gpt2_config

    vae = TextVAE()
    vae.save_pretrained(tmp_path / "new")
    config = json.loads((tmp_path / "new" / "config.json").read_text())
    assert config["encoder_config"]["vocab_size"] == config["decoder_config"]["vocab_size"] == len(VOCABULARY)
    assert TextVAE.from_pretrained(tmp_path / "new").decoder.config.vocab_size == len(VOCABULARY)
    # a folder from before the auxiliary colour words: ``null`` configs, a 50-word tokenizer
    old_size = len(VOCABULARY) - len(AUXILIARY_COLORS)
    torch.manual_seed(0)
    old = TextVAE(encoder_config=toyworld_bert_config(old_size), decoder_config=toyworld_gpt2_config(old_size))
    old.save_pretrained(tmp_path / "old")
    config = json.loads((tmp_path / "old" / "config.json").read_text())
    config["encoder_config"] = config["decoder_config"] = None
    (tmp_path / "old" / "config.json").write_text(json.dumps(config))
    tok = json.loads((tmp_path / "old" / "tokenizer.json").read_text())
    tok["model"]["vocab"] = {w: i for w, i in tok["model"]["vocab"].items() if i < old_size}
    (tmp_path / "old" / "tokenizer.json").write_text(json.dumps(tok))
    loaded = TextVAE.from_pretrained(tmp_path / "old")
    assert loaded.encoder.config.vocab_size == loaded.decoder.config.vocab_size == old_size
    assert len(loaded.decoder_tokenizer) == old_size
    for a, b in zip(old.state_dict().values(), loaded.state_dict().values()):
        assert torch.equal(a, b)


# -- joint attention ------------------------------------------------------------------------------
def test_zero_initialised_joint_attention_leaves_the_denoiser_output_unchanged():
    torch.manual_seed(0)
    unet = TextDenoiser().eval()
    z, t, context = torch.randn(2, 4, 8), torch.tensor([3, 700]), torch.randn(2, 1, 64)
    env = torch.randn(2, 4, 64)
    before = unet(z, t, encoder_hidden_states=context).sample
    joint = add_joint_attention(unet, 64)
    assert len(joint) == 2  # one per cross-attention layer
    after = unet(z, t, encoder_hidden_states=context, cross_attention_kwargs={"env": env}).sample
    assert torch.allclose(before, after, atol=1e-6)
    with torch.no_grad():  # once trained, the environment does change the prediction
        for proc in joint.values():
            proc.to_out_env.weight.normal_()
    changed = unet(z, t, encoder_hidden_states=context, cross_attention_kwargs={"env": env}).sample
    assert not torch.allclose(before, changed, atol=1e-4)


# -- our own folders ------------------------------------------------------------------------------
def _perturb_joint(d: TextDiffuser) -> None:
    with torch.no_grad():
        for proc in d.joint.values():
            proc.to_out_env.weight.normal_()


def test_diffuser_and_encoder_round_trip_through_a_weights_folder(tmp_path):
    torch.manual_seed(0)
    m = TextModality()
    d, enc = m.init_diffuser().eval(), m.init_encoder().eval()
    _perturb_joint(d)
    d.save_pretrained(tmp_path)
    enc.save_pretrained(tmp_path / "encoder")
    for component in ("vae", "unet", "env_encoder", "joint", "encoder"):
        assert (tmp_path / component / "config.json").is_file()
        assert list((tmp_path / component).glob("*.safetensors"))
    assert (tmp_path / "vae" / "tokenizer.json").is_file() and (tmp_path / "encoder" / "tokenizer.json").is_file()
    unet_config = json.loads((tmp_path / "unet" / "config.json").read_text())
    assert unet_config["_class_name"] == "TextDenoiser"
    from safetensors import safe_open

    with safe_open(str(next((tmp_path / "unet").glob("*.safetensors"))), "pt") as fh:
        assert not [k for k in fh.keys() if "processor" in k]  # unet/ holds the base weights only
    assert set(m.weights_found(tmp_path)) == {"vae", "unet", "env_encoder", "joint", "encoder"}

    d2, enc2 = m.load_diffuser(tmp_path), m.load_encoder(tmp_path)
    texts = ["a red circle moving left", "something moving up"]
    z = d.encode(texts)
    t, context = torch.tensor([1, 999]), torch.randn(2, 1, 64)
    env = d.environment(z, t)
    assert torch.equal(d2.encode(texts), z)
    assert torch.equal(d2.environment(z, t), env)
    assert torch.equal(d2.denoise(z, t, context, env), d.denoise(z, t, context, env))
    assert d2.decode(z) == d.decode(z)
    assert torch.equal(enc2.encode(texts + [""]).pooled, enc.encode(texts + [""]).pooled)
    # saving did not detach the joint layers from the denoiser
    assert torch.equal(d.denoise(z, t, context, env), d2.denoise(z, t, context, env))
    assert not torch.allclose(d.denoise(z, t, context, env), d.denoise(z, t, context, None))


def test_diffuser_without_joint_folder_starts_with_zero_joint_attention(tmp_path):
    d = TextDiffuser.toyworld().eval()
    d.save_pretrained(tmp_path)
    for f in (tmp_path / "joint").iterdir():
        f.unlink()
    (tmp_path / "joint").rmdir()
    d2 = TextDiffuser.from_pretrained(tmp_path)
    z, t, c = torch.randn(1, 4, 8), torch.tensor([5]), torch.randn(1, 1, 64)
    assert torch.equal(d2.denoise(z, t, c, torch.randn(1, 4, 64)), d2.denoise(z, t, c, None))


def test_missing_weights_are_reported_by_name(tmp_path):
    m = TextModality()
    (tmp_path / "vae").mkdir()
    with pytest.raises(WeightsNotFoundError, match="unet"):
        m.load_diffuser(tmp_path)
    with pytest.raises(WeightsNotFoundError, match="not found"):
        m.load_diffuser(tmp_path / "nowhere")


# -- real-layout folders --------------------------------------------------------------------------
def _bpe(words: list[str], suffix: str = "") -> tuple[dict[str, int], list[str]]:
    """A byte-level BPE vocabulary and merges that spell each word as one token."""
    vocab: dict[str, int] = {}
    merges: list[str] = []
    for word in words:
        pieces = list(word[:-1]) + [word[-1] + suffix]
        for p in pieces:
            vocab.setdefault(p, len(vocab))
        current = pieces[0]
        for p in pieces[1:]:
            if f"{current} {p}" not in merges:
                merges.append(f"{current} {p}")
            current += p
            vocab.setdefault(current, len(vocab))
    return vocab, merges


def _write_bpe(folder: Path, vocab: dict[str, int], merges: list[str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")


WORDS = ["a", "red", "blue", "circle", "square", "moving", "left", "up"]


def _tiny_clip(tmp_path: Path) -> tuple[CLIPTextModelWithProjection, CLIPTokenizer]:
    specials = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    vocab, merges = _bpe(WORDS, suffix="</w>")
    vocab = {**specials, **{k: i + 2 for k, i in vocab.items()}}
    _write_bpe(tmp_path / "bpe", vocab, merges)
    tok = CLIPTokenizer.from_pretrained(str(tmp_path / "bpe"))
    assert tok("a red circle").input_ids == [0, vocab["a</w>"], vocab["red</w>"], vocab["circle</w>"], 1]
    config = CLIPTextConfig(
        vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        max_position_embeddings=16, projection_dim=24, bos_token_id=0, eos_token_id=1, pad_token_id=1,
    )
    torch.manual_seed(1)
    return CLIPTextModelWithProjection(config).eval(), tok


@pytest.mark.parametrize("layout", ["one_folder", "stable_diffusion"])
def test_real_layout_clip_text_folder_loads_and_gives_identical_outputs(tmp_path, layout):
    model, tok = _tiny_clip(tmp_path)
    if layout == "one_folder":  # e.g. openai/clip-vit-large-patch14 saved locally
        folder = tmp_path / "clip"
        model.save_pretrained(folder)
        tok.save_pretrained(folder)
    else:  # text_encoder/ beside tokenizer/
        folder = tmp_path / "sd" / "text_encoder"
        model.save_pretrained(folder)
        tok.save_pretrained(tmp_path / "sd" / "tokenizer")
    enc = TextModality().load_encoder(folder)
    texts = ["a red circle moving left", "a blue square", ""]
    with torch.no_grad():
        batch = tok(texts, padding=True, return_tensors="pt")
        expected = F.normalize(model(**batch).text_embeds, dim=-1)
    out = enc.encode(texts)
    assert enc.dim == 24
    assert out.pooled.shape == (3, 24) and out.tokens.shape == (3, 1, 24)
    assert torch.allclose(out.pooled, expected, atol=1e-6)


def _tiny_bert_and_gpt2(tmp_path: Path) -> tuple[Path, Path, BertModel, GPT2LMHeadModel]:
    raw = tmp_path / "raw_bert"
    raw.mkdir()
    (raw / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]) + "\n")
    bert_tok = BertTokenizer.from_pretrained(str(raw))
    torch.manual_seed(2)
    bert = BertModel(BertConfig(
        vocab_size=len(bert_tok), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=32,
    )).eval()
    vocab, merges = _bpe([WORDS[0]] + ["Ġ" + w for w in WORDS[1:]])
    vocab["<|endoftext|>"] = len(vocab)
    _write_bpe(tmp_path / "raw_gpt2", vocab, merges)
    gpt2_tok = GPT2Tokenizer.from_pretrained(str(tmp_path / "raw_gpt2"))
    gpt2 = GPT2LMHeadModel(GPT2Config(
        vocab_size=len(vocab), n_embd=32, n_layer=1, n_head=2, n_positions=48,
        bos_token_id=vocab["<|endoftext|>"], eos_token_id=vocab["<|endoftext|>"],
    )).eval()
    bert_dir, gpt2_dir = tmp_path / "bert-base-cased", tmp_path / "gpt2"
    bert.save_pretrained(bert_dir)
    bert_tok.save_pretrained(bert_dir)
    gpt2.save_pretrained(gpt2_dir)
    gpt2_tok.save_pretrained(gpt2_dir)
    return bert_dir, gpt2_dir, bert, gpt2


def test_optimus_vae_loads_bert_and_gpt2_folders_and_round_trips(tmp_path):
    bert_dir, gpt2_dir, bert, gpt2 = _tiny_bert_and_gpt2(tmp_path)
    vae = TextVAE.from_bert_gpt2(bert_dir, gpt2_dir, latent_channels=4, latent_length=4).eval()
    ids = torch.tensor([[2, 5, 6, 8, 3]])
    ids_gpt2 = torch.tensor([[0, 1, 4, 7]])
    with torch.no_grad():
        assert torch.equal(vae.encoder(ids).pooler_output, bert(ids).pooler_output)
        assert torch.equal(vae.decoder(ids_gpt2).logits, gpt2(ids_gpt2).logits)
    assert vae.decoder.lm_head.weight.data_ptr() == vae.decoder.get_input_embeddings().weight.data_ptr()

    texts = ["a red circle moving left", "a blue square"]
    assert vae.encoder_tokenizer("a red").input_ids[0] == vae.encoder_tokenizer.cls_token_id
    z = vae.encode(texts).latent_dist.mode()
    assert z.shape == (2, 4, 4)
    losses = vae.loss(texts)
    assert torch.isfinite(losses["loss"])
    decoded = vae.decode(z, max_new_tokens=5)

    vae.save_pretrained(tmp_path / "vae")
    assert (tmp_path / "vae" / "encoder_tokenizer" / "tokenizer.json").is_file()
    again = TextVAE.from_pretrained(tmp_path / "vae")
    assert type(again.encoder_tokenizer).__name__ == "BertTokenizer"
    assert type(again.decoder_tokenizer).__name__ == "GPT2Tokenizer"
    assert torch.equal(again.encode(texts).latent_dist.mode(), z)
    assert again.decode(z, max_new_tokens=5) == decoded

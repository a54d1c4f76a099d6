"""The three CoDi training stages over whatever modality plugins are installed.

Every finished sub-stage writes its components (``save_pretrained`` folders under
``OUT/<modality>/``) and records itself in ``OUT/state.json``; a rerun skips what is recorded and
resumes a sub-stage from its last checkpoint (``OUT/checkpoints/<sub-stage>/``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
import zlib
from pathlib import Path
from typing import Iterable

import torch
from torch import nn

from ..diffuser import Diffuser
from ..encoder import Encoder
from ..registry import Registry, get_registry
from ..toyworld.scenes import ATTRIBUTES
from .data import Pairs, render_pairs, render_unnamed_pairs, restrict_key
from .losses import AlignmentLoss, DecoderLoss, DiffusionLoss, JointLoss, VAELoss
from .loop import LossLog, fit, sample_indices
from .recipe import ToyWorldRecipe

logger = logging.getLogger(__name__)

BRIDGE = "text"
#: The colour an unnamed-colour item shows with ``unnamed_colors_exclusive``: compatible with no caption that names one.
UNNAMED_COLOR = "unnamed"
TOYWORLD_NATIVE = ("text", "image", "video", "audio")


@contextlib.contextmanager
def _locked(path: Path):
    """An exclusive lock on ``path`` (POSIX ``flock``; elsewhere, no lock: run one lane at a time)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


class ToyWorldTrainer:
    """Trains every installed modality on ToyWorld into ``out``."""

    def __init__(self, out: str | os.PathLike, recipe: ToyWorldRecipe | None = None, registry: Registry | None = None,
                 modalities: Iterable[str] | None = None, accelerator=None, progress: bool = True,
                 allowed: Iterable[str] | None = None, lane: int | None = None):
        """``allowed``: the sub-stages this process may train (default: all); the others are left to
        another process (see :meth:`run_parallel`), and a sub-stage that needs one of them waits
        until ``state.json`` records it. ``lane``: this process's lane number, for its progress bars."""
        from accelerate import Accelerator
        from accelerate.utils import DistributedDataParallelKwargs

        self.out = Path(out)
        self.recipe = recipe or ToyWorldRecipe()
        self.registry = registry or get_registry()
        names = list(modalities) if modalities else self.registry.names()
        if BRIDGE not in names:
            raise ValueError(f"training needs the bridge modality {BRIDGE!r}; got {names}")
        # bridge first, image before video (video starts from the trained image diffuser)
        self.modalities = sorted(names, key=lambda m: (m != BRIDGE, m != "image", m))
        self.accelerator = accelerator or Accelerator(kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)])
        self.progress = progress and self.accelerator.is_main_process
        self.out.mkdir(parents=True, exist_ok=True)
        self.log = LossLog(self.out / "losses.csv", enabled=self.accelerator.is_main_process)
        self.state_path = self.out / "state.json"
        self.state = json.loads(self.state_path.read_text()) if self.state_path.exists() else {"done": {}}
        # the recipe of the latest (re)start; every sub-stage also records the steps it ran
        self.state["recipe"] = self.recipe.model_dump()
        self._pairs: dict[str, Pairs] = {}
        # prompt contexts and final latents, reused between sub-stages of one process (stage 3
        # needs the latents stage 2 computed); cleared whenever an encoder changes
        self._memo: dict[tuple, torch.Tensor] = {}
        self._bridge_encoder: Encoder | None = None
        self.frozen: set[str] = set()  # modalities adopted from a base run: never trained here
        self.allowed = set(allowed) if allowed is not None else None
        self.lane = lane
        self._peers: list[Path] = []  # in a lane: the other lanes' "finished" marks
        self._all_threads = 0  # in a lane: the threads to take once the other lanes have finished
        self._bridge_elsewhere = False  # in a lane: another lane trains the bridge (wait for it before reading it)

    # -- bookkeeping --------------------------------------------------------------------------------
    def _mark(self, name: str, losses: dict[str, float], seconds: float, steps: int | None = None) -> None:
        self.state["done"][name] = {"final": losses, "seconds": round(seconds, 1)}
        if steps is not None:
            self.state["done"][name]["steps"] = steps
        if self.accelerator.is_main_process:
            with _locked(self.out / "state.lock"):
                self._read_others()  # a parallel lane may have recorded its own sub-stages meanwhile
                tmp = self.state_path.with_suffix(f".{os.getpid()}.tmp")
                tmp.write_text(json.dumps(self.state, indent=2))
                os.replace(tmp, self.state_path)

    def _read_others(self) -> None:
        """Add the sub-stages that ``state.json`` records (another lane's) to this process's state."""
        if self.state_path.exists():
            self.state["done"] = {**json.loads(self.state_path.read_text())["done"], **self.state["done"]}

    def done(self, name: str) -> bool:
        """``name`` is recorded in ``state.json`` (by this process or, re-read, by another lane)."""
        return name in self.state["done"]

    def _skip(self, name: str) -> bool:
        """Done already, or another process's to train (:meth:`run_parallel`)."""
        return self.done(name) or (self.allowed is not None and name not in self.allowed)

    def _await(self, names: Iterable[str], poll: float = 2.0) -> None:
        """Wait until another lane has recorded every sub-stage in ``names`` (only in a lane)."""
        missing = [n for n in names if not self.done(n)]
        while missing:
            peers_finished = bool(self._peers) and all(p.exists() for p in self._peers)  # before re-reading the state
            self._read_others()
            missing = [n for n in missing if not self.done(n)]
            if not missing:
                break
            if self.allowed is None or any(n in self.allowed for n in missing) or peers_finished:
                # not ours to train, and no other lane left that could
                raise RuntimeError(f"sub-stages {missing} must run before this one but are not done")
            time.sleep(poll)

    def _seed(self, name: str) -> None:
        """Seed torch, numpy and random for sub-stage ``name`` from the recipe seed and the name, so a
        sub-stage's new weights, noise and timesteps do not depend on what ran before it in this
        process (``--stage 2`` alone gives what ``--stage all`` gives). Each process gets its own
        stream; DDP copies rank 0's weights to the others. A resumed sub-stage continues from the
        random states its checkpoint saved."""
        from accelerate.utils import set_seed

        set_seed(zlib.crc32(f"{self.recipe.seed}:{name}".encode()), device_specific=True)

    def pairs(self, m: str, stage: int = 2) -> Pairs:
        """``m``'s (caption, sample) pairs; ``stage=1``: those of its alignment, which differ only
        where the recipe's ``auxiliary_colors_align`` gives ``m`` another training-only-colour share."""
        renderer = None if m in TOYWORLD_NATIVE else self.registry.get(m).render_toyworld
        r = self.recipe
        auxiliary = r.per(r.auxiliary_colors, m, 0.0) if renderer is None else 0.0  # a plugin's renderer knows ToyWorld's colours only
        key = m
        if stage == 1 and renderer is None and r.auxiliary_colors_align.get(m, auxiliary) != auxiliary:
            auxiliary, key = r.auxiliary_colors_align[m], ("align", m)
        if key not in self._pairs:
            self._pairs[key] = render_pairs(m, r.n_pairs.get(m, 2000), r.seed, self.progress, renderer, auxiliary)
        return self._pairs[key]

    def shows(self, m: str) -> tuple[str, ...]:
        """The ToyWorld attributes modality ``m``'s samples show (its keys in contrastive losses)."""
        from ..toyworld.probes import SHOWS

        declared = getattr(self.registry.get(m), "toyworld_shows", None)
        return tuple(declared or SHOWS.get(m, ATTRIBUTES))

    def sample_keys(self, m: str, idx) -> list[tuple]:
        p, shown = self.pairs(m), self.shows(m)
        return [restrict_key(p.keys[i], shown) for i in idx]

    def adopt_base(self, base: str | os.PathLike, names: Iterable[str]) -> None:
        """Start from already trained modalities: copy each one's weights folder (``base/<m>``, or the
        plugin's shipped weights when ``base == "shipped"``) into ``out`` and record its sub-stages as
        done, so only the other modalities are trained — against a frozen bridge."""
        import shutil

        for m in names:
            if self.done(f"2-unet-{m}"):
                self.frozen.add(m)  # adopted by an earlier run of this command (resume)
                continue
            src = self.registry.get(m).resolve_weights(None if str(base) == "shipped" else Path(base) / m)
            if self.accelerator.is_main_process:
                shutil.copytree(src, self.out / m, dirs_exist_ok=True)
            self.accelerator.wait_for_everyone()
            stages = [f"2-vae-{m}", f"2-decoder-{m}", f"2-unet-{m}", f"2-refine-{m}"] + ([] if m == BRIDGE else [f"1-align-{m}", f"3-joint-{m}"])
            for name in stages:
                self._mark(name, {}, 0.0)
            self.frozen.add(m)
        if BRIDGE in self.frozen:
            self._mark(self._bridge_stage(), {}, 0.0)
        self._forget()

    def _forget(self) -> None:
        """Drop the reused contexts and latents (after the bridge encoder or weights change)."""
        self._memo.clear()
        self._bridge_encoder = None

    def _fit(self, name: str, objective, batches, steps: int, lr: float, lr_schedule: str = "constant") -> tuple[dict[str, float], float, int]:
        t0 = time.time()
        ckpt = self.out / "checkpoints" / name
        if self.lane is not None:
            inner = batches

            def batches(step):
                if step % 20 == 0:
                    self._take_free_threads()
                return inner(step)

        losses = fit(objective, batches, steps, lr, self.accelerator, name, self.log, ckpt, self.recipe.checkpoint_every,
                     lr_schedule=lr_schedule, position=self.lane)
        return losses, time.time() - t0, steps  # the caller marks the sub-stage done once its weights are saved

    def _take_free_threads(self) -> None:
        """In a lane: once every other lane has finished, use all the threads the run was given."""
        if self._all_threads > torch.get_num_threads() and all(p.exists() for p in self._peers):
            torch.set_num_threads(self._all_threads)

    def _rank_indices(self, n: int, batch: int, step: int, stream: int = 0) -> torch.Tensor:
        """This process's ``batch`` indices into ``n`` items at ``step``; ``stream`` > 0 draws from
        another seed (the recipe's seed + stream), e.g. for a second set of pairs in the same batch."""
        return sample_indices(n, batch, self.recipe.seed + stream, step, self.accelerator.process_index)

    def _unnamed_share(self, m: str, sub_stages: str) -> float:
        """The recipe's unnamed-colour share for ``m``'s ``"vae"`` (VAE and decoder) or ``"unet"``
        (denoiser and refine) sub-stages: ``unnamed_colors_vae`` / ``unnamed_colors_unet`` (0 when none)."""
        table = {"vae": self.recipe.unnamed_colors_vae, "unet": self.recipe.unnamed_colors_unet}[sub_stages]
        return self.recipe.per(table, m, 0.0)

    def _save(self, module, path: Path) -> None:
        if self.accelerator.is_main_process:
            module.save_pretrained(path)
        self.accelerator.wait_for_everyone()

    # -- loading what earlier stages wrote ----------------------------------------------------------
    def encoder(self, m: str) -> Encoder:
        return self.registry.get(m).load_encoder(self.out / m).to(self.accelerator.device, torch.float32)

    def diffuser(self, m: str) -> Diffuser:
        return self.registry.get(m).load_diffuser(self.out / m).to(self.accelerator.device, torch.float32)

    def new_diffuser(self, m: str) -> Diffuser:
        """A new diffuser of ``m`` from its plugin, with the recipe's ``diffuser_options[m]``."""
        options = self.recipe.diffuser_options.get(m, {})
        if not options:
            return self.registry.get(m).init_diffuser()
        try:
            return self.registry.get(m).init_diffuser(**options)
        except TypeError as err:
            raise ValueError(f"the recipe's diffuser_options[{m!r}] = {options} are not options of the {m} plugin's "
                             f"init_diffuser(): {err}") from err

    def _stage2_names(self, m: str) -> list[str]:
        r = self.recipe
        return [f"2-unet-{m}"] + ([f"2-refine-{m}"] if r.steps(r.unet_refine_steps, m, 0) else [])

    # -- stage 1 ------------------------------------------------------------------------------------
    def train_alignment(self) -> None:
        """Bridging alignment: text + image encoders together (with text–text paraphrases, so the
        text encoder also encodes what images cannot show), then every other encoder against the
        frozen text encoder on (text, m) pairs only."""
        dev = self.accelerator.device
        r = self.recipe
        first, name = self._bridge_partner(), self._bridge_stage()
        if BRIDGE in self.frozen:
            first = BRIDGE  # the bridge is already aligned: align every other encoder to it
        elif self._skip(name):
            if any(m != BRIDGE and not self._skip(f"1-align-{m}") for m in self.modalities):
                self._await([name])  # the bridge is another lane's: wait for it before aligning to it
        else:
            self._seed(name)
            text_enc = self.registry.get(BRIDGE).init_encoder().to(dev)
            enc = self.registry.get(first).init_encoder().to(dev)

            def batches(step):
                # paraphrases of the *same* items: odd ones partial captions, even ones a second full
                # caption; positives are the compatible keys, so "a red thing" lands among red scenes
                return self._alignment_batch(first, step, r.per(r.align_batch, first, 64), paraphrases=True)

            result = self._fit(name, AlignmentLoss(text_enc, enc, train_text=True), batches, r.steps({first: r.bridge_steps}, first), r.per(r.align_lr, first, 1e-3))
            self._save(text_enc, self.out / BRIDGE / "encoder")
            self._save(enc, self.out / first / "encoder")
            self._mark(name, *result)
            self._forget()
        for m in self.modalities:
            if m == BRIDGE or self._skip(f"1-align-{m}"):
                continue
            self._seed(f"1-align-{m}")
            text_enc = self.encoder(BRIDGE).eval()
            # the first encoder continues from its joint training with text; the others start new
            enc = self.encoder(m) if m == first else self.registry.get(m).init_encoder().to(dev)
            if m != first and m in r.align_warm_start:
                # from the encoders aligned so far: the bridge's (always done by now) and those before
                # this one (alignments run in one process, in modality order); loading builds modules,
                # which draws random numbers: a forked generator keeps this sub-stage's stream
                with torch.random.fork_rng():
                    trained = {BRIDGE: text_enc} | {o: self.encoder(o) for o in self.modalities
                                                    if o not in (m, BRIDGE) and (o == first or self.done(f"1-align-{o}"))}
                if not enc.warm_start(trained):
                    logger.warning("align_warm_start: the %s encoder took nothing from the %s encoder(s)", m, "/".join(trained))
            for part in r.align_frozen.get(m, []):
                module = getattr(enc, part, None)
                if not isinstance(module, nn.Module):
                    raise ValueError(f"align_frozen[{m!r}] names {part!r}, which is not a part of the {m} encoder "
                                     f"({type(enc).__name__}); its parts: {', '.join(n for n, _ in enc.named_children())}")
                module.requires_grad_(False)

            partial = r.align_partial.get(m, 0.0)

            def batches(step, m=m, bs=r.per(r.align_batch, m, 64), partial=partial):
                return self._alignment_batch(m, step, bs, paraphrases=partial > 0)

            loss = AlignmentLoss(text_enc, enc, train_text=False, partial=partial)
            result = self._fit(f"1-align-{m}", loss, batches, r.steps(r.align_steps, m, 500), r.per(r.align_lr, m, 1e-3))
            self._save(enc, self.out / m / "encoder")
            self._mark(f"1-align-{m}", *result)

    def _bridge_partner(self) -> str:
        """The modality trained together with the text encoder in sub-stage ``1-bridge-<m>``: image
        when installed, else the first other one."""
        return "image" if "image" in self.modalities else next(m for m in self.modalities if m != BRIDGE)

    def _bridge_stage(self) -> str:
        """The bridge's sub-stage name, ``1-bridge-<partner>``."""
        return f"1-bridge-{self._bridge_partner()}"

    def unnamed_pairs(self, m: str, stage: int = 2) -> Pairs | None:
        """``m``'s pairs in colours without a name (recipe ``unnamed_colors`` for stage 1,
        ``unnamed_colors_vae`` for the VAE and decoder sub-stages, ``unnamed_colors_unet`` for the
        denoiser's; ToyWorld's own image, video and audio only), or None. Stage 1 draws the recipe's
        ``unnamed_subharmonics`` share of them at sub-harmonic pitches (a set of its own when > 0)."""
        share = max(self.recipe.unnamed_colors, self._unnamed_share(m, "vae"), self._unnamed_share(m, "unet"))
        if not share or m not in TOYWORLD_NATIVE or m == BRIDGE:
            return None
        sub = self.recipe.unnamed_subharmonics.get(m, 0.0) if stage == 1 else 0.0
        key = ("unnamed", m, sub) if sub else ("unnamed", m)
        if key not in self._pairs:
            n = max(1, round(self.recipe.n_pairs.get(m, 2000) * share))
            self._pairs[key] = render_unnamed_pairs(m, n, self.recipe.seed, self.progress, subharmonics=sub)
        return self._pairs[key]

    def _mixed_indices(self, m: str, step: int, bs: int, share: float, stage: int = 2) -> list[tuple[Pairs, torch.Tensor]]:
        """A batch's ``(pairs, indices)`` parts: ``share`` of ``bs`` (rounded) from
        :meth:`unnamed_pairs` when there are any, the rest from :meth:`pairs` of ``stage`` (the
        indices a batch without them would draw)."""
        unnamed = self.unnamed_pairs(m, stage) if share else None
        k = round(bs * share) if unnamed is not None else 0
        named = self.pairs(m, stage)
        out = [(named, self._rank_indices(len(named), bs - k, step))]
        if k:
            out.append((unnamed, self._rank_indices(len(unnamed), k, step, stream=1)))
        return [(p, idx) for p, idx in out if len(idx)]

    def _alignment_batch(self, m: str, step: int, bs: int, paraphrases: bool = False) -> dict:
        """One stage-1 batch of ``m``'s pairs: ``unnamed_colors`` of it (rounded) from
        :meth:`unnamed_pairs`, the rest from :meth:`pairs` of stage 1. With ``paraphrases`` each item
        also brings a second caption of its own: odd items a partial one, even items a second full
        one. With ``unnamed_colors_exclusive`` the unnamed-colour items show the colour
        :data:`UNNAMED_COLOR`, so no caption naming a colour is their positive."""
        parts, shown = [], self.shows(m)
        exclusive = m in self.recipe.unnamed_colors_exclusive and "color" in shown
        unnamed = self.unnamed_pairs(m, stage=1) if exclusive else None
        for p, idx in self._mixed_indices(m, step, bs, self.recipe.unnamed_colors, stage=1):
            batch = {"captions": [p.captions[i] for i in idx], "keys": [p.keys[i] for i in idx],
                     "samples": p.samples[idx], "sample_keys": [restrict_key(p.keys[i], shown) for i in idx]}
            if exclusive and p is unnamed:  # its colour is none of the named ones
                batch["sample_keys"] = [(("color", UNNAMED_COLOR),) + k for k in batch["sample_keys"]]
            if paraphrases:
                batch["paraphrases"] = [p.partial[i] if j % 2 else p.paraphrases[i] for j, i in enumerate(idx)]
                batch["paraphrase_keys"] = [p.partial_keys[i] if j % 2 else p.keys[i] for j, i in enumerate(idx)]
            parts.append(batch)
        out = {key: (torch.cat([b[key] for b in parts]) if key == "samples" else [x for b in parts for x in b[key]])
               for key in parts[0]}
        out["samples"] = out["samples"].to(self.accelerator.device)
        return out

    # -- stage 2 ------------------------------------------------------------------------------------
    @torch.no_grad()
    def _contexts(self, captions: list[str], batch: int = 256) -> torch.Tensor:
        key = ("contexts", *captions)
        if key not in self._memo:
            if self._bridge_encoder is None:
                if self._bridge_elsewhere:
                    self._await([self._bridge_stage()])  # another lane may still be training it
                self._bridge_encoder = self.encoder(BRIDGE).eval()
            enc = self._bridge_encoder
            self._memo[key] = torch.cat([enc(captions[i : i + batch]).tokens for i in range(0, len(captions), batch)])
        return self._memo[key]

    @torch.no_grad()
    def _latents(self, d: Diffuser, p: Pairs, batch: int = 64, key: tuple | None = None) -> torch.Tensor:
        """``d``'s latents of ``p``; with ``key``, computed once per process (the caller keys only
        latents whose VAE and scale are final)."""
        if key is not None and ("latents", *key) in self._memo:
            return self._memo[("latents", *key)]
        d.eval()
        data = p.captions if p.samples is None else p.samples
        outs = []
        for i in range(0, len(p), batch):
            chunk = data[i : i + batch]
            outs.append(d.encode(chunk if p.samples is None else chunk.to(self.accelerator.device)))
        latents = torch.cat(outs)
        if key is not None:
            self._memo[("latents", *key)] = latents
        return latents

    def train_diffusion(self, m: str) -> None:
        """One modality's latent diffusion model: VAE (unless warm-started), latent scale, denoiser."""
        r = self.recipe
        dev = self.accelerator.device
        name_vae, name_unet, name_refine, name_dec = f"2-vae-{m}", f"2-unet-{m}", f"2-refine-{m}", f"2-decoder-{m}"
        refine_steps = r.steps(r.unet_refine_steps, m, 0)
        # the recipe's decoder steps apply to a latent with decoder-side parts (audio's mel inverter);
        # one without (audio's harmonic latent) has no 2-decoder sub-stage
        decoder_steps = r.steps(r.decoder_steps, m, 0) if self._has_decoder_parts(m) else 0
        denoiser_done = self._skip(name_unet) and (not refine_steps or self._skip(name_refine))
        if denoiser_done and (not decoder_steps or self._skip(name_dec)):
            return
        p = self.pairs(m)
        if self._skip(name_vae):
            self._await([name_vae])
            d = self.diffuser(m)
        else:
            self._seed(name_vae)
            d = self.new_diffuser(m).to(dev)
            if not r.vocoder and getattr(d, "vocoder", None) is not None:
                d.vocoder = None  # decode with Griffin-Lim; a HiFi-GAN is not worth its CPU time here
            if not decoder_steps:
                for part in d.decoder_parts():
                    setattr(d, part, None)  # never ship an untrained one
            # what this process has trained (never what a parallel lane happens to have finished: the
            # warm start must not depend on timing); loading builds modules, which draws random
            # numbers, so it runs on a forked generator: this sub-stage's stream stays its own
            with torch.random.fork_rng():
                trained = {o: self.diffuser(o) for o in self.modalities
                           if o != m and self.done(f"2-unet-{o}") and (self.allowed is None or f"2-unet-{o}" in self.allowed)}
            warm = d.warm_start(trained)
            steps = r.steps(r.vae_steps, m, 1000)
            # a fixed codec in the VAE's place (audio's harmonic latent) has nothing to fit
            if "vae" not in warm and steps and next(d.vae.parameters(), None) is not None:
                bs, vae_share = r.vae_batch.get(m, 16), self._unnamed_share(m, "vae")

                def vae_batches(step):
                    if p.samples is None:
                        return {"batch": [p.captions[i] for i in self._rank_indices(len(p), bs, step)]}
                    parts = self._mixed_indices(m, step, bs, vae_share)
                    return {"batch": torch.cat([q.samples[idx] for q, idx in parts]).to(dev)}

                d.requires_grad_(False)
                d.vae.requires_grad_(True)
                for extra in ("vocoder",):
                    if getattr(d, extra, None) is not None:
                        getattr(d, extra).requires_grad_(True)
                vae_result = self._fit(name_vae, VAELoss(d), vae_batches, steps, r.vae_lr)
            else:
                vae_result = ({}, 0.0, 0)
            d.set_latent_scale(1.0)
            std = float(self._latents(d, p).std())
            d.set_latent_scale(1.0 / max(std, 1e-6))
            self._save(d, self.out / m)
            self._mark(name_vae, *vae_result)
        latents = self._latents(d, p, key=(m,))
        if decoder_steps and not self._skip(name_dec):
            self._train_decoder(d, m, p, latents, decoder_steps)
        if denoiser_done:
            return
        contexts = self._contexts(p.captions)
        partial = self._contexts(p.partial)
        uncond = self._contexts([""])[:1]
        d.train()
        d.requires_grad_(False)
        d.unet.requires_grad_(True)
        d.joint.requires_grad_(False)
        bs = r.unet_batch.get(m, 32)
        unet_share = self._unnamed_share(m, "unet")
        noise = r.context_noise.get(m, 0.0)
        # latents, full-caption and partial-caption contexts of each source of a batch
        sources = {id(p): (latents, contexts, partial)}
        unnamed = self.unnamed_pairs(m) if unet_share else None
        if unnamed is not None:
            sources[id(unnamed)] = (self._latents(d, unnamed, key=("unnamed", m)), self._contexts(unnamed.captions),
                                    self._contexts(unnamed.partial))

        def unet_batches(step):
            parts = self._mixed_indices(m, step, bs, unet_share)
            lat, full, part = (torch.cat([sources[id(q)][j][idx] for q, idx in parts]) for j in range(3))
            g = torch.Generator().manual_seed(step)
            use_partial = (torch.rand(bs, generator=g) < r.p_partial)[:, None, None]
            ctx = torch.where(use_partial.to(part.device), part, full)
            if noise:
                ctx = nn.functional.normalize(ctx + noise * torch.randn(ctx.shape, generator=g).to(ctx), dim=-1)
            return {"latents": lat.to(dev), "contexts": ctx.to(dev)}

        if not self._skip(name_unet):
            self._seed(name_unet)
            objective = DiffusionLoss(
                d, uncond, r.p_uncond, r.unet_high_noise_weight.get(m, 1.0), r.unet_high_noise_share.get(m, 0.0)
            )
            result = self._fit(name_unet, objective, unet_batches, r.steps(r.unet_steps, m, 1000), r.unet_lr)
            self._save(d, self.out / m)
            self._mark(name_unet, *result)
        if refine_steps and not self._skip(name_refine):
            # the plain ε-loss after a high-noise-weighted one: the weighting leaves the low-noise
            # steps, where edges and corners are drawn, under-trained (see the recipe's field)
            self._seed(name_refine)
            result = self._fit(name_refine, DiffusionLoss(d, uncond, r.p_uncond), unet_batches, refine_steps,
                               r.unet_refine_lr, r.unet_refine_lr_schedule)
            self._save(d, self.out / m)
            self._mark(name_refine, *result)

    def _has_decoder_parts(self, m: str) -> bool:
        """Whether ``m``'s diffuser, as the recipe builds it, has decoder-side parts to train."""
        key = ("has_decoder_parts", m)
        if key not in self._memo:
            with torch.random.fork_rng():  # building draws random numbers: keep the sub-stages' streams
                self._memo[key] = bool(self.new_diffuser(m).decoder_parts())
        return self._memo[key]

    def _train_decoder(self, d: Diffuser, m: str, p: Pairs, latents: torch.Tensor, steps: int) -> None:
        """Sub-stage ``2-decoder-<m>``: the diffuser's decoder-side parts (audio: the mel inverter),
        VAE frozen, on what the VAE reconstructs from the training latents."""
        r, dev, name = self.recipe, self.accelerator.device, f"2-decoder-{m}"
        self._seed(name)
        if not d.decoder_parts():  # a folder written before this sub-stage existed: start new parts
            with torch.random.fork_rng():
                fresh = self.new_diffuser(m)
            for attr, part in fresh.decoder_parts().items():
                setattr(d, attr, part.to(dev, torch.float32))
        parts = d.decoder_parts()
        if not parts:
            raise ValueError(f"the recipe's decoder_steps gives {m} {steps} steps, but the {m} diffuser has no decoder "
                             f"parts to train (Diffuser.decoder_parts() is empty); set decoder_steps[{m!r}] to 0")
        if p.samples is None:
            raise ValueError(f"{m}'s decoder parts need its samples, but its pairs carry captions only")
        d.eval()

        def decoder_features(z: torch.Tensor) -> torch.Tensor:
            return torch.cat([d.decoder_features(z[i : i + 64].to(dev)) for i in range(0, len(z), 64)])

        features = {id(p): decoder_features(latents)}
        vae_share = self._unnamed_share(m, "vae")
        unnamed = self.unnamed_pairs(m) if vae_share else None
        if unnamed is not None:
            # the VAE is final here: the denoiser sub-stages reuse these latents (same key)
            features[id(unnamed)] = decoder_features(self._latents(d, unnamed, key=("unnamed", m)))
        d.requires_grad_(False)
        for part in parts.values():
            part.requires_grad_(True).train()
        bs = r.decoder_batch.get(m, 16)

        def batches(step):
            parts = self._mixed_indices(m, step, bs, vae_share)
            return {"batch": torch.cat([q.samples[idx] for q, idx in parts]).to(dev),
                    "features": torch.cat([features[id(q)][idx] for q, idx in parts])}

        result = self._fit(name, DecoderLoss(d), batches, steps, r.decoder_lr, "cosine")
        d.requires_grad_(False).eval()
        self._save(d, self.out / m)
        self._mark(name, *result)

    # -- stage 3 ------------------------------------------------------------------------------------
    def train_joint(self) -> None:
        """Joint generation: for each (text, m) pair, train both environment encoders and joint
        attention layers with the denoisers frozen. Non-text modalities never meet each other."""
        r = self.recipe
        dev = self.accelerator.device
        for m in self.modalities:
            name = f"3-joint-{m}"
            if m == BRIDGE or self._skip(name):
                continue
            # both denoisers, and the earlier joint stages (they train the text stream's joint layers)
            self._await([n for o in (BRIDGE, m) for n in self._stage2_names(o)]
                        + [f"3-joint-{o}" for o in self.modalities[: self.modalities.index(m)] if o != BRIDGE])
            self._seed(name)
            text_d, d = self.diffuser(BRIDGE), self.diffuser(m)
            p = self.pairs(m)
            text_lat = self._latents(text_d, Pairs(BRIDGE, p.captions, p.keys, p.partial, p.partial_keys, None))
            lat = self._latents(d, p, key=(m,))
            partial = self._contexts(p.partial)
            full = self._contexts(p.captions)[:, 0]
            uncond = self._contexts([""])[:1]
            bs = r.joint_batch.get(m, 32)
            text_d.train(), d.train()

            def batches(step):
                idx = self._rank_indices(len(p), bs, step)
                g = torch.Generator().manual_seed(step)
                drop = (torch.rand(bs, generator=g) < 0.5)[:, None, None]
                ctx = torch.where(drop.to(partial.device), uncond.expand(bs, -1, -1), partial[idx])
                return {"text_latents": text_lat[idx].to(dev), "other_latents": lat[idx].to(dev),
                        "contexts": ctx.to(dev), "keys": [p.keys[i] for i in idx], "targets": full[idx].to(dev)}

            train_text = BRIDGE not in self.frozen
            result = self._fit(name, JointLoss(text_d, d, train_text=train_text, pull=r.joint_pull, same_t=r.joint_same_t), batches, r.steps(r.joint_steps, m, 300), r.joint_lr)
            self._save(d, self.out / m)
            if train_text:
                self._save(text_d, self.out / BRIDGE)
            self._mark(name, *result)

    # -- everything -----------------------------------------------------------------------------------
    def run(self, stages: Iterable[int] = (1, 2, 3)) -> dict:
        stages = set(stages)
        if 1 in stages:
            self.train_alignment()
        if 2 in stages:
            for m in self.modalities:
                self.train_diffusion(m)
        if 3 in stages:
            self.train_joint()
        return self.state

    def plan_lanes(self, stages: Iterable[int]) -> list[set[str]]:
        """The two lanes of :meth:`run_parallel`: ``[side, main]`` sets of sub-stage names.

        *side*: stage 2 of the recipe's ``side_lane`` modalities (ToyWorld: image, then video, which
        starts from the trained image denoiser: the longest chain), then the joint stages from the
        side lane's last modality on. *main*: the bridge, the alignments, stage 2 of every other
        modality, and the joint stages of the modalities before the side lane's last one. A
        sub-stage that needs another lane's waits for it: the side lane's first VAE trains while
        the main lane trains the bridge, and a joint stage waits for its denoisers and the joint
        stages before it."""
        stages = set(stages)
        side = [m for m in self.modalities if m in self.recipe.side_lane and m != BRIDGE and m not in self.frozen]
        if not side or 2 not in stages:
            return []
        r = self.recipe
        stage2 = lambda m: {f"2-vae-{m}", *self._stage2_names(m)} | ({f"2-decoder-{m}"} if r.steps(r.decoder_steps, m, 0) and self._has_decoder_parts(m) else set())  # noqa: E731
        lane_side = set().union(*(stage2(m) for m in side))
        main: set[str] = set()
        if 1 in stages:
            main |= {f"1-align-{m}" for m in self.modalities if m != BRIDGE}
            if BRIDGE not in self.frozen:
                main.add(self._bridge_stage())
        main |= set().union(*(stage2(m) for m in self.modalities if m not in side))
        if 3 in stages:
            last = self.modalities.index(side[-1])
            main |= {f"3-joint-{m}" for m in self.modalities[:last] if m != BRIDGE}
            lane_side |= {f"3-joint-{m}" for m in self.modalities[last:] if m != BRIDGE}
        return [lane_side, main]

    def run_parallel(self, stages: Iterable[int] = (1, 2, 3), jobs: int = 2) -> dict:
        """:meth:`run` with the sub-stages split over ``jobs`` (1 or 2) processes on this machine.

        Tiny models use two CPU cores poorly from one process (the ToyWorld video denoiser trains
        1.4x faster on two threads than on one), so two processes of one thread each do more work
        per second; when one lane finishes, the other takes its threads. Every sub-stage seeds
        itself and depends only on the sub-stages it reads, so the run trains the same recipe as
        :meth:`run`; floating-point results may differ in the last bits (other thread counts).
        Not for multi-process ``accelerate launch`` runs, nor for a custom ``registry``.
        """
        import multiprocessing as mp

        stages = sorted(set(stages))
        if jobs not in (1, 2):
            raise ValueError(f"jobs must be 1 or 2, got {jobs}")
        if jobs > 1 and self.accelerator.num_processes > 1:
            raise ValueError("--jobs 2 runs its own processes: do not combine it with accelerate launch")
        if jobs == 1:
            return self.run(stages)
        if self.registry is not get_registry():
            raise ValueError("run_parallel trains the installed plugins only (its processes build the default registry)")
        lanes = self.plan_lanes(stages)
        if lanes:
            threads = torch.get_num_threads()
            marks = self.out / "lanes"
            marks.mkdir(exist_ok=True)
            for f in marks.glob("*.done"):
                f.unlink()
            ctx = mp.get_context("spawn")
            procs = [
                ctx.Process(target=_run_lane, name=f"codi-train-lane-{k}", args=(
                    str(self.out), self.recipe.model_dump(), self.modalities, sorted(lane), k, len(lanes),
                    max(1, threads // len(lanes)), threads, stages, sorted(self.frozen), self.progress))
                for k, lane in enumerate(lanes)
            ]
            for p in procs:
                p.start()
            for p in procs:
                p.join()
            failed = [p.name for p in procs if p.exitcode != 0]
            if failed:
                raise RuntimeError(f"training lane(s) {failed} failed (see their output above); rerun the same command to resume")
            self._read_others()
            self._forget()
        return self.run(stages)  # whatever the lanes left (nothing, unless a lane's plan changes)


def _run_lane(out: str, recipe: dict, modalities: list[str], allowed: list[str], lane: int, lanes: int,
              threads: int, all_threads: int, stages: list[int], frozen: list[str], progress: bool) -> None:
    """One lane of :meth:`ToyWorldTrainer.run_parallel` (a spawned process)."""
    import threading

    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True, name="codi-lane-watch").start()
    torch.set_num_threads(threads)
    trainer = ToyWorldTrainer(out, ToyWorldRecipe(**recipe), modalities=modalities, allowed=allowed, lane=lane,
                              progress=progress)
    trainer.frozen = set(frozen)
    marks = Path(out) / "lanes"
    trainer._peers = [marks / f"{k}.done" for k in range(lanes) if k != lane]
    trainer._all_threads = all_threads
    trainer._bridge_elsewhere = 1 in stages and BRIDGE not in trainer.frozen and trainer._bridge_stage() not in trainer.allowed
    try:
        trainer.run(stages)
    finally:
        (marks / f"{lane}.done").write_text("")  # the other lanes may now take this lane's threads


def _exit_with_parent(parent: int, poll: float = 1.0) -> None:
    """End this lane once the process that started it is gone (killed, say), instead of training
    on as an orphan, writing into the run folder beside a restarted run (Ctrl+C stops every lane
    itself; a ``kill`` of the main process reaches only that process)."""
    while os.getppid() == parent:
        time.sleep(poll)
    logger.warning("the training process %d has ended: stopping this lane", parent)
    os._exit(1)

"""`make bench`: speed and memory ratios of compose, each measured within this one run.

Prints a table of ratios; nothing here asserts a time. Uses the shipped ToyWorld weights when the
plugins have them, else untrained ToyWorld-size components (timings only; accuracy needs weights).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import torch

torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "1")))

from codi_sdk.composer import Composer  # noqa: E402
from codi_sdk.registry import get_registry  # noqa: E402

STEPS = int(os.environ.get("BENCH_STEPS", "25"))
REPEAT = int(os.environ.get("BENCH_REPEAT", "3"))


def best(fn, repeat: int = REPEAT) -> float:
    """The best of ``repeat`` wall-clock timings (seconds) — the least noisy estimate."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def make_composer() -> tuple[Composer, bool]:
    reg = get_registry()
    c = Composer(reg)
    trained = all(reg.get(m).default_weights() is not None for m in ("text", "image", "audio", "video"))
    if not trained:
        torch.manual_seed(0)
        for m in reg.names():
            mod = reg.get(m)
            c.set_components(m, encoder=mod.init_encoder(), diffuser=mod.init_diffuser())
    return c, trained


@torch.no_grad()
def plain_diffusers_text_to_image(c: Composer, prompt: str, steps: int, guidance: float, seed: int):
    """The same work as compose(text -> image), written as a bare diffusers loop."""
    from diffusers import DDIMScheduler

    d = c.diffuser("image")
    enc = c.encoder("text")
    cond = enc([prompt]).tokens
    uncond = enc([""]).tokens
    ctx = torch.cat([uncond, cond])
    sch = DDIMScheduler.from_config(d.scheduler_config)
    sch.set_timesteps(steps)
    z = torch.randn((1, *d.latent_shape), generator=torch.Generator().manual_seed(seed))
    for t in sch.timesteps:
        eps = d.unet(torch.cat([z, z]), t, encoder_hidden_states=ctx).sample
        e_u, e_c = eps.chunk(2)
        z = sch.step(e_u + guidance * (e_c - e_u), t, z).prev_sample
    return d.vae.decode(z / d.vae.config.scaling_factor).sample


def startup(cmd: list[str]) -> float:
    return best(lambda: subprocess.run(cmd, check=True, capture_output=True))


def peak_rss_four_outputs() -> float:
    code = (
        "import resource, sys; sys.path.insert(0, 'benchmarks'); import run;"
        "c, _ = run.make_composer();"
        "c({'text': 'a red circle moving left'}, ['image', 'video', 'audio', 'text'], steps=5, seed=0, progress=False);"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return int(out.stdout.strip().splitlines()[-1]) / 1024


def main() -> None:
    c, trained = make_composer()
    rows: list[tuple[str, str]] = []
    kw = dict(steps=STEPS, guidance=4.0, seed=0, progress=False)
    prompt = "a red circle moving left"
    c({"text": prompt}, ["image"], **kw)  # warm-up: lazy loading is not what we time

    t_sdk = best(lambda: c({"text": prompt}, ["image"], **kw))
    t_plain = best(lambda: plain_diffusers_text_to_image(c, prompt, STEPS, 4.0, 0))
    rows.append(("SDK overhead: compose text->image / plain diffusers loop (target <= 1.05)", f"{t_sdk / t_plain:.3f}  ({t_sdk:.3f}s vs {t_plain:.3f}s)"))

    for outs in (["image", "audio"], ["image", "audio", "video"]):
        t_joint = best(lambda: c({"text": prompt}, outs, **kw))
        t_sum = sum(best(lambda m=m: c({"text": prompt}, [m], **kw)) for m in outs)
        rows.append((f"joint {'+'.join(outs)} / sum of single runs (target <= 1.15)", f"{t_joint / t_sum:.3f}  ({t_joint:.3f}s vs {t_sum:.3f}s)"))
        # the default (guided environment with a scale of its own) runs ε(∅) and ε(c) as one call
        # of 2B and ε(c, env) as one of B; environment_guidance=None (session 5's wiring) runs
        # ε(∅) and ε(c, env) as two calls of B; the unguided one keeps a single call of 2B
        t_same = best(lambda: c({"text": prompt}, outs, environment_guidance=None, **kw))
        rows.append((f"joint {'+'.join(outs)}, environment_guidance=None / sum of single runs", f"{t_same / t_sum:.3f}  ({t_same:.3f}s)"))
        t_unguided = best(lambda: c({"text": prompt}, outs, guide_environment=False, **kw))
        rows.append((f"joint {'+'.join(outs)}, guide_environment=False / sum of single runs", f"{t_unguided / t_sum:.3f}  ({t_unguided:.3f}s)"))

    from codi_sdk.toyworld.render import render_audio
    from codi_sdk.toyworld.scenes import Scene, item_rng

    audio = render_audio(Scene("blue", "square", "up"), item_rng("seen", 0, "audio"))
    t_direct = best(lambda: c({"audio": (audio, 16000)}, ["image"], **kw))
    t_cascade = best(lambda: c({"text": c({"audio": (audio, 16000)}, ["text"], **kw)["text"][0].text or "a"}, ["image"], **kw))
    rows.append(("direct audio->image / cascade audio->text->image (time)", f"{t_direct / t_cascade:.3f}  ({t_direct:.3f}s vs {t_cascade:.3f}s)"))
    if trained:
        from codi_sdk.eval.compose_generators import CascadeGenerator, ComposeGenerator
        from codi_sdk.eval.harness import evaluate_task
        from codi_sdk.eval.tasks import parse_tasks

        task = parse_tasks("audio->image")[0]
        acc_d = evaluate_task(ComposeGenerator(c), task, split="seen", n=36)["accuracy"]
        acc_c = evaluate_task(CascadeGenerator(c), task, split="seen", n=36)["accuracy"]
        rows.append(("attribute accuracy audio->image: direct vs cascade", f"{acc_d:.3f} vs {acc_c:.3f}"))

    base = best(lambda: c({"text": prompt}, ["image"], **{**kw, "steps": 10}))
    for steps in (20, 40):
        rows.append((f"steps {steps} / steps 10", f"{best(lambda: c({'text': prompt}, ['image'], **{**kw, 'steps': steps})) / base:.2f}"))
    one = best(lambda: c({"text": prompt}, ["image"], **kw))
    rows.append(("3 inputs / 1 input", f"{best(lambda: c([('text', prompt), ('text', 'a red thing'), ('audio', (audio, 16000))], ['image'], **kw)) / one:.2f}"))
    rows.append(("4 outputs / 1 output", f"{best(lambda: c({'text': prompt}, ['image', 'video', 'audio', 'text'], **kw)) / one:.2f}"))
    for n in (4, 16):
        rows.append((f"num_samples {n} / 1", f"{best(lambda: c({'text': prompt}, ['image'], num_samples=n, **kw)) / one:.2f}"))
    rows.append(("peak RSS of a four-output compose (MiB)", f"{peak_rss_four_outputs():.0f}"))
    codi = str(Path(sys.executable).with_name("codi"))
    rows.append(("start-up: `codi --help` (s)", f"{startup([codi, '--help']):.3f}"))
    rows.append(("start-up: `import codi_sdk` (s)", f"{startup([sys.executable, '-c', 'import codi_sdk']):.3f}"))

    width = max(len(k) for k, _ in rows)
    print(f"codi-sdk benchmarks ({'shipped weights' if trained else 'untrained components'}, {STEPS} steps, best of {REPEAT}, {torch.get_num_threads()} thread(s))")
    for k, v in rows:
        print(f"{k:<{width}}  {v}")


if __name__ == "__main__":
    main()

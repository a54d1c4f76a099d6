"""Training of the three CoDi stages, generic over the installed modality plugins.

* Stage 1 — bridging alignment of the prompt encoders (:func:`stages.train_alignment`).
* Stage 2 — one latent diffusion model per modality: VAE, then denoiser (:func:`stages.train_diffusion`).
* Stage 3 — joint generation: environment encoders + joint attention (:func:`stages.train_joint`).

`codi train toyworld --stage all --out DIR` runs the ToyWorld recipe (:mod:`.recipe`).
"""

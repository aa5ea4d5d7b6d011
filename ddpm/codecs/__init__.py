"""Codecs: model-space samples -> a domain's objects, files and TensorBoard entries.

One codec per domain (``conf/codec``): ``images`` (digits, MNIST), ``latents`` (Mittal-format latent
sequences), ``melodies`` (latents decoded by the run's MusicVAE). Every codec has

    fit(datamodule)             take what it needs from the data (shape, latent statistics)
    sample_shape, bounded       what the denoiser and the diffusion are built for
    clip_value                  where x_0 estimates are clipped when they are (images: 1; latents: the train box)
    decode(x, seed) -> array    model space -> the domain (images in [0, 1], latents, melody events)
    write(x, out_dir, name, seed, latents) -> {kind: path}
    log(x, writer, step)        TensorBoard
    state_dict / load_state_dict   what a checkpoint keeps, so sampling needs no data

The sampling callback and ``sample.py`` write through the same codec, so they write the same files.
"""

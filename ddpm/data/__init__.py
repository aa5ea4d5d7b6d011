"""LightningDataModules, picked with ``data=...``: ``digits``, ``mnist`` (images), and ``mvae`` /
``melody`` (latent TFRecords: Mittal's, or the folder the melody chain's prepare stage writes).

A DataModule only feeds tensors: it offers ``sample_shape`` and, for latents, the fitted ``space``
(``ddpm.latent_space``); turning samples back into images, latents or music is the codec's
(``ddpm.codecs``).
"""

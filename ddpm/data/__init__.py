"""LightningDataModules, picked with ``data=...``: ``digits``, ``mnist`` (images), ``mvae`` (Mittal-format
latent TFRecords) and ``melody`` (the folk-corpus chain that writes such TFRecords itself).

Every module offers the same small surface to the rest of the package: ``sample_shape``, ``bounded``
(whether the model space is [-1, 1], so the diffusion may clip), ``decode`` (model space -> the data's
own space, as numpy), ``write_samples`` and ``log_samples`` (used by the sampling callback and
``sample.py``).
"""

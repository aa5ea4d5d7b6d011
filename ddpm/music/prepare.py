"""The prepare stage of the melody chain: corpus -> MusicVAE -> latent folder (the ``prepare`` group).

``MelodyLatents.run()`` writes, in ``out_dir``::

    train-*.tfrecord, eval-*.tfrecord   latent sequences [frames, z_dim], Mittal's format
    active_dims.pkl                      the dims whose mean KL exceeds ``kl_threshold``
    eval_events.npz                      the eval sequences as corpus events (the evaluation's ground truth)
    manifest.json                        inputs, counts, active dims, the MusicVAE's fit, stage times

and reuses the folder when its manifest's inputs equal the stage's, so the chain pays for each
stage once; a folder made from other inputs is rebuilt. ``train.py`` runs the stage first;
``python prepare.py`` runs it alone.
"""

import hashlib
import json
import logging
import pickle
import time
from pathlib import Path

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from ddpm.errors import ConfigError
from ddpm.io.atomic import atomic_path, atomic_write_text
from ddpm.io.tfrecords import write_latents
from ddpm.music.corpus import Corpus
from ddpm.music.events import WINDOW_STEPS
from ddpm.music.musicvae import kl_per_dim
from ddpm.music.tunes import Tune
from ddpm.music.vae_io import encode_windows, reconstruction
from ddpm.music.vae_training import MusicVAETraining

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
EVAL_EVENTS = "eval_events.npz"
ACTIVE_DIMS = "active_dims.pkl"
CHECK_WINDOWS = 2048  # held-out windows the MusicVAE's fit is measured on (~2 s on a CPU)
SHIPPED_FIT, POOR_FIT = 0.906, 0.8  # token accuracy of checkpoints/musicvae.pt on held-out folk tunes; a warning below


def windows(tunes: list[Tune]) -> np.ndarray:
    """All 2-bar windows of the tunes: ``[N, 32]`` int64."""
    if not tunes:
        return np.zeros((0, WINDOW_STEPS), np.int64)
    return np.concatenate([t.events.reshape(-1, WINDOW_STEPS) for t in tunes]).astype(np.int64)


def active_dims(mu: np.ndarray, sigma: np.ndarray, threshold: float = 0.1) -> list[int]:
    """Latent dimensions whose mean KL to the prior exceeds ``threshold`` nats, by decreasing KL."""
    kl = kl_per_dim(torch.from_numpy(mu), torch.from_numpy(sigma)).mean(0).numpy()
    order = np.argsort(-kl)
    return [int(d) for d in order if kl[d] > threshold]


def musicvae_fit(model, events: np.ndarray, dims: list[int], most: int = CHECK_WINDOWS) -> dict:
    """How well the MusicVAE gives back the held-out windows (at most ``most``, evenly spaced), logged
    and kept in the manifest: a corpus the MusicVAE was not trained on shows here first."""
    if len(events) == 0:
        return {}
    events = events[np.linspace(0, len(events) - 1, min(most, len(events))).round().astype(int)]
    tokens, exact = reconstruction(model, events)
    active, _ = reconstruction(model, events, dims)
    log.info(
        "musicvae: %d held-out windows decoded greedily from mu: %.3f of events right, %.3f of windows exact; "
        "from the %d active dims (the rest N(0, 1), as samples are decoded): %.3f",
        len(events), tokens, exact, len(dims), active,
    )  # fmt: skip
    if tokens < POOR_FIT:
        log.warning(
            "musicvae: it gives back only %.3f of these tunes' events (the shipped checkpoints/musicvae.pt: %.3f on "
            "held-out folk tunes); train one on them: python train_musicvae.py with the same prepare.* overrides",
            tokens, SHIPPED_FIT,
        )  # fmt: skip
    return {
        "windows": len(events),
        "tokens": round(tokens, 4),
        "exact": round(exact, 4),
        "tokens_active": round(active, 4),
    }


def tune_sequences(latents: np.ndarray, frames: int) -> np.ndarray:
    """One tune's window latents ``[W, D]`` -> sequences ``[S, frames, D]``.

    A tune of at least ``frames`` windows gives consecutive non-overlapping sequences, the last one
    aligned to the tune's end so no bar is lost; a shorter tune is played again from its start
    until ``frames`` windows are filled, as folk tunes are repeated in performance.
    """
    w = len(latents)
    if w < frames:
        return np.resize(latents, (frames, latents.shape[1]))[None]
    starts = list(range(0, w - frames + 1, frames))
    if starts[-1] + frames < w:
        starts.append(w - frames)
    return np.stack([latents[s : s + frames] for s in starts])


def train_events(run_config: dict, frames: int, meters: list[str] | None = None) -> np.ndarray:
    """A run's train-split sequences as corpus events ``[N, frames * 32]``, cut as the prepare stage cuts
    them (``tune_sequences``; the corpus is read from its cache, extracted first when missing); with
    ``meters``, those of tunes in these meters only (none: ``[0, frames * 32]``)."""
    corpus = instantiate(OmegaConf.create(run_config["prepare"]["corpus"]))
    tunes = [t for t in corpus.split()[0] if meters is None or t.meter in meters]
    if not tunes:
        return np.zeros((0, frames * WINDOW_STEPS), np.int64)
    sequences = [tune_sequences(t.events.reshape(-1, WINDOW_STEPS), frames) for t in tunes]
    return np.concatenate([s.reshape(len(s), frames * WINDOW_STEPS) for s in sequences]).astype(np.int64)


def write_eval_events(path: Path, tunes: list[Tune], frames: int) -> Path:
    """The eval sequences as events ``[S, frames * 32]`` (int8), in the order of the eval TFRecords, with
    each sequence's tune title and meter."""
    sequences, titles, meters = [], [], []
    for tune in tunes:
        seqs = tune_sequences(tune.events.reshape(-1, WINDOW_STEPS), frames)  # [s, frames, 32]
        sequences.append(seqs.reshape(len(seqs), frames * WINDOW_STEPS))
        titles += [tune.title] * len(seqs)
        meters += [tune.meter] * len(seqs)
    events = np.concatenate(sequences).astype(np.int8)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, events=events, titles=np.array(titles), meters=np.array(meters))
    return path


def read_eval_events(folder: str | Path, with_meters: bool = False):
    """A latent folder's eval sequences as corpus events ``[N, frames * 32]`` and their titles (and,
    ``with_meters``, their tunes' meters, "?" for folders made before meters were kept).

    Row i is the melody whose MusicVAE means are eval record i.
    """
    path = Path(folder) / EVAL_EVENTS
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run the prepare stage (python prepare.py) to make it")
    with np.load(path) as data:
        events, titles = data["events"].astype(np.int64), [str(t) for t in data["titles"]]
        meters = [str(m) for m in data["meters"]] if "meters" in data else ["?"] * len(titles)
    return (events, titles, meters) if with_meters else (events, titles)


def read_manifest(path: Path) -> dict:
    """A latent folder's manifest; one that is not a JSON object reads as empty (the folder is rebuilt)."""
    try:
        manifest = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return manifest if isinstance(manifest, dict) else {}


class MelodyLatents:
    """The prepare stage. Args:
    corpus: the tunes and their split (``ddpm.music.corpus.Corpus``).
    musicvae: the MusicVAE, loaded or trained (``ddpm.music.vae_training.MusicVAETraining``).
    out_dir: the latent folder. frames: 2-bar windows per sequence (16 = 32 bars).
    kl_threshold: a dimension is active when its mean KL exceeds this (nats). shards: files per split.
    """

    def __init__(
        self,
        corpus: Corpus,
        musicvae: MusicVAETraining,
        out_dir: str = "data/melody_latents",
        frames: int = 16,
        kl_threshold: float = 0.1,
        shards: int = 4,
    ):
        self.corpus, self.musicvae = corpus, musicvae
        if not isinstance(out_dir, str) or not out_dir or (Path(out_dir).exists() and not Path(out_dir).is_dir()):
            raise ConfigError(
                f"prepare.out_dir={out_dir}: expected a folder for the latents (a new one, or one made before)"
            )
        self.out_dir = Path(out_dir)
        self.frames, self.kl_threshold, self.shards = int(frames), float(kl_threshold), int(shards)

    def inputs(self) -> dict:
        """What the folder depends on: a folder made from other inputs is rebuilt, not reused.

        The MusicVAE counts by its file's content (``None`` while it is not trained yet), so a
        retrained MusicVAE at the same path makes the folder stale too.
        """
        path = self.musicvae.path
        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16] if path.is_file() else None
        spec = {"musicvae": str(path), "musicvae_sha256": digest, "frames": self.frames, "shards": self.shards}
        return {**self.corpus.spec(), **spec, "kl_threshold": self.kl_threshold}

    def manifest(self) -> dict | None:
        """The folder's manifest when it is complete and made from this stage's inputs, else ``None``."""
        path = self.out_dir / MANIFEST
        if not path.is_file() or not (self.out_dir / EVAL_EVENTS).is_file():
            return None
        manifest = read_manifest(path)
        return manifest if manifest.get("inputs") == self.inputs() else None

    def run(self) -> dict:
        """Make (or reuse) the latent folder; returns its manifest."""
        manifest = self.manifest()
        if manifest is not None:
            log.info("latent folder %s is up to date (%s)", self.out_dir, MANIFEST)
            return manifest
        seconds = {}
        start = time.perf_counter()
        train_tunes, eval_tunes, corpus_report = self.corpus.split()
        seconds["corpus"] = time.perf_counter() - start
        log.info("corpus: %d tunes (%d train, %d eval)", corpus_report["tunes"], len(train_tunes), len(eval_tunes))
        start = time.perf_counter()
        model = self.musicvae.load_or_train(windows(train_tunes), windows(eval_tunes), self.out_dir)
        seconds["musicvae"] = time.perf_counter() - start
        self._remove_stale()  # only once the corpus and the MusicVAE are there: a bad input leaves the old folder
        start = time.perf_counter()
        counts, dims = {}, None
        for split, tunes in (("train", train_tunes), ("eval", eval_tunes)):
            mu, sigma = encode_windows(model, windows(tunes), what=f"encoding {split}")
            if split == "train":
                dims = active_dims(mu, sigma, self.kl_threshold)
                with atomic_path(self.out_dir / ACTIVE_DIMS) as tmp, open(tmp, "wb") as f:
                    pickle.dump(dims, f)
            bounds = np.cumsum([t.num_windows for t in tunes])[:-1]
            sequences = np.concatenate([tune_sequences(m, self.frames) for m in np.split(mu, bounds)])
            for i, shard in enumerate(np.array_split(sequences, self.shards)):
                write_latents(self.out_dir / f"{split}-{i:05d}-of-{self.shards:05d}.tfrecord", shard)
            counts[split] = {"tunes": len(tunes), "windows": int(len(mu)), "sequences": int(len(sequences))}
            log.info("latents: %s, %d sequences of %d frames", split, len(sequences), self.frames)
        write_eval_events(self.out_dir / EVAL_EVENTS, eval_tunes, self.frames)
        seconds["latents"] = time.perf_counter() - start
        manifest = {
            "inputs": self.inputs(),
            "input_shape": [self.frames, int(model.z_dim)],
            "active_dims": len(dims),
            "musicvae_fit": musicvae_fit(model, windows(eval_tunes), dims),
            "corpus": corpus_report,
            "splits": counts,
            "seconds": {k: round(v, 1) for k, v in seconds.items()},
        }
        atomic_write_text(self.out_dir / MANIFEST, json.dumps(manifest, indent=2))  # last: marks the folder done
        return manifest

    def fit_musicvae(self, log_dir: str | Path | None = None):
        """Train the MusicVAE on the corpus (whether or not its file exists) and save it; ``train_musicvae.py``."""
        train_tunes, eval_tunes, report = self.corpus.split()
        log.info("corpus: %d tunes (%d train, %d eval)", report["tunes"], len(train_tunes), len(eval_tunes))
        return self.musicvae.train(windows(train_tunes), windows(eval_tunes), log_dir)

    def _remove_stale(self) -> None:
        old = self.out_dir / MANIFEST
        if old.is_file():
            log.warning("%s was made from other inputs (%s); rebuilding it", self.out_dir, read_manifest(old))
        files = [
            old,
            self.out_dir / "report.json",
            self.out_dir / EVAL_EVENTS,
            self.out_dir / ACTIVE_DIMS,
        ]  # report.json: before manifests
        for stale in [*files, *self.out_dir.glob("*.tfrecord")]:
            stale.unlink(missing_ok=True)
        self.out_dir.mkdir(parents=True, exist_ok=True)

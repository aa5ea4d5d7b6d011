"""The melody chain: corpus windows -> MusicVAE -> latent sequences (Mittal TFRecords) -> melodies.

Every stage writes its result to disk and is skipped when the result is already there, so the
main job pays for each stage once. ``report.json`` in the latent folder records counts and the
wall time of each stage.
"""

import json
import logging
import os
import pickle
import time
from pathlib import Path

import lightning as L
import numpy as np
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException
from torch.utils.data import DataLoader

from ddpm.checkpoint_io import CheckpointError, atomic_save, check_targets, read_checkpoint
from ddpm.data.tfrecords import write_latents
from ddpm.errors import MissingFileError
from ddpm.music.corpus import Tune, load_melodies, split_by_title
from ddpm.music.events import WINDOW_STEPS
from ddpm.music.musicvae import MusicVAE, kl_per_dim

log = logging.getLogger(__name__)

EVAL_EVENTS = "eval_events.npz"  # the eval sequences as corpus events: the evaluation's ground truth


def windows(tunes: list[Tune]) -> np.ndarray:
    """All 2-bar windows of the tunes: [N, 32] int64."""
    if not tunes:
        return np.zeros((0, WINDOW_STEPS), np.int64)
    return np.concatenate([t.events.reshape(-1, WINDOW_STEPS) for t in tunes]).astype(np.int64)


def train_musicvae(
    train_windows: np.ndarray,
    eval_windows: np.ndarray,
    vae_cfg: DictConfig,
    out_path: str | Path,
    log_dir: str | Path | None = None,
) -> MusicVAE:
    """Fit a MusicVAE on event windows with the ``musicvae`` config group; save it to ``out_path``."""
    L.seed_everything(vae_cfg.get("seed", 0), workers=True)
    model = instantiate(vae_cfg.model)
    if vae_cfg.get("init"):  # continue from an earlier checkpoint's weights
        model.load_state_dict(load_musicvae(vae_cfg.init).state_dict())
    module = instantiate(vae_cfg.module, model=model)
    train_loader = DataLoader(torch.from_numpy(train_windows), vae_cfg.batch_size, shuffle=True, drop_last=True)
    eval_loader = DataLoader(torch.from_numpy(eval_windows), 512)
    logger = L.pytorch.loggers.TensorBoardLogger(str(log_dir), name="musicvae", version="") if log_dir else False
    trainer = instantiate(vae_cfg.trainer, logger=logger)
    trainer.fit(module, train_loader, eval_loader)
    save_musicvae(model, vae_cfg.model, out_path, {k: float(v) for k, v in trainer.callback_metrics.items()})
    return model.eval()


def save_musicvae(model: MusicVAE, model_cfg: DictConfig, path: str | Path, metrics: dict | None = None) -> Path:
    """Weights + the config that rebuilds them, written atomically."""
    payload = {
        "config": OmegaConf.to_container(model_cfg, resolve=True),
        "state_dict": model.state_dict(),
        "metrics": metrics or {},
    }
    return atomic_save(payload, path)


def load_musicvae(path: str | Path) -> MusicVAE:
    """The MusicVAE saved by ``save_musicvae``; read without running code from the file."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"MusicVAE checkpoint not found: {path} (train one with `python train_musicvae.py`)")
    payload = read_checkpoint(path, "MusicVAE file")
    if not isinstance(payload, dict) or not isinstance(payload.get("config"), dict) or "state_dict" not in payload:
        raise CheckpointError(f"{path} is not a MusicVAE file (expected 'config' and 'state_dict')")
    check_targets(payload["config"], path)
    try:
        model = instantiate(OmegaConf.create(payload["config"]))
        if not isinstance(model, MusicVAE):
            raise TypeError(f"its config builds a {type(model).__name__}")
        model.load_state_dict(payload["state_dict"])
    except (InstantiationException, OmegaConfBaseException, RuntimeError, TypeError, ValueError) as e:
        first = next((line for line in str(e.__cause__ or e).splitlines() if line.strip()), type(e).__name__)
        raise CheckpointError(f"{path} is not a usable MusicVAE file: {first}") from e
    return model.eval()


@torch.no_grad()
def encode_windows(model: MusicVAE, events: np.ndarray, batch_size: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """(mu, sigma) of each window: two [N, z_dim] float32 arrays."""
    device = next(model.parameters()).device  # runs where the model is
    mus, sigmas = [], []
    for start in range(0, len(events), batch_size):
        mu, sigma = model.encode(torch.from_numpy(events[start : start + batch_size]).to(device))
        mus.append(mu.cpu().numpy())
        sigmas.append(sigma.cpu().numpy())
    return np.concatenate(mus), np.concatenate(sigmas)


def active_dims(mu: np.ndarray, sigma: np.ndarray, threshold: float = 0.1) -> list[int]:
    """Latent dimensions whose mean KL to the prior exceeds ``threshold`` nats, by decreasing KL."""
    kl = kl_per_dim(torch.from_numpy(mu), torch.from_numpy(sigma)).mean(0).numpy()
    order = np.argsort(-kl)
    return [int(d) for d in order if kl[d] > threshold]


def tune_sequences(latents: np.ndarray, frames: int) -> np.ndarray:
    """One tune's window latents [W, D] -> sequences [S, frames, D].

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


def write_eval_events(path: Path, tunes: list[Tune], frames: int) -> Path:
    """The eval sequences as events ``[S, frames * 32]`` (int8), in the order of the eval TFRecords."""
    sequences, titles = [], []
    for tune in tunes:
        seqs = tune_sequences(tune.events.reshape(-1, WINDOW_STEPS), frames)  # [s, frames, 32]
        sequences.append(seqs.reshape(len(seqs), frames * WINDOW_STEPS))
        titles += [tune.title] * len(seqs)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, events=np.concatenate(sequences).astype(np.int8), titles=np.array(titles))
    os.replace(tmp, path)
    return path


@torch.no_grad()
def decode_latents(model: MusicVAE, latents: np.ndarray, temperature: float = 0.0, seed: int = 0) -> np.ndarray:
    """Latent sequences [n, frames, z_dim] -> melodies [n, frames * 32] (events)."""
    n, frames, z_dim = latents.shape
    z = torch.from_numpy(np.ascontiguousarray(latents, np.float32)).reshape(n * frames, z_dim)
    z = z.to(next(model.parameters()).device)  # runs where the model is
    events = model.generate(z, temperature, generator=torch.Generator().manual_seed(seed))
    return events.reshape(n, frames * WINDOW_STEPS).cpu().numpy()


def prepare_melody_latents(
    out_dir: str | Path,
    musicvae_path: str | Path,
    corpus: DictConfig,
    vae: DictConfig,
    frames: int = 16,
    shards: int = 4,
    kl_threshold: float = 0.1,
) -> dict:
    """Run (or reuse) every stage; write ``{train,eval}-*.tfrecord``, ``active_dims.pkl``, ``report.json``."""
    out_dir = Path(out_dir)
    report_path = out_dir / "report.json"
    inputs = {  # what the latents depend on: a folder made from other inputs is rebuilt, not reused
        "collections": list(corpus.collections),
        "midi_dir": str(corpus.get("midi_dir")) if corpus.get("midi_dir") else None,
        "meters": corpus.get("meters", "duple"),
        "eval_fraction": float(corpus.eval_fraction),
        "split_seed": int(corpus.get("seed", 0)),
        "musicvae": str(musicvae_path),
        "frames": int(frames),
        "shards": int(shards),
        "kl_threshold": float(kl_threshold),
    }
    if report_path.exists() and (out_dir / EVAL_EVENTS).exists():
        report = json.loads(report_path.read_text())
        if report.get("inputs", inputs) == inputs:  # folders from before this check carry no inputs
            return report
        log.warning("%s was made from other inputs (%s); rebuilding it", out_dir, report.get("inputs"))
        for stale in [report_path, out_dir / EVAL_EVENTS, *out_dir.glob("*.tfrecord")]:
            stale.unlink()
    timings = {}
    start = time.perf_counter()
    tunes, corpus_report = load_melodies(
        corpus.cache_dir,
        list(corpus.collections),
        corpus.get("midi_dir"),
        corpus.get("workers", 2),
        meters=corpus.get("meters", "duple"),
    )
    train_tunes, eval_tunes = split_by_title(tunes, corpus.eval_fraction, corpus.get("seed", 0))
    timings["corpus"] = time.perf_counter() - start
    write_eval_events(out_dir / EVAL_EVENTS, eval_tunes, frames)
    if report_path.exists():  # latents made before the eval events were kept: add only those
        return json.loads(report_path.read_text())
    log.info("corpus: %d tunes (%d train, %d eval)", len(tunes), len(train_tunes), len(eval_tunes))

    start = time.perf_counter()
    if Path(musicvae_path).is_file():
        model = load_musicvae(musicvae_path)
    else:
        log.info("training MusicVAE -> %s", musicvae_path)
        model = train_musicvae(windows(train_tunes), windows(eval_tunes), vae, musicvae_path, out_dir)
    timings["musicvae"] = time.perf_counter() - start

    start = time.perf_counter()
    counts = {}
    for split, split_tunes in (("train", train_tunes), ("eval", eval_tunes)):
        mu, sigma = encode_windows(model, windows(split_tunes))
        if split == "train":
            dims = active_dims(mu, sigma, kl_threshold)
            out_dir.mkdir(parents=True, exist_ok=True)
            with open(out_dir / "active_dims.pkl", "wb") as f:
                pickle.dump(dims, f)
        bounds = np.cumsum([t.num_windows for t in split_tunes])[:-1]
        sequences = np.concatenate([tune_sequences(m, frames) for m in np.split(mu, bounds)])
        for i, shard in enumerate(np.array_split(sequences, shards)):
            write_latents(out_dir / f"{split}-{i:05d}-of-{shards:05d}.tfrecord", shard)
        counts[split] = {"tunes": len(split_tunes), "windows": int(len(mu)), "sequences": int(len(sequences))}
    timings["latents"] = time.perf_counter() - start
    report = {
        "inputs": inputs,
        "corpus": corpus_report,
        "splits": counts,
        "active_dims": len(dims),
        "frames": frames,
        "seconds": {k: round(v, 1) for k, v in timings.items()},
    }
    report_path.write_text(json.dumps(report, indent=2))
    return report

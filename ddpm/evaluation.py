"""``evaluate(cfg)``: Mittal et al.'s Table 1 for a melody checkpoint, generation and infilling.

Every row holds the same number ``n`` of 32-bar sequences and is scored against the ground truth:
``n`` eval sequences as events straight from the corpus. Rows: real vs real (other eval
sequences, several draws), optionally train-split sequences (disjoint sets: what a model that
reproduced its training data would score), MusicVAE reconstruction (full mu; active dims only),
prior, DDPM, optionally the melodies of MIDI folders (another system's samples, scored alike), and for
infilling (middle half regenerated) DDPM, latent interpolation and a prior middle.
"""

import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from ddpm.codecs.melodies import MelodyCodec
from ddpm.config_check import check_values
from ddpm.errors import MissingFileError, UserError
from ddpm.io.atomic import new_folder
from ddpm.module import step_seed
from ddpm.music.events import NoNotesError, pad_with_rest, read_midi, unreadable
from ddpm.music.midi_corpus import midi_files
from ddpm.music.prepare import MANIFEST, read_eval_events, train_events
from ddpm.music.scoring import MelodySet, score_sets, table_markdown, write_table
from ddpm.music.similarity import consistency_variance, piece_overlaps
from ddpm.periods import repeat_frames
from ddpm.progress import Progress
from ddpm.sampling import (
    build_sampler,
    check_loops,
    check_paths,
    draw_loops,
    eval_latents,
    load_checkpoint,
    resolve_device,
    restore,
    set_overrides,
)

log = logging.getLogger(__name__)


def slerp(a: np.ndarray, b: np.ndarray, fraction: float) -> np.ndarray:
    """Spherical interpolation between latent vectors (rows), as MusicVAE interpolates its latents."""
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    cos = (a64 * b64).sum(-1, keepdims=True) / (
        np.linalg.norm(a64, axis=-1, keepdims=True) * np.linalg.norm(b64, axis=-1, keepdims=True)
    )
    omega = np.arccos(np.clip(cos, -1.0, 1.0))
    sin = np.sin(omega)
    linear = (1 - fraction) * a64 + fraction * b64
    with np.errstate(invalid="ignore", divide="ignore"):
        spherical = (np.sin((1 - fraction) * omega) * a64 + np.sin(fraction * omega) * b64) / sin
    return np.where(sin > 1e-6, spherical, linear).astype(np.float32)


def infill_frames(frames: int) -> tuple[int, int]:
    """Mittal's infilling setting: keep the first and last quarter, regenerate frames [frames/4, 3 frames/4)."""
    return frames // 4, frames - frames // 4


def interpolate_middle(latents: np.ndarray, start: int, end: int) -> np.ndarray:
    """Frames [start, end) slerped between frame start - 1 and frame end; the rest kept: [n, frames, D]."""
    out = latents.copy()
    left, right = latents[:, start - 1], latents[:, end]
    for j in range(start, end):
        out[:, j] = slerp(left, right, (j - start + 1) / (end - start + 1))
    return out


def eval_meters(cfg: DictConfig) -> list[str] | None:
    """``eval_meters``: a list of meters (``['3/4','6/8']``) or one (``3/4``); None (or empty): every meter."""
    value = cfg.get("eval_meters")
    if value is None or (isinstance(value, str | Sequence) and len(value) == 0):  # [] or "": every meter
        return None
    meters = [value] if isinstance(value, str) else value
    if not isinstance(meters, Sequence) or not meters or not all(isinstance(m, str) and m for m in meters):
        raise UserError(f"eval_meters={value!r}: expected a meter or a list of them, e.g. \"['3/4','6/8']\"")
    return [str(m) for m in meters]


def _check(cfg: DictConfig) -> None:
    check_paths(cfg, "eval")
    eval_meters(cfg)
    check_loops(cfg)
    for key, default, least, what in (
        ("draws", 1, 1, "DDPM sample sets"),
        ("real_repeats", 10, 1, "real-vs-real draws"),
        ("train_sets", 0, 0, "train-split sets"),
        ("bootstrap", 1000, 1, "bootstrap resamples"),
    ):
        value = cfg.get(key, default)
        if not isinstance(value, int) or isinstance(value, bool) or value < least:
            raise UserError(f"{key}={value}: expected a whole number of {what} >= {least}")
    _repaint_spec(cfg)  # a bad spec fails here, before any sampling
    if int(cfg.n) < 4:
        raise UserError(f"n={cfg.n}: expected at least 4 sequences to score")
    for folder in midi_dirs(cfg):  # before the checkpoint and the data are read
        _midi_folder_files(folder, int(cfg.n))
    check_values({"split_seed": cfg.get("split_seed")})  # as the command line is
    if cfg.get("sigma") not in (None, "posterior", "beta"):
        raise UserError(f"sigma={cfg.sigma!r}: expected posterior (beta tilde) or beta (null: the run's)")
    resolve_device(str(cfg.device))
    name = cfg.get("name")  # eval/<name>, unless out_dir= names the folder itself; "" is the default name
    if (
        name not in (None, "")
        and not cfg.get("out_dir")
        and (str(name) in (".", "..") or any(c in str(name) for c in "/\\"))
    ):
        raise UserError(f"name={name!r}: expected a folder name for eval/<name> (no slashes); out_dir= takes any path")


def other_tunes(candidates: np.ndarray, titles: np.ndarray, ground_truth: np.ndarray) -> np.ndarray:
    """The ``candidates`` (indices of eval sequences) whose tune is not one of the ``ground_truth``'s: a
    long tune is cut into several sequences (the last overlapping the one before), so a set disjoint in
    sequences may still share tunes, and bars, with the ground truth, which no generator can."""
    return candidates[~np.isin(titles[candidates], titles[ground_truth])]


def build_sets(
    cfg: DictConfig,
    module,
    codec,
    events: np.ndarray,
    latents: np.ndarray,
    titles: np.ndarray,
    sampler,
    train: np.ndarray | None = None,
    external: list[MelodySet] = (),
) -> tuple[MelodySet, list[MelodySet], dict]:
    """Ground truth and every other row's melodies (and latents), drawn with ``cfg.seed``.

    ``events`` ``[N, frames * 32]`` are the eval sequences from the corpus and ``latents``
    ``[N, frames, 512]`` their stored MusicVAE means, ``titles`` their tunes;
    ``codec`` is the run's melody codec; ``train``, the train split's sequences as events, makes the
    ``train_sets`` row; ``external`` (``midi_row``) follow the DDPM row.
    """
    n = int(cfg.n)
    order = np.random.default_rng(cfg.split_seed).permutation(len(events))
    if 2 * n > len(order):  # the ground truth and a disjoint real-vs-real set of n each
        raise UserError(
            f"n={n}: the eval split has {len(order)} sequences; expected n <= {len(order) // 2} "
            "(the ground truth and a disjoint real-vs-real set of n each)"
        )
    repaint_spec = _repaint_spec(cfg)  # built before any sampling, so a bad setting costs nothing
    repaint = build_sampler(OmegaConf.create(repaint_spec), module.diffusion) if repaint_spec else None
    gt_idx = order[:n]
    rest = other_tunes(order[n:], titles, gt_idx)  # real vs real: other tunes, not other parts of the same ones
    if len(rest) < n:
        raise UserError(
            f"n={n}: the eval split has {len(rest)} sequences of tunes outside this ground truth; expected "
            f"n <= {len(rest)} (a real-vs-real set of other tunes)"
        )
    gt = MelodySet("ground truth", events[gt_idx], latents[gt_idx], "eval sequences, corpus events")
    sets, timings = [], {}
    rng = np.random.default_rng(cfg.seed)

    # Real vs real: sequences of other eval tunes against the same ground truth, several draws.
    gt_overlaps = piece_overlaps(gt.melodies)
    draws = [rng.choice(rest, n, replace=False) for _ in range(int(cfg.real_repeats))]
    repeats = [consistency_variance(piece_overlaps(events[d]), gt_overlaps) for d in draws]
    sets.append(MelodySet("real vs real", events[draws[0]], latents[draws[0]], f"{len(draws)} draws", repeats))
    if train is not None:
        sets.append(train_row(train, n, int(cfg.train_sets), int(cfg.seed), gt_overlaps))

    full = latents[gt_idx]
    sets.append(MelodySet("MusicVAE recon (full mu)", codec.melodies_from_latents(full), full))
    active = codec.decode(codec.to_model(full), cfg.seed)
    sets.append(MelodySet("MusicVAE recon (active dims)", codec.melodies_from_latents(active), active))
    prior = rng.standard_normal(full.shape).astype(np.float32)
    sets.append(MelodySet("prior N(0, I)", codec.melodies_from_latents(prior), prior))

    generator = torch.Generator().manual_seed(int(cfg.seed))
    start = time.perf_counter()
    loops = _loops(cfg, codec, int(cfg.seed))
    x = _draw(cfg, module, sampler, generator, loops, "DDPM")
    timings["ddpm"] = time.perf_counter() - start
    generated = codec.decode(x, cfg.seed)
    note = _sampler_name(cfg) + (f"; loops ({float((loops[0] > 0).float().mean()):.0%})" if loops else "")
    note += f"; spread {module.spread:.3f}" if module.spread != 1 else ""
    ddpm = MelodySet("DDPM", codec.melodies_from_latents(generated), generated, note)
    n_draws = int(cfg.get("draws", 1))
    if n_draws > 1:  # further sample sets: the row's OA figures become mean ± std over the draws
        ddpm.repeats = [consistency_variance(piece_overlaps(ddpm.melodies), gt_overlaps)]
        for k in range(1, n_draws):
            seed = step_seed(int(cfg.seed), k)  # draw 0 is the single-draw row, bit for bit
            x = _draw(
                cfg,
                module,
                sampler,
                torch.Generator().manual_seed(seed),
                _loops(cfg, codec, seed),
                f"DDPM draw {k + 1}/{n_draws}",
            )
            melodies = codec.melodies_from_latents(codec.decode(x, seed))
            ddpm.repeats.append(consistency_variance(piece_overlaps(melodies), gt_overlaps))
        ddpm.note += f"; {n_draws} draws"
        timings["ddpm_all_draws"] = time.perf_counter() - start
    sets.append(ddpm)
    sets.extend(external)

    if cfg.infill:
        a, b = infill_frames(full.shape[1])
        keep = np.ones(full.shape[1], bool)
        keep[a:b] = False
        known = codec.to_model(full)
        mask = torch.ones_like(known)
        mask[:, a:b] = 0
        infill_loops = _loops(cfg, codec, int(cfg.seed), known, mask)
        index = infill_loops[1] if infill_loops else None
        note = f"; loops ({float((infill_loops[0] > 0).float().mean()):.0%})" if infill_loops else ""
        infillers = [("DDPM infilling", sampler, _sampler_name(cfg) + note)]
        if repaint is not None:
            infillers.append(("DDPM infilling (RePaint)", repaint, json.dumps(repaint_spec) + note))
        for name, infiller, note in infillers:
            start = time.perf_counter()
            x = _draw(cfg, module, infiller, generator, infill_loops, name, known=known, mask=mask)
            timings[name] = time.perf_counter() - start
            filled = codec.decode(x, cfg.seed)
            filled[:, keep] = full[:, keep]  # kept frames: the true originals, all dims
            if index is not None:  # and their copies in the middle too, so a kept loop repeats note for note
                filled = repeat_frames(torch.from_numpy(filled), index).numpy()
            sets.append(MelodySet(name, codec.melodies_from_latents(filled), filled, f"frames {a}-{b - 1}; {note}"))
        interp = interpolate_middle(full, a, b)
        sets.append(
            MelodySet("interpolation (slerp)", codec.melodies_from_latents(interp), interp, f"frames {a}-{b - 1}")
        )
        middle = full.copy()
        middle[:, a:b] = rng.standard_normal(middle[:, a:b].shape)
        sets.append(MelodySet("prior middle", codec.melodies_from_latents(middle), middle, f"frames {a}-{b - 1}"))
    return gt, sets, timings


def midi_dirs(cfg: DictConfig) -> list[str]:
    """``midi_dir``: none, one folder or a list of distinct folders (a name Hydra reads as a number too);
    anything else, an empty list or a folder named twice is a ``UserError``."""
    value = cfg.get("midi_dir")
    if value is None:
        return []
    items = list(value) if OmegaConf.is_list(value) else [value]
    folders = [str(f) for f in items if isinstance(f, str | int) and not isinstance(f, bool) and str(f)]
    if not folders or len(folders) != len(items):
        raise UserError(f"midi_dir={value}: expected a folder of .mid files or a list of them [a,b]")
    if len({Path(f).resolve() for f in folders}) != len(folders):
        raise UserError(f"midi_dir={value}: a folder is named twice (expected each folder once)")
    return folders


def _midi_folder_files(folder: str, n: int) -> list[Path]:
    """The MIDI files under ``folder`` (``midi_files``: subfolders too), at least ``n`` of them."""
    path = Path(folder)
    if not path.is_dir():
        raise MissingFileError(f"midi_dir={folder}: no such folder (expected a folder of .mid files)")
    files = midi_files(path)
    if len(files) < n:
        raise UserError(
            f"midi_dir={folder}: {len(files)} MIDI files; expected at least n={n} (every row scores n melodies)"
        )
    return files


def midi_row(folder: str, n: int, steps: int, seed: int, codec) -> tuple[MelodySet, list[str]]:
    """``n`` MIDI files of ``folder`` as the row ``MIDI <folder>`` (a random ``n`` drawn with ``seed`` where it
    holds more) and their names: each file's melody (``read_midi``'s pick of its tracks) on the file's own
    time line, cut to ``steps`` or ended with rest (never looped nor moved), and its MusicVAE means for the
    latent columns."""
    path = Path(folder)
    files = _midi_folder_files(folder, n)
    chosen = [files[i] for i in sorted(np.random.default_rng([seed, 2]).choice(len(files), n, replace=False))]
    melodies = np.zeros((n, steps), np.int64)
    short = silent = 0
    progress = Progress(f"reading {folder}", n, "files")
    for k, file in enumerate(chosen):
        try:
            events = read_midi(file)[0][:steps]
        except NoNotesError:
            events = np.zeros(0, np.int64)  # a generator's sample may be silent: scored as such
        except Exception as e:  # noqa: BLE001 - pretty_midi/mido raise many kinds on bad files
            raise UserError(
                f"midi_dir={folder}: {file.relative_to(path)}: not a readable MIDI file ({unreadable(e)})"
            ) from e
        progress.step()
        if not (events >= 2).any():
            silent += 1
            continue  # a row of rest
        melodies[k] = pad_with_rest(events, steps)  # a sounding last note ends where the file does
        short += len(events) < steps
    note = f"{n} of {len(files)} files" + (f"; {short} end before bar {steps // 16}: rest after" if short else "")
    note += f"; {silent} without notes in bars 1-{steps // 16}" if silent else ""
    return MelodySet(f"MIDI {folder}", melodies, codec.encode_latents(melodies), note), [
        str(f.relative_to(path)) for f in chosen
    ]


def train_row(train: np.ndarray, n: int, sets: int, seed: int, gt_overlaps: np.ndarray) -> MelodySet:
    """``sets`` disjoint sets of ``n`` train-split sequences scored against the ground truth, as real vs real is.

    Each set is fresh, as each DDPM sample set is (the real-vs-real draws share the few eval sequences
    outside the ground truth), so its spread is the one a perfect model of the training data would show.
    """
    if sets * n > len(train):
        raise UserError(
            f"train_sets={sets}: {sets} disjoint sets of n={n} need {sets * n} train sequences, there are {len(train)}"
        )
    order = np.random.default_rng([seed, 1]).permutation(len(train))  # its own stream: the other rows are unchanged
    draws = [order[k * n : (k + 1) * n] for k in range(sets)]
    repeats = [consistency_variance(piece_overlaps(train[d]), gt_overlaps) for d in draws]
    return MelodySet("train split", train[draws[0]], None, f"{sets} disjoint sets of train sequences", repeats)


def _repaint_spec(cfg: DictConfig) -> dict | None:
    """The RePaint row's sampler: ``cfg.repaint``, with the DDPM infilling row's guidance unless it sets its own,
    so that resampling is the one difference between the two rows."""
    if cfg.get("repaint") is None:
        return None
    if not OmegaConf.is_dict(cfg.repaint) or "_target_" not in cfg.repaint:
        raise UserError(
            f"repaint={cfg.repaint}: expected a sampler, e.g. '{{_target_: ddpm.samplers.AncestralSampler, "
            "resample: 5, jump: 10}'"
        )
    spec = OmegaConf.to_container(cfg.repaint, resolve=True)
    spec.setdefault("guidance", cfg.sampler.get("guidance", 0.0))
    return spec


def _loops(cfg: DictConfig, codec, seed: int, known=None, mask=None):
    """(periods, index) drawn with ``seed`` (``ddpm.sampling.draw_loops``: from the run's period prior, or
    for infilling the loop the kept frames show), or None with ``loops=false``."""
    return draw_loops(codec, int(cfg.n), seed, known, mask) if cfg.get("loops", True) else None


def _draw(cfg: DictConfig, module, sampler, generator, loops, progress: str, **condition) -> torch.Tensor:
    """``cfg.n`` samples in model space, looped as ``loops`` says; infilled given ``known=``, ``mask=``."""
    periods, index = loops if loops else (None, None)
    return module.sample(
        int(cfg.n),
        generator,
        batch_size=cfg.batch_size,
        sampler=sampler,
        progress=progress,
        loops=index,
        periods=periods,
        **condition,
    )


def check_same_musicvae(folder: str, own: str) -> None:
    """Ground truth from another latent folder (``eval_dir``) must come from the run's MusicVAE."""
    if Path(folder).resolve() == Path(own).resolve():
        return
    digests = []
    for path in (Path(folder) / MANIFEST, Path(own) / MANIFEST):
        if not path.is_file():
            raise UserError(f"eval_dir={folder}: {path} not found (a folder made by python prepare.py)")
        digests.append(json.loads(path.read_text())["inputs"].get("musicvae_sha256"))
    if digests[0] != digests[1]:
        raise UserError(f"eval_dir={folder}: made with another MusicVAE ({digests[0]}) than the run's ({digests[1]})")


def _sampler_name(cfg: DictConfig) -> str:
    target = str(cfg.sampler.get("_target_", "")).rsplit(".", 1)[-1]
    options = {k: v for k, v in cfg.sampler.items() if k != "_target_"}
    return f"{target} {options}" if options else target


def evaluate(cfg: DictConfig) -> dict[str, Path]:
    """Sample, decode and score; write ``eval/<name>/table.{md,json}`` and ``overlaps.png``; print the table."""
    _check(cfg)
    ckpt_path = Path(cfg.ckpt)
    ckpt = load_checkpoint(ckpt_path)
    module, codec = restore(ckpt, ckpt_path)
    if not isinstance(codec, MelodyCodec):
        raise UserError(
            f"{ckpt_path}: evaluate.py scores melody runs (data=melody); this run's codec is a {type(codec).__name__}"
        )
    folder = cfg.get("eval_dir") or ckpt["run_config"]["data"]["dir"]
    check_same_musicvae(folder, ckpt["run_config"]["data"]["dir"])
    events, titles, meters = read_eval_events(folder, with_meters=True)
    titles = np.array(titles)
    latents = eval_latents(ckpt["run_config"], folder=folder)  # [N, frames, 512]: the stored means
    if len(events) != len(latents):
        raise UserError(f"{folder}: {len(events)} eval melodies but {len(latents)} eval records; run prepare.py again")
    wanted = eval_meters(cfg)
    if wanted:  # score against the eval sequences of these meters only
        keep = np.isin(meters, wanted)
        if not keep.any():
            raise UserError(f"eval_meters={wanted}: no eval sequences there (meters: {sorted(set(meters))})")
        events, latents, titles = events[keep], latents[keep], titles[keep]
    if cfg.get("sigma"):  # sampling-time choices, for measuring them on one trained model
        module.diffusion.set_sigma(cfg.sigma)
    set_overrides(cfg, module, codec)
    device = resolve_device(str(cfg.device))
    module.to(device)
    codec.to(device)
    sampler = build_sampler(cfg.sampler, module.diffusion)
    start = time.perf_counter()
    train = None
    if cfg.get("train_sets", 0):  # the run's own train split (its corpus; read from the cache)
        train = train_events(ckpt["run_config"], latents.shape[1], wanted)
    external, midi_files_read, midi_start = [], {}, time.perf_counter()
    for midi_folder in midi_dirs(cfg):  # read before any sampling, so a bad file costs no sampling time
        row, names = midi_row(midi_folder, int(cfg.n), events.shape[1], int(cfg.seed), codec)
        external.append(row)
        midi_files_read[midi_folder] = names
    midi_seconds = time.perf_counter() - midi_start
    gt, sets, timings = build_sets(cfg, module, codec, events, latents, titles, sampler, train, external)
    if external:
        timings["midi_dir"] = midi_seconds  # reading and encoding the MIDI files
    rows = score_sets(sets, gt, codec.space.dims, int(cfg.bootstrap), int(cfg.seed))
    name = str(cfg.get("name") or f"{ckpt_path.stem}_seed{cfg.seed}")
    out_dir = Path(cfg.out_dir) if cfg.get("out_dir") else new_folder(ckpt_path.parent / "eval" / name)
    meta = {
        "checkpoint": str(ckpt_path.resolve()),
        "eval_dir": str(folder),
        "eval_meters": wanted,
        "eval_sequences": len(events),
        "epoch": ckpt.get("epoch"),
        "n": int(cfg.n),
        "seed": int(cfg.seed),
        "draws": int(cfg.get("draws", 1)),
        "train_sets": int(cfg.get("train_sets", 0)),
        "midi_dir": midi_files_read,
        "sampler": OmegaConf.to_container(cfg.sampler, resolve=True),
        "sigma": module.diffusion.sigma,
        "temperature": codec.temperature,
        "refill": codec.refill,
        "spread": module.spread,
        "period_guidance": getattr(module.denoiser, "period_guidance", None) if module.period_condition else None,
        "clip_x_start": module.diffusion.clip_value if module.diffusion.clip_x_start else None,  # the bound, or none
        "loops": bool(cfg.get("loops", True)) and codec.periods is not None,
        "time_condition": module.diffusion.time_condition,
        "sampling_seconds": {k: round(v, 2) for k, v in timings.items()},
        "total_seconds": round(time.perf_counter() - start, 1),
        "active_dims": len(codec.space.dims),
    }
    files = write_table(rows, out_dir, meta)
    print(table_markdown(rows))
    return files

"""``sample(cfg)``: rebuild a trained model and its codec from the checkpoint and write samples with a record."""

import json
import logging
import math
import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from ddpm.checkpoint_io import CheckpointError, check_targets, read_checkpoint
from ddpm.config_check import check_values
from ddpm.errors import ConfigError, MissingFileError, UserError
from ddpm.io.atomic import atomic_write_text, new_folder
from ddpm.legacy import upgrade_checkpoint
from ddpm.module import step_seed
from ddpm.periods import infill_loops, kept_sources, loop_index, repeat_frames
from ddpm.samplers import Sampler
from ddpm.training import build_model

log = logging.getLogger(__name__)
__all__ = ["CheckpointError", "eval_latents", "infill_inputs", "load_checkpoint", "restore", "sample"]


def load_checkpoint(path: str | Path) -> dict:
    """Read a training checkpoint without running code from it, and check it carries what ``sample.py`` needs."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path} (expected a .ckpt written by train.py)")
    ckpt = read_checkpoint(path)
    missing = [k for k in ("state_dict", "run_config") if not isinstance(ckpt, dict) or k not in ckpt]
    if missing:
        raise CheckpointError(f"{path} lacks {missing}: it was not written by this project's train.py")
    if not isinstance(ckpt["run_config"], dict) or not isinstance(ckpt["state_dict"], dict):
        raise CheckpointError(f"{path}: run_config and state_dict must be mappings: it was not written by train.py")
    ckpt = upgrade_checkpoint(ckpt)  # a checkpoint from before codecs reads as today's (plain values only)
    check_targets(ckpt["run_config"], path)
    return ckpt


def restore(ckpt: dict, path: str | Path = "<checkpoint>"):
    """(module, codec) rebuilt from a loaded checkpoint: weights and the codec's state (sample shape,
    latent statistics) restored. Nothing of the training data is read."""
    ckpt = upgrade_checkpoint(ckpt)
    check_targets(ckpt["run_config"], path)
    if "codec" not in ckpt or "codec" not in ckpt["run_config"]:
        raise CheckpointError(f"{path} lacks the codec state: it was not written by this project's train.py")
    try:
        run_cfg = OmegaConf.create(ckpt["run_config"])
        codec = instantiate(run_cfg.codec)
        codec.load_state_dict(ckpt["codec"])
        module = build_model(run_cfg, codec)
    except (CheckpointError, MissingFileError):  # a file the checkpoint names: said as it is
        raise
    except (InstantiationException, OmegaConfBaseException, UserError, KeyError, TypeError, ValueError) as e:
        cause = " ".join(str(e.__cause__ or e).split())
        raise CheckpointError(f"{path}: its run_config does not rebuild a model: {cause}") from e
    try:
        module.load_state_dict(ckpt["state_dict"])
    except (RuntimeError, TypeError, AttributeError) as e:
        first = next((line for line in str(e).splitlines() if line.strip()), type(e).__name__)
        raise CheckpointError(f"{path} does not match the model its config describes: {first}") from e
    module.spread = _spread(ckpt.get("spread", 1.0), path)
    return module, codec


def _spread(value, path) -> float:
    """A checkpoint's ``spread`` (``ddpm.calibration``), checked: a positive finite number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < float(value) < float("inf"):
        raise CheckpointError(f"{path}: its spread is {value!r}; expected a positive number (1: none)")
    return float(value)


def set_overrides(cfg: DictConfig, module, codec) -> None:
    """The sampling-time choices that ``sample.py`` and ``evaluate.py`` share: ``refill`` (how dropped
    latent dims are filled), ``spread`` (``ddpm.calibration``; 1: none), ``period_guidance``
    (``ddpm.periods.PeriodGuided``), ``temperature`` (MusicVAE decoding, 0: greedy), ``clip_x_start`` (x_0
    estimates clipped to the run's ``diffusion.clip_value``, by default the codec's) and, for ``sample.py``,
    ``render_n`` (samples rendered to WAV and drawn); null keeps the run's."""
    for key in ("temperature", "render_n"):  # melody runs: MusicVAE decoding, samples rendered
        value = cfg.get(key)
        if value is not None:
            if not hasattr(codec, key):
                raise ConfigError(f"{key}={value}: this run's samples are not melodies ({type(codec).__name__})")
            check_values({key: value})  # the ranges every command line is checked against
            setattr(codec, key, float(value) if key == "temperature" else value)
    if cfg.get("refill"):
        if not hasattr(codec, "set_refill"):
            raise ConfigError(f"refill={cfg.refill}: this run's samples are not latents ({type(codec).__name__})")
        codec.set_refill(cfg.refill)
    spread = cfg.get("spread")
    if spread is not None:
        if isinstance(spread, bool) or not isinstance(spread, (int, float)) or not 0 < spread < float("inf"):
            raise ConfigError(f"spread={spread!r}: expected a positive number (1: samples as drawn)")
        if spread != 1 and len(module.denoiser.sample_shape) != 2:
            raise ConfigError(
                f"spread={spread}: this run's samples are not sequences ({type(codec).__name__}); "
                "spread widens latent sequences"
            )
        module.spread = float(spread)
    clip = cfg.get("clip_x_start")
    if clip is not None:
        if not isinstance(clip, bool):
            raise ConfigError(f"clip_x_start={clip!r}: expected true or false (null: the run's)")
        module.diffusion.clip_x_start = clip
    guidance = cfg.get("period_guidance")
    if guidance is not None:
        if isinstance(guidance, bool) or not isinstance(guidance, (int, float)) or guidance != guidance:
            raise ConfigError(f"period_guidance={guidance!r}: expected a number (1: told the period, 0: not told)")
        if not module.period_condition:
            raise ConfigError(f"period_guidance={guidance}: this run was not trained with model.period_condition=true")
        module.denoiser.period_guidance = float(guidance)


def eval_latents(run_config: dict, n: int | None = None, folder: str | None = None) -> np.ndarray:
    """The run's eval sequences as original latents ``[N, frames, dim]`` (the stored means), read from
    its latent folder (or ``folder``, made with the same MusicVAE) with the run's own data config."""
    try:
        data = OmegaConf.create(run_config)["data"]
        if folder is not None:
            data.dir = str(folder)
        datamodule = instantiate(data)
        latents = datamodule.read_split("eval", sliced=False)
    except FileNotFoundError as e:
        raise MissingFileError(f"the run's eval sequences are gone ({e}); run `python prepare.py` again") from e
    return latents if n is None else latents[:n]


def check_sample_args(cfg: DictConfig) -> None:
    """``n``, ``batch_size``, ``seed``, ``device`` and ``infill`` of ``sample.py``, before any work."""
    for key, lowest in (("n", 1), ("batch_size", 1), ("seed", 0)):
        value = cfg.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or value < lowest:
            raise ConfigError(f"{key}={value!r}: expected an integer >= {lowest}")
    resolve_device(cfg.get("device", "cpu"))
    check_paths(cfg, "samples")
    check_loops(cfg)
    infill = cfg.get("infill")
    if infill is not None:
        ok = isinstance(infill, Sequence) and not isinstance(infill, str) and len(infill) == 2
        if not ok or not all(isinstance(f, int) and not isinstance(f, bool) for f in infill):
            raise ConfigError(f"infill={infill!r}: expected [start,end], two frame indices")


def check_memory(n: int, codec) -> None:
    """``n`` samples fit in this machine's memory: the samples in model space, and for sequences of latents
    also their 512-dim latents and decoded melodies (held at once while they are written). Else a
    ``ConfigError`` before any sampling, not an allocation failure in the middle of it."""
    shape = tuple(codec.sample_shape)
    per_sample = 8 * math.prod(shape) + (shape[0] * (4 * 512 + 8 * 32) if len(shape) == 2 else 0)
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # no sysconf (Windows): the allocation itself will say
        return
    if n * per_sample > total:
        raise ConfigError(
            f"n={n}: {n} samples need about {n * per_sample / 2**30:,.0f} GiB, more than this machine's "
            f"{total / 2**30:.0f} GiB; draw fewer (several runs with other seeds give more)"
        )


def check_paths(cfg: DictConfig, default: str | None = None) -> None:
    """``ckpt`` is a path and ``out_dir``, when given, is not a file, and the files can be written there
    (or, without ``out_dir``, in the folder ``default`` beside the checkpoint; None: ``out_dir`` is
    required): before any work (``sample.py``, ``evaluate.py``, ``serve.py``)."""
    ckpt = cfg.get("ckpt")
    if not isinstance(ckpt, str) or not ckpt:
        raise ConfigError(
            f"ckpt={ckpt}: expected a checkpoint file (checkpoints/melody.ckpt as shipped, or outputs/<run>/last.ckpt)"
        )
    out_dir = cfg.get("out_dir") or None  # "" is the default, as for the writers
    if out_dir is None and default is None:
        raise ConfigError(f"out_dir={cfg.get('out_dir')!r}: expected a folder for the files")
    if out_dir is not None and Path(str(out_dir)).exists() and not Path(str(out_dir)).is_dir():
        raise ConfigError(f"out_dir={out_dir}: a file is there; expected a folder (a new one, or one to write into)")
    # Where the files will go, checked before the sampling that would be lost at the first write
    target = Path(str(out_dir)) if out_dir is not None else Path(ckpt).parent / str(default)
    blocked = unwritable(target)
    if blocked is not None:
        field = f"out_dir={out_dir}" if out_dir is not None else f"ckpt={ckpt} (the files go beside it by default)"
        raise ConfigError(f"{field}: cannot write in {blocked}; expected a folder this user can write (out_dir=...)")


def unwritable(folder: Path) -> Path | None:
    """The place that stops ``folder`` from being made or written (its nearest existing ancestor, when that
    is a file or a folder this user cannot write), or None."""
    existing = folder.absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    return None if existing.is_dir() and os.access(existing, os.W_OK | os.X_OK) else existing


def check_loops(cfg: DictConfig) -> None:
    """``loops`` of ``sample.py`` and ``evaluate.py``: true or false."""
    if not isinstance(cfg.get("loops", True), bool):
        raise ConfigError(f"loops={cfg.get('loops')!r}: expected true or false")


def draw_loops(
    codec, n: int, seed: int, known: torch.Tensor | None = None, mask: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(periods [n], index [n, frames]) for ``DiffusionModule.sample(loops=index)``, drawn with ``seed``:
    periods from the run's period prior, or for infilling (``known``, ``mask``) the loop that each
    sequence's kept frames show (``ddpm.periods``). ``None`` for runs without a prior (images; latent
    runs trained before session 13, with a warning)."""
    if not hasattr(codec, "periods"):
        return None
    if codec.periods is None:
        log.warning("this checkpoint holds no period prior (trained before loops were kept): sampling without loops")
        return None
    generator = torch.Generator().manual_seed(step_seed(seed, 1))
    if known is None:
        periods = codec.periods.draw(n, generator)
        return periods, loop_index(periods, codec.periods.frames)
    return infill_loops(known, mask[0, :, 0].bool(), codec.periods, generator)


def resolve_device(name: str) -> torch.device:
    """``torch.device(name)``, checked to exist on this machine."""
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError) as e:
        raise ConfigError(f"device={name!r}: expected cpu, cuda or cuda:<index> ({e})") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device={name}: no CUDA GPU is usable on this machine; use device=cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(f"device={name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    elif device.type != "cpu":
        raise ConfigError(f"device={name}: expected cpu, cuda or cuda:<index>")
    return device


def midi_melody(path: str | Path, steps: int, track: int | None = None) -> np.ndarray:
    """A user's MIDI file -> ``steps`` melody events of its pitched track ``track`` (file order; by default
    its melody, ``melody_track``), from the bar of its first note: cut to length, or played again from
    the start until long enough (as short tunes are in training)."""
    from ddpm.music.events import MissingTrackError, fit_length, from_first_bar, read_midi, unreadable

    path = Path(path)
    which = f"infill_midi={path}" + (f" infill_track={track}" if track is not None else "")
    if not path.is_file():
        found = "a folder" if path.is_dir() else "no such file"
        raise MissingFileError(f"infill_midi={path}: {found} (expected a .mid file with a melody)")
    try:
        events, bar_steps = read_midi(path, track)
    except MissingTrackError as e:
        raise ConfigError(f"infill_track={track}: {path.name}: {e}") from e
    except Exception as e:  # noqa: BLE001 - pretty_midi/mido raise many kinds on bad files
        raise ConfigError(f"infill_midi={path}: not a readable MIDI melody ({unreadable(e)})") from e
    if not (events >= 2).any():
        raise ConfigError(f"{which}: no notes in the MIDI range 21-108 (expected a melody)")
    return fit_length(from_first_bar(events, bar_steps), steps)  # whole windows, so a repeat starts on a bar


def infill_inputs(
    codec, frames, n: int, midi: str | None = None, run_config: dict | None = None, track: int | None = None
) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """(known, mask, originals) for infilling frames ``[start, end)``.

    ``known`` is model space ``[n, frames, kept]``; ``originals`` the same sequences in the original
    latent space with every dimension (the stored means): the first ``n`` eval sequences of the run
    (``run_config``), or ``n`` copies of the melody of the MIDI file ``midi`` (its pitched track ``track``,
    by default its melody) encoded with the run's MusicVAE.
    """
    if len(codec.sample_shape) != 2:
        raise ConfigError(f"infill needs sequence data [frames, dims]; this model's samples are {codec.sample_shape}")
    start, end = (int(f) for f in frames)
    length = codec.sample_shape[0]
    if not 0 <= start < end <= length:
        raise ConfigError(f"infill=[{start},{end}]: expected 0 <= start < end <= {length} (the model's frames)")
    if midi is not None:
        if not hasattr(codec, "encode_latents"):
            raise ConfigError(f"infill_midi={midi}: this model is not a melody model ({type(codec).__name__})")
        melody = midi_melody(midi, length * 32, track)
        originals = np.repeat(codec.encode_latents(melody[None]), n, axis=0)
    else:
        originals = eval_latents(run_config, n)
        if len(originals) < n:
            raise ConfigError(f"infill with n={n}: expected n <= {len(originals)}, the eval sequences there are")
    known = codec.to_model(originals)
    mask = torch.ones_like(known)
    mask[:, start:end] = 0  # 0: regenerate, 1: keep
    return known, mask, originals


def build_sampler(sampler_cfg: DictConfig, diffusion) -> Sampler:
    """The configured sampler, checked against the diffusion's T; a bad setting is a ``ConfigError``."""
    try:
        sampler = instantiate(sampler_cfg)
        sampler.evaluations(diffusion)  # checks the steps against T
    except (InstantiationException, ValueError) as e:
        settings = OmegaConf.to_container(sampler_cfg, resolve=True)
        raise ConfigError(f"sampler {settings}: {e.__cause__ or e}") from e
    return sampler


def sample(cfg: DictConfig) -> dict[str, Path]:
    """Draw ``cfg.n`` samples from ``cfg.ckpt`` with ``cfg.seed``; write them and ``record.json``."""
    check_sample_args(cfg)
    ckpt_path = Path(cfg.ckpt)
    ckpt = load_checkpoint(ckpt_path)
    module, codec = restore(ckpt, ckpt_path)
    check_memory(int(cfg.n), codec)
    set_overrides(cfg, module, codec)
    device = torch.device(cfg.device)
    module.to(device)
    if cfg.get("compile"):  # x1.45 for the UNet on CPU after ~30 s of compilation (README benchmarks)
        module.compile_sampling()
    if cfg.get("infill_midi") and not cfg.get("infill"):
        raise ConfigError(f"infill_midi={cfg.infill_midi} needs infill=[start,end]: the frames to regenerate")
    if cfg.get("infill_track") is not None and not cfg.get("infill_midi"):
        raise ConfigError(f"infill_track={cfg.infill_track} needs infill_midi=<file>: the file it is a track of")
    infill, midi, track = cfg.get("infill"), cfg.get("infill_midi"), cfg.get("infill_track")
    known, mask, originals = (
        infill_inputs(codec, infill, cfg.n, midi, ckpt["run_config"], track) if infill else (None,) * 3
    )
    sampler = build_sampler(cfg.sampler, module.diffusion)
    evaluations = sampler.evaluations(module.diffusion)
    start = time.perf_counter()
    drawn = draw_loops(codec, cfg.n, cfg.seed, known, mask) if cfg.get("loops", True) else None
    periods, loops = drawn if drawn is not None else (None, None)
    generator = torch.Generator().manual_seed(cfg.seed)
    samples = module.sample(
        cfg.n, generator, cfg.batch_size, known, mask, sampler, progress="sampling", loops=loops, periods=periods
    )
    seconds = time.perf_counter() - start
    latents = None
    if known is not None:  # kept frames: the originals themselves, every latent dimension
        latents = codec.decode(samples, cfg.seed)
        keep = mask[0, :, 0].bool().numpy()
        latents[:, keep] = originals[:, keep]
        if loops is not None:  # and the copies of kept frames in the regenerated ones (ddpm.periods)
            latents = repeat_frames(torch.from_numpy(latents), loops).numpy()
    generated_notes = original_notes = {}  # infill_midi: the notes to write instead of the decoded latents
    if midi:  # the user's own notes where they are kept or a loop copies them, not the MusicVAE's reconstruction
        from ddpm.music.events import WINDOW_STEPS, splice_frames

        source = midi_melody(midi, codec.sample_shape[0] * WINDOW_STEPS, track)
        ties = kept_sources(mask[0, :, 0], loops, cfg.n)
        generated_notes = {"melodies": splice_frames(codec.melodies_from_latents(latents), source, ties)}
        original_notes = {"melodies": np.repeat(source[None], cfg.n, axis=0)}
    # out_dir= is the folder itself; the default is a new one beside the checkpoint, never an earlier run's
    default = ckpt_path.parent / "samples" / f"{ckpt_path.stem}_seed{cfg.seed}"
    out_dir = Path(cfg.out_dir) if cfg.get("out_dir") else new_folder(default)
    files = codec.write(samples, out_dir, "generated", seed=cfg.seed, latents=latents, **generated_notes)
    if known is not None:
        originals_files = codec.write(known, out_dir, "original", latents=originals, **original_notes)
        files.update({f"original_{k}": v for k, v in originals_files.items()})
    record = {
        "checkpoint": str(ckpt_path.resolve()),
        "epoch": ckpt.get("epoch"),
        "global_step": ckpt.get("global_step"),
        "n": cfg.n,
        "seed": cfg.seed,
        "infill": list(cfg.infill) if cfg.get("infill") else None,
        "infill_midi": cfg.get("infill_midi"),
        "infill_track": cfg.get("infill_track"),
        "periods": periods.tolist() if periods is not None else None,  # frames per loop; 0: no repeat
        "sampler": OmegaConf.to_container(cfg.sampler, resolve=True),
        "spread": module.spread if known is None else 1.0,
        "loops": bool(cfg.get("loops", True)),
        "refill": getattr(codec, "refill", None),  # latent runs: how the dropped dims were filled (after refill=)
        "temperature": getattr(codec, "temperature", None),  # melody runs: MusicVAE decoding (0: greedy)
        "period_guidance": getattr(module.denoiser, "period_guidance", None) if module.period_condition else None,
        "clip_x_start": module.diffusion.clip_value if module.diffusion.clip_x_start else None,  # the bound, or none
        "network_evaluations": evaluations,  # per batch
        "device": str(device),
        "sampling_seconds": round(seconds, 3),
        "files": {k: str(v.name) for k, v in files.items()},
        "written": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "run_config": ckpt["run_config"],
    }
    record_path = atomic_write_text(out_dir / "record.json", json.dumps(record, indent=2, default=str))
    return {**files, "record": record_path}

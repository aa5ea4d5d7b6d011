"""The studio's model side: one trained melody model asked to generate, infill and interpolate.

Every method returns melody events ``[n, frames * 32]``; writing files and HTTP live elsewhere
(``ddpm/studio/outputs.py``, ``ddpm/studio/app.py``). Requests share one model, so they run one
at a time under ``Studio.lock``.
"""

import contextlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from ddpm.errors import UserError
from ddpm.music.events import WINDOW_STEPS, fit_length, splice_frames
from ddpm.music.prepare import read_eval_events
from ddpm.periods import kept_sources
from ddpm.sampling import draw_loops
from ddpm.studio.interpolation import ddim_invert, ddim_sample, ddim_timesteps, lerp, slerp

Progress = Callable[[float, str], None]  # (fraction done, what is happening)


@dataclass
class Melody:
    """A melody the page can start from: an upload or an eval tune, fitted to the model's length."""

    title: str
    events: np.ndarray  # [frames * 32]
    note: str = ""


def load_samplers(conf_dir: str | Path) -> dict[str, DictConfig]:
    """The sampler configs ``conf/sampler/*.yaml`` by name (each has a ``_target_``)."""
    return {p.stem: OmegaConf.load(p) for p in sorted(Path(conf_dir).glob("*.yaml"))}


class Studio:
    """A melody model restored from a checkpoint, with the samplers the page offers.

    Args:
        module: the ``DiffusionModule`` (weights restored).
        codec: its ``MelodyCodec`` (state restored): encodes and decodes melodies.
        samplers: sampler configs by name (``conf/sampler/*.yaml``); ``{}`` offers only the
            module's own ancestral sampling.
        default_sampler: the config of the sampler the page starts with (``conf/serve.yaml``'s ``sampler``).
        name: shown in the page (the checkpoint's file name).
        eval_dir: the run's latent folder, whose eval tunes the page offers (``None``: none).
    """

    def __init__(
        self,
        module,
        codec,
        samplers: dict[str, DictConfig] | None = None,
        default_sampler: DictConfig | None = None,
        device: str | torch.device = "cpu",
        name: str = "",
        eval_dir: str | Path | None = None,
    ):
        if not all(hasattr(codec, a) for a in ("melodies", "encode")):
            raise UserError(
                f"{name or 'checkpoint'}: a model with a {type(codec).__name__}; "
                "the studio needs a melody model (trained with data=melody)"
            )
        self.module, self.codec = module.to(device).eval(), codec
        self.device, self.name, self.eval_dir = torch.device(device), name, eval_dir
        self.frames = int(codec.sample_shape[0])
        self.steps = self.frames * WINDOW_STEPS
        self.samplers = dict(samplers or {})
        self.default_sampler = self._default_name(default_sampler)
        if self.samplers:  # the page's menu lists the default first
            self.samplers = {self.default_sampler: self.samplers.pop(self.default_sampler), **self.samplers}
        self.lock = threading.Lock()
        self._eval: list[Melody] | None = None

    def _default_name(self, cfg: DictConfig | None) -> str:
        if cfg is None or not self.samplers:
            return next(iter(self.samplers), "ancestral")
        target = cfg.get("_target_")

        def differences(v: DictConfig) -> int:
            return sum(v.get(k) != cfg.get(k) for k in set(v) | set(cfg))

        # a file as it is, else the file of its class that differs in the fewest settings (fast, steps=20 -> fast)
        match = sorted(
            (k for k, v in self.samplers.items() if v.get("_target_") == target),
            key=lambda k: differences(self.samplers[k]),
        )
        name = match[0] if match else "default"
        self.samplers[name] = cfg  # the serve config's settings (steps=...) win over the file's
        return name

    @property
    def num_timesteps(self) -> int:
        return int(self.module.diffusion.num_timesteps)

    def info(self) -> dict:
        """What the page needs to lay itself out: bars, tempo, samplers and their default steps."""
        samplers = {name: {"steps": self.default_steps(name)} for name in self.samplers} or {
            "ancestral": {"steps": None}
        }
        return {
            "checkpoint": self.name,
            "frames": self.frames,
            "bars": self.frames * 2,
            "steps_per_bar": 16,
            "qpm": float(self.codec.qpm),
            "temperature": float(self.codec.temperature),
            "num_timesteps": self.num_timesteps,
            "samplers": samplers or {"ancestral": {"steps": None}},
            "default_sampler": self.default_sampler,
        }

    # ----- inputs -----

    def eval_tunes(self) -> list[Melody]:
        """The run's eval tunes (cached); ``UserError`` when the run's data is not on this machine."""
        if self._eval is None:
            try:
                if self.eval_dir is None:
                    raise FileNotFoundError("the checkpoint names no latent folder")
                events, titles = read_eval_events(self.eval_dir)
            except (FileNotFoundError, OSError) as e:
                raise UserError(f"no eval tunes for this model: {e}") from e
            self._eval = [Melody(t, fit_length(e, self.steps)) for e, t in zip(events, titles)]
        return self._eval

    def default_steps(self, name: str) -> int | None:
        """The configured steps of sampler ``name``, at most T; ``None`` when it runs every step."""
        steps = self.samplers[name].get("steps") if name in self.samplers else None
        return None if steps is None else min(int(steps), self.num_timesteps)

    def build_sampler(self, name: str, steps: int | None = None):
        """The sampler ``name`` with ``steps`` network evaluations (its default when ``None``; ignored by
        samplers that run every step); ``None`` is the module's own ancestral sampling."""
        if not self.samplers and name == "ancestral":
            return None
        if name not in self.samplers:
            raise UserError(f"sampler={name!r}: expected one of {sorted(self.samplers) or ['ancestral']}")
        if self.default_steps(name) is None:
            return instantiate(self.samplers[name])
        steps = self.default_steps(name) if steps is None else steps
        if not 1 <= steps <= self.num_timesteps:
            raise UserError(f"steps={steps}: expected 1 to {self.num_timesteps} (this model's diffusion steps)")
        return instantiate(self.samplers[name], steps=steps)

    # ----- requests -----

    def generate(self, n: int, seed: int, sampler: str, steps: int | None, temperature: float, progress: Progress):
        """``n`` new melodies ``[n, steps]``."""
        sampler_obj = self.build_sampler(sampler, steps)
        with self.lock, self._temperature(temperature):
            x, _ = self._sample(n, seed, sampler_obj, progress)
            progress(0.9, "decoding with the MusicVAE")
            return self.codec.melodies(x, seed)

    def infill(
        self,
        source: np.ndarray,
        frames: tuple[int, int],
        k: int,
        seed: int,
        sampler: str,
        steps: int | None,
        temperature: float,
        progress: Progress,
    ) -> np.ndarray:
        """``k`` variants ``[k, steps]`` of ``source`` in which frames ``[start, end)`` are new (decoded), and
        the rest are the source's own events, as are the new frames that a loop the kept frames show makes
        copies of kept frames (``ddpm.periods.kept_sources``)."""
        sampler_obj = self.build_sampler(sampler, steps)
        start, end = frames
        with self.lock, self._temperature(temperature):
            progress(0.02, "encoding the melody")
            known = self.codec.encode(source[None]).repeat(k, 1, 1)
            mask = torch.ones_like(known)
            mask[:, start:end] = 0  # 0: regenerate, 1: keep
            x, index = self._sample(k, seed, sampler_obj, progress, known, mask)
            progress(0.9, "decoding with the MusicVAE")
            return splice_frames(self.codec.melodies(x, seed), source, kept_sources(mask[0, :, 0], index, k))

    def interpolate(
        self,
        a: np.ndarray,
        b: np.ndarray,
        n: int,
        mode: str,
        seed: int,
        steps: int,
        temperature: float,
        progress: Progress,
    ) -> np.ndarray:
        """``n`` melodies ``[n, steps]`` evenly between ``a`` and ``b`` (ends excluded).

        ``latent``: straight line between the two in model space. ``noise``: each end is mapped to
        diffusion noise by DDIM inversion with ``steps`` steps, the noises are joined by slerp, and
        every point is denoised back with the same deterministic DDIM.
        """
        if mode not in ("latent", "noise"):
            raise UserError(f"mode={mode!r}: expected 'latent' or 'noise'")
        weights = torch.arange(1, n + 1, dtype=torch.float64) / (n + 1)
        with self.lock, self._temperature(temperature):
            progress(0.02, "encoding the two melodies")
            ends = self.codec.encode(np.stack([a, b])).to(self.device)
            if mode == "latent":
                x = lerp(ends[0], ends[1], weights)
            else:
                calls = 2 * len(ddim_timesteps(self.num_timesteps, steps))  # invert the ends, then denoise
                with self._counting(progress, calls, "DDIM"):
                    diffusion, chain = self.module.diffusion, self.module.chain_denoiser
                    noise = ddim_invert(diffusion, chain(), ends, steps)
                    x = ddim_sample(diffusion, chain(), slerp(*noise, weights), steps)
            progress(0.9, "decoding with the MusicVAE")
            return self.codec.melodies(x, seed)

    # ----- helpers -----

    def _sample(self, n, seed, sampler, progress, known=None, mask=None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Samples in model space, and the loop index they were drawn with (None: no loops)."""
        generator = torch.Generator().manual_seed(seed)
        calls = sampler.evaluations(self.module.diffusion) if sampler is not None else self.num_timesteps
        with self._counting(progress, calls, type(sampler).__name__ if sampler else "AncestralSampler"):
            loops = draw_loops(self.codec, n, seed, known, mask)  # loops as sample.py draws them (ddpm.periods)
            periods, index = loops if loops else (None, None)
            x = self.module.sample(
                n, generator, batch_size=n, known=known, mask=mask, sampler=sampler, loops=index, periods=periods
            )
            return x, index

    @contextlib.contextmanager
    def _counting(self, progress: Progress, calls: int, what: str) -> Iterator[None]:
        """Report sampling progress from the denoiser's forward calls (5% to 90% of the job)."""
        done = 0

        def hook(*_):
            nonlocal done
            done += 1
            progress(0.05 + 0.85 * min(done / max(calls, 1), 1.0), f"{what}: step {min(done, calls)} of {calls}")

        handle = self.module.sampling_denoiser.register_forward_hook(hook)
        try:
            yield
        finally:
            handle.remove()

    @contextlib.contextmanager
    def _temperature(self, temperature: float) -> Iterator[None]:
        """Decode with the request's MusicVAE temperature, then put the model's back."""
        if not 0.0 <= temperature <= 2.0:
            raise UserError(f"temperature={temperature}: expected 0 (greedy) to 2")
        saved, self.codec.temperature = self.codec.temperature, temperature
        try:
            yield
        finally:
            self.codec.temperature = saved

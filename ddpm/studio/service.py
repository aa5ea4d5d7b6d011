"""What each studio request does: check it, run the model as a job, write the files, describe them.

HTTP-free, so the routes in ``app.py`` stay one line each. Request settings arrive as the pydantic
models below (their bounds answer 400 before anything runs).
"""

import threading
from collections import OrderedDict
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from ddpm.errors import UserError
from ddpm.studio.engine import Melody, Studio
from ddpm.studio.jobs import Job, JobQueue
from ddpm.studio.melodies import BAR_STEPS, bars_to_frames, frames_to_bars, notes_json, read_upload
from ddpm.studio.outputs import new_folder, write_melody

MAX_MELODIES, MAX_VARIANTS, MAX_BETWEEN = 16, 8, 8


class Settings(BaseModel):
    # A misspelt field is refused, not dropped for its default; true is not 1 and "1" is not a number
    model_config = ConfigDict(extra="forbid", strict=True)

    seed: int = Field(0, ge=0, le=2**31 - 1)
    steps: int | None = Field(None, ge=1, le=100_000)
    temperature: float = Field(0.0, ge=0.0, le=2.0)


class Sampling(Settings):
    sampler: str | None = None  # default: the serve config's


class GenerateRequest(Sampling):
    n: int = Field(4, ge=1, le=MAX_MELODIES)


class InfillRequest(Sampling):
    source: str
    first_bar: int
    last_bar: int
    k: int = Field(3, ge=1, le=MAX_VARIANTS)


class InterpolateRequest(Settings):  # DDIM there and back: no sampler to choose
    a: str
    b: str
    n: int = Field(3, ge=1, le=MAX_BETWEEN)
    modes: list[Literal["latent", "noise"]] = Field(["latent"], min_length=1, max_length=2)

    @field_validator("modes")
    @classmethod
    def each_mode_once(cls, modes: list[str]) -> list[str]:
        if len(set(modes)) != len(modes):  # a second row would overwrite the first's files
            raise ValueError("each mode at most once")
        return modes


Item = tuple[str, str, np.ndarray, dict]  # file name, title, events, extra fields


class StudioService:
    """The studio's requests. Melodies the page may start from (uploads, eval tunes) are kept by
    id, the name of the folder holding their files; the newest ``keep`` are remembered."""

    def __init__(self, studio: Studio, out_dir: str | Path, max_upload_bytes: int, keep: int = 512):
        self.studio, self.out_dir, self.max_upload_bytes = studio, Path(out_dir), max_upload_bytes
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.jobs, self.keep = JobQueue(), keep
        self._sources: OrderedDict[str, Melody] = OrderedDict()
        self._lock = threading.Lock()

    # ----- melodies to start from -----

    def info(self) -> dict:
        limits = {"n": MAX_MELODIES, "k": MAX_VARIANTS, "between": MAX_BETWEEN, "upload_bytes": self.max_upload_bytes}
        return {**self.studio.info(), "limits": limits}

    def eval_list(self) -> dict:
        try:
            tunes = self.studio.eval_tunes()
        except UserError as e:
            return {"tunes": [], "message": str(e)}
        return {"tunes": [{"index": i, "title": t.title} for i, t in enumerate(tunes)], "message": None}

    def add_upload(self, name: str, data: bytes, track: int | None = None) -> dict:
        events, note, tracks = read_upload(name, data, self.studio.steps, track)
        return self._add_source("upload", Melody(name, events, note)) | {"tracks": tracks}

    def add_eval(self, index: int) -> dict:
        tunes = self.studio.eval_tunes()
        if not 0 <= index < len(tunes):
            raise UserError(f"eval tune {index}: expected 0 to {len(tunes) - 1}")
        return self._add_source("eval", Melody(f"eval {index}: {tunes[index].title}", tunes[index].events))

    def _add_source(self, kind: str, melody: Melody) -> dict:
        folder = new_folder(self.out_dir, kind)
        with self._lock:
            self._sources[folder.name] = melody
            while len(self._sources) > self.keep:
                self._sources.popitem(last=False)
        return {"id": folder.name, "note": melody.note, **self._entry(folder, "source", melody.title, melody.events)}

    def source(self, source_id: str, field: str = "source") -> Melody:
        with self._lock:
            melody = self._sources.get(source_id)
        if melody is None:
            raise UserError(f"{field}={source_id!r}: no such melody on the server (upload it or pick it again)")
        return melody

    # ----- jobs -----

    def generate(self, req: GenerateRequest) -> Job:
        sampler = self._sampler(req)

        def work(job: Job) -> dict:
            events = self.studio.generate(req.n, req.seed, sampler, req.steps, req.temperature, job.update)
            items = [(f"melody_{i:02d}", f"melody {i + 1} (seed {req.seed})", e, {}) for i, e in enumerate(events)]
            return {"melodies": self._write(job, new_folder(self.out_dir, "generate"), items)}

        return self.jobs.submit("generate", work)

    def infill(self, req: InfillRequest) -> Job:
        source, sampler = self.source(req.source), self._sampler(req)
        start, end = bars_to_frames(req.first_bar, req.last_bar, self.studio.frames)
        new_bars = list(frames_to_bars(start, end))

        def work(job: Job) -> dict:
            args = (req.k, req.seed, sampler, req.steps, req.temperature, job.update)
            variants = self.studio.infill(source.events, (start, end), *args)  # the source's own kept bars
            items = [("source", source.title, source.events, {"new_bars": None})]
            new = {"new_bars": new_bars}
            items += [(f"variant_{i:02d}", f"variant {i + 1}", v, new) for i, v in enumerate(variants)]
            melodies = self._write(job, new_folder(self.out_dir, "infill"), items)
            return {"source": melodies[0], "melodies": melodies[1:], "new_bars": new_bars}

        return self.jobs.submit("infill", work)

    def interpolate(self, req: InterpolateRequest) -> Job:
        a, b = self.source(req.a, "a"), self.source(req.b, "b")
        steps = req.steps or min(50, self.studio.num_timesteps)  # DDIM steps, there and back
        if steps > self.studio.num_timesteps:
            raise UserError(f"steps={steps}: expected 1 to {self.studio.num_timesteps} (this model's diffusion steps)")

        def work(job: Job) -> dict:
            folder, rows = new_folder(self.out_dir, "interpolate"), []
            ends = self._write(job, folder, [("a", a.title, a.events, {}), ("b", b.title, b.events, {})])
            for mode in req.modes:
                args = (req.n, mode, req.seed, steps, req.temperature, job.update)
                between = self.studio.interpolate(a.events, b.events, *args)
                items = [(f"{mode}_{i:02d}", f"{mode} {i + 1}/{req.n + 1}", e, {}) for i, e in enumerate(between)]
                rows.append({"mode": mode, "melodies": [ends[0], *self._write(job, folder, items), ends[1]]})
            return {"rows": rows}

        return self.jobs.submit("interpolate", work)

    # ----- helpers -----

    def _sampler(self, req: Sampling) -> str:
        """The request's sampler name, its settings checked now (a 400) rather than in the job."""
        name = req.sampler or self.studio.default_sampler
        self.studio.build_sampler(name, req.steps)
        return name

    def _write(self, job: Job, folder: Path, items: list[Item]) -> list[dict]:
        out = []
        for i, (name, title, events, extra) in enumerate(items):
            job.update(0.9 + 0.1 * i / len(items), f"writing MIDI and audio {i + 1} of {len(items)}")
            out.append(self._entry(folder, name, title, events, **extra))
        return out

    def _entry(self, folder: Path, name: str, title: str, events: np.ndarray, **extra) -> dict:
        """Write ``name.mid`` and ``name.wav``; the page's description of the melody."""
        codec = self.studio.codec
        files = write_melody(folder, name, events, codec.qpm, codec.seconds)
        urls = {kind: f"/files/{path.parent.name}/{path.name}" for kind, path in files.items()}
        described = {"title": title, "notes": notes_json(events), "steps": len(events)}
        return {**described, "bars": len(events) // BAR_STEPS, **urls, **extra}

"""The generated bad inputs of ``benchmarks/fuzz_inputs.py``: fixtures, then one generator per family."""

import argparse
import io
import os
import random
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from tfrecord import example_pb2

from benchmarks._common import CONF, make_config
from ddpm.config_check import INTEGER, REAL, check_overrides
from ddpm.data.mvae import LatentDataModule
from ddpm.errors import UserError
from ddpm.io.tfrecords import masked_crc, write_latents
from ddpm.music.corpus import load_melodies
from ddpm.music.midi_corpus import midi_tunes
from ddpm.music.musicvae import MusicVAE
from ddpm.music.vae_io import load_musicvae, save_musicvae
from ddpm.sampling import load_checkpoint, restore, sample
from ddpm.training import train

FRAMES, DIMS = 8, 4
SHARD = "train-00000-of-00001.tfrecord"
VAE_CFG = {"_target_": "ddpm.music.musicvae.MusicVAE", "z_dim": 8, "encoder_hidden": 8, "decoder_hidden": 8}
TINY_RUN = [
    "data=mvae",
    f"data.input_shape=[{FRAMES},{DIMS}]",
    "data.batch_size=8",
    "model=dense",
    "model.num_layers=1",
    "model.mlp_dims=16",
    "model.emb_dim=16",
    "diffusion=ddpm",
    "diffusion.betas.timesteps=10",
    "trainer.max_epochs=1",
    "+trainer.limit_train_batches=2",
    "+trainer.limit_val_batches=1",
    "+trainer.enable_progress_bar=false",
    "+trainer.enable_model_summary=false",
    "callbacks.samples=null",
    "logger=none",
]


@dataclass
class Case:
    family: str
    name: str
    run: Callable[[], object]
    names: tuple[str, ...]  # the message must contain one of these (the file or the field)
    handled: Callable[[object], bool] | None = None  # when it returns: is that the right result?
    folder: Path | None = None  # no temporary file may be left here
    absent: Path | None = None  # must not exist after an error (an output folder)


class Evil:
    """Unpickling this runs a shell command: the checkpoint a stranger might hand over."""

    def __init__(self, call, arg):
        self.call, self.arg = call, arg

    def __reduce__(self):
        return self.call, (self.arg,)


@dataclass
class Fixtures:
    latents: Path  # valid train/eval shards of FRAMES x DIMS latents
    midi: bytes  # a valid one-voice MIDI file
    ckpt: Path  # a tiny trained data=mvae checkpoint
    musicvae: Path  # a tiny MusicVAE file
    evil: Path  # a checkpoint whose unpickling would create ``marker``
    marker: Path


def make_fixtures(root: Path) -> Fixtures:
    rng = np.random.default_rng(0)
    latents = root / "latents"
    write_latents(latents / SHARD, rng.standard_normal((32, FRAMES, DIMS)))
    write_latents(latents / "eval-00000-of-00001.tfrecord", rng.standard_normal((8, FRAMES, DIMS)))
    train(make_config([*TINY_RUN, f"data.dir={latents}"], root / "run"))
    vae = MusicVAE(**{k: v for k, v in VAE_CFG.items() if k != "_target_"})
    musicvae = save_musicvae(vae, dict(VAE_CFG), root / "vae.pt")
    marker = root / "code_ran"
    evil = root / "evil.ckpt"
    torch.save({"state_dict": {}, "run_config": {}, "x": Evil(os.system, f"touch {marker}")}, evil)
    return Fixtures(latents, midi_bytes(), root / "run" / "last.ckpt", musicvae, evil, marker)


def midi_bytes(
    tempo: float = 120.0, drum: bool = False, meter: tuple[int, int] | None = None, far: float = 0.0
) -> bytes:
    import pretty_midi

    pm = pretty_midi.PrettyMIDI(initial_tempo=tempo)
    voice = pretty_midi.Instrument(0, is_drum=drum)
    for i in range(16):
        voice.notes.append(pretty_midi.Note(90, 60 + i % 12, far + i * 0.25, far + i * 0.25 + 0.2))
    pm.instruments.append(voice)
    if meter:
        pm.time_signature_changes.append(pretty_midi.TimeSignature(meter[0], meter[1], 0))
    buffer = io.BytesIO()
    pm.write(buffer)
    return buffer.getvalue()


# -- TFRecords ------------------------------------------------------------------------------------


def frame(data: bytes) -> bytes:
    length = struct.pack("<Q", len(data))
    return length + struct.pack("<I", masked_crc(length)) + data + struct.pack("<I", masked_crc(data))


def example(values=None, shape=None, values_kind="float", shape_kind="int", name="inputs") -> bytes:
    ex = example_pb2.Example()
    if values is not None:
        feature = ex.features.feature[name]
        {"float": feature.float_list, "int": feature.int64_list}.get(values_kind, feature.bytes_list).value.extend(
            values if values_kind in ("float", "int") else [b"x" * len(values)]
        )
    if shape is not None:
        feature = ex.features.feature["input_shape"]
        (feature.int64_list if shape_kind == "int" else feature.float_list).value.extend(shape)
    return ex.SerializeToString()


def record_ends(blob: bytes) -> list[int]:
    ends, offset = [], 0
    while offset < len(blob):
        (length,) = struct.unpack("<Q", blob[offset : offset + 8])
        offset += 12 + length + 4
        ends.append(offset)
    return ends


def tfrecord_cases(work: Path, fx: Fixtures, rng: random.Random, n: int) -> Iterator[Case]:
    good = (fx.latents / SHARD).read_bytes()
    ends = record_ends(good)
    size = FRAMES * DIMS
    for i in range(n):
        kind = ["flip", "truncate", "garbage", "length", "shape", "type", "nan", "no_inputs", "junk", "eval"][i % 10]
        blob, split, handled = good, "train", None
        if kind == "flip":
            b = bytearray(good)
            for _ in range(rng.randint(1, 8)):
                b[rng.randrange(len(b))] ^= rng.randint(1, 255)
            blob = bytes(b)
        elif kind == "truncate":
            cut = rng.choice([rng.randrange(len(good)), rng.choice(ends[:-1]), 0])
            blob = good[:cut]
            if cut in ends:
                kept = ends.index(cut) + 1  # the records before the cut are read
                handled = lambda r, c=kept: r == c  # noqa: E731
        elif kind == "garbage":
            blob = good + rng.randbytes(rng.randint(1, 64))
        elif kind == "length":
            wrong = rng.choice([0, 1, size - 1, size + 1, 3 * size])
            blob = good[: ends[1]] + frame(example([0.5] * wrong, [FRAMES, DIMS]))
        elif kind == "shape":
            shape = rng.choice([[DIMS, FRAMES], [FRAMES], [FRAMES, DIMS, 1], [], [-FRAMES, -DIMS], [2**40, 1]])
            blob = frame(example([0.1] * size, shape)) + good
        elif kind == "type":
            values_kind, shape_kind = rng.choice([("int", "int"), ("bytes", "int"), ("float", "float")])
            blob = good[: ends[2]] + frame(example([1] * size, [FRAMES, DIMS], values_kind, shape_kind))
        elif kind == "nan":
            values = np.random.default_rng(i).standard_normal(size)
            values[rng.randrange(size)] = rng.choice([np.nan, np.inf, -np.inf])
            blob = good + frame(example(values.tolist(), [FRAMES, DIMS]))
        elif kind == "no_inputs":
            blob = frame(example([0.0] * size, [FRAMES, DIMS], name=rng.choice(["input", "latents", ""]))) + good
        elif kind == "junk":
            blob = good[: ends[0]] + frame(rng.randbytes(rng.randint(1, 200)))
        else:  # a broken eval shard
            split, blob = "eval", good[: rng.randrange(1, len(good))]
        folder = work / "tfrecord" / str(i)
        folder.mkdir(parents=True)
        for shard in fx.latents.iterdir():
            (folder / shard.name).write_bytes(shard.read_bytes())
        (folder / f"{split}-00000-of-00001.tfrecord").write_bytes(blob)

        def run(folder=folder):
            datamodule = LatentDataModule(str(folder), input_shape=(FRAMES, DIMS))
            datamodule.setup("fit")
            return len(datamodule.train_set)

        yield Case("tfrecord", f"{kind} #{i}", run, (f"{split}-00000", str(folder)), handled, folder)


# -- MIDI -----------------------------------------------------------------------------------------


def midi_cases(work: Path, fx: Fixtures, rng: random.Random, n: int) -> Iterator[Case]:
    for i in range(n):
        kind = ["truncate", "flip", "empty", "drums", "tempo", "meter", "text", "far", "alone"][i % 9]
        if kind == "truncate":
            blob = fx.midi[: rng.randrange(len(fx.midi))]
        elif kind == "flip":
            b = bytearray(fx.midi)
            for _ in range(rng.randint(1, 6)):
                b[rng.randrange(len(b))] ^= rng.randint(1, 255)
            blob = bytes(b)
        elif kind == "empty":
            blob = b""
        elif kind == "drums":
            blob = midi_bytes(drum=True)
        elif kind == "tempo":
            blob = midi_bytes(tempo=rng.choice([3.6, 10.0, 1e6, 6e7]))  # the extremes a MIDI file can hold
            if rng.random() < 0.5:  # or a tempo event of 0 or 2^24 - 1 microseconds per quarter
                at = blob.index(b"\xff\x51\x03") + 3
                blob = blob[:at] + rng.choice([b"\x00\x00\x00", b"\xff\xff\xff"]) + blob[at + 3 :]
        elif kind == "meter":
            blob = midi_bytes(meter=(rng.randint(1, 64), 2 ** rng.randint(0, 10)))
        elif kind == "text":
            blob = b"MThd this is not a MIDI file\n" * rng.randint(0, 3)
        elif kind == "far":
            blob = midi_bytes(far=rng.choice([1e3, 1e4]))
        else:  # the bad file alone: no usable melody at all
            blob = fx.midi[: rng.randrange(14)]
        folder = work / "midi" / str(i)
        (folder / "in").mkdir(parents=True)
        (folder / "in" / "bad.mid").write_bytes(blob)
        if kind == "alone":

            def run(folder=folder):
                return load_melodies(folder / "cache", [], str(folder / "in"), workers=1)

            yield Case("midi", f"{kind} #{i}", run, (str(folder / "in"),), lambda r: len(r[0]) > 0, folder)
            continue
        (folder / "in" / "good.mid").write_bytes(fx.midi)
        yield Case(
            "midi",
            f"{kind} #{i}",
            lambda folder=folder: midi_tunes(folder / "in"),
            ("bad.mid",),
            lambda r: any(t.title == "good" for t in r[0]) and len(r[0]) + sum(r[1].values()) == 2,
            folder,
        )


# -- command lines --------------------------------------------------------------------------------


def _leaves(node, prefix=""):
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _leaves(v, f"{prefix}.{k}" if prefix else k)
    else:
        yield prefix, node


def config_cases(work: Path, fx: Fixtures, rng: random.Random, n: int) -> Iterator[Case]:
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF)):
        plain = {
            "train": OmegaConf.to_container(compose("train"), resolve=False),
            "sample": OmegaConf.to_container(compose("sample", ["ckpt=x"]), resolve=False),
        }
    leaves = {
        name: [(k, v) for k, v in _leaves(cfg) if v is not None and not (isinstance(v, str) and "${" in v)]
        for name, cfg in plain.items()
    }
    words = ["bogus", "lr_rate", "max_epoch", "batchsize", "dropout_p", "typo"]
    for i in range(n):
        config = rng.choice(["train", "train", "sample"])
        base = ["ckpt=x"] if config == "sample" else []
        kind = ["unknown", "type", "size", "syntax", "group"][i % 5]
        key, value = rng.choice(leaves[config])
        if kind == "unknown":
            parent = key.rsplit(".", 1)[0] if "." in key and rng.random() < 0.7 else ""
            key = f"{parent}.{rng.choice(words)}{i}" if parent else f"{rng.choice(words)}{i}"
            override = f"{key}={rng.choice(['1', 'abc', '[1,2]', '0.5'])}"
        elif kind == "type":
            candidates = [(k, v) for k, v in leaves[config] if not isinstance(v, str) or rng.random() < 0.2]
            key, value = rng.choice(candidates)
            if isinstance(value, bool):
                bad = rng.choice(["maybe", "3", "[true]"])
            elif isinstance(value, int | float):
                bad = rng.choice(["abc", "[1,2]", "{a:1}", "true"] + (["1.5"] if isinstance(value, int) else []))
            elif isinstance(value, list):
                bad = rng.choice(["abc", "3", "{a:1}"])
            else:
                bad = rng.choice(["[1,2]", "{a:1}", "true"])
            override = f"{key}={bad}"
        elif kind == "size":
            sized = [(k, v) for k, v in leaves[config] if k.rsplit(".", 1)[-1] in INTEGER | REAL]
            key, value = rng.choice(sized)
            low = {**INTEGER, **REAL}[key.rsplit(".", 1)[-1]][0]
            override = f"{key}={rng.choice([low - 1, low - 100, -1, -(2**40)]) if low > 0 else rng.choice([-1, -7])}"
        elif kind == "syntax":
            key = "n" if config == "sample" else "seed"
            override = key + rng.choice(["=[1", "=]", "=${", "={a:", "='open", "=1,,2", "=(1"])
        else:
            key = rng.choice(["model", "data", "trainer", "diffusion"] if config == "train" else ["sampler"])
            override = f"{key}={rng.choice(words)}{i}"
        argv = [*base, override]
        yield Case("config", f"{config} {override}", lambda c=config, a=argv: check_overrides(c, a), (key,))


# -- checkpoints ----------------------------------------------------------------------------------


def checkpoint_cases(work: Path, fx: Fixtures, rng: random.Random, n: int) -> Iterator[Case]:
    good = torch.load(fx.ckpt, weights_only=True)
    good_bytes, vae_bytes = fx.ckpt.read_bytes(), fx.musicvae.read_bytes()
    calls = [os.system, eval, exec, __import__("subprocess").call, __import__("shutil").rmtree]
    targets = ["os.system", "builtins.eval", "subprocess.call", "shutil.rmtree", "ddpm.io.tfrecords.write_latents"]
    folder = work / "checkpoint"
    folder.mkdir(parents=True)
    for i in range(n):
        kind = ["truncate", "garbage", "musicvae", "state_dict", "other_project", "mismatch", "target", "evil",
                "types", "not_a_file"][i % 10]  # fmt: skip
        path, handled = folder / f"{i}.ckpt", None
        vae = rng.random() < 0.3 and kind in ("truncate", "garbage", "mismatch", "target", "evil", "not_a_file")
        source = vae_bytes if vae else good_bytes
        if kind == "truncate":
            path.write_bytes(source[: rng.randrange(len(source))])
        elif kind == "garbage":
            path.write_bytes(source + rng.randbytes(rng.randint(1, 512)))
            handled = lambda r: r is not None  # noqa: E731 - zip archives may carry trailing bytes
        elif kind == "musicvae":
            path.write_bytes(vae_bytes)
        elif kind == "state_dict":
            torch.save(rng.choice([good["state_dict"], {"weight": torch.zeros(3)}, [1, 2, 3], "text"]), path)
        elif kind == "other_project":
            extra = rng.choice([argparse.Namespace(lr=0.1), np.zeros(3), {"a": np.float64(1.0)}])
            torch.save({"state_dict": {"layer.weight": torch.zeros(2)}, "hyper_parameters": extra}, path)
        elif kind == "mismatch":
            if vae:
                torch.save(
                    {"config": {**VAE_CFG, "z_dim": 16}, "state_dict": torch.load(fx.musicvae)["state_dict"]}, path
                )
            else:
                config = OmegaConf.to_container(OmegaConf.create(good["run_config"]))
                config["model"][rng.choice(["mlp_dims", "num_layers", "emb_dim"])] = rng.choice([8, 3, 32])
                torch.save({**good, "run_config": config}, path)
        elif kind == "target":
            target = {"_target_": rng.choice(targets), "_args_": [f"touch {fx.marker}"]}
            if vae:
                torch.save({"config": target, "state_dict": {}}, path)
            else:
                config = OmegaConf.to_container(OmegaConf.create(good["run_config"]))
                config[rng.choice(["data", "model", "diffusion"])] = target
                torch.save({**good, "run_config": config}, path)
        elif kind == "evil":
            payload = Evil(rng.choice(calls), f"touch {fx.marker}" if rng.random() < 0.8 else str(fx.marker))
            torch.save({"state_dict": {}, "run_config": {}, "config": {}, "x": payload}, path)
        elif kind == "types":
            torch.save({**good, rng.choice(["run_config", "state_dict"]): rng.choice(["text", [1, 2], 3])}, path)
        else:
            path = rng.choice([folder / f"missing{i}.ckpt", folder])
            if rng.random() < 0.5:
                path = folder / f"{i}.txt"
                path.write_text(rng.choice(["", "{}", "hello"]))
        run = (lambda p=path: load_musicvae(p)) if vae else (lambda p=path: restore(load_checkpoint(p), p))
        yield Case("checkpoint", f"{'musicvae ' if vae else ''}{kind} #{i}", run, (str(path),), handled, folder)


# -- sample.py values -----------------------------------------------------------------------------


def sample_cases(work: Path, fx: Fixtures, rng: random.Random, n: int) -> Iterator[Case]:
    cuda = "cuda:99" if torch.cuda.is_available() else "cuda"
    bad = {
        "n": [0, -1, 1.5, "abc", None, True],
        "batch_size": [0, -4, "x", None],
        "seed": [-1, "x", 0.5],
        "device": [cuda, "tpu", "gpu", "", "cuda:x", 3],
        "infill": [[10, 4], [0, 100], [-1, 2], [3, 3], [1], "abc", [1.5, 2], [0, FRAMES + 1], [5, 2]],
    }
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF)):
        base = compose("sample", [f"ckpt={fx.ckpt}", "n=2"])
    for i in range(n):
        key = rng.choice(sorted(bad))
        value = rng.choice(bad[key])
        cfg = base.copy()
        out = work / "sample" / str(i)
        cfg.out_dir = str(out)
        OmegaConf.update(cfg, key, value, force_add=True)
        yield Case("sample", f"{key}={value!r}", lambda c=cfg: sample(c), (key,), None, work / "sample", out)


FAMILIES = {"tfrecord": 400, "midi": 200, "config": 250, "checkpoint": 220, "sample": 60}
GENERATORS = {
    "tfrecord": tfrecord_cases,
    "midi": midi_cases,
    "config": config_cases,
    "checkpoint": checkpoint_cases,
    "sample": sample_cases,
}


def all_cases(work: Path, fx: Fixtures, rng: random.Random, scale: float = 1.0) -> Iterator[Case]:
    for family, count in FAMILIES.items():
        yield from GENERATORS[family](work, fx, rng, max(10, round(count * scale)))


__all__ = ["Case", "Fixtures", "UserError", "all_cases", "make_fixtures"]

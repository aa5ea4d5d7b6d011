"""The melody chain's prepare stage: one folder with a manifest, reused while its inputs hold, rebuilt
when they change; ``prepare.py`` and ``train_musicvae.py`` run the same stage."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from hydra.utils import instantiate

from ddpm.errors import UserError
from ddpm.io.tfrecords import read_latents
from ddpm.music import corpus
from tests.helpers import compose_train, melody_overrides

ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]


def stage_for(root, latents, *extra):
    """The tiny chain's prepare stage, writing to ``latents`` (the MusicVAE and corpus cache of ``root``)."""
    cfg = compose_train([*melody_overrides(root), f"prepare.out_dir={latents}", *extra])
    return instantiate(cfg.prepare)


def test_manifest_records_inputs_counts_and_stage_times(melody_run):
    root, _ = melody_run
    manifest = json.loads((root / "latents" / "manifest.json").read_text())
    assert manifest["inputs"]["frames"] == 4 and manifest["inputs"]["musicvae"] == str(root / "vae.pt")
    assert len(manifest["inputs"]["musicvae_sha256"]) == 16
    assert manifest["input_shape"] == [4, 512] and manifest["active_dims"] == 512  # threshold 0: all
    assert set(manifest["seconds"]) == {"corpus", "musicvae", "latents"}
    fit = manifest["musicvae_fit"]  # the tiny MusicVAE's fit on every held-out window (fewer than 2,048)
    assert fit["windows"] == manifest["splits"]["eval"]["windows"] and 0 <= fit["exact"] <= fit["tokens"] <= 1
    evals = sum(len(read_latents(p)) for p in sorted((root / "latents").glob("eval-*.tfrecord")))
    assert manifest["splits"]["eval"]["sequences"] == evals > 0
    with np.load(root / "latents" / "eval_events.npz") as data:
        assert data["events"].shape == (evals, 4 * 32)  # one corpus melody per eval record


def test_each_eval_record_is_the_musicvae_means_of_its_eval_sequence(melody_run):
    """The stage cuts each tune's window means into sequences as it cuts its events (``eval_events.npz``):
    record k holds the means of sequence k's windows, so no sequence straddles two tunes."""
    from ddpm.music.prepare import read_eval_events
    from ddpm.sampling import eval_latents, load_checkpoint, restore

    root, run = melody_run
    ckpt = load_checkpoint(run / "last.ckpt")
    _, codec = restore(ckpt, run / "last.ckpt")
    events = read_eval_events(root / "latents")[0]
    records = eval_latents(ckpt["run_config"])
    assert records.shape == (len(events), 4, 512)
    np.testing.assert_allclose(codec.encode_latents(events), records, atol=1e-4)


def test_stage_reuses_its_folder_and_rebuilds_when_inputs_change(melody_run, tmp_path, monkeypatch):
    root, _ = melody_run
    latents = tmp_path / "latents"
    shutil.copytree(root / "latents", latents)
    before = (latents / "manifest.json").stat().st_mtime_ns
    stage = stage_for(root, latents)
    assert stage.manifest() is not None and stage.run()["active_dims"] == 512
    assert (latents / "manifest.json").stat().st_mtime_ns == before  # same inputs: reused as it is
    monkeypatch.setattr(corpus, "EXTRACTION_VERSION", corpus.EXTRACTION_VERSION + 1)
    assert stage.manifest() is None  # the corpus is extracted another way now: its latents are stale
    monkeypatch.undo()

    manifest = stage_for(root, latents, "prepare.kl_threshold=1e9", "prepare.shards=2").run()  # other inputs
    assert manifest["inputs"]["kl_threshold"] == 1e9 and manifest["active_dims"] == 0
    assert len(list(latents.glob("eval-*.tfrecord"))) == 2  # the old 4 shards are gone
    assert stage_for(root, latents).manifest() is None  # and the first stage's folder is now stale

    split = stage_for(root, latents, "prepare.corpus.eval_fraction=0.5")  # another split of the corpus
    assert split.manifest() is None and split.run()["splits"]["eval"]["tunes"] > manifest["splits"]["eval"]["tunes"]


def test_a_retrained_musicvae_makes_the_folder_stale(melody_run, tmp_path):
    root, _ = melody_run
    shutil.copy(root / "vae.pt", tmp_path / "vae.pt")
    shutil.copytree(root / "latents", tmp_path / "latents")
    stage = stage_for(root, tmp_path / "latents", f"prepare.musicvae.path={tmp_path / 'vae.pt'}")
    manifest = json.loads((tmp_path / "latents" / "manifest.json").read_text())
    manifest["inputs"]["musicvae"] = str(tmp_path / "vae.pt")  # as if made with this copy
    (tmp_path / "latents" / "manifest.json").write_text(json.dumps(manifest))
    assert stage.manifest() is not None
    cmd = [
        sys.executable,
        "train_musicvae.py",
        *[o for o in melody_overrides(root) if o.startswith(("prepare", "+prepare"))],
    ]
    cmd += [
        f"prepare.musicvae.path={tmp_path / 'vae.pt'}",
        "prepare.musicvae.seed=1",
        f"hydra.run.dir={tmp_path / 'log'}",
    ]
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.strip().splitlines()[-1] == f"saved {tmp_path / 'vae.pt'}"
    assert (tmp_path / "vae.pt").read_bytes() != (root / "vae.pt").read_bytes()
    assert stage.manifest() is None  # the latents were made with the old MusicVAE: rebuilt on next use


def test_changed_midi_files_make_the_corpus_and_the_folder_stale(melody_run, tmp_path):
    """The MIDI folder counts by its files' content, as the MusicVAE does: adding, changing or removing a
    file re-extracts the corpus and rebuilds the latents on the next run, the same files reuse both."""
    root, _ = melody_run
    shutil.copytree(root / "midi", tmp_path / "midi")
    shutil.copytree(root / "latents", tmp_path / "latents")
    shutil.copytree(root / "cache", tmp_path / "cache")
    extra = [f"prepare.corpus.midi_dir={tmp_path / 'midi'}", f"prepare.corpus.cache_dir={tmp_path / 'cache'}"]
    stage = stage_for(root, tmp_path / "latents", *extra)
    manifest = json.loads((tmp_path / "latents" / "manifest.json").read_text())
    manifest["inputs"] |= stage.corpus.spec()  # as if made from this copy (the same files)
    (tmp_path / "latents" / "manifest.json").write_text(json.dumps(manifest))
    assert stage.manifest() is not None
    tunes = stage.corpus.split()[2]["tunes"]

    def caches() -> int:
        return len(list((tmp_path / "cache").glob("*.npz")))

    assert caches() == 2  # the copied one (keyed by the first folder's path) and this folder's

    shutil.copy(tmp_path / "midi" / "tune00.mid", tmp_path / "midi" / "new tune.mid")  # a tune added
    assert stage.manifest() is None
    assert stage.run()["corpus"]["tunes"] == tunes + 1 and stage.manifest() is not None
    (tmp_path / "midi" / "new tune.mid").write_bytes((tmp_path / "midi" / "tune01.mid").read_bytes())  # changed
    assert stage.manifest() is None
    (tmp_path / "midi" / "new tune.mid").unlink()  # removed: the first files again, their cache reused
    assert caches() == 3
    assert stage.corpus.split()[2]["tunes"] == tunes and caches() == 3


def test_a_bad_input_leaves_the_folder_as_it_was(melody_run, tmp_path):
    """The stale files go only once the corpus is read and the MusicVAE loaded: a MIDI folder that is not
    there or a MusicVAE file that is not one is an error, and the latents made before are still whole."""
    root, _ = melody_run
    shutil.copytree(root / "latents", tmp_path / "latents")
    before = {p.name: p.read_bytes() for p in (tmp_path / "latents").iterdir() if p.is_file()}
    (tmp_path / "vae.pt").write_bytes(b"not a checkpoint")
    for extra in (f"prepare.corpus.midi_dir={tmp_path / 'absent'}", f"prepare.musicvae.path={tmp_path / 'vae.pt'}"):
        stage = stage_for(root, tmp_path / "latents", extra)
        assert stage.manifest() is None  # other inputs: the folder would be rebuilt...
        with pytest.raises(UserError):
            stage.run()
        after = {p.name: p.read_bytes() for p in (tmp_path / "latents").iterdir() if p.is_file()}
        assert after == before  # ...but the inputs are bad: nothing of it is touched
    assert stage_for(root, tmp_path / "latents").manifest() is not None


def test_paths_that_are_files_a_split_with_an_empty_side_and_a_garbled_manifest(melody_run, tmp_path):
    """A file where a folder goes is refused before any work; an eval share that leaves no tune on a side
    is named; a manifest that is not JSON means the folder is rebuilt, not a crash."""
    from ddpm.training import build  # as train.py and prepare.py build the stage

    root, _ = melody_run
    (tmp_path / "notes.txt").write_text("a user's file")
    config = lambda *extra: compose_train([*melody_overrides(root), *extra]).prepare  # noqa: E731
    with pytest.raises(UserError, match="prepare.out_dir=.*notes.txt: expected a folder for the latents"):
        build(config(f"prepare.out_dir={tmp_path / 'notes.txt'}"), "prepare")
    with pytest.raises(UserError, match="prepare.corpus.cache_dir=.*notes.txt: a file is there; expected a folder"):
        build(config(f"prepare.corpus.cache_dir={tmp_path / 'notes.txt'}"), "prepare")
    for share, sides in (("0.9999", "0 train and 24 eval tunes of 24"), ("0.0", "24 train and 0 eval tunes of 24")):
        with pytest.raises(UserError, match=f"prepare.corpus.eval_fraction={share}: {sides}; expected a share"):
            stage_for(root, tmp_path / "lat", f"prepare.corpus.eval_fraction={share}").run()
    assert not (tmp_path / "lat").exists()
    shutil.copytree(root / "latents", tmp_path / "latents")
    (tmp_path / "latents" / "manifest.json").write_text("{ not json")
    assert stage_for(root, tmp_path / "latents").manifest() is None  # stale: rebuilt on run()


def test_prepare_py_runs_the_stage_alone_and_reports_bad_values(melody_run, tmp_path):
    root, _ = melody_run
    overrides = [o for o in melody_overrides(root) if o.startswith(("prepare", "+prepare"))]
    cmd = [sys.executable, "prepare.py", *overrides, f"prepare.out_dir={tmp_path / 'lat'}", f"hydra.run.dir={tmp_path}"]
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    printed = json.loads(res.stdout.strip().splitlines()[-1])
    assert (
        printed["input_shape"] == [4, 512]
        and printed["splits"] == json.loads((root / "latents" / "manifest.json").read_text())["splits"]
    )  # the same corpus, MusicVAE and split: the same folder
    bad = [sys.executable, "prepare.py", "prepare.frames=0", f"hydra.run.dir={tmp_path / 'refused'}"]
    res = subprocess.run(bad, cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 2 and res.stderr.strip() == "error: prepare.frames=0: expected an integer >= 1"
    # a MIDI folder that is not there, or holds no MIDI file: one line, before any extraction, and the
    # log folder the refused start made is removed
    (tmp_path / "no_midi").mkdir()
    (tmp_path / "no_midi" / "notes.txt").write_text("not a tune")
    for folder, why in [
        (tmp_path / "absent", "no such folder (expected a folder of .mid files)"),
        (tmp_path / "no_midi", "no .mid or .midi files in it"),
    ]:
        run_dir = tmp_path / "refused" / "2026-11-29" / "19-00-00"
        cmd = [
            sys.executable,
            "prepare.py",
            f"prepare.corpus.midi_dir={folder}",
            f"prepare.corpus.cache_dir={tmp_path / 'c'}",
            f"prepare.out_dir={tmp_path / 'lat'}",
            f"hydra.run.dir={run_dir}",
        ]
        res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert res.returncode == 2 and res.stderr.strip().splitlines()[-1] == f"error: corpus.midi_dir={folder}: {why}"
        assert not run_dir.parent.exists() and (tmp_path / "refused").is_dir()


class _LossyVAE(torch.nn.Module):
    """z = the window's events as numbers; decoding gives them back but for every 4th step (set to 0)."""

    def __init__(self):
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(1))

    def encode(self, x):
        return x.float(), torch.ones_like(x, dtype=torch.float)

    def generate(self, z):
        events = z.round().long()
        events[:, ::4] = 0
        return events


def test_musicvae_fit_counts_the_events_given_back_and_warns_when_few(caplog):
    from ddpm.music.prepare import musicvae_fit

    events = np.random.default_rng(0).integers(10, 90, (10, 32))  # no N(0, 1) draw rounds to 10 or more
    with caplog.at_level("INFO", logger="ddpm.music.prepare"):
        fit = musicvae_fit(_LossyVAE(), events, dims=list(range(16)), most=3)
    # 3 of 10 windows; 3 of 4 steps right, no window whole; from dims 0-15 only, 12 of 32 steps.
    assert fit == {"windows": 3, "tokens": 0.75, "exact": 0.0, "tokens_active": 0.375}
    assert "musicvae: 3 held-out windows" in caplog.text and "train one on them" in caplog.text
    assert musicvae_fit(_LossyVAE(), np.zeros((0, 32), np.int64), []) == {}

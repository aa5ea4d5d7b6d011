"""The studio's server side: uploads, bar ranges, the engine, the HTTP API (FastAPI TestClient) and the
``serve.py`` entry point (its interpolation math: tests/test_studio_interpolation.py)."""

import io
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from scipy.io import wavfile

from ddpm.errors import UserError
from ddpm.music.events import WINDOW_STEPS, read_midi, splice_frames, write_midi
from ddpm.periods import kept_sources
from ddpm.studio.interpolation import slerp
from ddpm.studio.melodies import bars_to_frames, fit_length, read_upload
from tests.helpers import compose_config

ROOT = Path(__file__).resolve().parents[1]
STEPS = 4 * WINDOW_STEPS  # the tiny melody model (tests/helpers.py): 4 frames = 8 bars


def melody_events(windows: int, seed: int = 0) -> np.ndarray:
    """A melody whose every 2-bar window starts with a note and holds a rest (note-off) inside."""
    rng = np.random.default_rng(seed)
    events = np.zeros(windows * WINDOW_STEPS, dtype=np.int64)
    events[::4] = 2 + 60 - 21 + rng.integers(-7, 8, len(events[::4]))
    events[14::WINDOW_STEPS] = 1  # note-off mid-window, then silence until the next onset
    return events


def midi_bytes(events: np.ndarray, tmp_path: Path, name: str = "m.mid") -> bytes:
    return write_midi(events, tmp_path / name).read_bytes()


# ----- uploads, bars, splicing -----


def test_upload_round_trip_pads_and_loops(tmp_path):
    events = melody_events(4)
    back, note, tracks = read_upload("m.mid", midi_bytes(events, tmp_path), STEPS)
    assert np.array_equal(back, events) and note == "8 bars" and len(tracks) == 1
    short = melody_events(1)
    back, note, _ = read_upload("s.mid", midi_bytes(short, tmp_path), STEPS)
    assert np.array_equal(back, np.tile(short, 4)) and "repeated" in note
    assert np.array_equal(fit_length(short[:20], 64)[:32], np.r_[short[:20], 1, np.zeros(11, int)])  # rest-padded


def band_bytes(tmp_path) -> bytes:
    """A file with drums, a 4-note tune (track 0, named) and a 16-note bass line (track 1, unnamed)."""
    import pretty_midi

    midi = pretty_midi.PrettyMIDI(initial_tempo=120.0)  # a 16th step = 0.125 s
    parts = [(0, True, "", [36] * 40, 1), (0, False, "Tune", [72, 74, 76, 77], 8), (33, False, "", [40, 43] * 8, 4)]
    for program, drum, name, pitches, every in parts:
        track = pretty_midi.Instrument(program, is_drum=drum, name=name)
        track.notes = [
            pretty_midi.Note(90, p, i * every * 0.125, (i * every + 1) * 0.125) for i, p in enumerate(pitches)
        ]
        midi.instruments.append(track)
    midi.write(str(tmp_path / "band.mid"))
    return (tmp_path / "band.mid").read_bytes()


def test_an_upload_offers_its_tracks_and_reads_the_one_asked_for(tmp_path):
    data = band_bytes(tmp_path)
    bass, note, tracks = read_upload("band.mid", data, STEPS)
    assert tracks == [
        {"index": 0, "name": "Tune", "notes": 4, "chosen": False},
        {"index": 1, "name": "Electric Bass (finger)", "notes": 16, "chosen": True},  # no 5 pitches: most notes
    ]
    assert note.startswith("track 1 of 2 (Electric Bass (finger)), 4 bars")
    assert (bass[np.flatnonzero(bass >= 2)[:4]] + 19).tolist() == [40, 43, 40, 43]
    tune, note, tracks = read_upload("band.mid", data, STEPS, track=0)
    assert note.startswith("track 0 of 2 (Tune)") and [t["chosen"] for t in tracks] == [True, False]
    assert np.flatnonzero(tune[:32] >= 2).tolist() == [0, 8, 16, 24]
    with pytest.raises(UserError, match=r"^band\.mid: no track 2; the file has 2 pitched tracks \(0 to 1\)$"):
        read_upload("band.mid", data, STEPS, track=2)


def song_bytes(tmp_path) -> bytes:
    """Tracks: 0 "Tune" (enters in bar 9, 4 bars), 1 "Pad" (12 bars from bar 1, the most notes: too long
    for the 8-bar model), 2 "Whistle" (one note above MIDI 108: no melody)."""
    import pretty_midi

    midi = pretty_midi.PrettyMIDI(initial_tempo=120.0)  # a 16th step = 0.125 s; the model holds 8 bars
    tune = pretty_midi.Instrument(0, name="Tune")  # enters in bar 9, 4 bars long
    tune.notes = [pretty_midi.Note(90, 72 + i % 5, (128 + 4 * i) * 0.125, (130 + 4 * i) * 0.125) for i in range(16)]
    pad = pretty_midi.Instrument(48, name="Pad")  # 12 bars from bar 1: the most notes (of 5 pitches), too long
    pad.notes = [pretty_midi.Note(90, 60 + i % 5, 8 * i * 0.125, (8 * i + 6) * 0.125) for i in range(24)]
    high = pretty_midi.Instrument(1, name="Whistle")  # only above MIDI 108
    high.notes = [pretty_midi.Note(90, 110, 0.0, 1.0)]
    midi.instruments += [tune, pad, high]
    midi.write(str(tmp_path / "song.mid"))
    return (tmp_path / "song.mid").read_bytes()


def test_a_track_too_long_or_silent_says_so_with_the_tracks_and_an_intro_is_skipped(tmp_path, client):
    from ddpm.studio.melodies import UploadError

    data = song_bytes(tmp_path)
    with pytest.raises(UploadError, match=r"^song\.mid: track 1 \(Pad\): 12 bars is too long") as error:
        read_upload("song.mid", data, STEPS)
    assert [(t["name"], t["chosen"]) for t in error.value.tracks] == [
        ("Tune", False),
        ("Pad", True),
        ("Whistle", False),
    ]
    with pytest.raises(UploadError, match=r"^song\.mid: track 2 \(Whistle\): no melody"):
        read_upload("song.mid", data, STEPS, track=2)
    events, note, _ = read_upload("song.mid", data, STEPS, track=0)
    assert note == "track 0 of 3 (Tune), 4 bars, repeated to fill the model's 8 bars"
    assert np.flatnonzero(events[:64] >= 2)[:3].tolist() == [0, 4, 8]  # its 8 bars of rest are not kept
    answer = client.post("/api/melodies", files={"file": ("song.mid", data, "audio/midi")})
    assert answer.status_code == 400 and "too long" in answer.json()["detail"]
    assert [t["index"] for t in answer.json()["tracks"]] == [0, 1, 2]  # so that the page can offer another


def test_bad_uploads_are_named_user_errors(tmp_path):
    with pytest.raises(UserError, match="x.mid: the file is empty"):
        read_upload("x.mid", b"", STEPS)
    with pytest.raises(UserError, match="x.txt: not a MIDI file"):
        read_upload("x.txt", b"hello, not music", STEPS)
    with pytest.raises(UserError, match="x.mid: not a readable MIDI file"):
        read_upload("x.mid", b"MThd\x00\x00\x00\x06garbage", STEPS)
    whole = midi_bytes(melody_events(1), tmp_path)  # library errors put in words (a probe got "EOFError: ")
    with pytest.raises(UserError, match=r"^cut.mid: not a readable MIDI file \(it ends before its tracks do"):
        read_upload("cut.mid", whole[:30], STEPS)
    with pytest.raises(UserError, match=r"^x.mid: not a readable MIDI file \(no MIDI events after its header\)$"):
        read_upload("x.mid", b"MThd" + b"\xff" * 40, STEPS)
    with pytest.raises(UserError, match="too long.*at most 8 bars"):
        read_upload("long.mid", midi_bytes(melody_events(5), tmp_path), STEPS)
    import pretty_midi

    drums = pretty_midi.PrettyMIDI()
    drums.instruments.append(pretty_midi.Instrument(0, is_drum=True))
    drums.instruments[0].notes.append(pretty_midi.Note(90, 36, 0.0, 0.5))
    buffer = io.BytesIO()
    drums.write(buffer)
    with pytest.raises(UserError, match="d.mid: no melody"):
        read_upload("d.mid", buffer.getvalue(), STEPS)


def test_bar_ranges_snap_to_whole_frames():
    assert bars_to_frames(3, 6, 4) == (1, 3)
    assert bars_to_frames(4, 5, 4) == (1, 3)
    assert bars_to_frames(1, 1, 4) == (0, 1)
    assert bars_to_frames(8, 8, 4) == (3, 4)
    for first, last in ((0, 2), (5, 3), (1, 9)):
        with pytest.raises(UserError, match=f"bars {first}-{last}"):
            bars_to_frames(first, last, 4)


def test_infilled_frames_take_the_sources_own_notes_where_kept_or_copied_by_a_loop():

    keep = torch.tensor([1, 0, 0, 1, 1, 0], dtype=torch.bool)  # frames 0, 3, 4 kept
    index = torch.tensor([[0, 1, 2, 3, 4, 5], [0, 4, 2, 0, 4, 2]])  # sequence 1 loops with period 3 (infill_loops)
    sources = kept_sources(keep, index, 2)
    assert sources.tolist() == [[0, -1, -1, 3, 4, -1], [0, 4, -1, 3, 4, -1]]  # frame 1 of sequence 1 copies 4
    assert kept_sources(keep, None, 2).tolist() == [[0, -1, -1, 3, 4, -1]] * 2
    source, new = melody_events(6), np.stack([melody_events(6, s) for s in (1, 2)])
    out = splice_frames(new, source, sources).reshape(2, 6, WINDOW_STEPS)
    windows, new = source.reshape(6, WINDOW_STEPS), new.reshape(2, 6, WINDOW_STEPS)
    for i, row in enumerate(sources):
        for f, k in enumerate(row):
            assert np.array_equal(out[i, f], windows[k] if k >= 0 else new[i, f])


def test_an_upload_is_read_from_the_bar_of_its_first_note_not_its_2_bar_window(tmp_path):
    from ddpm.studio.melodies import read_upload

    events = np.zeros(3 * WINDOW_STEPS, dtype=np.int64)
    events[16:] = melody_events(3)[: 2 * WINDOW_STEPS + 16]  # a bar of rest, then the tune
    back, note, _ = read_upload("late.mid", midi_bytes(events, tmp_path), STEPS)
    assert note.startswith("5 bars") and back[0] == events[16]  # bar 1 of the melody is its first bar with notes


# ----- interpolation math -----


# ----- the HTTP API -----


@pytest.fixture(scope="module")
def studio(melody_run):
    from omegaconf import OmegaConf

    from ddpm.studio.server import load_studio

    _, run = melody_run
    cfg = OmegaConf.create({"ckpt": str(run / "last.ckpt"), "device": "cpu", "sampler": None})
    return load_studio(cfg, ROOT / "conf" / "sampler")


def test_progress_counts_the_samplers_network_evaluations(studio):
    seen = []
    melodies = studio.generate(2, 0, "ddim", 5, 0.0, lambda fraction, stage: seen.append((fraction, stage)))
    assert melodies.shape == (2, STEPS)
    steps = [stage for _, stage in seen if "step" in stage]
    assert steps == [f"DDIMSampler: step {i} of 5" for i in range(1, 6)]
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 0.9


def test_the_serve_configs_sampler_is_the_pages_default(studio):
    """conf/serve.yaml's sampler (fast) starts the page by its own name; a changed file's settings win over it."""
    from omegaconf import OmegaConf

    from ddpm.config_check import check_overrides
    from ddpm.studio.engine import load_samplers

    samplers = load_samplers(ROOT / "conf" / "sampler")
    fast = type(studio)(studio.module, studio.codec, samplers, check_overrides("serve", []).sampler)  # serve.py's own
    assert fast.default_sampler == "fast" and fast.samplers["ddim"].eta == 0.0  # ddim itself untouched
    assert list(fast.info()["samplers"]) == ["fast", "ancestral", "ddim", "dpmpp_2m", "dpmpp_2m_sde"]  # the menu
    ddim7 = OmegaConf.merge(samplers["ddim"], {"steps": 7})
    custom = type(studio)(studio.module, studio.codec, samplers, ddim7)
    assert custom.default_sampler == "ddim" and custom.default_steps("ddim") == 7
    for name in ("fast", "dpmpp_2m"):  # the same class: the file it differs least from
        changed = OmegaConf.merge(samplers[name], {"steps": 7})
        custom = type(studio)(studio.module, studio.codec, load_samplers(ROOT / "conf" / "sampler"), changed)
        assert custom.default_sampler == name and custom.default_steps(name) == 7


@pytest.mark.parametrize("device", ["foo", "meta"])
def test_a_device_this_machine_lacks_is_refused_before_the_checkpoint_is_read(tmp_path, device):
    from omegaconf import OmegaConf

    from ddpm.errors import ConfigError
    from ddpm.studio.server import load_studio

    (tmp_path / "x.ckpt").write_bytes(b"not read")
    cfg = OmegaConf.create({"ckpt": str(tmp_path / "x.ckpt"), "device": device, "sampler": None})
    with pytest.raises(ConfigError, match=f"device='?{device}'?: expected cpu, cuda or cuda:<index>"):
        load_studio(cfg, ROOT / "conf" / "sampler")


def test_a_model_that_is_not_a_melody_model_is_refused(studio):
    with pytest.raises(UserError, match="needs a melody model"):
        type(studio)(studio.module, object(), name="digits.ckpt")


@pytest.fixture(scope="module")
def client(studio, tmp_path_factory):
    from fastapi.testclient import TestClient

    from ddpm.studio.app import create_app

    out = tmp_path_factory.mktemp("studio_out")
    with TestClient(create_app(studio, out, max_upload_bytes=16 * 1024)) as c:
        c.out_dir = out
        yield c


def wait(client, response) -> dict:
    assert response.status_code == 202, response.text
    job_id = response.json()["job"]
    for _ in range(600):
        status = client.get(f"/api/jobs/{job_id}").json()
        if status["state"] in ("done", "error"):
            return status
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish: {status}")


def download_events(client, url: str, tmp_path: Path) -> np.ndarray:
    response = client.get(url)
    assert response.status_code == 200 and response.content[:4] == b"MThd"
    path = tmp_path / url.replace("/", "_")
    path.write_bytes(response.content)
    return read_midi(path)[0]


def upload(client, data: bytes, name: str = "song.mid"):
    return client.post("/api/melodies", files={"file": (name, data, "audio/midi")})


def test_page_and_assets_are_local(client):
    html = client.get("/")
    assert html.status_code == 200 and "ddpm-music studio" in html.text
    assert "://" not in html.text  # no CDN: every asset from this server
    js, css = client.get("/static/studio.js"), client.get("/static/studio.css")
    assert js.status_code == css.status_code == 200 and "://" not in css.text
    assert js.text.count("://") == js.text.count('"http://www.w3.org/2000/svg"') == 1  # the SVG namespace only
    info = client.get("/api/info").json()
    assert info["bars"] == 8 and info["frames"] == 4 and info["num_timesteps"] == 10
    assert {"ancestral", "ddim", "dpmpp_2m"} <= set(info["samplers"]) and info["samplers"]["ddim"]["steps"] == 10


def test_generate_writes_midi_and_audio(client, tmp_path):
    status = wait(client, client.post("/api/generate", json={"n": 3, "seed": 1, "sampler": "ddim", "steps": 5}))
    assert status["state"] == "done" and status["progress"] == 1.0, status
    melodies = status["result"]["melodies"]
    assert len(melodies) == 3 and all(m["bars"] == 8 for m in melodies)
    events = download_events(client, melodies[0]["midi"], tmp_path)
    assert len(events) <= STEPS and [n[0] for n in melodies[0]["notes"]]  # notes drawn = notes written
    wav = client.get(melodies[0]["audio"])
    rate, audio = wavfile.read(io.BytesIO(wav.content))
    assert wav.headers["content-type"] == "audio/wav" and len(audio) == 17 * rate  # 8 bars at 120 qpm + 1 s
    assert not list(client.out_dir.rglob("*.tmp"))  # written atomically: no temporary files left


def test_upload_takes_a_track_field(client, tmp_path):
    files = {"file": ("band.mid", band_bytes(tmp_path), "audio/midi")}
    default = client.post("/api/melodies", files=files).json()
    tune = client.post("/api/melodies", files=files, data={"track": "0"}).json()
    assert [t["chosen"] for t in default["tracks"]] == [False, True] and default["note"].startswith("track 1 of 2")
    assert [t["chosen"] for t in tune["tracks"]] == [True, False] and tune["note"].startswith("track 0 of 2 (Tune)")
    for bad, detail in (("5", "no track 5"), ("-1", "track"), ("x", "track")):
        answer = client.post("/api/melodies", files=files, data={"track": bad})
        assert answer.status_code == 400 and detail in answer.json()["detail"]


def test_infill_keeps_the_other_bars_of_the_upload(client, tmp_path):
    events = melody_events(4)
    source = upload(client, midi_bytes(events, tmp_path))
    assert source.status_code == 200, source.text
    body = {"source": source.json()["id"], "first_bar": 3, "last_bar": 6, "k": 3, "seed": 0, "temperature": 1.0}
    status = wait(client, client.post("/api/infill", json=body))
    assert status["state"] == "done", status
    result = status["result"]
    assert result["new_bars"] == [3, 6] and len(result["melodies"]) == 3
    variants = [download_events(client, m["midi"], tmp_path) for m in result["melodies"]]
    for v in variants:
        assert np.array_equal(v[:32], events[:32]) and np.array_equal(v[96:128], events[96:])
    assert any(not np.array_equal(v[32:96], events[32:96]) for v in variants)


def test_interpolate_both_ways(client, tmp_path):
    a = upload(client, midi_bytes(melody_events(4, 1), tmp_path, "a.mid"), "a.mid").json()["id"]
    b = upload(client, midi_bytes(melody_events(4, 2), tmp_path, "b.mid"), "b.mid").json()["id"]
    body = {"a": a, "b": b, "n": 2, "modes": ["latent", "noise"], "steps": 5}
    status = wait(client, client.post("/api/interpolate", json=body))
    assert status["state"] == "done", status
    rows = status["result"]["rows"]
    assert [r["mode"] for r in rows] == ["latent", "noise"] and all(len(r["melodies"]) == 4 for r in rows)
    assert np.array_equal(download_events(client, rows[0]["melodies"][0]["midi"], tmp_path), melody_events(4, 1))


def test_eval_tunes_are_offered(client):
    tunes = client.get("/api/eval").json()
    assert tunes["message"] is None and len(tunes["tunes"]) > 0
    picked = client.post("/api/melodies/eval/0")
    assert picked.status_code == 200 and picked.json()["bars"] == 8 and picked.json()["notes"]
    assert client.post(f"/api/melodies/eval/{len(tunes['tunes'])}").status_code == 400


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"n": 100}, "n: Input should be less than or equal to 16"),
        ({"n": 2, "sampler": "euler"}, "sampler='euler'"),
        ({"n": 2, "sampler": "ddim", "steps": 11}, "steps=11: expected 1 to 10"),
        ({"n": 2, "temperature": -1}, "temperature"),
        ({"n": 2, "temprature": 1.0}, "temprature: Extra inputs are not permitted (got 1.0)"),  # was dropped
        ({"n": True}, "n: Input should be a valid integer (got True)"),  # ran as n=1
        ({"n": "2"}, "n: Input should be a valid integer (got '2')"),
        ({"n": {"a": 1}}, "n: Input should be a valid integer (got {'a': 1})"),
    ],
)
def test_bad_settings_answer_400_with_the_field(client, body, message):
    response = client.post("/api/generate", json=body)
    assert response.status_code == 400 and message in response.json()["detail"]


def test_interpolation_takes_no_sampler_each_mode_once_and_a_broken_body_is_named(client):
    """Found by a probe: interpolate accepted (and ignored) any sampler, and modes ["noise","noise"] wrote
    the second row over the first's files; a cut-off JSON body answered "5: JSON decode error"."""
    ids = [client.post(f"/api/melodies/eval/{i}").json()["id"] for i in (0, 1)]
    body = {"a": ids[0], "b": ids[1], "n": 1, "steps": 2}
    for extra, message in (
        ({"sampler": "bogus"}, "sampler: Extra inputs are not permitted"),
        ({"modes": ["noise", "noise"]}, "modes: Value error, each mode at most once"),
    ):
        response = client.post("/api/interpolate", json=body | extra)
        assert response.status_code == 400 and message in response.json()["detail"], response.json()
    cut = client.post("/api/generate", content=b'{"n":', headers={"content-type": "application/json"})
    assert cut.status_code == 400
    assert cut.json()["detail"] == "request body: not valid JSON (at character 5); expected a JSON object"


def test_bad_uploads_and_ranges_answer_400_413_and_the_server_goes_on(client, tmp_path):
    bad = upload(client, b"not a midi file", "notes.txt")
    assert bad.status_code == 400 and "notes.txt: not a MIDI file" in bad.json()["detail"]
    assert "empty" in upload(client, b"").json()["detail"]
    long = upload(client, midi_bytes(melody_events(6), tmp_path))
    assert long.status_code == 400 and "too long" in long.json()["detail"]
    big = upload(client, b"MThd" + bytes(100 * 1024))
    assert big.status_code == 413 and "limit" in big.json()["detail"]
    source = upload(client, midi_bytes(melody_events(4), tmp_path)).json()["id"]
    for first, last in ((7, 3), (0, 2), (1, 9)):
        response = client.post("/api/infill", json={"source": source, "first_bar": first, "last_bar": last})
        assert response.status_code == 400 and f"bars {first}-{last}" in response.json()["detail"]
    unknown = client.post("/api/infill", json={"source": "upload-000000000000", "first_bar": 1, "last_bar": 2})
    assert unknown.status_code == 400 and "no such melody" in unknown.json()["detail"]
    assert wait(client, client.post("/api/generate", json={"n": 1}))["state"] == "done"


def test_bodies_over_the_limit_are_refused_before_the_app_reads_them(client):
    """16 KB uploads + 64 KB of envelope: any larger body is refused, declared or streamed (chunked)."""
    declared = client.post("/api/generate", content=b"{" + b" " * (100 * 1024) + b"}")
    assert declared.status_code == 413 and "limit of 80 KB" in declared.json()["detail"]
    streamed = client.post("/api/generate", content=(b" " * 1024 for _ in range(100)))
    assert streamed.status_code == 413
    assert client.post("/api/generate", json={"n": 1}).status_code == 202


def test_a_failing_job_reports_and_the_next_one_runs(client, studio, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(studio, "generate", broken)
    status = wait(client, client.post("/api/generate", json={"n": 1}))
    assert status["state"] == "error" and "boom" in status["error"]
    monkeypatch.undo()
    assert wait(client, client.post("/api/generate", json={"n": 1}))["state"] == "done"


def test_downloads_only_from_the_output_folder(client, tmp_path):
    status = wait(client, client.post("/api/generate", json={"n": 1}))
    folder, name = status["result"]["melodies"][0]["midi"].split("/")[2:]
    assert client.get(f"/files/{folder}/{name}").status_code == 200
    outside = client.out_dir.parent / "secret.mid"
    outside.write_bytes(b"MThd secret")
    (client.out_dir / folder / "link.mid").symlink_to(outside)
    for url in (
        f"/files/{folder}/..%2F..%2Fsecret.mid",
        f"/files/..%2F{folder}/{name}",
        "/files/%2e%2e/secret.mid",
        f"/files/{folder}/%2e%2e%2f%2e%2e%2fsecret.mid",
        f"/files/{folder}/link.mid",  # a symbolic link out of the folder
        f"/files/{folder}/.hidden.mid",
        f"/files/{folder}/{name}.tmp",
        "/files/generate-000000000000/melody_00.mid",
    ):
        response = client.get(url)
        assert response.status_code == 404 and b"secret" not in response.content, url


def test_concurrent_requests_get_their_own_files(client):
    first = client.post("/api/generate", json={"n": 2, "seed": 1})
    second = client.post("/api/generate", json={"n": 2, "seed": 2})
    a, b = wait(client, first)["result"]["melodies"], wait(client, second)["result"]["melodies"]
    folders = {m["midi"].split("/")[2] for m in a}, {m["midi"].split("/")[2] for m in b}
    assert len(folders[0]) == len(folders[1]) == 1 and folders[0] != folders[1]
    again = wait(client, client.post("/api/generate", json={"n": 2, "seed": 1}))["result"]["melodies"]
    assert [client.get(m["midi"]).content for m in a] == [client.get(m["midi"]).content for m in again]


# ----- entry points -----


def test_serve_with_a_missing_checkpoint_is_one_line_exit_2(tmp_path):
    result = subprocess.run(
        [sys.executable, "serve.py", f"ckpt={tmp_path / 'none.ckpt'}"], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().startswith("error: ckpt=") and len(result.stderr.strip().splitlines()) == 1


def test_an_address_that_cannot_be_bound_is_refused_and_leaves_no_folder(melody_run, tmp_path):
    from omegaconf import OmegaConf

    from ddpm.studio.server import serve

    _, run = melody_run
    cfg = {"ckpt": str(run / "last.ckpt"), "device": "cpu", "sampler": None, "max_upload_kb": 512}
    cfg = OmegaConf.create({**cfg, "host": "256.0.0.1", "port": 0, "out_dir": str(tmp_path / "studio")})
    with pytest.raises(UserError, match="host=256.0.0.1 port=0: cannot listen there"):
        serve(cfg, ROOT / "conf" / "sampler")
    assert not (tmp_path / "studio").exists()


@pytest.mark.parametrize(
    "arg, message",
    [
        ("port=abc", "port=abc: expected an integer for port (default 8000), got 'abc'"),
        ("port=70000", "port=70000: expected an integer >= 0 and <= 65535"),  # not wrapped to 4464
        ("prot=80", "bad command line prot=80: Could not override 'prot'. To append to your config use +prot=80"),
        ("sampler=nope", "bad command line sampler=nope: In 'serve': Could not find 'sampler/nope'"),
        ("ckpt=null", "ckpt=None: expected a checkpoint file"),
        ("out_dir=README.md", "out_dir=README.md: a file is there; expected a folder"),
    ],
)
def test_serve_refuses_a_bad_command_line_before_loading_anything(arg, message):
    """Checked as sample.py's command line is, before the checkpoint is read or a port is bound."""
    result = subprocess.run([sys.executable, "serve.py", arg], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and result.stdout == "" and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {message}")


# Pinned by session 29's mutation audit of the studio.


def no_progress(fraction: float, stage: str) -> None:
    pass


# ----- the engine, on the tiny melody model -----


def decoded_input(studio, monkeypatch) -> tuple[list[torch.Tensor], list[int | None]]:
    """Make ``studio.codec.melodies`` record the model-space tensors it is asked to decode, and the seeds."""
    seen, seeds = [], []
    decode = studio.codec.melodies

    def melodies(x, seed=None):
        seen.append(x.detach().clone())
        seeds.append(seed)
        return decode(x, seed)

    monkeypatch.setattr(studio.codec, "melodies", melodies)
    return seen, seeds


def test_latent_interpolation_runs_from_a_to_b_evenly_with_the_ends_excluded(studio, monkeypatch):
    seen, _ = decoded_input(studio, monkeypatch)
    a, b = melody_events(4, 1), melody_events(4, 2)
    out = studio.interpolate(a, b, 3, "latent", 0, 5, 0.0, no_progress)
    assert out.shape == (3, STEPS)
    ends = studio.codec.encode(np.stack([a, b]))
    expected = torch.stack([ends[0] + w * (ends[1] - ends[0]) for w in (0.25, 0.5, 0.75)])
    torch.testing.assert_close(seen[0], expected.to(seen[0].dtype), rtol=1e-5, atol=1e-5)


def test_noise_interpolation_slerps_from_a_s_noise_to_b_s_and_counts_both_ddim_passes(studio, monkeypatch):
    import ddpm.studio.engine as engine

    seen, _ = decoded_input(studio, monkeypatch)
    a, b = melody_events(4, 1), melody_events(4, 2)
    ends = studio.codec.encode(np.stack([a, b]))
    # a stand-in DDIM (x_0 is its own noise) isolates the wiring: invert both ends, slerp a -> b, denoise
    monkeypatch.setattr(engine, "ddim_invert", lambda diffusion, denoiser, x, steps: x * 2)
    monkeypatch.setattr(engine, "ddim_sample", lambda diffusion, denoiser, x, steps: x / 2)
    studio.interpolate(a, b, 2, "noise", 0, 5, 0.0, no_progress)
    expected = slerp(ends[0] * 2, ends[1] * 2, torch.tensor([1 / 3, 2 / 3], dtype=torch.float64)) / 2
    torch.testing.assert_close(seen[0], expected.to(seen[0].dtype), rtol=1e-5, atol=1e-5)
    monkeypatch.undo()
    stages = []
    studio.interpolate(a, b, 1, "noise", 0, 5, 0.0, lambda fraction, stage: stages.append((fraction, stage)))
    steps = [(f, s) for f, s in stages if "step" in s]
    assert [s for _, s in steps] == [f"DDIM: step {i} of 10" for i in range(1, 11)]  # 5 to invert, 5 back
    assert steps[4][0] == pytest.approx(0.05 + 0.85 * 0.5) and steps[-1][0] == pytest.approx(0.9)


def test_infill_keeps_every_frame_but_the_asked_ones_and_conditions_on_the_source(studio, monkeypatch):
    seen = {}
    sample = studio.module.sample

    def recording(n, generator, **kwargs):
        seen.update(kwargs, n=n)
        return sample(n, generator, **kwargs)

    monkeypatch.setattr(studio.module, "sample", recording)
    source = melody_events(4, 3)
    out = studio.infill(source, (1, 3), 2, 0, "ddim", 3, 0.0, no_progress)
    assert out.shape == (2, STEPS) and seen["n"] == 2
    mask, known = seen["mask"], seen["known"]
    assert mask.shape == known.shape == (2, 4, known.shape[-1])
    assert mask[:, :, 0].tolist() == [[1, 0, 0, 1]] * 2  # 1: keep, 0: regenerate (frames 1 and 2)
    torch.testing.assert_close(known, studio.codec.encode(source[None]).repeat(2, 1, 1))
    windows, out = source.reshape(4, WINDOW_STEPS), out.reshape(2, 4, WINDOW_STEPS)
    np.testing.assert_array_equal(out[:, [0, 3]], np.stack([windows[[0, 3]]] * 2))  # the source's own notes
    looped = np.tile(source[:64], 2)  # frames A B A B: kept 0, 2, 3 show a loop of 2 frames, so new frame 1 is B
    out = studio.infill(looped, (1, 2), 2, 1, "ddim", 3, 0.0, no_progress).reshape(2, 4, WINDOW_STEPS)
    ties = kept_sources(seen["mask"][0, :, 0], seen["loops"], 2)
    assert ties.tolist() == [[0, 3, 2, 3]] * 2
    for variant, row in zip(out, ties):
        for f, k in enumerate(row):
            if k >= 0:  # kept, or a loop's copy of a kept frame: the source's own notes, not the MusicVAE's
                np.testing.assert_array_equal(variant[f], looped.reshape(4, WINDOW_STEPS)[k])


def test_generate_draws_what_sample_py_draws_with_the_same_seed(studio, melody_run, monkeypatch, tmp_path):
    """The same noise and the same loops (README: the studio draws loops as sample.py does)."""
    from ddpm.sampling import sample

    _, run = melody_run
    seen, seeds = decoded_input(studio, monkeypatch)
    studio.generate(2, 7, "ddim", 4, 0.0, no_progress)
    overrides = [f"ckpt={run / 'last.ckpt'}", "n=2", "seed=7", "sampler=ddim", "sampler.steps=4", "render_n=0"]
    files = sample(compose_config("sample", [*overrides, f"out_dir={tmp_path / 'cli'}"]))
    assert seeds == [7]  # the dropped dims are refilled with the request's seed, as sample.py's
    np.testing.assert_array_equal(studio.codec.decode(seen[0], 7), np.load(files["npz"])["samples"])


def test_requests_leave_the_models_temperature_and_hooks_as_they_were(studio):
    saved, hooks = studio.codec.temperature, dict(studio.module.sampling_denoiser._forward_hooks)
    studio.generate(1, 0, "ddim", 2, 1.5, no_progress)
    studio.interpolate(melody_events(4, 1), melody_events(4, 2), 1, "noise", 0, 2, 1.0, no_progress)
    assert studio.codec.temperature == saved and studio.info()["temperature"] == saved
    assert dict(studio.module.sampling_denoiser._forward_hooks) == hooks  # no progress hook left behind
    with pytest.raises(UserError, match=r"^temperature=2\.5: expected 0 \(greedy\) to 2$"):
        studio.generate(1, 0, "ddim", 2, 2.5, no_progress)
    assert studio.codec.temperature == saved


def test_sampler_steps_run_from_1_to_t(studio):
    t = studio.num_timesteps
    assert studio.build_sampler("ddim", t).steps == t and studio.build_sampler("ddim", 1).steps == 1
    for bad in (0, t + 1):
        with pytest.raises(UserError, match=f"^steps={bad}: expected 1 to {t}"):
            studio.build_sampler("ddim", bad)


# ----- the service and the app, on a stand-in model -----


class FakeStudio:
    """What ``StudioService`` uses of a ``Studio``: 4 frames (8 bars), T = 10; records its requests."""

    frames, steps, num_timesteps, default_sampler = 4, STEPS, 10, "ddim"

    def __init__(self):
        self.codec = SimpleNamespace(qpm=120.0, seconds=0.5, temperature=0.0)
        self.calls = []

    def info(self) -> dict:
        return {"frames": self.frames}

    def build_sampler(self, name, steps=None):
        if steps is not None and not 1 <= steps <= self.num_timesteps:
            raise UserError(f"steps={steps}: expected 1 to {self.num_timesteps}")

    def interpolate(self, a, b, n, mode, seed, steps, temperature, progress):
        self.calls.append(("interpolate", mode, steps))
        return np.stack([melody_events(4, 10 + i) for i in range(n)])

    def generate(self, n, seed, sampler, steps, temperature, progress):
        self.calls.append(("generate", sampler, steps))
        return np.stack([melody_events(4, 20 + i) for i in range(n)])


def wait_job(jobs, job_id: str, seconds: float = 60.0):
    """The job once it ends (``wait`` does the same over HTTP); a job writes WAVs, slow with FluidSynth."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        job = jobs.get(job_id)
        if job is None or job.state in ("done", "error"):
            return job
        time.sleep(0.01)
    raise AssertionError(f"job {job_id} did not finish in {seconds} s")


def test_the_service_remembers_the_newest_keep_melodies(tmp_path):
    from ddpm.studio.service import StudioService

    service = StudioService(FakeStudio(), tmp_path / "out", 16 * 1024, keep=2)
    ids = [service.add_upload(f"m{i}.mid", midi_bytes(melody_events(4, i), tmp_path))["id"] for i in range(3)]
    with pytest.raises(UserError, match="no such melody"):
        service.source(ids[0])
    assert [service.source(i).title for i in ids[1:]] == ["m1.mid", "m2.mid"]


def test_interpolation_steps_default_to_50_capped_at_t_and_t_itself_is_allowed(tmp_path):
    from ddpm.studio.service import InterpolateRequest, StudioService

    for timesteps, default in ((10, 10), (100, 50)):
        fake = FakeStudio()
        fake.num_timesteps = timesteps
        service = StudioService(fake, tmp_path / f"out{timesteps}", 16 * 1024)
        a, b = (
            service.add_upload(f"{x}.mid", midi_bytes(melody_events(4, i), tmp_path))["id"] for i, x in enumerate("ab")
        )
        for steps in (None, timesteps):
            job = service.interpolate(InterpolateRequest(a=a, b=b, n=1, steps=steps))
            assert wait_job(service.jobs, job.id).state == "done", job.error
        assert fake.calls == [("interpolate", "latent", default), ("interpolate", "latent", timesteps)]
        with pytest.raises(UserError, match=f"^steps={timesteps + 1}: expected 1 to {timesteps}"):
            service.interpolate(InterpolateRequest(a=a, b=b, n=1, steps=timesteps + 1))


def test_job_progress_never_goes_back_and_stops_at_1():
    from ddpm.studio.jobs import Job

    job = Job(id="x", kind="generate")
    job.update(0.5, "half")
    job.update(0.2, "encoding the next row")
    assert (job.progress, job.stage) == (0.5, "encoding the next row")
    job.update(1.7, "done")
    assert job.progress == 1.0


def test_the_job_queue_keeps_the_newest_jobs_and_says_what_went_wrong():
    from ddpm.studio.jobs import JobQueue

    jobs = JobQueue(keep=2)

    def user_error(job):
        raise UserError("eval tune 9: expected 0 to 3")

    def bug(job):
        raise RuntimeError("boom")

    try:
        first = jobs.submit("a", lambda job: 1)
        wait_job(jobs, first.id)
        bad, broken = jobs.submit("b", user_error), jobs.submit("c", bug)
        assert jobs.get(first.id) is None
        bad, broken = wait_job(jobs, bad.id), wait_job(jobs, broken.id)
        assert (bad.state, bad.error) == ("error", "eval tune 9: expected 0 to 3")
        assert broken.state == "error" and broken.error.startswith("internal error (RuntimeError: boom)")
    finally:
        jobs.shutdown()


def test_an_upload_of_exactly_the_limit_is_read_and_one_byte_more_is_413(tmp_path):
    from fastapi.testclient import TestClient

    from ddpm.studio.app import create_app

    limit = 1024
    with TestClient(create_app(FakeStudio(), tmp_path / "out", max_upload_bytes=limit)) as client:
        post = lambda data: client.post("/api/melodies", files={"file": ("x.mid", data, "audio/midi")})  # noqa: E731
        at = post(b"MThd" + bytes(limit - 4))
        assert at.status_code == 400 and "not a readable MIDI file" in at.json()["detail"]
        over = post(b"MThd" + bytes(limit - 3))
        assert (
            over.status_code == 413 and over.json()["detail"] == "x.mid: larger than the studio's upload limit of 1 KB"
        )
        missing = client.get("/api/jobs/0123456789abcdef")
        assert missing.status_code == 404 and missing.json()["detail"] == "job '0123456789abcdef': no such job"

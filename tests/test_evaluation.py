"""evaluate.py's pieces: interpolation baseline, infilling that is conditioned, continuous conditioning, end to end."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from ddpm.denoisers import TransformerDDPM
from ddpm.diffusion import GaussianDiffusion
from ddpm.evaluation import infill_frames, interpolate_middle, slerp
from ddpm.samplers import AncestralSampler
from ddpm.schedules import linear_betas
from tests.helpers import compose_config, sample_cfg


def test_infill_frames_is_the_middle_half():
    assert infill_frames(16) == (4, 12)
    assert infill_frames(32) == (8, 24)


def test_slerp_endpoints_and_norm():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((5, 64)), rng.standard_normal((5, 64))
    np.testing.assert_allclose(slerp(a, b, 0.0), a, atol=1e-5)
    np.testing.assert_allclose(slerp(a, b, 1.0), b, atol=1e-5)
    # unit vectors stay on the sphere; the midpoint is equidistant in angle
    ua, ub = a / np.linalg.norm(a, axis=1, keepdims=True), b / np.linalg.norm(b, axis=1, keepdims=True)
    mid = slerp(ua, ub, 0.5)
    np.testing.assert_allclose(np.linalg.norm(mid, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose((mid * ua).sum(1), (mid * ub).sum(1), atol=1e-5)


def test_interpolate_middle_keeps_the_ends():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 16, 8)).astype(np.float32)
    out = interpolate_middle(x, 4, 12)
    np.testing.assert_array_equal(out[:, :4], x[:, :4])
    np.testing.assert_array_equal(out[:, 12:], x[:, 12:])
    assert not np.allclose(out[:, 4:12], x[:, 4:12])
    for j in range(4, 12):  # frame j at (j - 3) / 9 of the way, the last one too
        np.testing.assert_allclose(out[:, j], slerp(x[:, 3], x[:, 12], (j - 3) / 9), atol=1e-6)


def test_continuous_levels_lie_strictly_inside_the_step_interval():
    diffusion = GaussianDiffusion(linear_betas(100), time_condition="continuous_noise_level")
    t = torch.arange(100).repeat(50)
    level = diffusion.continuous_noise_level(t, torch.Generator().manual_seed(0))
    low, high = diffusion.sqrt_alphas_cumprod[t], diffusion.sqrt_alphas_cumprod_prev[t]
    assert (level > low).all() and (level < high).all()
    # spread over the interval, not stuck at an end
    u = (level - low) / (high - low)
    assert 0.4 < u.mean() < 0.6 and u.min() < 0.05 and u.max() > 0.95


def test_continuous_loss_builds_x_t_from_the_level_it_conditions_on():
    diffusion = GaussianDiffusion(linear_betas(100), time_condition="continuous_noise_level", noise_level_scale=5000.0)
    seen = {}

    def denoiser(x_t, cond):
        seen["x_t"], seen["cond"] = x_t, cond
        return torch.zeros_like(x_t)

    x0, noise = torch.randn(64, 3, 4), torch.randn(64, 3, 4)
    t = torch.randint(0, 100, (64,))
    loss = diffusion.loss(denoiser, x0, t=t, noise=noise, generator=torch.Generator().manual_seed(0))
    level = seen["cond"] / 5000.0
    assert ((level > diffusion.sqrt_alphas_cumprod[t]) & (level < diffusion.sqrt_alphas_cumprod_prev[t])).all()
    expected = level[:, None, None] * x0 + (1 - level[:, None, None] ** 2).sqrt() * noise
    torch.testing.assert_close(seen["x_t"], expected, atol=2e-4, rtol=0)  # level recovered from cond / 5000
    torch.testing.assert_close(loss, noise.square().mean((1, 2)))
    # sampling conditions on sqrt(alpha_bar_t) times the scale
    torch.testing.assert_close(diffusion.model_condition(t), diffusion.sqrt_alphas_cumprod[t] * 5000.0)


def ar1_sequences(n: int, frames: int = 8, dims: int = 4, rho: float = 0.95, seed: int = 0) -> torch.Tensor:
    """Stationary AR(1) sequences along frames (unit variance): the middle is predictable from its ends."""
    g = torch.Generator().manual_seed(seed)
    x = torch.empty(n, frames, dims)
    x[:, 0] = torch.randn(n, dims, generator=g)
    for f in range(1, frames):
        x[:, f] = rho * x[:, f - 1] + (1 - rho**2) ** 0.5 * torch.randn(n, dims, generator=g)
    return x * 0.5


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: one thread is faster, above all on a loaded machine
    yield
    torch.set_num_threads(threads)


def test_infilling_is_conditioned_on_the_kept_frames(one_thread):
    torch.manual_seed(0)
    frames, dims = 8, 4
    diffusion = GaussianDiffusion(linear_betas(100, 1e-3, 0.1), time_condition="noise_level")
    model = TransformerDDPM((frames, dims), num_layers=1, num_heads=2, mlp_dims=64, embed_channels=32, emb_dim=32)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    data = ar1_sequences(4096)
    for _ in range(300):
        batch = data[torch.randint(0, len(data), (64,))]
        loss = diffusion.loss(model, batch).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    truth = ar1_sequences(128, seed=1)
    mask = torch.ones_like(truth)
    mask[:, 2:6] = 0
    g = torch.Generator().manual_seed(2)
    infilled = diffusion.sample(model, tuple(truth.shape), g, known=truth, mask=mask)
    free = diffusion.sample(model, tuple(truth.shape), g)
    guided = AncestralSampler(guidance=4.0).sample(diffusion, model, tuple(truth.shape), g, known=truth, mask=mask)

    def corr(a, b):
        a, b = a[:, 2:6].flatten(), b[:, 2:6].flatten()
        return float(torch.corrcoef(torch.stack([a, b]))[0, 1])

    c_infill, c_free, c_guided = corr(infilled, truth), corr(free, truth), corr(guided, truth)
    # AR(1), rho = 0.95: the best predictor of the middle from its ends correlates ~0.9 with the truth;
    # measured 0.74 for this briefly trained model, 0.04 for unconditional samples; with reconstruction
    # guidance (weight 4) 0.89 (the same draws: weight 1 0.82, 2 0.86).
    assert c_infill > 0.6, c_infill
    assert abs(c_free) < 0.15, c_free
    assert c_guided > max(0.83, c_infill + 0.08), (c_guided, c_infill)
    torch.testing.assert_close(infilled[:, :2], truth[:, :2])
    torch.testing.assert_close(guided[:, :2], truth[:, :2])


def test_evaluate_end_to_end_on_a_tiny_run(melody_run, tmp_path, monkeypatch):
    from ddpm import evaluation
    from ddpm.evaluation import evaluate
    from ddpm.module import DiffusionModule
    from ddpm.periods import loop_index

    _, run = melody_run
    calls = []  # the loops and periods each row hands DiffusionModule.sample
    real_sample = DiffusionModule.sample
    monkeypatch.setattr(
        DiffusionModule, "sample", lambda self, *a, **kw: calls.append(kw) or real_sample(self, *a, **kw)
    )
    scored = []  # the rows' melodies and latents as score_sets gets them
    real_score = evaluation.score_sets
    monkeypatch.setattr(
        evaluation, "score_sets", lambda sets, gt, *a: scored.append((sets, gt)) or real_score(sets, gt, *a)
    )
    overlaps_of = []  # every set piece_overlaps scores inside build_sets: the ground truth, then real-vs-real draws
    real_overlaps = evaluation.piece_overlaps
    monkeypatch.setattr(evaluation, "piece_overlaps", lambda m: overlaps_of.append(m) or real_overlaps(m))
    cfg = compose_config(
        "evaluate",
        [f"ckpt={run / 'last.ckpt'}", "n=4", "real_repeats=2", "bootstrap=20", f"out_dir={tmp_path}"]
        + ["eval_meters=['4/4']"],  # the tiny MIDI tunes' meter: all of them
    )
    files = evaluate(cfg)
    assert len(calls) == 2 and calls[1].get("known") is not None  # DDPM, then DDPM infilling
    for kw in calls:  # a period-conditioned network is told the periods of the loops drawn
        assert torch.equal(loop_index(kw["periods"], 4), kw["loops"]) or kw.get("known") is not None
        assert kw["periods"] is not None and len(kw["periods"]) == 4
    meta = json.loads((tmp_path / "table.json").read_text())["meta"]
    assert meta["refill"] == "shared"  # the codec's default
    assert meta["clip_x_start"] is None  # latents are not clipped unless asked
    assert meta["loops"] is True  # the run's period prior was kept at training time
    assert meta["eval_meters"] == ["4/4"] and meta["eval_sequences"] == len(
        np.load(run.parent / "latents" / "eval_events.npz")["events"]
    )
    assert {p.name for p in files.values()} == {"table.md", "table.json", "overlaps.png"}
    rows = json.loads((tmp_path / "table.json").read_text())["rows"]
    names = [r["set"] for r in rows]
    assert names[:6] == [
        "ground truth",
        "real vs real",
        "MusicVAE recon (full mu)",
        "MusicVAE recon (active dims)",
        "prior N(0, I)",
        "DDPM",
    ]
    assert "DDPM infilling" in names and "interpolation (slerp)" in names and "prior middle" in names
    gt = rows[0]
    assert gt["pitch_consistency"] == pytest.approx(1.0) and gt["duration_variance"] == pytest.approx(1.0)
    assert all(r["n"] == 4 for r in rows)
    assert "| DDPM |" in (tmp_path / "table.md").read_text()
    (sets,), gt_set = zip(*scored)
    sets, gt_set = {s.name: s for s in sets}, gt_set[0]
    a, b = infill_frames(4)
    for name in ("DDPM infilling", "interpolation (slerp)", "prior middle"):  # kept frames: the stored means, all dims
        kept = sets[name].latents
        assert np.array_equal(kept[:, :a], gt_set.latents[:, :a]) and np.array_equal(kept[:, b:], gt_set.latents[:, b:])
        assert not np.array_equal(kept[:, a:b], gt_set.latents[:, a:b])
    truth_rows = {m.tobytes() for m in overlaps_of[0]}
    assert len(truth_rows) == 4 and np.array_equal(overlaps_of[0], gt_set.melodies)
    for draw in overlaps_of[1:3]:  # real_repeats=2 draws of other eval sequences: none of the ground truth's
        assert len(draw) == 4 and not truth_rows & {m.tobytes() for m in draw}


def quick_table(run, out_dir, *overrides: str) -> dict:
    """``table.json`` of a quick ``evaluate.py`` run of the tiny model's ``last.ckpt`` into ``out_dir``: n=4,
    2 real-vs-real draws, 20 bootstrap resamples, the ``fast`` sampler with 4 steps; ``overrides`` after."""
    from ddpm import evaluation

    cfg = compose_config(
        "evaluate",
        [f"ckpt={run / 'last.ckpt'}", "n=4", "real_repeats=2", "bootstrap=20", "sampler=fast"]
        + ["sampler.steps=4", f"out_dir={out_dir}", *overrides],
    )
    evaluation.evaluate(cfg)
    return json.loads((Path(out_dir) / "table.json").read_text())


def by_set(table: dict) -> dict:
    return {r["set"]: r for r in table["rows"]}


def test_evaluate_draws_average_the_ddpm_row_over_seeded_sample_sets(melody_run, tmp_path):
    """draws=k: the DDPM row's OA figures are the mean, std and min over k sample sets, where set 0 is the
    single-draw row and set j the single-draw row of seed step_seed(seed, j); the other rows are unchanged."""
    from ddpm.module import step_seed
    from ddpm.music.scoring import OA_COLUMNS

    _, run = melody_run

    def ddpm_rows(name: str, *overrides: str) -> dict:
        return by_set(quick_table(run, tmp_path / name, *overrides))

    pooled = ddpm_rows("pooled", "draws=3")
    single = [ddpm_rows("seed0", "seed=0")]
    single += [ddpm_rows(f"seed{j}", f"seed={step_seed(0, j)}", "infill=false") for j in (1, 2)]
    assert "3 draws" in pooled["DDPM"]["note"]
    assert json.loads((tmp_path / "pooled" / "table.json").read_text())["meta"]["draws"] == 3
    assert "±" in (tmp_path / "pooled" / "table.md").read_text().split("| DDPM |")[1].split("\n")[0]
    for key in OA_COLUMNS:
        values = [rows["DDPM"][key] for rows in single]
        assert pooled["DDPM"][f"{key}_spread"] == pytest.approx([np.mean(values), np.std(values), np.min(values)])
        assert [d[key] for d in pooled["DDPM"]["draws"]] == pytest.approx(values)  # each set's own figures
        assert pooled["DDPM"][key] == single[0]["DDPM"][key]  # set 0 is the single-draw row
        assert pooled["real vs real"][key] == single[0]["real vs real"][key]
        assert pooled["DDPM infilling"][key] == single[0]["DDPM infilling"][key]  # drawn as before the sets
    assert len({rows["DDPM"]["pitch_consistency"] for rows in single}) == 3  # the sets differ


def test_evaluate_clip_x_start_clips_to_the_runs_box_and_records_it(melody_run, tmp_path, monkeypatch):
    from ddpm.module import DiffusionModule
    from ddpm.sampling import load_checkpoint, restore

    _, run = melody_run
    box = restore(load_checkpoint(run / "last.ckpt"))[1].clip_value  # the tiny run's `centered` train box
    seen = []  # (clip_x_start, clip_value) of the diffusion each row samples with
    real_sample = DiffusionModule.sample
    monkeypatch.setattr(
        DiffusionModule,
        "sample",
        lambda self, *a, **kw: (
            seen.append((self.diffusion.clip_x_start, self.diffusion.clip_value)) or real_sample(self, *a, **kw)
        ),
    )
    tables = {}
    for clip in ("true", "false"):
        tables[clip] = quick_table(run, tmp_path / clip, "infill=false", f"clip_x_start={clip}")
    assert seen == [(True, pytest.approx(box)), (False, pytest.approx(box))]  # one DDPM row each
    assert box != 1 and tables["true"]["meta"]["clip_x_start"] == pytest.approx(box)
    assert tables["false"]["meta"]["clip_x_start"] is None


def test_evaluate_train_sets_score_disjoint_train_sequences_against_the_ground_truth(melody_run, tmp_path, monkeypatch):
    """train_sets=k: a row of k disjoint sets of n train-split sequences (corpus events, cut as the prepare stage
    cuts them), each scored against the ground truth as real vs real is; the other rows are unchanged."""
    from ddpm import evaluation
    from ddpm.errors import UserError
    from ddpm.music.prepare import train_events
    from ddpm.music.scoring import OA_COLUMNS
    from ddpm.music.similarity import consistency_variance, piece_overlaps
    from ddpm.sampling import load_checkpoint

    _, run = melody_run

    def rows(name: str, *overrides: str) -> dict:
        return by_set(quick_table(run, tmp_path / name, "infill=false", *overrides))

    with_train, without = rows("with", "train_sets=2"), rows("without")
    assert list(with_train) == [*list(without)[:2], "train split", *list(without)[2:]]
    for name, row in without.items():  # its own random stream: every other row as without it
        assert all(with_train[name][key] == row[key] for key in OA_COLUMNS), name
    train = train_events(load_checkpoint(run / "last.ckpt")["run_config"], 4)
    assert train.shape[1] == 4 * 32 and len(train) >= 12
    row = with_train["train split"]
    assert row["n"] == 4 and len(row["draws"]) == 2 and row["latent_fd"] is None
    first = np.array(row["overlaps"], float)  # set 0: train sequences, each piece's OA one of the train split's
    train_oa = piece_overlaps(train)
    assert all(np.isclose(train_oa, piece, equal_nan=True).all(1).any() for piece in first)
    truth = consistency_variance(first, np.array(with_train["ground truth"]["overlaps"], float))
    for key in OA_COLUMNS:
        values = [d[key] for d in row["draws"]]
        assert row[key] == pytest.approx(truth[key]) and values[0] == pytest.approx(truth[key])
        assert row[f"{key}_spread"] == pytest.approx([np.mean(values), np.std(values), np.min(values)])

    seen = []  # the sets themselves: disjoint, n train sequences each
    monkeypatch.setattr(evaluation, "piece_overlaps", lambda m: seen.append(m) or piece_overlaps(m))
    unique, index = np.unique(train, axis=0, return_inverse=True)
    evaluation.train_row(unique, 4, 3, 0, train_oa[:4])
    picked = [[int(np.flatnonzero((unique == m).all(1))[0]) for m in melodies] for melodies in seen]
    assert [len(p) for p in picked] == [4, 4, 4] and len(set(sum(picked, []))) == 12
    with pytest.raises(
        UserError, match=f"train_sets=9: 9 disjoint sets of n=4 need 36 train sequences, there are {len(unique)}"
    ):
        evaluation.train_row(unique[:35], 4, 9, 0, train_oa[:4])
    run_config = load_checkpoint(run / "last.ckpt")["run_config"]  # eval_meters: the train tunes of those meters
    assert np.array_equal(train_events(run_config, 4, ["4/4"]), train)  # the tiny tunes' meter: all of them
    assert train_events(run_config, 4, ["7/8"]).shape == (0, 128)


def test_evaluate_midi_dir_scores_a_folder_of_midi_files_against_the_same_ground_truth(melody_run, tmp_path):
    """midi_dir=[a,b]: a row per folder after the DDPM row. The ground truth written as MIDI files scores as
    the ground truth does (the four figures 1, the same per-piece OAs, statistics and, re-encoded, latent
    FD 0); its bars shuffled score below 1; every other row is unchanged."""
    from ddpm.evaluation import other_tunes
    from ddpm.music.events import write_midi
    from ddpm.music.scoring import OA_COLUMNS

    root, run = melody_run
    stored = np.load(root / "latents" / "eval_events.npz")
    events, titles = stored["events"], stored["titles"]
    orders = (np.random.default_rng(s).permutation(len(events)) for s in range(3, 40))
    split, order = next((s, o) for s, o in enumerate(orders, 3) if len(other_tunes(o[4:], titles, o[:4])) >= 4)
    truth = events[
        order[:4]
    ]  # split_seed=<split>'s ground truth, with 4 sequences of other tunes left for real vs real
    shuffled = np.stack(
        [m.reshape(-1, 16)[np.random.default_rng(k).permutation(len(m) // 16)].ravel() for k, m in enumerate(truth)]
    )
    for folder, melodies in (("truth", truth), ("shuffled", shuffled)):
        for k, melody in enumerate(melodies):
            write_midi(melody, tmp_path / folder / f"tune_{k}.mid")

    table = quick_table(
        run, tmp_path / "with", f"split_seed={split}", f"midi_dir=[{tmp_path / 'truth'},{tmp_path / 'shuffled'}]"
    )
    plain = quick_table(run, tmp_path / "without", f"split_seed={split}")
    scored, without = by_set(table), by_set(plain)
    truth, mixed = f"MIDI {tmp_path / 'truth'}", f"MIDI {tmp_path / 'shuffled'}"
    unconditional = list(without)[: list(without).index("DDPM") + 1]
    assert list(scored) == [*unconditional, truth, mixed, *list(without)[len(unconditional) :]]
    for name, row in without.items():  # every other row as without them, every column
        assert all(scored[name][key] == row[key] for key in row if key != "interval"), name
    gt, midi = scored["ground truth"], scored[truth]
    assert all(midi[key] == pytest.approx(1.0) for key in OA_COLUMNS)
    assert midi["overlaps"] == gt["overlaps"] and midi["note"] == "4 of 4 files"  # every tune ends held (helpers)
    for key in ("notes_per_bar", "out_of_key", "repeated_bars", "loops"):
        assert midi[key] == pytest.approx(gt[key]), key
    assert midi["pc_distance"] == pytest.approx(0.0) and midi["latent_fd"] == pytest.approx(0.0, abs=1e-3)
    assert min(scored[mixed][key] for key in OA_COLUMNS) < 0.999
    assert table["meta"]["midi_dir"][str(tmp_path / "truth")] == [f"tune_{k}.mid" for k in range(4)]
    assert table["meta"]["eval_dir"] == plain["meta"]["eval_dir"]  # the ground truth's folder, not a MIDI one
    assert table["meta"]["sampling_seconds"]["midi_dir"] >= 0 and "midi_dir" not in plain["meta"]["sampling_seconds"]


def test_midi_row_draws_n_files_and_ends_short_ones_with_rest(tmp_path):
    """n of a folder's files, drawn with the seed; a file longer than the model is cut, a shorter one ends
    its sounding last note where it ends (never looped nor moved: an opening rest bar stays), a file without
    pitched notes in the model's bars is a silent melody, counted in the note."""
    import pretty_midi

    from ddpm.evaluation import midi_row
    from ddpm.music.events import NOTE_OFF, write_midi

    class Codec:  # the latent columns need only the encoder
        def encode_latents(self, melodies):
            return np.zeros((len(melodies), 4, 8), np.float32)

    scale = np.zeros(96, np.int64)
    scale[16::8] = np.arange(60, 70) - 21 + 2  # rest in bar 1, then a note every half bar to the end (held)
    write_midi(scale, tmp_path / "a_short.mid")
    write_midi(np.tile(scale, 3), tmp_path / "b_long.mid")  # 288 steps
    drums = pretty_midi.PrettyMIDI()
    drums.instruments.append(pretty_midi.Instrument(0, is_drum=True))
    drums.instruments[0].notes.append(pretty_midi.Note(90, 36, 0.0, 0.5))
    drums.write(str(tmp_path / "c_drums.mid"))
    late = np.zeros(208, np.int64)
    late[200] = scale[16]  # its only note in bar 13: nothing in the model's 8 bars
    write_midi(late, tmp_path / "d_late.mid")
    overlap = pretty_midi.PrettyMIDI(initial_tempo=120.0)  # a 16th step = 0.125 s
    overlap.instruments.append(pretty_midi.Instrument(0))
    overlap.instruments[0].notes += [pretty_midi.Note(90, 60, 0.0, 5.0), pretty_midi.Note(90, 62, 1.0, 2.0)]
    overlap.write(str(tmp_path / "e_overlap.mid"))  # 60 cut at step 8 by 62, which ends at 16; the file at 40
    write_midi(np.roll(scale, 8), tmp_path / "f_roll.mid")

    row, names = midi_row(str(tmp_path), 6, 128, 0, Codec())
    assert names == ["a_short.mid", "b_long.mid", "c_drums.mid", "d_late.mid", "e_overlap.mid", "f_roll.mid"]
    assert row.name == f"MIDI {tmp_path}" and row.latents.shape == (6, 4, 8)
    assert row.note == "6 of 6 files; 3 end before bar 8: rest after; 2 without notes in bars 1-8"
    short, long, drum, late_row, ended = row.melodies[:5]
    assert np.array_equal(short[:96], scale) and short[96] == NOTE_OFF and not short[97:].any()
    assert np.array_equal(long, np.tile(scale, 3)[:128]) and not drum.any() and not late_row.any()
    assert ended[[0, 8, 16]].tolist() == [41, 43, NOTE_OFF] and not ended[17:].any()  # MIDI 60, 62, its end
    picks = [midi_row(str(tmp_path), 3, 128, seed, Codec())[1] for seed in range(6)]
    assert all(len(set(p)) == 3 and p == sorted(p) for p in picks) and len({tuple(p) for p in picks}) > 1
    assert picks[0] == midi_row(str(tmp_path), 3, 128, 0, Codec())[1]  # the seed decides


def test_evaluate_and_sample_never_overwrite_an_earlier_run_and_repaint_keeps_the_guidance(
    melody_run, monkeypatch, tmp_path
):
    """Without out_dir, a second evaluation or sampling run writes a new folder (<name>-2) beside the first; the
    RePaint row infills with the DDPM infilling row's guidance unless its spec sets one."""
    from ddpm.evaluation import evaluate
    from ddpm.module import DiffusionModule
    from ddpm.sampling import sample

    run = tmp_path / "run"  # a copy: the folder names asserted below are this test's alone
    run.mkdir()
    shutil.copy(melody_run[1] / "last.ckpt", run)
    used = []  # (progress name, sampler) of each DiffusionModule.sample call
    real_sample = DiffusionModule.sample
    monkeypatch.setattr(
        DiffusionModule,
        "sample",
        lambda self, *a, **kw: used.append((kw.get("progress"), kw.get("sampler"))) or real_sample(self, *a, **kw),
    )
    repaint = "repaint={_target_: ddpm.samplers.AncestralSampler, resample: 1, jump: 1}"
    folders = []
    for guidance in ("", ", guidance: 0"):
        cfg = compose_config(
            "evaluate",
            [f"ckpt={run / 'last.ckpt'}", "n=4", "real_repeats=2", "bootstrap=20", "name=fresh"]
            + ["sampler=fast", "sampler.steps=4", repaint[:-1] + guidance + "}"],
        )
        folders.append(evaluate(cfg)["json"].parent)
    assert folders == [run / "eval" / "fresh", run / "eval" / "fresh-2"]
    assert json.loads((folders[0] / "table.json").read_text())["rows"][0]["n"] == 4  # the first table is kept
    repaints = [s for name, s in used if name == "DDPM infilling (RePaint)"]
    assert [s.guidance for s in repaints] == [4.0, 0.0] and all(s.resample == 1 for s in repaints)
    assert all(s.guidance == 4.0 for name, s in used if name == "DDPM infilling")

    records = [
        sample(sample_cfg([f"ckpt={run / 'last.ckpt'}", "n=2", "seed=77", *o]))["record"]
        for o in ([], ["refill=noise"])
    ]
    assert [r.parent for r in records] == [run / "samples" / "last_seed77", run / "samples" / "last_seed77-2"]
    settings = [json.loads(r.read_text()) for r in records]  # and each record says how its samples were made
    assert [r["refill"] for r in settings] == ["shared", "noise"] and all(r["loops"] for r in settings)
    assert all(r["temperature"] == 0 and r["period_guidance"] is None for r in settings)  # not period-conditioned


def infill_song(run: Path, tmp_path: Path, steps: int, seed: int, n: int, infill: str) -> np.ndarray:
    """A random song of ``steps`` (a note every quarter) written to ``tmp_path/song.mid`` and infilled by
    ``sample.py`` into ``tmp_path/out`` (``n`` samples, frames ``infill``); returns its events."""
    from ddpm.music.events import write_midi
    from ddpm.sampling import sample

    events = np.zeros(steps, np.int64)
    events[::4] = 2 + 60 - 21 + np.random.default_rng(seed).integers(-7, 8, steps // 4)
    song = write_midi(events, tmp_path / "song.mid")
    overrides = [f"ckpt={run / 'last.ckpt'}", f"n={n}", f"infill={infill}", f"infill_midi={song}"]
    sample(compose_config("sample", overrides + [f"out_dir={tmp_path / 'out'}", "sampler=ddim", "sampler.steps=5"]))
    return events


def test_infill_midi_keeps_the_users_frames_exactly(melody_run, tmp_path):
    from ddpm.music.events import pad_with_rest, read_midi
    from ddpm.sampling import load_checkpoint, midi_melody, restore

    _, run = melody_run
    infill_song(run, tmp_path, 96, 5, 3, "[1,3]")  # 3 windows: shorter than the model's 4 frames, so it is looped
    song = tmp_path / "song.mid"
    generated = np.load(tmp_path / "out" / "generated.npz")["samples"]
    original = np.load(tmp_path / "out" / "original.npz")["samples"]
    _, codec = restore(load_checkpoint(run / "last.ckpt"))
    expected = codec.encode_latents(midi_melody(song, 4 * 32)[None])[0]
    np.testing.assert_allclose(original, np.broadcast_to(expected, original.shape), atol=1e-5)
    np.testing.assert_array_equal(generated[:, [0, 3]], original[:, [0, 3]])  # kept frames: the originals
    assert not np.allclose(generated[:, 1:3], original[:, 1:3])
    looped = midi_melody(song, 128)
    np.testing.assert_array_equal(looped[96:], looped[:32])  # played again from the start
    for k in range(3):  # the MIDI files: the user's own notes in the kept bars, not the MusicVAE's reconstruction
        back = pad_with_rest(read_midi(tmp_path / "out" / f"generated_{k:03d}.mid")[0], 128)
        np.testing.assert_array_equal(back[np.r_[0:32, 96:128]], looped[np.r_[0:32, 96:128]])
        original = pad_with_rest(read_midi(tmp_path / "out" / f"original_{k:03d}.mid")[0], 128)
        np.testing.assert_array_equal(original, looped)
    decoded = codec.melodies_from_latents(generated)
    assert not np.array_equal(decoded[:, np.r_[0:32, 96:128]], np.stack([looped[np.r_[0:32, 96:128]]] * 3))


def test_infill_midi_writes_the_users_notes_where_a_kept_loop_copies_them(melody_run, tmp_path):
    """A song A B played again (A B A B) with frame 1 regenerated: the loop its kept frames show (period 2)
    makes frame 1 a copy of frame 3, so the files hold the user's own B there, not the MusicVAE's decoding."""
    from ddpm.music.events import pad_with_rest, read_midi
    from ddpm.sampling import load_checkpoint, restore

    _, run = melody_run
    events = infill_song(run, tmp_path, 64, 7, 2, "[1,2]")  # two windows, A and B
    record = json.loads((tmp_path / "out" / "record.json").read_text())
    assert record["periods"] == [2, 2]
    _, codec = restore(load_checkpoint(run / "last.ckpt"))
    generated = np.load(tmp_path / "out" / "generated.npz")["samples"]
    decoded = codec.melodies_from_latents(generated)
    for k in range(2):
        back = pad_with_rest(read_midi(tmp_path / "out" / f"generated_{k:03d}.mid")[0], 128)
        np.testing.assert_array_equal(back, np.tile(events, 2))  # every frame the user's: kept or a kept one's copy
        assert not np.array_equal(decoded[k, 32:64], events[32:])  # which the decoding alone does not give


def test_infill_midi_bad_file_is_a_user_error(melody_run, tmp_path):
    from ddpm.errors import UserError
    from ddpm.sampling import sample

    _, run = melody_run
    bad = tmp_path / "notes.mid"
    bad.write_text("not a midi file")
    cfg = sample_cfg([f"ckpt={run / 'last.ckpt'}", "n=2", "infill=[1,3]", f"infill_midi={bad}"])
    with pytest.raises(UserError, match="infill_midi=.*notes.mid"):
        sample(cfg)
    cfg = sample_cfg([f"ckpt={run / 'last.ckpt'}", "n=2", "infill=[3,9]", f"infill_midi={bad}"])
    with pytest.raises(UserError, match=r"infill=\[3,9\]"):
        sample(cfg)
    cfg = sample_cfg([f"ckpt={run / 'last.ckpt'}", "n=2", "infill=[1,3]", f"infill_midi={tmp_path}"])
    with pytest.raises(UserError, match=r"infill_midi=.*: a folder \(expected a .mid file with a melody\)"):
        sample(cfg)


def test_refilled_dims_follow_the_seed():
    from ddpm.codecs.latents import LatentCodec
    from ddpm.latent_space import LatentSpace

    codec = LatentCodec()
    codec.space = LatentSpace(dim=16, seq_len=4, dims=[1, 5, 7], data_min=-2.0, data_max=2.0)
    x = torch.rand(2, 4, 3) * 2 - 1
    a, b, a2 = codec.decode(x, seed=1), codec.decode(x, seed=2), codec.decode(x, seed=1)
    np.testing.assert_array_equal(a, a2)
    np.testing.assert_array_equal(a[..., [1, 5, 7]], b[..., [1, 5, 7]])
    assert not np.allclose(np.delete(a, [1, 5, 7], -1), np.delete(b, [1, 5, 7], -1))
    torch.testing.assert_close(codec.to_model(a), x)  # the inverse of decode
    longer = np.concatenate([a, np.full((2, 3, 16), 9.0, np.float32)], axis=1)  # a record with 3 frames more
    torch.testing.assert_close(codec.to_model(longer), x)  # the first seq_len frames are kept


def test_refill_shared_keeps_equal_frames_equal():
    """``shared``: one draw per sequence, so frames the model made equal decode alike (``noise``: they do not)."""
    from ddpm.codecs.latents import LatentCodec
    from ddpm.errors import ConfigError
    from ddpm.latent_space import LatentSpace

    space = LatentSpace(dim=64, seq_len=4, dims=[1, 5, 7], data_min=-2.0, data_max=2.0)
    x = torch.rand(300, 4, 3) * 2 - 1
    x[:, 2] = x[:, 0]  # a repeat: frame 2 equals frame 0
    dropped = np.delete(np.arange(64), [1, 5, 7])
    full = {}
    for refill in ("noise", "shared", "zeros"):
        codec = LatentCodec(refill=refill)
        codec.space = space
        full[refill] = codec.decode(x, seed=3)
        torch.testing.assert_close(codec.to_model(full[refill]), x)  # kept dims: the inverse, whatever the refill
    shared, noise = full["shared"][..., dropped], full["noise"][..., dropped]
    assert np.array_equal(full["shared"][:, 2], full["shared"][:, 0])
    assert (shared == shared[:, :1]).all() and not np.allclose(shared[0], shared[1])  # per sequence, not global
    assert not np.allclose(full["noise"][:, 2], full["noise"][:, 0])
    assert abs(shared[:, 0].std() - 1) < 0.05 and abs(noise.std() - 1) < 0.05  # N(0, 1) either way
    assert not full["zeros"][..., dropped].any()
    with pytest.raises(ConfigError, match="codec.refill='frame': expected one of noise, shared, zeros"):
        LatentCodec(refill="frame")


def test_evaluate_bad_values_are_user_errors(melody_run, tmp_path):
    from ddpm.errors import UserError
    from ddpm.evaluation import evaluate

    root, run = melody_run
    other = tmp_path / "other"
    shutil.copytree(root / "latents", other)
    few, broken = tmp_path / "few", tmp_path / "broken"
    shutil.copytree(root / "midi", few, ignore=lambda folder, names: sorted(names)[1:])
    shutil.copytree(root / "midi", broken, ignore=lambda folder, names: sorted(names)[3:])  # 3 and a bad one
    (broken / "bad.mid").write_bytes(b"MThd not really MIDI")
    (tmp_path / "a_file").write_text("a user's notes, not to be replaced by a table")
    manifest = json.loads((other / "manifest.json").read_text())
    manifest["inputs"]["musicvae_sha256"] = "0" * 16
    (other / "manifest.json").write_text(json.dumps(manifest))
    for overrides, message in (
        (["eval_meters=['7/8']"], r"eval_meters=\['7/8'\]: no eval sequences there \(meters: \['4/4'\]\)"),
        ([f"eval_dir={other}"], "made with another MusicVAE"),
        (["n=2"], "n=2: expected at least 4"),
        (["draws=0"], "draws=0: expected a whole number of DDPM sample sets >= 1"),
        (["draws=1.5"], "draws=1.5: expected a whole number"),
        (["train_sets=-1"], "train_sets=-1: expected a whole number of train-split sets >= 0"),
        (["train_sets=true"], "train_sets=True: expected a whole number"),
        (["n=4", "train_sets=99"], "train_sets=99: 99 disjoint sets of n=4 need 396 train sequences, there are"),
        (["n=400"], "n=400: the eval split has"),
        (["n=6"], r"n=6: the eval split has 11 sequences; expected n <= 5 \(the ground truth and a disjoint"),
        (["real_repeats=0"], "real_repeats=0: expected a whole number of real-vs-real draws >= 1"),
        (["bootstrap=0"], "bootstrap=0: expected a whole number of bootstrap resamples >= 1"),
        (["bootstrap=-5"], "bootstrap=-5: expected a whole number of bootstrap resamples >= 1"),
        (["repaint=5"], "repaint=5: expected a sampler"),
        (["repaint={resample: 5, jump: 10}"], r"repaint=\{'resample': 5, 'jump': 10\}: expected a sampler"),
        (["eval_meters=5"], r"eval_meters=5: expected a meter or a list of them"),
        (["eval_meters=[3]"], r"eval_meters=\[3\]: expected a meter or a list of them"),
        (["eval_meters=7/8"], r"eval_meters=\['7/8'\]: no eval sequences there"),  # one meter, not its characters
        (["ckpt=null"], "ckpt=None: expected a checkpoint file"),
        ([f"out_dir={tmp_path / 'a_file'}"], "out_dir=.*a_file: a file is there; expected a folder"),
        (["refill=frame"], "refill='frame': expected one of noise, shared, zeros"),
        (["loops=maybe"], "loops='maybe': expected true or false"),
        (["temperature=abc"], "temperature='abc': expected a number in \\[0.0, 2.0\\]"),
        (["temperature=true"], "temperature=True: expected a number"),
        (["sampler.guidance=-1"], r"sampler .*'guidance': -1.*guidance must be a finite number >= 0"),
        (["sampler.guidance=inf"], r"sampler .*guidance must be a finite number >= 0 .0: none., got inf"),
        (["sampler=ddim", "sampler.eta=nan"], r"sampler .*eta a number in \[0, 1\], got steps=50, eta=nan"),
        (["sampler=ddim", "sampler.eta=2"], r"sampler .*eta a number in \[0, 1\], got steps=50, eta=2"),
        (["sampler=fast", "sampler.steps=0"], r"sampler .*'steps': 0.*steps must be >= 1"),
        (["ckpt=" + str(tmp_path / "none.ckpt")], "checkpoint not found"),
        (["n=4", f"midi_dir={tmp_path / 'nowhere'}"], "midi_dir=.*nowhere: no such folder"),
        (["n=4", f"midi_dir={few}"], r"midi_dir=.*few: 1 MIDI files; expected at least n=4"),
        (["n=4", f"midi_dir=[{few},{few}/]"], r"midi_dir=.*: a folder is named twice"),
        (["n=4", f"midi_dir={broken}"], r"midi_dir=.*broken: bad.mid: not a readable MIDI file"),
        (["midi_dir=true"], "midi_dir=True: expected a folder of .mid files or a list of them"),
        (["midi_dir=[]"], r"midi_dir=\[\]: expected a folder of .mid files or a list of them"),
        (["midi_dir=2024"], "midi_dir=2024: no such folder"),  # a folder name Hydra reads as a number
        (["sigma=foo"], "sigma='foo': expected posterior .beta tilde. or beta"),
        (["split_seed=-1"], r"split_seed=-1: expected an integer >= 0"),
        (["device=foo"], "device='foo': expected cpu, cuda or cuda:<index>"),
        (["device=meta"], "device=meta: expected cpu, cuda or cuda:<index>"),
        (["ckpt=" + str(tmp_path / "none.ckpt"), "device=foo"], "device='foo'"),  # checked before the file is read
        (["ckpt=" + str(tmp_path / "none.ckpt"), "sigma=foo"], "sigma='foo'"),
        (["name=a/b"], r"name='a/b': expected a folder name for eval/<name> \(no slashes\)"),  # it wrote eval/a/b
        (["name=.."], r"name='..': expected a folder name"),
        ([f"out_dir={tmp_path / 'a_file' / 'table'}"], r"out_dir=.*table: cannot write in .*a_file; expected a folder"),
    ):
        cfg = compose_config("evaluate", [f"ckpt={run / 'last.ckpt'}", *overrides])
        with pytest.raises(UserError, match=message):
            evaluate(cfg)


def test_sample_draws_loops_from_the_runs_period_prior(melody_run, tmp_path, caplog, monkeypatch):
    """The tiny run's prior is its train split's; sample.py draws each sample's period from it (recorded)
    and the written latents repeat with it exactly; a checkpoint without a prior samples free, with a warning."""
    import torch

    from ddpm.module import DiffusionModule
    from ddpm.periods import PeriodPrior, smallest_periods
    from ddpm.sampling import load_checkpoint, restore, sample

    root, run = melody_run
    ckpt = load_checkpoint(run / "last.ckpt")
    module, codec = restore(ckpt)
    from omegaconf import OmegaConf

    from ddpm.training import build

    data = build(OmegaConf.create(ckpt["run_config"])["data"], "data")
    data.setup("fit")
    assert codec.periods.probs.tolist() == PeriodPrior.fit(data.train_set.tensors[0]).probs.tolist()
    out = tmp_path / "out"
    told = []  # what DiffusionModule.sample is handed for a period-conditioned network
    real_sample = DiffusionModule.sample
    monkeypatch.setattr(
        DiffusionModule, "sample", lambda self, *a, **kw: told.append(kw.get("periods")) or real_sample(self, *a, **kw)
    )
    sample(
        compose_config(
            "sample", [f"ckpt={run / 'last.ckpt'}", "n=24", f"out_dir={out}", "sampler=ddim", "sampler.steps=4"]
        )
    )
    periods = json.loads((out / "record.json").read_text())["periods"]
    assert told[0].tolist() == periods
    generated = torch.from_numpy(np.load(out / "generated.npz")["samples"])
    assert len(periods) == 24 and smallest_periods(generated).tolist() == periods
    assert set(periods) <= {p for p, q in enumerate(codec.periods.probs.tolist()) if q > 0}
    # loops=false, and a checkpoint from before the prior: free sequences.
    sample(
        compose_config(
            "sample",
            [f"ckpt={run / 'last.ckpt'}", "n=4", f"out_dir={out}", "loops=false", "sampler=ddim", "sampler.steps=4"],
        )
    )
    assert json.loads((out / "record.json").read_text())["periods"] is None
    del ckpt["codec"]["periods"]
    torch.save(ckpt, tmp_path / "old.ckpt")
    with caplog.at_level("WARNING", logger="ddpm.sampling"):
        sample(
            compose_config(
                "sample", [f"ckpt={tmp_path / 'old.ckpt'}", "n=4", f"out_dir={out}", "sampler=ddim", "sampler.steps=4"]
            )
        )
    assert json.loads((out / "record.json").read_text())["periods"] is None
    assert "holds no period prior" in caplog.text


def test_infilling_copies_the_kept_frames_of_the_loop_it_shows(melody_run, tmp_path):
    """Eval sequences that loop every 2 frames (A B A B), frame 1 regenerated: the kept frames show the loop,
    so the new frame 1 is kept frame 3 itself, all 512 dims; with loops=false it is generated."""
    import torch

    from ddpm.periods import smallest_periods
    from ddpm.sampling import eval_latents, load_checkpoint, sample

    _, run = melody_run
    originals = eval_latents(load_checkpoint(run / "last.ckpt")["run_config"])
    two = smallest_periods(torch.from_numpy(originals)).numpy() == 2
    n = int(np.nonzero(two)[0].max()) + 1  # sample.py infills the first n eval sequences
    assert two.sum() >= 1
    for loops in (True, False):
        out = tmp_path / str(loops)
        overrides = [f"ckpt={run / 'last.ckpt'}", f"n={n}", "infill=[1,2]", f"out_dir={out}", f"loops={loops}"]
        sample(sample_cfg(overrides + ["sampler=ddim", "sampler.steps=4"]))
        generated = np.load(out / "generated.npz")["samples"]
        np.testing.assert_array_equal(generated[:, [0, 2, 3]], originals[:n, [0, 2, 3]])
        assert np.array_equal(generated[two[:n], 1], originals[:n][two[:n], 3]) == loops


def test_infill_track_picks_a_track_of_the_users_file(melody_run, tmp_path):
    """By default the melody (no track here has 5 pitches: the one with the most notes; not the first, not
    the drums); infill_track=k the k-th pitched track in file order; a track the file does not have, or
    infill_track without a file, is a one-line error."""
    from ddpm.errors import ConfigError
    from ddpm.sampling import midi_melody, sample
    from tests.helpers import write_tracks

    parts = [([36] * 40, 1), ([72, 74, 76, 77], 8), ([40, 43] * 8, 4)]  # drums, the melody, a bass (pitches, every)
    song = tmp_path / "band.mid"
    tracks = [[(p, i * every, i * every + 1) for i, p in enumerate(pitches)] for pitches, every in parts]
    write_tracks(song, tracks, programs=[0, 0, 33], drums=(0,))

    def onsets(track=None):
        events = midi_melody(song, 64, track)
        return np.flatnonzero(events >= 2).tolist(), (events[events >= 2] + 19).tolist()

    assert onsets() == onsets(1) == (list(range(0, 64, 4)), [40, 43] * 8)  # the bass: 16 notes against 4
    assert onsets(0) == ([0, 8, 16, 24, 32, 40, 48, 56], [72, 74, 76, 77] * 2)  # the tune, played again
    _, run = melody_run
    cfg = compose_config(
        "sample", [f"ckpt={run / 'last.ckpt'}", "n=2", "infill=[1,3]", f"infill_midi={song}", "infill_track=2"]
    )
    with pytest.raises(ConfigError, match=r"^infill_track=2: band\.mid: the file has 2 pitched tracks \(0 to 1\)$"):
        sample(cfg)
    cfg = sample_cfg([f"ckpt={run / 'last.ckpt'}", "n=2", "infill=[1,3]", "infill_track=0"])
    with pytest.raises(ConfigError, match=r"^infill_track=0 needs infill_midi=<file>"):
        sample(cfg)


def test_infill_midi_ends_the_files_last_note_before_it_is_played_again(tmp_path):
    from ddpm.music.events import NOTE_OFF, write_midi
    from ddpm.sampling import midi_melody

    events = np.zeros(40, np.int64)  # 2.5 windows; the last note sounds to the file's end
    events[[0, 12, 36]] = [41, 43, 45]
    events[8] = NOTE_OFF
    looped = midi_melody(write_midi(events, tmp_path / "song.mid"), 128)
    assert looped[:40].tolist() == events.tolist()
    assert looped[40] == NOTE_OFF and not looped[41:64].any()  # rest to the window's end, not a held note
    assert looped[64:128].tolist() == looped[:64].tolist()  # played again from its start


def test_infill_midi_starts_at_the_bar_of_the_first_note_and_a_bad_file_is_one_line(tmp_path):
    import struct

    from ddpm.errors import ConfigError
    from ddpm.music.events import NOTE_OFF, write_midi
    from ddpm.sampling import midi_melody

    events = np.zeros(64, np.int64)  # two bars of rest, then a 2-bar tune whose last note sounds to the end
    events[[37, 41, 45, 60]] = [41, 43, 45, 48]
    looped = midi_melody(write_midi(events, tmp_path / "late.mid"), 128)
    assert looped[:32].tolist() == events[32:].tolist()  # from bar 3, the bar of its first note
    assert looped[32] == NOTE_OFF and looped[33:64].tolist() == events[33:64].tolist()  # the held note ends
    track = bytes([0, 0xFF, 0x51, 0, 0, 0xFF, 0x2F, 0])  # a tempo event with no bytes: pretty_midi's IndexError
    bad = tmp_path / "tempo.mid"
    bad.write_bytes(b"MThd" + struct.pack(">IHHH", 6, 0, 1, 96) + b"MTrk" + struct.pack(">I", len(track)) + track)
    with pytest.raises(ConfigError, match=r"^infill_midi=.*tempo\.mid: not a readable MIDI melody"):
        midi_melody(bad, 128)


def test_real_vs_real_draws_other_tunes_than_the_ground_truths(melody_run, tmp_path, monkeypatch):
    """A long tune is cut into several eval sequences; the real-vs-real row takes none of the ground truth's
    tunes. With every sequence one tune's, no other tune is left, and the command says so."""
    import ddpm.evaluation as evaluation
    from ddpm.errors import UserError
    from ddpm.evaluation import other_tunes

    titles = np.array(["a", "b", "a", "c", "b", "d"])
    assert other_tunes(np.array([1, 3, 4, 5]), titles, np.array([0, 2, 4])).tolist() == [3, 5]
    _, run = melody_run
    real = evaluation.read_eval_events

    def one_tune(folder, with_meters=False):
        events, titles, *meters = real(folder, with_meters)
        return (events, ["the same tune"] * len(titles), *meters)

    monkeypatch.setattr(evaluation, "read_eval_events", one_tune)
    cfg = compose_config("evaluate", [f"ckpt={run / 'last.ckpt'}", "n=4", f"out_dir={tmp_path / 'e'}"])
    with pytest.raises(UserError, match=r"n=4: the eval split has 0 sequences of tunes outside this ground truth"):
        evaluation.evaluate(cfg)

"""The EMA of the denoiser's weights: update rule with warm-up, used for sampling, kept across resume."""

from functools import partial

import lightning as L
import pytest
import torch

from ddpm.denoisers import DenseDDPM
from ddpm.diffusion import GaussianDiffusion
from ddpm.module import DiffusionModule
from ddpm.schedules import linear_betas


class WeightRecorder(L.Callback):
    """The raw weights after each optimizer step, with the global step the EMA update sees."""

    def __init__(self):
        self.steps: list[int] = []
        self.weights: list[list[torch.Tensor]] = []

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        self.steps.append(trainer.global_step)
        self.weights.append([p.detach().clone() for p in module.denoiser.parameters()])


def make_module(ema_decay: float | None, seed: int = 0) -> DiffusionModule:
    torch.manual_seed(seed)
    return DiffusionModule(
        DenseDDPM((2,), num_layers=1, mlp_dims=16, emb_dim=8),
        GaussianDiffusion(linear_betas(20)),
        optimizer=partial(torch.optim.SGD, lr=0.5),  # large steps: the raw weights move far from the EMA
        ema_decay=ema_decay,
    )


def fit(module: DiffusionModule, max_steps: int, ckpt_path=None, extra=()) -> tuple[L.Trainer, WeightRecorder]:
    recorder = WeightRecorder()
    data = torch.randn(64, 2, generator=torch.Generator().manual_seed(0))
    trainer = L.Trainer(
        max_steps=max_steps,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[recorder, *extra],
    )
    trainer.fit(module, train_dataloaders=torch.utils.data.DataLoader(data, batch_size=16), ckpt_path=ckpt_path)
    return trainer, recorder


def hand_ema(start: list[torch.Tensor], recorder: WeightRecorder, ema_decay: float) -> list[torch.Tensor]:
    """ema <- d ema + (1 - d) w after step k, d = min(ema_decay, (1 + k) / (10 + k)) (TF's warm-up)."""
    ema = [p.clone() for p in start]
    for k, weights in zip(recorder.steps, recorder.weights, strict=True):
        d = min(ema_decay, (1 + k) / (10 + k))
        ema = [d * e + (1 - d) * w for e, w in zip(ema, weights, strict=True)]
    return ema


@pytest.mark.parametrize("ema_decay", [0.2, 0.999])  # 0.2: the cap takes over from step 2 (3/12 > 0.2)
def test_ema_update_with_warm_up_matches_hand_computation(ema_decay):
    module = make_module(ema_decay)
    start = [p.detach().clone() for p in module.denoiser.parameters()]
    _, recorder = fit(module, max_steps=3)
    assert recorder.steps == [1, 2, 3]
    expected = hand_ema(start, recorder, ema_decay)
    for (name, got), want in zip(module.ema.named_parameters(), expected, strict=True):
        assert torch.allclose(got, want, atol=1e-6), name
    assert not torch.allclose(expected[0], recorder.weights[-1][0], atol=1e-3)  # the EMA lags the raw weights


def test_sampling_uses_the_ema_weights():
    module = make_module(ema_decay=0.999)
    with torch.no_grad():
        for p in module.denoiser.parameters():  # the raw weights move away; the EMA stays at the init
            p.add_(0.5 * torch.randn_like(p))
    assert module.sampling_denoiser is module.ema
    got = module.sample(8, torch.Generator().manual_seed(3))
    ema = module.diffusion.sample(module.ema, (8, 2), torch.Generator().manual_seed(3))
    raw = module.diffusion.sample(module.denoiser, (8, 2), torch.Generator().manual_seed(3))
    assert torch.allclose(got, ema, atol=1e-6) and not torch.allclose(got, raw, atol=1e-3)
    # Without an EMA the raw weights sample.
    plain = make_module(ema_decay=None)
    assert plain.ema is None and plain.sampling_denoiser is plain.denoiser


def test_ema_survives_checkpoint_and_resume(tmp_path):
    ema_decay = 0.999
    module = make_module(ema_decay)
    trainer, _ = fit(module, max_steps=3)
    path = tmp_path / "run.ckpt"
    trainer.save_checkpoint(path)
    saved = torch.load(path, weights_only=False)["state_dict"]
    names = [name for name, _ in module.ema.named_parameters()]
    assert all(torch.equal(saved[f"ema.{n}"], p) for n, p in module.ema.named_parameters())
    assert any(not torch.equal(saved[f"ema.{n}"], saved[f"denoiser.{n}"]) for n in names)

    # A fresh module (other init) resumed for one more step: its EMA continues from the saved one,
    # with the warm-up of step 4.
    resumed = make_module(ema_decay, seed=1)
    _, recorder = fit(resumed, max_steps=4, ckpt_path=path)
    assert recorder.steps == [4]
    expected = hand_ema([saved[f"ema.{n}"] for n in names], recorder, ema_decay)
    for (name, got), want in zip(resumed.ema.named_parameters(), expected, strict=True):
        assert torch.allclose(got, want, atol=1e-6), name


def test_extra_emas_follow_the_modules_rule_and_survive_resume(tmp_path):
    """``ExtraEMA``: its copy of the module's decay equals the module's EMA exactly, another decay follows
    the hand-computed rule, the file holds both, and a resumed run continues them from the checkpoint."""
    from ddpm.callbacks import ExtraEMA

    module = make_module(0.9)
    start = [p.detach().clone() for p in module.denoiser.parameters()]
    extra = ExtraEMA([0.9, 0.2], tmp_path / "extra.pt")  # the cap 0.2 binds from step 2, 0.9 not in 5 steps
    trainer, recorder = fit(module, max_steps=3, extra=[extra])
    saved = torch.load(tmp_path / "extra.pt", weights_only=True)
    assert saved["step"] == 3 and set(saved) == {0.9, 0.2, "step"}
    names = [name for name, _ in module.ema.named_parameters()]
    assert all(torch.equal(saved[0.9][n], p) for n, p in module.ema.named_parameters())
    for name, want in zip(names, hand_ema(start, recorder, 0.2), strict=True):
        assert torch.allclose(saved[0.2][name], want, atol=1e-6), name
    assert any(not torch.equal(saved[0.2][n], saved[0.9][n]) for n in names)
    path = tmp_path / "run.ckpt"
    trainer.save_checkpoint(path)

    resumed = make_module(0.9, seed=1)  # another init: only the checkpoint can carry the averages on
    again = ExtraEMA([0.9, 0.2], tmp_path / "again.pt")
    _, recorder = fit(resumed, max_steps=5, ckpt_path=path, extra=[again])
    assert recorder.steps == [4, 5]
    after = torch.load(tmp_path / "again.pt", weights_only=True)
    assert all(torch.equal(after[0.9][n], p) for n, p in resumed.ema.named_parameters())
    for name, want in zip(names, hand_ema([saved[0.2][n] for n in names], recorder, 0.2), strict=True):
        assert torch.allclose(after[0.2][name], want, atol=1e-6), name

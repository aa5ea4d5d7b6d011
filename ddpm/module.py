"""DiffusionModule: thin Lightning glue around ``GaussianDiffusion`` and a denoiser."""

import copy
import functools
import zlib
from collections.abc import Callable

import lightning as L
import numpy as np
import torch
from torch import Tensor, nn
from torchmetrics import MeanMetric

from ddpm.calibration import spread_frames
from ddpm.checkpoint_io import CheckpointError
from ddpm.diffusion import GaussianDiffusion, SelfConditioning
from ddpm.errors import UserError
from ddpm.periods import Looped, PeriodGuided, repeat_frames, smallest_periods
from ddpm.progress import Progress
from ddpm.samplers import AncestralSampler, Sampler


class NonFiniteLossError(UserError):
    """Training produced a NaN/Inf loss or gradient; the update was not applied."""


def step_seed(seed: int, *keys: int) -> int:
    """A 63-bit seed mixed from ``seed`` and ``keys`` (rank, epoch, batch), well spread by SeedSequence."""
    return int(np.random.SeedSequence([seed, *keys]).generate_state(2, np.uint64)[0] >> np.uint64(1))


def ema_step(ema: nn.Module, model: nn.Module, decay: float, step: int) -> None:
    """Move ``ema``'s weights towards ``model``'s after optimizer step ``step``, with the warm-up of TF's
    ExponentialMovingAverage (decay min(decay, (1 + step) / (10 + step))): short runs are not
    dominated by the init."""
    rate = 1 - min(decay, (1 + step) / (10 + step))
    with torch.no_grad():
        for ema_p, p in zip(ema.parameters(), model.parameters()):
            ema_p.lerp_(p, rate)


def record_noise(x: Tensor, num_timesteps: int, seed: int = 0) -> tuple[Tensor, Tensor]:
    """Steps [B] and noise [B, *S] for each record, drawn from a seed made of the record's own bytes.

    Validation with these does not depend on batch size, order or how the records are split over
    devices, so ``val/loss`` on 2 processes equals ``val/loss`` on 1.
    """
    rows = x.detach().to("cpu", torch.float32).contiguous()
    steps, noise = [], []
    for row in rows:
        generator = torch.Generator().manual_seed(step_seed(seed, zlib.crc32(row.numpy().tobytes())))
        steps.append(torch.randint(0, num_timesteps, (1,), generator=generator))
        noise.append(torch.randn(row.shape, generator=generator))
    return torch.cat(steps).to(x.device), torch.stack(noise).to(x.device, x.dtype)


class DiffusionModule(L.LightningModule):
    """Trains ``denoiser`` with ``diffusion.loss`` and samples with an EMA copy of its weights.

    Args:
        denoiser: network with ``forward(x: [B, *S], t: [B]) -> [B, *S]`` and ``sample_shape``.
        diffusion: the Gaussian diffusion process (holds no weights).
        optimizer: partial optimizer, called with the parameters (``_partial_: true`` in config).
        scheduler: optional partial LR scheduler, stepped every optimizer step.
        ema_decay: decay of the exponential moving average of the weights used for validation
            and sampling (Ho et al. use 0.9999); ``None`` samples with the raw weights.
        seed: seed of the training steps and noise: batch ``b`` of epoch ``e`` on rank ``r`` draws
            from ``step_seed(seed, r, e, b)``, so ranks differ, resumed runs repeat, and nothing
            depends on what else used the global RNG before training.
        codec: turns samples into files (``ddpm.codecs``); its state (shape, latent statistics) is
            saved in every checkpoint under ``codec``, so sampling needs no data.

    ``spread`` (1: off) widens every unconditional sequence sample about its own mean
    (``ddpm.calibration``); ``SpreadCalibration`` sets it when training ends, and checkpoints keep it
    under ``spread``.
    """

    def __init__(
        self,
        denoiser: nn.Module,
        diffusion: GaussianDiffusion,
        optimizer: Callable[..., torch.optim.Optimizer] | None = None,
        scheduler: Callable[..., torch.optim.lr_scheduler.LRScheduler] | None = None,
        ema_decay: float | None = 0.999,
        seed: int = 0,
        codec=None,
    ):
        super().__init__()
        self.denoiser = denoiser
        self.diffusion = diffusion
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.ema_decay = ema_decay
        self.ema = copy.deepcopy(denoiser).requires_grad_(False) if ema_decay is not None else None
        self.seed = seed
        self.codec = codec
        self._compiled: Callable | None = None
        self.spread = 1.0
        # Sums and counts over all ranks, so each eval record weighs once; NaN is kept, not skipped.
        self.val_loss = MeanMetric(nan_strategy="disable")
        self._train_loss: Tensor | None = None

    @property
    def self_condition(self) -> bool:
        """Whether the denoiser reads its own x_0 estimate (``self_condition`` of ``TransformerDDPM``)."""
        return bool(getattr(self.denoiser, "self_condition", False))

    @property
    def period_condition(self) -> bool:
        """Whether the denoiser is told the loop it draws (``period_condition`` of ``TransformerDDPM``)."""
        return bool(getattr(self.denoiser, "period_condition", False))

    def batch_periods(self, batch: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Each training sequence's smallest period (``ddpm.periods``) [B]; with ``generator``, a share
        ``period_unknown`` of them is told -1 (unknown), so the network also learns to draw without one."""
        periods = smallest_periods(batch).to(batch.device)
        if generator is None:
            return periods
        unknown = torch.rand(periods.shape, generator=generator, device=generator.device).to(batch.device)
        return torch.where(unknown < self.denoiser.period_unknown, -1, periods)

    @property
    def sampling_denoiser(self) -> nn.Module:
        if self._compiled is not None:
            return self._compiled
        return self.ema if self.ema is not None else self.denoiser

    def chain_denoiser(self, period: Tensor | None = None) -> Callable[[Tensor, Tensor], Tensor]:
        """The sampling network as the ``denoiser(x_t, cond)`` of one sampling chain: a self-conditioned
        one is wrapped in ``SelfConditioning`` (it carries the chain's x_0 estimate), so make one per chain;
        a period-conditioned one is told ``period`` [B] (None: unknown), with the denoiser's
        ``period_guidance`` (``ddpm.periods.PeriodGuided``)."""
        net = self.sampling_denoiser
        weight = getattr(self.denoiser, "period_guidance", 1.0)
        if self.period_condition and period is not None and weight != 1:
            net = PeriodGuided(net, period, weight)
        elif self.period_condition:
            net = functools.partial(net, period=period)
        return SelfConditioning(self.diffusion, net) if self.self_condition else net

    def compile_sampling(self) -> None:
        """Sample through ``torch.compile`` of the sampling network (pays off for long runs)."""
        # object.__setattr__: a plain attribute, not a submodule, so state_dict keeps its keys
        object.__setattr__(self, "_compiled", torch.compile(self.sampling_denoiser))

    def training_generator(self, batch_idx: int) -> torch.Generator:
        """The generator of this batch's steps and noise, on this rank (see ``seed``)."""
        seed = step_seed(self.seed, self.global_rank, self.current_epoch, batch_idx)
        return torch.Generator(self.device).manual_seed(seed)

    def training_step(self, batch: Tensor, batch_idx: int) -> Tensor:
        generator = self.training_generator(batch_idx)
        net = self.denoiser
        if self.period_condition:
            net = functools.partial(net, period=self.batch_periods(batch, generator))
        loss = self.diffusion.loss(
            net, batch, generator=generator, self_condition=0.5 * self.self_condition, perturb=True
        )
        loss = loss.mean()
        self._train_loss = loss.detach()
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=True, batch_size=batch.shape[0])
        return loss

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        # Gradients are already summed over ranks here, so every rank stops at the same step, before
        # the update: the weights (and every checkpoint written so far) stay finite.
        grads = [p.grad for p in self.denoiser.parameters() if p.grad is not None]
        if not grads or self.trainer.precision == "16-mixed":  # fp16's scaler skips inf steps itself
            return
        if not torch.isfinite(torch.nn.utils.get_total_norm(grads)):
            loss = float(self._train_loss) if self._train_loss is not None else float("nan")
            raise NonFiniteLossError(
                f"non-finite training loss or gradients at epoch {self.current_epoch}, step {self.global_step} "
                f"(train/loss={loss:.4g}): training stopped before the update. Lower module.optimizer.lr, "
                f"or check the data for NaN/Inf values"
            )

    def validation_step(self, batch: Tensor, batch_idx: int) -> None:
        # Steps and noise follow from each record's values: the same every epoch, so val/loss moves
        # only with the weights, and independent of batching and of the number of devices.
        t, noise = record_noise(batch, self.diffusion.num_timesteps, self.seed)
        generator = torch.Generator(self.device).manual_seed(batch_idx)  # only for continuous noise levels
        # A self-conditioned network is scored as it samples: with its own estimate of x_0.
        net, self_condition = self.sampling_denoiser, float(self.self_condition)
        if self.period_condition:  # told every period, as it samples a drawn loop
            net = functools.partial(net, period=self.batch_periods(batch))
        loss = self.diffusion.loss(net, batch, t=t, noise=noise, generator=generator, self_condition=self_condition)
        self.val_loss.update(loss)
        self.log("val/loss", self.val_loss, prog_bar=True)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        if self.codec is not None:
            checkpoint["codec"] = self.codec.state_dict()
        checkpoint["spread"] = self.spread

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.check_fits({k: tuple(v.shape) for k, v in (checkpoint.get("state_dict") or {}).items()})

    def check_fits(self, shapes: dict[str, tuple[int, ...]]) -> None:
        """Resuming with another model's checkpoint (its weights' ``shapes``): one line naming the first
        mismatch, not a traceback."""
        own = {k: tuple(v.shape) for k, v in self.state_dict().items()}
        for key in sorted(set(own) | set(shapes)):
            if own.get(key) != shapes.get(key):
                raise CheckpointError(
                    f"the checkpoint's weights do not fit this model (first difference: {key}); resume with the "
                    f"config the run was trained with"
                )

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        if self.ema is not None:
            ema_step(self.ema, self.denoiser, self.ema_decay, self.global_step)

    def configure_optimizers(self):
        if self.optimizer is None:
            raise ValueError("DiffusionModule was built without an optimizer (module.optimizer in the config)")
        optimizer = self.optimizer(params=self.denoiser.parameters())
        if self.scheduler is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": self.scheduler(optimizer), "interval": "step"}}

    @torch.inference_mode()
    def sample(
        self,
        n: int,
        generator: torch.Generator | None = None,
        batch_size: int = 256,
        known: Tensor | None = None,
        mask: Tensor | None = None,
        sampler: Sampler | None = None,
        progress: str | None = None,
        loops: Tensor | None = None,
        periods: Tensor | None = None,
    ) -> Tensor:
        """Draw ``n`` samples [n, *S] in model space with the sampling (EMA) weights, in batches.

        ``sampler`` (``ddpm.samplers``) defaults to ancestral sampling over all T steps; ``known``
        and ``mask`` ([n, *S], mask 1 = keep) infill. With ``progress``, network evaluations done
        are logged under that name (``ddpm.progress``). ``loops`` ([n, frames] long, for sequences
        [n, frames, D]): frame i of sample b repeats frame ``loops[b, i]`` (``ddpm.periods.Looped``;
        ``loop_index`` of drawn periods, or ``infill_loops`` of the kept frames). ``periods`` [n]: what a
        period-conditioned network is told (None: unknown); when infilling, 0 (the kept frames show
        no loop: a tune that does not repeat or a loop they cannot show) is told as unknown.
        Unconditional sequence samples are widened by ``spread`` (``ddpm.calibration``); infilled ones
        are not (their middle is pinned to the kept frames).
        """
        sampler = sampler if sampler is not None else AncestralSampler()
        was_training = self.training
        self.eval()
        shape = tuple(self.denoiser.sample_shape)
        batches = -(-n // batch_size)
        counter = Progress(progress, batches * sampler.evaluations(self.diffusion), "network evaluations")
        chunks = []
        for start in range(0, n, batch_size):
            b = min(batch_size, n - start)
            k = known[start : start + b].to(self.device) if known is not None else None
            m = mask[start : start + b].to(self.device) if mask is not None else None
            told = periods[start : start + b].to(self.device) if periods is not None else None
            if told is not None and known is not None:
                told = torch.where(told > 0, told, -1)
            net = self.chain_denoiser(told)
            p = loops[start : start + b].to(self.device) if loops is not None else None
            net = Looped(self.diffusion, net, p) if p is not None else net
            steps = sampler.sample_progressive(self.diffusion, net, (b, *shape), generator, self.device, k, m)
            for t, x_t in steps:  # only the current x_t is kept
                if t < 0:
                    x_t = x_t if p is None else repeat_frames(x_t, p)  # the final x_0 (exact copies)
                    spread = known is None and self.spread != 1 and x_t.ndim == 3
                    chunks.append(spread_frames(x_t, self.spread) if spread else x_t)
                elif progress:
                    counter.step()
        if progress:
            counter.log(f"{n} samples")
        self.train(was_training)
        return torch.cat(chunks)

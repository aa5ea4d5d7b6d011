"""DiffusionModule: thin Lightning glue around ``GaussianDiffusion`` and a denoiser."""

import copy
from collections.abc import Callable

import lightning as L
import torch
from torch import Tensor, nn

from ddpm.diffusion import GaussianDiffusion


class DiffusionModule(L.LightningModule):
    """Trains ``denoiser`` with ``diffusion.loss`` and samples with an EMA copy of its weights.

    Args:
        denoiser: network with ``forward(x: [B, *S], t: [B]) -> [B, *S]`` and ``sample_shape``.
        diffusion: the Gaussian diffusion process (holds no weights).
        optimizer: partial optimizer, called with the parameters (``_partial_: true`` in config).
        scheduler: optional partial LR scheduler, stepped every optimizer step.
        ema_decay: decay of the exponential moving average of the weights used for validation
            and sampling (Ho et al. use 0.9999); ``None`` samples with the raw weights.
    """

    def __init__(
        self,
        denoiser: nn.Module,
        diffusion: GaussianDiffusion,
        optimizer: Callable[..., torch.optim.Optimizer] | None = None,
        scheduler: Callable[..., torch.optim.lr_scheduler.LRScheduler] | None = None,
        ema_decay: float | None = 0.999,
    ):
        super().__init__()
        self.denoiser = denoiser
        self.diffusion = diffusion
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.ema_decay = ema_decay
        self.ema = copy.deepcopy(denoiser).requires_grad_(False) if ema_decay is not None else None

    @property
    def sampling_denoiser(self) -> nn.Module:
        return self.ema if self.ema is not None else self.denoiser

    def training_step(self, batch: Tensor, batch_idx: int) -> Tensor:
        loss = self.diffusion.loss(self.denoiser, batch).mean()
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=True, batch_size=batch.shape[0])
        return loss

    def validation_step(self, batch: Tensor, batch_idx: int) -> None:
        # Same steps and noise for a batch every epoch, so val/loss moves only with the weights.
        generator = torch.Generator(self.device).manual_seed(batch_idx)
        loss = self.diffusion.loss(self.sampling_denoiser, batch, generator=generator).mean()
        self.log("val/loss", loss, prog_bar=True, sync_dist=True, batch_size=batch.shape[0])

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        if self.ema is None:
            return
        # Warm-up of TF's ExponentialMovingAverage: short runs are not dominated by the init.
        decay = min(self.ema_decay, (1 + self.global_step) / (10 + self.global_step))
        with torch.no_grad():
            for ema_p, p in zip(self.ema.parameters(), self.denoiser.parameters()):
                ema_p.lerp_(p, 1 - decay)

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
    ) -> Tensor:
        """Draw ``n`` samples [n, *S] in model space with the sampling (EMA) weights, in batches."""
        was_training = self.training
        self.eval()
        shape = tuple(self.denoiser.sample_shape)
        chunks = []
        for start in range(0, n, batch_size):
            b = min(batch_size, n - start)
            k = known[start : start + b].to(self.device) if known is not None else None
            m = mask[start : start + b].to(self.device) if mask is not None else None
            chunks.append(self.diffusion.sample(self.sampling_denoiser, (b, *shape), generator, self.device, k, m))
        self.train(was_training)
        return torch.cat(chunks)

"""Lightning glue for training the MusicVAE: ELBO with free bits and beta annealing."""

import math
from collections.abc import Callable

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor

from ddpm.music.musicvae import MusicVAE, kl_per_dim, transpose_events


class MusicVAEModule(L.LightningModule):
    """Loss = cross-entropy (summed over 32 steps) + beta_t * max(KL - free_bits, 0).

    Args:
        model: the MusicVAE.
        optimizer: partial optimizer.
        free_bits: nats of KL per window that cost nothing (Kingma et al. 2016; MusicVAE).
        max_beta: final KL weight; beta_t = max_beta * (1 - beta_rate ** step).
        transpose: augment each training window by a random shift in [-transpose, transpose].
        input_dropout: share of teacher-forced decoder inputs blanked in training.
        sampling_rate: k of MusicVAE's inverse-sigmoid scheduled sampling; the decoder is fed
            its own previous sample with probability 1 - k / (k + exp(step / k)). 0: always
            teacher forcing.
    """

    def __init__(
        self,
        model: MusicVAE,
        optimizer: Callable[..., torch.optim.Optimizer] | None = None,
        free_bits: float = 48.0,
        max_beta: float = 0.2,
        beta_rate: float = 0.999,
        transpose: int = 5,
        lr_decay: float = 0.9999,
        input_dropout: float = 0.0,
        sampling_rate: float = 0.0,
    ):
        super().__init__()
        self.model = model
        self.optimizer = optimizer
        self.free_bits = free_bits
        self.max_beta = max_beta
        self.beta_rate = beta_rate
        self.transpose = transpose
        self.lr_decay = lr_decay
        self.input_dropout = input_dropout
        self.sampling_rate = sampling_rate

    def sampling_probability(self, step: int) -> float:
        """Inverse-sigmoid schedule: 0 at the start, rising to 1 around step k * ln(k)."""
        if self.sampling_rate <= 0:
            return 0.0
        k = self.sampling_rate
        return 1.0 - k / (k + math.exp(min(step / k, 700.0)))

    def losses(self, events: Tensor, sample: bool = True, sampling_probability: float = 0.0) -> dict[str, Tensor]:
        mu, sigma = self.model.encode(events)
        z = mu + sigma * torch.randn_like(mu) if sample else mu
        dropout = self.input_dropout if sample else 0.0
        logits = self.model.decode_logits(z, events, dropout, sampling_probability)  # (B, 32, 90)
        recon = F.cross_entropy(logits.transpose(1, 2), events, reduction="none").sum(1)  # (B,)
        kl = kl_per_dim(mu, sigma).sum(1)  # (B,)
        accuracy = (logits.argmax(-1) == events).float().mean()
        return {"recon": recon.mean(), "kl": kl.mean(), "accuracy": accuracy}

    def training_step(self, events: Tensor, batch_idx: int) -> Tensor:
        if self.transpose:
            shift = torch.randint(-self.transpose, self.transpose + 1, (events.shape[0],), device=events.device)
            events = transpose_events(events, shift)
        sampling = self.sampling_probability(self.global_step)
        out = self.losses(events, sampling_probability=sampling)
        beta = self.max_beta * (1 - self.beta_rate**self.global_step)
        loss = out["recon"] + beta * torch.clamp(out["kl"] - self.free_bits, min=0)
        self.log_dict(
            {
                "train/loss": loss,
                "train/recon": out["recon"],
                "train/kl": out["kl"],
                "train/accuracy": out["accuracy"],
                "train/beta": beta,
                "train/sampling_probability": sampling,
            },
            prog_bar=True,
            on_epoch=True,
            on_step=False,
            batch_size=events.shape[0],
        )
        return loss

    def validation_step(self, events: Tensor, batch_idx: int) -> None:
        out = self.losses(events, sample=False)
        mu, _ = self.model.encode(events)
        greedy = (self.model.generate(mu) == events).float()  # (B, 32): free-running decoding from mu
        metrics = {
            "recon": out["recon"],
            "kl": out["kl"],
            "accuracy": out["accuracy"],
            "greedy_accuracy": greedy.mean(),
            "exact_windows": greedy.all(1).float().mean(),
        }
        self.log_dict({f"val/{k}": v for k, v in metrics.items()}, prog_bar=True, batch_size=events.shape[0])

    def configure_optimizers(self):
        optimizer = self.optimizer(params=self.model.parameters())
        scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, self.lr_decay)  # MusicVAE's decay
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

"""MusicVAE for 2-bar melodies (Roberts et al. 2018), flat (non-hierarchical) as their ``mel_2bar``.

Framework-free model: a bidirectional LSTM encodes a one-hot window [B, 32, 90] to the mean and
scale of a diagonal Gaussian over z; an LSTM decoder, its state initialised from z and z fed
again at every step beside the previous event, predicts the next event.
"""

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ddpm.music.events import NUM_CLASSES, WINDOW_STEPS


class MusicVAE(nn.Module):
    """Args:
    z_dim: latent size (512, as MusicVAE and Mittal et al.).
    encoder_hidden: units per direction of the bidirectional LSTM encoder.
    decoder_hidden: units of the LSTM decoder; decoder_layers: its depth.
    """

    def __init__(self, z_dim: int = 512, encoder_hidden: int = 256, decoder_hidden: int = 512, decoder_layers: int = 1):
        super().__init__()
        self.z_dim = z_dim
        self.decoder_layers = decoder_layers
        self.decoder_hidden = decoder_hidden
        self.encoder = nn.LSTM(NUM_CLASSES, encoder_hidden, batch_first=True, bidirectional=True)
        self.to_mu = nn.Linear(2 * encoder_hidden, z_dim)
        self.to_sigma = nn.Linear(2 * encoder_hidden, z_dim)
        self.to_state = nn.Linear(z_dim, 2 * decoder_layers * decoder_hidden)
        self.decoder = nn.LSTM(NUM_CLASSES + z_dim, decoder_hidden, decoder_layers, batch_first=True)
        self.to_logits = nn.Linear(decoder_hidden, NUM_CLASSES)

    def encode(self, events: Tensor) -> tuple[Tensor, Tensor]:
        """events [B, 32] (long) -> (mu, sigma), each [B, z_dim]."""
        _, (h, _) = self.encoder(F.one_hot(events, NUM_CLASSES).float())  # h: (2, B, H)
        h = torch.cat([h[0], h[1]], dim=-1)  # final forward and backward states, (B, 2H)
        return self.to_mu(h), F.softplus(self.to_sigma(h)) + 1e-5

    def _initial_state(self, z: Tensor) -> tuple[Tensor, Tensor]:
        state = torch.tanh(self.to_state(z)).reshape(z.shape[0], 2, self.decoder_layers, self.decoder_hidden)
        h, c = state.permute(1, 2, 0, 3).contiguous()  # each (layers, B, H)
        return h, c

    def decode_logits(
        self, z: Tensor, events: Tensor, input_dropout: float = 0.0, sampling_probability: float = 0.0
    ) -> Tensor:
        """Logits [B, 32, 90]: step i sees event i-1 (zeros at i=0) and z.

        ``input_dropout`` blanks that share of the previous-event inputs (word dropout, Bowman et
        al. 2016), so the decoder must rely on z rather than on the history alone.
        ``sampling_probability`` feeds, at each step and for each window with that probability,
        the decoder's own sample of the previous event instead of the true one (scheduled
        sampling, Bengio et al. 2015, as MusicVAE trains), so free-running decoding sees at
        training time the histories it makes at test time.
        """
        previous = F.one_hot(events[:, :-1], NUM_CLASSES).float()
        previous = F.pad(previous, (0, 0, 1, 0))  # (B, 32, 90), a zero "start" input
        if input_dropout > 0:
            keep = torch.rand(previous.shape[:2], device=previous.device) >= input_dropout
            previous = previous * keep[..., None]
        state = self._initial_state(z)
        if sampling_probability <= 0:  # teacher forcing: one call over the whole window
            out, _ = self.decoder(torch.cat([previous, z[:, None].expand(-1, events.shape[1], -1)], dim=-1), state)
            return self.to_logits(out)
        logits = []
        for step in range(events.shape[1]):
            inputs = previous[:, step]
            if step > 0:
                own = torch.multinomial(F.softmax(logits[-1].detach(), dim=-1), 1).squeeze(1)
                use_own = torch.rand(z.shape[0], 1, device=z.device) < sampling_probability
                inputs = torch.where(use_own, F.one_hot(own, NUM_CLASSES).float(), inputs)
            out, state = self.decoder(torch.cat([inputs, z], dim=-1)[:, None], state)
            logits.append(self.to_logits(out[:, 0]))
        return torch.stack(logits, dim=1)

    @torch.no_grad()
    def generate(
        self, z: Tensor, temperature: float = 0.0, steps: int = WINDOW_STEPS, generator: torch.Generator | None = None
    ) -> Tensor:
        """Decode z [B, z_dim] to events [B, steps]: greedy at temperature 0, else sampled."""
        state = self._initial_state(z)
        previous = z.new_zeros(z.shape[0], NUM_CLASSES)
        events = []
        for _ in range(steps):
            out, state = self.decoder(torch.cat([previous, z], dim=-1)[:, None], state)
            logits = self.to_logits(out[:, 0])
            if temperature > 0:
                probs = F.softmax(logits / temperature, dim=-1)
                event = torch.multinomial(probs.cpu(), 1, generator=generator).squeeze(1).to(z.device)
            else:
                event = logits.argmax(-1)
            events.append(event)
            previous = F.one_hot(event, NUM_CLASSES).float()
        return torch.stack(events, dim=1)


def kl_per_dim(mu: Tensor, sigma: Tensor) -> Tensor:
    """KL(N(mu, sigma^2) || N(0, 1)) per latent dimension: [B, z_dim]."""
    return 0.5 * (mu.square() + sigma.square() - 1.0) - sigma.log()


def transpose_events(events: Tensor, shift: Tensor) -> Tensor:
    """Shift note-on classes of each window [B, 32] by ``shift`` [B] semitones (no-event/off unchanged).

    Windows whose shifted pitches would leave the 90-class range are returned unshifted.
    """
    is_note = events >= 2
    shifted = events + shift[:, None] * is_note
    ok = ((shifted >= 2) & (shifted < NUM_CLASSES) | ~is_note).all(dim=1)
    return torch.where(ok[:, None], shifted, events)

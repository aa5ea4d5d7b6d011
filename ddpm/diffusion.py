"""The DDPM of Ho et al. 2020: forward process, epsilon loss and ancestral sampling.

Framework-free (torch only) and network-free: every method that needs the denoiser takes it as an
argument. A denoiser is any callable ``denoiser(x_t: [B, *S], cond: [B]) -> eps: [B, *S]``.
"""

import math
from collections import deque
from collections.abc import Callable, Iterator
from typing import Literal

import torch
from torch import Tensor, nn

Denoiser = Callable[[Tensor, Tensor], Tensor]

# Noise-level conditioning feeds sqrt(alpha_bar) * noise_level_scale to the network; the default
# makes it span [0, ~1000] like the step conditioning, so both share one sinusoidal embedding.
# WaveGrad and Mittal et al. scale the level the same way before their embedding (Mittal: 5000).
NOISE_LEVEL_SCALE = 1000.0


def extract(a: Tensor, t: Tensor, x_shape: torch.Size) -> Tensor:
    """Gather ``a[t]`` for a batch of steps and reshape to broadcast over ``x_shape``: [B, 1, ...]."""
    return a.gather(0, t).reshape(t.shape[0], *((1,) * (len(x_shape) - 1)))


def _randn(shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device) -> Tensor:
    """Standard normal noise drawn on the generator's device, so a seed gives the same draw anywhere."""
    if generator is None:
        return torch.randn(shape, device=device)
    return torch.randn(shape, generator=generator, device=generator.device).to(device)


class GaussianDiffusion(nn.Module):
    """Discrete-time Gaussian diffusion with epsilon prediction.

    Args:
        betas: ``[T]`` noise schedule (see ``ddpm.schedules``), any float dtype.
        time_condition: what the denoiser is conditioned on: the integer ``step`` t; the
            ``noise_level`` sqrt(alpha_bar_t) at the T discrete steps; or ``continuous_noise_level``,
            WaveGrad's and Mittal et al.'s: in training the level is drawn uniformly between
            sqrt(alpha_bar_t) and sqrt(alpha_bar_{t-1}) and x_t is built from it (Chen et al. 2021,
            sec. 3.2), in sampling it is sqrt(alpha_bar_t). Levels reach the network times
            ``noise_level_scale``.
        sigma: reverse-process variance, ``posterior`` (beta tilde_t, eq. 7) or ``beta`` (beta_t).
        clip_x_start: clamp the predicted x_0 to ``[-clip_value, clip_value]`` while sampling
            (``build_model`` takes the bound from the config's ``clip_value`` if given, else from the codec: 1
            for images, the box that holds the train split for latents, where clipping is off unless asked for).
        loss_weight: ``eps``: the simplified objective, every step alike (Ho et al.); ``v``: each step's
            eps error weighted by 1 / alpha_bar_t, which is the error of v = sqrt(alpha_bar) eps -
            sqrt(1 - alpha_bar) x_0 (Salimans & Ho 2022) of the same network: the noisy steps, where
            a tune's large-scale shape is decided, count more; ``min_snr``: each step's eps error
            weighted by min(SNR_t, gamma) / SNR_t with SNR_t = alpha_bar_t / (1 - alpha_bar_t) (Hang et
            al. 2023, "Min-SNR weighting"): the nearly clean steps (SNR above ``min_snr_gamma``) count
            less, the noisy ones as in ``eps``.
        min_snr_gamma: the SNR above which ``min_snr`` down-weights a step (Hang et al.: 5).
        input_perturbation: gamma of Ning et al. (2023, "Input Perturbation Reduces Exposure Bias in
            Diffusion Models"): in training (``loss(perturb=True)``) x_t is built from ``noise + gamma * xi``
            with fresh xi ~ N(0, I) while the network is still asked for ``noise``, so it learns from
            inputs off the forward process, as its own sampling chain feeds it (they use 0.1). 0: off.
    """

    def __init__(
        self,
        betas: Tensor,
        time_condition: Literal["step", "noise_level", "continuous_noise_level"] = "step",
        sigma: Literal["posterior", "beta"] = "posterior",
        clip_x_start: bool = False,
        clip_value: float = 1.0,
        noise_level_scale: float = NOISE_LEVEL_SCALE,
        loss_weight: Literal["eps", "v", "min_snr"] = "eps",
        min_snr_gamma: float = 5.0,
        input_perturbation: float = 0.0,
    ):
        super().__init__()
        if time_condition not in ("step", "noise_level", "continuous_noise_level"):
            raise ValueError(
                f"time_condition must be 'step', 'noise_level' or 'continuous_noise_level', got {time_condition!r}"
            )
        if sigma not in ("posterior", "beta"):
            raise ValueError(f"sigma must be 'posterior' or 'beta', got {sigma!r}")
        if loss_weight not in ("eps", "v", "min_snr"):
            raise ValueError(f"loss_weight must be 'eps', 'v' or 'min_snr', got {loss_weight!r}")
        if not isinstance(clip_x_start, bool):
            raise ValueError(f"clip_x_start must be true or false, got {clip_x_start!r}")
        if isinstance(clip_value, bool) or not isinstance(clip_value, int | float) or not 0 < clip_value < math.inf:
            raise ValueError(f"clip_value must be a positive number, got {clip_value!r}")
        if not min_snr_gamma > 0:
            raise ValueError(f"min_snr_gamma must be a positive SNR, got {min_snr_gamma!r}")
        if isinstance(input_perturbation, bool) or not 0 <= input_perturbation < math.inf:
            raise ValueError(f"input_perturbation must be a number >= 0, got {input_perturbation!r}")
        self.loss_weight = loss_weight
        self.min_snr_gamma = min_snr_gamma
        self.input_perturbation = float(input_perturbation)
        betas = torch.as_tensor(betas, dtype=torch.float64)
        if betas.ndim != 1 or not ((betas > 0) & (betas < 1)).all():
            raise ValueError("betas must be a 1-D tensor with values in (0, 1)")
        self.time_condition = time_condition
        self.sigma = sigma
        self.clip_x_start = clip_x_start
        self.clip_value = clip_value
        self.noise_level_scale = noise_level_scale
        self.num_timesteps = betas.shape[0]

        alphas = 1.0 - betas
        alphas_cumprod = torch.cumprod(alphas, 0)
        alphas_cumprod_prev = torch.cat([alphas_cumprod.new_ones(1), alphas_cumprod[:-1]])
        # eq. (7) of Ho et al.: posterior q(x_{t-1} | x_t, x_0) mean coefficients and variance.
        posterior_variance = betas * (1.0 - alphas_cumprod_prev) / (1.0 - alphas_cumprod)
        coefficients = {
            "betas": betas,
            "alphas_cumprod": alphas_cumprod,
            "alphas_cumprod_prev": alphas_cumprod_prev,
            "sqrt_alphas_cumprod": alphas_cumprod.sqrt(),
            "sqrt_alphas_cumprod_prev": alphas_cumprod_prev.sqrt(),
            "sqrt_one_minus_alphas_cumprod": (1.0 - alphas_cumprod).sqrt(),
            "sqrt_recip_alphas_cumprod": (1.0 / alphas_cumprod).sqrt(),
            "sqrt_recipm1_alphas_cumprod": (1.0 / alphas_cumprod - 1.0).sqrt(),
            "posterior_variance": posterior_variance,
            "posterior_mean_coef1": betas * alphas_cumprod_prev.sqrt() / (1.0 - alphas_cumprod),
            "posterior_mean_coef2": (1.0 - alphas_cumprod_prev) * alphas.sqrt() / (1.0 - alphas_cumprod),
            "sampling_std": (posterior_variance if sigma == "posterior" else betas).sqrt(),
        }
        for name, value in coefficients.items():
            # Derived from config: not part of the checkpoint.
            self.register_buffer(name, value.float(), persistent=False)

    def set_sigma(self, sigma: Literal["posterior", "beta"]) -> None:
        """Switch the reverse-process variance (a sampling choice: the trained network is the same)."""
        if sigma not in ("posterior", "beta"):
            raise ValueError(f"sigma must be 'posterior' or 'beta', got {sigma!r}")
        self.sigma = sigma
        self.sampling_std.copy_((self.posterior_variance if sigma == "posterior" else self.betas).sqrt())

    # ----- forward process -----
    def q_sample(self, x_start: Tensor, t: Tensor, noise: Tensor) -> Tensor:
        """Sample x_t ~ q(x_t | x_0) = N(sqrt(alpha_bar_t) x_0, (1 - alpha_bar_t) I), eq. (4)."""
        return (
            extract(self.sqrt_alphas_cumprod, t, x_start.shape) * x_start
            + extract(self.sqrt_one_minus_alphas_cumprod, t, x_start.shape) * noise
        )

    def q_posterior(self, x_start: Tensor, x_t: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """Mean and variance of q(x_{t-1} | x_t, x_0), eqs. (6)-(7); variance is [B, 1, ...]."""
        mean = (
            extract(self.posterior_mean_coef1, t, x_t.shape) * x_start
            + extract(self.posterior_mean_coef2, t, x_t.shape) * x_t
        )
        return mean, extract(self.posterior_variance, t, x_t.shape)

    def predict_start_from_noise(self, x_t: Tensor, t: Tensor, noise: Tensor) -> Tensor:
        """Invert eq. (4): x_0 = (x_t - sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_bar_t)."""
        return (
            extract(self.sqrt_recip_alphas_cumprod, t, x_t.shape) * x_t
            - extract(self.sqrt_recipm1_alphas_cumprod, t, x_t.shape) * noise
        )

    def model_condition(self, t: Tensor) -> Tensor:
        """What the denoiser sees for step ``t`` ([B] long): the step itself or the noise level."""
        if self.time_condition == "step":
            return t.float()
        return self.sqrt_alphas_cumprod[t] * self.noise_level_scale

    def step_of_condition(self, cond: Tensor) -> Tensor:
        """The step t ([B] long) whose ``model_condition`` is nearest ``cond`` ([B]): its inverse."""
        table = self.model_condition(torch.arange(self.num_timesteps, device=cond.device))
        levels, index = cond.float().unique(return_inverse=True)  # a sampler asks for one step per call
        return (levels[:, None] - table[None]).abs().argmin(dim=1)[index]

    def continuous_noise_level(self, t: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """sqrt(alpha_bar) drawn uniformly between sqrt(alpha_bar_t) and sqrt(alpha_bar_{t-1}): [B]."""
        u = torch.rand(t.shape, generator=generator, device=generator.device if generator is not None else None)
        low, high = self.sqrt_alphas_cumprod[t], self.sqrt_alphas_cumprod_prev[t]
        return low + u.to(t.device) * (high - low)

    # ----- training -----
    def loss(
        self,
        denoiser: Denoiser,
        x_start: Tensor,
        t: Tensor | None = None,
        noise: Tensor | None = None,
        generator: torch.Generator | None = None,
        self_condition: float = 0.0,
        perturb: bool = False,
    ) -> Tensor:
        """Simplified objective ||eps - eps_theta(x_t, t)||^2 of eq. (14), one value per example: [B]
        (weighted by 1 / alpha_bar for ``loss_weight="v"``, by min(SNR, gamma) / SNR for ``"min_snr"``).

        ``t`` defaults to uniform steps and ``noise`` to standard normal, both from ``generator``.
        ``self_condition``: the probability that the batch's denoiser also reads its own x_0
        estimate, ``denoiser(x_t, cond, x_0_hat)``, made by a first pass without one and not
        differentiated (Chen et al. 2023, "Analog Bits", sec. 3.2: 0.5 in training; 1.0 scores the
        network as the sampler uses it). 0: the plain ``denoiser(x_t, cond)``.
        ``perturb``: build x_t from ``noise`` perturbed by ``input_perturbation`` (training only; the
        target stays ``noise``).
        """
        batch = x_start.shape[0]
        if t is None:
            t = torch.randint(
                0,
                self.num_timesteps,
                (batch,),
                generator=generator,
                device=generator.device if generator is not None else None,
            )
            t = t.to(x_start.device)
        if noise is None:
            noise = _randn(tuple(x_start.shape), generator, x_start.device)
        shape = (batch, *((1,) * (x_start.ndim - 1)))
        noised = noise
        if perturb and self.input_perturbation > 0:
            noised = noise + self.input_perturbation * _randn(tuple(x_start.shape), generator, x_start.device)
        if self.time_condition == "continuous_noise_level":
            level = self.continuous_noise_level(t, generator).reshape(shape)
            x_t = level * x_start + (1 - level.square()).sqrt() * noised
            cond = level.flatten() * self.noise_level_scale
        else:
            level = extract(self.sqrt_alphas_cumprod, t, x_start.shape)
            x_t = self.q_sample(x_start, t, noised)
            cond = self.model_condition(t)
        if self_condition > 0:
            eps = self._self_conditioned(denoiser, x_t, cond, level, self_condition, generator)
        else:
            eps = denoiser(x_t, cond)
        loss = (noise - eps).square().reshape(batch, -1).mean(dim=1)
        return loss * self.step_weight(level.flatten())

    def step_weight(self, level: Tensor) -> Tensor:
        """The loss weight of each example's eps error, given its noise level sqrt(alpha_bar): [B]."""
        if self.loss_weight == "v":
            return 1 / level.square()
        if self.loss_weight == "min_snr":
            snr = level.square() / (1 - level.square())
            return snr.clamp(max=self.min_snr_gamma) / snr
        return torch.ones_like(level)

    def _self_conditioned(self, denoiser, x_t, cond, level, probability, generator) -> Tensor:
        """eps of ``denoiser(x_t, cond, x_0_hat)``: x_0_hat from a first pass with probability ``probability``
        (one draw for the batch), else zeros, as Chen et al. train."""
        device = generator.device if generator is not None else None
        x_self_cond = torch.zeros_like(x_t)
        if torch.rand((), generator=generator, device=device).item() < probability:
            with torch.no_grad():
                eps = denoiser(x_t, cond, None)
            x_self_cond = (x_t - (1 - level.square()).sqrt() * eps) / level
        return denoiser(x_t, cond, x_self_cond)

    # ----- sampling -----
    def p_mean_std(self, denoiser: Denoiser, x_t: Tensor, t: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Mean and std of p(x_{t-1} | x_t) and the predicted x_0.

        Without clipping the mean equals eq. (11), (x_t - beta_t / sqrt(1 - alpha_bar_t) eps) /
        sqrt(alpha_t); written through x_0 so that clipping x_0 is possible.
        """
        eps = denoiser(x_t, self.model_condition(t))
        x_start = self.predict_start_from_noise(x_t, t, eps)
        if self.clip_x_start:
            x_start = x_start.clamp(-self.clip_value, self.clip_value)
        mean, _ = self.q_posterior(x_start, x_t, t)
        return mean, extract(self.sampling_std, t, x_t.shape), x_start

    def p_sample(self, denoiser: Denoiser, x_t: Tensor, t: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """One ancestral step x_t -> x_{t-1} (Algorithm 2); no noise is added at t = 0."""
        mean, std, _ = self.p_mean_std(denoiser, x_t, t)
        noise = _randn(tuple(x_t.shape), generator, x_t.device)
        nonzero = extract((t > 0).float(), torch.arange(t.shape[0], device=t.device), x_t.shape)
        return mean + nonzero * std * noise

    def sample_progressive(
        self,
        denoiser: Denoiser,
        shape: tuple[int, ...],
        generator: torch.Generator | None = None,
        device: torch.device | str = "cpu",
        known: Tensor | None = None,
        mask: Tensor | None = None,
    ) -> Iterator[tuple[int, Tensor]]:
        """Yield ``(t, x_t)`` from x_T down to x_0 (t = -1 marks the final x_0): Algorithm 2.

        Infilling: where ``mask`` is 1, x_t is replaced by a forward sample of ``known`` at each
        step (the replacement method of Song et al. 2021 that Mittal et al. use), so the result
        keeps ``known`` there and the model fills in the rest. The loop is ``AncestralSampler``'s
        (``ddpm/samplers.py``), the one implementation of ancestral sampling.
        """
        from ddpm.samplers import AncestralSampler  # samplers build on this module

        return AncestralSampler().sample_progressive(self, denoiser, shape, generator, device, known, mask)

    def sample(
        self,
        denoiser: Denoiser,
        shape: tuple[int, ...],
        generator: torch.Generator | None = None,
        device: torch.device | str = "cpu",
        known: Tensor | None = None,
        mask: Tensor | None = None,
    ) -> Tensor:
        """Draw x_0 samples of ``shape`` = [B, *S] (Algorithm 2); see ``sample_progressive``."""
        steps = self.sample_progressive(denoiser, shape, generator, device, known, mask)
        return deque(steps, maxlen=1)[0][1]  # the final x_0, without keeping the intermediates


class SelfConditioning:
    """A self-conditioned network as the plain ``denoiser(x_t, cond) -> eps`` that samplers call.

    Each call hands the network the x_0 it predicted at the previous call (zeros at the first),
    as Chen et al. 2023 sample; make one per sampling chain. Args: diffusion: the process
    (its levels give x_0 from eps); denoiser: ``denoiser(x_t, cond, x_self_cond) -> eps``.
    """

    def __init__(self, diffusion: GaussianDiffusion, denoiser: Callable[[Tensor, Tensor, Tensor | None], Tensor]):
        self.diffusion, self.denoiser = diffusion, denoiser
        self.x_start: Tensor | None = None

    def __call__(self, x_t: Tensor, cond: Tensor) -> Tensor:
        eps = self.denoiser(x_t, cond, self.x_start)
        ab = self.diffusion.alphas_cumprod[self.diffusion.step_of_condition(cond)]
        ab = ab.reshape(-1, *((1,) * (x_t.ndim - 1)))
        x_start = ((x_t - (1 - ab).sqrt() * eps) / ab.sqrt()).detach()
        if self.diffusion.clip_x_start:
            x_start = x_start.clamp(-self.diffusion.clip_value, self.diffusion.clip_value)
        self.x_start = x_start
        return eps

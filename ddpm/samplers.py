"""Samplers for ``GaussianDiffusion``: ancestral (with RePaint resampling), DDIM and DPM-Solver++ 2M (ODE, SDE).

Framework-free (torch only) and network-free, like ``ddpm/diffusion.py``: a sampler holds only its
settings; the diffusion and the denoiser are passed in. Every sampler asks the network what it saw
in training, ``denoiser(x_t, diffusion.model_condition(t))`` at integer steps t, so it works with
the step and the noise-level conditioning alike. Notation: ``ab_t`` = alpha_bar_t, the level of
x_t; level -1 is the data (ab = 1). Infilling (``known``, ``mask`` 1 = keep): before each network
evaluation at step t the kept region is replaced by a fresh forward sample q(x_t | known), and by
``known`` itself at the end (the replacement method of Song et al. 2021). With ``guidance`` > 0 the
network's prediction is also steered towards the kept region (reconstruction guidance, Ho et al. 2022).
"""

import math
from collections import deque
from collections.abc import Generator, Iterator
from typing import Literal

import torch
from torch import Tensor

from ddpm.diffusion import Denoiser, GaussianDiffusion, _randn


def _distinct(candidates: list[int], num_timesteps: int) -> list[int]:
    """Decreasing candidate steps made strictly decreasing within [0, T - 1], one entry each.

    A no-op when the candidates are already distinct (every spacing below for steps < T); rounding
    repeats a step only when ``steps`` nears T, and the repeat is moved to the nearest free step.
    """
    ts = list(candidates)
    for i in range(len(ts) - 2, -1, -1):  # bottom up: above the next step
        ts[i] = max(ts[i], ts[i + 1] + 1)
    for i in range(len(ts)):  # top down: below the previous step, at most T - 1
        ts[i] = min(ts[i], num_timesteps - 1 if i == 0 else ts[i - 1] - 1)
    return ts


def _check_steps(steps: int, num_timesteps: int) -> None:
    if not 1 <= steps <= num_timesteps:
        raise ValueError(f"steps must be in [1, {num_timesteps}] (the diffusion's T), got {steps}")


def _check_guidance(guidance: float) -> float:
    if not 0 <= guidance < math.inf:  # NaN fails too
        raise ValueError(f"guidance must be a finite number >= 0 (0: none), got {guidance}")
    return float(guidance)


class Sampler:
    """What every sampler offers: ``timesteps``, ``evaluations``, ``sample_progressive``, ``sample``.

    ``steps`` is the number of network evaluations (``None``: every step of the diffusion).
    """

    steps: int | None = None
    guidance: float = 0.0

    def timesteps(self, num_timesteps: int) -> list[int]:
        """The steps t at which the network is evaluated, in order."""
        raise NotImplementedError

    def evaluations(self, diffusion: GaussianDiffusion) -> int:
        """Network evaluations for one batch with ``diffusion``."""
        return len(self.timesteps(diffusion.num_timesteps))

    @torch.inference_mode()  # as GaussianDiffusion.sample_progressive
    def sample_progressive(
        self,
        diffusion: GaussianDiffusion,
        denoiser: Denoiser,
        shape: tuple[int, ...],
        generator: torch.Generator | None = None,
        device: torch.device | str = "cpu",
        known: Tensor | None = None,
        mask: Tensor | None = None,
    ) -> Iterator[tuple[int, Tensor]]:
        """Yield ``(t, x_t)`` before each network evaluation at step t, then ``(-1, x_0)``.

        Args:
            diffusion: the process the denoiser was trained for.
            denoiser: ``denoiser(x_t: [B, *S], cond: [B]) -> eps: [B, *S]``.
            shape: ``[B, *S]``.
            generator: source of every random draw (x_T first, then in step order).
            known, mask: infilling, both ``[B, *S]``; ``mask`` 1 keeps ``known``, 0 generates.
        """
        if (known is None) != (mask is None):
            raise ValueError("infilling needs both `known` and `mask`")
        if known is not None and self.guidance > 0:
            denoiser = ReconstructionGuided(diffusion, denoiser, known, mask, self.guidance)
        x = _randn(tuple(shape), generator, torch.device(device))
        x = yield from self._denoise(diffusion, denoiser, x, generator, known, mask)
        yield -1, x if known is None else mask * known + (1 - mask) * x

    def _denoise(self, diffusion, denoiser, x, generator, known, mask) -> Generator[tuple[int, Tensor], None, Tensor]:
        """Yield ``(t, x_t)`` from x_T = ``x`` down; return the final x_0 (before the last replacement)."""
        raise NotImplementedError

    def sample(
        self,
        diffusion: GaussianDiffusion,
        denoiser: Denoiser,
        shape: tuple[int, ...],
        generator: torch.Generator | None = None,
        device: torch.device | str = "cpu",
        known: Tensor | None = None,
        mask: Tensor | None = None,
    ) -> Tensor:
        """Draw x_0 samples of ``shape`` = [B, *S]; see ``sample_progressive``."""
        steps = self.sample_progressive(diffusion, denoiser, shape, generator, device, known, mask)
        return deque(steps, maxlen=1)[0][1]  # the final x_0, without keeping the intermediates

    def __repr__(self) -> str:
        settings = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({settings})"


class ReconstructionGuided:
    """A denoiser steered towards the kept region: reconstruction guidance (Ho et al. 2022, eq. 7).

    The replacement method tells the generated region of x_t about the kept one only through the
    network's attention to the re-noised kept frames; the generated region's x_0 prediction is not
    asked to agree with them. Ho et al. ("Video Diffusion Models", sec. 3.1) correct the x_0
    prediction of the generated region b by the gradient of how well the kept region a is
    reconstructed from x_t:

        x_0^b <- x_0^b - (w sqrt(ab_t) / 2) grad_{x_t^b} || known^a - x_0^a(x_t) ||^2,

    one backward pass per network evaluation. Returned as the eps of that x_0, so every sampler
    (RePaint too) uses it unchanged; the kept region's eps is the network's.
    """

    def __init__(self, diffusion: GaussianDiffusion, denoiser: Denoiser, known: Tensor, mask: Tensor, weight: float):
        self.diffusion, self.denoiser, self.weight = diffusion, denoiser, float(weight)
        with torch.inference_mode(False):  # samplers run in inference mode; autograd must save these
            self.known, self.mask = known.clone(), mask.clone()

    def __call__(self, x: Tensor, cond: Tensor) -> Tensor:
        ab = self.diffusion.alphas_cumprod[self.diffusion.step_of_condition(cond)]
        with torch.inference_mode(False), torch.enable_grad():
            ab = ab.clone().reshape(-1, *((1,) * (x.ndim - 1)))
            x_grad = x.clone().requires_grad_()
            eps = self.denoiser(x_grad, cond.clone())
            x_start = (x_grad - (1 - ab).sqrt() * eps) / ab.sqrt()
            error = (self.mask * (self.known - x_start)).square().sum()
            (grad,) = torch.autograd.grad(error, x_grad)
            x_start = x_start.detach() - (self.weight * ab.sqrt() / 2) * (1 - self.mask) * grad
            return (x_grad.detach() - ab.sqrt() * x_start) / (1 - ab).sqrt()


def _replace(diffusion, x: Tensor, t: int, known: Tensor | None, mask: Tensor | None, generator) -> Tensor:
    """x_t with the kept region replaced by a forward sample of ``known`` at step t (eq. 4)."""
    if known is None:
        return x
    steps = torch.full((x.shape[0],), t, device=x.device, dtype=torch.long)
    x_known = diffusion.q_sample(known, steps, _randn(tuple(x.shape), generator, x.device))
    return mask * x_known + (1 - mask) * x


def _predict(diffusion: GaussianDiffusion, denoiser: Denoiser, x: Tensor, t: int) -> tuple[Tensor, Tensor]:
    """(x_0, eps) predicted at step t; with clipping, eps is re-derived from the clipped x_0.

    Re-deriving eps (as improved-diffusion's ``ddim_sample``) keeps DDIM with eta = 1 and every step
    identical to the ancestral step, whose posterior mean uses the clipped x_0.
    """
    steps = torch.full((x.shape[0],), t, device=x.device, dtype=torch.long)
    eps = denoiser(x, diffusion.model_condition(steps))
    x_start = diffusion.predict_start_from_noise(x, steps, eps)
    if diffusion.clip_x_start:
        x_start = x_start.clamp(-diffusion.clip_value, diffusion.clip_value)
        ab = diffusion.alphas_cumprod[t].double().item()
        eps = (x - math.sqrt(ab) * x_start) / math.sqrt(1 - ab)
    return x_start, eps


def repaint_schedule(num_timesteps: int, jump: int, resample: int) -> list[int]:
    """Steps visited by RePaint (Lugmayr et al. 2022, Algorithm 1 with jumps; their ``get_schedule_jump``).

    A step lower than its predecessor is a network evaluation at that step; a higher one undoes one
    step of the forward process. Every ``jump`` steps the chain goes ``jump`` steps back up, ``resample
    - 1`` times, so each stretch is denoised ``resample`` times. ``resample = 1``: T - 1, ..., 0 once.
    """
    jumps = {j: resample - 1 for j in range(0, num_timesteps - jump, jump)}
    t, ts = num_timesteps, []
    while t >= 1:
        t -= 1
        ts.append(t)
        if jumps.get(t, 0) > 0:
            jumps[t] -= 1
            for _ in range(jump):
                t += 1
                ts.append(t)
    return ts


class AncestralSampler(Sampler):
    """Ho et al.'s ancestral sampling (Algorithm 2) over all T steps, with optional RePaint resampling.

    With ``resample = 1`` this is ``GaussianDiffusion.sample_progressive`` draw for draw. With
    ``resample > 1`` (RePaint, for infilling): after every ``jump`` steps the chain is noised ``jump``
    steps back up with q(x_{t+jump} | x_t) and denoised again, ``resample`` times in all, so the
    generated region harmonizes with the kept one. ``guidance``: as DDIM's.
    """

    def __init__(self, resample: int = 1, jump: int = 1, guidance: float = 0.0):
        if resample < 1 or jump < 1:
            raise ValueError(f"resample and jump must be >= 1, got resample={resample}, jump={jump}")
        self.resample, self.jump, self.guidance = int(resample), int(jump), _check_guidance(guidance)

    def timesteps(self, num_timesteps: int) -> list[int]:
        ts = repaint_schedule(num_timesteps, self.jump, self.resample)
        return [t for prev, t in zip([num_timesteps, *ts], ts) if t < prev]

    def _denoise(self, diffusion, denoiser, x, generator, known, mask):
        ab = diffusion.alphas_cumprod.double().tolist() + [1.0]  # ab[-1] = 1: the data
        level = diffusion.num_timesteps - 1  # x ~ N(0, I) stands for x_{T-1}
        for t in repaint_schedule(diffusion.num_timesteps, self.jump, self.resample):
            if t <= level:  # denoise at t (Algorithm 2), after the replacement of the kept region
                x = _replace(diffusion, x, t, known, mask, generator)
                yield t, x
                x = diffusion.p_sample(denoiser, x, torch.full((x.shape[0],), t, device=x.device), generator)
                level = t - 1
            else:  # undo one step, level t - 2 -> t - 1: q(x_{t-1} | x_{t-2}) = N(sqrt(1 - beta) x, beta I)
                ratio = ab[t - 1] / ab[level]  # 1 - beta_{t-1}; ab[-1] = 1 when coming from the data
                x = math.sqrt(ratio) * x + math.sqrt(1 - ratio) * _randn(tuple(x.shape), generator, x.device)
                level = t - 1
        return x


class DDIMSampler(Sampler):
    """DDIM (Song, Meng & Ermon 2021): eq. (12) on a subsequence of ``steps`` steps, noise by ``eta``.

    ``eta = 0`` is deterministic (an ODE solver); ``eta = 1`` with every step is ancestral sampling
    with sigma = beta tilde. Spacing of the subsequence: ``uniform`` (t = 0, c, 2c, ... with c =
    T // steps, the DDIM paper's and diffusers' "leading"), ``quadratic`` (the DDIM paper's,
    t = (i sqrt(0.8 T) / (steps - 1))^2) or ``trailing`` (Lin et al. 2024, arXiv 2305.08891,
    Table 2: from T - 1 down in strides of T / steps; starts at the top step, better at few steps).

    Args:
        steps: network evaluations, 1 to T.
        eta: 0 (DDIM) to 1 (DDPM-like noise), eq. (16).
        spacing: ``uniform``, ``quadratic`` or ``trailing``.
        at_most_T: ``steps`` above the diffusion's T run all T steps instead of being an error (the
            default sampler's setting, so it works for a model of any T).
        guidance: infilling only: weight of reconstruction guidance (``ReconstructionGuided``; 0: none).
    """

    def __init__(
        self,
        steps: int = 50,
        eta: float = 0.0,
        spacing: Literal["uniform", "quadratic", "trailing"] = "uniform",
        at_most_T: bool = False,
        guidance: float = 0.0,
    ):
        if spacing not in ("uniform", "quadratic", "trailing"):
            raise ValueError(f"spacing must be 'uniform', 'quadratic' or 'trailing', got {spacing!r}")
        if steps < 1 or not 0 <= eta <= 1:  # NaN fails too; above 1 eq. (16)'s sigma outgrows the step
            raise ValueError(f"steps must be >= 1 and eta a number in [0, 1], got steps={steps}, eta={eta}")
        self.steps, self.eta, self.spacing, self.at_most_T = int(steps), float(eta), spacing, bool(at_most_T)
        self.guidance = _check_guidance(guidance)

    def timesteps(self, num_timesteps: int) -> list[int]:
        n, T = min(self.steps, num_timesteps) if self.at_most_T else self.steps, num_timesteps
        _check_steps(n, T)
        if self.spacing == "uniform":
            ts = [i * (T // n) for i in range(n)]
        elif self.spacing == "quadratic":
            stride = math.sqrt(0.8 * T) / max(n - 1, 1)
            ts = [int((i * stride) ** 2) for i in range(n)]
        else:
            ts = [round(T - i * (T / n)) - 1 for i in range(n - 1, -1, -1)]  # as numpy.arange(T, 0, -T / n)
        return _distinct(ts[::-1], T)  # ts are increasing; sampling goes down

    def _denoise(self, diffusion, denoiser, x, generator, known, mask):
        ts = self.timesteps(diffusion.num_timesteps)
        ab = diffusion.alphas_cumprod.double().tolist() + [1.0]  # ab[-1] = 1: the data
        for t, prev in zip(ts, [*ts[1:], -1]):
            x = _replace(diffusion, x, t, known, mask, generator)
            yield t, x
            x_start, eps = _predict(diffusion, denoiser, x, t)
            # eq. (16): sigma^2 = eta^2 (1 - ab_prev) / (1 - ab_t) (1 - ab_t / ab_prev)
            var = self.eta**2 * (1 - ab[prev]) / (1 - ab[t]) * (1 - ab[t] / ab[prev])
            # eq. (12): x_prev = sqrt(ab_prev) x_0 + sqrt(1 - ab_prev - sigma^2) eps + sigma z
            x = math.sqrt(ab[prev]) * x_start + math.sqrt(max(1 - ab[prev] - var, 0.0)) * eps
            if self.eta > 0:  # drawn at every step, the last (sigma = 0) too, as diffusers does
                x = x + math.sqrt(var) * _randn(tuple(x.shape), generator, x.device)
        return x


class DPMSolverPP2MSampler(Sampler):
    """DPM-Solver++(2M) (Lu et al. 2022, "DPM-Solver++", Algorithm 2, midpoint form), deterministic.

    A second-order multistep solver of the diffusion ODE in log-SNR lambda = log(alpha / sigma) for
    the data prediction x_0(x_t, t): the first step is first order (DDIM), each later one adds the
    finite difference of the last two x_0 predictions, and the last step goes to sigma = 0 (x_0
    itself). Steps as diffusers' ``DPMSolverMultistepScheduler`` ("dpmsolver++", solver_order=2,
    midpoint, final sigma zero): t_i = round(i (T - 1) / steps) for i = steps, ..., 1.

    ``sde=True`` is SDE-DPM-Solver++(2M) (Lu et al. 2022, section 5 and appendix; diffusers'
    "sde-dpmsolver++", k-diffusion's ``dpmpp_2m_sde``): the same multistep data prediction on the
    reverse SDE, which keeps fresh noise in every step like ancestral sampling.

    Args:
        steps: network evaluations, 1 to T.
        sde: solve the reverse SDE (stochastic) instead of the ODE.
        at_most_T: ``steps`` above the diffusion's T run all T steps instead of being an error (as DDIM's).
        guidance: infilling only: weight of reconstruction guidance (``ReconstructionGuided``; 0: none).
    """

    def __init__(self, steps: int = 20, sde: bool = False, at_most_T: bool = False, guidance: float = 0.0):
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        self.steps, self.sde, self.at_most_T = int(steps), bool(sde), bool(at_most_T)
        self.guidance = _check_guidance(guidance)

    def timesteps(self, num_timesteps: int) -> list[int]:
        n = min(self.steps, num_timesteps) if self.at_most_T else self.steps
        _check_steps(n, num_timesteps)
        stride = (num_timesteps - 1) / n  # numpy.linspace(0, T - 1, steps + 1), rounded half to even
        return _distinct([round(i * stride) for i in range(n, 0, -1)], num_timesteps)

    def _denoise(self, diffusion, denoiser, x, generator, known, mask):
        ts = self.timesteps(diffusion.num_timesteps)
        ab = diffusion.alphas_cumprod.double().tolist()
        alpha = [math.sqrt(a) for a in ab]  # alpha_t, sigma_t of x_t = alpha_t x_0 + sigma_t eps
        sigma = [math.sqrt(1 - a) for a in ab]
        lam = [math.log(a / s) for a, s in zip(alpha, sigma)]  # lambda_t, half the log-SNR
        previous = None  # (lambda, x_0 prediction) of the previous step
        for i, s in enumerate(ts):
            x = _replace(diffusion, x, s, known, mask, generator)
            yield s, x
            x_start, _ = _predict(diffusion, denoiser, x, s)
            if i == len(ts) - 1:  # to sigma = 0: lambda = inf, and the update is x_0 itself
                x = x_start
                break
            t = ts[i + 1]
            h = lam[t] - lam[s]
            d = x_start
            if previous is not None:  # D1 = (m0 - m1) / r0 with r0 = h_0 / h; midpoint: D0 + D1 / 2
                r0 = (lam[s] - previous[0]) / h
                d = x_start + 0.5 / r0 * (x_start - previous[1])
            if self.sde:  # x_t = sigma_t / sigma_s e^-h x_s + alpha_t (1 - e^-2h) D + sigma_t sqrt(1 - e^-2h) z
                z = _randn(tuple(x.shape), generator, x.device)
                x = (sigma[t] / sigma[s] * math.exp(-h)) * x - alpha[t] * math.expm1(-2 * h) * d
                x = x + sigma[t] * math.sqrt(-math.expm1(-2 * h)) * z
            else:  # Algorithm 2's step: x_t = sigma_t / sigma_s x_s - alpha_t (e^-h - 1) D (DDIM when D = x_0)
                x = (sigma[t] / sigma[s]) * x - alpha[t] * math.expm1(-h) * d
            previous = (lam[s], x_start)
        return x

"""The noise schedule of a discrete-time diffusion model (Ho et al. 2020, "Denoising Diffusion
Probabilistic Models"), shared by training (:mod:`mmgen.diffusion.objective`) and sampling
(:mod:`mmgen.diffusion.samplers`).

With ``abar_t = prod_{s <= t} (1 - beta_s)`` (``alphas_cumprod``), the forward process is

    x_t = sqrt(abar_t) * x0 + sqrt(1 - abar_t) * eps,       eps ~ N(0, I)        (eq. 4)

and a network predicts one of three equivalent targets from ``(x_t, t)``:

    "eps": eps                                               (Ho et al. 2020)
    "v":   v = sqrt(abar_t) * eps - sqrt(1 - abar_t) * x0    (Salimans & Ho 2022, sec. 4)
    "x0":  x0

The beta schedules and the timestep spacings reproduce diffusers' float32 numerics exactly, so
that weights trained with diffusers' schedulers sample identically here. Timestep spacings
follow Lin et al. 2023 ("Common Diffusion Noise Schedules and Sample Steps Are Flawed",
sec. 3.3): "leading" (Stable Diffusion 1.x/2.x), "trailing" (starts at the last training
step, which zero terminal SNR needs) and "linspace".
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch

BETA_SCHEDULES = ("linear", "scaled_linear", "cosine")
PREDICTION_TYPES = ("eps", "v", "x0")
TIMESTEP_SPACINGS = ("leading", "trailing", "linspace")
# diffusers' names for our option values, for error messages
_DIFFUSERS_NAMES = {"epsilon": "eps", "v_prediction": "v", "sample": "x0",
                    "squaredcos_cap_v2": "cosine"}

Timestep = int | float | torch.Tensor  # a timestep, or (B,) timesteps of a batch


@dataclass(frozen=True)
class NoiseSchedule:
    """A discrete noise schedule and the parametrisation of the network trained on it."""

    num_train_timesteps: int = 1000  # T: training timesteps 0 .. T-1
    beta_start: float = 0.00085  # beta_0 (Stable Diffusion: 0.00085); unused by "cosine"
    beta_end: float = 0.012  # beta_{T-1} (Stable Diffusion: 0.012); unused by "cosine"
    beta_schedule: str = "scaled_linear"  # "linear", "scaled_linear" (SD) or "cosine"
    prediction_type: str = "eps"  # what the network predicts: "eps", "v" or "x0"
    zero_terminal_snr: bool = False  # rescale betas so that abar_{T-1} = 0 (Lin et al. 2023)
    clip_sample: float = 0.0  # clamp predicted x0 to [-clip_sample, clip_sample]; 0 = off
    timestep_spacing: str = "leading"  # sampler timesteps: "leading", "trailing", "linspace"
    steps_offset: int = 1  # added to "leading" timesteps (Stable Diffusion uses 1)

    def __post_init__(self) -> None:
        def check(value: str, allowed: tuple[str, ...], field: str) -> None:
            if value in allowed:
                return
            hint = (f" (diffusers' {value!r} is {_DIFFUSERS_NAMES[value]!r} here)"
                    if value in _DIFFUSERS_NAMES else "")
            raise ValueError(f"NoiseSchedule.{field}={value!r} is unknown; use one of "
                             f"{', '.join(map(repr, allowed))}{hint}")

        check(self.beta_schedule, BETA_SCHEDULES, "beta_schedule")
        check(self.prediction_type, PREDICTION_TYPES, "prediction_type")
        check(self.timestep_spacing, TIMESTEP_SPACINGS, "timestep_spacing")
        if not isinstance(self.num_train_timesteps, int) or self.num_train_timesteps < 2:
            raise ValueError(f"NoiseSchedule.num_train_timesteps must be an integer >= 2, got "
                             f"{self.num_train_timesteps!r}")
        if not 0.0 < self.beta_start <= self.beta_end < 1.0:
            raise ValueError(f"NoiseSchedule needs 0 < beta_start <= beta_end < 1, got "
                             f"beta_start={self.beta_start}, beta_end={self.beta_end}")
        if self.clip_sample < 0:
            raise ValueError(f"NoiseSchedule.clip_sample must be >= 0 (0 = off), got "
                             f"{self.clip_sample}")
        if not isinstance(self.steps_offset, int) or self.steps_offset < 0:
            raise ValueError(f"NoiseSchedule.steps_offset must be an integer >= 0, got "
                             f"{self.steps_offset!r}")
        if self.zero_terminal_snr and self.prediction_type == "eps":
            # At SNR 0, x_{T-1} = eps: an eps prediction says nothing about x0 and the
            # x0 = (x - sqrt(1 - abar) eps) / sqrt(abar) conversion divides by zero.
            raise ValueError("NoiseSchedule.zero_terminal_snr=True needs prediction_type 'v' "
                             "or 'x0' (Lin et al. 2023, sec. 3.2): at zero SNR an eps "
                             "prediction carries no information about x0")

    # ------------------------------------------------------------------ schedule tensors

    @cached_property
    def betas(self) -> torch.Tensor:
        """beta_t (T,) in float32, computed exactly as diffusers does."""
        T = self.num_train_timesteps
        if self.beta_schedule == "linear":
            betas = torch.linspace(self.beta_start, self.beta_end, T, dtype=torch.float32)
        elif self.beta_schedule == "scaled_linear":  # linear in sqrt(beta) (LDM / SD)
            betas = torch.linspace(self.beta_start ** 0.5, self.beta_end ** 0.5, T,
                                   dtype=torch.float32) ** 2
        else:  # Nichol & Dhariwal 2021, eq. 17, with betas capped at 0.999
            def abar(s: float) -> float:
                return math.cos((s + 0.008) / 1.008 * math.pi / 2) ** 2

            betas = torch.tensor([min(1 - abar((i + 1) / T) / abar(i / T), 0.999)
                                  for i in range(T)], dtype=torch.float32)
        return _rescale_zero_terminal_snr(betas) if self.zero_terminal_snr else betas

    @cached_property
    def alphas_cumprod(self) -> torch.Tensor:
        """abar_t = prod_{s <= t} (1 - beta_s) (T,) in float32."""
        return torch.cumprod(1.0 - self.betas, dim=0)

    @cached_property
    def sigmas(self) -> torch.Tensor:
        """sigma_t = sqrt((1 - abar_t) / abar_t) (T,): the noise level of the
        variance-exploding view x_t / sqrt(abar_t) = x0 + sigma_t * eps used by Euler and
        DPM-Solver (Karras et al. 2022, sec. 2). Under zero terminal SNR the last abar is
        replaced by 2**-24 (as diffusers does) so that sigma_{T-1} stays finite."""
        abar = self.alphas_cumprod.clone()
        if self.zero_terminal_snr:
            abar[-1] = 2 ** -24
        return ((1 - abar) / abar) ** 0.5

    def sigmas_at(self, t: Timestep) -> torch.Tensor:
        """sigma at (possibly fractional) timesteps, linearly interpolated between integer
        timesteps (diffusers' ``interpolation_type="linear"``); float32, shape of ``t``."""
        ts = torch.as_tensor(t).detach().cpu().double().numpy()
        sigma = np.interp(ts, np.arange(self.num_train_timesteps), self.sigmas.numpy())
        return torch.from_numpy(np.asarray(sigma, dtype=np.float32))

    def snr(self, t: Timestep) -> torch.Tensor:
        """Signal-to-noise ratio abar_t / (1 - abar_t) at integer timesteps ``t``."""
        abar = self.alphas_cumprod[_as_index(t, self.num_train_timesteps)]
        return abar / (1 - abar)

    # ------------------------------------------------------------------ forward process

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, t: Timestep) -> torch.Tensor:
        """x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) noise (eq. 4); t is a timestep or (B,)."""
        abar = self._at(t, x0)
        return abar ** 0.5 * x0 + (1 - abar) ** 0.5 * noise

    def velocity(self, x0: torch.Tensor, noise: torch.Tensor, t: Timestep) -> torch.Tensor:
        """The v target sqrt(abar_t) noise - sqrt(1 - abar_t) x0 (Salimans & Ho 2022)."""
        abar = self._at(t, x0)
        return abar ** 0.5 * noise - (1 - abar) ** 0.5 * x0

    def target(self, x0: torch.Tensor, noise: torch.Tensor, t: Timestep) -> torch.Tensor:
        """What the network should predict for ``x_t = add_noise(x0, noise, t)``."""
        if self.prediction_type == "eps":
            return noise
        if self.prediction_type == "v":
            return self.velocity(x0, noise, t)
        return x0

    # ------------------------------------------------------------------ conversions

    def predicted_x0(self, model_output: torch.Tensor, x_t: torch.Tensor, t: Timestep
                     ) -> torch.Tensor:
        """x0 implied by the network's output at (x_t, t) (unclipped)."""
        abar = self._at(t, x_t)
        return x0_from_output(self.prediction_type, model_output, x_t, abar ** 0.5,
                              (1 - abar) ** 0.5)

    def predicted_eps(self, model_output: torch.Tensor, x_t: torch.Tensor, t: Timestep
                      ) -> torch.Tensor:
        """eps implied by the network's output at (x_t, t)."""
        abar = self._at(t, x_t)
        alpha, sigma = abar ** 0.5, (1 - abar) ** 0.5
        if self.prediction_type == "eps":
            return model_output
        if self.prediction_type == "v":  # eps = alpha v + sigma x_t
            return alpha * model_output + sigma * x_t
        return (x_t - alpha * model_output) / sigma

    # ------------------------------------------------------------------ inference timesteps

    def inference_timesteps(self, n: int, skip_final: bool = False,
                            fractional_linspace: bool = False) -> torch.Tensor:
        """Descending timesteps of an ``n``-step sampler, spaced by ``timestep_spacing``.

        diffusers' schedulers space them slightly differently; the two flags select their
        variants, so every sampler reproduces its diffusers counterpart exactly.

        Args:
            n: number of sampler steps, 1 <= n <= T. n = T gives every timestep T-1 ... 0
                for each spacing ("leading" with an offset too, where diffusers would start
                at t = T, past its tables).
            skip_final: space n + 1 points and drop the last one (t = 0 before the offset),
                as diffusers' DPM-Solver does for "linspace" and "leading" spacing.
            fractional_linspace: keep "linspace" timesteps fractional (float32) instead of
                rounding them, as diffusers' Euler schedulers do.

        Returns:
            (n,) int64 tensor, or float32 for fractional "linspace" timesteps.
        """
        T = self.num_train_timesteps
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= T:
            raise ValueError(f"the number of sampler steps must be an integer in [1, {T}] "
                             f"(num_train_timesteps), got {n!r}")
        m = n + 1 if skip_final else n  # points to space
        if self.timestep_spacing == "linspace":
            if fractional_linspace:
                return torch.from_numpy(np.linspace(0, T - 1, n, dtype=np.float32)[::-1].copy())
            ts = np.linspace(0, T - 1, m).round()[::-1][:n]
        elif self.timestep_spacing == "leading" and m == T and self.steps_offset:
            ts = np.arange(T)[::-1]  # every timestep: the offset would push t past T - 1
        elif self.timestep_spacing == "leading":
            ts = (np.arange(0, m) * (T // m)).round()[::-1][:n] + self.steps_offset
        else:  # trailing; [:n] drops the spurious extra point float arange makes for some n
            ts = np.round(np.arange(T, 0, -T / n))[:n] - 1
        ts = torch.from_numpy(ts.astype(np.int64))
        if ts.max() >= T:
            raise ValueError(f"{n} {self.timestep_spacing!r} steps with steps_offset="
                             f"{self.steps_offset} reach timestep {int(ts.max())} >= T={T}; "
                             f"use fewer steps or another timestep_spacing")
        return ts

    # ------------------------------------------------------------------ helpers

    def _at(self, t: Timestep, like: torch.Tensor) -> torch.Tensor:
        """abar at ``t`` on ``like``'s device: 0-d for a single timestep, (B, 1, ..., 1) for
        a batch, broadcasting against ``like`` (B, ...)."""
        idx = _as_index(t, self.num_train_timesteps)
        abar = self.alphas_cumprod.to(like.device)[idx.to(like.device)]
        return abar if abar.dim() == 0 else abar.reshape(-1, *[1] * (like.dim() - 1))


def x0_from_output(prediction_type: str, model_output: torch.Tensor, x_t: torch.Tensor,
                   alpha: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """x0 from a prediction at x_t = alpha x0 + sigma eps (alpha^2 + sigma^2 = 1)."""
    if prediction_type == "eps":
        return (x_t - sigma * model_output) / alpha
    if prediction_type == "v":  # x0 = alpha x_t - sigma v
        return alpha * x_t - sigma * model_output
    return model_output


def _as_index(t: Timestep, T: int) -> torch.Tensor:
    """Integer timestep(s) as an int64 tensor, checked to lie in [0, T)."""
    t = torch.as_tensor(t)
    if t.is_floating_point():
        if not torch.equal(t, t.round()):
            raise ValueError(f"the noise schedule is defined at integer timesteps, got "
                             f"{t.tolist()}")
        t = t.long()
    if t.numel() and (t.min() < 0 or t.max() >= T):
        raise ValueError(f"timesteps must lie in [0, {T}), got {t.tolist()}")
    return t.long()


def _rescale_zero_terminal_snr(betas: torch.Tensor) -> torch.Tensor:
    """Lin et al. 2023, algorithm 1: shift and scale sqrt(abar) so that it ends at exactly 0
    (zero SNR at t = T-1) and keeps its first value."""
    sqrt_abar = torch.cumprod(1.0 - betas, dim=0).sqrt()  # (T,)
    first, last = sqrt_abar[0].clone(), sqrt_abar[-1].clone()
    sqrt_abar = (sqrt_abar - last) * (first / (first - last))
    abar = sqrt_abar ** 2
    alphas = torch.cat([abar[:1], abar[1:] / abar[:-1]])  # undo the cumulative product
    return 1 - alphas

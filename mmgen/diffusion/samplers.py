"""Samplers: turn a network's predictions into a denoising trajectory.

Every sampler follows one contract (diffusers' scheduler contract, trimmed)::

    sampler = create_sampler("dpm++2m", schedule)
    sampler.set_timesteps(25)
    x = torch.randn(shape, generator=g) * sampler.init_noise_sigma
    for t in sampler.timesteps:                                   # descending
        out = model(sampler.scale_model_input(x, t), t)           # eps, v or x0
        x = sampler.step(out, t, x, generator=g)

The network never sees the schedule; the sampler only receives its output and converts it
with ``schedule.prediction_type``, so every prediction type works with every sampler. Each
sampler reproduces the numerics of its diffusers counterpart (see
``tests/test_diffusion_samplers.py``), including diffusers' per-scheduler timestep spacing.

``step`` finds the index of ``t`` in ``timesteps`` itself, so img2img can start part-way
(``for t in sampler.timesteps[k:]``) after ``x = sampler.add_noise(x0, noise, t_k)``.
Stochastic samplers draw their noise on the CPU (from ``generator``: one CPU generator, or one
per batch item), so a seed gives the same image on every device.
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod

import torch

from mmgen.diffusion.schedule import NoiseSchedule, Timestep, x0_from_output

Generator = torch.Generator | list[torch.Generator] | None


class Sampler(ABC):
    """Base class: timesteps, index lookup, noise drawing; subclasses implement ``_step``.

    ``timesteps`` is a descending 1-D int64 tensor after ``set_timesteps(n)``, except for the
    Euler samplers with "linspace" spacing, whose timesteps are fractional (float32) exactly
    as in diffusers. ``schedule.clip_sample`` clamps the predicted x0 in every sampler
    (diffusers has the option only in DDPM and DDIM).

    Args:
        schedule: the noise schedule the network was trained with (default: SD 1.x's).
    """

    def __init__(self, schedule: NoiseSchedule | None = None):
        self.schedule = schedule if schedule is not None else NoiseSchedule()
        self.timesteps = torch.empty(0, dtype=torch.long)  # (n,) descending; set_timesteps
        self.num_steps = 0
        self._next = 0  # index of the step expected next

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.schedule})"

    def set_timesteps(self, n: int) -> None:
        """Prepare an ``n``-step trajectory (n >= 1); resets any multistep state."""
        self.timesteps = self._make_timesteps(n)
        self.num_steps = n
        self._next = 0
        self._reset()

    @property
    def init_noise_sigma(self) -> float:
        """Standard deviation of the initial noise x_T."""
        return 1.0

    def scale_model_input(self, x: torch.Tensor, t: Timestep) -> torch.Tensor:
        """The network's input at the sampler's state ``x`` (identity in the VP samplers)."""
        return x

    def step(self, model_output: torch.Tensor, t: Timestep, x: torch.Tensor,
             generator: Generator = None) -> torch.Tensor:
        """One denoising step from ``x`` at timestep ``t`` (an element of ``timesteps``).

        Args:
            model_output: the network's prediction (B, C, H, W) at ``scale_model_input(x, t)``.
            t: the current timestep.
            x: the current state (B, C, H, W).
            generator: CPU generator(s) for stochastic samplers (one, or one per item).
        Returns:
            the state at the next timestep (B, C, H, W).
        """
        i = self.index_for_timestep(t)
        x_prev = self._step(model_output, i, x, generator)
        self._next = i + 1
        return x_prev.to(x.dtype)

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, t: Timestep) -> torch.Tensor:
        """The sampler's state at timestep ``t`` for clean ``x0`` (img2img, inpainting)."""
        return self.schedule.add_noise(x0, noise, t)

    def index_for_timestep(self, t: Timestep) -> int:
        """Index of ``t`` in ``timesteps``: the expected next step if it matches, else (as in
        diffusers) the second of duplicate entries, so a run started part-way skips none."""
        if not len(self.timesteps):
            raise RuntimeError(f"call {type(self).__name__}.set_timesteps(n) before sampling")
        t = torch.as_tensor(t).cpu()
        if t.numel() != 1:
            raise ValueError(f"step one timestep at a time, got shape {tuple(t.shape)}")
        t = t.reshape(())
        if self._next < len(self.timesteps) and self.timesteps[self._next] == t:
            return self._next
        hits = (self.timesteps == t).nonzero().flatten()
        if not len(hits):
            raise ValueError(f"timestep {t.item()} is not one of this sampler's timesteps "
                             f"{self.timesteps.tolist()}; step with an element of .timesteps")
        return int(hits[1] if len(hits) > 1 else hits[0])

    # ------------------------------------------------------------------ for subclasses

    def _make_timesteps(self, n: int) -> torch.Tensor:
        return self.schedule.inference_timesteps(n)

    def _reset(self) -> None:  # noqa: B027 (optional hook: only multistep samplers have state)
        """Forget multistep state."""

    @abstractmethod
    def _step(self, model_output: torch.Tensor, i: int, x: torch.Tensor,
              generator: Generator) -> torch.Tensor:
        """The update from ``x`` at step ``i``; every sampler class defines it."""

    def _clip(self, x0: torch.Tensor) -> torch.Tensor:
        c = self.schedule.clip_sample
        return x0.clamp(-c, c) if c > 0 else x0


def randn(shape: tuple[int, ...], generator: Generator, like: torch.Tensor) -> torch.Tensor:
    """Standard normal noise drawn in float32 on the CPU (like diffusers' ``randn_tensor``
    with CPU generators: a list draws item ``i`` from ``generator[i]``), then moved to
    ``like``'s device and dtype."""
    gens = generator if isinstance(generator, (list, tuple)) else [generator]
    for g in gens:
        if g is not None and g.device.type != "cpu":
            raise ValueError(f"sampler noise is drawn on the CPU so that seeds reproduce on "
                             f"every device; pass CPU generators, got one on {g.device}")
    if len(gens) == 1:
        noise = torch.randn(shape, generator=gens[0], device="cpu", dtype=torch.float32)
    elif len(gens) != shape[0]:
        raise ValueError(f"got {len(gens)} generators for a batch of {shape[0]}; pass one "
                         f"generator or one per batch item")
    else:
        noise = torch.cat([torch.randn((1, *shape[1:]), generator=g, device="cpu",
                                       dtype=torch.float32) for g in gens])
    return noise.to(like)


# ---------------------------------------------------------------------------- VP samplers


class DDPMSampler(Sampler):
    """Ancestral sampling from the posterior q(x_{t'} | x_t, x0) (Ho et al. 2020, eq. 6-7)
    with the "fixed_small" variance beta~ = (1 - abar_{t'}) / (1 - abar_t) * beta_{t->t'},
    skipping between the sampler's timesteps as diffusers' ``DDPMScheduler`` does."""

    def _step(self, model_output: torch.Tensor, i: int, x: torch.Tensor,
              generator: Generator) -> torch.Tensor:
        abar_all = self.schedule.alphas_cumprod
        t = int(self.timesteps[i])
        prev = int(self.timesteps[i + 1]) if i + 1 < len(self.timesteps) else -1
        abar_t = abar_all[t]
        abar_prev = abar_all[prev] if prev >= 0 else torch.tensor(1.0)
        alpha = abar_t / abar_prev  # alpha of the (possibly skipping) step t -> prev
        beta = 1 - alpha
        x0 = self._clip(self.schedule.predicted_x0(model_output, x, t))
        # posterior mean mu~(x_t, x0), eq. 7
        x0_coef = (abar_prev ** 0.5 * beta) / (1 - abar_t)
        xt_coef = alpha ** 0.5 * (1 - abar_prev) / (1 - abar_t)
        x_prev = x0_coef * x0 + xt_coef * x
        if t > 0:
            variance = torch.clamp((1 - abar_prev) / (1 - abar_t) * beta, min=1e-20)
            x_prev = x_prev + variance ** 0.5 * randn(model_output.shape, generator,
                                                       model_output)
        return x_prev


class DDIMSampler(Sampler):
    """DDIM (Song et al. 2021, eq. 12): deterministic for eta = 0, DDPM-like for eta = 1.

    As diffusers' ``DDIMScheduler``, the previous timestep is ``t - T // n`` (which differs
    from the next entry of ``timesteps`` only for "trailing"/"linspace" spacings that do not
    divide T evenly).

    Args:
        schedule: the training noise schedule.
        eta: scale of the per-step noise (0 = deterministic DDIM).
        set_alpha_to_one: the last step lands on abar = 1 (a clean sample) rather than on
            abar_0 (Stable Diffusion's config uses False).
    """

    def __init__(self, schedule: NoiseSchedule | None = None, eta: float = 0.0,
                 set_alpha_to_one: bool = True):
        super().__init__(schedule)
        if eta < 0:
            raise ValueError(f"DDIM eta must be >= 0, got {eta}")
        self.eta = float(eta)
        self.set_alpha_to_one = bool(set_alpha_to_one)

    def _step(self, model_output: torch.Tensor, i: int, x: torch.Tensor,
              generator: Generator) -> torch.Tensor:
        abar_all = self.schedule.alphas_cumprod
        t = int(self.timesteps[i])
        prev = t - self.schedule.num_train_timesteps // self.num_steps
        abar_t = abar_all[t]
        final = torch.tensor(1.0) if self.set_alpha_to_one else abar_all[0]
        abar_prev = abar_all[prev] if prev >= 0 else final
        x0 = self._clip(self.schedule.predicted_x0(model_output, x, t))
        eps = self.schedule.predicted_eps(model_output, x, t)  # from the unclipped output
        # sigma_t(eta), eq. 16
        variance = (1 - abar_prev) / (1 - abar_t) * (1 - abar_t / abar_prev)
        std = self.eta * variance ** 0.5
        x_prev = abar_prev ** 0.5 * x0 + (1 - abar_prev - std ** 2) ** 0.5 * eps
        if self.eta > 0:
            x_prev = x_prev + std * randn(model_output.shape, generator, model_output)
        return x_prev


# ---------------------------------------------------------------------------- sigma-space


def _alpha_sigma(sigma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(alpha_t, sigma_t) of x_t = alpha_t x0 + sigma_t eps from the VE noise level sigma."""
    alpha = 1 / ((sigma ** 2 + 1) ** 0.5)
    return alpha, sigma * alpha


class DPMSolverSampler(Sampler):
    """DPM-Solver++(2M) (Lu et al. 2022, "DPM-Solver++", algorithm 2, midpoint form): a
    second-order multistep solver of the diffusion ODE in the data-prediction (x0) form,
    stepping in lambda = log(alpha / sigma). The first step and the last (to sigma = 0) are
    first order, as in diffusers' ``DPMSolverMultistepScheduler``."""

    def _make_timesteps(self, n: int) -> torch.Tensor:
        ts = self.schedule.inference_timesteps(n, skip_final=True)
        self.sigmas = torch.cat([self.schedule.sigmas_at(ts), torch.zeros(1)])  # (n + 1,)
        return ts

    def _reset(self) -> None:
        self._last: tuple[int, torch.Tensor] | None = None  # (index, x0) of the last step

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, t: Timestep) -> torch.Tensor:
        sigma = _expand(self.schedule.sigmas_at(t), x0)
        alpha, sigma = _alpha_sigma(sigma)
        return alpha * x0 + sigma * noise

    def _step(self, model_output: torch.Tensor, i: int, x: torch.Tensor,
              generator: Generator) -> torch.Tensor:
        def lam(alpha: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
            return torch.log(alpha) - torch.log(sigma)

        alpha_s, sigma_s = _alpha_sigma(self.sigmas[i])
        x0 = self._clip(x0_from_output(self.schedule.prediction_type, model_output, x,
                                       alpha_s, sigma_s))
        x = x.float()
        alpha_t, sigma_t = _alpha_sigma(self.sigmas[i + 1])
        h = lam(alpha_t, sigma_t) - lam(alpha_s, sigma_s)  # inf for the final sigma = 0
        phi = alpha_t * (torch.exp(-h) - 1.0)
        last = i == len(self.timesteps) - 1
        if self._last is None or self._last[0] != i - 1 or last:  # DPM-Solver++(1) = DDIM
            x_prev = (sigma_t / sigma_s) * x - phi * x0
        else:  # x0 extrapolated half a step: x0 + (x0 - x0_prev) / (2 r), algorithm 2
            alpha_r, sigma_r = _alpha_sigma(self.sigmas[i - 1])
            r = (lam(alpha_s, sigma_s) - lam(alpha_r, sigma_r)) / h
            d1 = (1.0 / r) * (x0 - self._last[1])
            x_prev = (sigma_t / sigma_s) * x - phi * x0 - 0.5 * phi * d1
        self._last = (i, x0)
        return x_prev


class EulerSampler(Sampler):
    """Euler steps of the probability-flow ODE dx/dsigma = (x - x0(x)) / sigma in the
    variance-exploding view x = x_t / sqrt(abar_t) (Karras et al. 2022, algorithm 1 without
    the second-order correction), as diffusers' ``EulerDiscreteScheduler`` with linear sigma
    interpolation. Its "linspace" timesteps are fractional (float32), as in diffusers."""

    def _make_timesteps(self, n: int) -> torch.Tensor:
        ts = self.schedule.inference_timesteps(n, fractional_linspace=True)
        self.sigmas = torch.cat([self.schedule.sigmas_at(ts), torch.zeros(1)])  # (n + 1,)
        return ts

    @property
    def init_noise_sigma(self) -> float:
        if not len(self.timesteps):
            raise RuntimeError(f"call {type(self).__name__}.set_timesteps(n) first")
        top = self.sigmas.max()
        # as diffusers: sigma_max for "linspace"/"trailing", sqrt(sigma_max^2 + 1) for "leading"
        if self.schedule.timestep_spacing == "leading":
            top = (top ** 2 + 1) ** 0.5
        return float(top)

    def scale_model_input(self, x: torch.Tensor, t: Timestep) -> torch.Tensor:
        sigma = self.sigmas[self.index_for_timestep(t)]
        return x / ((sigma ** 2 + 1) ** 0.5)  # back to the VP x_t the network was trained on

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, t: Timestep) -> torch.Tensor:
        return x0 + noise * _expand(self.schedule.sigmas_at(t), x0)

    def _x0(self, model_output: torch.Tensor, x: torch.Tensor, sigma: torch.Tensor
            ) -> torch.Tensor:
        kind = self.schedule.prediction_type
        if kind == "eps":
            x0 = x - sigma * model_output
        elif kind == "v":
            x0 = model_output * (-sigma / (sigma ** 2 + 1) ** 0.5) + (x / (sigma ** 2 + 1))
        else:
            x0 = model_output
        return self._clip(x0)

    def _step(self, model_output: torch.Tensor, i: int, x: torch.Tensor,
              generator: Generator) -> torch.Tensor:
        sigma = self.sigmas[i]
        x = x.float()
        derivative = (x - self._x0(model_output, x, sigma)) / sigma
        return x + derivative * (self.sigmas[i + 1] - sigma)


class EulerAncestralSampler(EulerSampler):
    """Ancestral Euler (k-diffusion's ``sample_euler_ancestral``, as diffusers'
    ``EulerAncestralDiscreteScheduler``): an Euler step down to sigma_down, then fresh noise
    of std sigma_up, with sigma_down^2 + sigma_up^2 = sigma_next^2."""

    def _step(self, model_output: torch.Tensor, i: int, x: torch.Tensor,
              generator: Generator) -> torch.Tensor:
        sigma, sigma_to = self.sigmas[i], self.sigmas[i + 1]
        x = x.float()
        x0 = self._x0(model_output, x, sigma)
        sigma_up = (sigma_to ** 2 * (sigma ** 2 - sigma_to ** 2) / sigma ** 2) ** 0.5
        sigma_down = (sigma_to ** 2 - sigma_up ** 2).clamp(min=0) ** 0.5
        x_prev = x + (x - x0) / sigma * (sigma_down - sigma)
        # noise is drawn at every step, the last included, to stay in sync with diffusers
        return x_prev + randn(model_output.shape, generator, model_output) * sigma_up


def _expand(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """0-d or (B,) per-item values -> broadcastable against ``like`` (B, ...)."""
    values = values.to(like.device)
    return values if values.dim() == 0 else values.reshape(-1, *[1] * (like.dim() - 1))


# ---------------------------------------------------------------------------- registry

SAMPLERS: dict[str, type[Sampler]] = {
    "ddim": DDIMSampler,
    "ddpm": DDPMSampler,
    "dpm++2m": DPMSolverSampler,
    "euler": EulerSampler,
    "euler_a": EulerAncestralSampler,
}


def create_sampler(name: str, schedule: NoiseSchedule | None = None, **options) -> Sampler:
    """A sampler by registry name (see ``SAMPLERS``) on ``schedule``.

    Args:
        name: "ddim", "ddpm", "dpm++2m", "euler" or "euler_a".
        schedule: the training noise schedule (default: Stable Diffusion 1.x's).
        options: sampler-specific options, e.g. ``eta`` and ``set_alpha_to_one`` for DDIM.
    """
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; available: {', '.join(sorted(SAMPLERS))}")
    cls = SAMPLERS[name]
    accepted = [p for p in inspect.signature(cls.__init__).parameters if p not in
                ("self", "schedule")]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ValueError(f"sampler {name!r} has no option(s) {', '.join(unknown)}; its "
                         f"options: {', '.join(accepted) or 'none'}")
    return cls(schedule, **options)


__all__ = ["SAMPLERS", "DDIMSampler", "DDPMSampler", "DPMSolverSampler",
           "EulerAncestralSampler", "EulerSampler", "Sampler", "create_sampler", "randn"]

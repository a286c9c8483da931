"""Noise schedules, samplers, the diffusion objective and the diffusers scheduler converter.

Parity: every sampler runs the same 25-step trajectory as its diffusers scheduler (converted
with ``sampler_from_diffusers``) under a fixed deterministic "network", with the loop of a
diffusers pipeline (``init_noise_sigma``, ``scale_model_input``, ``step``). Stochastic
samplers draw their noise from CPU generators exactly as diffusers' ``randn_tensor`` does with
CPU generators, so they are compared exactly too. Analytic tests use an oracle network that
knows x0 and returns the true eps / v / x0 for the current x_t.
"""

from __future__ import annotations

import json

import pytest
import torch

diffusers = pytest.importorskip("diffusers")

from mmgen.diffusion import (  # noqa: E402
    SAMPLERS,
    DDIMSampler,
    DiffusionObjective,
    NoiseSchedule,
    create_sampler,
)
from mmgen.interop.diffusers_schedulers import (  # noqa: E402
    sampler_from_diffusers,
    schedule_from_diffusers,
)

CLASSES = {
    "ddpm": diffusers.DDPMScheduler,
    "ddim": diffusers.DDIMScheduler,
    "dpm++2m": diffusers.DPMSolverMultistepScheduler,
    "euler": diffusers.EulerDiscreteScheduler,
    "euler_a": diffusers.EulerAncestralDiscreteScheduler,
}
SD = {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
      "steps_offset": 1}
CONFIGS = {
    # Stable Diffusion 1.x's scheduler config, each class's default spacing
    "sd": SD,
    # ... with "leading" spacing (mmgen's default; Euler then scales init noise differently)
    "sd_leading": {**SD, "timestep_spacing": "leading"},
    "cosine_v_trailing_zero_snr": {"beta_schedule": "squaredcos_cap_v2",
                                   "prediction_type": "v_prediction",
                                   "timestep_spacing": "trailing",
                                   "rescale_betas_zero_snr": True},
    "linear_x0_linspace_clip": {"beta_schedule": "linear", "prediction_type": "sample",
                                "timestep_spacing": "linspace"},
}
SHAPE = (2, 4, 8, 8)


def fake_model(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return torch.tanh(x) * 0.5 + 0.01 * float(t) / 1000


def diffusers_scheduler(name: str, config: str, **extra):
    kwargs = dict(CONFIGS[config])
    if name in ("ddpm", "ddim"):  # SD: clip_sample False, set_alpha_to_one False
        kwargs["clip_sample"] = config == "linear_x0_linspace_clip"
    if name == "ddim":
        kwargs["set_alpha_to_one"] = False
    return CLASSES[name](**{**kwargs, **extra})


def run_both(ref, ours, steps=25, start=0, generators=None, step_kwargs=None):
    """Run diffusers' and mmgen's loops side by side; returns the max abs and relative error
    over all steps."""
    ref.set_timesteps(steps)
    ours.set_timesteps(steps)
    assert torch.equal(ref.timesteps.double(), ours.timesteps.double())
    noise = torch.randn(SHAPE, generator=torch.Generator().manual_seed(1))
    if start == 0:
        x_ref, x_ours = noise * ref.init_noise_sigma, noise * ours.init_noise_sigma
    else:  # img2img: noise an "image" to timesteps[start] and continue from there
        init = torch.randn(SHAPE, generator=torch.Generator().manual_seed(2)).clamp(-1, 1)
        t0 = ref.timesteps[start:start + 1]
        x_ref = ref.add_noise(init, noise, t0)
        x_ours = ours.add_noise(init, noise, ours.timesteps[start:start + 1])
    g_ref = generators() if generators else torch.Generator().manual_seed(0)
    g_ours = generators() if generators else torch.Generator().manual_seed(0)
    errors = [(x_ref - x_ours).abs().max().item()]
    rel = [errors[0] / (1 + x_ref.abs().max().item())]
    for t_ref, t_ours in zip(ref.timesteps[start:], ours.timesteps[start:], strict=True):
        out_ref = fake_model(ref.scale_model_input(x_ref, t_ref), t_ref)
        out_ours = fake_model(ours.scale_model_input(x_ours, t_ours), t_ours)
        x_ref = ref.step(out_ref, t_ref, x_ref, generator=g_ref,
                         **(step_kwargs or {})).prev_sample
        x_ours = ours.step(out_ours, t_ours, x_ours, generator=g_ours)
        errors.append((x_ref - x_ours).abs().max().item())
        rel.append(errors[-1] / (1 + x_ref.abs().max().item()))
    assert torch.isfinite(x_ref).all()
    return max(errors), max(rel)


# ---------------------------------------------------------------------------- parity


# diffusers' EulerAncestral has no x0 prediction, so that pair has no reference (mmgen's
# Euler-a with x0 prediction is covered by the perfect-denoiser tests below).
@pytest.mark.parametrize("name, config", [
    (n, c) for n in CLASSES for c in CONFIGS
    if not (n == "euler_a" and c == "linear_x0_linspace_clip")])
def test_trajectory_matches_diffusers(name, config):
    ref = diffusers_scheduler(name, config)
    ours = sampler_from_diffusers(ref)
    assert type(ours) is SAMPLERS[name]
    err, rel = run_both(ref, ours)
    assert rel < 1e-5, f"max error {err:.3g} (relative {rel:.3g})"


@pytest.mark.parametrize("name", CLASSES)
def test_img2img_part_way_matches_diffusers(name):
    ref = diffusers_scheduler(name, "sd")
    err, rel = run_both(ref, sampler_from_diffusers(ref), start=10)
    assert rel < 1e-5, f"max error {err:.3g}"


@pytest.mark.parametrize("name", ["ddpm", "euler_a"])
def test_per_item_generators_match_diffusers(name):
    ref = diffusers_scheduler(name, "sd")
    err, rel = run_both(ref, sampler_from_diffusers(ref), steps=10, generators=lambda: [
        torch.Generator().manual_seed(s) for s in (5, 6)])
    assert rel < 1e-5, f"max error {err:.3g}"


def test_ddim_eta_matches_diffusers():
    ref = diffusers_scheduler("ddim", "sd")
    ours = sampler_from_diffusers(ref, eta=0.5)
    err, rel = run_both(ref, ours, step_kwargs={"eta": 0.5})
    assert rel < 1e-5, f"max error {err:.3g}"


@pytest.mark.parametrize("beta_schedule", ["linear", "scaled_linear", "squaredcos_cap_v2"])
@pytest.mark.parametrize("zero_snr", [False, True])
def test_schedule_tensors_match_diffusers(beta_schedule, zero_snr):
    ref = diffusers.DDPMScheduler(beta_schedule=beta_schedule, rescale_betas_zero_snr=zero_snr,
                                  prediction_type="v_prediction")
    schedule = schedule_from_diffusers(ref)
    assert torch.equal(schedule.betas, ref.betas)
    assert torch.equal(schedule.alphas_cumprod, ref.alphas_cumprod)
    x0, noise = torch.randn(3, 2, 4, 4), torch.randn(3, 2, 4, 4)
    t = torch.tensor([0, 500, 999])
    assert torch.equal(schedule.add_noise(x0, noise, t), ref.add_noise(x0, noise, t))
    assert torch.equal(schedule.velocity(x0, noise, t), ref.get_velocity(x0, noise, t))


@pytest.mark.parametrize("spacing", ["leading", "trailing", "linspace"])
@pytest.mark.parametrize("name", CLASSES)
def test_timesteps_match_diffusers_for_many_step_counts(name, spacing):
    ref = CLASSES[name](timestep_spacing=spacing, steps_offset=1)
    ours = sampler_from_diffusers(ref)
    for n in (1, 2, 3, 7, 10, 25, 50, 61, 100, 500):
        ref.set_timesteps(n)
        ours.set_timesteps(n)
        # diffusers' float arange makes n + 1 "trailing" timesteps (the last -1) for some n
        # (e.g. 61); mmgen keeps the first n
        assert torch.equal(ref.timesteps[:n].double(), ours.timesteps.double()), n
        assert len(ours.timesteps) == n


@pytest.mark.parametrize("spacing", ["leading", "trailing", "linspace"])
@pytest.mark.parametrize("name", ["ddpm", "ddim"])
def test_as_many_steps_as_training_timesteps_run_the_full_chain(name, spacing):
    # "leading" with Stable Diffusion's steps_offset=1 would start at t = T (diffusers raises
    # an IndexError there); every spacing means every timestep at n = T
    sampler = create_sampler(name, NoiseSchedule(timestep_spacing=spacing, steps_offset=1))
    sampler.set_timesteps(1000)
    assert torch.equal(sampler.timesteps, torch.arange(999, -1, -1))
    ref = CLASSES[name](timestep_spacing=spacing, steps_offset=0)  # where diffusers can run
    ref.set_timesteps(1000)
    assert torch.equal(ref.timesteps, sampler.timesteps)


# ---------------------------------------------------------------------------- analytics


def oracle(schedule: NoiseSchedule, x0: torch.Tensor):
    """A perfect network: the true eps / v / x0 of x_t (the VP input the network sees)."""
    def model(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        abar = 1 / (1 + schedule.sigmas_at(t).double() ** 2)
        eps = (x_t.double() - abar.sqrt() * x0) / (1 - abar).sqrt()
        out = {"eps": eps, "v": abar.sqrt() * eps - (1 - abar).sqrt() * x0, "x0": x0}
        return out[schedule.prediction_type].float()
    return model


def sample(sampler, model, steps, seed=0, start=0, init=None):
    sampler.set_timesteps(steps)
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn(SHAPE, generator=g)
    timesteps = sampler.timesteps[start:]
    x = noise * sampler.init_noise_sigma if init is None else \
        sampler.add_noise(init, noise, timesteps[:1])
    for t in timesteps:
        x = sampler.step(model(sampler.scale_model_input(x, t), t), t, x, generator=g)
    return x


@pytest.mark.parametrize("prediction_type", ["eps", "v", "x0"])
@pytest.mark.parametrize("name", SAMPLERS)
def test_perfect_denoiser_recovers_x0(name, prediction_type):
    schedule = NoiseSchedule(prediction_type=prediction_type)
    x0 = torch.rand(SHAPE, generator=torch.Generator().manual_seed(3)).double() * 2 - 1
    steps, tol = (5, 1e-5) if name == "ddim" else (10, 1e-5)
    x = sample(create_sampler(name, schedule), oracle(schedule, x0), steps)
    assert (x.double() - x0).abs().max() < tol


@pytest.mark.parametrize("name", SAMPLERS)
def test_img2img_from_part_way_recovers_x0(name):
    schedule = NoiseSchedule(prediction_type="v", timestep_spacing="trailing")
    x0 = torch.rand(SHAPE, generator=torch.Generator().manual_seed(4)).double() * 2 - 1
    x = sample(create_sampler(name, schedule), oracle(schedule, x0), 20, start=12,
               init=x0.float())
    assert (x.double() - x0).abs().max() < 2e-4


def test_ddim_is_deterministic_and_eta_uses_the_generator():
    schedule = NoiseSchedule()
    a = sample(DDIMSampler(schedule), fake_model, 10, seed=0)
    b = sample(DDIMSampler(schedule), fake_model, 10, seed=0)
    assert torch.equal(a, b)
    noisy = [sample(DDIMSampler(schedule, eta=1.0), fake_model, 10, seed=s) for s in (0, 0, 1)]
    assert torch.equal(noisy[0], noisy[1]) and not torch.equal(noisy[0], noisy[2])


def test_add_noise_agrees_across_samplers():
    schedule = NoiseSchedule(prediction_type="v", zero_terminal_snr=False)
    x0, noise = torch.randn(SHAPE), torch.randn(SHAPE)
    t = torch.tensor([10, 700])
    vp = schedule.add_noise(x0, noise, t)
    for name in SAMPLERS:
        sampler = create_sampler(name, schedule)
        x_t = sampler.add_noise(x0, noise, t)
        if name.startswith("euler"):  # variance-exploding state: x_t / sqrt(abar)
            x_t = x_t / (1 + schedule.sigmas_at(t).reshape(-1, 1, 1, 1) ** 2) ** 0.5
        torch.testing.assert_close(x_t, vp, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("prediction_type", ["eps", "v", "x0"])
def test_conversions_invert_the_forward_process(prediction_type):
    schedule = NoiseSchedule(prediction_type=prediction_type)
    x0, noise = torch.randn(SHAPE), torch.randn(SHAPE)
    t = torch.tensor([3, 400])
    x_t = schedule.add_noise(x0, noise, t)
    target = schedule.target(x0, noise, t)
    torch.testing.assert_close(schedule.predicted_x0(target, x_t, t), x0, rtol=0, atol=1e-4)
    torch.testing.assert_close(schedule.predicted_eps(target, x_t, t), noise, rtol=0,
                               atol=1e-4)


def test_invalid_use_raises_clear_errors():
    sampler = create_sampler("ddim")
    with pytest.raises(RuntimeError, match="set_timesteps"):
        sampler.step(torch.zeros(SHAPE), 1, torch.zeros(SHAPE))
    for n in (0, -3, 1001):
        with pytest.raises(ValueError, match="steps"):
            sampler.set_timesteps(n)
    sampler.set_timesteps(10)
    with pytest.raises(ValueError, match="not one of"):
        sampler.step(torch.zeros(SHAPE), 5, torch.zeros(SHAPE))
    with pytest.raises(ValueError, match="unknown sampler 'plms'; available: ddim, ddpm, "
                                         "dpm\\+\\+2m, euler, euler_a"):
        create_sampler("plms")
    with pytest.raises(ValueError, match="no option"):
        create_sampler("euler", eta=0.5)
    with pytest.raises(ValueError, match="'cosine'"):
        NoiseSchedule(beta_schedule="squaredcos_cap_v2")
    with pytest.raises(ValueError, match="zero_terminal_snr"):
        NoiseSchedule(zero_terminal_snr=True)


def test_euler_linspace_timesteps_are_fractional_like_diffusers():
    sampler = create_sampler("euler", NoiseSchedule(timestep_spacing="linspace"))
    sampler.set_timesteps(25)
    assert sampler.timesteps.dtype == torch.float32 and sampler.timesteps[1] != 958
    ddim = create_sampler("ddim", NoiseSchedule(timestep_spacing="linspace"))
    ddim.set_timesteps(25)
    assert ddim.timesteps.dtype == torch.int64 and ddim.timesteps[1] == 957


# ---------------------------------------------------------------------------- objective


@pytest.mark.parametrize("prediction_type", ["eps", "v", "x0"])
def test_objective_is_zero_for_an_oracle(prediction_type):
    schedule = NoiseSchedule(prediction_type=prediction_type)
    x0 = torch.randn(8, 4, 8, 8)
    seen = {}

    def model(x_t, t, context):
        seen["context"] = context
        abar = schedule.alphas_cumprod[t].reshape(-1, 1, 1, 1).double()
        noise = (x_t.double() - abar.sqrt() * x0) / (1 - abar).sqrt()
        return schedule.target(x0.double(), noise, t).float()

    context = torch.randn(8, 3, 16)
    for objective in (DiffusionObjective(schedule),
                      DiffusionObjective(schedule, min_snr_gamma=5.0, offset_noise=0.1)):
        out = objective(model, {"x0": x0, "context": context})
        assert out["loss"].dim() == 0 and out["loss"] < 1e-8
        assert seen["context"] is context


@pytest.mark.parametrize("prediction_type,weight", [
    ("eps", lambda snr, g: min(snr, g) / snr),
    ("v", lambda snr, g: min(snr, g) / (snr + 1)),
    ("x0", lambda snr, g: min(snr, g)),
])
def test_min_snr_weights(prediction_type, weight):
    schedule = NoiseSchedule(prediction_type=prediction_type)
    objective = DiffusionObjective(schedule, min_snr_gamma=5.0)
    t = torch.tensor([0, 100, 500, 999])
    abar = schedule.alphas_cumprod[t].double()
    expected = [weight(a / (1 - a), 5.0) for a in abar.tolist()]
    torch.testing.assert_close(objective.loss_weights(t).double(),
                               torch.tensor(expected, dtype=torch.float64), rtol=1e-5, atol=0)
    # the loss of a zero model is the weighted mean of per-sample MSEs with those draws
    x0 = torch.randn(4, 2, 4, 4)
    torch.manual_seed(0)
    out = objective(lambda x, t: torch.zeros_like(x), {"x0": x0})
    torch.manual_seed(0)
    t = torch.randint(0, 1000, (4,))
    noise = torch.randn_like(x0)
    per_sample = schedule.target(x0, noise, t).pow(2).flatten(1).mean(1)
    torch.testing.assert_close(out["loss"], (objective.loss_weights(t) * per_sample).mean())


def test_offset_noise_shifts_channel_means():
    x0 = torch.zeros(64, 3, 32, 32)
    plain = DiffusionObjective(NoiseSchedule()).noise_like(x0).mean((2, 3))  # (B, C)
    offset = DiffusionObjective(NoiseSchedule(), offset_noise=1.0).noise_like(x0).mean((2, 3))
    assert plain.std() < 0.1 and 0.7 < offset.std() < 1.3


# ---------------------------------------------------------------------------- converter


@pytest.mark.parametrize("cls,options,key", [
    ("DDIMScheduler", {"trained_betas": [0.1] * 10, "num_train_timesteps": 10},
     "trained_betas"),
    ("DDIMScheduler", {"thresholding": True}, "thresholding"),
    ("DDPMScheduler", {"variance_type": "fixed_large"}, "variance_type"),
    ("DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++"}, "algorithm_type"),
    ("DPMSolverMultistepScheduler", {"solver_order": 3}, "solver_order"),
    ("DPMSolverMultistepScheduler", {"solver_type": "heun"}, "solver_type"),
    ("DPMSolverMultistepScheduler", {"use_karras_sigmas": True}, "use_karras_sigmas"),
    ("DPMSolverMultistepScheduler", {"final_sigmas_type": "sigma_min"}, "final_sigmas_type"),
    ("EulerDiscreteScheduler", {"timestep_type": "continuous"}, "timestep_type"),
    ("EulerDiscreteScheduler", {"interpolation_type": "log_linear"}, "interpolation_type"),
    ("EulerDiscreteScheduler", {"prediction_type": "flow_prediction"}, "prediction_type"),
])
def test_converter_rejects_unsupported_options(cls, options, key):
    scheduler = getattr(diffusers, cls)(**options)
    with pytest.raises(ValueError, match=key):
        sampler_from_diffusers(scheduler)


def test_converter_rejects_unknown_classes():
    with pytest.raises(ValueError, match="PNDMScheduler.*DDPMScheduler, DDIMScheduler"):
        sampler_from_diffusers(diffusers.PNDMScheduler())
    with pytest.raises(ValueError, match="_class_name"):
        sampler_from_diffusers({"beta_start": 0.1})
    # the schedule alone converts from any class (e.g. Stable Diffusion 1.x's PNDM config)
    pndm = diffusers.PNDMScheduler(**SD, skip_prk_steps=True, set_alpha_to_one=False)
    assert schedule_from_diffusers(pndm) == NoiseSchedule()


@pytest.mark.parametrize("name", CLASSES)
def test_saved_config_converts_like_the_scheduler(name, tmp_path):
    scheduler = diffusers_scheduler(name, "sd")
    in_memory = sampler_from_diffusers(scheduler)
    scheduler.save_config(tmp_path)
    for source in (tmp_path, tmp_path / "scheduler_config.json",
                   json.loads((tmp_path / "scheduler_config.json").read_text())):
        loaded = sampler_from_diffusers(source)
        assert type(loaded) is type(in_memory) and loaded.schedule == in_memory.schedule
        assert vars(loaded).keys() == vars(in_memory).keys()
        assert getattr(loaded, "set_alpha_to_one", None) == getattr(in_memory,
                                                                    "set_alpha_to_one", None)
    # a minimal JSON falls back to the class's diffusers defaults
    minimal = sampler_from_diffusers({"_class_name": CLASSES[name].__name__})
    default = sampler_from_diffusers(CLASSES[name]())
    assert minimal.schedule == default.schedule

"""diffusers schedulers -> mmgen samplers.

A diffusers scheduler is a noise schedule plus a sampler; :func:`sampler_from_diffusers` splits
it into a :class:`NoiseSchedule` and the matching mmgen sampler, which then reproduces the
scheduler's trajectory (``tests/test_diffusion_samplers.py`` checks this step by step).
It reads in-memory schedulers, config dicts and ``scheduler_config.json`` files (JSON only,
no diffusers import). Options that change the numerics and that mmgen does not implement
(trained betas, dynamic thresholding, Karras sigmas, ...) raise an error naming the option
rather than being silently ignored.

    sampler = sampler_from_diffusers("stable-diffusion-v1-5/scheduler")
    schedule = schedule_from_diffusers("stable-diffusion-v1-5")   # any scheduler class
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from mmgen.checkpoint import read_json
from mmgen.diffusion.samplers import Sampler, create_sampler
from mmgen.diffusion.schedule import NoiseSchedule

CONFIG_NAME = "scheduler_config.json"

# diffusers class -> mmgen sampler
SAMPLER_NAMES = {
    "DDPMScheduler": "ddpm",
    "DDIMScheduler": "ddim",
    "DPMSolverMultistepScheduler": "dpm++2m",
    "EulerDiscreteScheduler": "euler",
    "EulerAncestralDiscreteScheduler": "euler_a",
}
_PREDICTION = {"epsilon": "eps", "v_prediction": "v", "sample": "x0"}
_BETAS = {"linear": "linear", "scaled_linear": "scaled_linear", "squaredcos_cap_v2": "cosine"}
# diffusers' own defaults where they differ between classes (absent keys take these)
_SPACING_DEFAULT = {"DPMSolverMultistepScheduler": "linspace",
                    "EulerDiscreteScheduler": "linspace",
                    "EulerAncestralDiscreteScheduler": "linspace"}  # others: "leading"
_CLIPS = ("DDPMScheduler", "DDIMScheduler")  # classes with clip_sample (default True)

# Options whose other values change the numerics in ways mmgen does not implement:
# class (or "*" for all) -> {option: supported values, the first being diffusers' default}.
_SUPPORTED: dict[str, dict[str, tuple[Any, ...]]] = {
    "*": {"trained_betas": (None,), "thresholding": (False,)},
    "DDPMScheduler": {"variance_type": ("fixed_small",)},
    "DPMSolverMultistepScheduler": {
        "algorithm_type": ("dpmsolver++", "deis"),  # diffusers maps "deis" to dpmsolver++
        "solver_order": (2,),
        "solver_type": ("midpoint", "logrho", "bh1", "bh2"),  # the last three: midpoint
        "use_karras_sigmas": (False, None),
        "use_exponential_sigmas": (False, None),
        "use_beta_sigmas": (False, None),
        "use_lu_lambdas": (False, None),
        "use_flow_sigmas": (False, None),
        "use_dynamic_shifting": (False, None),
        "final_sigmas_type": ("zero",),
        "lambda_min_clipped": (-math.inf,),
        "variance_type": (None,),
    },
    "EulerDiscreteScheduler": {
        "interpolation_type": ("linear",),
        "use_karras_sigmas": (False, None),
        "use_exponential_sigmas": (False, None),
        "use_beta_sigmas": (False, None),
        "timestep_type": ("discrete",),
        "final_sigmas_type": ("zero",),
    },
}


def sampler_from_diffusers(source: Any, **options: Any) -> Sampler:
    """The mmgen sampler equivalent to a diffusers scheduler.

    Args:
        source: a diffusers scheduler (DDPM, DDIM, DPMSolverMultistep, EulerDiscrete or
            EulerAncestralDiscrete), its config dict, a ``scheduler_config.json`` path, or a
            folder holding one (directly or in ``scheduler/``).
        options: sampler options that diffusers passes to ``step`` instead of storing in
            the config, e.g. ``eta=0.3`` for DDIM.
    """
    cls, config = _read(source)
    if cls not in SAMPLER_NAMES:
        raise ValueError(f"cannot convert diffusers scheduler {cls!r}; supported: "
                         f"{', '.join(SAMPLER_NAMES)}")
    for key, allowed in {**_SUPPORTED["*"], **_SUPPORTED.get(cls, {})}.items():
        value = config.get(key, allowed[0])
        if value not in allowed:
            raise ValueError(f"{cls} option {key}={value!r} is not supported by mmgen's "
                             f"{SAMPLER_NAMES[cls]!r} sampler (supported: "
                             f"{', '.join(map(repr, allowed))})")
    if cls == "DDIMScheduler":
        options = {"set_alpha_to_one": config.get("set_alpha_to_one", True), **options}
    return create_sampler(SAMPLER_NAMES[cls], _schedule(cls, config), **options)


def schedule_from_diffusers(source: Any) -> NoiseSchedule:
    """The :class:`NoiseSchedule` of any diffusers scheduler config (e.g. Stable Diffusion's
    ``PNDMScheduler``): only the beta schedule, prediction type and spacing are read.

    Args:
        source: as for :func:`sampler_from_diffusers`.
    """
    cls, config = _read(source)
    for key, allowed in _SUPPORTED["*"].items():
        if config.get(key, allowed[0]) not in allowed:
            raise ValueError(f"{cls} option {key}={config[key]!r} is not supported by mmgen's "
                             f"NoiseSchedule")
    return _schedule(cls, config)


def _schedule(cls: str, config: dict[str, Any]) -> NoiseSchedule:
    prediction = config.get("prediction_type", "epsilon")
    if prediction not in _PREDICTION:
        raise ValueError(f"{cls} option prediction_type={prediction!r} is not supported; "
                         f"supported: {', '.join(_PREDICTION)}")
    betas = config.get("beta_schedule", "linear")
    if betas not in _BETAS:
        raise ValueError(f"{cls} option beta_schedule={betas!r} is not supported; "
                         f"supported: {', '.join(_BETAS)}")
    clip = 0.0
    if cls in _CLIPS and config.get("clip_sample", True):
        clip = float(config.get("clip_sample_range", 1.0))
    return NoiseSchedule(
        num_train_timesteps=int(config.get("num_train_timesteps", 1000)),
        beta_start=float(config.get("beta_start", 0.0001)),
        beta_end=float(config.get("beta_end", 0.02)),
        beta_schedule=_BETAS[betas],
        prediction_type=_PREDICTION[prediction],
        zero_terminal_snr=bool(config.get("rescale_betas_zero_snr", False)),
        clip_sample=clip,
        timestep_spacing=config.get("timestep_spacing") or _SPACING_DEFAULT.get(cls, "leading"),
        steps_offset=int(config.get("steps_offset", 0)),
    )


def _read(source: Any) -> tuple[str, dict[str, Any]]:
    """(class name, config dict) of a scheduler, a config dict or a config file/folder."""
    if isinstance(source, dict):
        config = dict(source)
    elif isinstance(source, (str, Path)):
        path = Path(source)
        if path.is_dir():
            nested = path / "scheduler" / CONFIG_NAME
            path = nested if nested.is_file() and not (path / CONFIG_NAME).is_file() \
                else path / CONFIG_NAME
        if not path.is_file():
            raise FileNotFoundError(f"no diffusers scheduler config at {path} (expected a "
                                    f"{CONFIG_NAME} or a folder holding one)")
        config = read_json(path)
    elif hasattr(source, "config") and hasattr(source, "step"):  # an in-memory scheduler
        return type(source).__name__, dict(source.config)
    else:
        raise TypeError(f"expected a diffusers scheduler, a config dict or a path to "
                        f"{CONFIG_NAME}, got {type(source).__name__}")
    if "_class_name" not in config:
        raise ValueError(f"the scheduler config has no '_class_name' key, so its scheduler "
                         f"class is unknown (supported: {', '.join(SAMPLER_NAMES)})")
    return config["_class_name"], config

"""Diffusion models: the noise schedule, samplers and training objective (the process, kept
outside the networks) and the U-Net denoiser.

    schedule = NoiseSchedule()                          # Stable Diffusion 1.x's
    loss = DiffusionObjective(schedule)(unet, {"x0": latents, "context": text_states})
    sampler = create_sampler("dpm++2m", schedule)       # or ddim, ddpm, euler, euler_a
"""

from mmgen.diffusion.objective import DiffusionObjective
from mmgen.diffusion.samplers import (
    SAMPLERS,
    DDIMSampler,
    DDPMSampler,
    DPMSolverSampler,
    EulerAncestralSampler,
    EulerSampler,
    Sampler,
    create_sampler,
)
from mmgen.diffusion.schedule import NoiseSchedule
from mmgen.diffusion.unet import UNet, UNetConfig

__all__ = [
    "SAMPLERS",
    "DDIMSampler",
    "DDPMSampler",
    "DPMSolverSampler",
    "DiffusionObjective",
    "EulerAncestralSampler",
    "EulerSampler",
    "NoiseSchedule",
    "Sampler",
    "UNet",
    "UNetConfig",
    "create_sampler",
]

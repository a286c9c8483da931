"""Generative adversarial networks: DCGAN (optionally class- or attribute-conditioned) and
the adversarial objective that trains it on :class:`mmgen.train.Trainer`.

    gan = mmgen.create_model("gan/dcgan/mnist")          # 28 px, conditioned on the digit
    images = gan(gan.sample_latents(16), labels)          # (16, 1, 28, 28) in [-1, 1]
    objective = GANObjective(loss="hinge")                # D step: opt_idx 0, G step: 1

Registered: ``gan/dcgan/64`` (the paper's and pytorch/examples' network), ``gan/dcgan/mnist``
and ``gan/dcgan/tiny`` (tests).
"""

from mmgen.gan.dcgan import DCGAN, PRESETS, DCGANConfig, Discriminator, Generator

__all__ = ["PRESETS", "DCGAN", "DCGANConfig", "Discriminator", "Generator"]

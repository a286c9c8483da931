"""Neural style transfer (issue #19): Gatys et al.'s optimisation over a feature network
(:mod:`mmgen.style.gatys`, losses in :mod:`mmgen.style.losses`, feature networks in
:mod:`mmgen.style.features`), Johnson et al.'s feed-forward network
(:mod:`mmgen.style.transformer_net`) and Huang & Belongie's AdaIN
(:mod:`mmgen.style.adain`); colour preservation in :mod:`mmgen.style.color`."""

from mmgen.style.adain import AdaINConfig, AdaINModel, load_adain
from mmgen.style.transformer_net import TransformerNet, TransformerNetConfig, load_fast_style

__all__ = ["AdaINConfig", "AdaINModel", "TransformerNet", "TransformerNetConfig", "load_adain",
           "load_fast_style"]

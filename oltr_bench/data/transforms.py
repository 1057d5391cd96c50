"""Data modes, selected per config (``data.pipeline``): per-sample work in the loader workers,
per-batch work on the training device.

- ``parity``: the official OLTR transforms (``data/dataloader.py``): train =
  RandomResizedCrop(224) -> RandomHorizontalFlip -> ColorJitter(0.4, 0.4, 0.4, 0) -> ToTensor ->
  Normalize(ImageNet mean/std); eval = Resize(256) -> CenterCrop(224) -> ToTensor -> Normalize.
  Everything runs on PIL images in the workers, as in the official code.
- ``fast``: the same random parameters (the crop box, flip and jitter factors of a sample are
  identical to ``parity``'s for the same seed), but the workers only decode (JPEGs through
  libjpeg-turbo, at 1/2, 1/4 or 1/8 size while decoding when the crop allows it), crop-resize in
  one antialiased bilinear step and flip, and emit uint8; ColorJitter, the float conversion and
  the normalisation run batched on the training device. ``data.decode: device`` moves the JPEG
  decode itself to the device (batched ``torchvision.io.decode_jpeg``, nvJPEG on CUDA). Pixels
  differ slightly from ``parity`` (one resampling step, jitter in float rather than on uint8
  images, eval crop taken in one resize); the distribution of crops and colours is the same.
- ``embedded``: for the rendered-glyph benchmark, whose images are already randomly rendered:
  train = RandomCrop(size, padding=2, edge padding) (no flips: a mirrored glyph can be another
  class); eval = the image as is. Both normalise to [-1, 1].

Every random choice of a sample comes from ``random.Random(seed)`` with the sample's seed from
:func:`oltr_bench.data.samplers.sample_seeds`, so augmentation does not depend on the worker or
process that loads the sample.
"""

from __future__ import annotations

import math
import random
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision import transforms as T
from torchvision.transforms import functional as TF

from oltr_bench.config.schema import DECODERS, DataConfig, one_of
from oltr_bench.data.images import RawImage, UndecodableItems, decode_jpeg
from oltr_bench.errors import OltrError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
JITTER = 0.4  # ColorJitter(brightness=0.4, contrast=0.4, saturation=0.4, hue=0)
GRAY_WEIGHTS = (0.2989, 0.587, 0.114)  # torchvision's rgb_to_grayscale
NO_AUX = torch.zeros(0)


# -- random parameters (shared by parity and fast) -----------------------------------------
def resized_crop_box(width: int, height: int, rng: random.Random, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)) -> tuple[int, int, int, int]:
    """``(top, left, h, w)`` of a RandomResizedCrop, torchvision's algorithm (10 tries, then a central crop)."""
    area = width * height
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target_area = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(*log_ratio))
        w = int(round(math.sqrt(target_area * aspect)))
        h = int(round(math.sqrt(target_area / aspect)))
        if 0 < w <= width and 0 < h <= height:
            return rng.randint(0, height - h), rng.randint(0, width - w), h, w
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        w, h = int(round(height * max(ratio))), height
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def jitter_params(rng: random.Random) -> tuple[list[int], list[float]]:
    """ColorJitter(0.4, 0.4, 0.4, 0): a random order of (brightness, contrast, saturation) and their factors."""
    order = [0, 1, 2]
    rng.shuffle(order)
    factors = [rng.uniform(1 - JITTER, 1 + JITTER) for _ in range(3)]
    return order, factors


def center_box(width: int, height: int, resize: int, size: int) -> tuple[float, float, float, float]:
    """``(top, left, h, w)`` in original pixels of Resize(resize) followed by CenterCrop(size)."""
    scale = resize / min(width, height)
    side = size / scale
    return (height - side) / 2, (width - side) / 2, side, side


# -- the modes -----------------------------------------------------------------------------
class Pipeline:
    """A data mode for one kind of split: ``sample`` runs in the workers, ``batch`` on the device."""

    name = ""

    def __init__(self, data_cfg: DataConfig, train: bool):
        self.train = train
        self.size = data_cfg.image_size
        self.resize = data_cfg.resize

    def sample(self, image: RawImage, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x, aux)`` for one image: the worker's output and what the batch step still needs."""
        raise NotImplementedError

    def batch(self, x: torch.Tensor | list[torch.Tensor], aux: torch.Tensor, device: torch.device) -> torch.Tensor:
        """The model input (float, normalised) for a collated batch, on ``device``."""
        return x.to(device, non_blocking=True)

    @property
    def stacks(self) -> bool:
        """Whether ``sample`` outputs have one shape (else the batch is a list)."""
        return True


class ParityPipeline(Pipeline):
    """The official OLTR transforms on PIL images."""

    name = "parity"

    def __init__(self, data_cfg: DataConfig, train: bool):
        super().__init__(data_cfg, train)
        self.normalize = T.Normalize(IMAGENET_MEAN, IMAGENET_STD)
        self.eval_transform = T.Compose([T.Resize(self.resize), T.CenterCrop(self.size), T.ToTensor(), self.normalize])

    def sample(self, image: RawImage, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        img = image.pil()
        if not self.train:
            return self.eval_transform(img), NO_AUX
        rng = random.Random(seed)
        top, left, h, w = resized_crop_box(img.width, img.height, rng)
        img = TF.resized_crop(img, top, left, h, w, [self.size, self.size], T.InterpolationMode.BILINEAR)
        if rng.random() < 0.5:
            img = img.transpose(Image.FLIP_LEFT_RIGHT)
        order, factors = jitter_params(rng)
        adjust = (TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation)
        for op in order:
            img = adjust[op](img, factors[op])
        return self.normalize(TF.to_tensor(img)), NO_AUX


class FastPipeline(Pipeline):
    """uint8 crops from the workers (reduced-size JPEG decoding); jitter and normalisation on the device."""

    name = "fast"

    def __init__(self, data_cfg: DataConfig, train: bool):
        super().__init__(data_cfg, train)
        self.decode_on_device = data_cfg.decode == "device"
        if self.decode_on_device and decode_jpeg is None:
            raise OltrError("data.decode=device needs torchvision.io.decode_jpeg, which this torchvision does not have; use data.decode=cpu")

    @property
    def stacks(self) -> bool:
        return not self.decode_on_device

    def _params(self, width: int, height: int, seed: int) -> tuple[tuple[float, float, float, float], bool, list[float]]:
        """Crop box, flip and the 6 jitter values (3 factors, 3 op ids) of one sample."""
        if not self.train:
            return center_box(width, height, self.resize, self.size), False, []
        rng = random.Random(seed)
        box = resized_crop_box(width, height, rng)
        flip = rng.random() < 0.5
        order, factors = jitter_params(rng)
        return box, flip, factors + [float(o) for o in order]

    def sample(self, image: RawImage, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        width, height = image.size()
        box, flip, jitter = self._params(width, height, seed)
        if self.decode_on_device and image.is_jpeg:
            aux = torch.tensor([*box, float(flip), *jitter], dtype=torch.float64)
            return torch.frombuffer(bytearray(image.data), dtype=torch.uint8), aux
        return self._crop(image, width, height, box, flip), torch.tensor(jitter, dtype=torch.float32)

    def _crop(self, image: RawImage, width: int, height: int, box: tuple[float, float, float, float], flip: bool) -> torch.Tensor:
        top, left, h, w = box
        factor = 1
        while image.array is None and image.is_jpeg and factor < 8 and min(h, w) / (2 * factor) >= self.size:
            factor *= 2
        if factor > 1:
            # libjpeg scales while decoding; PIL crops and resizes the scaled image in one step.
            img = image.reduced_pil(factor)
            sx, sy = img.width / width, img.height / height
            img = img.resize((self.size, self.size), Image.BILINEAR, box=(left * sx, top * sy, (left + w) * sx, (top + h) * sy))
            if flip:
                img = img.transpose(Image.FLIP_LEFT_RIGHT)
            return torch.from_numpy(np.array(img)).permute(2, 0, 1)
        x = image.tensor()
        return crop_resize(x, box, self.size, flip)

    def batch(self, x, aux: torch.Tensor, device: torch.device) -> torch.Tensor:
        if not self.stacks:
            x, aux = self._decode_batch(x, aux, device)
        x = x.to(device, non_blocking=True).float().div_(255)
        if self.train:
            x = color_jitter(x, aux.to(device, non_blocking=True))
        mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1)
        return x.sub_(mean).div_(std)

    def _decode_batch(self, items: list[torch.Tensor], aux: list[torch.Tensor], device: torch.device):
        """Batched JPEG decode on ``device``; encoded items carry their crop in ``aux``."""
        encoded = [i for i, item in enumerate(items) if item.dim() == 1]
        try:
            decoded = decode_jpeg([items[i] for i in encoded], device=device) if encoded else []
        except RuntimeError as batch_error:
            bad = []
            for i in encoded:
                try:
                    decode_jpeg(items[i], device=device)
                except RuntimeError as exc:
                    bad.append((i, f"cannot be decoded ({exc})"))
            if not bad:
                raise batch_error
            raise UndecodableItems(bad) from None
        out, jitter = list(items), list(aux)
        for i, img in zip(encoded, decoded):
            a = aux[i].tolist()
            out[i] = crop_resize(img, a[:4], self.size, bool(a[4]))
            jitter[i] = torch.tensor(a[5:], dtype=torch.float32)
        return stack_images([o.to(device) for o in out]), torch.stack(jitter) if self.train else NO_AUX


def crop_resize(x: torch.Tensor, box, size: int, flip: bool) -> torch.Tensor:
    """Crop ``box`` = (top, left, h, w) of a [3, H, W] uint8 image and resize it to size x size (antialiased bilinear).

    The result keeps the channels-last (HWC) layout of decoded images: torch's fast uint8
    kernel works in it, batches stack from it with plain copies, and the model wants it.
    """
    top, left, h, w = (int(round(v)) for v in box)
    crop = x[:, top:top + h, left:left + w].unsqueeze(0)
    if crop.device.type == "cpu":
        crop = crop.contiguous(memory_format=torch.channels_last)
        out = F.interpolate(crop, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    else:
        out = F.interpolate(crop.float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        out = out.round_().clamp_(0, 255).to(torch.uint8).contiguous(memory_format=torch.channels_last)
    return out[0].flip(-1) if flip else out[0]


def stack_images(images: list[torch.Tensor]) -> torch.Tensor:
    """Stack [3, H, W] images into a batch, as channels-last when they are laid out HWC (no transposing copies)."""
    if all(x.dim() == 3 and x.stride(0) == 1 for x in images):
        return torch.stack([x.permute(1, 2, 0) for x in images]).permute(0, 3, 1, 2)
    return torch.stack(images)


def color_jitter(x: torch.Tensor, aux: torch.Tensor) -> torch.Tensor:
    """ColorJitter(0.4, 0.4, 0.4, 0) on a float batch in [0, 1] with per-sample factors and order.

    ``aux[:, :3]`` = brightness, contrast, saturation factors; ``aux[:, 3:6]`` = the op order
    (0 brightness, 1 contrast, 2 saturation). torchvision's tensor formulas, each clamped to
    [0, 1]: brightness ``b·x``, contrast ``c·x + (1-c)·mean(gray(x))``, saturation
    ``s·x + (1-s)·gray(x)``. All three are ``α·x + β·gray(x) + γ·mean(gray(x))``, so every
    sample takes its own op at each position in one pass over the batch.
    """
    w = torch.tensor(GRAY_WEIGHTS, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    for k in range(3):
        op = aux[:, 3 + k].round().long()
        factor = aux.gather(1, op.view(-1, 1)).view(-1).to(x.dtype)
        one = torch.ones_like(factor)
        alpha = factor
        beta = torch.where(op == 2, one - factor, torch.zeros_like(factor))
        gamma = torch.where(op == 1, one - factor, torch.zeros_like(factor))
        gray = (x * w).sum(1, keepdim=True)
        shift = beta.view(-1, 1, 1, 1) * gray + gamma.view(-1, 1, 1, 1) * gray.mean((2, 3), keepdim=True)
        x = torch.addcmul(shift, alpha.view(-1, 1, 1, 1), x).clamp_(0, 1)
    return x


class EmbeddedPipeline(Pipeline):
    """Rendered glyphs: random 2-pixel shifts (edge padding) for training; normalised to [-1, 1]."""

    name = "embedded"

    def __init__(self, data_cfg: DataConfig, train: bool):
        super().__init__(data_cfg, train)
        self.normalize = T.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
        self.eval_transform = T.Compose([T.Resize(self.size), T.CenterCrop(self.size), T.ToTensor(), self.normalize])

    def sample(self, image: RawImage, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        img = image.pil()
        if not self.train:
            return self.eval_transform(img), NO_AUX
        rng = random.Random(seed)
        img = TF.pad(img, 2, padding_mode="edge")
        top, left = rng.randint(0, img.height - self.size), rng.randint(0, img.width - self.size)
        return self.normalize(TF.to_tensor(TF.crop(img, top, left, self.size, self.size))), NO_AUX


class CallablePipeline(Pipeline):
    """Evaluation with a caller's transform: ``transform(PIL RGB image) -> tensor`` (a torchvision
    transform, say), in the loader workers; the tensor goes to the device as it is."""

    name = "callable"

    def __init__(self, transform: Callable[[Image.Image], torch.Tensor]):
        self.train = False
        self.transform = transform

    def sample(self, image: RawImage, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.transform(image.pil())
        if not isinstance(x, torch.Tensor):
            raise OltrError(f"transform returned {type(x).__name__}; expected a torch.Tensor (e.g. end it with ToTensor())")
        return x, NO_AUX


PIPELINES: dict[str, type[Pipeline]] = {"parity": ParityPipeline, "fast": FastPipeline, "embedded": EmbeddedPipeline}
"""The implementations of the ``data.pipeline`` names (:data:`oltr_bench.config.schema.PIPELINES`)."""


def build_pipeline(data_cfg: DataConfig, train: bool) -> Pipeline:
    """The train or evaluation pipeline of a (validated) ``data`` config section."""
    one_of(*PIPELINES)("data.pipeline", data_cfg.pipeline)
    one_of(*DECODERS)("data.decode", data_cfg.decode)
    return PIPELINES[data_cfg.pipeline](data_cfg, train)

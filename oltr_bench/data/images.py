"""One image as read from storage, and the ways to decode it.

A reader (:mod:`oltr_bench.data.lists`) hands the transforms a :class:`RawImage`: the encoded
file contents (image files, MS1M records) or an already decoded uint8 array (the pre-resized
image cache). Decoding happens inside the transform, so each data mode decodes the way it
needs:

- :meth:`RawImage.pil`: PIL, converted to RGB, as the official OLTR loader does (parity);
- :meth:`RawImage.tensor`: a uint8 CHW tensor, with libjpeg-turbo through
  ``torchvision.io.decode_jpeg`` for JPEGs (about 1.3x PIL's decode) and PIL otherwise (also
  where a future torchvision drops its deprecated codecs);
- :meth:`RawImage.reduced_pil`: PIL with ``draft()``, which lets libjpeg scale a JPEG by
  1/2, 1/4 or 1/8 while decoding (its DCT-domain scaling) when the region the transform keeps
  is still large enough at that scale.

Every decoding failure is an :class:`UnreadableImage` naming the file.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from oltr_bench.errors import OltrError

JPEG_MAGIC = b"\xff\xd8"


class UnreadableImage(OltrError):
    """An image that is missing or cannot be decoded."""

    def __init__(self, path: str, reason: str):
        super().__init__(f"image {path} {reason}. Fix or remove the file, or pass --skip-corrupt "
                         f"(data.skip_corrupt=true) to skip unreadable images and count them in the run manifest")
        self.path = path
        self.reason = reason

    def __reduce__(self):  # picklable across loader processes (the default would pass the message only)
        return type(self), (self.path, self.reason)


_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}  # frame headers (not DHT, JPG, DAC)


def jpeg_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a JPEG's frame header, or None if the markers cannot be followed."""
    pos, n = 2, len(data)
    while pos + 4 <= n:
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if 0xD0 <= marker <= 0xD9 or marker == 0x01:  # markers without a length
            pos += 2
            continue
        length = int.from_bytes(data[pos + 2:pos + 4], "big")
        if marker in _SOF_MARKERS:
            if pos + 9 > n:
                return None
            return int.from_bytes(data[pos + 7:pos + 9], "big"), int.from_bytes(data[pos + 5:pos + 7], "big")
        pos += 2 + length
    return None


class UndecodableItems(Exception):
    """Items of a batch that a batched device decode rejected: ``[(position in batch, reason)]``."""

    def __init__(self, items: list[tuple[int, str]]):
        super().__init__(f"{len(items)} images of the batch cannot be decoded")
        self.items = items


@dataclass
class RawImage:
    """An image before decoding: ``data`` (encoded bytes) or ``array`` (decoded HWC uint8 RGB)."""

    path: str
    data: bytes | None = None
    array: np.ndarray | None = None

    @property
    def is_jpeg(self) -> bool:
        return self.data is not None and self.data[:2] == JPEG_MAGIC

    def _open(self) -> Image.Image:
        try:
            img = Image.open(io.BytesIO(self.data))
        except UnidentifiedImageError:
            raise UnreadableImage(self.path, "cannot be decoded (not an image file PIL recognises)") from None
        except (OSError, SyntaxError, ValueError) as exc:
            raise UnreadableImage(self.path, f"cannot be decoded ({exc})") from None
        return img

    def size(self) -> tuple[int, int]:
        """(width, height) without decoding the pixels."""
        if self.array is not None:
            return self.array.shape[1], self.array.shape[0]
        if self.is_jpeg:
            size = jpeg_size(self.data)
            if size is not None:
                return size
        return self._open().size

    def pil(self) -> Image.Image:
        """The image as a PIL RGB image (``Image.open(...).convert('RGB')``, as the official loader)."""
        if self.array is not None:
            return Image.fromarray(self.array)
        return self._decode(self._open())

    def reduced_pil(self, factor: int) -> Image.Image:
        """The image decoded at 1/``factor`` size where the JPEG codec can (``draft``), RGB."""
        img = self._open()
        if factor > 1 and img.format == "JPEG":
            img.draft("RGB", (-(-img.size[0] // factor), -(-img.size[1] // factor)))
        return self._decode(img)

    def _decode(self, img: Image.Image) -> Image.Image:
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*(Possibly )?corrupt EXIF.*")
                return img.convert("RGB")
        except (OSError, SyntaxError, ValueError) as exc:
            raise UnreadableImage(self.path, f"cannot be decoded ({exc})") from None

    def tensor(self) -> torch.Tensor:
        """The image as a uint8 [3, H, W] tensor (a view of the array for cached images)."""
        if self.array is not None:
            return torch.from_numpy(self.array).permute(2, 0, 1)
        if self.is_jpeg and decode_jpeg is not None:
            try:
                return decode_jpeg(torch.frombuffer(bytearray(self.data), dtype=torch.uint8))
            except RuntimeError:
                pass  # a JPEG variant libjpeg-turbo's torchvision build rejects: let PIL decide
        return torch.from_numpy(np.array(self.pil())).permute(2, 0, 1)


def _torchvision_decode_jpeg():
    """``torchvision.io.decode_jpeg`` (RGB output), or None where this torchvision no longer has it."""
    try:
        from torchvision.io import ImageReadMode
        from torchvision.io import decode_jpeg as tv_decode
    except ImportError:
        return None

    def decode(data, device="cpu"):
        with warnings.catch_warnings():
            # torchvision 0.29 deprecates its image codecs in favour of TorchCodec; they still work.
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            return tv_decode(data, mode=ImageReadMode.RGB, device=device)

    return decode


decode_jpeg = _torchvision_decode_jpeg()

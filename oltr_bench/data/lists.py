"""The list-file dataset: one sample per list line, read from the split's root.

Images are opened with PIL and converted to RGB (as the official OLTR loader does), which also
handles CMYK, greyscale and PNG-named-JPEG files. An unreadable image is an error naming its
path.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Callable, Sequence

import torch
from PIL import Image

from oltr_bench.errors import OltrError
from oltr_bench.splits.format import SplitDir


class ListDataset(torch.utils.data.Dataset):
    """Samples of one split list: ``(image tensor, label, index)``; ``indices`` selects a subset."""

    def __init__(self, split: SplitDir, which: str, transform: Callable, indices: Sequence[int] | None = None):
        entries = split.entries(which)
        self.root: Path = split.root(which)
        self.which = which
        chosen = range(len(entries)) if indices is None else indices
        self.paths = [entries[i][0] for i in chosen]
        self.labels = [entries[i][1] for i in chosen]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.paths)

    def load(self, index: int) -> Image.Image:
        path = self.root / self.paths[index]
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*(Possibly )?corrupt EXIF.*")
                with Image.open(path) as img:
                    return img.convert("RGB")
        except FileNotFoundError:
            raise OltrError(f"image {path} listed in the {self.which} list does not exist") from None
        except OSError as exc:
            raise OltrError(f"image {path} listed in the {self.which} list cannot be read: {exc}") from None

    def __getitem__(self, index: int):
        return self.transform(self.load(index)), self.labels[index], index

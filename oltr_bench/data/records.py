"""The list-path reader for ``rec:<key>`` (MS1M-LT): images stored in a RecordIO pack.

A split whose lists hold ``rec:<key>`` paths has as root the folder with ``train.rec`` and
``train.idx`` (SPEC.md §1); the reader opens that pack lazily in each loader process and
returns the record's payload (the encoded face image) for the decoders.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from oltr_bench.data.images import RawImage, UnreadableImage
from oltr_bench.data.lists import register_reader
from oltr_bench.formats.recordio import REC_NAME, open_split_records, parse_record_path
from oltr_bench.errors import OltrError


@register_reader("rec")
class RecordReader:
    """``reader(i)`` -> the image of the ``i``-th ``rec:<key>`` path, read from ``<root>/train.rec``."""

    def __init__(self, root: Path, paths: Sequence[str]):
        self.root = Path(root)
        self.keys = [parse_record_path(p) for p in paths]
        self._records = None

    def __call__(self, i: int) -> RawImage:
        key = self.keys[i]
        where = f"{self.root / REC_NAME} record {key}"
        if self._records is None:
            self._records = open_split_records(self.root)
        try:
            _, payload = self._records.read(key)
        except (KeyError, OltrError) as exc:
            raise UnreadableImage(where, f"cannot be read ({exc})") from None
        return RawImage(where, data=payload)

    def __getstate__(self) -> dict:
        # Each loader process opens its own file handle.
        return {**self.__dict__, "_records": None}

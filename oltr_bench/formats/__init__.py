"""The files oltr-bench writes and reads: one identifier per format, and the readers and writers
of its own files (SPEC.md §1–§4).

Every file with a ``format`` key names one of the identifiers below; a reader accepts any
version of its family (``oltr-bench-results/`` ...) and refuses other files with a message that
names what it found. The modules of this package depend on nothing above them in the pipeline
(no torch, no engine), so the report, the CLI and the engine can all use them:

- :mod:`~oltr_bench.formats.jsonio`: the checked JSON reader every JSON file goes through;
- :mod:`~oltr_bench.formats.results`: ``results.json`` (SPEC.md §3) and ``face_results.json`` (§6);
- :mod:`~oltr_bench.formats.megaface`: MegaFace devkit feature files and the insightface MegaFace test pack;
- :mod:`~oltr_bench.formats.rundir`: :class:`~oltr_bench.formats.rundir.RunDir`, the one owner of a
  run directory's layout, status, config and results;
- :mod:`~oltr_bench.formats.recordio`: MXNet RecordIO packs (MS1M-ArcFace), read without MXNet.
"""

from __future__ import annotations

from typing import Any

SPLITS = "oltr-bench-splits/1"  # a split directory's manifest.json (SPEC.md §1)
RESULTS = "oltr-bench-results/1"  # results.json (SPEC.md §3)
FACE_RESULTS = "oltr-bench-face-results/1"  # face_results.json (SPEC.md §6)
RUN = "oltr-bench-run/1"  # a run directory's manifest.json
ENTRY = "oltr-bench-entry/1"  # a leaderboard entry (SPEC.md §4)
CHECKPOINT = "oltr-bench-checkpoint/2"  # checkpoints/*.pt (read with weights_only)
IMAGE_CACHE = "oltr-bench-image-cache/1"  # meta.json of a pre-resized image cache (data.image_cache)
FEATURE_CACHE_VERSION = 2  # hashed into a feature cache's key: version 1 did not record skipped images


def family(identifier: str) -> str:
    """``oltr-bench-results/1`` -> ``oltr-bench-results/``: what every version of a format starts with."""
    return identifier.rsplit("/", 1)[0] + "/"


def is_format(value: Any, identifier: str) -> bool:
    """Whether ``value`` (a file's ``format`` key) names any version of ``identifier``'s format."""
    return isinstance(value, str) and value.startswith(family(identifier))

"""Leaderboard entries (SPEC.md §4): the schema check, where entries live, and how they are written.

One JSON file per entry, ``<leaderboard>/<dataset>/<slug>.json``. Entries shipped with oltr-bench
live in the package (``oltr_bench.leaderboard_data``, the repository's ``leaderboard/``); a user's
own entries go to :func:`default_entries_dir` (in the work folder). Adding an entry never
overwrites another one: the file is written under a temporary name and hard-linked into place,
which fails if the name is taken, so concurrent adds each get their own file.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from importlib.resources import files
from pathlib import Path, PurePosixPath
from typing import Any, Iterable

from oltr_bench import formats
from oltr_bench.errors import OltrError
from oltr_bench.formats.jsonio import describe, file_format, is_number, read_json
from oltr_bench.metrics.keys import METRIC_KEYS
from oltr_bench.protocols import PROTOCOLS
from oltr_bench.paths import work_dir
from oltr_bench.utils.io import dumps_json, sha256_file

ENTRY_FORMAT = formats.ENTRY
SOURCES = ("reported", "reproduced")
MAX_ENTRY_BYTES = 2**20  # an entry is a few KB
SHIPPED_PACKAGE = "oltr_bench.leaderboard_data"
SPLITS_PACKAGE = "oltr_bench.splits_data"

SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
DATASET_RE = SLUG_RE  # dataset names double as folder names


def slugify(text: str, fallback: str = "entry") -> str:
    """A file-name-safe lower-case slug of ``text`` (letters, digits, '-', '.', '_')."""
    slug = re.sub(r"[^a-z0-9._]+", "-", text.lower()).strip("-._")
    return slug[:80].rstrip("-._") or fallback


def is_http_url(value: Any) -> bool:
    return isinstance(value, str) and re.fullmatch(r"https?://\S+", value, re.IGNORECASE) is not None


# -- the schema ----------------------------------------------------------------------------------

def _is_fraction(value: Any) -> bool:
    return is_number(value) and 0 <= value <= 1


class _Checker:
    """Collects ``key: found X, expected Y`` messages for one entry."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    def bad(self, key: str, found: Any, expected: str) -> None:
        self.errors.append(f"{key}: found {describe(found)}, expected {expected}")

    def missing(self, key: str, expected: str) -> None:
        self.errors.append(f"{key}: missing, expected {expected}")

    def unknown_keys(self, where: str, data: dict, allowed: Iterable[str]) -> None:
        allowed = list(allowed)
        for key in data:
            if key not in allowed:
                self.errors.append(f"{where}{key}: unknown key, expected one of: {', '.join(allowed)}")


MAX_TEXT = 10_000  # characters of a free-text field (notes); names and the like get MAX_NAME
MAX_NAME = 200
MAX_EPOCHS = 100_000
MAX_OTHER = 1e6  # |value| of an other_metrics number (published numbers: percents, fractions, counts)


def _string(v: Any) -> bool:
    return isinstance(v, str) and v.strip() != "" and len(v) <= MAX_NAME


def _opt_string(v: Any) -> bool:
    return v is None or (isinstance(v, str) and len(v) <= MAX_NAME)


def _opt_text(v: Any) -> bool:
    return v is None or (isinstance(v, str) and len(v) <= MAX_TEXT)


def _opt_bool(v: Any) -> bool:
    return v is None or isinstance(v, bool)


def _opt_epochs(v: Any) -> bool:
    return v is None or (isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= MAX_EPOCHS)


def _opt_threshold(v: Any) -> bool:
    return v is None or _is_fraction(v)


# Plain top-level fields: key -> (required, check, what was expected).
FIELDS: dict[str, tuple[bool, Any, str]] = {
    "format": (True, lambda v: v == ENTRY_FORMAT, f"{ENTRY_FORMAT!r}"),
    "name": (True, _string, f"a non-empty string of at most {MAX_NAME} characters"),
    "method": (True, _string, "a non-empty string (the method's registry name, e.g. 'dme')"),
    "dataset": (True, lambda v: isinstance(v, str) and DATASET_RE.match(v) is not None, "a dataset name like 'imagenet_lt'"),
    "protocol": (True, lambda v: isinstance(v, str) and v in PROTOCOLS, f"one of {', '.join(PROTOCOLS)}"),
    "source": (True, lambda v: v in SOURCES, f"one of {', '.join(SOURCES)}"),
    "verified": (True, lambda v: isinstance(v, bool), "true or false (set by 'oltr-bench leaderboard add' only)"),
    "backbone": (False, _opt_string, "a string or null"),
    "pretraining": (False, _opt_string, "a string ('none' for training from scratch) or null"),
    "extra_data": (False, _opt_bool, "true, false or null"),
    "epochs": (False, _opt_epochs, f"an integer in 0..{MAX_EPOCHS:,} or null"),
    "open_threshold": (False, _opt_threshold, "a threshold in [0, 1], or null when the method rejects on its own"),
    "notes": (False, _opt_text, f"a string of at most {MAX_TEXT:,} characters"),
    "code_url": (False, lambda v: v is None or is_http_url(v), "an http(s) URL or null"),
    "added": (False, _opt_string, "an ISO date string"),
    "seeds": (False, lambda v: isinstance(v, list) and all(isinstance(s, int) and not isinstance(s, bool) and 0 <= s < 2**63 for s in v),
              "a list of non-negative integer seeds"),
    "provenance": (False, lambda v: isinstance(v, dict), "an object"),
}
COMPOSITE = ("paper", "metrics", "metrics_std", "other_metrics", "verification")
TOP_LEVEL = (*FIELDS, *COMPOSITE)
PAPER_KEYS = {"title": _string, "venue": _string, "year": lambda v: isinstance(v, int) and not isinstance(v, bool) and 1900 <= v <= 2100, "url": is_http_url}
PAPER_EXPECTED = {"title": "a non-empty string", "venue": "a non-empty string", "year": "a year like 2019", "url": "an http(s) URL"}
VERIFICATION_KEYS = ("split_fingerprint", "predictions_sha256", "predictions", "evaluated_by")
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


def inside_folder(path: str) -> bool:
    """A relative path that stays inside the folder it is relative to (no '..', not absolute, no drive)."""
    parts = PurePosixPath(path.replace("\\", "/")).parts
    return bool(parts) and not path.startswith(("/", "\\")) and ":" not in path and ".." not in parts


def entry_errors(data: Any) -> list[str]:
    """Every schema problem of one entry, each as ``key: found X, expected Y`` (empty if valid)."""
    c = _Checker()
    if not isinstance(data, dict):
        c.bad("(top level)", data, "a JSON object")
        return c.errors
    c.unknown_keys("", data, TOP_LEVEL)
    for key, (required, check, expected) in FIELDS.items():
        if key not in data:
            if required:
                c.missing(key, expected)
        elif not check(data[key]):
            c.bad(key, data[key], expected)
    paper = data.get("paper")
    if paper is not None:
        if not isinstance(paper, dict):
            c.bad("paper", paper, "an object with title, venue, year, url")
        else:
            c.unknown_keys("paper.", paper, PAPER_KEYS)
            for key, check in PAPER_KEYS.items():
                if key in paper and paper[key] is not None and not check(paper[key]):
                    c.bad(f"paper.{key}", paper[key], PAPER_EXPECTED[key])
    metrics = data.get("metrics")
    if "metrics" not in data:
        c.missing("metrics", "an object of SPEC.md §3 metric keys")
    elif not isinstance(metrics, dict):
        c.bad("metrics", metrics, "an object of SPEC.md §3 metric keys")
    else:
        c.unknown_keys("metrics.", metrics, METRIC_KEYS)
        for key, value in metrics.items():
            if key in METRIC_KEYS and value is not None and not _is_fraction(value):
                c.bad(f"metrics.{key}", value, "a fraction in [0, 1] (not percent) or null")
    std = data.get("metrics_std")
    if std is not None:
        if not isinstance(std, dict):
            c.bad("metrics_std", std, "an object of metric keys")
        else:
            for key, value in std.items():
                if not isinstance(metrics, dict) or key not in metrics:
                    c.bad(f"metrics_std.{key}", value, "a key that is also in metrics")
                elif value is not None and not _is_fraction(value):
                    c.bad(f"metrics_std.{key}", value, "a standard deviation in [0, 1] (of fractions) or null")
    other = data.get("other_metrics")
    if other is not None:
        if not isinstance(other, dict) or not all(_string(k) for k in other):
            c.bad("other_metrics", other, "an object mapping a label to a number")
        else:
            for key, value in other.items():
                if not (is_number(value) and abs(value) <= MAX_OTHER):
                    c.bad(f"other_metrics.{key}", value, f"a number between -{MAX_OTHER:g} and {MAX_OTHER:g}")
    has_metrics = isinstance(metrics, dict) and any(v is not None for v in metrics.values())
    if isinstance(metrics, dict) and not has_metrics and not (isinstance(other, dict) and other):
        c.bad("metrics", metrics, "at least one non-null metric (or other_metrics)")
    verification = data.get("verification")
    if verification is not None:
        if not isinstance(verification, dict):
            c.bad("verification", verification, "an object written by 'oltr-bench leaderboard add'")
        else:
            c.unknown_keys("verification.", verification, VERIFICATION_KEYS)
            _check_predictions_evidence(c, verification, data.get("provenance"))
    if data.get("verified") is True:
        c.errors += _verified_errors(data)
    return c.errors


def predictions_digests(verification: dict) -> list[Any]:
    """``verification.predictions_sha256`` as a list, one per run (a single string: one run, as
    entries written before one digest per run was stored)."""
    digests = verification.get("predictions_sha256")
    return [digests] if isinstance(digests, str) else list(digests) if isinstance(digests, list) else []


def _check_predictions_evidence(c: _Checker, verification: dict, provenance: Any) -> None:
    digests = verification.get("predictions_sha256")
    if digests is not None and not (
        (isinstance(digests, str) and SHA256_RE.match(digests))
        or (isinstance(digests, list) and digests and all(isinstance(d, str) and SHA256_RE.match(d) for d in digests))
    ):
        c.bad("verification.predictions_sha256", digests, "a list of sha256 hex digests, one per run")
        return
    runs = provenance.get("runs") if isinstance(provenance, dict) else None
    if isinstance(digests, list) and isinstance(runs, list) and len(digests) != len(runs):
        c.bad("verification.predictions_sha256", digests, f"one digest per run of provenance.runs ({len(runs)})")
    paths = verification.get("predictions")
    if paths is not None and not (
        isinstance(paths, list) and all(isinstance(p, str) and p for p in paths) and len(paths) == len(predictions_digests(verification))
    ):
        c.bad("verification.predictions", paths, "a list of file paths, one per digest of verification.predictions_sha256")
    elif paths is not None and not all(inside_folder(p) for p in paths):
        c.bad("verification.predictions", paths, "paths inside the entry's folder (relative, without '..')")


def _verified_errors(data: dict) -> list[str]:
    """A verified entry must carry the evidence ``leaderboard add`` writes, for the canonical split."""
    c = _Checker()
    if data.get("source") != "reproduced":
        c.bad("verified", True, "false for a 'reported' entry (only numbers computed by oltr-bench can be verified)")
    verification = data.get("verification")
    if not isinstance(verification, dict):
        c.missing("verification", "the evidence 'oltr-bench leaderboard add' writes with verified: true")
        return c.errors
    dataset = data.get("dataset")
    canonical = canonical_fingerprint(dataset) if isinstance(dataset, str) else None
    found = verification.get("split_fingerprint")
    if canonical is None:
        c.bad("verified", True, f"false: oltr-bench knows no canonical split fingerprint for dataset {dataset!r}")
    elif found != canonical:
        c.bad("verification.split_fingerprint", found, f"the canonical fingerprint of {dataset} ({canonical[:16]}...)")
    if "predictions_sha256" not in verification:
        c.missing("verification.predictions_sha256", "the sha256 of each run's predictions, written by 'oltr-bench leaderboard add'")
    return c.errors


# -- the canonical split fingerprint -------------------------------------------------------------

def canonical_fingerprint(dataset: str) -> str | None:
    """The fingerprint (SPEC.md §1) of the released lists of ``dataset``, or None if none is shipped.

    This is the one place that decides which split a ``verified`` entry must have been evaluated
    on. It reads the JSON files shipped in ``splits/`` (``oltr_bench.splits_data``): a file with
    top-level ``"dataset": <name>`` and ``"fingerprint": <hex>`` (e.g. the manifest of the
    released lists) declares that fingerprint canonical for that dataset.
    """
    for path in _json_files(Path(str(files(SPLITS_PACKAGE)))):
        try:
            data = read_json(path, "a split specification")
        except OltrError:
            continue
        if data.get("dataset") == dataset and isinstance(data.get("fingerprint"), str):
            return data["fingerprint"]
    return None


def _json_files(root: Path) -> list[Path]:
    return sorted(root.rglob("*.json")) if root.is_dir() else []


# -- where entries live ----------------------------------------------------------------------------

def shipped_entries_dir() -> Path:
    return Path(str(files(SHIPPED_PACKAGE)))


def default_entries_dir() -> Path:
    """Where a user's own entries live: ``<work folder>/leaderboard`` (``$OLTR_BENCH_HOME/leaderboard``
    or ``./oltr_work/leaderboard``), next to the runs they come from. ``leaderboard add`` and
    ``submit`` write there without ``--dir``, and reports include it, wherever the command runs
    (with ``$OLTR_BENCH_HOME`` set); the entries shipped with oltr-bench are never written to
    unless ``--dir`` names their folder (a pull request to oltr-bench)."""
    return work_dir() / "leaderboard"


def is_entry_file(path: Path) -> bool:
    return formats.is_format(file_format(path), formats.ENTRY)


def check_writable_location(root: Path) -> None:
    """Refuse to write inside an installed package (site-packages): entries there would be lost
    on the next upgrade and may not be writable at all."""
    resolved = root.resolve()
    package_dir = Path(__file__).resolve().parents[1]
    installed = any(part in ("site-packages", "dist-packages") for part in resolved.parts)
    if installed or resolved == package_dir or package_dir in resolved.parents:
        raise OltrError(
            f"--dir {root}: that is inside the installed oltr-bench package ({resolved}); "
            "write entries to a folder of your own, e.g. --dir ./leaderboard"
        )


# -- reading and writing -----------------------------------------------------------------------------

def load_entry(path: Path) -> dict[str, Any]:
    """Read one entry file (the checked JSON reader; :func:`entry_errors` checks the schema)."""
    return read_json(path, "a leaderboard entry (SPEC.md §4)", max_bytes=MAX_ENTRY_BYTES)


def location_errors(path: Path, data: dict[str, Any]) -> list[str]:
    """An entry file must be ``<dataset>/<slug>.json`` with a slug of safe characters."""
    errors = []
    if isinstance(data.get("dataset"), str) and path.parent.name != data["dataset"]:
        errors.append(f"dataset: found {data['dataset']!r} but the file is in folder {path.parent.name!r}, expected <leaderboard>/{data['dataset']}/{path.name}")
    if not SLUG_RE.match(path.stem):
        errors.append(f"file name: found {path.name!r}, expected lower-case letters, digits, '-', '.', '_' followed by .json")
    return errors


def entry_files(root: Path) -> list[Path]:
    """The entry files of a leaderboard folder: ``<root>/<dataset>/*.json``."""
    return sorted(p for p in Path(root).glob("*/*.json") if not p.name.startswith("."))


def validate_files(paths: Iterable[Path]) -> dict[Path, list[str]]:
    """Schema and location problems of each entry file (files without problems map to [])."""
    report: dict[Path, list[str]] = {}
    for path in paths:
        try:
            data = load_entry(path)
        except OltrError as exc:
            report[path] = [str(exc).removeprefix(f"{path}: ")]
            continue
        errors = entry_errors(data)
        if isinstance(data, dict):
            errors += location_errors(path, data)
            if not errors:
                errors += predictions_errors(path, data)
        report[path] = errors
    return report


def predictions_errors(path: Path, data: dict[str, Any]) -> list[str]:
    """Re-check ``verification.predictions_sha256`` against the predictions files the entry names
    (``verification.predictions``, relative to the entry's folder) that still exist.

    This is a consistency check, not proof: an entry carries no predictions, so a hand-made one
    without ``verification.predictions`` (or whose files are gone) cannot be told from one
    written by ``leaderboard add`` (SPEC.md §4).
    """
    verification = data.get("verification")
    if not isinstance(verification, dict) or not isinstance(verification.get("predictions"), list):
        return []
    errors = []
    for i, (name, digest) in enumerate(zip(verification["predictions"], predictions_digests(verification))):
        if not inside_folder(name):
            continue  # refused by entry_errors; never read a file outside the entry's folder
        file = Path(path).parent / name
        if file.is_file() and (found := sha256_file(file)) != digest:
            errors.append(f"verification.predictions_sha256[{i}]: found {digest[:16]}..., but {file} has sha256 {found[:16]}...; "
                          "expected the digest of the predictions that were verified (the file changed, or the entry was edited)")
    return errors


def write_entry(root: Path, entry: dict[str, Any], slug: str) -> Path:
    """Write ``entry`` to ``<root>/<dataset>/<slug>.json`` atomically, never replacing a file.

    If the name is taken (also by a concurrent writer), ``<slug>-2``, ``<slug>-3``, ... are tried.
    """
    errors = entry_errors(entry)
    if errors:
        raise OltrError("the entry is not valid: " + "; ".join(errors))
    check_writable_location(root)
    folder = Path(root) / entry["dataset"]
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{slug}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(dumps_json(entry).encode("utf-8"))
            fh.flush()
            os.fsync(fh.fileno())
        for n in range(1, 10_000):
            target = folder / (f"{slug}.json" if n == 1 else f"{slug}-{n}.json")
            try:
                os.link(tmp, target)  # atomic, and fails if the name exists
                return target
            except FileExistsError:
                continue
        raise OltrError(f"{folder}: could not find a free file name for {slug!r}")
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)

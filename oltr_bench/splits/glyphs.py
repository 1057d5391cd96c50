"""Rendered-glyph images: the embedded default benchmark that needs no data and no network.

``oltr-bench make-splits`` without ``--dataset`` builds its benchmark from this module. Each class
is one character (Latin, digits, Greek, Cyrillic, punctuation, symbols) and each image is that
character drawn with one of the TrueType fonts shipped inside matplotlib's ``mpl-data`` (DejaVu
Sans/Serif/Mono in four styles, STIX General in four styles, six Computer Modern faces). Only those
fonts are used: system fonts differ between machines, matplotlib's are the same wherever the same
matplotlib is installed. Images are written as ordinary PNG files in a class-folder tree, so the
loader that reads real datasets reads this one unchanged.

**Classes.** :func:`character_pool` filters a fixed candidate list down to the characters that
render in at least three fonts, keeping the candidate order. A font counts for a character only if
the character is in the font's character map *and* draws a non-empty mask (a missing glyph would
otherwise silently render as the font's empty box). Computer Modern fonts use a TeX encoding in
which only letters and digits sit at their ASCII positions, so they serve those only. Characters
drawn exactly like another candidate (Greek capital Alpha and Latin A, Cyrillic ``о`` and Latin
``o``, Cyrillic ``З`` and the digit 3 in STIX ...) are not candidates: such a pair could never be
told apart. Look-alikes that *differ* (``o/O/0``, ``l/I/1/|``, ``c/C``, ``x/×``, ``Л/Λ``) are kept
on purpose: they keep a classifier from saturating, so that methods can differ. Open classes come
from the same pool: :func:`choose_classes` draws disjoint known and open characters with a seed.

**Augmentations.** Every image draws from its own random stream: a font among those that render
the character, an em size of 62-86 % of the image side, extra stroke thickening (1/2 output pixel,
light faces only, one image in three), rotation (±15°), horizontal shear (±0.25), anisotropic
scale (±10 % per axis), translation (±10 % of the side), a background colour with an optional
linear gradient, a foreground colour with a minimum luminance contrast to it, and Gaussian pixel
noise (sigma 0-10 grey levels). The glyph is centred horizontally on its ink but placed vertically
by its baseline, as in text: lower-case letters are smaller and sit lower than capitals, ``:`` and
``÷`` keep their heights. Drawing and the affine warp happen at twice the output resolution and are
box-filtered down, which anti-aliases the warp.

**Determinism.** The random stream of image ``index`` of class ``char`` is seeded with a SHA-256
hash of ``(seed, code point, index)`` and nothing else, so an image is the same whichever process
renders it, in whatever order; :func:`render_tree` therefore writes identical bytes with one or
several worker processes. Text layout uses Pillow's basic engine (not libraqm, whose presence
differs between installs) and PNGs are written with fixed options and no metadata. Rasterisation
belongs to FreeType, so other Pillow/FreeType builds may differ in a few pixels:
:func:`font_versions` records the versions and font hashes for the split manifest.
"""

from __future__ import annotations

import functools
import hashlib
import io
import multiprocessing
import os
import sys
import unicodedata
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

IMAGE_SIZE = 32
MIN_FONTS = 3  # a class needs at least this many fonts so that style varies within it
_SUPERSAMPLE = 2  # draw and warp at 2x, then box-filter down
_BOLD = "Bol"  # marks the bold files (DejaVu*-Bold*, STIXGeneralBol*); cmb10 is bold-extended but light enough
_LUMA = np.array([0.299, 0.587, 0.114])  # ITU-R BT.601 luma weights
_MIN_CONTRAST = 80.0  # grey levels of luma between glyph and background
_CHUNK = 256  # images per worker task: large enough to amortise IPC, small enough for a smooth bar

# Font files from matplotlib's mpl-data/fonts/ttf. Left out: the STIX size/non-Unicode variants and
# DejaVu*Display (only big operators), and LastResort (draws a placeholder for every code point).
_UNICODE_FONTS = (
    "DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSans-Oblique.ttf", "DejaVuSans-BoldOblique.ttf",
    "DejaVuSerif.ttf", "DejaVuSerif-Bold.ttf", "DejaVuSerif-Italic.ttf", "DejaVuSerif-BoldItalic.ttf",
    "DejaVuSansMono.ttf", "DejaVuSansMono-Bold.ttf", "DejaVuSansMono-Oblique.ttf",
    "DejaVuSansMono-BoldOblique.ttf",
    "STIXGeneral.ttf", "STIXGeneralBol.ttf", "STIXGeneralItalic.ttf", "STIXGeneralBolIta.ttf",
)
_TEX_FONTS = ("cmr10.ttf", "cmb10.ttf", "cmti10.ttf", "cmss10.ttf", "cmtt10.ttf", "cmmi10.ttf")
_ASCII_ALNUM = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")

# Candidate classes in their fixed order (append only: the order fixes choose_classes' draws).
# Letters and signs drawn like another candidate are not candidates: Greek Α Β Ε Ζ Η Ι Κ Μ Ν Ο Ρ Τ
# Υ Χ ο, Cyrillic А В Е К М Н О Р С Т Х а е о р с у х, Г=Γ, П=Π, Ф=Φ, З=3 (in STIX), µ=μ, ∑=Σ.
_CANDIDATES = (
    "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    "abcdefghijklmnopqrstuvwxyz"
    "0123456789"
    "ΓΔΘΛΞΠΣΦΨΩ"
    "αβγδεζηθικλμνξπρςστυφχψω"
    "БДЖИЙЛЦЧШЩЪЫЬЭЮЯ"
    "бджзлфшэюя"
    "#$%&@?!+=<>*/\\^~{}[]()|;:"
    "§¶©®°±×÷¢£¥€¿¡"
    "∞√∂∫≈≠≤≥∇∈∩∪∀∃"
    "←→↑↓"
    "♠♣♥♦★♪"
)


def _font_dir() -> Path:
    import matplotlib

    return Path(matplotlib.get_data_path()) / "fonts" / "ttf"


@functools.lru_cache(maxsize=None)
def _font(name: str, px: int) -> ImageFont.FreeTypeFont:
    # BASIC layout: libraqm is optional in Pillow builds and would change glyph placement.
    return ImageFont.truetype(str(_font_dir() / name), px, layout_engine=ImageFont.Layout.BASIC)


def _renders(font_name: str, char: str) -> bool:
    """True if ``char`` is in the font's character map and draws at least one pixel."""
    if ord(char) not in _charmap(font_name):
        return False
    mask = _font(font_name, 48).getmask(char)
    return mask.getbbox() is not None


@functools.lru_cache(maxsize=None)
def _charmap(font_name: str) -> frozenset[int]:
    from matplotlib.ft2font import FT2Font

    return frozenset(FT2Font(str(_font_dir() / font_name)).get_charmap())


@functools.lru_cache(maxsize=None)
def _font_table() -> dict[str, tuple[str, ...]]:
    """Character -> the fonts that render it, for every candidate with at least MIN_FONTS."""
    table: dict[str, tuple[str, ...]] = {}
    for char in _CANDIDATES:
        fonts = [f for f in _UNICODE_FONTS if _renders(f, char)]
        if char in _ASCII_ALNUM:
            fonts += [f for f in _TEX_FONTS if _renders(f, char)]
        if len(fonts) >= MIN_FONTS:
            table[char] = tuple(fonts)
    return table


def character_pool() -> list[str]:
    """Characters usable as classes, in a fixed order (deterministic across runs), each verified to render in >= 3 fonts."""
    return list(_font_table())


def fonts_for(char: str) -> tuple[str, ...]:
    """Font file names used for ``char``; ValueError if ``char`` is not in the pool."""
    try:
        return _font_table()[char]
    except KeyError:
        raise ValueError(f"character {char!r} ({class_dir(char)}) is not in the glyph pool") from None


def _stream(*parts: object) -> np.random.Generator:
    """A random generator seeded by a hash of ``parts`` (works for any ints, incl. negative seeds)."""
    digest = hashlib.sha256(":".join(map(str, ("oltr-glyphs", *parts))).encode("ascii")).digest()
    return np.random.Generator(np.random.PCG64(int.from_bytes(digest[:16], "little")))


def choose_classes(num_known: int, num_open: int, seed: int) -> tuple[list[str], list[str]]:
    """Disjoint known and open character lists drawn deterministically from character_pool().

    Both lists keep pool order, so label ``i`` is the ``i``-th known character of the pool.
    """
    pool = character_pool()
    if num_known < 1 or num_open < 0 or num_known + num_open > len(pool):
        raise ValueError(
            f"need 1 <= num_known and 0 <= num_open with num_known + num_open <= {len(pool)} "
            f"(the glyph pool size); got num_known={num_known}, num_open={num_open}"
        )
    order = _stream("classes", seed).permutation(len(pool))
    known = sorted(int(i) for i in order[:num_known])
    unseen = sorted(int(i) for i in order[num_known:num_known + num_open])
    return [pool[i] for i in known], [pool[i] for i in unseen]


def class_dir(char: str) -> str:
    """Filesystem-safe folder name for a character, e.g. 'U+0041' (no spaces, ASCII only)."""
    if len(char) != 1:
        raise ValueError(f"expected one character, got {char!r}")
    return f"U+{ord(char):04X}"


def class_name(char: str) -> str:
    """Human-readable class name, e.g. 'U+0041_LATIN_CAPITAL_LETTER_A' (no whitespace; used in manifests/reports)."""
    name = unicodedata.name(char, "UNNAMED")
    return f"{class_dir(char)}_{name.replace(' ', '_')}"


@functools.lru_cache(maxsize=8)
def _ramp(side: int) -> tuple[np.ndarray, np.ndarray]:
    coords = (np.arange(side, dtype=np.float32) + 0.5) / side - 0.5
    return np.meshgrid(coords, coords)  # x, y in [-0.5, 0.5]


def render(char: str, index: int, seed: int, size: int = IMAGE_SIZE) -> Image.Image:
    """Image number `index` of class `char`: all randomness derived from (seed, char, index) only, so
    rendering is identical whatever order or process renders it."""
    fonts = fonts_for(char)
    rng = _stream("image", seed, ord(char), index)
    big = size * _SUPERSAMPLE

    # Glyph mask at 2x: baseline 0.36 em below the centre puts capitals' middle at the centre.
    font_name = fonts[int(rng.integers(len(fonts)))]
    px = int(round(big * rng.uniform(0.62, 0.86)))
    # Extra thickening of 1 px at 2x (1/2 output px) for a third of the light faces; bold faces
    # get none, since thickening them fills the counters of detailed glyphs (®, ≠, ¥) into blobs.
    stroke = int(rng.random() < 1 / 3) * (_BOLD not in font_name)
    font = _font(font_name, px)
    left, _, right, _ = font.getbbox(char, anchor="ls", stroke_width=stroke)
    origin = (round(big / 2 - (left + right) / 2), round(big / 2 + 0.36 * px))
    mask = Image.new("L", (big, big), 0)
    ImageDraw.Draw(mask).text(origin, char, fill=255, font=font, anchor="ls",
                              stroke_width=stroke, stroke_fill=255)

    # Affine warp about the centre: scale, shear, rotate, translate (forward map, inverted for PIL).
    theta = np.deg2rad(rng.uniform(-15.0, 15.0))
    shear = rng.uniform(-0.25, 0.25)
    sx, sy = rng.uniform(0.9, 1.1, size=2)
    tx, ty = rng.uniform(-0.1, 0.1, size=2) * big
    c, s = np.cos(theta), np.sin(theta)
    linear = np.array([[c, -s], [s, c]]) @ np.array([[1.0, shear], [0.0, 1.0]]) @ np.diag([sx, sy])
    inverse = np.linalg.inv(linear)
    centre = np.array([big / 2, big / 2])
    offset = centre - inverse @ (centre + np.array([tx, ty]))
    coeffs = (inverse[0, 0], inverse[0, 1], offset[0], inverse[1, 0], inverse[1, 1], offset[1])
    mask = mask.transform((big, big), Image.Transform.AFFINE, tuple(float(v) for v in coeffs),
                          resample=Image.Resampling.BILINEAR).reduce(_SUPERSAMPLE)
    if mask.size != (size, size):  # odd sizes: reduce() rounds up
        mask = mask.crop((0, 0, size, size))

    # Colours: any background, a foreground with enough luminance contrast to stay legible.
    # (first of 16 candidates that passes; failing all, black or white, whichever contrasts more).
    bg = rng.uniform(0, 255, size=3)
    candidates = rng.uniform(0, 255, size=(16, 3))
    legible = np.flatnonzero(np.abs((candidates - bg) @ _LUMA) >= _MIN_CONTRAST)
    if legible.size:
        fg = candidates[legible[0]]
    else:
        fg = np.full(3, 0.0 if bg @ _LUMA > 127.5 else 255.0)
    field = np.broadcast_to(bg.astype(np.float32), (size, size, 3)).copy()
    if rng.random() < 0.5:  # a gentle linear gradient across the background
        x, y = _ramp(size)
        angle = rng.uniform(0, 2 * np.pi)
        ramp = (np.cos(angle) * x + np.sin(angle) * y)[..., None]
        field += ramp * rng.uniform(-60, 60, size=3).astype(np.float32)

    alpha = np.asarray(mask, dtype=np.float32)[..., None] / 255.0
    pixels = field * (1.0 - alpha) + fg.astype(np.float32) * alpha
    pixels += rng.standard_normal((size, size, 3), dtype=np.float32) * np.float32(rng.uniform(0, 10))
    return Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8), "RGB")


def png_bytes(image: Image.Image) -> bytes:
    """PNG encoding with fixed options and no metadata chunks, so equal images give equal bytes."""
    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=False, compress_level=6)
    return buf.getvalue()


def _relpath(char: str, index: int) -> str:
    return f"{class_dir(char)}/{index:05d}.png"


def _render_chunk(job: tuple[str, str, list[int], int, int]) -> int:
    """Worker task: render and write some images of one class; returns how many were written."""
    root, char, indices, seed, size = job
    for index in indices:
        Path(root, _relpath(char, index)).write_bytes(png_bytes(render(char, index, seed, size)))
    return len(indices)


def render_tree(root: Path, plan: dict[str, int], seed: int, size: int = IMAGE_SIZE,
                workers: int | None = None, progress: bool = True) -> dict[str, list[str]]:
    """Render plan[char] images per character into root/<class_dir(char)>/<index:05d>.png and return
    {char: [relative posix paths, sorted]}. Multi-process with `workers` (default: min(2, cpu count));
    a tqdm progress bar on stderr when `progress`; output bytes identical for 1 or 2 workers.
    PNG files written with fixed options so bytes are deterministic (no timestamps/metadata)."""
    from tqdm import tqdm

    root = Path(root)
    for char, count in plan.items():  # check the whole plan before writing anything
        fonts_for(char)
        if not 0 <= count <= 100_000:
            raise ValueError(f"{class_dir(char)}: image count {count} outside 0..100000 (5-digit names)")
    for char in plan:
        (root / class_dir(char)).mkdir(parents=True, exist_ok=True)
    jobs = [(str(root), char, list(range(start, min(start + _CHUNK, count))), seed, size)
            for char, count in plan.items() for start in range(0, count, _CHUNK)]
    total = sum(plan.values())
    if workers is None:
        workers = min(2, os.cpu_count() or 1)
    workers = max(1, min(workers, len(jobs)))

    with tqdm(total=total, desc="rendering glyphs", unit="img", file=sys.stderr,
              disable=not progress, leave=False) as bar:
        if workers == 1:
            for job in jobs:
                bar.update(_render_chunk(job))
        else:
            # spawn: safe whatever threads the parent runs (torch, tqdm's monitor) and on every OS.
            ctx = multiprocessing.get_context("spawn")
            with ctx.Pool(workers) as pool:
                for done in pool.imap_unordered(_render_chunk, jobs):
                    bar.update(done)
    return {char: [_relpath(char, i) for i in range(count)] for char, count in plan.items()}


def font_versions() -> dict:
    """Provenance for the manifest: matplotlib, Pillow and FreeType versions and the font file names + sha256 used."""
    import matplotlib
    import PIL
    from PIL import features

    used = sorted({name for fonts in _font_table().values() for name in fonts})
    return {
        "matplotlib": matplotlib.__version__,
        "pillow": PIL.__version__,
        "freetype": features.version("freetype2"),
        "numpy": np.__version__,
        "fonts": {name: hashlib.sha256((_font_dir() / name).read_bytes()).hexdigest() for name in used},
    }

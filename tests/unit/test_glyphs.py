"""The embedded benchmark's glyph generator: pool, class choice, naming, rendering, determinism."""

from __future__ import annotations

import hashlib
import unicodedata
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from oltr_bench.splits import glyphs


def tree_digest(root: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file under ``root``."""
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*")) if p.is_file()
    }


@pytest.fixture(scope="module")
def pool() -> list[str]:
    return glyphs.character_pool()


@pytest.fixture(scope="module")
def small_plan(pool) -> dict[str, int]:
    # Enough images that 2 workers each get several chunks, few enough to stay fast.
    return {pool[0]: 300, pool[70]: 260, pool[150]: 3, pool[-1]: 0}


def test_pool_is_large_unique_and_renderable(pool):
    assert len(pool) >= 120 + 20
    assert len(set(pool)) == len(pool)
    assert pool == glyphs.character_pool()  # stable order
    for char in pool:
        assert len(char) == 1 and not char.isspace()
        assert len(glyphs.fonts_for(char)) >= glyphs.MIN_FONTS


def test_tex_fonts_only_serve_ascii_letters_and_digits(pool):
    for char in pool:
        tex = [f for f in glyphs.fonts_for(char) if f.startswith("cm")]
        if tex:
            assert char.isascii() and char.isalnum(), (char, tex)
    assert any(f.startswith("cm") for f in glyphs.fonts_for("A"))


def test_no_two_pool_characters_draw_identically(pool):
    # An identical pair would be an unlearnable class; look-alikes must differ somewhere.
    seen: dict[bytes, str] = {}
    for char in pool:
        mask = glyphs._font(glyphs.fonts_for(char)[0], 40).getmask(char)  # DejaVu Sans for all
        key = bytes(mask) + repr(mask.size).encode()
        assert key not in seen, f"{char!r} draws like {seen[key]!r}"
        seen[key] = char


def test_unknown_character_is_rejected():
    with pytest.raises(ValueError, match="not in the glyph pool"):
        glyphs.render("\u4e00", 0, 0)


def test_choose_classes_sizes_disjoint_and_seeded(pool):
    known, unseen = glyphs.choose_classes(120, 20, seed=0)
    assert len(known) == 120 and len(unseen) == 20
    assert len(set(known)) == 120 and len(set(unseen)) == 20
    assert not set(known) & set(unseen)
    assert set(known) | set(unseen) <= set(pool)
    assert known == sorted(known, key=pool.index)  # pool order: label i is stable and readable
    assert glyphs.choose_classes(120, 20, seed=0) == (known, unseen)
    assert glyphs.choose_classes(120, 20, seed=1) != (known, unseen)
    # the whole pool can be used, but no more
    k, o = glyphs.choose_classes(len(pool) - 5, 5, seed=3)
    assert sorted(k + o, key=pool.index) == pool
    with pytest.raises(ValueError):
        glyphs.choose_classes(len(pool), 1, seed=0)
    with pytest.raises(ValueError):
        glyphs.choose_classes(0, 5, seed=0)


def test_class_dir_and_name(pool):
    assert glyphs.class_dir("A") == "U+0041"
    assert glyphs.class_name("A") == "U+0041_LATIN_CAPITAL_LETTER_A"
    dirs = [glyphs.class_dir(c) for c in pool]
    assert len(set(dirs)) == len(dirs)
    assert len({d.lower() for d in dirs}) == len(dirs)  # unique on case-insensitive filesystems too
    for char, d in zip(pool, dirs):
        assert d.isascii() and all(ch.isalnum() or ch == "+" for ch in d)
        name = glyphs.class_name(char)
        assert name.startswith(d + "_") and name.isascii()
        assert not any(ch.isspace() for ch in name)
        assert unicodedata.name(char).replace(" ", "_") in name


def test_images_are_rgb_32px_and_not_blank(pool):
    for char in pool[::7]:
        for index in range(3):
            img = glyphs.render(char, index, seed=5)
            assert img.mode == "RGB" and img.size == (glyphs.IMAGE_SIZE, glyphs.IMAGE_SIZE)
            arr = np.asarray(img, dtype=np.float32)
            assert arr.std() > 10, (char, index)  # a glyph on a background, not a flat field
    assert glyphs.render("A", 0, 0, size=48).size == (48, 48)


def test_render_depends_only_on_seed_char_index(pool):
    a, b = pool[3], pool[100]
    first = glyphs.png_bytes(glyphs.render(a, 7, seed=11))
    for index in range(5):  # render other images in between, in another order
        glyphs.render(b, index, seed=11)
        glyphs.render(a, 20 - index, seed=12)
    assert glyphs.png_bytes(glyphs.render(a, 7, seed=11)) == first
    assert glyphs.png_bytes(glyphs.render(a, 8, seed=11)) != first  # index matters
    assert glyphs.png_bytes(glyphs.render(b, 7, seed=11)) != first  # class matters
    assert glyphs.png_bytes(glyphs.render(a, 7, seed=12)) != first  # seed matters
    # images within a class vary (augmentation is not a no-op)
    distinct = {glyphs.png_bytes(glyphs.render(a, i, seed=11)) for i in range(10)}
    assert len(distinct) == 10


def test_png_has_no_metadata_chunks():
    data = glyphs.png_bytes(glyphs.render("Q", 0, 0))
    pos, chunks = 8, []
    while pos < len(data):
        length = int.from_bytes(data[pos:pos + 4], "big")
        chunks.append(data[pos + 4:pos + 8].decode("ascii"))
        pos += 12 + length
    assert chunks[0] == "IHDR" and chunks[-1] == "IEND"
    assert set(chunks) == {"IHDR", "IDAT", "IEND"}


def test_render_tree_layout_and_return_value(tmp_path, small_plan):
    out = glyphs.render_tree(tmp_path, small_plan, seed=0, workers=1, progress=False)
    assert list(out) == list(small_plan)
    for char, count in small_plan.items():
        paths = out[char]
        assert len(paths) == count and paths == sorted(paths)
        assert (tmp_path / glyphs.class_dir(char)).is_dir()
        for rel in paths:
            assert rel.startswith(glyphs.class_dir(char) + "/") and rel.endswith(".png")
    rel = out[next(iter(small_plan))][5]
    assert rel.endswith("/00005.png")
    files = tree_digest(tmp_path)
    assert sorted(files) == sorted(p for paths in out.values() for p in paths)
    with Image.open(tmp_path / rel) as img:
        assert img.mode == "RGB" and img.size == (32, 32)
        assert glyphs.png_bytes(img.copy()) == (tmp_path / rel).read_bytes()


@pytest.mark.slow
def test_render_tree_bytes_identical_for_1_and_2_workers_and_seeded(tmp_path, small_plan):
    one, two, other = tmp_path / "one", tmp_path / "two", tmp_path / "other"
    glyphs.render_tree(one, small_plan, seed=0, workers=1, progress=False)
    glyphs.render_tree(two, small_plan, seed=0, workers=2, progress=False)
    glyphs.render_tree(other, small_plan, seed=1, workers=1, progress=False)
    d1, d2, d3 = tree_digest(one), tree_digest(two), tree_digest(other)
    assert d1 == d2
    assert d1.keys() == d3.keys()
    assert all(d1[p] != d3[p] for p in d1)


def test_render_tree_rejects_unknown_characters_before_writing(tmp_path):
    with pytest.raises(ValueError):
        glyphs.render_tree(tmp_path / "t", {"A": 2, "\u4e00": 2}, seed=0, workers=1, progress=False)
    assert not (tmp_path / "t").exists()


def test_font_versions_lists_used_fonts_with_hashes(pool):
    info = glyphs.font_versions()
    assert {"matplotlib", "pillow", "freetype", "fonts"} <= set(info)
    used = {f for c in pool for f in glyphs.fonts_for(c)}
    assert set(info["fonts"]) == used
    assert all(len(h) == 64 and int(h, 16) >= 0 for h in info["fonts"].values())

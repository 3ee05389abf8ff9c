"""Images are recognised by magic bytes and judged complete by their trailer."""

from __future__ import annotations

import struct
from pathlib import Path

from vqi_image_source import formats

from .helpers import jpeg_bytes, png_bytes


def test_magic_bytes_name_the_format_not_the_extension() -> None:
    assert formats.sniff(jpeg_bytes()[:16]) == formats.JPEG
    assert formats.sniff(png_bytes()[:16]) == formats.PNG
    assert formats.sniff(b"BM" + b"\0" * 14) == formats.BMP
    assert formats.sniff(b"II*\x00" + b"\0" * 12) == formats.TIFF
    assert formats.sniff(b"MM\x00*" + b"\0" * 12) == formats.TIFF
    assert formats.sniff(b"GIF89a" + b"\0" * 10) is None
    assert formats.sniff(b"%PDF-1.7\n") is None
    assert formats.sniff(b"") is None


def test_jpeg_without_end_marker_is_incomplete(tmp_path: Path) -> None:
    full = jpeg_bytes(5000)
    (tmp_path / "a.jpg").write_bytes(full)
    (tmp_path / "b.jpg").write_bytes(full[:3000])
    assert formats.inspect(str(tmp_path / "a.jpg"), len(full)).complete
    cut = formats.inspect(str(tmp_path / "b.jpg"), 3000)
    assert cut.kind == formats.JPEG and not cut.complete


def test_png_needs_its_iend_chunk(tmp_path: Path) -> None:
    data = png_bytes()
    (tmp_path / "x.png").write_bytes(data[:-12])
    assert not formats.inspect(str(tmp_path / "x.png"), len(data) - 12).complete
    (tmp_path / "x.png").write_bytes(data)
    assert formats.inspect(str(tmp_path / "x.png"), len(data)).complete


def test_bmp_is_complete_once_its_declared_size_is_written() -> None:
    head = b"BM" + struct.pack("<I", 1000) + b"\0" * 10
    assert not formats.is_complete(formats.BMP, head, b"", 500)
    assert formats.is_complete(formats.BMP, head, b"", 1000)


def test_extension_does_not_make_an_image(tmp_path: Path) -> None:
    (tmp_path / "fake.jpg").write_bytes(b"hello, not an image at all")
    found = formats.inspect(str(tmp_path / "fake.jpg"), 26)
    assert found.kind is None
    assert formats.describe(found.head) == "68 65 6c 6c 6f 2c 20 6e"

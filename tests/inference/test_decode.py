"""Decoding: every kind of bad file becomes an ImageError with a code; odd formats become BGR,
and Mono8 stays one channel whose tensor equals the BGR expansion's."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from vqi_inference import decode

from .helpers import textured_image, write_image

MAX_BYTES = 10_000_000
MAX_PIXELS = 20_000_000


def load(path: Path) -> np.ndarray:
    return decode.load_image(str(path), MAX_BYTES, MAX_PIXELS)


def code_of(path: Path, **limits: int) -> str:
    with pytest.raises(decode.ImageError) as info:
        decode.load_image(str(path), limits.get("max_bytes", MAX_BYTES),
                          limits.get("max_pixels", MAX_PIXELS))
    return info.value.code


def test_jpeg_decodes_to_bgr_uint8(tmp_path: Path) -> None:
    img = textured_image(120, 160)
    out = load(write_image(tmp_path / "a.jpg", img))
    assert out.shape == (120, 160, 3) and out.dtype == np.uint8
    assert np.abs(out.astype(int) - img).mean() < 8  # lossy but the same picture


def test_png_and_bmp_decode_losslessly(tmp_path: Path) -> None:
    img = textured_image(50, 70)
    assert np.array_equal(load(write_image(tmp_path / "a.png", img)), img)
    assert np.array_equal(load(write_image(tmp_path / "a.bmp", img)), img)


def test_grayscale_stays_one_channel(tmp_path: Path) -> None:
    gray = textured_image(40, 30)[:, :, 0]
    out = load(write_image(tmp_path / "g.png", gray))
    assert out.shape == (40, 30) and np.array_equal(out, gray)


def _sources(tmp_path: Path) -> dict:
    from PIL import Image

    gray = textured_image(48, 64)[:, :, 0]
    color = textured_image(48, 64)
    files = {name: write_image(tmp_path / name, img) for name, img in (
        ("gray.png", gray), ("gray.jpg", gray), ("gray.bmp", gray), ("gray.tiff", gray),
        ("color.jpg", color), ("color.png", color), ("color.bmp", color),
        ("gray16.png", gray.astype(np.uint16) * 257),
        ("rgba.png", np.dstack([color, gray])))}
    Image.fromarray(color[:, :, ::-1]).quantize(16).save(tmp_path / "palette.bmp")
    Image.fromarray(gray).convert("P").save(tmp_path / "graypalette.bmp")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    Image.fromarray(gray).save(tmp_path / "rotated.jpg", exif=exif)
    for name in ("palette.bmp", "graypalette.bmp", "rotated.jpg"):
        files[name] = tmp_path / name
    return files


def test_every_source_gives_the_tensor_of_a_full_colour_decode(tmp_path: Path) -> None:
    from vqi_inference import preprocess

    norm = preprocess.Normalisation()
    for name, path in _sources(tmp_path).items():
        ours = load(path)
        reference = cv2.imread(str(path), cv2.IMREAD_COLOR)  # Ultralytics' loader
        assert (ours.ndim == 2) == name.startswith(("gray", "rotated")), name
        a = preprocess.to_tensor(ours, np.empty((1, 3, *ours.shape[:2]), np.float32), norm)
        b = preprocess.to_tensor(reference, np.empty((1, 3, *reference.shape[:2]), np.float32),
                                 norm)
        assert np.array_equal(a, b), name


def test_letterboxed_gray_equals_letterboxed_bgr(tmp_path: Path) -> None:
    from vqi_inference import letterbox

    gray = textured_image(90, 160)[:, :, 0]
    box = letterbox.plan(gray.shape, (64, 64))
    one = letterbox.apply(gray, box)
    three = letterbox.apply(cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR), box)
    assert one.ndim == 2 and all(np.array_equal(three[:, :, c], one) for c in range(3))


def test_sixteen_bit_keeps_the_high_byte(tmp_path: Path) -> None:
    wide = (np.arange(64 * 48, dtype=np.uint32).reshape(64, 48) * 21).astype(np.uint16)
    out = load(write_image(tmp_path / "w.png", wide))
    assert out.dtype == np.uint8
    assert np.array_equal(out, (wide >> 8).astype(np.uint8))


def test_alpha_channel_is_dropped(tmp_path: Path) -> None:
    img = textured_image(20, 25)
    rgba = np.dstack([img, np.full((20, 25), 7, np.uint8)])
    out = load(write_image(tmp_path / "a.png", rgba))
    assert np.array_equal(out, img)


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "e.jpg"
    path.write_bytes(b"")
    assert code_of(path) == decode.EMPTY


def test_missing_file(tmp_path: Path) -> None:
    assert code_of(tmp_path / "nope.jpg") == decode.NOT_FOUND


def test_directory_is_not_an_image(tmp_path: Path) -> None:
    assert code_of(tmp_path) == decode.NOT_AN_IMAGE


def test_text_file_is_not_an_image(tmp_path: Path) -> None:
    path = tmp_path / "notes.jpg"
    path.write_text("this is not a picture\n" * 50)
    assert code_of(path) == decode.NOT_AN_IMAGE


@pytest.mark.parametrize("suffix", [".jpg", ".png"])
def test_truncated_file_is_corrupt(tmp_path: Path, suffix: str) -> None:
    data = write_image(tmp_path / f"full{suffix}", textured_image(200, 300)).read_bytes()
    path = tmp_path / f"half{suffix}"
    path.write_bytes(data[: len(data) // 2])
    assert code_of(path) == decode.CORRUPT


def test_garbage_after_a_valid_header_is_corrupt(tmp_path: Path) -> None:
    data = bytearray(write_image(tmp_path / "ok.png", textured_image(64, 64)).read_bytes())
    data[60:] = bytes(len(data) - 60)
    path = tmp_path / "bad.png"
    path.write_bytes(bytes(data))
    assert code_of(path) == decode.CORRUPT


def test_file_over_the_byte_limit_is_too_large(tmp_path: Path) -> None:
    path = write_image(tmp_path / "big.png", textured_image(300, 300))
    assert code_of(path, max_bytes=1000) == decode.TOO_LARGE


def _png_header_only(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = struct.pack(">I", len(ihdr)) + b"IHDR" + ihdr
    chunk += struct.pack(">I", zlib.crc32(b"IHDR" + ihdr) & 0xFFFFFFFF)
    return b"\x89PNG\r\n\x1a\n" + chunk


def test_decompression_bomb_is_refused_from_the_header(tmp_path: Path) -> None:
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_header_only(60000, 60000))  # 3.6 gigapixels in 33 bytes
    with pytest.raises(decode.ImageError) as info:
        load(path)
    assert info.value.code == decode.TOO_LARGE and "60000x60000" in info.value.detail


def test_jpeg_pixel_limit_is_read_from_the_frame_header(tmp_path: Path) -> None:
    path = write_image(tmp_path / "p.jpg", textured_image(100, 200))
    assert decode.probe_size(path.read_bytes()) == ("jpeg", 200, 100)
    assert code_of(path, max_pixels=100 * 199) == decode.TOO_LARGE


def test_bmp_pixel_limit(tmp_path: Path) -> None:
    path = write_image(tmp_path / "p.bmp", textured_image(30, 40))
    assert decode.probe_size(path.read_bytes()) == ("bmp", 40, 30)
    assert code_of(path, max_pixels=1000) == decode.TOO_LARGE


def test_error_message_carries_code_and_detail(tmp_path: Path) -> None:
    path = tmp_path / "x.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n")
    with pytest.raises(decode.ImageError) as info:
        load(path)
    assert str(info.value).startswith(decode.CORRUPT + ": ")


@pytest.mark.toolchain
def test_decoding_matches_ultralytics_imread(tmp_path: Path) -> None:
    from ultralytics.utils.patches import imread

    cases = [
        write_image(tmp_path / "a.jpg", textured_image(90, 60, 1)),
        write_image(tmp_path / "g.png", textured_image(33, 44, 2)[:, :, 1]),
        write_image(tmp_path / "w.png", (textured_image(20, 30, 3).astype(np.uint16) * 250)),
        write_image(tmp_path / "a.png", np.dstack([textured_image(20, 30, 4),
                                                    np.zeros((20, 30), np.uint8)])),
    ]
    for path in cases:
        ours = load(path)
        ref = imread(str(path), cv2.IMREAD_COLOR)
        if ours.ndim == 2:  # Mono8 kept as one channel: the same pixels in each of ref's
            ours = cv2.cvtColor(ours, cv2.COLOR_GRAY2BGR)
        assert np.array_equal(ours, ref), path.name


@pytest.mark.parametrize("size,expected", [((1280, 960), (240, 320)), ((2592, 1944), (243, 324)),
                                           ((500, 400), (400, 500)), ((300, 200), (200, 300))])
def test_reduced_jpeg_decode_never_goes_below_the_model_size(tmp_path: Path, size: tuple,
                                                             expected: tuple) -> None:
    w, h = size
    data = decode.read_file(str(write_image(tmp_path / "c.jpg", textured_image(h, w))), MAX_BYTES)
    image, orig = decode.decode_reduced(data, MAX_PIXELS, (320, 320))
    assert orig == (h, w) and image.shape[:2] == expected
    r = min(320 / h, 320 / w)
    if r < 1:  # still at least the size the letterbox shrinks to
        assert image.shape[0] >= round(h * r) and image.shape[1] >= round(w * r)


def test_reduced_decode_leaves_other_formats_alone(tmp_path: Path) -> None:
    img = textured_image(960, 1280)
    data = decode.read_file(str(write_image(tmp_path / "c.png", img)), MAX_BYTES)
    image, orig = decode.decode_reduced(data, MAX_PIXELS, (320, 320))
    assert orig == (960, 1280) and np.array_equal(image, img)

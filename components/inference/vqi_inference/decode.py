"""Read and decode image files into 8-bit arrays, refusing bad input with a reason.

Pixels match what Ultralytics' loader produces (cv2.imdecode with IMREAD_COLOR): alpha is
dropped, 16-bit samples keep their high byte, and EXIF orientation is applied. A single-channel
(Mono8) source stays one channel, (H, W), so resizing touches a third of the bytes; the tensor
step repeats it into three channels, which is exactly what IMREAD_COLOR would have given
(IMREAD_ANYCOLOR; checked for PNG, JPEG, BMP incl. palettes, TIFF, 16-bit PNG, EXIF-rotated
JPEG in tests/inference/test_decode.py). Sizes are checked from the file header before the
pixels are decoded, so a small file that claims a huge canvas (a decompression bomb) never
allocates it.
"""

from __future__ import annotations

import os
import struct
from typing import Optional, Tuple

import cv2
import numpy as np

# Error codes carried in results ("<code>: <detail>"); stable strings for dashboards.
NOT_FOUND = "not_found"
IO_ERROR = "io_error"
EMPTY = "empty_file"
TOO_LARGE = "too_large"
NOT_AN_IMAGE = "not_an_image"
CORRUPT = "corrupt_image"

TRANSIENT_CODES = frozenset({NOT_FOUND, IO_ERROR})  # worth retrying with the same image id


class ImageError(Exception):
    """An image that cannot be inspected; `code` is one of the module's error codes."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


def read_file(path: str, max_bytes: int) -> np.ndarray:
    """The file's bytes as a uint8 array, or ImageError (missing, unreadable, empty, too big)."""
    try:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            if size == 0:
                raise ImageError(EMPTY, "file is empty")
            if size > max_bytes:
                raise ImageError(TOO_LARGE, f"file is {size} bytes, limit is {max_bytes}")
            data = np.fromfile(fh, dtype=np.uint8, count=size)
    except FileNotFoundError:
        raise ImageError(NOT_FOUND, f"no such file: {path}") from None
    except IsADirectoryError:
        raise ImageError(NOT_AN_IMAGE, f"is a directory: {path}") from None
    except OSError as exc:
        raise ImageError(IO_ERROR, f"cannot read {path}: {exc.strerror or exc}") from None
    if data.size != size:
        raise ImageError(IO_ERROR, f"short read: {data.size} of {size} bytes")
    return data


def probe_size(data: bytes) -> Optional[Tuple[str, Optional[int], Optional[int]]]:
    """(format, width, height) from a JPEG, PNG or BMP header; None for other formats.

    Width and height are None when a JPEG's frame header lies beyond the bytes given.
    """
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        if len(data) < 24 or data[12:16] != b"IHDR":
            raise ImageError(CORRUPT, "PNG header is incomplete")
        width, height = struct.unpack(">II", data[16:24])
        return "png", width, height
    if data[:2] == b"BM":
        if len(data) < 26:
            raise ImageError(CORRUPT, "BMP header is incomplete")
        header_size = struct.unpack("<I", data[14:18])[0]
        if header_size == 12:  # OS/2 BITMAPCOREHEADER
            width, height = struct.unpack("<HH", data[18:22])
        else:
            width, height = struct.unpack("<ii", data[18:26])
        return "bmp", abs(width), abs(height)
    if data[:2] == b"\xff\xd8":
        return ("jpeg",) + _jpeg_size(data)
    return None


_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def _jpeg_size(data: bytes) -> Tuple[Optional[int], Optional[int]]:
    """Walk JPEG segments to the first start-of-frame marker."""
    pos, end = 2, len(data)
    while pos + 4 <= end:
        if data[pos] != 0xFF:
            return None, None  # unusual layout: let the decoder judge
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:
            pos += 2
            continue
        length = struct.unpack(">H", data[pos + 2 : pos + 4])[0]
        if marker in _SOF_MARKERS:
            if pos + 9 > end:
                return None, None
            height, width = struct.unpack(">HH", data[pos + 5 : pos + 9])
            return width, height
        if marker == 0xDA or length < 2:  # scan data before any frame header
            raise ImageError(CORRUPT, "JPEG has no frame header")
        pos += 2 + length
    return None, None  # header runs past the probed bytes: let the decoder judge


def decode(data: np.ndarray, max_pixels: int) -> np.ndarray:
    """8-bit BGR (H, W, 3) or, from a single-channel source, gray (H, W); or ImageError."""
    if data.size == 0:
        raise ImageError(EMPTY, "file is empty")
    head = data[:65536].tobytes()
    probed = probe_size(head)
    if probed is not None and probed[1] is not None and probed[2] is not None:
        fmt, width, height = probed
        if width == 0 or height == 0:
            raise ImageError(CORRUPT, f"{fmt} header says {width}x{height} pixels")
        if width * height > max_pixels:
            raise ImageError(
                TOO_LARGE, f"{fmt} is {width}x{height} pixels, limit is {max_pixels} pixels"
            )
    try:
        image = cv2.imdecode(data, cv2.IMREAD_ANYCOLOR)
    except cv2.error as exc:
        raise ImageError(CORRUPT, f"decoder failed: {str(exc).strip()[:200]}") from None
    if image is None:
        if probed is None:
            raise ImageError(NOT_AN_IMAGE, "not a decodable image (JPEG, PNG, BMP, TIFF, WebP)")
        raise ImageError(CORRUPT, f"{probed[0]} data is corrupt or truncated")
    if image.shape[0] * image.shape[1] > max_pixels:
        raise ImageError(TOO_LARGE, f"{image.shape[1]}x{image.shape[0]} pixels is over the limit")
    if image.dtype != np.uint8:  # IMREAD_ANYCOLOR already gives 8 bits; guard other decoders
        wide = image.dtype == np.uint16
        image = (image >> 8).astype(np.uint8) if wide else image.astype(np.uint8)
    if image.ndim == 3 and image.shape[2] != 3:  # e.g. a 2-channel gray+alpha decoder result
        image = cv2.cvtColor(image[:, :, :1], cv2.COLOR_GRAY2BGR)
    return image


_REDUCED = ((8, cv2.IMREAD_REDUCED_COLOR_8), (4, cv2.IMREAD_REDUCED_COLOR_4),
            (2, cv2.IMREAD_REDUCED_COLOR_2))


def decode_reduced(
    data: np.ndarray, max_pixels: int, target_hw: Tuple[int, int]
) -> Tuple[np.ndarray, Tuple[int, int]]:
    """(image, original (h, w)): a large JPEG is decoded at 1/2, 1/4 or 1/8 scale in the DCT
    domain, never below the size the letterbox will shrink it to; other images decode fully.

    Several times faster for camera-size JPEGs; pixels differ slightly from a full decode followed
    by a bilinear resize (Ultralytics' path), so it is opt-in (JpegReducedDecode).
    """
    probed = probe_size(data[:65536].tobytes())
    if probed is None or probed[0] != "jpeg" or probed[1] is None or probed[2] is None:
        image = decode(data, max_pixels)
        return image, (image.shape[0], image.shape[1])
    _, width, height = probed
    r = min(target_hw[0] / max(height, 1), target_hw[1] / max(width, 1))
    factor, flag = next(((f, fl) for f, fl in _REDUCED if f * r <= 1.0), (1, None))
    if flag is None:
        image = decode(data, max_pixels)
        return image, (image.shape[0], image.shape[1])
    if width * height > max_pixels:
        raise ImageError(TOO_LARGE, f"jpeg is {width}x{height} pixels, limit is {max_pixels}")
    try:
        image = cv2.imdecode(data, flag)
    except cv2.error as exc:
        raise ImageError(CORRUPT, f"decoder failed: {str(exc).strip()[:200]}") from None
    if image is None:
        raise ImageError(CORRUPT, "jpeg data is corrupt or truncated")
    reduced = (-(-height // factor), -(-width // factor))
    if image.shape[:2] == reduced:
        return image, (height, width)
    if image.shape[:2] == reduced[::-1]:  # EXIF orientation turned it by 90 degrees
        return image, (width, height)
    full = decode(data, max_pixels)  # unexpected geometry: be exact rather than fast
    return full, (full.shape[0], full.shape[1])


def load_image(path: str, max_bytes: int, max_pixels: int) -> np.ndarray:
    """Read and decode one image file."""
    return decode(read_file(path, max_bytes), max_pixels)

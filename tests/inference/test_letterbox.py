"""Letterbox is pixel-exact with Ultralytics' LetterBox; its geometry inverts like scale_boxes."""

from __future__ import annotations

import numpy as np
import pytest

from vqi_inference import letterbox, postprocess

from .helpers import textured_image

SHAPES = [(480, 640), (640, 480), (1000, 300), (317, 1203), (320, 320), (77, 91), (1, 3000),
          (3000, 1), (333, 333), (641, 639), (2448, 3264)]


@pytest.mark.toolchain
@pytest.mark.parametrize("h,w", SHAPES)
@pytest.mark.parametrize("target", [(320, 320), (640, 640), (384, 640)])
def test_pixels_equal_ultralytics(h: int, w: int, target: tuple) -> None:
    from ultralytics.data.augment import LetterBox

    img = textured_image(h, w, seed=h * 7 + w)
    ours, _ = letterbox.letterbox(img, target)
    ref = LetterBox(target, auto=False, center=True, stride=32)(image=img)
    assert ours.shape == ref.shape == (target[0], target[1], 3)
    assert np.array_equal(ours, ref)


@pytest.mark.toolchain
@pytest.mark.parametrize("h,w", [(100, 150), (800, 600)])
def test_no_scaleup_matches_ultralytics(h: int, w: int) -> None:
    from ultralytics.data.augment import LetterBox

    img = textured_image(h, w)
    ours, _ = letterbox.letterbox(img, (320, 320), scaleup=False)
    ref = LetterBox((320, 320), auto=False, scaleup=False)(image=img)
    assert np.array_equal(ours, ref)


def test_padding_uses_the_pad_value() -> None:
    img = np.zeros((100, 400, 3), np.uint8)
    out, box = letterbox.letterbox(img, (320, 320), pad_value=114)
    assert box.top == 120 and box.bottom == 120 and box.left == 0
    assert (out[:120] == 114).all() and (out[120:200] == 0).all() and (out[200:] == 114).all()


@pytest.mark.toolchain
@pytest.mark.parametrize("h,w", SHAPES)
def test_boxes_scale_back_like_ultralytics(h: int, w: int) -> None:
    import torch
    from ultralytics.utils import ops

    rng = np.random.default_rng(h + w)
    raw = rng.uniform(-20, 660, (50, 4)).astype(np.float32)
    boxes = np.concatenate([np.minimum(raw[:, :2], raw[:, 2:]), np.maximum(raw[:, :2],
                                                                          raw[:, 2:])], 1)
    box = letterbox.plan((h, w), (640, 640))
    ours = postprocess.scale_boxes(boxes, box)
    ref = ops.scale_boxes((640, 640), torch.from_numpy(boxes.copy()), (h, w)).numpy()
    np.testing.assert_allclose(ours, ref, rtol=1e-6, atol=1e-3)
    assert (ours[:, [0, 2]] <= w).all() and (ours[:, [1, 3]] <= h).all() and (ours >= 0).all()

"""The letterbox the detector feeds YOLO: pixel-equal to ultralytics', and its inverse."""

from __future__ import annotations

import numpy as np
import pytest
from tiny_models import random_images

from engine.models.letterbox import letterbox_images, plan_letterbox, to_original_pixels


@pytest.mark.parametrize(("square", "auto"), [(False, True), (True, False)])
@pytest.mark.parametrize("size", [(1080, 810), (720, 1280), (33, 200), (640, 640)])
def test_letterbox_matches_ultralytics_pixel_for_pixel(
    size: tuple[int, int], square: bool, auto: bool
) -> None:
    from ultralytics.data.augment import LetterBox

    image = random_images(np.random.default_rng(6), (size,))[0]
    frame = plan_letterbox(size[0], size[1], 640, 32, square=square)
    ours = letterbox_images([image], [frame])[0]
    theirs = LetterBox(new_shape=(640, 640), auto=auto, stride=32)(image=image)
    np.testing.assert_array_equal(ours, theirs)


def test_to_original_pixels_inverts_the_letterbox_and_clips() -> None:
    frame = plan_letterbox(1080, 810, 640, 32)
    original = np.array([[10.0, 20.0, 400.0, 1000.0], [-50.0, 5.0, 900.0, 2000.0]])
    canvas = np.empty_like(original)
    canvas[:, 0::2] = original[:, 0::2] * frame.scale + frame.pad_left_px
    canvas[:, 1::2] = original[:, 1::2] * frame.scale + frame.pad_top_px
    back = to_original_pixels(canvas, frame)
    np.testing.assert_allclose(back[0], original[0], atol=1e-9)
    np.testing.assert_allclose(back[1], [0.0, 5.0, 810.0, 1080.0], atol=1e-9)

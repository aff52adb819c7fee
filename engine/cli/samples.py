"""Sample photos for the demo and the tests, from packages installed here.

``skimage.data`` ships a few real photos (astronaut, coffee, chelsea...) and
ultralytics ships bus.jpg and zidane.jpg; nothing is downloaded.
"""

from __future__ import annotations

from pathlib import Path

SKIMAGE_PHOTOS = (
    "astronaut",
    "coffee",
    "chelsea",
    "rocket",
    "motorcycle_left",
    "hubble_deep_field",
)


def ultralytics_asset(name: str) -> Path:
    """Path of an image bundled in the installed ultralytics package."""
    import ultralytics

    path = Path(ultralytics.__file__).parent / "assets" / name
    if not path.is_file():
        raise FileNotFoundError(f"ultralytics does not ship {name} at {path}")
    return path


def write_samples(folder: Path) -> list[Path]:
    """Write the sample photos as JPEG/PNG files into ``folder``; returns their paths."""
    import shutil

    from PIL import Image
    from skimage import data

    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name in ("bus.jpg", "zidane.jpg"):
        target = folder / name
        shutil.copyfile(ultralytics_asset(name), target)
        written.append(target)
    for name in SKIMAGE_PHOTOS:
        loader = getattr(data, name, None)
        if loader is None:
            continue
        try:
            array = loader()
        except (OSError, ValueError):  # a loader that would need a download
            continue
        target = folder / f"{name}.jpg"
        Image.fromarray(array).convert("RGB").save(target, quality=92)
        written.append(target)
    return written

"""Image files on disk -> uint8 arrays of one size and channel count (the folder sources).

`read_image(path, channels)` decodes PNG/JPEG/BMP/TIFF (and GIF/WebP) with Pillow and turns
every pixel format into exactly `channels` channels, explicitly:

| file mode                | channels=1 (grey)    | channels=3 (RGB)     | channels=4 (RGBA) |
|--------------------------|----------------------|----------------------|-------------------|
| L (grey), 1 (bilevel)    | as is                | grey copied to R,G,B | + opaque alpha    |
| I;16, I (16/32-bit grey) | scaled to 0..255 (not clipped), then as L                       |
| RGB, P (palette), CMYK   | luma (Pillow's L)    | as is / decoded      | + opaque alpha    |
| RGBA, LA, PA             | alpha dropped, luma  | alpha dropped        | as is             |

(alpha is dropped, not composited: the colour channels are kept as stored.)

`fit_size(image, (H, W), fit)` gives every image the configured size: "resize" stretches to
(H, W) (bilinear); "crop" scales the shorter side to fit and cuts the centre (no stretching).
`read_mask` reads a segmentation mask: one integer per pixel (L, P: the palette index, I;16),
resized with nearest-neighbour so no new class ids appear.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

__all__ = ["FITS", "IMAGE_SUFFIXES", "fit_size", "image_files", "read_image", "read_mask"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".webp")
FITS = ("resize", "crop")
_MODES = {1: "L", 3: "RGB", 4: "RGBA"}


def image_files(folder: Path) -> list[Path]:
    """Image files under `folder` (recursive, by suffix, case-insensitive), sorted by their
    path relative to `folder`; hidden files and folders (".name") are skipped."""
    folder = Path(folder)
    return sorted(
        (p for p in folder.rglob("*")
         if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
         and not any(part.startswith(".") for part in p.relative_to(folder).parts)),
        key=lambda p: p.relative_to(folder).as_posix(),
    )


def _open(path: Path) -> Image.Image:
    """The decoded image; ValueError naming the file when Pillow cannot read it."""
    try:
        with Image.open(path) as im:
            im.load()
            return im
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise ValueError(f"cannot read image {str(path)!r}: {e}; fix or remove the file") from e


def _to_8bit(im: Image.Image) -> Image.Image:
    """16/32-bit grey (I;16*, I) -> L, scaled by the type's range (65535), not clipped."""
    if im.mode.startswith("I;16") or im.mode == "I":
        x = np.asarray(im, dtype=np.float64)
        x = np.round(x * (255.0 / 65535.0)).clip(0, 255).astype(np.uint8)
        return Image.fromarray(x, mode="L")
    if im.mode == "F":
        raise ValueError("float images (mode F) are not supported: save them as 8 or 16 bit")
    return im


def _convert(im: Image.Image, channels: int) -> Image.Image:
    """Pillow image of any mode -> mode L, RGB or RGBA (see the module table)."""
    im = _to_8bit(im)
    if im.mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    if im.mode in ("LA", "PA"):
        im = im.convert("L") if im.mode == "LA" else im.convert("RGB")
    if channels == 1:
        return im.convert("L") if im.mode != "L" else im
    if channels == 3:
        return im.convert("RGB") if im.mode != "RGB" else im
    return im.convert("RGBA") if im.mode != "RGBA" else im


def fit_size(im: Image.Image, size: Sequence[int], fit: str, resample: int) -> Image.Image:
    """`im` at (H, W) = `size`: stretched ("resize") or shorter side scaled + centre cut
    ("crop")."""
    h, w = int(size[0]), int(size[1])
    if im.size == (w, h):
        return im
    if fit == "resize":
        return im.resize((w, h), resample)
    if fit != "crop":
        raise ValueError(f"fit={fit!r}; expected one of {FITS}")
    scale = max(h / im.height, w / im.width)
    sw, sh = max(w, round(im.width * scale)), max(h, round(im.height * scale))
    im = im.resize((sw, sh), resample)
    left, top = (sw - w) // 2, (sh - h) // 2
    return im.crop((left, top, left + w, top + h))


def read_image(path: Path, channels: int, size: Sequence[int] | None = None,
               fit: str = "resize") -> np.ndarray:
    """uint8 (H, W, channels) of the image file `path` (at `size` when given).

    Raises ValueError naming the file when it cannot be decoded.
    """
    if channels not in _MODES:
        raise ValueError(f"channels={channels!r}; expected 1 (grey), 3 (RGB) or 4 (RGBA)")
    im = _open(path)
    try:
        im = _convert(im, channels)
    except ValueError as e:
        raise ValueError(f"image {str(path)!r}: {e}") from e
    if size is not None:
        im = fit_size(im, size, fit, Image.BILINEAR)
    x = np.asarray(im, dtype=np.uint8)
    return x[..., None] if x.ndim == 2 else x


def read_mask(path: Path, size: Sequence[int] | None = None, fit: str = "resize"
              ) -> np.ndarray:
    """uint8 (H, W) class ids of the mask file `path` (nearest-neighbour to `size`).

    A mask is one integer per pixel: mode L or P (the palette index is the class id) or
    16-bit with values < 256; RGB masks are refused (colour -> class is not defined).
    """
    im = _open(path)
    if im.mode in ("RGB", "RGBA", "CMYK", "YCbCr", "LAB", "HSV", "LA", "PA"):
        raise ValueError(
            f"mask {str(path)!r} has mode {im.mode}: expected one class id per pixel "
            "(a grey 'L' or palette 'P' PNG whose pixel values are the class ids)")
    if im.mode not in ("L", "P", "1"):
        x = np.asarray(im)
        if x.size and (x.min() < 0 or x.max() > 255):
            raise ValueError(f"mask {str(path)!r} has values {x.min()}..{x.max()}: expected "
                             "class ids 0..255")
        im = Image.fromarray(x.astype(np.uint8), mode="L")
    if size is not None:
        im = fit_size(im, size, fit, Image.NEAREST)
    x = np.asarray(im, dtype=np.uint8)
    return x

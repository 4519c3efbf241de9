"""Prediction files: read images to predict, write class probabilities or masks.

`load_inputs(path)` reads a folder of image files, a .npy or a .npz; `write_predictions(c,
state, inputs, key, output)` writes `predictions.csv` + `predictions.json` (classification) or
one mask PNG per image plus `overlays.png` (segmentation). What `--mode=predict` of the
experiment scripts does, callable from any script.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np
from PIL import Image

from cnnjax.data.image_files import IMAGE_SUFFIXES
from cnnjax.train.components import Components
from cnnjax.train.predict import local_view, predict, preprocess

__all__ = ["IMAGE_SUFFIXES", "OverlayWriter", "csv_safe", "fit_image", "load_inputs",
           "mask_name", "write_predictions"]

#: `(components, names, preprocessed inputs (1, H, W, C) each, masks, output folder) ->
#: files written`: draws the masks over their images (`cnnjax.viz.run_plots.write_overlays`;
#: passed in, so that `cnnjax.train` does not import `cnnjax.viz`, which imports it).
OverlayWriter = Callable[[Components, Sequence[str], Sequence[np.ndarray],
                          Sequence[np.ndarray], Path], list[Path]]



def load_inputs(path: Path, key: str | None = None) -> tuple[list[str], list[np.ndarray]]:
    """(names, images) from a folder of image files, a .npy or a .npz (one array per image).

    `key`: the .npz array (default: "images", "test_images", "image", else the first).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"--input={path} does not exist")
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise ValueError(f"--input={path} holds no image files ({', '.join(IMAGE_SUFFIXES)})")
        return [f.name for f in files], [_read_image(f) for f in files]
    if path.suffix == ".npy":
        arr = np.load(path)
    elif path.suffix == ".npz":
        with np.load(path) as z:
            names = list(z.keys())
            if key is None:
                key = next((k for k in ("images", "test_images", "image") if k in names),
                           names[0] if names else None)
            if key not in names:
                raise ValueError(f"--input_key={key!r} is not in {path}; it holds {names}")
            arr = z[key]
    else:
        raise ValueError(f"--input={path}: expected a folder of images, a .npy or a .npz")
    if arr.ndim == 0 or len(arr) == 0:
        raise ValueError(f"--input={path} holds no image (array of shape {arr.shape}); expected "
                         "(N, *spatial[, channels]) with N >= 1")
    return [str(i) for i in range(len(arr))], list(arr)


def _read_image(path: Path) -> np.ndarray:
    """One image file as an array; 16-bit images are scaled to 0..255 (uint8), not clipped."""
    try:
        with Image.open(path) as im:
            sixteen_bit = im.mode.startswith("I;16") or im.mode == "I"
            x = np.asarray(im)
    except (OSError, SyntaxError, ValueError) as e:  # PIL's errors for unreadable files
        raise ValueError(f"--input: cannot read image {str(path)!r}: {e}") from e
    if sixteen_bit:
        x = np.round(x.astype(np.float64) * (255.0 / 65535.0)).clip(0, 255).astype(np.uint8)
    return x


def _channels(x: np.ndarray, channels: int) -> np.ndarray:
    if x.shape[-1] == channels:
        return x
    if channels == 1 and x.shape[-1] in (3, 4):
        return np.asarray(Image.fromarray(x[..., :3]).convert("L"))[..., None]
    if channels == 3 and x.shape[-1] == 1:
        return np.repeat(x, 3, axis=-1)
    if channels == 3 and x.shape[-1] == 4:
        return x[..., :3]
    raise ValueError(f"an input image has {x.shape[-1]} channels; expected {channels}")


def fit_image(image: Any, info: Any, resize: bool) -> np.ndarray:
    """One raw image -> (*spatial, C) with the data set's channels (and size when `resize`).

    uint8 images stay uint8 (preprocessed later); float images are taken as already
    preprocessed and returned as float32.
    """
    x = np.asarray(image)
    channels = info.image_shape[-1]
    spatial = len(info.image_shape) - 1
    if x.ndim == spatial:
        x = x[..., None]
    if x.ndim != spatial + 1:
        raise ValueError(f"an input image has shape {x.shape}; expected {info.image_shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"an input image holds NaN or Inf values (shape {x.shape}); expected "
                         "finite pixel values")
    if x.dtype != np.uint8:
        if np.issubdtype(x.dtype, np.floating):  # taken as already preprocessed
            target = tuple(info.image_shape)
            if resize and None not in target and x.shape != target:
                raise ValueError(
                    f"a float input image has shape {x.shape}; expected {target} (float "
                    "inputs are taken as preprocessed and are not resized: give uint8 images "
                    "to have them resized)")
            return x.astype(np.float32)
        if x.dtype == np.uint16:
            x = np.round(x.astype(np.float64) * (255.0 / 65535.0))
        x = np.clip(x, 0, 255).astype(np.uint8)
    x = _channels(x, channels)
    target = tuple(info.image_shape[:-1])
    if resize and spatial == 2 and None not in target and x.shape[:2] != target:
        img = Image.fromarray(x[..., 0] if channels == 1 else x)
        x = np.asarray(img.resize((target[1], target[0]), Image.BILINEAR))
        x = x[..., None] if channels == 1 else x
    return x


def _write_classes(c: Components, state: Any, names: Sequence[str], x: np.ndarray,
                   output: Path) -> list[Path]:
    cfg = c.config
    probs = predict(c.model, state, x, mesh=c.mesh, batch_size=cfg.eval_batch_size or
                    cfg.batch_size, precision=cfg.precision)
    classes = list(c.info.class_names)
    rows = []
    for name, p in zip(names, probs, strict=True):
        top = int(np.argmax(p))
        rows.append({"input": name, "prediction": top, "class_name": classes[top],
                     "probabilities": [float(v) for v in p]})
    csv_path = output / "predictions.csv"
    with csv_path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["input", "prediction", "class_name", *[csv_safe(f"p_{n}") for n in classes]])
        for r in rows:
            w.writerow([csv_safe(r["input"]), r["prediction"], csv_safe(r["class_name"]),
                        *[f"{v:.6g}" for v in r["probabilities"]]])
    json_path = output / "predictions.json"
    json_path.write_text(json.dumps({"class_names": classes, "predictions": rows},
                                    indent=1) + "\n")
    return [csv_path, json_path]


def _write_masks(c: Components, state: Any, names: Sequence[str],
                 inputs: Sequence[np.ndarray], output: Path,
                 overlays: OverlayWriter | None) -> list[Path]:
    cfg = c.config
    masks = [  # one at a time: images may differ in size
        predict(c.model, state, x, mesh=c.mesh, batch_size=cfg.eval_batch_size or
                cfg.batch_size, precision=cfg.precision, output="labels")[0].astype(np.uint8)
        for x in inputs
    ]
    written = []
    for name, m in zip(names, masks, strict=True):
        path = output / mask_name(name, {p.name.lower() for p in written})
        Image.fromarray(m).save(path)
        written.append(path)
    if overlays is not None:
        written += overlays(c, names, inputs, masks, output)
    return written


def csv_safe(cell: str) -> str:
    """A text cell a spreadsheet will not run as a formula: a leading =, +, -, @ (or tab/CR)
    gets a single quote in front (CSV injection)."""
    return f"'{cell}" if cell[:1] in ("=", "+", "-", "@", "\t", "\r") else cell


def mask_name(name: str, taken: set[str]) -> str:
    """`<stem>_<ext>_mask.png` for an input file name (`a.png` and `a.jpg` differ), made
    unique against the lower-cased names in `taken` (`x.png`, `x.PNG` on a case-insensitive
    file system) with a counter."""
    p = Path(name)
    base = p.stem + (f"_{p.suffix.lstrip('.')}" if p.suffix else "")
    candidate, k = f"{base}_mask.png", 1
    while candidate.lower() in taken:
        k += 1
        candidate = f"{base}_{k}_mask.png"
    return candidate


def write_predictions(c: Components, state: Any, inputs: Path, key: str | None,
                      output: Path, *, overlays: OverlayWriter | None = None) -> list[Path]:
    """Class probabilities (predictions.csv + predictions.json) or masks (one PNG per image,
    pixel value = class id, plus what `overlays` draws, e.g. overlays.png) for the images in
    `inputs` (see `load_inputs`); returns the files written (process 0 only; others
    return [])."""
    if jax.process_index() != 0:
        return []
    c, state = local_view(c, state)
    names, raw = load_inputs(inputs, key)
    seg = c.info.task == "segmentation"

    def prep(name: str, image: Any) -> np.ndarray:
        try:
            x = fit_image(image, c.info, resize=not seg)
        except ValueError as e:
            raise ValueError(f"--input {str(inputs)!r}, image {name!r}: {e}") from e
        if x.dtype == np.uint8:
            return preprocess(x[None], c.info.mean, c.info.std, normalize=c.config.data.normalize)
        return x[None]

    prepared = [prep(n, x) for n, x in zip(names, raw, strict=True)]
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    if seg:
        return _write_masks(c, state, names, prepared, output, overlays)
    return _write_classes(c, state, names, np.concatenate(prepared), output)

"""Prediction files: read images to predict, write class probabilities or masks.

`load_inputs(path)` reads a folder of image files, a .npy or a .npz; `write_predictions(c,
state, inputs, key, output)` writes `predictions.csv` + `predictions.json` (classification) or
one mask PNG per image plus `overlays.png` (segmentation). What `--mode=predict` of the
experiment scripts does, callable from any script.
"""

from __future__ import annotations

import ast
import csv
import json
import math
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np
from PIL import Image

from cnnjax.data.image_files import IMAGE_SUFFIXES
from cnnjax.train.runner.components import Components
from cnnjax.train.runner.predict import local_view, predict, preprocess

__all__ = ["IMAGE_SUFFIXES", "OverlayWriter", "csv_safe", "fit_image", "load_inputs",
           "mask_name", "write_predictions"]

#: `(components, names, preprocessed inputs (1, H, W, C) each, masks, output folder) ->
#: files written`: draws the masks over their images (`cnnjax.viz.run_plots.write_overlays`;
#: passed in, so that `cnnjax.train` does not import `cnnjax.viz`, which imports it).
OverlayWriter = Callable[[Components, Sequence[str], Sequence[np.ndarray],
                          Sequence[np.ndarray], Path], list[Path]]

# Guards against inputs that would exhaust memory (checked from headers, before decoding):
MAX_IMAGE_PIXELS = 8192 * 8192  # one image file (PIL itself refuses ~179M pixels, 2x its limit)
MAX_SEGMENT_PIXELS = 4096 * 4096  # a segmentation input runs at full size through the model
MAX_INPUT_BYTES = 8 * 2**30  # one .npy array or .npz member


def _side(pixels: int) -> int:
    return math.isqrt(pixels)


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
        with path.open("rb") as f:
            _check_npy_header(f, path.stat().st_size, f"--input={path}")
        arr = _load(path, f"--input={path}")
    elif path.suffix == ".npz":
        try:
            with zipfile.ZipFile(path) as z:
                members = {m.filename.removesuffix(".npy"): m for m in z.infolist()
                           if m.filename.endswith(".npy")}
                names = list(members)
                if key is None:
                    key = next((k for k in ("images", "test_images", "image") if k in names),
                               names[0] if names else None)
                if key not in names:
                    raise ValueError(f"--input_key={key!r} is not in {path}; it holds {names}")
                with z.open(members[key]) as f:
                    _check_npy_header(f, members[key].file_size,
                                      f"--input={path}, array {key!r}")
        except (zipfile.BadZipFile, OSError, EOFError) as e:
            raise ValueError(f"--input={path} is not a readable NumPy .npz file ({e})") from None
        with np.load(path, allow_pickle=False) as z:
            arr = _load(lambda: z[key], f"--input={path}, array {key!r}")
    else:
        raise ValueError(f"--input={path}: expected a folder of images, a .npy or a .npz")
    if arr.ndim == 0 or len(arr) == 0:
        raise ValueError(f"--input={path} holds no image (array of shape {arr.shape}); expected "
                         "(N, *spatial[, channels]) with N >= 1")
    return [str(i) for i in range(len(arr))], list(arr)


def _check_npy_header(f: Any, available: int, where: str) -> None:
    """Read a .npy header (any version) without loading the data: refuse a file that is not
    NumPy's format, an object (pickled) array, a shape the file cannot hold (a damaged header)
    or an array over `MAX_INPUT_BYTES`, each with a message naming `where`."""
    magic = f.read(8)
    if len(magic) < 8 or magic[:6] != b"\x93NUMPY" or magic[6] not in (1, 2, 3):
        raise ValueError(f"{where} is not a NumPy .npy array (no NumPy header; expected a file "
                         "written by numpy.save)")
    size = 2 if magic[6] == 1 else 4
    length = int.from_bytes(f.read(size), "little")
    try:
        if length > 1 << 20:
            raise ValueError(f"a header of {length} bytes")
        header = ast.literal_eval(f.read(length).decode("latin1" if magic[6] < 3 else "utf8"))
        dtype = np.lib.format.descr_to_dtype(header["descr"])
        shape = tuple(int(d) for d in header["shape"])
    except (ValueError, SyntaxError, TypeError, KeyError, UnicodeDecodeError) as e:
        raise ValueError(f"{where} has a damaged NumPy header ({e})") from None
    if dtype.hasobject:
        raise ValueError(f"{where} holds Python objects (dtype {dtype}), which are never "
                         "unpickled; expected a numeric image array")
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes > MAX_INPUT_BYTES:
        raise ValueError(f"{where} is an array of shape {shape} ({dtype}): {nbytes / 2**30:.1f} "
                         f"GiB, over the {MAX_INPUT_BYTES / 2**30:.0f} GiB limit of prediction "
                         "inputs; split it into smaller files")
    if nbytes > available - 8 - size - length:
        raise ValueError(f"{where} claims shape {shape} ({dtype}, {nbytes} bytes) but holds "
                         f"{max(available - 8 - size - length, 0)} bytes of data: the file is "
                         "truncated or its header damaged")


def _load(source: Path | Any, where: str) -> np.ndarray:
    try:
        return np.load(source, allow_pickle=False) if isinstance(source, Path) else source()
    except (ValueError, OSError, EOFError, MemoryError, zipfile.BadZipFile) as e:
        raise ValueError(f"{where} cannot be read as a NumPy array ({e})") from None


def _read_image(path: Path) -> np.ndarray:
    """One image file as an array; 16-bit images are scaled to 0..255 (uint8), not clipped.
    An image over `MAX_IMAGE_PIXELS` is refused from its header, before it is decoded."""
    try:
        with Image.open(path) as im:
            width, height = im.size
            if width * height > MAX_IMAGE_PIXELS:
                raise ValueError(
                    f"--input: image {str(path)!r} is {width}x{height} = {width * height} "
                    f"pixels, over the limit of {MAX_IMAGE_PIXELS} ({_side(MAX_IMAGE_PIXELS)}^2); "
                    "downscale or tile it first")
            sixteen_bit = im.mode.startswith("I;16") or im.mode == "I"
            x = np.asarray(im)
    except Image.DecompressionBombError as e:
        raise ValueError(f"--input: image {str(path)!r} is too large to decode ({e})") from None
    except ValueError as e:
        if str(e).startswith("--input: image"):
            raise
        raise ValueError(f"--input: cannot read image {str(path)!r}: {e}") from e
    except (OSError, SyntaxError) as e:  # PIL's errors for unreadable files
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
    if x.size == 0:
        raise ValueError(f"an input image has shape {x.shape}: it is empty; expected "
                         f"{info.image_shape}")
    if not (np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating)):
        raise ValueError(f"an input image has dtype {x.dtype}; expected integer pixels "
                         "(uint8 0..255, uint16 0..65535) or float32 preprocessed values")
    if np.issubdtype(x.dtype, np.integer) and x.dtype not in (np.uint8, np.uint16) and (
            x.min() < 0 or x.max() > 255):
        raise ValueError(f"an input image of dtype {x.dtype} has values {x.min()}..{x.max()}; "
                         "expected pixels 0..255 (or uint16 0..65535): clipping would change "
                         "the image")
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
        pixels = math.prod(np.shape(image)[:-1] if np.ndim(image) == len(c.info.image_shape)
                           else np.shape(image))
        if seg and pixels > MAX_SEGMENT_PIXELS:
            raise ValueError(
                f"--input {str(inputs)!r}, image {name!r}: shape {np.shape(image)} is "
                f"{pixels} pixels; a segmentation input runs through the model at full size "
                f"and over {MAX_SEGMENT_PIXELS} ({_side(MAX_SEGMENT_PIXELS)}^2) it would exhaust "
                "memory: tile it (or downscale it) first")
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

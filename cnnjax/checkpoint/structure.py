"""Pure pytree helpers for checkpoints: paths, abstract targets, structure diffs, fingerprints.

Nothing here touches the file system; `manager.py` composes these with Orbax.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "StructureMismatchError",
    "abstract_like",
    "describe_mismatch",
    "flat_shapes",
    "nonfinite_paths",
    "tree_fingerprint",
]


class StructureMismatchError(ValueError):
    """A checkpoint's arrays do not match the target (other architecture, classes, optimizer)."""


def _key_name(key: Any) -> str:
    for attr in ("key", "name", "idx"):
        if hasattr(key, attr):
            return str(getattr(key, attr))
    return str(key)


def path_str(path: tuple[Any, ...]) -> str:
    """`('params', 'Conv_0', 'kernel')`-like key path as `params/Conv_0/kernel`."""
    return "/".join(_key_name(k) for k in path)


def _is_key_array(x: Any) -> bool:
    dtype = getattr(x, "dtype", None)
    return dtype is not None and jnp.issubdtype(dtype, jax.dtypes.prng_key)


def _stored_shape_dtype(x: Any) -> tuple[tuple[int, ...], str]:
    """Shape and dtype as Orbax stores the leaf (typed PRNG keys are stored as their key data)."""
    if _is_key_array(x):
        data = jax.eval_shape(jax.random.key_data, x)
        return tuple(data.shape), str(data.dtype)
    return tuple(x.shape), str(np.dtype(x.dtype))


def flat_shapes(tree: Any) -> dict[str, tuple[tuple[int, ...], str]]:
    """`{path: (shape, dtype)}` of every array-like leaf of `tree` (arrays, ShapeDtypeStructs,
    Orbax `ArrayMetadata`); leaves without a shape (None, empty optimizer states) are skipped."""
    out = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        if getattr(leaf, "shape", None) is None or getattr(leaf, "dtype", None) is None:
            continue
        out[path_str(path)] = _stored_shape_dtype(leaf)
    return out


def describe_mismatch(
    saved: Mapping[str, tuple[tuple[int, ...], str]],
    target: Mapping[str, tuple[tuple[int, ...], str]],
    *,
    limit: int = 20,
) -> list[str]:
    """Human-readable differences between two `flat_shapes` maps (empty when they match).

    Each line names the parameter path and both shapes/dtypes, e.g.
    `params/Dense_0/kernel: checkpoint (64, 10) float32, model (64, 5) float32`.
    """
    lines = []
    # Parameters first: they are what a user recognises (optimizer slots mirror them).
    for path in sorted(set(saved) | set(target), key=lambda p: (not p.startswith("params"), p)):
        if path not in target:
            shape, dtype = saved[path]
            lines.append(f"{path}: in the checkpoint {shape} {dtype}, absent from the model")
        elif path not in saved:
            shape, dtype = target[path]
            lines.append(f"{path}: in the model {shape} {dtype}, absent from the checkpoint")
        elif saved[path] != target[path]:
            (s_shape, s_dtype), (t_shape, t_dtype) = saved[path], target[path]
            lines.append(
                f"{path}: checkpoint {s_shape} {s_dtype}, model {t_shape} {t_dtype}"
            )
    if len(lines) > limit:
        lines = [*lines[:limit], f"... and {len(lines) - limit} more"]
    return lines


def abstract_like(tree: Any) -> Any:
    """`ShapeDtypeStruct`s (with each array's current sharding) to restore into.

    Restoring into these places every array straight onto the *current* devices, whatever
    the number of devices of the run that saved it.
    """

    def one(x: Any) -> Any:
        if isinstance(x, jax.ShapeDtypeStruct):
            return x
        if isinstance(x, jax.Array):
            return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding)
        if isinstance(x, np.ndarray | np.generic):
            return jax.ShapeDtypeStruct(np.shape(x), np.asarray(x).dtype)
        return x

    return jax.tree.map(one, tree)


_GOLDEN = np.uint32(2654435761)


def _leaf_words(x: jax.Array) -> jax.Array:
    if _is_key_array(x):
        x = jax.random.key_data(x)
    x = jnp.ravel(x)
    if x.dtype == jnp.bool_:
        return x.astype(jnp.uint32)
    bits = x.dtype.itemsize * 8
    if bits == 64:
        return jax.lax.bitcast_convert_type(x, jnp.uint32).ravel()
    if bits == 32:
        return jax.lax.bitcast_convert_type(x, jnp.uint32)
    unsigned = {8: jnp.uint8, 16: jnp.uint16}[bits]
    return jax.lax.bitcast_convert_type(x, unsigned).astype(jnp.uint32)


@jax.jit
def _fingerprints(leaves: list[jax.Array]) -> list[jax.Array]:
    out = []
    for leaf in leaves:
        words = _leaf_words(leaf)
        position = jnp.arange(words.shape[0], dtype=jnp.uint32) * _GOLDEN + jnp.uint32(1)
        # uint32 sums wrap around: exact and independent of the reduction order and sharding.
        out.append(jnp.sum(words * position, dtype=jnp.uint32))
    return out


def _one_copy(x: jax.Array) -> jax.Array:
    """A replicated array's copy on one device: checksum it once, not once per device."""
    if x.sharding.is_fully_replicated and len(x.sharding.device_set) > 1:
        return x.addressable_shards[0].data
    return x


def _host_words(x: np.ndarray) -> np.ndarray:
    """The same words as `_leaf_words`, in NumPy."""
    x = np.ascontiguousarray(x).ravel()
    if x.dtype == np.bool_:
        return x.astype(np.uint32)
    bits = x.dtype.itemsize * 8
    if bits in (32, 64):
        return x.view(np.uint32)
    return x.view({8: np.uint8, 16: np.uint16}[bits]).astype(np.uint32)


def _host_fingerprint(x: np.ndarray) -> int:
    words = _host_words(x)
    position = np.arange(words.shape[0], dtype=np.uint32) * _GOLDEN + np.uint32(1)
    return int(np.sum(words * position, dtype=np.uint32))  # uint32 arithmetic wraps around


def tree_fingerprint(tree: Any) -> dict[str, int]:
    """`{path: uint32 checksum}` of every array leaf's bits, position-weighted.

    Stored with each checkpoint and compared after restoring, so silently corrupted bytes
    that still decode are caught. Independent of the sharding and device count. JAX arrays
    are reduced on their devices (one jit per set of devices; replicated arrays once, on one
    device), NumPy arrays on the host with the same formula.
    """
    out: dict[str, int] = {}
    on_device: list[tuple[str, jax.Array]] = []
    for p, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        if not isinstance(leaf, jax.Array | np.ndarray) or np.prod(leaf.shape) == 0:
            continue
        name = path_str(p)
        if isinstance(leaf, jax.Array):
            if _is_key_array(leaf):
                leaf = jax.random.key_data(leaf)
            on_device.append((name, _one_copy(leaf)))
            continue
        out[name] = _host_fingerprint(np.asarray(leaf))
    groups: dict[Any, list[int]] = {}
    for i, (_, leaf) in enumerate(on_device):
        groups.setdefault(frozenset(leaf.sharding.device_set), []).append(i)
    for indices in groups.values():
        values = jax.device_get(_fingerprints([on_device[i][1] for i in indices]))
        out.update({on_device[i][0]: int(v) for i, v in zip(indices, values, strict=True)})
    return out


@jax.jit
def _finite_flags(leaves: list[jax.Array]) -> jax.Array:
    return jnp.stack([jnp.all(jnp.isfinite(leaf)) for leaf in leaves])


def _is_floating(x: Any) -> bool:
    dtype = getattr(x, "dtype", None)
    return (dtype is not None and not _is_key_array(x)
            and jnp.issubdtype(dtype, jnp.inexact) and np.prod(x.shape) > 0)


def nonfinite_paths(tree: Any) -> list[str]:
    """Paths of the floating leaves of `tree` holding any NaN or Inf (empty: all finite).

    JAX arrays are checked on their devices: one jitted reduction per set of devices (all of
    a train state's arrays usually share one), one small transfer of per-leaf flags; NumPy
    arrays on the host.
    """
    bad: list[str] = []
    on_device: dict[Any, list[tuple[str, jax.Array]]] = {}
    for p, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        if not isinstance(leaf, jax.Array | np.ndarray) or not _is_floating(leaf):
            continue
        if isinstance(leaf, np.ndarray):
            if not np.isfinite(leaf).all():
                bad.append(path_str(p))
            continue
        leaf = _one_copy(leaf)
        on_device.setdefault(frozenset(leaf.sharding.device_set), []).append((path_str(p), leaf))
    groups = list(on_device.values())
    flags = jax.device_get([_finite_flags([leaf for _, leaf in g]) for g in groups])
    for group, finite in zip(groups, flags, strict=True):
        bad.extend(name for (name, _), ok in zip(group, finite, strict=True) if not ok)
    return sorted(bad)

"""The device mesh and how arrays are laid out on it.

One mesh axis, `"data"`. The train state is replicated (`P()`); a batch is split
along its leading axis (`P("data")`). All three step strategies (jit, shard_map,
pmap) use these same global arrays for the state; only the pmap strategy wants
the batch with an extra leading device axis, which `pmap_batch` makes.

Multi-host: every process calls the same functions with its *own* slice of the
global batch (host-local numpy arrays); `shard_batch` assembles the global array
with `jax.make_array_from_process_local_data`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

DATA_AXIS = "data"


def make_mesh(num_devices: int | None = None) -> Mesh:
    """A 1-D mesh with axis `"data"` over the first `num_devices` of `jax.devices()`.

    `None` takes all devices of all processes (multi-host aware: `jax.devices()` is
    global). A subset is only allowed in a single-process run.
    """
    devices = jax.devices()
    if num_devices is None:
        num_devices = len(devices)
    if not isinstance(num_devices, int) or not 1 <= num_devices <= len(devices):
        raise ValueError(
            f"num_devices={num_devices!r}; expected an int in [1, {len(devices)}] "
            f"(the number of devices, {devices[0].platform})"
        )
    if jax.process_count() > 1 and num_devices != len(devices):
        raise ValueError(
            f"num_devices={num_devices} in a {jax.process_count()}-process run; a "
            f"multi-host mesh must span all {len(devices)} devices"
        )
    return jax.make_mesh(
        (num_devices,), (DATA_AXIS,), axis_types=(AxisType.Auto,), devices=devices[:num_devices]
    )


def replicated_sharding(mesh: Mesh) -> NamedSharding:
    """Sharding of the train state: a full copy on every device of `mesh`."""
    return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Sharding of a batch: split along axis 0 over the `"data"` axis."""
    return NamedSharding(mesh, P(DATA_AXIS))


def _check_mesh(mesh: Any) -> Mesh:
    if not isinstance(mesh, Mesh) or DATA_AXIS not in mesh.axis_names:
        raise TypeError(
            f"mesh={mesh!r}; expected a jax.sharding.Mesh with a {DATA_AXIS!r} axis "
            "(cnnjax.train.make_mesh builds one)"
        )
    return mesh


def _local_devices(mesh: Mesh) -> int:
    return len(mesh.local_devices)


def shard_batch(batch: Mapping[str, Any], mesh: Mesh) -> dict[str, jax.Array]:
    """Host-local batch (numpy arrays, leading axis = this process's examples) -> global arrays.

    Each leaf becomes a global `jax.Array` split on `"data"`, built with
    `jax.make_array_from_process_local_data` (multi-host safe). Leaves that already are
    global arrays with that sharding pass through unchanged. The local batch size must
    be a multiple of this process's number of devices in `mesh`.
    """
    mesh = _check_mesh(mesh)
    sharding = batch_sharding(mesh)
    n_local = _local_devices(mesh)
    out = {}
    for key, value in batch.items():
        if isinstance(value, jax.Array) and value.sharding.is_equivalent_to(sharding, value.ndim):
            out[key] = value
            continue
        local = np.asarray(value)
        if local.ndim == 0 or local.shape[0] % n_local:
            raise ValueError(
                f"batch[{key!r}] has shape {local.shape}; its leading (batch) axis must be "
                f"a multiple of the {n_local} local devices of the mesh"
            )
        out[key] = jax.make_array_from_process_local_data(sharding, local)
    return out


def pmap_batch(batch: Mapping[str, Any], mesh: Mesh) -> dict[str, Any]:
    """Batch layout for `jax.pmap`: (B, ...) -> (local devices, B / local devices, ...).

    Numpy leaves are reshaped on the host (pmap moves them to the devices); jax arrays
    are reshaped with `jnp.reshape`, which keeps a split of axis 0 in place.
    """
    mesh = _check_mesh(mesh)
    n_local = _local_devices(mesh)
    out = {}
    for key, value in batch.items():
        shape = np.shape(value)
        if len(shape) == 0 or shape[0] % n_local:
            raise ValueError(
                f"batch[{key!r}] has shape {shape}; its leading (batch) axis must be "
                f"a multiple of the {n_local} local devices of the mesh"
            )
        new_shape = (n_local, shape[0] // n_local, *shape[1:])
        if isinstance(value, jax.Array):
            out[key] = jnp.reshape(value, new_shape)
        else:
            out[key] = np.reshape(np.asarray(value), new_shape)
    return out


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Put every leaf of `tree` on all devices of `mesh` (the state layout of every strategy)."""
    mesh = _check_mesh(mesh)
    return jax.device_put(tree, replicated_sharding(mesh))


def stack_for_pmap(tree: Any, mesh: Mesh) -> Any:
    """Classic pmap layout: each leaf gets a leading axis of size #devices, one copy each.

    Stands in for JAX's removed replicate-to-every-device helper. cnnjax's pmap step does not need
    it (it takes the replicated state with `in_axes=None`); it is here for user code
    written against the old per-device layout. `unstack_from_pmap` undoes it.
    """
    mesh = _check_mesh(mesh)
    n = mesh.size
    sharding = batch_sharding(mesh)

    def put(x: Any) -> jax.Array:
        x = np.asarray(x)
        return jax.device_put(np.broadcast_to(x[None], (n, *x.shape)), sharding)

    return jax.tree.map(put, jax.device_get(tree))


def unstack_from_pmap(tree: Any) -> Any:
    """The copy on the first device of a per-device stacked tree (`x[0]` of every leaf)."""
    return jax.tree.map(lambda x: x[0], tree)

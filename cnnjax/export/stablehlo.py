"""StableHLO through `jax.export`: `model.stablehlo`, runnable by plain JAX without cnnjax.

The artifact is `jax.export.export(jax.jit(forward))` serialized: the eval-mode forward pass
lowered to StableHLO with a symbolic batch dimension `b` and the weights closed over as
constants. Any JAX that can read the serialization version (JAX keeps it readable for at least
six months) runs it:

    exp = jax.export.deserialize(open("model.stablehlo", "rb").read())
    logits = exp.call(x)   # x: float32 (n, *input_shape), any n >= 1
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp

from cnnjax.export.core import FORMATS, ExportSpec

__all__ = ["FILE", "export_stablehlo", "exported"]

FILE = "model.stablehlo"


def exported(spec: ExportSpec) -> jax.export.Exported:
    """The `jax.export.Exported` of `spec`'s forward pass, batch dimension symbolic ("b")."""
    (batch,) = jax.export.symbolic_shape("b")
    x = jax.ShapeDtypeStruct((batch, *spec.input_shape), jnp.float32)
    return jax.export.export(jax.jit(spec.forward), platforms=spec.platforms)(x)


@FORMATS.register("stablehlo")
def export_stablehlo(spec: ExportSpec, output_dir: Path) -> tuple[Path, dict[str, Any]]:
    """Write `output_dir/model.stablehlo` (serialized `jax.export.Exported`)."""
    exp = exported(spec)
    path = output_dir / FILE
    path.write_bytes(exp.serialize())
    return path, {
        "batch": "symbolic (any size >= 1)",
        "platforms": list(exp.platforms),
        "calling_convention_version": exp.calling_convention_version,
        "run": "jax.export.deserialize(open(file, 'rb').read()).call(x)",
    }

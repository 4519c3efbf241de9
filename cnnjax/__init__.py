"""cnnjax: pure functional convolutional networks in JAX/Flax.

Layers (each depends only on the ones above it): `ops` -> `layers` -> `models` -> `data`
-> `train` -> `checkpoint` -> `export`; `viz` (figures) beside them. `checks` (argument
checks) and `registry` (look-up by name) serve every layer; `host_allocator` sets glibc's
malloc for XLA's CPU runtime once, here, on import (see its docstring). Import the
subpackage you need, e.g. `from cnnjax import ops` or `import cnnjax.models`.
"""

__version__ = "0.1.0"

from cnnjax import host_allocator as _host_allocator

_host_allocator.configure()

"""Builds, loads and registers the oneDNN convolution kernel (`conv.cc`) with XLA's FFI.

The kernel is compiled on first use with the system C++ compiler against the headers of the
`onednn-devel-cpu-gomp` wheel and `jax.ffi.include_dir()`, into a cache directory
(``$CNNJAX_CACHE_DIR``, else ``$XDG_CACHE_HOME/cnnjax`` or ``~/.cache/cnnjax``); the file name
carries a hash of the source, the jax version, the compiler and the oneDNN paths, so a new
version rebuilds and an old build is never loaded by mistake. Where it cannot be built or
loaded (no compiler, no oneDNN wheel: macOS, ARM, a read-only or full cache directory),
`available()` is False and one warning says why; callers then keep XLA's own convolution.

Compiler: ``$CXX``, else ``c++``. oneDNN location: the installed wheels' file lists, else
``sys.prefix``, or ``$CNNJAX_ONEDNN_ROOT`` (a prefix with ``include/oneapi/dnnl`` and
``lib/libdnnl.so.3``).
"""

from __future__ import annotations

import ctypes
import hashlib
import importlib.metadata
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import warnings
from pathlib import Path

import jax

SOURCE = Path(__file__).with_name("conv.cc")
TARGETS = {
    "cnnjax_onednn_conv_fwd": "CnnjaxOnednnConvForward",
    "cnnjax_onednn_conv_bwd_data": "CnnjaxOnednnConvBackwardData",
    "cnnjax_onednn_conv_bwd_weights": "CnnjaxOnednnConvBackwardWeights",
}
_LOCK = threading.Lock()
_STATE: dict[str, object] = {}  # "ok": bool, "error": str, "path": Path


class BuildError(RuntimeError):
    """The kernel could not be built or loaded (the message says which step and why)."""


def _wheel_file(dist: str, suffix: str) -> Path | None:
    try:
        files = importlib.metadata.files(dist) or []
    except importlib.metadata.PackageNotFoundError:
        return None
    for f in files:
        if str(f).replace("\\", "/").endswith(suffix):
            return Path(f.locate()).resolve()
    return None


def onednn_paths() -> tuple[Path, Path]:
    """(include dir holding ``oneapi/dnnl/dnnl.hpp``, lib dir holding ``libdnnl.so.3``)."""
    root = os.environ.get("CNNJAX_ONEDNN_ROOT")
    header = lib = None
    if root:
        header = Path(root, "include", "oneapi", "dnnl", "dnnl.hpp")
        lib = Path(root, "lib", "libdnnl.so.3")
    else:
        header = _wheel_file("onednn-devel-cpu-gomp", "oneapi/dnnl/dnnl.hpp")
        lib = _wheel_file("onednn-cpu-gomp", "lib/libdnnl.so.3")
        header = header or Path(sys.prefix, "include", "oneapi", "dnnl", "dnnl.hpp")
        lib = lib or Path(sys.prefix, "lib", "libdnnl.so.3")
    if not header.is_file() or not lib.is_file():
        raise BuildError(
            f"oneDNN not found (header {header}, library {lib}); install "
            "onednn-devel-cpu-gomp==2023.2.0 (x86-64 Linux) or set CNNJAX_ONEDNN_ROOT"
        )
    return header.parents[2], lib.parent


def cache_dir() -> Path:
    """Where built kernels are kept (created on demand)."""
    env = os.environ.get("CNNJAX_CACHE_DIR")
    if env:
        return Path(env)
    try:
        base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    except RuntimeError as err:  # no $HOME and no passwd entry
        raise BuildError(f"no cache directory for the kernel ({err}); set CNNJAX_CACHE_DIR"
                         ) from err
    return Path(base, "cnnjax")


def _compile_command(out: Path) -> list[str]:
    if sys.platform != "linux":
        raise BuildError(f"the oneDNN kernel is built on Linux only (this is {sys.platform})")
    include, libdir = onednn_paths()
    cxx = os.environ.get("CXX", "c++")
    if shutil.which(cxx) is None:
        raise BuildError(f"no C++ compiler: {cxx!r} is not on PATH (set CXX)")
    return [
        cxx, "-O2", "-std=c++17", "-shared", "-fPIC", "-w", str(SOURCE),
        f"-I{jax.ffi.include_dir()}", f"-I{include}", f"-L{libdir}", "-l:libdnnl.so.3",
        f"-Wl,-rpath,{libdir}", "-o", str(out),
    ]  # fmt: skip


def _complete_elf(path: Path) -> bool:
    """Whether `path` is a whole 64-bit little-endian ELF file: its section header table (at the
    end of the file) lies within it. A truncated shared library can crash `dlopen` with SIGBUS."""
    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            head = f.read(64)
    except OSError:
        return False
    if len(head) < 64 or head[:4] != b"\x7fELF" or head[4] != 2 or head[5] != 1:
        return False
    shoff = int.from_bytes(head[0x28:0x30], "little")
    shentsize = int.from_bytes(head[0x3A:0x3C], "little")
    shnum = int.from_bytes(head[0x3C:0x3E], "little")
    return 0 < shoff and shoff + shentsize * shnum <= size


def build() -> Path:
    """Path of the compiled kernel, building it into `cache_dir()` when missing."""
    probe = _compile_command(Path("OUT"))
    key = hashlib.sha256()
    key.update(SOURCE.read_bytes())
    key.update(" ".join([jax.__version__, *probe]).encode())
    target = cache_dir() / f"onednn_conv-{key.hexdigest()[:16]}.so"
    if target.is_file():
        if _complete_elf(target):
            return target
        warnings.warn(f"cnnjax: the cached oneDNN kernel {target} is damaged (truncated); "
                      "rebuilding it", RuntimeWarning, stacklevel=2)
        try:
            target.unlink()  # loading it would crash the process (SIGBUS), not raise
        except OSError as err:
            raise BuildError(f"the cached kernel {target} is damaged and cannot be removed "
                             f"({err.strerror or err}); delete it") from err
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
            tmp_out = Path(tmp, target.name)
            try:
                proc = subprocess.run(
                    _compile_command(tmp_out), capture_output=True, text=True, timeout=600
                )
            except (OSError, subprocess.TimeoutExpired) as err:
                raise BuildError(f"compiling {SOURCE.name} failed: {err}") from err
            if proc.returncode != 0 or not tmp_out.is_file():
                raise BuildError(f"compiling {SOURCE.name} failed (exit {proc.returncode}): "
                                 f"{proc.stderr[-2000:]}")
            os.replace(tmp_out, target)  # atomic: concurrent builders each publish a whole file
    except OSError as err:  # a read-only or full HOME / cache directory
        raise BuildError(
            f"cannot write the kernel cache {str(target.parent)!r} "
            f"({err.strerror or err}); set CNNJAX_CACHE_DIR to a writable directory"
        ) from err
    return target


def _load() -> None:
    path = build()
    # oneDNN's OpenMP threads sleep between calls instead of spinning on the cores XLA's own
    # threads need next (read by libgomp when it is loaded, i.e. below); overridable.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        lib = ctypes.CDLL(str(path))
    except OSError as err:
        raise BuildError(f"loading {path} failed: {err}") from err
    for name, symbol in TARGETS.items():
        jax.ffi.register_ffi_target(name, jax.ffi.pycapsule(getattr(lib, symbol)), platform="cpu")
    _STATE["path"] = path


def available() -> bool:
    """True when the kernel is built, loaded and registered (tries once per process).

    The first call may compile the kernel (about 20 s); a failure warns once and returns False.
    """
    if "ok" not in _STATE:
        with _LOCK:
            if "ok" not in _STATE:
                try:
                    _load()
                    _STATE["ok"] = True
                except (BuildError, OSError) as err:  # OSError: never fail a run over it
                    _STATE.update(ok=False, error=str(err))
                    warnings.warn(
                        f"cnnjax: oneDNN convolutions unavailable, using XLA's ({err})",
                        RuntimeWarning,
                        stacklevel=2,
                    )
    return bool(_STATE["ok"])


def unavailable_reason() -> str | None:
    """Why `available()` returned False (None when it is available or was not tried)."""
    return _STATE.get("error")  # type: ignore[return-value]

"""Compiled CPU kernels: one door for native code.

The C++ sources in ``csrc/`` (the tile rasterizer, the binarised hash-grid lookup, the Gaussian streams'
the mixtures' and the octree's coders) are built on first use with torch's ``cpp_extension`` (a C++ compiler and OpenMP; nothing to install
beforehand) into torch's extension cache (``$TORCH_EXTENSIONS_DIR``, default ``~/.cache/torch_extensions``),
keyed by a hash of the sources and flags, so a changed source rebuilds and concurrent first uses wait for one
build.

:func:`load` returns the module, or None when the build fails; the reason is kept
(:func:`unavailable_reason`) and reported once as a warning, so that ``auto`` backends fall back to the
pure-PyTorch reference with one clear message. ``PREDICTGS_NO_COMPILED=1`` disables the kernels (for
platforms without a compiler, and to compare with the reference).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import platform
import sys
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path

CSRC = Path(__file__).resolve().parent / "csrc"
SOURCES = ("bindings.cpp", "projection.cpp", "rasterize.cpp", "hashgrid.cpp", "gaussian_coder.cpp",
           "mixture_coder.cpp", "octree_coder.cpp")
DISABLE_ENV = "PREDICTGS_NO_COMPILED"
# -O3 without -march: the built module must run on every machine that shares the cache folder (cluster
# nodes of different generations share a home directory); the one instruction-set flag added where the CPU
# has it (_isa_flags) is in the module's name. No -ffast-math: results must not depend on it.
CFLAGS = ("-O3", "-fopenmp", "-fno-math-errno", "-ffp-contract=off")
LDFLAGS = ("-fopenmp",)

_lock = threading.Lock()
_module = None
_reason: str | None = None
_warned = False
_suspended = 0  # > 0 inside ``disabled()``


def _isa_flags() -> tuple[str, ...]:
    """``-mavx2`` on an x86-64 CPU that has AVX2 (torch's own CPU capability check), else nothing.

    The rasterizer's vector lanes (``csrc/simd_lanes.h``) are 8 floats with AVX and 4 without: measured 2.0-3.2x
    faster than the scalar pixel loops with AVX2 against 1.6-2.0x with SSE2 (docs/rasterizer.md). The flag is
    part of the module's name (:func:`_build_name`), so machines of different generations that share one cache
    folder (cluster nodes with one home directory) build and keep a module each and never load one built for
    an instruction set they lack. ``PREDICTGS_KERNEL_ISA=baseline`` leaves the flag out."""
    if os.environ.get("PREDICTGS_KERNEL_ISA", "") == "baseline":
        return ()
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return ()
    try:
        import torch

        capability = torch.backends.cpu.get_cpu_capability()
    except Exception:  # an older torch without the query: the baseline build
        return ()
    return ("-mavx2",) if capability in ("AVX2", "AVX512") else ()


def _cflags() -> tuple[str, ...]:
    return CFLAGS + _isa_flags() + tuple(os.environ.get("PREDICTGS_KERNEL_CFLAGS", "").split())


def _source_files() -> list[Path]:
    """Every file the build reads: the sources and the headers they include."""
    return sorted(p for p in CSRC.iterdir() if p.suffix in (".cpp", ".h"))


def _build_name() -> str:
    digest = hashlib.sha256()
    for path in _source_files():
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    digest.update(" ".join(_cflags() + LDFLAGS).encode())
    # the torch it is built against (its headers and libraries are in the build commands): two
    # environments sharing the cache get a module each instead of rebuilding one by turns
    import torch

    digest.update(f"{torch.__version__} {Path(torch.__file__).resolve().parent}".encode())
    return f"predictgs_cpu_{digest.hexdigest()[:12]}"


def _staged_sources(build_dir: Path) -> list[str]:
    """The sources copied into ``build_dir/src`` (written only where missing or different), so that the
    build reads them from a path that does not depend on where predictgs is installed: torch's build files
    name the source paths, and two checkouts sharing one cache (worktrees, cluster nodes, a fresh clone
    beside a working copy) would otherwise rebuild the module each time the other one loads it."""
    staged = build_dir / "src"
    staged.mkdir(parents=True, exist_ok=True)
    for path in _source_files():
        target = staged / path.name
        data = path.read_bytes()
        if not target.is_file() or target.read_bytes() != data:
            partial = target.with_name(f".{target.name}.{os.getpid()}.tmp")
            partial.write_bytes(data)
            os.replace(partial, target)
    return [str(staged / name) for name in SOURCES]


def _build():
    # torch's extension module warns at import that a CUDA toolkit folder exists without a CUDA runtime,
    # which concerns CUDA extensions only; these are CPU sources.
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    from torch.utils import cpp_extension

    name = _build_name()
    build_dir = Path(cpp_extension._get_build_directory(name, verbose=False))
    if not (build_dir / f"{name}.so").exists():
        print("predictgs: building the compiled CPU kernels (once per machine and version, about a minute)",
              file=sys.stderr, flush=True)
    return cpp_extension.load(name=name, sources=_staged_sources(build_dir), extra_cflags=list(_cflags()),
                              extra_ldflags=list(LDFLAGS), build_directory=str(build_dir), verbose=False)


@contextlib.contextmanager
def disabled() -> Iterator[None]:
    """Run a block as if the kernels could not be built (every ``auto`` backend takes the PyTorch reference,
    without a warning): for benchmarks that compare with the reference in one process."""
    global _suspended
    _suspended += 1
    try:
        yield
    finally:
        _suspended -= 1


def load():
    """The compiled module (built on first use), or None when it cannot be built or is disabled."""
    global _module, _reason
    if _suspended:
        return None
    if _module is not None or _reason is not None:
        return _module
    with _lock:
        if _module is None and _reason is None:
            if os.environ.get(DISABLE_ENV, "0") not in ("", "0"):
                _reason = f"disabled by {DISABLE_ENV}=1"
            else:
                try:
                    _module = _build()
                except Exception as err:  # no compiler, no OpenMP, a failed build: the reference remains
                    text = str(err).strip().splitlines()
                    _reason = f"{type(err).__name__}: {text[-1] if text else ''}".strip().rstrip(":")
    return _module


def unavailable_reason() -> str | None:
    """None when the compiled kernels are usable, else why not (after trying to build them)."""
    if _suspended:
        return "disabled for this block (predictgs.kernels.disabled())"
    load()
    return _reason


def available() -> bool:
    return load() is not None


def warn_unavailable(what: str) -> None:
    """One warning per process naming why the compiled kernels are not used for ``what``."""
    global _warned
    reason = unavailable_reason()
    if reason is None or _warned or _suspended or reason.startswith(f"disabled by {DISABLE_ENV}"):
        return
    _warned = True
    warnings.warn(f"predictgs: the compiled CPU kernels could not be built ({reason}); {what} uses the slower "
                  f"pure-PyTorch reference. Install a C++ compiler with OpenMP (g++) to build them, or set "
                  f"{DISABLE_ENV}=1 to silence this.", RuntimeWarning, stacklevel=3)


__all__ = ["load", "available", "unavailable_reason", "warn_unavailable", "disabled", "DISABLE_ENV"]

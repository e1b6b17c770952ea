"""Keep the host's freed memory for reuse: fewer page faults for large dense drifts on CPU.

XLA's CPU runtime allocates its temporaries (the ``N x M`` kernels of a dense drift) with
``malloc`` on every call. glibc serves blocks above 32 MiB with fresh ``mmap``s from the
worker threads' arenas and unmaps them when freed, so every call faults in its ``N x M``
buffers page by page (the cost measured: docs/notes.md).
:func:`reuse_freed_memory` tells glibc to serve every thread from the main heap
(``M_ARENA_MAX = 1``), never to ``mmap`` a block (``M_MMAP_MAX = 0``), and to keep up
to ``keep_bytes`` of freed memory at the top of the heap (``M_TRIM_THRESHOLD``): the
next call reuses the pages it freed.

This helps a program that calls a large dense drift once per step from Python. A jitted
loop of many steps per call (``experiments.run`` runs 100 per ``lax.scan``) already
allocates once per call and gained nothing (docs/performance.md).

The price is resident memory: freed blocks stay with the process, and the one heap
fragments, so the peak can be larger (docs/performance.md). The runtime frees a call's buffers on its own thread, sometimes
after the next call has allocated, so the heap grows over the first calls (and now and
then later) before the pages are reused: in tests/test_host_memory.py's probe (a 64 MiB
temporary), 0-5 of calls 9-24 still faulted in 8 runs, against every call by default.

It is a setting of the whole process, so it is never made on import; call it first,
before JAX runs anything (threads that already have an arena keep it). The same
settings from the shell, for any process: ``GLIBC_TUNABLES=`` :func:`tunables`, i.e.
``glibc.malloc.arena_max=1:glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=N``.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import platform
import sys

__all__ = ["DEFAULT_KEEP_BYTES", "reuse_freed_memory", "tunables"]

# mallopt parameters, from glibc's malloc.h.
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_M_ARENA_MAX = -8

_INT_MAX = 2**31 - 1  # mallopt takes a C int
DEFAULT_KEEP_BYTES = _INT_MAX


def tunables(keep_bytes: int = DEFAULT_KEEP_BYTES) -> str:
  """The ``GLIBC_TUNABLES`` value with the same effect, set before a process starts."""
  return (f"glibc.malloc.arena_max=1:glibc.malloc.mmap_max=0:"
          f"glibc.malloc.trim_threshold={int(keep_bytes)}")


def _jax_started() -> bool:
  if "jax" not in sys.modules:
    return False
  from jax._src import xla_bridge  # pylint: disable=g-import-not-at-top
  return xla_bridge.backends_are_initialized()


def reuse_freed_memory(keep_bytes: int = DEFAULT_KEEP_BYTES) -> None:
  """Makes glibc's ``malloc`` keep and reuse freed memory (see the module docstring).

  Args:
    keep_bytes: freed memory at the top of the heap above this is given back to the
      system; below it, kept for the next allocations. At most ``2**31 - 1`` (the
      default; ``mallopt`` takes a C ``int``).

  Raises:
    ValueError: ``keep_bytes`` is not an integer in ``[1, 2**31 - 1]``.
    RuntimeError: JAX has already started its backends (too late: their threads keep
      their own arenas), the C library is not glibc, or glibc refused a setting.
  """
  if (isinstance(keep_bytes, bool) or not isinstance(keep_bytes, int)
      or not 0 < keep_bytes <= _INT_MAX):
    raise ValueError(f"keep_bytes must be an integer in [1, 2**31 - 1], got {keep_bytes!r}")
  if _jax_started():
    raise RuntimeError(
        "reuse_freed_memory() must run before JAX's first computation (its threads "
        "already have their own malloc arenas); call it at the start of the program, or "
        f"set GLIBC_TUNABLES={tunables(keep_bytes)} in the shell")
  libc_name, _ = platform.libc_ver()
  if libc_name != "glibc":
    raise RuntimeError(f"reuse_freed_memory() needs glibc's malloc; this C library is "
                       f"{libc_name or 'unknown'}")
  libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
  # mallopt returns 1 on success, 0 on error.
  for name, param, value in (("M_ARENA_MAX", _M_ARENA_MAX, 1),
                             ("M_MMAP_MAX", _M_MMAP_MAX, 0),
                             ("M_TRIM_THRESHOLD", _M_TRIM_THRESHOLD, keep_bytes)):
    if libc.mallopt(ctypes.c_int(param), ctypes.c_int(value)) != 1:
      raise RuntimeError(f"glibc refused mallopt({name}, {value})")

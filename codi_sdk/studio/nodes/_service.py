"""What the service nodes share: install checks with install instructions, and a cache of loaded models."""

from __future__ import annotations

import importlib.util
import shutil
import threading
from typing import Any, Callable

from ..errors import ServiceUnavailableError

STUDIO_EXTRA = "pip install 'codi-sdk[studio]'"

_cache: dict[Any, Any] = {}
_locks: dict[Any, threading.Lock] = {}
_cache_lock = threading.Lock()


def require_module(module: str, node_type: str, what: str, install: str = STUDIO_EXTRA) -> None:
    """Raise ServiceUnavailableError unless ``module`` can be imported (found without importing it)."""
    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        raise ServiceUnavailableError(f"{node_type} needs {what} (Python module {module!r}), which is not installed; install it with: {install}")


def require_program(program: str, node_type: str, what: str, apt_packages: str) -> str:
    """The path of ``program``, or ServiceUnavailableError saying which Debian packages provide it."""
    path = shutil.which(program)
    if path is None:
        raise ServiceUnavailableError(
            f"{node_type} needs {what} (program {program!r}), which is not on PATH; "
            f"install it with: apt-get install {apt_packages}"
        )
    return path


def cached(key: Any, factory: Callable[[], Any]) -> Any:
    """Build a model once per process (per ``key``), even when several nodes ask for it at once."""
    with _cache_lock:
        if key in _cache:
            return _cache[key]
        lock = _locks.setdefault(key, threading.Lock())
    with lock:
        if key not in _cache:
            _cache[key] = factory()
        return _cache[key]


def lock_for(key: Any) -> threading.Lock:
    """A lock for serialising calls into one loaded model that is not thread-safe."""
    with _cache_lock:
        return _locks.setdefault(("use", key), threading.Lock())


_import_lock = threading.RLock()


def import_module(name: str) -> Any:
    """Import a service library under one process-wide lock.

    Some libraries (OpenCV's ``cv2`` replaces its own module while it boots) break when two
    threads import them at once, which is what happens when independent nodes start together.
    """
    import importlib

    with _import_lock:
        return importlib.import_module(name)

"""Named presets: a plain registry of functions returning a `PretrainConfig`."""

from __future__ import annotations

from typing import Callable

from data2vec.config import PretrainConfig

_PRESETS: dict[str, tuple[Callable[[], PretrainConfig], str]] = {}


def register_preset(name: str, description: str):
    """Decorator: register `fn() -> PretrainConfig` under `name`."""

    def wrap(fn: Callable[[], PretrainConfig]) -> Callable[[], PretrainConfig]:
        if name in _PRESETS:
            raise ValueError(f"preset {name!r} registered twice")
        _PRESETS[name] = (fn, description)
        return fn

    return wrap


def _load_all() -> None:
    # Importing the modules registers their presets (and the config kinds they use).
    from data2vec.presets import image  # noqa: F401


def get_preset(name: str) -> PretrainConfig:
    _load_all()
    if name not in _PRESETS:
        raise KeyError(f"unknown preset {name!r}; available: {', '.join(sorted(_PRESETS))}")
    return _PRESETS[name][0]()


def list_presets() -> dict[str, str]:
    """{name: one-line description}, sorted by name."""
    _load_all()
    return {k: _PRESETS[k][1] for k in sorted(_PRESETS)}

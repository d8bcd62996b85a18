"""Named presets: a plain registry of functions returning a `PretrainConfig`."""

from __future__ import annotations

from typing import Callable

from data2vec.config import PretrainConfig, TeacherConfig

_PRESETS: dict[str, tuple[Callable[[], PretrainConfig], str]] = {}


def register_preset(name: str, description: str):
    """Decorator: register `fn() -> PretrainConfig` under `name`."""

    def wrap(fn: Callable[[], PretrainConfig]) -> Callable[[], PretrainConfig]:
        if name in _PRESETS:
            raise ValueError(f"preset {name!r} registered twice")
        _PRESETS[name] = (fn, description)
        return fn

    return wrap


def tiny_overrides(kind: str, version: int = 2) -> list[str]:
    """Overrides that shrink any preset of input `kind` and model `version` to a few-second
    size (contract tests); each modality registers its own (`ModalitySpec.tiny_overrides`)."""
    from data2vec.modalities.registry import tiny_overrides as tiny

    return tiny(kind, version)


def _load_all() -> None:
    # Importing every module of this package registers its presets (and their config kinds).
    import importlib
    import pkgutil

    for mod in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{mod.name}")


def get_preset(name: str) -> PretrainConfig:
    _load_all()
    if name not in _PRESETS:
        raise KeyError(f"unknown preset {name!r}; available: {', '.join(sorted(_PRESETS))}")
    return _PRESETS[name][0]()


def list_presets() -> dict[str, str]:
    """{name: one-line description}, sorted by name."""
    _load_all()
    return {k: _PRESETS[k][1] for k in sorted(_PRESETS)}


def short_run_teacher(steps: int, scope: str, copied: tuple[str, ...] = ()) -> TeacherConfig:
    """An EMA schedule for a run of a few hundred to a few thousand updates: 0.98 -> 0.998 over
    the run, so the teacher's averaging horizon (1 / (1 - decay)) grows from 50 to 500 updates.

    Meta's decays (0.999-0.9999 and up) are sized for hundreds of thousands of updates; over a
    short run they leave the teacher mostly its random initialisation (46% after the 500 steps
    of the old fortunes preset), so the student regresses a random network's features.
    `algorithms.ema.teacher_lag_warning` checks any schedule against its run length.
    """
    return TeacherConfig(decay=0.98, end_decay=0.998, anneal_steps=steps, scope=scope, copied=copied)


def tiny_teacher(scope: str, copied: tuple[str, ...] = ()) -> TeacherConfig:
    """The tiny (test) presets' EMA: over their 20-50 steps the teacher stays near its
    initialisation, so the targets are nearly fixed and a few steps must lower the loss, which
    is what their tests check. Not a schedule to learn with (see `short_run_teacher`)."""
    return TeacherConfig(decay=0.998, end_decay=0.9998, anneal_steps=1000, scope=scope, copied=copied)

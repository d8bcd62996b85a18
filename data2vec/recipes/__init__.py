"""Named fine-tuning recipes: a plain registry of functions returning a `FinetuneConfig`,
like the presets for pretraining (`data2vec recipes` lists them, `recipes show NAME` prints one
resolved)."""

from __future__ import annotations

from typing import Callable

from data2vec.train.finetune_config import TASKS, FinetuneConfig

_RECIPES: dict[str, tuple[Callable[[], FinetuneConfig], str]] = {}
# The recipe `data2vec finetune --task T` uses when no --recipe is given: small and CPU-sized.
DEFAULTS = {"image-classification": "image_fmnist_small", "ctc": "ctc_small", "audio-classification": "audio_cls_small",
            "sentence": "sentence_small", "token": "token_small"}


def register_recipe(name: str, description: str):
    """Decorator: register `fn() -> FinetuneConfig` under `name`."""

    def wrap(fn: Callable[[], FinetuneConfig]) -> Callable[[], FinetuneConfig]:
        if name in _RECIPES:
            raise ValueError(f"recipe {name!r} registered twice")
        _RECIPES[name] = (fn, description)
        return fn

    return wrap


def _load_all() -> None:
    # Importing every module of this package registers its recipes (and the tasks' data kinds).
    import importlib
    import pkgutil

    for mod in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{mod.name}")


def get_recipe(name: str) -> FinetuneConfig:
    _load_all()
    if name not in _RECIPES:
        raise KeyError(f"unknown recipe {name!r}; available: {', '.join(sorted(_RECIPES))}")
    return _RECIPES[name][0]()


def default_recipe(task: str) -> str:
    if task not in TASKS:
        raise ValueError(f"task={task!r}; expected one of {TASKS}")
    return DEFAULTS[task]


def list_recipes() -> dict[str, str]:
    """{name: one-line description}, sorted by name."""
    _load_all()
    return {k: _RECIPES[k][1] for k in sorted(_RECIPES)}

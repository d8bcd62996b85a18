"""Named fine-tuning recipes: a plain registry of functions returning a `FinetuneConfig`,
like the presets for pretraining (`data2vec recipes` lists them, `recipes show NAME` prints one
resolved)."""

from __future__ import annotations

from typing import Callable

from data2vec.train.finetune_config import FinetuneConfig

_RECIPES: dict[str, tuple[Callable[[], FinetuneConfig], str]] = {}


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
    from data2vec.modalities.registry import recipes

    for name, entry in recipes().items():  # the recipes modalities bring (`ModalitySpec.recipes`)
        if _RECIPES.setdefault(name, entry) != entry:
            raise ValueError(f"recipe {name!r} registered twice")


def get_recipe(name: str) -> FinetuneConfig:
    _load_all()
    if name not in _RECIPES:
        raise KeyError(f"unknown recipe {name!r}; available: {', '.join(sorted(_RECIPES))}")
    return _RECIPES[name][0]()


def default_recipe(task: str) -> str:
    """The small, CPU-sized recipe `data2vec finetune --task T` runs when no --recipe is given."""
    from data2vec.modalities.registry import task_spec

    return task_spec(task).recipe


def list_recipes() -> dict[str, str]:
    """{name: one-line description}, sorted by name."""
    _load_all()
    return {k: _RECIPES[k][1] for k in sorted(_RECIPES)}

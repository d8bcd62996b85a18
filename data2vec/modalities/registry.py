"""The modality registry: one `ModalitySpec` per input kind, found by the package itself.

Every module in `data2vec/modalities/` is imported on the first lookup, and each ends with
`register(ModalitySpec(...))`. Nothing else has to import it (no preset, CLI verb or list), so
a new modality is one new file there. The spec names what the rest of the package needs:

- `input_config` (its `kind` is the modality's key) and `build`: the encoder (a `Modality`),
  or None for a composite kind whose model `models.build_model` makes (the joint multimodal
  model registers its data, synthetic batches and tiny settings this way);
- `synthetic_batch`: random inputs of the right shapes (contract tests, benchmarks);
- `tiny_overrides`: per `model.version`, overrides that shrink any of its presets to a
  few-second size (the contract test over every preset);
- `pretrain_data`: `data.kind` -> builder(data_cfg, input_cfg, train_cfg) -> `PretrainData`;
- `tasks`: fine-tuning tasks it brings (the `finetune` verb, recipes);
- `inputs`: the reader of `embed`/`probe` inputs, reader(path, cfg, InputOptions) -> Inputs;
- `recipes`: extra fine-tuning recipes.

Builders, tasks and readers may be given as "package.module:name" strings, imported on first
use, so model code (which checkpoint I/O imports) never imports the trainer or data loaders.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional, Union

from torch import nn

from data2vec.config import EncoderConfig, InputConfig
from data2vec.modalities.base import Modality

Ref = Union[Callable[..., Any], str]  # a callable, or "package.module:name" imported on first use


@dataclass(frozen=True)
class TaskSpec:
    """A fine-tuning task: `task(finetune_cfg, pretrain_cfg)` -> a `train.finetune.FinetuneTask`,
    the input kinds it fine-tunes, the recipe `finetune --task NAME` runs by default, and the
    kind of head it puts on the backbone (`heads.finetuned.HEAD_KINDS`)."""

    task: Ref
    input_kinds: tuple[str, ...]
    recipe: str
    head: str


@dataclass(frozen=True)
class ModalitySpec:
    """One modality's registration (see the module docstring for each field)."""

    input_config: type[InputConfig]
    build: Optional[Callable[[Any, EncoderConfig], nn.Module]]
    synthetic_batch: Ref  # (input_cfg, batch_size) -> batch dict
    tiny_overrides: Mapping[int, tuple[str, ...]]
    pretrain_data: Mapping[str, Ref] = field(default_factory=dict)
    tasks: Mapping[str, TaskSpec] = field(default_factory=dict)
    inputs: Optional[Ref] = None
    recipes: Mapping[str, tuple[Ref, str]] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        return self.input_config.kind

    def refs(self) -> list[Ref]:
        return [self.synthetic_batch, *self.pretrain_data.values(), *(t.task for t in self.tasks.values()),
                self.inputs, *(r for r, _ in self.recipes.values())]


_SPECS: dict[str, ModalitySpec] = {}
_STATE = {"discovered": False, "loaded": False}


def register(spec: ModalitySpec) -> ModalitySpec:
    """Make a modality known (call it at the end of its module)."""
    old = _SPECS.get(spec.kind)
    if old is not None and old.input_config.__qualname__ != spec.input_config.__qualname__:
        raise ValueError(f"modality kind {spec.kind!r} registered twice")
    taken = {t: k for k, s in _SPECS.items() if k != spec.kind for t in s.tasks}
    for name in spec.tasks:
        if name in taken:
            raise ValueError(f"fine-tuning task {name!r} of {spec.kind!r} is already {taken[name]!r}'s")
    _SPECS[spec.kind] = spec
    return spec


def _discover() -> None:
    """Import every module of this package (each registers its modality)."""
    if _STATE["discovered"]:
        return
    _STATE["discovered"] = True
    import data2vec.modalities as package

    for mod in pkgutil.iter_modules(package.__path__):
        if mod.name not in ("base", "registry"):
            importlib.import_module(f"{package.__name__}.{mod.name}")


def specs() -> dict[str, ModalitySpec]:
    """Every registered modality by input kind."""
    _discover()
    return dict(_SPECS)


def resolve(ref: Ref) -> Any:
    """The callable of a `Ref`."""
    if callable(ref):
        return ref
    module, _, name = ref.partition(":")
    return getattr(importlib.import_module(module), name)


def load_everything() -> None:
    """Import what every `Ref` names, so their config kinds (data, fine-tuning data) are known."""
    if _STATE["loaded"]:
        return
    for spec in specs().values():
        for ref in spec.refs():
            if isinstance(ref, str):
                resolve(ref)
    _STATE["loaded"] = True


def modality_spec(kind: str, what: str = "model.input.kind") -> ModalitySpec:
    found = specs()
    if kind not in found:
        raise ValueError(f"{what}={kind!r} is not a registered modality; known: {sorted(found)}")
    return found[kind]


def build_modality(cfg: InputConfig, enc: EncoderConfig) -> nn.Module:
    """The modality encoder of input config `cfg`, checked against the `Modality` contract."""
    spec = modality_spec(cfg.kind)
    if spec.build is None:
        raise ValueError(f"model.input.kind={cfg.kind!r} is a composite of modalities, not one modality encoder")
    module = spec.build(cfg, enc)
    if not isinstance(module, Modality):
        missing = [n for n in contract_members() if not hasattr(module, n)]
        raise TypeError(f"the {cfg.kind!r} encoder {type(module).__name__} breaks the Modality contract: "
                        f"missing {missing}")
    return module


def contract_members() -> list[str]:
    """The names a `Modality` must have."""
    return [*Modality.__annotations__, *(n for n, v in vars(Modality).items() if callable(v) and not n.startswith("_"))]


def synthetic_batch(cfg: InputConfig, batch_size: int = 2) -> dict[str, Any]:
    """Random inputs of the right shapes for input config `cfg`."""
    return resolve(modality_spec(cfg.kind).synthetic_batch)(cfg, batch_size)


def tiny_overrides(kind: str, version: int = 2) -> list[str]:
    """Overrides that shrink any preset of input `kind` and `model.version` to a tiny size."""
    spec = modality_spec(kind)
    if version not in spec.tiny_overrides:
        raise ValueError(f"modality {kind!r} has no tiny settings for model.version={version}")
    return list(spec.tiny_overrides[version])


def data_builder(kind: str) -> Callable[..., Any]:
    """builder(data_cfg, input_cfg, train_cfg) -> PretrainData for `data.kind`."""
    found = {k: ref for s in specs().values() for k, ref in s.pretrain_data.items()}
    if kind not in found:
        raise ValueError(f"data.kind={kind!r} has no loader; known: {sorted(found)}")
    return resolve(found[kind])


def tasks() -> dict[str, TaskSpec]:
    """Every fine-tuning task by name."""
    return {name: t for s in specs().values() for name, t in s.tasks.items()}


def task_spec(name: str) -> TaskSpec:
    found = tasks()
    if name not in found:
        raise ValueError(f"task={name!r}; expected one of {sorted(found)}")
    return found[name]


def input_reader(kind: str) -> Callable[..., Any]:
    """reader(path, cfg, options) -> eval.inputs.Inputs for models of input `kind`."""
    spec = modality_spec(kind)
    if spec.inputs is None:
        raise ValueError(f"no input reader for model.input.kind={kind!r}")
    return resolve(spec.inputs)


def recipes() -> dict[str, tuple[Callable[[], Any], str]]:
    """Fine-tuning recipes the modalities bring: {name: (fn, description)}."""
    return {name: (resolve(ref), desc) for s in specs().values() for name, (ref, desc) in s.recipes.items()}

"""Joint multimodal data2vec 2.0: ONE shared Transformer with per-modality input encoders,
masks, decoders, targets, loss weights and EMA teacher scope (fairseq's `data2vec_multi` design,
reference section 2.1 "Multimodal design").

A batch holds one modality (its "modality" entry names it); the data alternate modalities per
optimizer step (`data.multimodal`). Each modality's loss is exactly data2vec 2.0's: the model
runs `Data2Vec2Model.pretrain_forward` on a view made of that modality's encoder and decoder
around the shared Transformer (`Data2Vec2Model(cfg, parts=...)`), so there is no second copy of
the algorithm.

The view of one modality (`modality_model_config`, `modality_config`) is also what a
single-modality model of the same architecture is: checkpoints select one modality by renaming
`modalities.NAME.*` -> `modality.*` and `decoders.NAME.*` -> `decoder.*`
(`checkpoints.multimodal`), and the single-modality baselines of a joint run train that view.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal, Optional

import torch
from torch import Tensor, nn

from data2vec.algorithms.common import PretrainOutput, encode_unmasked, init_bert_params
from data2vec.algorithms.data2vec2 import Data2Vec2Model
from data2vec.algorithms.ema import EMATeacher
from data2vec.config import (
    ConfigError, DataConfig, DecoderConfig, InputConfig, LossConfig, ModelConfig, PretrainConfig, TargetConfig,
    register_kind,
)
from data2vec.modalities.registry import ModalitySpec, build_modality, register
from data2vec.nn.encoder import EncoderOutput, TransformerEncoder

# Fields of ModelConfig that a multimodal model takes from each modality instead.
PER_MODALITY = ("decoder", "targets", "loss", "clone_batch")


@dataclass(frozen=True)
class ModalityBranch:
    """One modality of a multimodal model: what a single-modality 2.0 model would hold in its
    `model.input`, `model.decoder`, `model.targets`, `model.loss`, `model.clone_batch` and
    `model.teacher.scope` / `copied` (prefixes as a single model names them, "modality.*")."""

    name: str = ""
    input: InputConfig = field(default_factory=InputConfig)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    targets: TargetConfig = field(default_factory=TargetConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    clone_batch: int = 1
    loss_weight: float = 1.0  # multiplies this modality's loss
    teacher_scope: Literal["all", "context", "blocks"] = "all"  # what the EMA teacher keeps of this modality
    teacher_copied: tuple[str, ...] = ()


@register_kind
@dataclass(frozen=True)
class MultiInputConfig(InputConfig):
    """`model.input` of a multimodal model: its modalities, in order. `model.encoder` is the
    shared Transformer and `model.teacher` the one EMA schedule (decays, anneal steps)."""

    kind: str = "multi"
    branches: tuple[ModalityBranch, ...] = ()


@dataclass(frozen=True)
class ModalitySource:
    """Pretraining data of one modality: its data config and its batch per optimizer step."""

    name: str = ""
    data: DataConfig = field(default_factory=DataConfig)
    batch_size: int = 16


@register_kind
@dataclass(frozen=True)
class MultiDataConfig(DataConfig):
    """`data` of a multimodal run. Step s trains on modality `cycle[s % len(cycle)]` (default:
    the sources in order), so a cycle of ("audio", "audio", "image", "text") gives 2:1:1."""

    kind: str = "multi"
    sources: tuple[ModalitySource, ...] = ()
    cycle: tuple[str, ...] = ()


def is_multimodal(cfg: ModelConfig) -> bool:
    return isinstance(cfg.input, MultiInputConfig)


def modality_names(cfg: ModelConfig) -> list[str]:
    """The modalities of a multimodal model config, in order."""
    return [b.name for b in cfg.input.branches]


def check_multimodal_config(cfg: ModelConfig) -> None:
    """Errors that name the field: unique names, known scopes, per-modality fields left unset."""
    names = modality_names(cfg)
    if not names:
        raise ConfigError("model.input.branches is empty: a multimodal model needs at least one modality")
    if len(set(names)) != len(names) or "" in names:
        raise ConfigError(f"model.input.branches: modality names must be unique and non-empty, got {names}")
    if cfg.version != 2:
        raise ConfigError(f"model.version={cfg.version}: multimodal pretraining is data2vec 2.0 (version 2)")
    default = ModelConfig()
    for name in PER_MODALITY:
        if getattr(cfg, name) != getattr(default, name):
            raise ConfigError(f"model.{name} is set per modality in a multimodal model "
                              f"(model.input.branches[i].{name}); leave model.{name} at its default")
    if cfg.teacher.scope != "all":
        raise ConfigError("model.teacher.scope is set per modality in a multimodal model "
                          "(model.input.branches[i].teacher_scope)")
    if cfg.teacher.copied:
        raise ConfigError("model.teacher.copied is set per modality in a multimodal model "
                          "(model.input.branches[i].teacher_copied)")
    for b in cfg.input.branches:
        if isinstance(b.input, MultiInputConfig) or not b.input.kind:
            raise ConfigError(f"model.input.branches[{b.name!r}].input: needs a single modality's input config")


def branch(inp: MultiInputConfig, name: str) -> ModalityBranch:
    """The modality called `name`; KeyError naming the ones there are."""
    for b in inp.branches:
        if b.name == name:
            return b
    raise ValueError(f"the multimodal model has no modality {name!r}; it has {', '.join(b.name for b in inp.branches)}")


def modality_model_config(cfg: ModelConfig, name: str) -> ModelConfig:
    """The single-modality 2.0 model config of modality `name`: its parts around the shared
    encoder, the shared EMA schedule with its own scope."""
    b = branch(cfg.input, name)
    teacher = dataclasses.replace(cfg.teacher, scope=b.teacher_scope, copied=b.teacher_copied)
    return dataclasses.replace(cfg, input=b.input, decoder=b.decoder, targets=b.targets, loss=b.loss,
                               clone_batch=b.clone_batch, teacher=teacher)


def modality_config(cfg: PretrainConfig, name: str) -> PretrainConfig:
    """The single-modality run config of modality `name` of a multimodal run: its model view,
    its data and its batch size (the single-modality baseline of a joint run)."""
    model = modality_model_config(cfg.model, name)
    if not isinstance(cfg.data, MultiDataConfig):
        raise ConfigError(f"data.kind={cfg.data.kind!r}: a multimodal model needs multimodal data (kind 'multi')")
    sources = {s.name: s for s in cfg.data.sources}
    if name not in sources:
        raise ConfigError(f"data.sources has no modality {name!r}; it has {', '.join(sources)}")
    train = dataclasses.replace(cfg.train, batch_size=sources[name].batch_size)
    return PretrainConfig(model=model, data=sources[name].data, train=train)


def teacher_prefix(name: str, prefix: str) -> str:
    """A teacher parameter prefix of a single-modality model ("modality.x") in the multimodal
    model's naming ("modalities.NAME.x"); shared encoder prefixes stay."""
    head, _, rest = prefix.partition(".")
    return f"modalities.{name}" + (f".{rest}" if rest else "") if head == "modality" else prefix


@dataclass
class TeacherView:
    """What `Data2Vec2Model.pretrain_forward` reads of an EMA teacher (its `module`, named
    "modality"/"encoder"), for one modality of the multimodal teacher; shares its tensors."""

    module: nn.ModuleDict


class MultimodalModel(nn.Module):
    """Shared `encoder` + `modalities[name]` input encoders + `decoders[name]` 2.0 decoders.

    `pretrain_forward(batch, ...)` trains the modality named by `batch["modality"]`; the teacher
    (`make_teacher`) is one EMA copy of the shared encoder and of each modality's parts its
    `teacher_scope` names.
    """

    # Each step trains one modality, so the others' parameters get no gradient (DDP must know).
    unused_parameters_per_step = True

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        check_multimodal_config(cfg)
        self.cfg = cfg
        self.encoder = TransformerEncoder(cfg.encoder)
        self.modalities = nn.ModuleDict({b.name: build_modality(b.input, cfg.encoder) for b in cfg.input.branches})
        self.decoders = nn.ModuleDict({b.name: self.modalities[b.name].build_decoder(b.decoder)
                                       for b in cfg.input.branches})
        self.apply(init_bert_params)
        # A plain dict (not a ModuleDict): the views share the modules above and stay out of the state dict.
        self.views: dict[str, Data2Vec2Model] = {
            name: Data2Vec2Model(modality_model_config(cfg, name), parts=(self.modalities[name], self.encoder,
                                                                          self.decoders[name]))
            for name in self.modalities
        }

    # ------------------------------------------------------------------ teacher
    def make_teacher(self) -> EMATeacher:
        """One EMA copy of the shared encoder and, per modality, of what its scope names:
        all (the whole modality encoder), context (all but `local_encoder`), blocks (nothing)."""
        kept = nn.ModuleDict({b.name: self.modalities[b.name] for b in self.cfg.input.branches
                              if b.teacher_scope != "blocks"})
        drop = tuple(f"modalities.{b.name}.local_encoder" for b in self.cfg.input.branches
                     if b.teacher_scope == "context")
        copied = tuple(teacher_prefix(b.name, p) for b in self.cfg.input.branches for p in b.teacher_copied)
        schedule = dataclasses.replace(self.cfg.teacher, scope="all", copied=copied)
        return EMATeacher(nn.ModuleDict({"encoder": self.encoder, "modalities": kept}), schedule, drop=drop)

    def teacher_view(self, teacher: EMATeacher, name: str) -> TeacherView:
        """The teacher of modality `name` as a single-modality model's teacher names its parts."""
        parts = {"encoder": teacher.module["encoder"]}
        if name in teacher.module["modalities"]:
            parts["modality"] = teacher.module["modalities"][name]
        return TeacherView(nn.ModuleDict(parts))

    # ------------------------------------------------------------------ pretraining
    def pretrain_forward(self, batch: dict[str, Any], teacher: EMATeacher, generator: torch.Generator,
                         step: int = 0) -> PretrainOutput:
        """data2vec 2.0 on a batch of one modality, `batch["modality"]`, times its loss weight.

        Logs: the modality's loss parts as "NAME/loss" etc., plus the plain keys for the step.
        """
        name = batch.get("modality")
        if name not in self.views:
            raise ValueError(f"batch modality {name!r}: this model has {', '.join(self.views)}")
        view = self.views[name]
        view.training = self.training  # the view's own flag gates decoder-input dropout
        out = view.pretrain_forward(batch, self.teacher_view(teacher, name), generator, step)
        weight = branch(self.cfg.input, name).loss_weight
        logs = {f"{name}/{k}": v for k, v in out.logs.items() if k != "masked_views"}
        logs.update(out.logs)
        logs["loss"] = out.logs["loss"] * weight
        return PretrainOutput(out.loss * weight, logs)

    # ------------------------------------------------------------------ inference
    def extract_features(self, inputs: Tensor, padding_mask: Optional[Tensor] = None,
                         modality: str = "") -> EncoderOutput:
        """Encode every token of one modality's input (no masking); extra tokens kept in front."""
        if modality not in self.modalities:
            raise ValueError(f"modality={modality!r}: this model has {', '.join(self.modalities)}")
        return encode_unmasked(self.modalities[modality], self.encoder, inputs, padding_mask)


# The joint model is a composite kind: `models.build_model` makes it; the registry knows its data,
# synthetic batches and the settings that shrink its presets (the shared encoder's width and heads;
# each modality keeps its own preset's sizes).
register(ModalitySpec(
    input_config=MultiInputConfig,
    build=None,
    synthetic_batch="data2vec.data.multimodal:synthetic_multimodal",
    tiny_overrides={2: ("model.encoder.dim=32", "model.encoder.num_heads=2")},
    pretrain_data={"multi": "data2vec.data.multimodal:build_multimodal_data"},
))

"""Modalities: raw input -> tokens for the one shared Transformer, one module per input kind.

How a modality registers (docs/adding-a-modality.md walks through a whole one):

1. Write `data2vec/modalities/NAME.py` with a frozen `InputConfig` subclass decorated with
   `@register_kind` (its `kind` is the modality's key) and an `nn.Module` that satisfies the
   `Modality` protocol (`base.py`): `input_key`, `num_extra_tokens`, `noise_std`,
   `no_weight_decay`, `local_encoder`, `local_features`, `make_mask`, `contextualize`,
   `build_decoder`, `init_v1`, `v1_student_input`.
2. End the module with `register(ModalitySpec(...))` (`registry.py`): the config class, the
   builder, a synthetic batch, the tiny test overrides, and optionally its pretraining data
   builders, fine-tuning tasks, recipes and the `embed`/`probe` input reader.
3. Presets go in `data2vec/presets/NAME.py` (that package also imports all its modules).

The registry imports every module of this package on its first lookup, so no other file
changes: the config loader, the model builders, `pretrain`, `embed`, `probe`, `finetune` and
the contract test over every preset all find the new kind.
"""

from data2vec.modalities.base import Context, Modality
from data2vec.modalities.registry import ModalitySpec, TaskSpec, build_modality, register, specs

__all__ = ["Context", "Modality", "ModalitySpec", "TaskSpec", "build_modality", "register", "specs"]

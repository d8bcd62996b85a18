"""`Imported`: what reading a checkpoint file in any supported format returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Optional

from torch import Tensor

from data2vec.config import PretrainConfig

if TYPE_CHECKING:
    from data2vec.heads.finetuned import HeadConfig


@dataclass
class Imported:
    """What a checkpoint file holds, in our layout.

    `student` loads into `build_model(cfg.model, head)` (pretraining, or fine-tuned when
    `head` is set); `teacher` into
    `model.make_teacher().module`. `dropped` lists every file key left out, with the reason.
    """

    cfg: PretrainConfig
    student: dict[str, Tensor]
    teacher: Optional[dict[str, Tensor]] = None
    head: Optional[HeadConfig] = None
    source: str = ""  # e.g. "fairseq data2vec_audio", "BEiT repository .pth"
    dropped: list[tuple[str, str]] = field(default_factory=list)

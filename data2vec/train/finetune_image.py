"""Image classification fine-tuning as MAE / BEiT / data2vec do it (reference section 3.1):
mean-pooled patch features + LayerNorm head (or CLS), drop path, layer-wise lr decay, label
smoothing, optional RandAugment and mixup/cutmix (torchvision.transforms.v2), cosine with
warm-up (the schedule lives in the recipe).

Data: an image folder with one sub-folder per class, or an idx images file with its labels
file (beside it or named). Without a validation set, `data.valid_size` images are held out of
the training file (stratified) for model selection; `data.label_frac` keeps that fraction of
the remaining training labels (stratified): the low-label setting.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import DataLoader, Subset
from torchvision.transforms import v2

from data2vec.config import PretrainConfig, register_kind
from data2vec.data.image import IdxImages, TransformedImages, collate_images, eval_transform, open_images
from data2vec.eval.metrics import accuracy
from data2vec.heads.classification import classification_loss
from data2vec.heads.finetuned import HeadConfig
from data2vec.heads.model import EncoderWithHead
from data2vec.train.finetune_config import FinetuneConfig, LabeledDataConfig

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@register_kind
@dataclass(frozen=True)
class ImageLabeledData(LabeledDataConfig):
    kind: str = "image"
    train: str = ""  # folder/<class>/... or an idx images file
    train_labels: str = ""  # idx labels file ("": the one beside the images file)
    valid: str = ""  # "": hold `valid_size` images out of `train`
    valid_labels: str = ""
    test: str = ""  # scored once, with the selected weights
    test_labels: str = ""
    valid_size: int = 1000
    label_frac: float = 1.0  # fraction of the (remaining) training labels used, per class
    split_seed: int = 0  # which images are held out and which labels kept
    crop_scale_min: float = 0.35  # RandomResizedCrop scale range (crop_scale_min, 1)
    hflip: bool = True
    randaug_magnitude: int = 0  # RandAugment with 2 ops at this magnitude (0: off; Meta: 9)
    mixup: float = 0.0  # mixup alpha (0: off; Meta: 0.8)
    cutmix: float = 0.0  # cutmix alpha (0: off; Meta: 1.0)
    mix_prob: float = 1.0  # probability that a batch is mixed (one of mixup/cutmix at random)


def stratified_split(labels: Sequence[int], take: float | int, seed: int) -> tuple[list[int], list[int]]:
    """Split indices into (taken, rest) with the same class proportions: `take` is a fraction
    of every class (at least one image each) or a total count spread over the classes."""
    g = torch.Generator().manual_seed(seed)
    by_class: dict[int, list[int]] = {}
    for i in torch.randperm(len(labels), generator=g).tolist():
        by_class.setdefault(int(labels[i]), []).append(i)
    n = len(labels)
    taken: list[int] = []
    for members in by_class.values():
        share = take * len(members) if isinstance(take, float) else take * len(members) / n
        taken += members[:max(1, min(len(members), round(share)))]
    chosen = set(taken)
    return sorted(taken), [i for i in range(n) if i not in chosen]


def training_pool(labels: Sequence[int], valid_size: Optional[int], label_frac: float, split_seed: int,
                  noun: str) -> tuple[Optional[list[int]], list[int]]:
    """(validation indices, training indices) into `labels`: `valid_size` examples held out,
    stratified (None: the validation set is a separate file, nothing is held out), then the
    `label_frac` share of every class of the rest. `noun` names the examples in errors."""
    if not 0 < label_frac <= 1:
        raise ValueError(f"data.label_frac={label_frac} must be in (0, 1]")
    pool = list(range(len(labels)))
    valid_idx = None
    if valid_size is not None:
        if not 0 < valid_size < len(labels):
            raise ValueError(f"data.valid_size={valid_size} must be between 1 and the {len(labels)} training {noun}")
        valid_idx, pool = stratified_split(labels, valid_size, split_seed)
    if label_frac < 1:
        kept, _ = stratified_split([labels[i] for i in pool], label_frac, split_seed + 1)
        pool = [pool[i] for i in kept]
    return valid_idx, pool


def _labeled(path: str, labels: str, channels: int) -> IdxImages | Any:
    if not path:
        raise ValueError("image classification needs data.train=<folder of class sub-folders | idx images file>")
    images = IdxImages(path, labels, channels=channels) if labels else open_images(path, channels)
    known = getattr(images, "labels", None)
    if known is None or len(known) == 0 or min(known) < 0:
        raise ValueError(f"{path}: no labels (give an idx labels file, or one sub-folder per class)")
    return images


def image_stats(pre: PretrainConfig) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Normalization of the pretraining data (ImageNet's when it recorded none)."""
    mean, std = getattr(pre.data, "mean", IMAGENET_MEAN), getattr(pre.data, "std", IMAGENET_STD)
    if len(mean) != pre.model.input.in_chans:
        raise ValueError(f"the pretraining data has {len(mean)}-channel statistics for a "
                         f"{pre.model.input.in_chans}-channel model")
    return tuple(mean), tuple(std)


def train_transform(d: ImageLabeledData, size: int, mean: tuple, std: tuple) -> v2.Transform:
    ops: list[v2.Transform] = [v2.RandomResizedCrop(size, scale=(d.crop_scale_min, 1.0), antialias=True)]
    if d.hflip:
        ops.append(v2.RandomHorizontalFlip())
    if d.randaug_magnitude > 0:
        ops.append(v2.RandAugment(num_ops=2, magnitude=d.randaug_magnitude))
    return v2.Compose(ops + [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std))])


def batch_mixer(d: ImageLabeledData, num_classes: int) -> Optional[v2.Transform]:
    """mixup and/or cutmix on (images, labels) batches, giving soft labels; None when off."""
    mixers = ([v2.MixUp(alpha=d.mixup, num_classes=num_classes)] if d.mixup > 0 else []) + \
        ([v2.CutMix(alpha=d.cutmix, num_classes=num_classes)] if d.cutmix > 0 else [])
    if not mixers:
        return None
    return v2.RandomApply([v2.RandomChoice(mixers)], p=d.mix_prob)


class ImageTask:
    """`FinetuneTask` for image classification (accuracy in percent)."""

    metric = "accuracy"

    def __init__(self, cfg: FinetuneConfig, pre: PretrainConfig) -> None:
        d, inp = cfg.data, pre.model.input
        if not isinstance(d, ImageLabeledData):
            raise ValueError(f"task=image-classification needs data.kind=image, got {d.kind!r}")
        self.cfg, self.batch_size, self.seed = cfg, cfg.train.batch_size, cfg.train.seed
        mean, std = image_stats(pre)
        train = _labeled(d.train, d.train_labels, inp.in_chans)
        labels = list(train.labels)
        valid_idx, self.train_idx = training_pool(labels, None if d.valid else d.valid_size, d.label_frac,
                                                  d.split_seed, "images")
        valid_set = _labeled(d.valid, d.valid_labels, inp.in_chans) if d.valid else train
        if valid_idx is None:
            valid_idx = list(range(len(valid_set)))
        self.outputs = list(train.classes)
        self.head = HeadConfig("image_classification", len(self.outputs), final_norm=cfg.model.pooling == "cls",
                               pooling=cfg.model.pooling, dropout=cfg.model.head_dropout)
        tf_eval = eval_transform(inp.image_size, mean, std)
        self.train_set = TransformedImages(train, train_transform(d, inp.image_size, mean, std))
        self.eval_sets = {"valid": Subset(TransformedImages(valid_set, tf_eval), valid_idx)}
        self.has_test = bool(d.test)
        if d.test:
            test = _labeled(d.test, d.test_labels, inp.in_chans)
            self.eval_sets["test"] = TransformedImages(test, tf_eval)
        self.mixer = batch_mixer(d, len(self.outputs))
        self.skipped = 0

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train_idx), **{k: len(v) for k, v in self.eval_sets.items()}}

    def num_batches(self) -> int:
        return max(1, len(self.train_idx) // self.batch_size)

    def batches(self, epoch: int, start: int) -> Iterator[dict[str, Any]]:
        """Shuffled full batches (a set smaller than one batch is one batch), from `start`."""
        g = torch.Generator().manual_seed(self.seed * 1009 + epoch)
        order = [self.train_idx[i] for i in torch.randperm(len(self.train_idx), generator=g).tolist()]
        bs = min(self.batch_size, len(order))
        plan = [order[b:b + bs] for b in range(0, self.num_batches() * bs, bs)][start:]
        # Its own generator: creating the iterator would otherwise draw from the global RNG, which
        # the loop seeds per update (a resumed run creates it at another update).
        return iter(DataLoader(self.train_set, batch_sampler=plan, collate_fn=collate_images,
                               generator=torch.Generator()))

    def loss(self, model: EncoderWithHead, batch: dict[str, Any], generator: torch.Generator):
        self.skipped += batch["num_skipped"]
        if "image" not in batch:
            return None, {}
        dev = next(model.parameters()).device
        images, labels = batch["image"], batch["label"]
        if self.mixer is not None:
            images, labels = self.mixer(images, labels)
        logits = model(images.to(dev))
        return classification_loss(logits, labels.to(dev), self.cfg.train.label_smoothing), {}

    def evaluate(self, model: EncoderWithHead, split: str) -> dict[str, float]:
        dev, preds, targets = next(model.parameters()).device, [], []
        for batch in DataLoader(self.eval_sets[split], batch_size=max(64, self.batch_size), collate_fn=collate_images):
            if "image" in batch:
                preds.append(model(batch["image"].to(dev)).argmax(-1).cpu())
                targets.append(batch["label"])
        if not preds:
            raise ValueError(f"no readable {split} images")
        return {"accuracy": 100.0 * accuracy(torch.cat(preds), torch.cat(targets))}


@torch.no_grad()
def predict_images(model: EncoderWithHead, pre: PretrainConfig, outputs: Sequence[str],
                   files: Sequence[str | Path]) -> list[str]:
    """The predicted class name of each image file (any format PIL reads)."""
    inp = pre.model.input
    tf = eval_transform(inp.image_size, *image_stats(pre))
    dev, out = next(model.parameters()).device, []
    for path in files:
        try:
            with Image.open(path) as im:
                img = v2.functional.pil_to_tensor(im.convert("L" if inp.in_chans == 1 else "RGB"))
        except Exception as e:  # PIL raises many types for unreadable files
            raise ValueError(f"{path}: cannot read the image ({type(e).__name__}: {e})") from e
        logits: Tensor = model(tf(img)[None].to(dev))
        out.append(outputs[int(logits.argmax(-1))])
    return out

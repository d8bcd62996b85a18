"""Multichannel time series (sensor/IMU, EEG-like, speech frames): C channels x T samples.

The series is cut into patches of `patch_size` samples, each projected to a token by a strided
1-D conv with a LayerNorm (`local_encoder`); fixed 1-D sin-cos positions are added. data2vec 2.0
drops 1-D blocks of tokens (the speech block mask) and the 1-D conv decoder fills them back;
data2vec 1.0 puts a learned mask embedding at the masked tokens instead.

Data: series files in the `.ts` format of the UEA/UCR archives (also what sktime and aeon ship),
read by `read_ts` below; `.ts.gz` too. Built in: Japanese Vowels (UCI, CC BY 4.0; 12 LPC
cepstrum coefficients per frame, 7 to 29 frames, 9 speakers to tell apart), in
`data2vec/modalities/data/`. Channels are standardized with the pretraining data's statistics
(`data.mean`, `data.std`; empty: those of the file being read).

This one file is the whole modality: its config kinds, encoder, data, `embed`/`probe` reader,
fine-tuning task ("series-classification") and recipe, registered at the end.
"""

from __future__ import annotations

import gzip
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from data2vec.config import DataConfig, DecoderConfig, EncoderConfig, InputConfig, LabeledDataConfig, register_kind
from data2vec.decoders.conv import ConvDecoder
from data2vec.masking.audio import block_mask_1d
from data2vec.masking.common import MaskInfo, gather_tokens
from data2vec.modalities.base import Context, masked_features, uniform_mask_embedding
from data2vec.modalities.registry import ModalitySpec, TaskSpec, register
from data2vec.nn.encoder import TransformerEncoder
from data2vec.nn.pos_embed import sincos_1d

log = logging.getLogger("data2vec")
DATA_DIR = Path(__file__).parent / "data"
VOWELS_TRAIN = str(DATA_DIR / "JapaneseVowels_TRAIN.ts.gz")
VOWELS_TEST = str(DATA_DIR / "JapaneseVowels_TEST.ts.gz")


# --------------------------------------------------------------------------- configs
@register_kind
@dataclass(frozen=True)
class SeriesInputConfig(InputConfig):
    kind: str = "timeseries"
    channels: int = 6
    patch_size: int = 4  # samples per token: the conv's kernel and stride
    prenet_depth: int = 0  # modality-specific blocks before the shared ones
    mask_prob: float = 0.5
    mask_prob_adjust: float = 0.05
    mask_length: int = 3  # tokens per masked block
    mask_noise_std: float = 0.01  # noise at masked slots of the decoder input


@register_kind
@dataclass(frozen=True)
class SeriesDataConfig(DataConfig):
    kind: str = "timeseries"
    path: str = ""  # a .ts or .ts.gz file
    mean: tuple[float, ...] = ()  # per channel; empty: the statistics of the file read
    std: tuple[float, ...] = ()


@register_kind
@dataclass(frozen=True)
class SeriesLabeledData(LabeledDataConfig):
    kind: str = "timeseries"
    train: str = ""  # a labeled .ts file
    valid: str = ""  # "": hold `valid_size` series out of `train` (stratified)
    test: str = ""  # scored once, with the selected weights
    valid_size: int = 30
    label_frac: float = 1.0  # fraction of the (remaining) training labels used, per class
    split_seed: int = 0


# --------------------------------------------------------------------------- .ts files
@dataclass
class LabeledSeries:
    """series: (C, T_i) float32 each; labels: class names ("" when the file has none)."""

    series: list[Tensor]
    labels: list[str]
    skipped: int = 0


def read_ts(path: str | Path, min_length: int = 1) -> LabeledSeries:
    """Read a `.ts` file: `@` header lines, then `@data` and one series per line, channels
    separated by ':' and values by ',', the class label last when `@classLabel true`. A line
    that cannot be read (missing values '?', a wrong channel count, unequal channel lengths,
    fewer than `min_length` samples) is skipped, counted and warned about."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    header: dict[str, str] = {}
    out, bad = LabeledSeries([], []), []
    with (gzip.open if path.suffix == ".gz" else open)(path, "rt", encoding="utf-8") as f:
        in_data = False
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if not in_data:
                if not line.startswith("@"):
                    raise ValueError(f"{path}:{n}: expected a @header line or @data, got {line[:40]!r}")
                key, _, value = line[1:].partition(" ")
                header[key.lower()] = value.strip().lower()
                in_data = key.lower() == "data"
                if header.get("timestamps") == "true":
                    raise ValueError(f"{path}: series with time stamps are not supported (@timeStamps true)")
                continue
            try:
                x, label = _parse_row(line, header.get("classlabel", "false").startswith("true"),
                                      int(header.get("dimensions", 0)), min_length)
            except ValueError as e:
                bad.append(f"line {n}: {e}")
                continue
            out.series.append(x)
            out.labels.append(label)
    if not in_data:
        raise ValueError(f"{path}: no @data line (not a .ts file)")
    if bad:
        log.warning("%s: skipped %d unreadable series, e.g. %s", path, len(bad), bad[0])
    if not out.series:
        raise ValueError(f"{path}: no readable series")
    out.skipped = len(bad)
    return out


def _parse_row(line: str, labeled: bool, channels: int, min_length: int) -> tuple[Tensor, str]:
    fields = line.split(":")
    label = fields.pop().strip() if labeled else ""
    if channels and len(fields) != channels:
        raise ValueError(f"{len(fields)} channels, the header says {channels}")
    if "?" in line:
        raise ValueError("missing values")
    rows = [[float(v) for v in field.split(",")] for field in fields]
    if len({len(r) for r in rows}) != 1:
        raise ValueError(f"channels of unequal lengths {sorted({len(r) for r in rows})}")
    if len(rows[0]) < min_length:
        raise ValueError(f"{len(rows[0])} samples, fewer than {min_length}")
    return torch.tensor(rows, dtype=torch.float32), label


def channel_stats(series: list[Tensor], mean: tuple[float, ...] = (), std: tuple[float, ...] = ()) -> tuple[Tensor, Tensor]:
    """Per-channel (C,) mean and std: the given ones, else those of `series` over all samples."""
    if mean and std:
        return torch.tensor(mean), torch.tensor(std)
    samples = torch.cat(series, dim=1)  # (C, sum T)
    return samples.mean(1), samples.std(1).clamp_min(1e-6)


class SeriesSet(Dataset):
    """Standardized series: items {"series": (C, T), "label": class id (-1: none)}."""

    def __init__(self, series: list[Tensor], labels: list[int], mean: Tensor, std: Tensor, channels: int) -> None:
        if series[0].shape[0] != channels or len(mean) != channels:
            raise ValueError(f"the data has {series[0].shape[0]} channels ({len(mean)} statistics) for "
                             f"model.input.channels={channels}")
        self.series, self.labels, self.mean, self.std = series, labels, mean[:, None], std[:, None]

    def __len__(self) -> int:
        return len(self.series)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"series": (self.series[i] - self.mean) / self.std, "label": self.labels[i]}


def collate_series(items: list[Optional[dict[str, Any]]]) -> dict[str, Any]:
    """Right-pad to the longest: "series" (B, C, T), "padding_mask" (B, T) True = padding,
    "label" (B,); None items are dropped and counted in "num_skipped"."""
    good = [it for it in items if it is not None]
    out: dict[str, Any] = {"num_skipped": len(items) - len(good)}
    if good:
        longest = max(it["series"].shape[1] for it in good)
        out["series"] = torch.zeros(len(good), good[0]["series"].shape[0], longest)
        out["padding_mask"] = torch.ones(len(good), longest, dtype=torch.bool)
        for i, it in enumerate(good):
            out["series"][i, :, : it["series"].shape[1]] = it["series"]
            out["padding_mask"][i, : it["series"].shape[1]] = False
        out["label"] = torch.tensor([it["label"] for it in good])
    return out


def open_series(path: str, stats: SeriesDataConfig, inp: SeriesInputConfig,
                classes: Optional[tuple[str, ...]] = None) -> tuple[SeriesSet, tuple[str, ...]]:
    """The series of `path`, standardized with the pretraining data's `stats.mean`/`stats.std`
    (the file's own when empty), and the class names (sorted, or `classes`)."""
    from data2vec.data.audio_labeled import class_index

    data = read_ts(path, min_length=inp.patch_size)
    mean, std = channel_stats(data.series, stats.mean, stats.std)
    names, ids = class_index(data.labels, classes)
    return SeriesSet(data.series, ids.tolist(), mean, std, inp.channels), names


# --------------------------------------------------------------------------- the encoder
class SeriesEncoder(nn.Module):
    input_key = "series"
    grid = 0  # tokens form a sequence, not a square grid
    num_extra_tokens = 0
    no_weight_decay: tuple[str, ...] = ()

    def __init__(self, cfg: SeriesInputConfig, enc: EncoderConfig) -> None:
        super().__init__()
        self.cfg, self.dim, self.noise_std = cfg, enc.dim, cfg.mask_noise_std
        self.local_encoder = nn.ModuleDict({
            "proj": nn.Conv1d(cfg.channels, enc.dim, cfg.patch_size, stride=cfg.patch_size),
            "norm": nn.LayerNorm(enc.dim, eps=enc.norm_eps)})
        self.context_encoder = TransformerEncoder(enc, depth=cfg.prenet_depth, input_norm=True)

    def local_features(self, series: Tensor, padding_mask: Optional[Tensor] = None) -> tuple[Tensor, Optional[Tensor]]:
        """series: (B, C, T) -> patch tokens (B, T // p, D); padding (B, T) -> (B, T // p): a
        token is real when all its samples are."""
        p = self.cfg.patch_size
        if series.ndim != 3 or series.shape[1] != self.cfg.channels or series.shape[2] < p:
            raise ValueError(f"expected series of shape (batch, {self.cfg.channels} channels, >= {p} samples), "
                             f"got {tuple(series.shape)}")
        x = self.local_encoder["norm"](self.local_encoder["proj"](series).transpose(1, 2))
        if padding_mask is None:
            return x, None
        real = (~padding_mask).sum(1) // p
        return x, torch.arange(x.shape[1], device=x.device)[None] >= real[:, None]

    def make_mask(self, padding_mask: Optional[Tensor], batch: int, length: int, generator: torch.Generator) -> Tensor:
        c, pad = self.cfg, padding_mask.cpu() if padding_mask is not None else None
        return block_mask_1d(batch, length, c.mask_prob, c.mask_length, c.mask_prob_adjust, pad, generator)

    def contextualize(self, x: Tensor, padding_mask: Optional[Tensor], info: Optional[MaskInfo]) -> Context:
        """x: (B, T, D) -> (B, T', D): positions, masked tokens dropped, prenet."""
        x = x + sincos_1d(x.shape[2], x.shape[1]).to(x)
        if info is not None:
            x = gather_tokens(x, info.ids_keep)
            padding_mask = gather_tokens(padding_mask, info.ids_keep) if padding_mask is not None else None
        return Context(self.context_encoder(x, padding_mask).x, padding_mask)

    def build_decoder(self, cfg: DecoderConfig) -> ConvDecoder:
        return ConvDecoder(cfg, self.dim, dims=1)

    def init_v1(self, model: nn.Module) -> nn.Parameter:
        return uniform_mask_embedding(self.dim)

    def v1_student_input(self, inputs: Tensor, feats: Tensor, raw_padding: Optional[Tensor], mask: Tensor,
                         mask_emb: Optional[nn.Parameter], generator: torch.Generator) -> tuple[Tensor, Tensor]:
        return masked_features(feats, mask, mask_emb)


def synthetic_series(cfg: SeriesInputConfig, batch_size: int) -> dict[str, Tensor]:
    """Noise series of 16 patches; the last row's second half is padding."""
    n = 16 * cfg.patch_size
    pad = torch.zeros(batch_size, n, dtype=torch.bool)
    if batch_size > 1:
        pad[-1, n // 2:] = True
    return {"series": torch.randn(batch_size, cfg.channels, n).masked_fill(pad[:, None], 0.0), "padding_mask": pad}


# --------------------------------------------------------------------------- pretraining, embed, probe
def build_series_data(data: SeriesDataConfig, inp: SeriesInputConfig, train: Any) -> Any:
    """`PretrainData` over the series of `data.path` (labels unused)."""
    from data2vec.train.data import FixedBatchData

    if not data.path:
        raise ValueError("data.path is empty: give a .ts file, e.g. data.path=/my/series_TRAIN.ts")
    series, _ = open_series(data.path, data, inp)
    return FixedBatchData(series, collate_series, train.batch_size, train.seed, train.num_workers)


def series_inputs(path: str | Path, cfg: Any, options: Any) -> Any:
    """`embed`/`probe` inputs: the series of a .ts file, standardized as in pretraining."""
    from data2vec.eval.inputs import Inputs

    data = read_ts(path, min_length=cfg.model.input.patch_size)
    if options.limit:
        data = LabeledSeries(data.series[: options.limit], data.labels[: options.limit])
    mean, std = channel_stats(data.series, cfg.data.mean, cfg.data.std)
    labeled = all(data.labels)
    dataset = SeriesSet(data.series, [-1] * len(data.series), mean, std, cfg.model.input.channels)
    return Inputs(dataset, [f"{path}:{i + 1}" for i in range(len(dataset))], collate_series,
                  list(data.labels) if labeled else None)


# --------------------------------------------------------------------------- fine-tuning
class SeriesTask:
    """`FinetuneTask` for series classification: mean-pooled tokens, a Linear head, accuracy."""

    metric = "accuracy"

    def __init__(self, cfg: Any, pre: Any) -> None:
        from data2vec.heads.finetuned import HeadConfig
        from data2vec.train.finetune_image import training_pool

        d, inp = cfg.data, pre.model.input
        if not isinstance(d, SeriesLabeledData):
            raise ValueError(f"task=series-classification needs data.kind=timeseries, got {d.kind!r}")
        if not d.train:
            raise ValueError("series classification needs data.train=<a labeled .ts file>")
        self.batch_size, self.seed = cfg.train.batch_size, cfg.train.seed
        train, self.outputs = open_series(d.train, pre.data, inp)
        self.outputs = list(self.outputs)
        valid_idx, self.train_idx = training_pool(train.labels, None if d.valid else d.valid_size, d.label_frac,
                                                  d.split_seed, "series")
        valid = open_series(d.valid, pre.data, inp, tuple(self.outputs))[0] if d.valid else train
        if valid_idx is None:
            valid_idx = list(range(len(valid)))
        self.train = train
        self.eval_sets = {"valid": (valid, valid_idx)}
        self.has_test = bool(d.test)
        if d.test:
            test, _ = open_series(d.test, pre.data, inp, tuple(self.outputs))
            self.eval_sets["test"] = (test, list(range(len(test))))
        self.head = HeadConfig("audio_classification", len(self.outputs), dropout=cfg.model.head_dropout)
        self.label_smoothing = cfg.train.label_smoothing

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train_idx), **{k: len(idx) for k, (_, idx) in self.eval_sets.items()}}

    def num_batches(self) -> int:
        return max(1, len(self.train_idx) // self.batch_size)

    def batches(self, epoch: int, start: int) -> Iterator[dict[str, Any]]:
        """Shuffled full batches (a set smaller than one batch is one batch), from `start`."""
        g = torch.Generator().manual_seed(self.seed * 1009 + epoch)
        order = [self.train_idx[i] for i in torch.randperm(len(self.train_idx), generator=g).tolist()]
        bs = min(self.batch_size, len(order))
        for b in range(start, self.num_batches()):
            yield collate_series([self.train[i] for i in order[b * bs:(b + 1) * bs]])

    def loss(self, model: nn.Module, batch: dict[str, Any], generator: torch.Generator) -> tuple[Tensor, dict]:
        from data2vec.heads.classification import classification_loss

        dev = next(model.parameters()).device
        logits = model(batch["series"].to(dev), batch["padding_mask"].to(dev), generator)
        return classification_loss(logits, batch["label"].to(dev), self.label_smoothing), {}

    @torch.no_grad()
    def evaluate(self, model: nn.Module, split: str) -> dict[str, float]:
        from data2vec.eval.metrics import accuracy

        data, idx = self.eval_sets[split]
        dev, preds, targets = next(model.parameters()).device, [], []
        for b in range(0, len(idx), 64):
            batch = collate_series([data[i] for i in idx[b:b + 64]])
            preds.append(model(batch["series"].to(dev), batch["padding_mask"].to(dev)).argmax(-1).cpu())
            targets.append(batch["label"])
        return {"accuracy": 100.0 * accuracy(torch.cat(preds), torch.cat(targets))}


def series_small_recipe() -> Any:
    """Fine-tune the small series model on Japanese Vowels (30 series held out to select)."""
    from data2vec.train.finetune_config import FinetuneConfig, FinetuneModelConfig, FinetuneTrainConfig

    return FinetuneConfig(
        task="series-classification", preset="data2vec2_series_small",
        model=FinetuneModelConfig(drop_path=0.1),
        data=SeriesLabeledData(train=VOWELS_TRAIN, test=VOWELS_TEST, valid_size=30),
        train=FinetuneTrainConfig(lr=5e-4, weight_decay=0.05, layer_decay=0.75, warmup_frac=0.1, epochs=30,
                                  batch_size=16, label_smoothing=0.1))


register(ModalitySpec(
    input_config=SeriesInputConfig,
    build=SeriesEncoder,
    synthetic_batch=synthetic_series,
    tiny_overrides={2: ("model.encoder.dim=32", "model.encoder.depth=2", "model.encoder.num_heads=2",
                        "model.decoder.dim=32", "model.decoder.groups=4", "model.decoder.layers=2",
                        "model.targets.top_k=2", "model.clone_batch=2")},
    pretrain_data={"timeseries": build_series_data},
    tasks={"series-classification": TaskSpec(SeriesTask, ("timeseries",), "series_small", "audio_classification")},
    inputs=series_inputs,
    recipes={"series_small": (series_small_recipe, "series classification on Japanese Vowels, small CPU model")},
))

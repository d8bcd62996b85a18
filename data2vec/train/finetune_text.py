"""Text fine-tuning tasks: sentence(-pair) classification or regression (`sentence`) and token
classification (`token`).

Follows fairseq's GLUE recipe for data2vec 2.0 (reference 3.3): inputs `<s> A </s>` or
`<s> A </s></s> B </s>`, the first-token head, Adam (0.9, 0.98), weight decay 0.1, linear
warm-up over 6% of the updates then linear decay to 0, no clipping; the recipes hold the values.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from data2vec.config import PretrainConfig, register_kind
from data2vec.data.text_corpus import collate_tokens
from data2vec.data.text_fortunes import FORTUNES_DIR, fortunes_classification
from data2vec.data.text_labeled import LabeledTexts, TokenLabeledTexts, read_labeled, read_token_classification
from data2vec.data.text_pretrain import check_tokenizer, text_tokenizer
from data2vec.data.tokenizer import TextTokenizer
from data2vec.eval.metrics import accuracy, classification_metrics, f1_score, regression_metrics
from data2vec.heads.finetuned import HeadConfig
from data2vec.heads.model import EncoderWithHead
from data2vec.heads.token import IGNORE, word_token_labels
from data2vec.train.finetune_config import FinetuneConfig, LabeledDataConfig


@register_kind
@dataclass(frozen=True)
class TextLabeledData(LabeledDataConfig):
    kind: str = "text"
    train: str = ""  # TSV/CSV/JSONL (GLUE layout), or CoNLL for task=token
    valid: str = ""
    test: str = ""  # scored once, with the selected weights
    fortunes: bool = False  # the built-in quote -> category task instead of files
    text_columns: tuple[str, ...] = ("sentence",)  # one or two (header names, JSONL keys or 0-based indices)
    label_column: str = "label"
    header: bool = True  # TSV/CSV files start with a header line
    regression: bool = False  # task=sentence: a real-valued target (STS-B) instead of classes
    max_len: int = 512  # tokens per example incl. specials; capped at the model's max_positions
    tokenizer: str = ""  # tokenizer.json or folder ("": the one the model was pretrained with)


# --------------------------------------------------------------------------- encoding
def encode_sentences(tokenizer: TextTokenizer, texts: list[tuple[str, ...]], max_len: int) -> list[list[int]]:
    """RoBERTa inputs: `<s> a </s>` or `<s> a </s></s> b </s>`, the longer text trimmed first."""
    out = []
    bos, eos = tokenizer.bos, tokenizer.eos
    parts_list = [tokenizer.encode_batch(list(col)) for col in zip(*texts)]
    for parts in zip(*parts_list):
        parts = [list(p) for p in parts]
        budget = max_len - (2 if len(parts) == 1 else 4)
        if budget < len(parts):
            raise ValueError(f"max_len={max_len} leaves no room for text")
        while sum(map(len, parts)) > budget:
            max(parts, key=len).pop()
        ids = [bos] + parts[0] + [eos]
        if len(parts) == 2:
            ids += [eos] + parts[1] + [eos]
        out.append(ids)
    return out


def encode_words(tokenizer: TextTokenizer, sentence: list[str], labels: list[int],
                 max_len: int) -> tuple[list[int], list[int]]:
    """Token ids and per-token labels (first sub-token of each word) of one labeled sentence.

    Words after the first get a leading space, as byte-level BPE sees them in running text.
    Words that do not fit in `max_len` are dropped (and not scored).
    """
    pieces = tokenizer.encode_batch([w if i == 0 else " " + w for i, w in enumerate(sentence)])
    ids: list[int] = [tokenizer.bos]
    lengths: list[int] = []
    for p in pieces:
        p = p or [tokenizer.unk]
        if len(ids) + len(p) + 1 > max_len:
            break
        ids += p
        lengths.append(len(p))
    return ids + [tokenizer.eos], word_token_labels(lengths, labels[:len(lengths)]) + [IGNORE]


def encode_split(tokenizer: TextTokenizer, data: LabeledTexts | TokenLabeledTexts, task: str,
                 max_len: int) -> list[tuple[list[int], Any]]:
    """(token ids, target) per example: a class id, a float, or a per-token label list.
    `task`: classification, regression or token."""
    if task == "token":
        if not isinstance(data, TokenLabeledTexts):
            raise ValueError("task=token needs word-labeled data (read_token_classification)")
        return [encode_words(tokenizer, w, y, max_len) for w, y in zip(data.words, data.labels)]
    if not isinstance(data, LabeledTexts) or not data.labels:
        raise ValueError(f"task={task} needs labeled sentences (read_labeled with a label column)")
    if data.task != task:
        raise ValueError(f"the data was read for task {data.task!r}, not {task!r}")
    return list(zip(encode_sentences(tokenizer, data.texts, max_len), data.labels))


def collate(items: list[tuple[list[int], Any]], pad_id: int, task: str) -> dict[str, Tensor]:
    batch = collate_tokens([ids for ids, _ in items], pad_id)
    targets = [y for _, y in items]
    if task == "token":
        batch["target"] = collate_tokens(targets, IGNORE)["tokens"]
    else:
        batch["target"] = torch.tensor(targets, dtype=torch.float32 if task == "regression" else torch.long)
    return batch


def _column(c: str) -> str | int:
    return int(c) if c.isdigit() else c


def read_splits(d: TextLabeledData, task: str) -> dict[str, LabeledTexts | TokenLabeledTexts]:
    """The labeled splits of `d` (label names fixed by the training file)."""
    kind = "regression" if d.regression else "classification"
    if d.fortunes:
        if task != "sentence" or d.regression:
            raise ValueError("data.fortunes is a sentence classification task")
        return fortunes_classification(FORTUNES_DIR)
    if not d.train or not d.valid:
        raise ValueError("give data.train=... and data.valid=... files (or data.fortunes=true)")
    files = {"train": d.train, "valid": d.valid, **({"test": d.test} if d.test else {})}
    if task == "token":
        train = read_token_classification(files["train"])
        return {k: train if k == "train" else read_token_classification(f, train.label_names) for k, f in files.items()}
    cols, label = [_column(c) for c in d.text_columns], _column(d.label_column)
    train = read_labeled(files["train"], cols, label, task=kind, header=d.header)
    return {k: train if k == "train" else read_labeled(f, cols, label, task=kind, labels=train.label_names,
                                                       header=d.header) for k, f in files.items()}


def collate(items: list[tuple[list[int], Any]], pad_id: int, kind: str) -> dict[str, Tensor]:
    batch = collate_tokens([ids for ids, _ in items], pad_id)
    targets = [y for _, y in items]
    if kind == "token":
        batch["target"] = collate_tokens(targets, IGNORE)["tokens"]
    else:
        batch["target"] = torch.tensor(targets, dtype=torch.float32 if kind == "regression" else torch.long)
    return batch


def task_loss(out: Tensor, target: Tensor, kind: str, label_smoothing: float = 0.0) -> Tensor:
    """Cross-entropy (per sentence or per scored token) or MSE for regression."""
    if kind == "regression":
        return F.mse_loss(out[:, 0].float(), target)
    if kind == "token":
        return F.cross_entropy(out.flatten(0, 1).float(), target.flatten(), ignore_index=IGNORE,
                               label_smoothing=label_smoothing)
    return F.cross_entropy(out.float(), target, label_smoothing=label_smoothing)


def load_tokenizer(d: TextLabeledData, pre: PretrainConfig) -> TextTokenizer:
    tokenizer = TextTokenizer.load(d.tokenizer) if d.tokenizer else text_tokenizer(pre.data, pre.model.input)
    check_tokenizer(tokenizer, pre.model.input)
    return tokenizer


class TextTask:
    """`FinetuneTask` over encoded examples: shuffled full batches per epoch, the task loss,
    and validation metrics (accuracy/F1/MCC, Pearson/Spearman, or word accuracy/F1)."""

    def __init__(self, cfg: FinetuneConfig, pre: PretrainConfig) -> None:
        d = cfg.data
        if not isinstance(d, TextLabeledData):
            raise ValueError(f"task={cfg.task} needs data.kind=text, got {d.kind!r}")
        self.cfg = cfg
        self.kind = "token" if cfg.task == "token" else "regression" if d.regression else "classification"
        splits = read_splits(d, cfg.task)
        self.tokenizer = load_tokenizer(d, pre)
        self.max_len = min(d.max_len, pre.model.input.max_positions)
        self.encoded = {k: encode_split(self.tokenizer, v, self.kind, self.max_len) for k, v in splits.items()}
        self.has_test = "test" in splits
        train = splits["train"]
        self.outputs = [] if self.kind == "regression" else list(train.label_names)
        self.classes = len(self.outputs)
        self.metric = "pearson_spearman" if self.kind == "regression" else "accuracy"
        self.head = HeadConfig("token_classification" if self.kind == "token" else "sequence_classification",
                               max(1, self.classes), dropout=cfg.model.head_dropout)

    def sizes(self) -> dict[str, int]:
        return {k: len(v) for k, v in self.encoded.items()}

    def num_batches(self) -> int:
        return max(1, len(self.encoded["train"]) // self.cfg.train.batch_size)

    def batches(self, epoch: int, start: int) -> Iterator[dict[str, Tensor]]:
        items, bs = self.encoded["train"], self.cfg.train.batch_size
        order = torch.randperm(len(items), generator=torch.Generator().manual_seed(self.cfg.train.seed * 1009 + epoch)).tolist()
        # Full batches only (the last partial one is dropped); a set smaller than a batch is one batch.
        for b in range(start, self.num_batches()):
            yield collate([items[i] for i in order[b * bs:(b + 1) * bs]], self.tokenizer.pad, self.kind)

    def loss(self, model: EncoderWithHead, batch: dict[str, Tensor], generator: torch.Generator):
        dev = next(model.parameters()).device
        out = model(batch["tokens"].to(dev), batch["padding_mask"].to(dev))
        return task_loss(out, batch["target"].to(dev), self.kind, self.cfg.train.label_smoothing), {}

    def evaluate(self, model: EncoderWithHead, split: str) -> dict[str, float]:
        dev, preds, targets, items = next(model.parameters()).device, [], [], self.encoded[split]
        for i in range(0, len(items), self.cfg.train.batch_size):
            batch = collate(items[i:i + self.cfg.train.batch_size], self.tokenizer.pad, self.kind)
            out = model(batch["tokens"].to(dev), batch["padding_mask"].to(dev)).float().cpu()
            t = batch["target"]
            if self.kind == "token":
                keep = t != IGNORE
                out, t = out[keep], t[keep]
            preds.append(out[:, 0] if self.kind == "regression" else out.argmax(-1))
            targets.append(t)
        p, t = torch.cat(preds), torch.cat(targets)
        if self.kind == "regression":
            return regression_metrics(p, t)
        if self.kind == "token":
            return {"accuracy": accuracy(p, t), "f1": f1_score(p, t, self.classes, average="macro")}
        return classification_metrics(p, t, self.classes)


@torch.no_grad()
def predict_texts(model: EncoderWithHead, cfg: FinetuneConfig, pre: PretrainConfig, outputs: Sequence[str],
                  lines: Sequence[str]) -> list[str]:
    """The label of each text line (a tab separates the two texts of a pair); a number for
    regression; for task=token, one label per whitespace-separated word."""
    tokenizer, max_len = load_tokenizer(cfg.data, pre), min(cfg.data.max_len, pre.model.input.max_positions)
    dev, out = next(model.parameters()).device, []
    for line in lines:
        if cfg.task == "token":
            words = line.split()
            ids, labels = encode_words(tokenizer, words, [0] * len(words), max_len)
            logits = model(torch.tensor([ids], device=dev))[0]
            first = [i for i, y in enumerate(labels) if y != IGNORE]
            out.append(" ".join(outputs[int(logits[i].argmax())] for i in first))
            continue
        ids = encode_sentences(tokenizer, [tuple(line.split("\t"))], max_len)[0]
        logits = model(torch.tensor([ids], device=dev))[0]
        out.append(f"{float(logits[0]):.4f}" if not outputs else outputs[int(logits.argmax())])
    return out

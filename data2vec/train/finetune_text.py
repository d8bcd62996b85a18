"""Text fine-tuning: sentence(-pair) classification/regression and token classification.

Follows fairseq's GLUE recipe for data2vec 2.0 (reference 3.3): inputs `<s> A </s>` or
`<s> A </s></s> B </s>`, the first-token head, Adam (0.9, 0.98), weight decay 0.1, linear
warm-up over 6% of the updates then linear decay to 0, no clipping. The model is evaluated on
the validation split after every epoch; the best epoch's weights are tested. The loop is the
generic one of `train.finetune` (`TextTask` is its task).
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from data2vec.algorithms.data2vec2 import init_bert_params
from data2vec.config import PretrainConfig, from_dict, save_config, to_dict
from data2vec.data.text_corpus import collate_tokens
from data2vec.data.text_labeled import LabeledTexts, TokenLabeledTexts
from data2vec.data.text_pretrain import check_tokenizer, text_tokenizer
from data2vec.data.tokenizer import TextTokenizer
from data2vec.eval.metrics import accuracy, classification_metrics, f1_score, regression_metrics
from data2vec.heads.sequence import EncoderWithHead, FirstTokenHead
from data2vec.heads.token import IGNORE, TokenHead, word_token_labels
from data2vec.train.checkpoint import load_checkpoint
from data2vec.train.finetune import FinetuneConfig, finetune
from data2vec.train.pretrain import build_model, model_from_checkpoint, resolve_device

log = logging.getLogger("data2vec")
TASKS = ("classification", "regression", "token")
Splits = dict[str, "LabeledTexts | TokenLabeledTexts"]


@dataclass(frozen=True)
class TextFinetuneConfig:
    task: str = "classification"  # classification | regression | token
    init: str = "pretrained"  # pretrained | random (the same encoder from random weights: the baseline)
    weights: str = "student"  # student | teacher weights of the checkpoint
    lr: float = 2e-5
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-6
    weight_decay: float = 0.1
    warmup_frac: float = 0.06
    epochs: int = 10
    batch_size: int = 16
    max_len: int = 512  # tokens per example incl. specials; capped at the model's max_positions
    head_dropout: float = 0.0  # fairseq pooler_dropout
    metric: str = ""  # validation metric that picks the best epoch; "" = accuracy / pearson_spearman
    seed: int = 1
    device: str = "auto"


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
    """(token ids, target) per example: a class id, a float, or a per-token label list."""
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


# --------------------------------------------------------------------------- model
def num_outputs(task: str, train: LabeledTexts | TokenLabeledTexts) -> int:
    return 1 if task == "regression" else len(train.label_names)


def build_text_model(checkpoint: str | Path, cfg: TextFinetuneConfig, outputs: int) -> tuple[EncoderWithHead, PretrainConfig]:
    """The checkpoint's encoder (pretrained or re-initialized) with a fresh task head."""
    ckpt = load_checkpoint(checkpoint)
    pre = from_dict(PretrainConfig, ckpt["config"])
    if pre.model.input.kind != "text":
        raise ValueError(f"{checkpoint}: a {pre.model.input.kind!r} model, not a text model")
    torch.manual_seed(cfg.seed)
    if cfg.init == "pretrained":
        model = model_from_checkpoint(ckpt, cfg.weights, path=str(checkpoint))
    elif cfg.init == "random":
        model = build_model(pre.model)
    else:
        raise ValueError(f"init must be 'pretrained' or 'random', got {cfg.init!r}")
    dim = pre.model.encoder.dim
    head = TokenHead(dim, outputs, cfg.head_dropout) if cfg.task == "token" else FirstTokenHead(dim, outputs, cfg.head_dropout)
    head.apply(init_bert_params)  # as fairseq's heads
    return EncoderWithHead(model.modality, model.encoder, head), pre


def task_loss(out: Tensor, target: Tensor, task: str) -> Tensor:
    """Cross-entropy (per sentence or per scored token) or MSE for regression."""
    if task == "regression":
        return F.mse_loss(out[:, 0].float(), target)
    if task == "token":
        return F.cross_entropy(out.flatten(0, 1).float(), target.flatten(), ignore_index=IGNORE)
    return F.cross_entropy(out.float(), target)


@torch.no_grad()
def evaluate(model: EncoderWithHead, items: list, cfg: TextFinetuneConfig, pad_id: int, classes: int,
             device: torch.device) -> dict[str, float]:
    """Metrics of `model` on encoded examples: accuracy/F1/MCC, Pearson/Spearman, or word accuracy/F1."""
    model.eval()
    preds, targets = [], []
    for i in range(0, len(items), cfg.batch_size):
        batch = collate(items[i:i + cfg.batch_size], pad_id, cfg.task)
        out = model(batch["tokens"].to(device), batch["padding_mask"].to(device)).float().cpu()
        t = batch["target"]
        if cfg.task == "token":
            keep = t != IGNORE
            out, t = out[keep], t[keep]
        preds.append(out[:, 0] if cfg.task == "regression" else out.argmax(-1))
        targets.append(t)
    p, t = torch.cat(preds), torch.cat(targets)
    if cfg.task == "regression":
        return regression_metrics(p, t)
    if cfg.task == "token":
        return {"accuracy": accuracy(p, t), "f1": f1_score(p, t, classes, average="macro")}
    return classification_metrics(p, t, classes)


class TextTask:
    """`FinetuneTask` over encoded examples: shuffled full batches per epoch, the task loss,
    and validation metrics."""

    def __init__(self, cfg: TextFinetuneConfig, encoded: dict[str, list], pad_id: int, classes: int) -> None:
        self.cfg, self.encoded, self.pad_id, self.classes = cfg, encoded, pad_id, classes

    def batches(self, epoch: int) -> Iterator[dict[str, Tensor]]:
        items, bs = self.encoded["train"], self.cfg.batch_size
        order = torch.randperm(len(items), generator=torch.Generator().manual_seed(self.cfg.seed * 1009 + epoch)).tolist()
        # Full batches only (the last partial one is dropped); a set smaller than a batch is one batch.
        for b in range(0, max(len(order) - bs, 0) + 1, bs):
            yield collate([items[i] for i in order[b:b + bs]], self.pad_id, self.cfg.task)

    def loss(self, model: EncoderWithHead, batch: dict[str, Tensor], generator: torch.Generator) -> tuple[Tensor, dict]:
        dev = next(model.parameters()).device
        out = model(batch["tokens"].to(dev), batch["padding_mask"].to(dev))
        return task_loss(out, batch["target"].to(dev), self.cfg.task), {}

    def evaluate(self, model: EncoderWithHead, split: str = "valid") -> dict[str, float]:
        return evaluate(model, self.encoded[split], self.cfg, self.pad_id, self.classes, next(model.parameters()).device)


def optim_config(cfg: TextFinetuneConfig, train_examples: int, metric: str) -> FinetuneConfig:
    """The generic loop's settings for fairseq's GLUE recipe: an evaluation every epoch, linear
    warm-up and decay, no clipping, no frozen warm-up, the best epoch's weights kept."""
    steps_per_epoch = max(1, train_examples // cfg.batch_size)
    return FinetuneConfig(lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, weight_decay=cfg.weight_decay,
                          max_steps=steps_per_epoch * cfg.epochs, schedule="linear", warmup_frac=cfg.warmup_frac,
                          freeze_backbone_steps=0, clip_norm=0.0, eval_every=steps_per_epoch, select_metric=metric,
                          log_every=steps_per_epoch, seed=cfg.seed, device=cfg.device)


def finetune_text(checkpoint: str | Path, splits: Splits, cfg: TextFinetuneConfig,
                  tokenizer: Optional[TextTokenizer] = None, out_dir: Optional[str | Path] = None) -> dict[str, Any]:
    """Fine-tune the text encoder of `checkpoint` on splits "train", "valid" (and "test").

    Returns per-epoch validation metrics, the best epoch (by `cfg.metric`) and its validation
    and test metrics. With `out_dir`, writes `finetuned.pt` (best weights, both configs, label
    names), `metrics.jsonl` and `finetune_config.json` there.
    """
    if cfg.task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {cfg.task!r}")
    if "train" not in splits or "valid" not in splits:
        raise ValueError("fine-tuning needs 'train' and 'valid' splits")
    outputs = num_outputs(cfg.task, splits["train"])
    model, pre = build_text_model(checkpoint, cfg, outputs)
    tokenizer = tokenizer or text_tokenizer(pre.data, pre.model.input)
    check_tokenizer(tokenizer, pre.model.input)
    max_len = min(cfg.max_len, pre.model.input.max_positions)
    encoded = {k: encode_split(tokenizer, v, cfg.task, max_len) for k, v in splits.items()}
    metric = cfg.metric or ("pearson_spearman" if cfg.task == "regression" else "accuracy")
    task = TextTask(cfg, encoded, tokenizer.pad, outputs)
    optim = optim_config(cfg, len(encoded["train"]), metric)
    model.to(resolve_device(cfg.device))
    label_names = splits["train"].label_names if cfg.task != "regression" else None
    extra = {"pretrain_config": to_dict(pre), "finetune_config": to_dict(cfg), "label_names": label_names}
    with tempfile.TemporaryDirectory() as scratch:
        run_dir = Path(out_dir) if out_dir is not None else Path(scratch)
        summary = finetune(model, task, optim, run_dir, lambda: extra)
        if out_dir is not None:
            save_config(cfg, str(run_dir / "finetune_config.json"))
    epochs = {row["step"]: i + 1 for i, row in enumerate(summary["history"])}
    history = [{"epoch": epochs[r["step"]], "train_loss": r["train_loss"],
                **{k[len("valid_"):]: v for k, v in r.items() if k.startswith("valid_")}} for r in summary["history"]]
    best = history[epochs[summary["best_step"]] - 1]
    result = {"task": cfg.task, "init": cfg.init, "metric": metric, "history": history, "best_epoch": best["epoch"],
              "valid": {k: v for k, v in best.items() if k not in ("epoch", "train_loss")},
              "seconds": summary["seconds"], "train_examples": len(encoded["train"])}
    if "test" in encoded:
        result["test"] = task.evaluate(model, "test")
    return result

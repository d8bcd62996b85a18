"""Speech fine-tuning tasks: CTC speech recognition (`ctc`) and utterance classification
(`audio-classification`), and transcription with the result.

The recipes follow fairseq's wav2vec_ctc (reference section 3.2): the conv feature extractor
stays frozen (`model.freeze_feature_extractor`), time and channel masks on the features,
layerdrop, only the head trains for the first `train.freeze_backbone_steps` updates, tri-stage
lr, greedy decoding. Layer-wise lr decay (`train.layer_decay` < 1) is available as for images.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch

from data2vec.config import InputConfig, PretrainConfig, register_kind
from data2vec.data.audio import check_speeds, load_audio, normalize_waveform
from data2vec.data.audio_labeled import LabeledAudio, batch_plan, class_index, labeled_batches, open_labeled
from data2vec.eval.metrics import accuracy
from data2vec.heads.classification import classification_loss
from data2vec.heads.ctc import Vocabulary, ctc_loss, error_rates, greedy_decode
from data2vec.heads.finetuned import HeadConfig
from data2vec.heads.model import EncoderWithHead
from data2vec.train.finetune_config import FinetuneConfig, LabeledDataConfig

log = logging.getLogger("data2vec")


@register_kind
@dataclass(frozen=True)
class SpeechLabeledData(LabeledDataConfig):
    kind: str = "audio"
    train: str = ""  # fairseq .tsv manifest with a label file next to it
    valid: str = ""
    test: str = ""  # scored once, with the selected weights
    labels: str = "ltr"  # label file extension (ltr, wrd, or a class file such as `kind`)
    train_limit: int = 0  # use only the first N labeled training utterances (0: all)
    max_samples_per_batch: int = 1_280_000  # padded 16 kHz samples per batch (fairseq max_tokens)
    # Training utterances played at one of these speeds, drawn per utterance and epoch (Kaldi's
    # 0.9,1.0,1.1); () plays them as recorded. Batches are planned on the recorded lengths, so a
    # slowed one can exceed max_samples_per_batch by 1/min(speeds).
    speed_perturb: tuple[float, ...] = ()


def min_samples(inp: InputConfig) -> int:
    """Shortest input giving one feature frame: the conv stack's receptive field."""
    rf = 1
    for k, s in reversed(list(zip(inp.conv_kernels, inp.conv_strides))):
        rf = (rf - 1) * s + k
    return rf


class SpeechTask:
    """`FinetuneTask` for CTC recognition (WER/CER, in percent) or utterance classification
    (accuracy, in percent)."""

    def __init__(self, cfg: FinetuneConfig, pre: PretrainConfig) -> None:
        d = cfg.data
        if not isinstance(d, SpeechLabeledData):
            raise ValueError(f"task={cfg.task} needs data.kind=audio, got {d.kind!r}")
        if not d.train or not d.valid:
            raise ValueError("give data.train=... and data.valid=... (fairseq .tsv with label files next to them)")
        check_speeds(d.speed_perturb, "data.speed_perturb")  # before any file is read
        self.cfg, self.ctc = cfg, cfg.task == "ctc"
        shortest = min_samples(pre.model.input)
        self.splits = {"train": open_labeled(d.train, d.labels, self.ctc, shortest, d.train_limit,
                                             d.speed_perturb, cfg.train.seed),
                       "valid": open_labeled(d.valid, d.labels, self.ctc, shortest)}
        if d.test:
            self.splits["test"] = open_labeled(d.test, d.labels, self.ctc, shortest)
        self.has_test = bool(d.test)
        train = self.splits["train"]
        if self.ctc:
            self.vocab = Vocabulary.from_transcripts(train.labels)
            self.train_targets = [self.vocab.encode(t, f"{d.train} line {i + 2}") for i, t in enumerate(train.labels)]
            self.outputs, self.metric = list(self.vocab.symbols), "wer"
        else:
            classes, self.train_targets = class_index(train.labels)
            class_index(self.splits["valid"].labels, classes)  # every validation label is a training class
            self.outputs, self.metric = list(classes), "accuracy"
        self.head = HeadConfig("ctc" if self.ctc else "audio_classification", len(self.outputs),
                               dropout=cfg.model.head_dropout)

    def sizes(self) -> dict[str, int]:
        return {k: len(v) for k, v in self.splits.items()}

    def _plan_args(self) -> tuple[int, int, int]:
        return self.cfg.data.max_samples_per_batch, self.cfg.train.batch_size, self.cfg.train.seed

    def num_batches(self) -> int:
        return len(batch_plan(self.splits["train"], *self._plan_args(), 0))

    def batches(self, epoch: int, start: int) -> Iterator[dict[str, Any]]:
        return labeled_batches(self.splits["train"], *self._plan_args(), epoch, start)

    def loss(self, model: EncoderWithHead, batch: dict[str, Any], generator: torch.Generator):
        dev = next(model.parameters()).device
        pad = batch["padding_mask"].to(dev)
        x, frame_pad = model.features(batch["audio"].to(dev), pad, generator)
        idx = batch["label_index"].tolist()
        if self.ctc:
            loss = ctc_loss(model.head(x, frame_pad), frame_pad, [self.train_targets[i] for i in idx])
        else:
            loss = classification_loss(model.head(x, frame_pad), self.train_targets[idx].to(dev),
                                       self.cfg.train.label_smoothing)
        return loss, {"utterances": float(len(idx))}

    def predict(self, model: EncoderWithHead, data: LabeledAudio) -> dict[int, Any]:
        """Transcripts (ctc) or class names of every readable utterance, by index."""
        dev, out = next(model.parameters()).device, {}
        max_samples, bs, _ = self._plan_args()
        for batch in labeled_batches(data, max_samples, bs, 0, None):
            x, pad = model.features(batch["audio"].to(dev), batch["padding_mask"].to(dev))
            logits = model.head(x, pad)
            if self.ctc:
                preds = [self.vocab.decode(ids) for ids in greedy_decode(logits, pad)]
            else:
                preds = [self.outputs[i] for i in logits.argmax(-1).tolist()]
            out.update(zip(batch["label_index"].tolist(), preds))
        return out

    def evaluate(self, model: EncoderWithHead, split: str) -> dict[str, float]:
        data = self.splits[split]
        pred = self.predict(model, data)
        idx = sorted(pred)  # unreadable utterances have no prediction and are left out
        if self.ctc:
            return error_rates([pred[i] for i in idx], [data.texts[i] for i in idx])
        _, truth = class_index([data.labels[i] for i in idx], tuple(self.outputs))
        _, guess = class_index([pred[i] for i in idx], tuple(self.outputs))
        return {"accuracy": 100.0 * accuracy(guess, truth)}


@torch.no_grad()
def transcribe(model: EncoderWithHead, pre: PretrainConfig, outputs: Sequence[str], files: Sequence[str | Path],
               ctc: bool = True) -> list[str]:
    """Greedy CTC transcripts (or class names) of audio files, one at a time (any format
    soundfile reads)."""
    vocab, dev, out = Vocabulary(tuple(outputs)), next(model.parameters()).device, []
    shortest = min_samples(pre.model.input)
    for path in files:
        wav = torch.from_numpy(normalize_waveform(load_audio(path)))[None].to(dev)
        if wav.shape[1] < shortest:
            raise ValueError(f"{path}: {wav.shape[1]} samples at 16 kHz is shorter than one frame ({shortest})")
        logits = model(wav)
        out.append(vocab.decode(greedy_decode(logits)[0]) if ctc else outputs[int(logits.argmax(-1))])
    return out

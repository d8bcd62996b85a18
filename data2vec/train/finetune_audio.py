"""Speech fine-tuning: CTC speech recognition and utterance classification on top of an audio
encoder pretrained with data2vec 2.0 (or random weights), and transcription with the result.

The recipe follows fairseq's wav2vec_ctc (reference section 3.2): the conv feature extractor
stays frozen (`feature_grad_mult: 0`), time and channel masks on the features, layerdrop, only
the head trains for the first `freeze_backbone_steps` updates, tri-stage lr, greedy decoding.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import torch
from torch import Tensor, nn

from data2vec.config import ModelConfig, PretrainConfig, from_dict, to_dict
from data2vec.data.audio import load_audio, normalize_waveform
from data2vec.data.audio_labeled import LabeledAudio, class_index, labeled_batches, open_labeled
from data2vec.eval.metrics import accuracy
from data2vec.heads.classification import MeanPoolClassifier, classification_loss
from data2vec.heads.ctc import CTCHead, Vocabulary, ctc_loss, error_rates, greedy_decode
from data2vec.masking.audio import span_mask
from data2vec.presets import get_preset
from data2vec.train.checkpoint import load_checkpoint
from data2vec.train.finetune import FinetuneConfig, FinetuneModel, finetune
from data2vec.train.pretrain import build_model, resolve_device

TASKS = ("ctc", "classify")


@dataclass(frozen=True)
class SpeechFinetuneConfig:
    task: str = "ctc"  # ctc: speech recognition; classify: one label per utterance
    init: str = ""  # our pretraining checkpoint; empty: random weights of `preset`
    preset: str = "data2vec2_audio_small"  # architecture when `init` is empty
    train_manifest: str = ""
    valid_manifest: str = ""
    labels: str = "ltr"  # label file extension next to the manifests (ltr, wrd, or a class file)
    train_limit: int = 0  # use only the first N labeled training utterances (0: all)
    max_samples_per_batch: int = 1_280_000  # padded 16 kHz samples per batch
    batch_size: int = 64  # utterances per batch at most
    mask_prob: float = 0.75  # time masking: span starts ~ mask_prob * T / mask_length
    mask_length: int = 10
    mask_channel_prob: float = 0.25
    mask_channel_length: int = 64
    layer_drop: float = 0.1
    freeze_feature_extractor: bool = True
    optim: FinetuneConfig = field(default_factory=FinetuneConfig)


def recipe(name: str) -> SpeechFinetuneConfig:
    """Named fine-tuning recipes: `ctc_base_10h` (fairseq vox_10h) and `ctc_small` (2-core CPU)."""
    if name == "ctc_base_10h":
        return SpeechFinetuneConfig(preset="data2vec2_audio_base", max_samples_per_batch=1_280_000, batch_size=512,
                                    mask_prob=0.75, mask_channel_prob=0.25, mask_channel_length=64, layer_drop=0.1,
                                    optim=FinetuneConfig(lr=1e-4, max_steps=20_000, freeze_backbone_steps=10_000,
                                                         eval_every=1000, log_every=50))
    if name == "ctc_small":
        return SpeechFinetuneConfig(preset="data2vec2_audio_small", max_samples_per_batch=16 * 48_000, batch_size=16,
                                    mask_prob=0.5, mask_length=5, mask_channel_prob=0.1, mask_channel_length=16,
                                    layer_drop=0.0,
                                    optim=FinetuneConfig(lr=1e-3, max_steps=400, freeze_backbone_steps=40,
                                                         eval_every=100, log_every=10, clip_norm=1.0))
    raise KeyError(f"unknown fine-tuning recipe {name!r}; available: ctc_base_10h, ctc_small")


class AudioBackbone(nn.Module):
    """The pretrained modality encoder + shared Transformer, every frame kept, fine-tuning masks."""

    def __init__(self, modality: nn.Module, encoder: nn.Module, cfg: SpeechFinetuneConfig) -> None:
        super().__init__()
        self.modality, self.encoder, self.cfg = modality, encoder, cfg
        if cfg.freeze_feature_extractor:
            self.modality.local_encoder.requires_grad_(False)

    def forward(self, audio: Tensor, padding_mask: Optional[Tensor], generator: Optional[torch.Generator] = None):
        """audio (B, S) -> features (B, T, D) and their padding mask (B, T) | None."""
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.cfg.freeze_feature_extractor):
            x, pad = self.modality.local_features(audio, padding_mask)
        if self.training and generator is not None:
            x = self._mask(x, pad, generator)
        ctx = self.modality.contextualize(x, pad, None)
        out = self.encoder(ctx.x, ctx.padding_mask, ctx.attn_bias)
        return out.x[:, self.modality.num_extra_tokens:], pad

    def _mask(self, x: Tensor, pad: Optional[Tensor], g: torch.Generator) -> Tensor:
        c, (B, T, D) = self.cfg, x.shape
        if c.mask_prob > 0:
            time = span_mask(B, T, c.mask_prob, c.mask_length, pad, g).to(x.device)
            # Masked frames become N(0, 0.01) noise, as data2vec 2.0 fine-tuning does.
            noise = torch.randn(x.shape, generator=g).to(x.device, x.dtype) * self.modality.noise_std
            x = torch.where(time[..., None], noise, x)
        if c.mask_channel_prob > 0:
            channels = span_mask(B, D, c.mask_channel_prob, c.mask_channel_length, None, g).to(x.device)
            x = x.masked_fill(channels[:, None, :], 0.0)
        return x


def backbone_config(cfg: SpeechFinetuneConfig) -> tuple[ModelConfig, Optional[dict]]:
    """The model config (fine-tuning layerdrop applied) and the pretrained weights, if any."""
    if cfg.init:
        ckpt = load_checkpoint(cfg.init)
        if "config" not in ckpt or "model" not in ckpt:
            raise ValueError(f"{cfg.init} is not a data2vec pretraining checkpoint (no config/model entries)")
        model_cfg, state = from_dict(PretrainConfig, ckpt["config"]).model, ckpt["model"]
    else:
        model_cfg, state = get_preset(cfg.preset).model, None
    if model_cfg.input.kind != "audio":
        raise ValueError(f"speech fine-tuning needs an audio model, got input kind {model_cfg.input.kind!r}")
    return dataclasses.replace(model_cfg, encoder=dataclasses.replace(model_cfg.encoder, layer_drop=cfg.layer_drop)), state


def build_backbone(cfg: SpeechFinetuneConfig, model_cfg: ModelConfig, state: Optional[dict]) -> AudioBackbone:
    model = build_model(model_cfg)
    if state is not None:
        model.load_state_dict(state)
    return AudioBackbone(model.modality, model.encoder, cfg)


def make_head(cfg: SpeechFinetuneConfig, dim: int, num_outputs: int) -> nn.Module:
    return CTCHead(dim, num_outputs) if cfg.task == "ctc" else MeanPoolClassifier(dim, num_outputs)


class SpeechTask:
    """`FinetuneTask` for CTC recognition (WER/CER) or utterance classification (accuracy)."""

    def __init__(self, cfg: SpeechFinetuneConfig, train: LabeledAudio, valid: LabeledAudio,
                 classes: tuple[str, ...] = ()) -> None:
        self.cfg, self.train, self.valid = cfg, train, valid
        if cfg.task == "ctc":
            self.vocab = Vocabulary.from_transcripts(train.labels)
            self.train_targets = [self.vocab.encode(t, f"{cfg.train_manifest} line {i + 2}") for i, t in enumerate(train.labels)]
        else:
            self.classes, self.train_targets = class_index(train.labels, classes or None)
            _, self.valid_targets = class_index(valid.labels, self.classes)

    def num_outputs(self) -> int:
        return len(self.vocab) if self.cfg.task == "ctc" else len(self.classes)

    def batches(self, epoch: int):
        return labeled_batches(self.train, self.cfg.max_samples_per_batch, self.cfg.batch_size, self.cfg.optim.seed, epoch)

    def loss(self, model: FinetuneModel, batch: dict[str, Any], generator: torch.Generator):
        dev = next(model.parameters()).device
        x, pad = model.backbone(batch["audio"].to(dev), batch["padding_mask"].to(dev), generator)
        idx = batch["label_index"].tolist()
        if self.cfg.task == "ctc":
            loss = ctc_loss(model.head(x), pad, [self.train_targets[i] for i in idx])
        else:
            loss = classification_loss(model.head(x, pad), self.train_targets[idx].to(dev))
        return loss, {"utterances": float(len(idx))}

    @torch.no_grad()
    def predict(self, model: FinetuneModel, data: LabeledAudio) -> dict[int, Any]:
        """Transcripts (ctc) or class ids (classify) of every utterance, by index."""
        dev, out = next(model.parameters()).device, {}
        for batch in labeled_batches(data, self.cfg.max_samples_per_batch, self.cfg.batch_size, 0, None):
            x, pad = model.backbone(batch["audio"].to(dev), batch["padding_mask"].to(dev))
            if self.cfg.task == "ctc":
                preds = [self.vocab.decode(ids) for ids in greedy_decode(model.head(x), pad)]
            else:
                preds = model.head(x, pad).argmax(-1).tolist()
            out.update(zip(batch["label_index"].tolist(), preds))
        return out

    def evaluate(self, model: FinetuneModel) -> dict[str, float]:
        pred = self.predict(model, self.valid)
        idx = sorted(pred)  # unreadable utterances have no prediction and are left out
        if self.cfg.task == "ctc":
            return error_rates([pred[i] for i in idx], [self.valid.texts[i] for i in idx])
        return {"accuracy": 100.0 * accuracy(torch.tensor([pred[i] for i in idx]), self.valid_targets[idx])}


def min_samples(model_cfg: ModelConfig) -> int:
    """Shortest input giving one feature frame: the conv stack's receptive field."""
    rf = 1
    for k, s in reversed(list(zip(model_cfg.input.conv_kernels, model_cfg.input.conv_strides))):
        rf = (rf - 1) * s + k
    return rf


def run_speech_finetune(cfg: SpeechFinetuneConfig, out_dir: str | Path) -> dict[str, Any]:
    """Fine-tune on `cfg.train_manifest`, evaluate on `cfg.valid_manifest`, save `finetuned.pt`."""
    if cfg.task not in TASKS:
        raise ValueError(f"task={cfg.task!r}; expected one of {TASKS}")
    if not cfg.train_manifest or not cfg.valid_manifest:
        raise ValueError("give train_manifest=... and valid_manifest=... (fairseq .tsv with label files next to them)")
    model_cfg, state = backbone_config(cfg)
    ctc, shortest = cfg.task == "ctc", min_samples(model_cfg)
    train = open_labeled(cfg.train_manifest, cfg.labels, ctc, shortest, cfg.train_limit)
    valid = open_labeled(cfg.valid_manifest, cfg.labels, ctc, shortest)
    task = SpeechTask(cfg, train, valid)
    torch.manual_seed(cfg.optim.seed)
    model = FinetuneModel(build_backbone(cfg, model_cfg, state), make_head(cfg, model_cfg.encoder.dim, task.num_outputs()))
    model.to(resolve_device(cfg.optim.device))
    outputs = list(task.vocab.symbols) if ctc else list(task.classes)
    extra = lambda: {"config": to_dict(cfg), "model_config": to_dict(model_cfg), "outputs": outputs}  # noqa: E731
    summary = finetune(model, task, cfg.optim, out_dir, extra)
    summary.update(train_utterances=len(train), valid_utterances=len(valid),
                   train_seconds=float(train.dataset.sizes.sum()) / 16000)
    return summary


def load_finetuned(path: str | Path, device: str = "cpu") -> tuple[FinetuneModel, SpeechFinetuneConfig, list[str]]:
    """Rebuild a fine-tuned speech model; returns (model in eval mode, its config, outputs)."""
    ckpt = load_checkpoint(path)
    if ckpt.get("format") != "data2vec-finetune-checkpoint":
        raise ValueError(f"{path} is not a data2vec fine-tuning checkpoint (data2vec finetune writes finetuned.pt)")
    cfg = from_dict(SpeechFinetuneConfig, ckpt["config"])
    model_cfg = from_dict(ModelConfig, ckpt["model_config"])
    model = FinetuneModel(build_backbone(cfg, model_cfg, None), make_head(cfg, model_cfg.encoder.dim, len(ckpt["outputs"])))
    model.load_state_dict(ckpt["model"])
    return model.to(device).eval(), cfg, list(ckpt["outputs"])


@torch.no_grad()
def transcribe(model: FinetuneModel, symbols: Sequence[str], files: Sequence[str | Path]) -> list[str]:
    """Greedy CTC transcripts of audio files, one at a time (any format soundfile reads)."""
    vocab, dev, out = Vocabulary(tuple(symbols)), next(model.parameters()).device, []
    shortest = min_samples(ModelConfig(input=model.backbone.modality.cfg))
    for path in files:
        wav = torch.from_numpy(normalize_waveform(load_audio(path)))[None].to(dev)
        if wav.shape[1] < shortest:
            raise ValueError(f"{path}: {wav.shape[1]} samples at 16 kHz is shorter than one frame ({shortest})")
        x, pad = model.backbone(wav, None)
        out.append(vocab.decode(greedy_decode(model.head(x), pad)[0]))
    return out

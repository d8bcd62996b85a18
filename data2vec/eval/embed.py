"""Embeddings from any checkpoint: `embed(checkpoint, inputs)` in Python, `data2vec embed` on
the command line. Batched, on the GPU when there is one, with a progress bar; unreadable
inputs are skipped, counted and listed in the index file."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from safetensors.torch import save_file
from torch import Tensor, nn
from tqdm import tqdm

from data2vec.checkpoints.load import load_model
from data2vec.checkpoints.multimodal import require_one_modality
from data2vec.config import PretrainConfig
from data2vec.data.text_pretrain import check_tokenizer, text_tokenizer
from data2vec.data.tokenizer import TextTokenizer
from data2vec.eval.features import FeatureSpec, default_pooling, embed_batch
from data2vec.eval.inputs import Inputs, open_inputs
from data2vec.train.pretrain import resolve_device

log = logging.getLogger("data2vec")
OUTPUT_SUFFIXES = (".npy", ".safetensors")


@dataclass
class Embeddings:
    """`features`: (N, F) one row per embedded input, or for pooling "none" (sum of T_i, D)
    with input i's tokens at rows `offsets[i]:offsets[i + 1]`. `names`/`labels`: per embedded
    input, in order; `skipped`: the inputs that could not be read."""

    features: Tensor
    names: list[str]
    skipped: list[str]
    spec: FeatureSpec
    offsets: Optional[Tensor] = None
    labels: Optional[list[Any]] = None

    def save(self, out: str | Path, metadata: Optional[dict[str, str]] = None) -> tuple[Path, Path]:
        """Write `out` (.npy or .safetensors) and the index `<out stem>.index.jsonl`: one line per
        input, {"row"/"rows", "input"} for embedded ones, {"input", "skipped": true} for the rest."""
        out = Path(out)
        if out.suffix not in OUTPUT_SUFFIXES:
            raise ValueError(f"{out}: the output must end in one of {OUTPUT_SUFFIXES}")
        out.parent.mkdir(parents=True, exist_ok=True)
        if out.suffix == ".npy":
            np.save(out, self.features.numpy())
        else:
            tensors = {"embeddings": self.features.contiguous()}
            if self.offsets is not None:
                tensors["offsets"] = self.offsets
            meta = {"layer": self.spec.layer, "pooling": self.spec.pooling, **(metadata or {})}
            save_file(tensors, str(out), metadata=meta)
        index = out.with_name(out.stem + ".index.jsonl")
        with open(index, "w", encoding="utf-8") as f:
            for i, name in enumerate(self.names):
                row: dict[str, Any] = ({"row": i} if self.offsets is None else
                                       {"rows": [int(self.offsets[i]), int(self.offsets[i + 1])]})
                f.write(json.dumps({**row, "input": name}) + "\n")
            for name in self.skipped:
                f.write(json.dumps({"input": name, "skipped": True}) + "\n")
        return out, index


@torch.no_grad()
def extract(model: nn.Module, cfg: PretrainConfig, inputs: Inputs, spec: FeatureSpec, batch_size: int = 32,
            device: Optional[str | torch.device] = None, progress: bool = False) -> Embeddings:
    """Features of every readable input, in input order (see `FeatureSpec`)."""
    dev = resolve_device(str(device or "auto"))
    model = model.to(dev).eval()
    key = model.modality.input_key
    rows: list[Tensor] = []
    names: list[str] = []
    labels: list[Any] = []
    skipped: list[str] = []
    n = len(inputs.dataset)
    with tqdm(total=n, disable=not progress, desc="embed", unit="input", dynamic_ncols=True) as bar:
        for start in range(0, n, batch_size):
            idx = list(range(start, min(n, start + batch_size)))
            items = [_read(inputs, i) for i in idx]
            skipped += [inputs.names[i] for i, it in zip(idx, items) if it is None]
            bar.update(len(idx))
            for run in _runs([(i, it) for i, it in zip(idx, items) if it is not None], key, inputs.same_length):
                batch = inputs.collate([it for _, it in run])
                pad = batch.get("padding_mask")
                out = embed_batch(model, cfg.model, batch[key].to(dev), pad.to(dev) if pad is not None else None, spec)
                rows += [t.cpu() for t in out] if isinstance(out, list) else [out.cpu()]
                names += [inputs.names[i] for i, _ in run]
                if inputs.labels is not None:
                    labels += [inputs.labels[i] for i, _ in run]
    if skipped:
        log.warning("skipped %d unreadable input(s), e.g. %s", len(skipped), skipped[0])
    if not names:
        raise ValueError(f"none of the {n} inputs could be read")
    offsets = None
    if spec.pooling == "none":
        offsets = torch.tensor([0] + [len(r) for r in rows]).cumsum(0)
    return Embeddings(torch.cat(rows), names, skipped, spec, offsets, labels if inputs.labels is not None else None)


def _runs(items: list[tuple[int, Any]], key: str, same_length: bool) -> list[list[tuple[int, Any]]]:
    """The batch as consecutive runs that may be padded together (all of it, unless
    `same_length`: then runs of equal input length)."""
    if not same_length:
        return [items] if items else []
    runs: list[list[tuple[int, Any]]] = []
    for i, it in items:
        if runs and len(runs[-1][-1][1][key]) == len(it[key]):
            runs[-1].append((i, it))
        else:
            runs.append([(i, it)])
    return runs


def _read(inputs: Inputs, i: int) -> Any:
    try:
        return inputs.dataset[i]
    except (OSError, ValueError) as e:  # one unreadable input never stops the run
        log.debug("cannot read %s: %s", inputs.names[i], e)
        return None


def tokenizer_for(cfg: PretrainConfig, path: Optional[str | Path] = None) -> Optional[TextTokenizer]:
    """The tokenizer of a text model: `path`, else the one its pretraining config names."""
    if cfg.model.input.kind != "text":
        return None
    tokenizer = TextTokenizer.load(path) if path else text_tokenizer(cfg.data, cfg.model.input)
    check_tokenizer(tokenizer, cfg.model.input)
    return tokenizer


def embed(checkpoint: str | Path, path: str | Path, layer: str = "last", pooling: Optional[str] = None,
          weights: str = "student", batch_size: int = 32, device: Optional[str] = None,
          tokenizer: Optional[str | Path] = None, progress: bool = False, modality: Optional[str] = None,
          **input_options: Any) -> Embeddings:
    """Embeddings of the inputs at `path` (see `eval.inputs.open_inputs` for the forms and
    `input_options`) from a checkpoint in any format; `modality` picks one modality of a
    multimodal checkpoint. `pooling` defaults to `default_pooling`."""
    model, cfg, _ = load_model(checkpoint, weights, modality=modality)
    require_one_modality(cfg, checkpoint)
    spec = FeatureSpec(layer, pooling or default_pooling(model))
    inputs = open_inputs(path, cfg, tokenizer=tokenizer_for(cfg, tokenizer), **input_options)
    return extract(model, cfg, inputs, spec, batch_size, device, progress)

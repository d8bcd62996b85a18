"""Speech fine-tuning on real synthesized speech: CTC on a tiny labeled set, classification,
initialization from a pretraining checkpoint."""

import pytest
import torch

from data2vec.config import apply_overrides
from data2vec.data.audio import read_manifest, write_manifest
from data2vec.presets import get_preset
from data2vec.train.checkpoint import load_checkpoint
from data2vec.train.finetune_audio import backbone_config, build_backbone, load_finetuned, recipe, run_speech_finetune, transcribe
from data2vec.train.pretrain import pretrain


@pytest.fixture
def corpus(speech_corpus):
    return speech_corpus


def subset(corpus, out, n, ext="ltr"):
    """The n shortest training utterances as their own manifest + labels."""
    root, entries = read_manifest(corpus / "train.tsv")
    labels = (corpus / f"train.{ext}").read_text().splitlines()
    order = sorted(range(len(entries)), key=lambda i: entries[i].num_samples)[:n]
    write_manifest(out / "tiny.tsv", root, [entries[i] for i in order])
    (out / f"tiny.{ext}").write_text("".join(labels[i] + "\n" for i in order))
    return out / "tiny.tsv"


def _cfg(manifest, *extra):
    return apply_overrides(recipe("ctc_small"), [
        f"train_manifest={manifest}", f"valid_manifest={manifest}", "preset=data2vec2_audio_tiny",
        "mask_prob=0", "mask_channel_prob=0", "batch_size=8", "max_samples_per_batch=400000", *extra])


def test_ctc_finetuning_on_a_tiny_labeled_set_lowers_cer(corpus, tmp_path):
    tiny = subset(corpus, tmp_path, 6)
    cfg = _cfg(tiny, "optim.max_steps=90", "optim.eval_every=30", "optim.lr=5e-3", "optim.freeze_backbone_steps=0",
               "optim.warmup_frac=0.05", "optim.hold_frac=0.8", "freeze_feature_extractor=false")
    summary = run_speech_finetune(cfg, tmp_path / "run")
    cers = [h["valid_cer"] for h in summary["history"]]
    assert cers[-1] < 75 and cers[-1] < cers[0], cers
    model, loaded, outputs = load_finetuned(tmp_path / "run" / "finetuned.pt")
    assert outputs[0] == "<blank>" and loaded == cfg and not model.training
    root, entries = read_manifest(tiny)
    texts = transcribe(model, outputs, [root / e.path for e in entries])
    assert len(texts) == 6 and sum(bool(t) for t in texts) >= 3, texts  # real words come out


def test_utterance_classification_and_init_from_a_pretraining_checkpoint(corpus, tmp_path):
    pre = apply_overrides(get_preset("data2vec2_audio_tiny"), [f"data.path={corpus / 'train.tsv'}", "train.max_steps=1"])
    pretrain(pre, tmp_path / "pre", progress=False)
    ckpt = tmp_path / "pre" / "checkpoints" / "last.pt"
    kinds = {r.split("\t")[0]: r.split("\t")[6] for r in (corpus / "speakers.tsv").read_text().splitlines()[1:]}
    _, entries = read_manifest(corpus / "train.tsv")
    (corpus / "train.kind").write_text("".join(kinds[e.path] + "\n" for e in entries))
    cfg = _cfg(corpus / "train.tsv", "task=classify", "labels=kind", f"init={ckpt}", "optim.max_steps=4",
               "optim.eval_every=4", "optim.freeze_backbone_steps=2", "mask_prob=0.5", "mask_length=5",
               "mask_channel_prob=0.2", "mask_channel_length=8", "layer_drop=0.1")
    model_cfg, state = backbone_config(cfg)
    assert model_cfg.encoder.layer_drop == 0.1
    backbone = build_backbone(cfg, model_cfg, state)
    pretrained = load_checkpoint(ckpt)["model"]
    for name, p in backbone.named_parameters():
        torch.testing.assert_close(p, pretrained[name])
    summary = run_speech_finetune(cfg, tmp_path / "cls")
    assert 0 <= summary["history"][-1]["valid_accuracy"] <= 100
    model, _, classes = load_finetuned(tmp_path / "cls" / "finetuned.pt")
    assert set(classes) <= {"digits", "word", "sentence"}
    fe = model.backbone.modality.local_encoder.state_dict()
    for k, v in fe.items():  # the feature extractor stayed frozen
        torch.testing.assert_close(v, pretrained[f"modality.local_encoder.{k}"])


def test_bad_labeled_data_gives_a_clear_error(corpus, tmp_path):
    tiny = subset(corpus, tmp_path, 4)
    (tmp_path / "tiny.ltr").write_text("A |\n")
    with pytest.raises(ValueError, match="tiny.ltr: 1 lines but the manifest"):
        run_speech_finetune(_cfg(tiny), tmp_path / "run")
    with pytest.raises(FileNotFoundError, match="label file"):
        run_speech_finetune(_cfg(tiny, "labels=wrd"), tmp_path / "run")

"""Joint pretraining on real images, speech and text through the one training loop: every
modality trains, a resumed run is bit-identical, and the verbs take one modality of the
checkpoint."""

import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image

from data2vec.algorithms.multimodal import MultimodalModel
from data2vec.checkpoints.load import load_model
from data2vec.cli import main as cli
from data2vec.config import apply_overrides
from data2vec.data.text_pretrain import TextDataConfig
from data2vec.presets import get_preset
from data2vec.train.checkpoint import load_checkpoint
from data2vec.recipes import get_recipe
from data2vec.train.finetune_run import build_run, load_backbone
from data2vec.train.logging import read_metrics
from data2vec.train.pretrain import pretrain

WORDS = "the quick brown fox jumps over a lazy dog while seven wizards quietly hex jovial kings".split()


@pytest.fixture
def cfg(fmnist_train, speech_corpus, tmp_path):
    rng = np.random.default_rng(0)
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n\n".join(" ".join(rng.choice(WORDS, rng.integers(8, 40))) for _ in range(120)) + "\n")
    base = get_preset("data2vec2_multi_tiny")
    data = {"image": lambda d: dataclasses.replace(d, path=fmnist_train, limit=500),
            "audio": lambda d: dataclasses.replace(d, path=str(speech_corpus / "train.tsv")),
            "text": lambda d: TextDataConfig(path=str(corpus), doc_mode="blank_line", block_size=32,
                                             cache_dir=str(tmp_path / "cache"))}
    sources = tuple(dataclasses.replace(s, data=data[s.name](s.data)) for s in base.data.sources)
    cfg = dataclasses.replace(base, data=dataclasses.replace(base.data, sources=sources))
    # Dropout makes the restored RNG state matter for the resume check.
    return apply_overrides(cfg, ["train.num_workers=0", "train.log_every=1", "train.ckpt_every=100",
                                 "train.bf16=false", "model.encoder.dropout=0.1"])


@pytest.mark.integration
def test_joint_run_trains_every_modality_and_resumes_exactly(cfg, tmp_path):
    full = apply_overrides(cfg, ["train.max_steps=6"])
    pretrain(full, tmp_path / "full", progress=False)
    pretrain(apply_overrides(cfg, ["train.max_steps=4"]), tmp_path / "split", progress=False)
    pretrain(full, tmp_path / "split", resume=True, progress=False)
    a = read_metrics(tmp_path / "full" / "metrics.jsonl")
    b = read_metrics(tmp_path / "split" / "metrics.jsonl")
    assert [r["loss"] for r in a] == [r["loss"] for r in b]  # bit-identical on CPU
    # Steps alternate image, audio, text; each logs its own modality's loss.
    assert [next(k for k in r if k.endswith("/loss")) for r in a] == ["image/loss", "audio/loss", "text/loss"] * 2
    ck_a = load_checkpoint(tmp_path / "full" / "checkpoints" / "last.pt")
    ck_b = load_checkpoint(tmp_path / "split" / "checkpoints" / "last.pt")
    for k in ck_a["model"]:
        assert torch.equal(ck_a["model"][k], ck_b["model"][k]), k

    init = load_model(tmp_path / "full" / "export").model  # the whole joint model through the one loader
    assert isinstance(init, MultimodalModel)
    torch.manual_seed(cfg.train.seed)
    start = MultimodalModel(cfg.model).state_dict()
    for name in ("image", "audio", "text"):  # every modality's own parts moved
        key = next(k for k in start if k.startswith(f"modalities.{name}.") and start[k].is_floating_point())
        assert not torch.equal(start[key], init.state_dict()[key]), key


@pytest.mark.integration
def test_verbs_take_one_modality_of_a_joint_checkpoint(cfg, tmp_path, capsys):
    pretrain(apply_overrides(cfg, ["train.max_steps=3"]), tmp_path / "run", progress=False)
    run = tmp_path / "run"
    joint = load_model(run).model
    audio = load_model(run, "teacher", modality="audio")
    assert audio.cfg.model.input.kind == "audio" and audio.cfg.data.path.endswith("train.tsv")
    student = load_model(run, modality="image").model
    for k, v in student.modality.state_dict().items():
        assert torch.equal(v, joint.modalities["image"].state_dict()[k]), k

    texts = tmp_path / "texts.txt"
    texts.write_text("the quick brown fox\nseven wizards hex jovial kings\n")
    out = tmp_path / "emb.npy"
    assert cli(["embed", str(run), str(texts), "--modality", "text", "--out", str(out), "--no-progress"]) == 0
    assert np.load(out).shape == (2, 32)
    assert cli(["embed", str(run), str(texts), "--out", str(out)]) != 0
    assert "choose one with --modality" in capsys.readouterr().err
    assert cli(["embed", str(run), str(texts), "--modality", "video", "--out", str(out)]) != 0
    assert "has no modality 'video'; it has image, audio, text" in capsys.readouterr().err

    assert cli(["inspect", str(run)]) == 0
    assert "multi (image, audio, text)" in capsys.readouterr().out
    assert cli(["convert", str(run), str(tmp_path / "a.pt"), "--to", "fairseq"]) != 0
    assert "choose one with --modality" in capsys.readouterr().err
    assert cli(["convert", str(run), str(tmp_path / "a.pt"), "--to", "fairseq", "--modality", "audio"]) == 0
    assert load_model(tmp_path / "a.pt").cfg.model.input.kind == "audio"

    pre, state = load_backbone(str(run), "", "student", "", ("audio",))  # fine-tuning picks the task's modality
    assert pre.model.input.kind == "audio" and any(k.startswith("modality.local_encoder.") for k in state)
    with pytest.raises(ValueError, match="0 modalities of input kind beit; choose one with modality=NAME"):
        load_backbone(str(run), "", "student", "", ("beit",))

    folder = tmp_path / "imgs"  # fine-tuning: the image task takes the image modality
    rng = np.random.default_rng(0)
    for cls in ("a", "b"):
        (folder / cls).mkdir(parents=True)
        for i in range(6):
            Image.fromarray(rng.integers(0, 255, (28, 28), dtype=np.uint8)).save(folder / cls / f"{i}.png")
    ft = apply_overrides(get_recipe("image_tiny"), [f"init={run}", f"data.train={folder}", "data.test=",
                                                    "data.valid_size=4", "train.device=cpu"])
    pre, model, _ = build_run(ft)
    assert pre.model.input.kind == "image"
    for k, v in model.modality.state_dict().items():
        assert torch.equal(v, joint.modalities["image"].state_dict()[k]), k

"""Every verb takes every checkpoint format: tiny random weights written in each format (a run
folder, its last.pt, our folder, fairseq .pt 1.0/2.0, BEiT .pth, transformers folders), then
inspect, convert, embed, probe, pretrain --init, finetune, finetune-text and transcribe on each
(the fine-tuning verbs on the formats of their modality)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch
import transformers
from PIL import Image

from data2vec import load_model
from data2vec.checkpoints.load import TRAIN_FORMAT
from data2vec.checkpoints.pretrained import save_pretrained
from data2vec.cli import main
from data2vec.config import to_dict
from data2vec.data.tokenizer import train_bpe
from data2vec.heads.ctc import BLANK
from data2vec.heads.finetuned import HeadConfig

IMAGE_FORMATS = ["run", "last.pt", "ours", "fairseq", "beit", "hf"]
WORDS = "red green blue yellow one two three four cat dog".split()
LETTERS = ("|", "A", "B", "C", "D", "E")


def write_run(cfg, model, teacher, folder):
    path = folder / "checkpoints" / "last.pt"
    path.parent.mkdir(parents=True)
    torch.save({"format": TRAIN_FORMAT, "config": to_dict(cfg), "model": model.state_dict(),
                "teacher": {"module": teacher.state_dict(), "decay": 0.999}}, path)
    return path


def hf_folder(cls_name, config, folder):
    torch.manual_seed(0)
    getattr(transformers, cls_name)(config).save_pretrained(folder)
    return folder


def hf_config(kind, **kw):
    small = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
    if kind == "vision":  # transformers' defaults otherwise: use_mean_pooling=True
        return transformers.Data2VecVisionConfig(**small, image_size=28, patch_size=4, num_channels=1,
                                                 use_relative_position_bias=False,
                                                 use_shared_relative_position_bias=True, layer_norm_eps=1e-6, **kw)
    if kind == "text":
        return transformers.Data2VecTextConfig(**small, vocab_size=300, type_vocab_size=1, max_position_embeddings=40,
                                               layer_norm_eps=1e-5, **kw)
    return transformers.Data2VecAudioConfig(**small, conv_dim=(16,) * 7, num_conv_pos_embedding_groups=4,
                                            num_conv_pos_embeddings=2, conv_pos_kernel_size=5, **kw)


def image_checkpoint(fmt, write_fairseq, write_v1, tmp_path):
    """A tiny image model in format `fmt` (only the one asked for: the fixtures are slow)."""
    if fmt == "beit":
        beit, *_ = write_v1("beit")
        return beit.rename(beit.with_suffix(".pth"))
    if fmt == "hf":
        return hf_folder("Data2VecVisionModel", hf_config("vision"), tmp_path / "hf")
    path, cfg, model, teacher = write_fairseq("image")
    if fmt in ("run", "last.pt"):
        last = write_run(cfg, model, teacher, tmp_path / "run")
        return last if fmt == "last.pt" else tmp_path / "run"
    if fmt == "ours":
        return save_pretrained(model, cfg, tmp_path / "ours", teacher=teacher)
    return path


@pytest.fixture
def images(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(8):
        folder = tmp_path / "images" / ("shirt" if i % 2 else "shoe")
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (28, 28), dtype=np.uint8)).save(folder / f"{i}.png")
    return tmp_path / "images"


@pytest.mark.parametrize("fmt", IMAGE_FORMATS)
def test_inspect_convert_embed_probe_and_init_take_every_format(fmt, write_fairseq, write_v1, images, tmp_path, capsys):
    ckpt = str(image_checkpoint(fmt, write_fairseq, write_v1, tmp_path))
    assert main(["inspect", ckpt]) == 0
    assert "modality:" in capsys.readouterr().out
    assert main(["convert", ckpt, str(tmp_path / "converted")]) == 0
    a, b = load_model(ckpt).model.state_dict(), load_model(tmp_path / "converted").model.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert main(["embed", ckpt, str(images), "--out", str(tmp_path / "e.npy"), "--no-progress"]) == 0
    assert np.load(tmp_path / "e.npy").shape[0] == 8
    assert main(["probe", ckpt, "--train", str(images), "--test", str(images), "--knn-k", "3"]) == 0
    assert "linear probe top-1" in capsys.readouterr().out
    assert main(["pretrain", "--init", ckpt, "--out", str(tmp_path / "cont"), "--no-progress", f"data.path={images}",
                 "train.batch_size=4", "train.micro_batch=4", "train.max_steps=1", "train.device=cpu", "train.bf16=false"]) == 0
    assert (tmp_path / "cont" / "export" / "model.safetensors").is_file()


def backbone(kind, fmt, write_v1, tiny_model, tmp_path):
    """A tiny text or audio model in format `fmt`."""
    if fmt == "fairseq":
        return write_v1(kind)[0]
    if fmt == "hf":
        cls = {"text": "Data2VecTextModel", "audio": "Data2VecAudioModel"}[kind]
        return hf_folder(cls, hf_config(kind), tmp_path / "hf")
    cfg, model, teacher = tiny_model(kind)
    if fmt == "ours":
        return save_pretrained(model, cfg, tmp_path / "ours", teacher=teacher)
    return write_run(cfg, model, teacher, tmp_path / "run")


@pytest.mark.parametrize("fmt", ["last.pt", "ours", "fairseq", "hf"])
def test_finetune_text_takes_every_format(fmt, write_v1, tiny_model, tmp_path, capsys):
    rng = np.random.default_rng(0)
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(" ".join(rng.choice(WORDS, 8)) for _ in range(200)))
    train_bpe([corpus], 280, tmp_path / "tok")
    rows = "".join(f"{w} {w}\t{i % 2}\n" for i, w in enumerate(WORDS))
    (tmp_path / "t.tsv").write_text("sentence\tlabel\n" + rows)
    assert main(["finetune-text", "--checkpoint", str(backbone("text", fmt, write_v1, tiny_model, tmp_path)), "--train", str(tmp_path / "t.tsv"),
                 "--valid", str(tmp_path / "t.tsv"), "--tokenizer", str(tmp_path / "tok"), "--out", str(tmp_path / "ft"),
                 "train.epochs=1", "train.batch_size=4"]) == 0
    assert "best valid accuracy" in capsys.readouterr().out


@pytest.fixture
def speech(tmp_path):
    """Four 1 s noise utterances with letter transcripts (train.tsv + train.ltr/.wrd)."""
    root = tmp_path / "speech"
    root.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        sf.write(root / f"u{i}.wav", (0.1 * rng.normal(size=16000)).astype(np.float32), 16000)
    (root / "train.tsv").write_text(str(root) + "\n" + "".join(f"u{i}.wav\t16000\n" for i in range(4)))
    (root / "train.ltr").write_text("A B | C |\nD E |\nA |\nB C D |\n")
    (root / "train.wrd").write_text("AB C\nDE\nA\nBCD\n")
    return root


@pytest.mark.parametrize("fmt", ["last.pt", "ours", "fairseq", "hf"])
def test_speech_finetune_takes_every_format(fmt, write_v1, tiny_model, speech, tmp_path):
    manifest = str(speech / "train.tsv")
    init = str(backbone("audio", fmt, write_v1, tiny_model, tmp_path))
    assert main(["finetune", "--task", "ctc", "--train", manifest, "--valid", manifest, "--init", init,
                 "--out", str(tmp_path / "ft"), "--no-progress", "train.max_steps=2", "train.eval_every=2",
                 "train.freeze_backbone_steps=1", "train.batch_size=2"]) == 0


def ctc_checkpoint(fmt, write_v1, tmp_path):
    if fmt == "hf":
        hf = hf_folder("Data2VecAudioForCTC", hf_config("audio", vocab_size=1 + len(LETTERS)), tmp_path / "hf")
        (hf / "vocab.json").write_text(json.dumps({s: i for i, s in enumerate(("<pad>", *LETTERS))}))
        return hf
    ctc, *_ = write_v1("audio", HeadConfig("ctc", 1 + len(LETTERS)))
    if fmt == "ours":
        assert main(["convert", str(ctc), str(tmp_path / "ours")]) == 0
        return tmp_path / "ours"
    return ctc


@pytest.mark.parametrize("fmt", ["fairseq", "ours", "hf"])
def test_transcribe_takes_every_ctc_format(fmt, write_v1, speech, tmp_path, capsys):
    (tmp_path / "letters.txt").write_text("\n".join((BLANK, *LETTERS)) + "\n")
    ckpt = str(ctc_checkpoint(fmt, write_v1, tmp_path))
    capsys.readouterr()
    vocab = [] if fmt == "hf" else ["--vocab", str(tmp_path / "letters.txt")]
    wavs = [str(speech / "u0.wav"), str(speech / "u1.wav")]
    assert main(["transcribe", "--checkpoint", ckpt, *vocab, *wavs]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("\t")[0] for line in lines] == wavs

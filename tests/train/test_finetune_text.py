"""Text fine-tuning: input formats, and tiny labeled tasks learned better than chance."""

import random

import pytest

from data2vec.config import apply_overrides
from data2vec.data.text_labeled import read_labeled, read_token_classification
from data2vec.data.text_pretrain import text_tokenizer
from data2vec.heads.token import IGNORE
from data2vec.presets import get_preset
from data2vec.train.finetune_text import (
    TextFinetuneConfig, encode_sentences, encode_words, finetune_text,
)
from data2vec.train.pretrain import pretrain
from data2vec.train.schedules import linear_warmup_decay

ANIMALS = "cat dog horse cow sheep goat mouse bird".split()
TOOLS = "hammer saw drill wrench spanner chisel file plane".split()


def _sentence(rng, words, n=6):
    return " ".join(rng.choice(words) for _ in range(n))


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    """A 3-step text pretraining run on animal/tool sentences (fast; the point is the file)."""
    root = tmp_path_factory.mktemp("text")
    rng = random.Random(0)
    corpus = root / "corpus.txt"
    corpus.write_text("\n".join(_sentence(rng, ANIMALS + TOOLS, 12) for _ in range(300)) + "\n")
    cfg = apply_overrides(get_preset("data2vec2_text_tiny"), [
        f"data.path={corpus}", "data.doc_mode=line", f"data.cache_dir={root / 'cache'}", "model.input.vocab_size=400",
        "data.block_size=32", "train.max_steps=3"])
    pretrain(cfg, root / "run", progress=False)
    return root, root / "run" / "checkpoints" / "last.pt", text_tokenizer(cfg.data, cfg.model.input)


def _write_task(path, rng, n, regression=False):
    lines = ["sentence\tlabel"]
    for _ in range(n):
        k = rng.randint(0, 6)  # animals among 6 words
        words = [rng.choice(ANIMALS) for _ in range(k)] + [rng.choice(TOOLS) for _ in range(6 - k)]
        rng.shuffle(words)
        label = str(k / 6) if regression else ("animals" if k > 3 else "tools")
        lines.append(f"{' '.join(words)}\t{label}")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_input_formats(tiny_ckpt):
    _, _, tok = tiny_ckpt
    [single, pair] = encode_sentences(tok, [("cat dog",), ("cat", "saw drill")], 512)[:1] + \
        encode_sentences(tok, [("cat", "saw drill")], 512)
    assert single[0] == tok.bos and single[-1] == tok.eos
    a, b = tok.encode("cat"), tok.encode("saw drill")
    assert pair == [tok.bos, *a, tok.eos, tok.eos, *b, tok.eos]
    long = encode_sentences(tok, [(" ".join(["cat"] * 50), "dog")], 16)[0]
    assert len(long) == 16 and long[-3:-1] != [tok.eos, tok.eos]  # the longer text is trimmed
    ids, labels = encode_words(tok, ["hammer", "cat"], [3, 4], 512)
    assert len(ids) == len(labels) and labels[0] == IGNORE and labels[-1] == IGNORE
    assert [y for y in labels if y != IGNORE] == [3, 4]
    assert linear_warmup_decay(0, 1.0, 10, 110) == pytest.approx(0.1)
    assert linear_warmup_decay(60, 1.0, 10, 110) == pytest.approx(0.5)


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_sentence_tasks_beat_chance(tiny_ckpt, task):
    root, ckpt, _ = tiny_ckpt
    rng = random.Random(1)
    reg = task == "regression"
    files = {s: _write_task(root / f"{task}-{s}.tsv", rng, n, reg) for s, n in (("train", 160), ("valid", 60))}
    train = read_labeled(files["train"], "sentence", "label", task=task)
    valid = read_labeled(files["valid"], "sentence", "label", task=task, labels=train.label_names)
    cfg = TextFinetuneConfig(task=task, lr=2e-3, epochs=6, batch_size=16, init="random")
    result = finetune_text(ckpt, {"train": train, "valid": valid, "test": valid}, cfg, out_dir=root / task)
    if reg:
        assert result["test"]["pearson"] > 0.5, result["history"]
    else:
        assert result["test"]["accuracy"] > 0.75, result["history"]  # chance: about 0.5
    assert (root / task / "finetuned.pt").exists()


def test_token_classification_beats_chance(tiny_ckpt):
    root, ckpt, _ = tiny_ckpt
    rng = random.Random(2)
    for split, n in (("train", 120), ("valid", 40)):
        with open(root / f"{split}.conll", "w") as f:
            for _ in range(n):
                for _ in range(6):
                    word = rng.choice(ANIMALS + TOOLS)
                    f.write(f"{word}\t{'ANIMAL' if word in ANIMALS else 'TOOL'}\n")
                f.write("\n")
    train = read_token_classification(root / "train.conll")
    valid = read_token_classification(root / "valid.conll", train.label_names)
    cfg = TextFinetuneConfig(task="token", lr=3e-3, epochs=5, init="pretrained", metric="f1")
    result = finetune_text(ckpt, {"train": train, "valid": valid}, cfg)
    assert result["valid"]["accuracy"] > 0.8, result["history"]


def test_task_and_data_mismatch_is_an_error(tiny_ckpt):
    root, ckpt, _ = tiny_ckpt
    train = read_labeled(_write_task(root / "m.tsv", random.Random(3), 20), "sentence", "label")
    with pytest.raises(ValueError, match="task"):
        finetune_text(ckpt, {"train": train, "valid": train}, TextFinetuneConfig(task="regression"))
    with pytest.raises(ValueError, match="metric"):
        finetune_text(ckpt, {"train": train, "valid": train}, TextFinetuneConfig(epochs=1, metric="bleu"))


def test_init_and_weights_choose_the_encoder(tiny_ckpt):
    import torch

    from data2vec.train.checkpoint import load_checkpoint
    from data2vec.train.finetune_text import build_text_model

    _, ckpt, _ = tiny_ckpt
    saved = load_checkpoint(ckpt)
    key = "encoder.blocks.0.attn.qkv.weight"
    student, _ = build_text_model(ckpt, TextFinetuneConfig(), 2)
    teacher, _ = build_text_model(ckpt, TextFinetuneConfig(weights="teacher"), 2)
    random_, _ = build_text_model(ckpt, TextFinetuneConfig(init="random", seed=5), 2)
    assert torch.equal(student.state_dict()[key], saved["model"][key])
    assert torch.equal(teacher.state_dict()[key], saved["teacher"]["module"][key])
    assert not torch.equal(random_.state_dict()[key], saved["model"][key])
    assert "decoder" not in {k.split(".")[0] for k in student.state_dict()}  # pretraining decoder left behind
    with pytest.raises(ValueError, match="init"):
        build_text_model(ckpt, TextFinetuneConfig(init="imagenet"), 2)

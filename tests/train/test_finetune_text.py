"""Text fine-tuning: input formats, and tiny labeled tasks learned better than chance."""

import random

import pytest

from data2vec.config import apply_overrides
from data2vec.data.text_labeled import read_labeled, read_token_classification
from data2vec.data.text_pretrain import text_tokenizer
from data2vec.heads.token import IGNORE
from data2vec.presets import get_preset
from data2vec.recipes import get_recipe
from data2vec.train.finetune_run import build_run, run_finetune
from data2vec.train.finetune_text import encode_sentences, encode_words
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


def _cfg(task, ckpt, files, *extra):
    return apply_overrides(get_recipe(f"{task}_small"), [
        f"init={ckpt}", f"data.train={files['train']}", f"data.valid={files['valid']}", "train.device=cpu", *extra])


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


@pytest.mark.parametrize("kind", ["classification", "regression"])
def test_sentence_tasks_beat_chance(tiny_ckpt, kind):
    root, ckpt, _ = tiny_ckpt
    rng = random.Random(1)
    reg = kind == "regression"
    files = {s: _write_task(root / f"{kind}-{s}.tsv", rng, n, reg) for s, n in (("train", 160), ("valid", 60))}
    cfg = _cfg("sentence", ckpt, files, f"data.test={files['valid']}", f"data.regression={reg}", "train.lr=2e-3",
               "train.epochs=6", "weights=random", "model.head_dropout=0")
    result = run_finetune(cfg, root / kind, progress=False)
    if reg:
        assert result["test"]["pearson"] > 0.5, result["history"]
    else:
        assert result["test"]["accuracy"] > 0.75, result["history"]  # chance: about 0.5
    assert (root / kind / "finetuned.pt").exists()


def test_the_small_recipe_learns_from_a_few_hundred_sentences(tiny_ckpt):
    """Defaults that learn: the loss leaves ln(2) with the recipe's own lr, warm-up and epochs."""
    root, ckpt, _ = tiny_ckpt
    rng = random.Random(4)
    files = {s: _write_task(root / f"default-{s}.tsv", rng, n) for s, n in (("train", 200), ("valid", 60))}
    result = run_finetune(_cfg("sentence", ckpt, files), root / "default", progress=False)
    losses = [row["train_loss"] for row in result["history"]]
    assert losses[-1] < 0.6 and result["valid"]["accuracy"] > 0.75, result["history"]


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
    files = {s: root / f"{s}.conll" for s in ("train", "valid")}
    result = run_finetune(_cfg("token", ckpt, files, "train.lr=3e-3", "train.epochs=5", "train.select_metric=f1"),
                          root / "token", progress=False)
    assert result["valid"]["accuracy"] > 0.8, result["history"]


def test_task_and_data_mismatch_is_an_error(tiny_ckpt):
    root, ckpt, _ = tiny_ckpt
    path = _write_task(root / "m.tsv", random.Random(3), 20)
    files = {"train": path, "valid": path}
    with pytest.raises(ValueError, match="regression"):
        build_run(_cfg("sentence", ckpt, files, "data.regression=true"))
    with pytest.raises(ValueError, match="select_metric"):
        run_finetune(_cfg("sentence", ckpt, files, "train.epochs=1", "train.select_metric=bleu"), root / "m",
                     progress=False)


def test_init_and_weights_choose_the_encoder(tiny_ckpt):
    import torch

    from data2vec.train.checkpoint import load_checkpoint

    root, ckpt, _ = tiny_ckpt
    path = _write_task(root / "w.tsv", random.Random(3), 20)
    files = {"train": path, "valid": path}
    saved = load_checkpoint(ckpt)
    key = "encoder.blocks.0.attn.qkv.weight"
    student = build_run(_cfg("sentence", ckpt, files))[1]
    teacher = build_run(_cfg("sentence", ckpt, files, "weights=teacher"))[1]
    random_ = build_run(_cfg("sentence", ckpt, files, "weights=random", "train.seed=5"))[1]
    assert torch.equal(student.state_dict()[key], saved["model"][key])
    assert torch.equal(teacher.state_dict()[key], saved["teacher"]["module"][key])
    assert not torch.equal(random_.state_dict()[key], saved["model"][key])
    assert "decoder" not in {k.split(".")[0] for k in student.state_dict()}  # pretraining decoder left behind
    with pytest.raises(ValueError, match="weights"):
        build_run(_cfg("sentence", ckpt, files, "weights=imagenet"))

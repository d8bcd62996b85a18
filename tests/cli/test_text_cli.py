"""`data2vec finetune-text` end to end on tiny files, and its errors for bad rows."""

import json
import random

import pytest

from data2vec.cli import main

WORDS = "red green blue yellow one two three four".split()


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    rng = random.Random(0)
    (root / "corpus.txt").write_text("\n".join(" ".join(rng.choice(WORDS) for _ in range(10)) for _ in range(200)))
    assert main(["pretrain", "--preset", "data2vec2_text_tiny", "--out", str(root / "run"), "--no-progress",
                 f"data.path={root / 'corpus.txt'}", "data.doc_mode=line", f"data.cache_dir={root / 'cache'}",
                 "model.input.vocab_size=400", "data.block_size=32", "train.max_steps=2"]) == 0
    return root, str(root / "run" / "checkpoints" / "last.pt")


def _pairs(path, rows):
    path.write_text("a\tb\tlabel\n" + "".join("\t".join(r) + "\n" for r in rows))
    return str(path)


def test_sentence_pair_tsv_end_to_end(ckpt, capsys):
    root, path = ckpt
    rng = random.Random(1)
    rows = []
    for _ in range(40):
        a, b = rng.choice(WORDS), rng.choice(WORDS)
        rows.append((a, b, "same" if a == b else "different"))
    train = _pairs(root / "train.tsv", rows)
    code = main(["finetune-text", "--checkpoint", path, "--train", train, "--valid", train, "--test", train,
                 "--text-columns", "a", "b", "--out", str(root / "ft"), "train.epochs=1", "train.batch_size=8"])
    assert code == 0
    result = json.loads((root / "ft" / "results.json").read_text())
    assert set(result["test"]) == {"accuracy", "f1", "mcc"} and result["updates"] == 5
    assert "test accuracy" in capsys.readouterr().out
    (root / "lines.txt").write_text("red\tred\nblue\tgreen\n")
    assert main(["predict", "--checkpoint", str(root / "ft" / "finetuned.pt"), str(root / "lines.txt")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.rsplit("\t", 1)[0] for line in lines] == ["red\tred", "blue\tgreen"]
    assert all(line.rsplit("\t", 1)[1] in ("same", "different") for line in lines)


def test_bad_rows_name_the_line(ckpt, capsys):
    root, path = ckpt
    train = _pairs(root / "bad.tsv", [("red", "blue", "x"), ("red", "blue", "y"), ("red",)])
    assert main(["finetune-text", "--checkpoint", path, "--train", train, "--valid", train,
                 "--text-columns", "a", "b"]) == 2
    assert "line 4" in capsys.readouterr().err  # line 1 is the header
    good = _pairs(root / "good.tsv", [("red", "blue", "x"), ("red", "blue", "y")])
    valid = _pairs(root / "valid.tsv", [("red", "blue", "x"), ("red", "blue", "z")])
    assert main(["finetune-text", "--checkpoint", path, "--train", good, "--valid", valid,
                 "--text-columns", "a", "b"]) == 2
    err = capsys.readouterr().err
    assert "line 3" in err and "'z'" in err


def test_wrong_checkpoint_or_missing_files(ckpt, capsys):
    root, path = ckpt
    assert main(["finetune-text", "--checkpoint", path, "--out", str(root / "none")]) == 2
    assert "data.train=... and data.valid=..." in capsys.readouterr().err
    assert main(["finetune-text", "--checkpoint", str(root / "nope.pt"), "--fortunes"]) == 2

import json
import subprocess
import sys

import pytest

from data2vec.cli import main


def test_presets_list_and_show(capsys):
    assert main(["presets"]) == 0
    assert "data2vec2_image_base" in capsys.readouterr().out
    assert main(["presets", "show", "data2vec2_image_tiny"]) == 0
    assert json.loads(capsys.readouterr().out)["model"]["input"]["kind"] == "image"


@pytest.mark.parametrize("override,message", [
    ("train.lrr=1", "unknown config key 'train.lrr'"),
    ("train.lr=fast", "train.lr: expected float, got 'fast'"),
])
def test_bad_override_is_rejected_with_a_clear_message(override, message, tmp_path, capsys):
    assert main(["pretrain", "--preset", "data2vec2_image_tiny", "--out", str(tmp_path / "r"), override]) == 2
    assert message in capsys.readouterr().err


def test_unknown_preset(capsys, tmp_path):
    assert main(["pretrain", "--preset", "nope", "--out", str(tmp_path)]) == 2
    assert "unknown preset 'nope'" in capsys.readouterr().err


@pytest.mark.integration
def test_pretrain_then_resume_then_probe_via_cli(fmnist_train, tmp_path, capsys):
    out = str(tmp_path / "run")
    common = ["data.limit=512", "train.log_every=1"]
    assert main(["pretrain", "--preset", "data2vec2_image_tiny", "--out", out, "--no-progress",
                 "train.max_steps=3", *common]) == 0
    printed = capsys.readouterr().out
    assert "resolved config" in printed and '"max_steps": 3' in printed
    assert main(["pretrain", "--out", out, "--resume", "--no-progress", "train.max_steps=4"]) == 0
    capsys.readouterr()
    test = fmnist_train.replace("train-", "t10k-")
    assert main(["probe", f"{out}/checkpoints/last.pt", "--train", fmnist_train, "--test", test,
                 "--train-limit", "300", "--knn-k", "5"]) == 0
    assert "linear probe top-1" in capsys.readouterr().out


def test_module_entry_point_runs():
    res = subprocess.run([sys.executable, "-m", "data2vec", "--version"], capture_output=True, text=True)
    assert res.returncode == 0 and "data2vec" in res.stdout


def test_finetune_images_then_predict_and_resume(tmp_path, capsys):
    import numpy as np
    from PIL import Image

    root = tmp_path / "images"
    rng = np.random.default_rng(0)
    for cls in ("dark", "light"):
        (root / cls).mkdir(parents=True)
        for i in range(20):
            level = 40 if cls == "dark" else 200
            Image.fromarray(rng.normal(level, 10, (28, 28)).clip(0, 255).astype(np.uint8)).save(root / cls / f"{i}.png")
    out = tmp_path / "ft"
    args = ["finetune", "--task", "image-classification", "--recipe", "image_tiny", "--train", str(root),
            "--out", str(out), "--no-progress", "data.test=", "data.valid_size=10", "data.label_frac=1.0",
            "train.epochs=3", "train.lr=3e-3", "data.mixup=0", "data.cutmix=0"]
    assert main(args) == 0
    assert "best valid accuracy" in capsys.readouterr().out
    files = [str(root / "dark" / "0.png"), str(root / "light" / "0.png")]
    assert main(["predict", "--checkpoint", str(out / "finetuned.pt"), *files]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("\t")[0] for line in lines] == files
    assert all(line.split("\t")[1] in ("dark", "light") for line in lines)
    assert main(args + ["--resume"]) == 0  # a finished run resumes to the same end
    assert main(["recipes", "show", "image_tiny"]) == 0
    assert '"layer_decay"' in capsys.readouterr().out
    assert main(["finetune", "--task", "ctc", "--recipe", "image_tiny"]) == 2
    assert "is for task 'image-classification'" in capsys.readouterr().err

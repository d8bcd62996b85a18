"""pretrain -> finetune -> transcribe through the command line on synthesized speech."""

import pytest

from data2vec.cli import main


@pytest.fixture
def corpus(speech_corpus):
    return speech_corpus


def test_pretrain_finetune_transcribe(corpus, tmp_path, capsys):
    pre = tmp_path / "pre"
    assert main(["pretrain", "--preset", "data2vec2_audio_tiny", "--out", str(pre), "--no-progress",
                 f"data.path={corpus / 'wav'}", "train.max_steps=2"]) == 0
    ft = tmp_path / "ft"
    args = ["finetune", "--task", "ctc", "--train", str(corpus / "train.tsv"), "--valid", str(corpus / "valid.tsv"),
            "--init", str(pre / "checkpoints" / "last.pt"), "--out", str(ft), "--no-progress", "train.max_steps=3",
            "train.eval_every=3", "train.freeze_backbone_steps=1", "train.batch_size=4"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert '"cer"' in out and '"wer"' in out and "best valid cer" in out  # ctc_small selects on CER
    assert main(args) == 2  # refuses to overwrite a run without --force
    assert "use --resume to continue it or --force" in capsys.readouterr().err
    wavs = sorted((corpus / "wav").glob("*.wav"))[:2]
    assert main(["transcribe", "--checkpoint", str(ft / "finetuned.pt"), *map(str, wavs)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("\t")[0] for line in lines] == [str(w) for w in wavs]
    assert all(line.count("\t") == 1 for line in lines)
    assert main(["predict", "--checkpoint", str(ft / "finetuned.pt"), *map(str, wavs)]) == 0
    assert capsys.readouterr().out.splitlines() == lines


def test_transcribe_reports_missing_checkpoint(tmp_path, capsys):
    assert main(["transcribe", "--checkpoint", str(tmp_path / "nope.pt"), "x.wav"]) == 2
    assert "nope.pt does not exist" in capsys.readouterr().err

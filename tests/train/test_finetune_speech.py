"""Speech fine-tuning on real synthesized speech: CTC on a tiny labeled set, classification,
initialization from a pretraining checkpoint, layer-wise lr decay."""

import pytest
import torch

from data2vec.config import apply_overrides
from data2vec.data.audio import read_manifest, write_manifest
from data2vec.data.audio_labeled import labeled_batches
from data2vec.presets import get_preset
from data2vec.recipes import get_recipe
from data2vec.train.checkpoint import load_checkpoint
from data2vec.train.finetune_audio import SpeechTask, transcribe
from data2vec.train.finetune_run import build_run, load_finetuned, run_finetune
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


def _cfg(manifest, recipe="ctc_small", *extra):
    return apply_overrides(get_recipe(recipe), [
        f"data.train={manifest}", f"data.valid={manifest}", "preset=data2vec2_audio_tiny", "model.mask_prob=0",
        "model.mask_channel_prob=0", "train.batch_size=8", "data.max_samples_per_batch=400000", "train.device=cpu",
        *extra])


def test_ctc_finetuning_on_a_tiny_labeled_set_lowers_cer(corpus, tmp_path):
    tiny = subset(corpus, tmp_path, 6)
    cfg = _cfg(tiny, "ctc_small", "train.max_steps=90", "train.eval_every=30", "train.lr=5e-3",
               "train.freeze_backbone_steps=0", "train.warmup_frac=0.05", "train.hold_frac=0.8", "train.min_lr=2.5e-4",
               "model.freeze_feature_extractor=false", "train.select_metric=cer")
    results = run_finetune(cfg, tmp_path / "run", progress=False)
    cers = [h["valid_cer"] for h in results["history"]]
    assert min(cers) < 75 and min(cers) < cers[0], cers
    model, loaded, pre, outputs = load_finetuned(tmp_path / "run" / "finetuned.pt")
    assert outputs[0] == "<blank>" and loaded == cfg and not model.training
    root, entries = read_manifest(tiny)
    texts = transcribe(model, pre, outputs, [root / e.path for e in entries])
    assert len(texts) == 6 and sum(bool(t) for t in texts) >= 3, texts  # real words come out


def test_speed_perturbation_plays_training_utterances_faster_or_slower(corpus, tmp_path):
    tiny = subset(corpus, tmp_path, 6)
    _, entries = read_manifest(tiny)
    _, _, task = build_run(_cfg(tiny, "ctc_small", "data.speed_perturb=0.8,1.25"))

    def lengths(batches):
        return [(i, int(n)) for b in batches for i, n in zip(b["label_index"].tolist(), (~b["padding_mask"]).sum(-1))]

    speeds = {}
    for epoch in range(4):
        for i, n in lengths(task.batches(epoch, 0)):
            speed = min((0.8, 1.25), key=lambda f: abs(n - entries[i].num_samples / f))
            assert abs(n - entries[i].num_samples / speed) <= 2, (i, n, entries[i].num_samples)
            speeds.setdefault(i, set()).add(speed)
    assert any(len(s) == 2 for s in speeds.values())  # an utterance's speed is drawn again each epoch
    valid = lengths(labeled_batches(task.splits["valid"], 400_000, 8, 0, None))
    assert sorted(valid) == [(i, e.num_samples) for i, e in enumerate(entries)]  # evaluation hears it as recorded
    with pytest.raises(ValueError, match=r"data.speed_perturb=0.9,3.0: speeds must lie in"):
        build_run(_cfg(tiny, "ctc_small", "data.speed_perturb=0.9,3"))


def test_resume_with_speed_perturbation_is_exact(corpus, tmp_path, interrupted_finetune):
    tiny = subset(corpus, tmp_path, 6)
    cfg = _cfg(tiny, "ctc_small", "train.max_steps=6", "train.ckpt_every=3", "train.eval_every=3",
               "data.speed_perturb=0.8,1.25", "train.batch_size=3")  # two batches an epoch: the resume crosses one
    full = run_finetune(cfg, tmp_path / "full", progress=False)
    interrupted_finetune(cfg, tmp_path / "cut", 5)
    resumed = run_finetune(cfg, tmp_path / "cut", resume=True, progress=False)
    assert resumed["history"] == full["history"]
    a, b = (load_checkpoint(tmp_path / d / "finetuned.pt")["model"] for d in ("full", "cut"))
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_utterance_classification_and_init_from_a_pretraining_checkpoint(corpus, tmp_path):
    pre = apply_overrides(get_preset("data2vec2_audio_tiny"), [f"data.path={corpus / 'train.tsv'}", "train.max_steps=1"])
    pretrain(pre, tmp_path / "pre", progress=False)
    ckpt = tmp_path / "pre" / "checkpoints" / "last.pt"
    kinds = {r.split("\t")[0]: r.split("\t")[6] for r in (corpus / "speakers.tsv").read_text().splitlines()[1:]}
    _, entries = read_manifest(corpus / "train.tsv")
    (corpus / "train.kind").write_text("".join(kinds[e.path] + "\n" for e in entries))
    cfg = _cfg(corpus / "train.tsv", "audio_cls_small", f"init={ckpt}", "train.max_steps=4", "train.eval_every=4",
               "train.freeze_backbone_steps=2", "model.mask_prob=0.5", "model.mask_length=5",
               "model.mask_channel_prob=0.2", "model.mask_channel_length=8", "model.layer_drop=0.1",
               "train.layer_decay=0.8", "model.freeze_feature_extractor=true")
    _, model, _ = build_run(cfg)
    assert model.encoder.layer_drop == 0.1
    pretrained = load_checkpoint(ckpt)["model"]
    for name, p in model.named_parameters():
        if not name.startswith("head."):
            torch.testing.assert_close(p, pretrained[name])
    results = run_finetune(cfg, tmp_path / "cls", progress=False)
    assert 0 <= results["history"][-1]["valid_accuracy"] <= 100
    model, _, _, classes = load_finetuned(tmp_path / "cls" / "finetuned.pt")
    assert set(classes) <= {"digits", "word", "sentence"}
    fe = model.modality.local_encoder.state_dict()
    for k, v in fe.items():  # the feature extractor stayed frozen
        torch.testing.assert_close(v, pretrained[f"modality.local_encoder.{k}"])


def test_bad_labeled_data_gives_a_clear_error(corpus, tmp_path):
    tiny = subset(corpus, tmp_path, 4)
    (tmp_path / "tiny.ltr").write_text("A |\n")
    with pytest.raises(ValueError, match="tiny.ltr: 1 lines but the manifest"):
        run_finetune(_cfg(tiny), tmp_path / "run")
    with pytest.raises(FileNotFoundError, match="label file"):
        run_finetune(_cfg(tiny, "ctc_small", "data.labels=wrd"), tmp_path / "run2")


def test_ctc_warns_when_validation_transcripts_stay_empty_counting_across_a_resume(corpus, tmp_path, monkeypatch,
                                                                                     caplog):
    tiny = subset(corpus, tmp_path, 4)
    cfg = _cfg(tiny, "ctc_small", "train.max_steps=4", "train.eval_every=1", "train.ckpt_every=1")
    calls = []

    def empty_then_crash(self, model, data):  # every transcript empty; the run dies at the third evaluation
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return {i: "" for i in range(len(data.texts))}

    monkeypatch.setattr(SpeechTask, "predict", empty_then_crash)
    caplog.set_level("WARNING", logger="data2vec")
    with pytest.raises(KeyboardInterrupt):
        run_finetune(cfg, tmp_path / "run", progress=False)
    assert "mostly blanks" not in caplog.text  # two evaluations on the plateau are no warning yet
    results = run_finetune(cfg, tmp_path / "run", resume=True, progress=False)
    # the first evaluation after the restart is the third on the plateau: the two before it count
    assert [h["valid_length"] for h in results["history"]] == [0, 0, 0, 0]
    assert caplog.text.count("mostly blanks") == 2


def test_ctc_plateau_evaluations_inside_the_warm_up_do_not_count(corpus, tmp_path, monkeypatch, caplog):
    tiny = subset(corpus, tmp_path, 4)
    cfg = _cfg(tiny, "ctc_small", "train.max_steps=8", "train.warmup_frac=0.5", "train.eval_every=1",
               "train.ckpt_every=8")
    monkeypatch.setattr(SpeechTask, "predict", lambda self, model, data: {i: "" for i in range(len(data.texts))})
    caplog.set_level("WARNING", logger="data2vec")
    run_finetune(cfg, tmp_path / "run", progress=False)
    # updates 1-4 are the warm-up; 5, 6, 7 are the first three that count, so 7 and 8 warn
    assert caplog.text.count("mostly blanks") == 2

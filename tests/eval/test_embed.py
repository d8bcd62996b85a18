"""`data2vec embed` / `eval.embed.embed`: shapes, determinism, the index file, skipped inputs,
parity with `extract_features`, and the top-K option against the teacher's targets."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image
from safetensors.torch import load_file

from data2vec import load_model
from data2vec.algorithms.common import teacher_targets
from data2vec.checkpoints.pretrained import save_pretrained
from data2vec.cli import main
from data2vec.config import apply_overrides
from data2vec.data.tokenizer import TextTokenizer, train_bpe
from data2vec.eval.embed import embed
from data2vec.eval.features import parse_layer, token_features
from data2vec.models import build_model
from data2vec.nn.attention import combine_masks
from data2vec.presets import get_preset, tiny_overrides

WORDS = "red green blue yellow one two three four cat dog".split()


def tiny(kind: str, tmp_path, *extra: str):
    preset = {"image": "data2vec2_image_tiny", "audio": "data2vec2_audio_base", "text": "data2vec2_text_base"}[kind]
    over = [] if kind == "image" else tiny_overrides(kind)
    cfg = apply_overrides(get_preset(preset), [*over, *extra])
    torch.manual_seed(0)
    model = build_model(cfg.model).eval()
    save_pretrained(model, cfg, tmp_path / f"{kind}-model", teacher=model.make_teacher().module)
    return cfg, model, tmp_path / f"{kind}-model"


def image_folder(root, n=6, corrupt=True):
    rng = np.random.default_rng(0)
    for i in range(n):
        d = root / ("shirt" if i % 2 else "shoe")
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (28, 28), dtype=np.uint8)).save(d / f"{i}.png")
    if corrupt:
        (root / "shoe" / "broken.png").write_bytes(b"not an image")
    return root


def audio_manifest(root, n=5, labels=True):
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    lines = [str(root)]
    for i in range(n):
        frames = 4000 + 800 * i
        sf.write(root / f"u{i}.wav", rng.normal(size=frames).astype(np.float32) * 0.1, 16000)
        lines.append(f"u{i}.wav\t{frames}")
    (root / "bad.wav").write_bytes(b"RIFF broken")
    lines.append("bad.wav\t100")
    (root / "train.tsv").write_text("\n".join(lines) + "\n")
    if labels:
        (root / "train.kind").write_text("".join(f"{'ab'[i % 2]}\n" for i in range(n + 1)))
    return root / "train.tsv"


def test_image_embeddings_match_extract_features_and_are_deterministic(tmp_path):
    cfg, model, ckpt = tiny("image", tmp_path)
    folder = image_folder(tmp_path / "imgs")
    out = tmp_path / "emb.npy"
    assert main(["embed", str(ckpt), str(folder), "--out", str(out), "--pooling", "mean+cls", "--no-progress"]) == 0
    feats = np.load(out)
    rows = [json.loads(line) for line in (tmp_path / "emb.index.jsonl").read_text().splitlines()]
    kept = [r for r in rows if "row" in r]
    assert feats.shape == (6, 2 * cfg.model.encoder.dim) and len(kept) == 6
    assert [r["input"] for r in rows if r.get("skipped")] == [str(folder / "shoe" / "broken.png")]
    again = embed(ckpt, folder, pooling="mean+cls")
    assert np.array_equal(again.features.numpy(), feats)  # deterministic
    from data2vec.eval.inputs import image_inputs

    inputs = image_inputs(folder, cfg)
    x = torch.stack([inputs.dataset[inputs.names.index(r["input"])]["image"] for r in kept])
    with torch.no_grad():
        tokens = model.extract_features(x).x
    ref = torch.cat([tokens[:, 1:].mean(1), tokens[:, 0]], 1)
    torch.testing.assert_close(torch.from_numpy(feats), ref, rtol=1e-5, atol=1e-5)


def test_top_k_is_the_teacher_target_representation(tmp_path):
    cfg, model, ckpt = tiny("audio", tmp_path)
    manifest = audio_manifest(tmp_path / "wav", labels=False)
    emb = embed(ckpt, manifest, layer="top", pooling="none")
    assert emb.offsets is not None and len(emb.names) == 5 and len(emb.skipped) == 1
    teacher = model.make_teacher()  # a fresh teacher equals the student
    for i, name in enumerate(emb.names):
        wav = torch.from_numpy(_wav(name))[None]
        feats, pad = model.modality.local_features(wav, None)
        y = teacher_targets(model.modality, teacher, cfg.model, wav, feats, pad)[0]
        got = emb.features[emb.offsets[i]: emb.offsets[i + 1]]
        torch.testing.assert_close(got, y, rtol=1e-4, atol=1e-4)


def _wav(path):
    from data2vec.data.audio import load_audio, normalize_waveform

    return normalize_waveform(load_audio(path))


def test_audio_batches_pad_without_changing_features(tmp_path):
    cfg, model, ckpt = tiny("audio", tmp_path)
    manifest = audio_manifest(tmp_path / "wav", labels=False)
    one = embed(ckpt, manifest, pooling="mean", batch_size=1)
    many = embed(ckpt, manifest, pooling="mean", batch_size=4)
    assert one.features.shape == (5, cfg.model.encoder.dim)
    torch.testing.assert_close(one.features, many.features, rtol=1e-4, atol=1e-4)
    out = tmp_path / "a.safetensors"
    assert main(["embed", str(ckpt), str(manifest), "--out", str(out), "--pooling", "none", "--layer", "block:1",
                 "--no-progress"]) == 0
    saved = load_file(str(out))
    assert saved["offsets"][-1] == saved["embeddings"].shape[0] and saved["offsets"].shape == (6,)


def text_model(tmp_path):
    cfg, model, ckpt = tiny("text", tmp_path)
    rng = np.random.default_rng(0)
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(" ".join(rng.choice(WORDS, 8)) for _ in range(200)))
    train_bpe([corpus], 280, tmp_path / "tok")
    return cfg, model, ckpt, tmp_path / "tok"


def test_text_embeddings_from_txt_and_jsonl(tmp_path):
    cfg, model, ckpt, tok = text_model(tmp_path)
    (tmp_path / "a.txt").write_text("red cat\n\nblue dog one two\n")
    emb = embed(ckpt, tmp_path / "a.txt", tokenizer=tok)
    assert emb.features.shape == (2, cfg.model.encoder.dim) and emb.names[1].endswith("a.txt:2")
    (tmp_path / "a.jsonl").write_text('{"text": "red cat"}\n{"text": "blue dog one two"}\n')
    again = embed(ckpt, tmp_path / "a.jsonl", tokenizer=tok, text_column="text")
    torch.testing.assert_close(emb.features, again.features)
    ids = TextTokenizer.load(tok).encode("red cat")
    with torch.no_grad():
        ref = model.extract_features(torch.tensor([[0, *ids, 2]])).x.mean(1)
    torch.testing.assert_close(emb.features[:1], ref, rtol=1e-5, atol=1e-5)


def test_input_layer_is_what_the_first_block_reads(tmp_path):
    cfg, model, ckpt = tiny("audio", tmp_path)
    wav = torch.randn(2, 8000)
    with torch.no_grad():
        x, pad, extra = token_features(model, cfg.model, wav, None, "input")
        ctx = model.modality.contextualize(*model.modality.local_features(wav, None), None)
        after_one, _ = model.encoder.blocks[0](x, combine_masks(None, ctx.attn_bias, x.dtype))
        block1, _, _ = token_features(model, cfg.model, wav, None, "block:1")
    torch.testing.assert_close(x, ctx.x)
    assert extra == model.modality.num_extra_tokens and pad is None
    torch.testing.assert_close(after_one, block1)


def test_layer_choices_and_errors(tmp_path, capsys):
    cfg, _, ckpt = tiny("image", tmp_path)
    assert parse_layer("top", cfg.model) == ("top", cfg.model.targets.top_k)
    assert parse_layer("block:2", cfg.model) == ("block", 2)
    assert parse_layer("input", cfg.model) == ("input", 0)
    for bad in ("block:0", f"block:{cfg.model.encoder.depth + 1}", "first", "top:x", "input:1"):
        with pytest.raises(ValueError, match="expected 'last', 'block:N' or 'top:K'"):
            parse_layer(bad, cfg.model)
    folder = image_folder(tmp_path / "imgs", corrupt=False)
    assert main(["embed", str(ckpt), str(folder), "--out", str(tmp_path / "x.npy"), "--layer", "top",
                 "--pooling", "cls", "--no-progress"]) == 2
    assert "needs a CLS token" in capsys.readouterr().err
    assert main(["embed", str(ckpt), str(folder), "--out", str(tmp_path / "x.csv"), "--no-progress"]) == 2
    assert "must end in one of" in capsys.readouterr().err


def test_probe_on_every_modality(tmp_path, capsys):
    _, _, image_ckpt = tiny("image", tmp_path)
    folder = image_folder(tmp_path / "imgs", n=8)
    assert main(["probe", str(image_ckpt), "--train", str(folder), "--test", str(folder), "--knn-k", "3",
                 "--layer", "top:2", "--pooling", "mean"]) == 0
    out = capsys.readouterr().out
    report = json.loads(out[: out.index("linear probe")])
    assert report["train_samples"] == 8 and report["skipped"] == 2 and report["layer"] == "top:2"
    _, _, audio_ckpt = tiny("audio", tmp_path)
    manifest = audio_manifest(tmp_path / "wav")
    assert main(["probe", str(audio_ckpt), "--train", str(manifest), "--test", str(manifest), "--labels", "kind",
                 "--knn-k", "2", "--weights", "teacher"]) == 0
    assert '"pooling": "mean"' in capsys.readouterr().out
    _, _, text_ckpt, tok = text_model(tmp_path)
    (tmp_path / "t.tsv").write_text("sentence\tlabel\n" + "".join(f"{w} {w}\t{i % 2}\n" for i, w in enumerate(WORDS)))
    assert main(["probe", str(text_ckpt), "--train", str(tmp_path / "t.tsv"), "--test", str(tmp_path / "t.tsv"),
                 "--tokenizer", str(tok), "--knn-k", "0"]) == 0
    assert "linear probe top-1" in capsys.readouterr().out
    assert main(["probe", str(text_ckpt), "--train", str(tmp_path / "t.tsv"), "--test", str(tmp_path / "t.tsv"),
                 "--tokenizer", str(tok), "--label-column", "nope"]) == 2


def test_pooled_top_k_layer_norms_each_block_instead_of_zeroing_the_mean(tmp_path):
    """Mean-pooling instance-normed targets gives zeros; pooled top-K uses per-token layer norm."""
    import torch.nn.functional as F

    from data2vec.eval.features import FeatureSpec, embed_batch

    cfg, model, _ = tiny("audio", tmp_path)
    wav = torch.randn(2, 8000)
    with torch.no_grad():
        targets = embed_batch(model, cfg.model, wav, None, FeatureSpec("top:2", "none"))
        assert torch.stack([t.mean(0) for t in targets]).abs().max() < 1e-4  # what mean pooling would keep
        pooled = embed_batch(model, cfg.model, wav, None, FeatureSpec("top:2", "mean"))
        feats, pad = model.modality.local_features(wav, None)
        ctx = model.modality.contextualize(feats, pad, None)
        top = model.encoder(ctx.x, ctx.padding_mask, ctx.attn_bias, ctx.block_bias).layer_results[-2:]
        ref = sum(F.layer_norm(h.float(), h.shape[-1:]) for h in top) / 2
    torch.testing.assert_close(pooled, ref.mean(1), rtol=1e-5, atol=1e-5)
    assert pooled.abs().max() > 0.1


def test_images_default_to_a_2x2_grid_and_cls(tmp_path, capsys):
    """The image default keeps where things are: the 7x7 patch grid averaged over 2x2 cells (the
    middle row and column count in two cells each), then CLS; other models keep mean (+ CLS)."""
    from data2vec.eval.features import default_pooling

    cfg, model, ckpt = tiny("image", tmp_path)
    folder = image_folder(tmp_path / "imgs", corrupt=False)
    emb = embed(ckpt, folder)
    assert emb.spec.pooling == "grid+cls" == default_pooling(model)
    from data2vec.eval.inputs import image_inputs

    inputs = image_inputs(folder, cfg)
    x = torch.stack([inputs.dataset[inputs.names.index(n)]["image"] for n in emb.names])
    with torch.no_grad():
        tokens = model.extract_features(x).x
    grid = tokens[:, 1:].reshape(len(x), 7, 7, -1)
    cells = [grid[:, r0:r1, c0:c1].mean((1, 2)) for r0, r1 in ((0, 4), (3, 7)) for c0, c1 in ((0, 4), (3, 7))]
    ref = torch.cat([torch.stack(cells, -1).flatten(1), tokens[:, 0]], 1)
    torch.testing.assert_close(emb.features, ref, rtol=1e-5, atol=1e-5)
    _, audio_model, audio_ckpt = tiny("audio", tmp_path)
    assert default_pooling(audio_model) == "mean"
    with pytest.raises(ValueError, match="needs a square grid"):
        embed(audio_ckpt, audio_manifest(tmp_path / "wav", labels=False), pooling="grid+cls")

"""Malformed config overrides and files; checkpoint files that are truncated, foreign or carry
pickled code (which must never run)."""

import dataclasses
import io
import json
import os
import random
import zipfile

import torch

from data2vec.checkpoints.unpickle import load_checkpoint as load_foreign
from data2vec.config import ConfigError, PretrainConfig, apply_overrides, load_config, save_config, to_dict
from data2vec.presets import get_preset
from data2vec.train.checkpoint import load_train_checkpoint, save_atomic

VALUES = ["", " ", "nan", "inf", "-inf", "1e999", "-1", "0", "1.5", "true", "maybe", "None", "null", "[1,2", "(1,2)",
          "1,2,3", "0x10", "\U0001d518", "a" * 500, "=", "1=2", "'quoted'", "3j", "True", "[]", "()", "1_000"]


def _keys(obj, prefix=""):
    for f in dataclasses.fields(obj):
        v = getattr(obj, f.name)
        name = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(v):
            yield name
            yield from _keys(v, name + ".")
        else:
            yield name


def test_malformed_overrides_are_config_errors_naming_the_key(fuzz):
    f = fuzz("overrides")
    rng = random.Random(0)
    for preset in ["data2vec2_image_tiny", "data2vec2_audio_tiny", "data2vec_text_tiny"]:
        cfg = get_preset(preset)
        keys = list(_keys(cfg))
        for _ in range(120):
            key = rng.choice(keys)
            key = rng.choice([key, key + ".x", key.upper(), key.replace(".", ".."), "." + key, key + "s", "model"])
            item = rng.choice([f"{key}={rng.choice(VALUES)}", key, f"{key} = {rng.choice(VALUES)}"])
            try:
                out = apply_overrides(cfg, [item])
            except ConfigError as e:
                f.error(e, key.strip(), item)
                continue
            for v in json.dumps(to_dict(out)).split():
                assert "NaN" not in v and "Infinity" not in v, item  # non-finite numbers are refused
            f.record("accepted")


def test_corrupt_config_files_are_errors_naming_the_file(tmp_path, fuzz, corrupt):
    f = fuzz("config files")
    good = tmp_path / "good.json"
    save_config(get_preset("data2vec2_image_tiny"), str(good))
    variants = [v for seed in range(20) for v in corrupt(good.read_bytes(), seed)]
    variants += [("wrong_types", text.encode()) for text in [
        '{"model": 3}', '{"train": {"lr": "fast"}}', '{"train": {"lr": [1]}}', "[]", "null",
        '{"model": {"input": {"kind": "video"}}}', '{"data": {"kind": 7}}', '{"zzz": 1}', '{"train": {"lr": NaN}}']]
    for k, (name, bad) in enumerate(variants):
        path = tmp_path / f"c{k}_{name}.json"
        path.write_bytes(bad)
        try:
            load_config(str(path), PretrainConfig)
            f.record("accepted")
        except ConfigError as e:
            f.error(e, str(path), "model", "data", "train", "config")


class _Evil:
    """Unpickling this would create the marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _foreign_files(tmp_path) -> list[tuple[str, bytes]]:
    buf = io.BytesIO()
    torch.save([torch.ones(3)], buf)
    out = [("list.pt", buf.getvalue()), ("json.pt", b'{"model": {}}'), ("npy.pt", b"\x93NUMPY\x01\x00" + bytes(100)),
           ("safetensors.pt", (8).to_bytes(8, "little") + b'{"a": 1}')]
    zbuf = io.BytesIO()
    with zipfile.ZipFile(zbuf, "w") as z:
        z.writestr("archive/data.txt", "not a pickle")
    out.append(("zip.pt", zbuf.getvalue()))
    buf = io.BytesIO()
    torch.save({"format": "data2vec-train-checkpoint", "model": {}}, buf)
    out.append(("incomplete.pt", buf.getvalue()))
    return out


def test_corrupt_foreign_and_malicious_checkpoints_are_refused_without_running_code(tmp_path, fuzz, corrupt):
    f = fuzz("checkpoints")
    marker = tmp_path / "PWNED"
    good = tmp_path / "good.pt"
    save_atomic({"format": "data2vec-train-checkpoint", "config": {}, "model": {"w": torch.randn(64, 64)},
                 "teacher": {}, "optimizer": {}, "state": {"step": 1}, "rng": {}}, good)
    cases = [(f"{seed}_{k}_{n}", b) for seed in range(12) for k, (n, b) in enumerate(corrupt(good.read_bytes(), seed))]
    cases += _foreign_files(tmp_path)
    for proto in (2, 4):
        buf = io.BytesIO()
        torch.save({"model": _Evil(marker)}, buf, pickle_protocol=proto)
        cases.append((f"evil{proto}.pt", buf.getvalue()))
    buf = io.BytesIO()
    torch.save({"model": _Evil(marker)}, buf, _use_new_zipfile_serialization=False)
    cases.append(("evil_legacy.pt", buf.getvalue()))
    for name, data in cases:
        path = tmp_path / "runs" / name / "last.pt"
        path.parent.mkdir(parents=True)
        path.write_bytes(data)
        for loader in (load_train_checkpoint, load_foreign):
            with f.timed() as t:
                try:
                    loader(path)
                except ValueError as e:
                    f.error(e, str(path))
                    continue
            f.record("accepted", t.seconds)
    assert not marker.exists(), "a checkpoint's pickled code ran"

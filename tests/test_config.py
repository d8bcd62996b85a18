import pytest

from data2vec.config import ConfigError, PretrainConfig, apply_overrides, from_dict, load_config, save_config, to_dict
from data2vec.presets import get_preset, list_presets


def test_overrides_parse_types():
    cfg = get_preset("data2vec2_image_tiny")
    cfg = apply_overrides(cfg, ["train.lr=3e-4", "train.bf16=true", "train.betas=0.9,0.98", "model.loss.scale=none",
                                "model.input.patch_size=7", "data.mean=0.5", "train.max_steps=7"])
    assert cfg.train.lr == 3e-4 and cfg.train.bf16 is True and cfg.train.betas == (0.9, 0.98)
    assert cfg.model.loss.scale is None and cfg.model.input.patch_size == 7 and cfg.data.mean == (0.5,)
    assert cfg.train.max_steps == 7


@pytest.mark.parametrize("override,message", [
    ("train.lrr=1", "train has no field 'lrr'"),
    ("nope.x=1", "config has no field 'nope'"),
    ("train.lr=fast", "train.lr: expected float"),
    ("train.max_steps=1.5", "train.max_steps: expected int"),
    ("train.bf16=maybe", "train.bf16='maybe': expected true, false or 'auto'"),
    ("model.teacher.scope=most", "model.teacher.scope='most': expected one of 'all', 'context', 'blocks'"),
    ("train.num_workers=many", "train.num_workers='many': expected int or 'auto'"),
    ("train=3", "is a section"),
    ("model.input.kind=audio", "cannot be overridden"),
    ("train.lr", "expected key=value"),
])
def test_bad_overrides_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        apply_overrides(get_preset("data2vec2_image_tiny"), [override])


@pytest.mark.parametrize("name", list(list_presets()))
def test_every_preset_round_trips_through_json(name, tmp_path):
    cfg = get_preset(name)
    assert from_dict(PretrainConfig, to_dict(cfg)) == cfg
    save_config(cfg, str(tmp_path / "c.json"))
    assert load_config(str(tmp_path / "c.json")) == cfg


def test_from_dict_rejects_unknown_keys_and_kinds():
    d = to_dict(get_preset("data2vec2_image_tiny"))
    d["train"]["nonsense"] = 1
    with pytest.raises(ConfigError, match="nonsense"):
        from_dict(PretrainConfig, d)
    d = to_dict(get_preset("data2vec2_image_tiny"))
    d["model"]["input"]["kind"] = "smell"
    with pytest.raises(ConfigError, match="unknown InputConfig kind 'smell'"):
        from_dict(PretrainConfig, d)


def test_from_dict_in_a_fresh_interpreter_finds_builtin_kinds(tmp_path):
    # A checkpoint's config must load before any preset or modality module was imported.
    import subprocess
    import sys

    save_config(get_preset("data2vec2_image_tiny"), str(tmp_path / "c.json"))
    code = f"from data2vec.config import load_config; print(load_config({str(tmp_path / 'c.json')!r}).model.input.kind)"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "image"


def test_pretraining_configs_from_before_the_global_batch_still_load():
    from data2vec.config import TrainConfig, from_dict

    old = from_dict(TrainConfig, {"batch_size": 8, "grad_accum": 4, "lr": 1e-3})
    assert (old.batch_size, old.micro_batch, old.lr) == (32, 8, 1e-3)
    assert from_dict(TrainConfig, {"batch_size": 8, "grad_accum": 1}).batch_size == 8

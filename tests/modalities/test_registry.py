"""The modality contract: the registry finds every modality itself, checks encoders against the
`Modality` protocol, and string choices are checked in one place (`config.check_choices`)."""

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest
from torch import nn

import data2vec
from data2vec.config import ConfigError, PretrainConfig, apply_overrides, from_dict, to_dict
from data2vec.modalities import registry
from data2vec.modalities.registry import build_modality, contract_members, modality_spec, task_spec
from data2vec.models import build_model
from data2vec.presets import get_preset


def test_a_fresh_interpreter_finds_every_modality_without_importing_presets():
    code = ("import sys\nfrom data2vec.modalities.registry import specs\nkinds = sorted(specs())\n"
            "assert not any(m.startswith('data2vec.presets.') for m in sys.modules), 'preset modules imported'\n"
            "print(kinds)")
    root = Path(data2vec.__file__).parent.parent
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, cwd=root).stdout
    assert {"image", "beit", "audio", "text"} <= set(eval(out))


def test_an_encoder_missing_part_of_the_contract_is_refused(monkeypatch):
    class Partial(nn.Module):
        input_key, num_extra_tokens = "image", 0

    cfg = get_preset("data2vec2_image_tiny").model
    spec = dataclasses.replace(modality_spec("image"), build=lambda c, e: Partial())
    monkeypatch.setitem(registry._SPECS, "image", spec)
    with pytest.raises(TypeError, match="breaks the Modality contract: missing .*'local_features'"):
        build_modality(cfg.input, cfg.encoder)
    assert {"input_key", "local_encoder", "make_mask", "contextualize", "init_v1"} <= set(contract_members())


def test_a_kind_or_task_registered_twice_is_an_error():
    spec = modality_spec("audio")
    with pytest.raises(ValueError, match="task 'ctc' of 'other' is already 'audio'"):
        @dataclasses.dataclass(frozen=True)
        class Other(type(get_preset("data2vec2_audio_tiny").model.input)):
            kind: str = "other"

        registry.register(dataclasses.replace(spec, input_config=Other))
    assert "other" not in registry.specs()


def test_unknown_kinds_and_tasks_name_the_field_and_the_known_ones():
    with pytest.raises(ValueError, match=r"model.input.kind='smell' is not a registered modality; known: \["):
        modality_spec("smell")
    with pytest.raises(ValueError, match=r"task='dance'; expected one of \[.*'ctc'"):
        task_spec("dance")


@pytest.mark.parametrize("path,value,choices", [
    ("model.teacher.scope", "most", "'all', 'context', 'blocks'"),
    ("model.targets.layer", "attn", "'ffn', 'block'"),
    ("model.input.mask_type", "spans", "'block', 'span'"),
    ("train.parallel", "tp", "'ddp', 'fsdp'"),
])
def test_a_bad_choice_is_named_by_from_dict_overrides_and_the_model_builder(path, value, choices):
    cfg = get_preset("data2vec2_audio_tiny")
    message = f"{path}='{value}': expected one of {choices}"
    with pytest.raises(ConfigError, match=message):
        apply_overrides(cfg, [f"{path}={value}"])
    data = to_dict(cfg)
    *parents, leaf = path.split(".")
    node = data
    for p in parents:
        node = node[p]
    node[leaf] = value
    with pytest.raises(ConfigError, match=message):
        from_dict(PretrainConfig, data)
    if path.startswith("model."):  # a config built in Python never went through from_dict
        section, field = parents[1], leaf
        bad = dataclasses.replace(cfg.model, **{section: dataclasses.replace(getattr(cfg.model, section),
                                                                               **{field: value})})
        with pytest.raises(ConfigError, match=message):
            build_model(bad)

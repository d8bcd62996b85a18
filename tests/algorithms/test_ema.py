import pytest
import torch
from torch import nn

from data2vec.algorithms.ema import EMATeacher, ema_decay
from data2vec.config import TeacherConfig


def test_ema_decay_linear_anneal_then_constant():
    assert ema_decay(0, 0.999, 0.9999, 100) == pytest.approx(0.999)
    assert ema_decay(50, 0.999, 0.9999, 100) == pytest.approx(0.99945)
    assert ema_decay(100, 0.999, 0.9999, 100) == pytest.approx(0.9999)
    assert ema_decay(10**6, 0.999, 0.9999, 100) == pytest.approx(0.9999)
    assert ema_decay(5, 0.9998, 0.9998, 0) == pytest.approx(0.9998)


def test_teacher_update_is_lerp_and_teacher_is_frozen():
    student = nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3))
    teacher = EMATeacher(student, TeacherConfig(decay=0.9, end_decay=0.9, anneal_steps=0))
    assert not any(p.requires_grad for p in teacher.module.parameters())
    assert not teacher.module.training
    before = teacher.module[0].weight.clone()
    with torch.no_grad():
        student[0].weight.add_(1.0)
        student[1].running_mean.fill_(3.0)
    d = teacher.update(student, 1)
    assert d == pytest.approx(0.9)
    torch.testing.assert_close(teacher.module[0].weight, 0.9 * before + 0.1 * student[0].weight)
    torch.testing.assert_close(teacher.module[1].running_mean, torch.full((3,), 3.0))  # buffers copied


def test_teacher_drop_shares_parts_and_names_must_match():
    student = nn.ModuleDict({"a": nn.Linear(2, 2), "b": nn.Linear(2, 2)})
    teacher = EMATeacher(student, TeacherConfig(), drop=("a",))
    assert teacher.module["a"] is None if "a" in teacher.module else True
    assert {n for n, _ in teacher.module.named_parameters()} == {"b.weight", "b.bias"}
    teacher.update(student, 1)
    other = nn.ModuleDict({"c": nn.Linear(2, 2)})
    t2 = EMATeacher(other, TeacherConfig())
    with pytest.raises(RuntimeError, match="no student counterpart"):
        t2.update(student, 1)


def test_teacher_state_round_trip():
    student = nn.Linear(2, 2)
    t = EMATeacher(student, TeacherConfig(decay=0.5, end_decay=0.5, anneal_steps=0))
    with torch.no_grad():
        student.weight.add_(1)
    t.update(student, 1)
    t2 = EMATeacher(nn.Linear(2, 2), TeacherConfig())
    t2.load_state_dict(t.state_dict())
    torch.testing.assert_close(t2.module.weight, t.module.weight)
    assert t2.decay == 0.5


def test_init_share_matches_the_product_of_decays():
    from data2vec.algorithms.ema import init_share

    expected = 1.0
    for t in range(1, 301):
        expected *= ema_decay(t, 0.99, 0.999, 200)
    assert init_share(0.99, 0.999, 200, 300) == pytest.approx(expected, rel=1e-9)
    assert init_share(0.9, 0.9, 0, 10) == pytest.approx(0.9**10)
    assert init_share(0.5, 1.0, 0, 10) == 1.0  # a frozen teacher keeps all of it


def test_teacher_lag_warning_names_the_fields_for_short_runs_only():
    from data2vec.algorithms.ema import teacher_lag_warning

    slow = TeacherConfig(decay=0.998, end_decay=0.9998, anneal_steps=1000)
    msg = teacher_lag_warning(slow, max_steps=500)
    assert msg is not None and "model.teacher.decay" in msg and "46%" in msg
    assert teacher_lag_warning(slow, max_steps=200_000) is None
    assert teacher_lag_warning(TeacherConfig(decay=0.98, end_decay=0.998, anneal_steps=500), 500) is None

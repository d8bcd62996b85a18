import pytest
import torch

from data2vec.algorithms.data2vec2 import Data2Vec2Model, RepresentationCollapse
from data2vec.config import apply_overrides
from data2vec.presets import get_preset


def _model(**over):
    cfg = get_preset("data2vec2_image_tiny").model
    if over:
        from data2vec.config import PretrainConfig

        cfg = apply_overrides(PretrainConfig(model=cfg), [f"model.{k}={v}" for k, v in over.items()]).model
    return Data2Vec2Model(cfg)


def _images(b=3):
    return torch.randn(b, 1, 28, 28)


def test_student_never_sees_masked_tokens():
    model = _model()
    teacher = model.make_teacher()
    seen = []
    model.encoder.register_forward_hook(lambda m, args, out: seen.append(args[0].detach().clone()))
    x = _images()
    model.eval()  # no dropout so both passes are comparable
    model.pretrain_forward({"image": x}, teacher, torch.Generator().manual_seed(7))
    # Recover the masks the model drew, then change only masked patches.
    M = model.cfg.clone_batch
    mask = model.modality.make_mask(None, 3 * M, 49, torch.Generator().manual_seed(7))
    masked_everywhere = mask.view(3, M, 49).all(1)  # patches masked in every view of a sample
    x2 = x.clone()
    for b in range(3):
        for p in masked_everywhere[b].nonzero().flatten().tolist():
            r, c = divmod(p, 7)
            x2[b, :, 4 * r : 4 * r + 4, 4 * c : 4 * c + 4] += 10.0
    model.pretrain_forward({"image": x2}, teacher, torch.Generator().manual_seed(7))
    n_vis = 49 - int(mask[0].sum())
    assert seen[0].shape == (3 * M, 1 + n_vis, model.cfg.encoder.dim)  # only CLS + visible tokens
    torch.testing.assert_close(seen[0].view(3, M, -1, 32)[:, 0], seen[1].view(3, M, -1, 32)[:, 0])


def test_teacher_gets_no_gradient_and_student_does():
    model = _model()
    teacher = model.make_teacher()
    out = model.pretrain_forward({"image": _images()}, teacher, torch.Generator().manual_seed(0))
    out.loss.backward()
    assert all(p.grad is None and not p.requires_grad for p in teacher.module.parameters())
    assert all(p.grad is not None for n, p in model.named_parameters() if p.requires_grad), "unused student params"


def test_loss_covers_masked_positions_only():
    model = _model(**{"loss.cls_weight": 0.0})
    teacher = model.make_teacher()
    captured = {}

    def hook(mod, args, out):
        out.retain_grad()
        captured["pred"] = out

    model.decoder.register_forward_hook(hook)
    g = torch.Generator().manual_seed(3)
    out = model.pretrain_forward({"image": _images()}, teacher, g)
    out.loss.backward()
    grad = captured["pred"].grad.abs().sum(-1)  # (B*M, T)
    mask = model.modality.make_mask(None, grad.shape[0], 49, torch.Generator().manual_seed(3))
    assert (grad[~mask] == 0).all() and (grad[mask] > 0).all()


def test_targets_are_shared_by_the_m_views_and_come_from_unmasked_input():
    model = _model()
    teacher = model.make_teacher()
    x = _images(2)
    feats, _ = model.modality.local_features(x)
    y = model.teacher_targets(teacher, x, feats, None)
    assert y.shape == (2, 49, 32)
    # The teacher is an exact copy at step 0, so its targets equal the student's own unmasked pass.
    from data2vec.algorithms.targets import make_targets

    model.eval()
    ref = make_targets([t[:, 1:] for t in model.extract_features(x).layer_results], model.cfg.targets)
    torch.testing.assert_close(y, ref, atol=1e-5, rtol=1e-5)


def test_cls_loss_weight_and_logs():
    model = _model()
    teacher = model.make_teacher()
    out = model.pretrain_forward({"image": _images()}, teacher, torch.Generator().manual_seed(0))
    assert {"loss_regression", "loss_cls", "target_std", "pred_std"} <= set(out.logs)
    logs = {k: float(v) for k, v in out.logs.items()}  # device tensors: the step never syncs
    assert logs["loss"] == pytest.approx(logs["loss_regression"] + logs["loss_cls"], rel=1e-5)
    assert out.logs["masked_views"] == 3 * model.cfg.clone_batch


def test_collapse_guard_stops_with_a_clear_message():
    model = _model(min_target_std=5.0, collapse_check_after=0)
    teacher = model.make_teacher()
    with pytest.raises(RepresentationCollapse, match="target std .* < model.min_target_std=5.0"):
        model.pretrain_forward({"image": _images()}, teacher, torch.Generator().manual_seed(0), step=1)
    model = _model(min_pred_std=50.0, collapse_check_after=0)
    with pytest.raises(RepresentationCollapse, match="prediction std"):
        model.pretrain_forward({"image": _images()}, model.make_teacher(), torch.Generator().manual_seed(0), step=1)


@pytest.mark.parametrize("scope,shared", [("context", "modality.local_encoder"), ("blocks", "modality")])
def test_teacher_scopes_share_the_rest(scope, shared):
    model = _model(**{"teacher.scope": scope})
    teacher = model.make_teacher()
    names = {n for n, _ in teacher.module.named_parameters()}
    assert not any(n.startswith(shared) for n in names)
    assert any(n.startswith("encoder.") for n in names)
    out = model.pretrain_forward({"image": _images()}, teacher, torch.Generator().manual_seed(0))
    out.loss.backward()
    teacher.update(model, 1)

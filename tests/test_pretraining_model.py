"""ProSForPreTraining: teacher/student mechanics, every loss variant, and an exact save/load round trip."""

import pytest
import torch
from torch.nn import functional as F

from pros_hf import ProSConfig
from pros_hf.modeling_pros_pretraining import ProSForPreTraining


def micro_model(**overrides):
    torch.manual_seed(0)
    return ProSForPreTraining(ProSConfig.from_preset("micro", **overrides))


def crops(batch=4, num_global=2, num_local=3, seed=1):
    generator = torch.Generator().manual_seed(seed)
    return (
        torch.randn(batch, num_global, 3, 32, 32, generator=generator),
        torch.randn(batch, num_local, 3, 16, 16, generator=generator),
    )


def test_teacher_starts_as_the_student_and_never_trains():
    model = micro_model(drop_path_rate=0.2)
    for (name, s), t in zip(model.student.named_parameters(), model.teacher.parameters()):
        assert torch.equal(s, t), name
        assert s.requires_grad and not t.requires_grad
    assert not model.teacher.training
    model.train()
    assert model.student.training and not model.teacher.training and not model.teacher_head.training
    global_crops, local_crops = crops()
    model(global_crops, local_crops).loss.backward()
    assert all(p.grad is None for p in model.teacher.parameters())
    assert model.prototypes.grad is not None and model.prototypes.grad.abs().sum() > 0
    assert model.student.embeddings.cls_token.grad.abs().sum() > 0


def test_loss_equals_a_plain_recomputation():
    model = micro_model(target_mode="center").eval()
    global_crops, local_crops = crops()
    output = model(global_crops, local_crops, teacher_temperature=0.05)
    config = model.config

    def embed(backbone, head, x):
        return F.normalize(head(backbone(x).pooler_output), dim=-1)

    prototypes = F.normalize(model.prototypes, dim=-1)
    student_views = [embed(model.student, model.student_head, global_crops[:, v]) for v in range(2)]
    student_views += [embed(model.student, model.student_head, local_crops[:, v]) for v in range(3)]
    teacher_views = [embed(model.teacher, model.teacher_head, global_crops[:, v]) for v in range(2)]
    total, pairs = 0.0, 0
    for g, teacher in enumerate(teacher_views):
        target = F.softmax((teacher @ prototypes.t() - model.center) / 0.05, dim=-1)
        for v, student in enumerate(student_views):
            if v != g:
                log_q = F.log_softmax(student @ prototypes.t() / config.student_temperature, dim=-1)
                total = total + (-(target * log_q).sum(-1)).mean()
                pairs += 1
    torch.testing.assert_close(output.loss, total / pairs, atol=1e-5, rtol=1e-5)
    assert pairs == 2 * 4
    assert output.teacher_temperature.item() == pytest.approx(0.05)
    assert 1 <= output.active_prototypes.item() <= 4 * 2


def test_update_teacher_is_an_exact_ema():
    model = micro_model()
    with torch.no_grad():
        for parameter in model.student.parameters():
            parameter.add_(torch.randn_like(parameter))
    teacher_before = [p.clone() for p in model.teacher.parameters()]
    model.update_teacher(0.75)
    for before, student, after in zip(teacher_before, model.student.parameters(), model.teacher.parameters()):
        torch.testing.assert_close(after, 0.75 * before + 0.25 * student)
    model.update_teacher(0.0)
    assert all(torch.equal(s, t) for s, t in zip(model.student.parameters(), model.teacher.parameters()))
    with pytest.raises(ValueError, match="momentum"):
        model.update_teacher(1.5)


def test_center_moves_only_in_training():
    model = micro_model(target_mode="center")
    global_crops, local_crops = crops()
    model.eval()
    model(global_crops, local_crops)
    assert model.center.abs().sum() == 0
    model.train()
    model(global_crops, local_crops)
    assert model.center.abs().sum() > 0


@pytest.mark.parametrize(
    "overrides",
    [
        dict(target_mode="sinkhorn"),
        dict(target_mode="sharpen"),
        dict(koleo_weight=0.1),
        dict(share_prototypes=False),
        dict(head_use_bn=True, head_num_layers=2),
    ],
)
def test_every_variant_trains(overrides):
    model = micro_model(**overrides).train()
    global_crops, local_crops = crops()
    output = model(global_crops, local_crops)
    assert torch.isfinite(output.loss)
    output.loss.backward()
    if overrides.get("target_mode") == "sharpen":
        assert output.me_max_loss is not None and output.me_max_loss >= 0
    if "koleo_weight" in overrides:
        assert output.koleo_loss is not None
    if overrides.get("share_prototypes") is False:
        assert model.teacher_prototypes.grad is None and not model.teacher_prototypes.requires_grad
        with torch.no_grad():
            model.prototypes.add_(1.0)
        before = model.teacher_prototypes.clone()
        model.update_teacher(0.5)
        torch.testing.assert_close(model.teacher_prototypes, 0.5 * before + 0.5 * model.prototypes)


@pytest.mark.parametrize(
    "overrides",
    [
        dict(target_mode="center"),
        dict(target_mode="sinkhorn", me_max_weight=1.0, koleo_weight=0.1),
        dict(target_mode="sharpen", share_prototypes=False),
        dict(patch_loss_weight=1.0, target_mode="sinkhorn"),
        dict(drop_path_rate=0.5),  # stochastic depth picks its samples on the host
    ],
)
def test_a_step_runs_on_the_meta_device_so_it_never_waits_for_the_device(overrides):
    """On "meta" tensors have shapes but no values, and everything that would make the host wait for a GPU raises
    (`.item()`, `bool(tensor)`, `nonzero`, `masked_select`, boolean indexing, `repeat_interleave` without its
    size). Forward, backward and the EMA update running there is the proof that a step never waits."""
    torch.manual_seed(0)
    model = ProSForPreTraining(ProSConfig.from_preset("micro", **overrides)).train().to("meta")
    global_crops = torch.randn(4, 2, 3, 32, 32, device="meta")
    local_crops = torch.randn(4, 3, 3, 16, 16, device="meta")
    output = model(global_crops, local_crops, teacher_temperature=0.05)
    output.loss.backward()
    model.update_teacher(0.99)
    assert output.loss.device.type == "meta" and output.loss.shape == ()
    assert model.student.embeddings.cls_token.grad is not None and model.prototypes.grad is not None


def test_koleo_leaves_out_a_batch_of_one_image():
    """An epoch's last batch can hold one image; KoLeo, which needs a neighbour, used to stop training there."""
    model = micro_model(koleo_weight=0.1).train()
    global_crops, local_crops = crops(batch=1)
    output = model(global_crops, local_crops)
    assert output.koleo_loss is None and torch.isfinite(output.loss)
    output.loss.backward()
    assert model(*crops(batch=2)).koleo_loss is not None


def test_uniform_student_scores_give_ln_k():
    """Zero prototypes make every similarity 0: the student is uniform and the loss is exactly ln K."""
    model = micro_model().eval()
    with torch.no_grad():
        model.prototypes.zero_()
    output = model(*crops())
    assert output.matching_loss.item() == pytest.approx(torch.log(torch.tensor(64.0)).item(), rel=1e-5)


def test_bf16_autocast_keeps_the_loss_in_fp32():
    model = micro_model().train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        output = model(*crops())
    assert output.loss.dtype == torch.float32 and torch.isfinite(output.loss)


def test_global_views_only_and_bad_shapes():
    model = micro_model()
    global_crops, local_crops = crops()
    assert torch.isfinite(model(global_crops).loss)
    with pytest.raises(ValueError, match="two views"):
        model(global_crops[:, :1])
    with pytest.raises(ValueError, match="batch, views, 3, height, width"):
        model(global_crops[:, 0])
    with pytest.raises(ValueError, match="same batch size"):
        model(global_crops, local_crops[:2])


def test_save_load_round_trip_keeps_teacher_prototypes_and_center(tmp_path):
    model = micro_model(share_prototypes=False).train()
    model(*crops())  # moves the center
    model.update_teacher(0.9)
    model.save_pretrained(tmp_path)
    loaded = ProSForPreTraining.from_pretrained(tmp_path)
    original, reloaded = model.state_dict(), loaded.state_dict()
    assert set(original) == set(reloaded) and "center" in original and "teacher_prototypes" in original
    for name, tensor in original.items():
        assert torch.equal(tensor, reloaded[name]), name


def test_export_teacher_is_the_teacher():
    model = micro_model()
    with torch.no_grad():
        model.student.embeddings.cls_token.add_(1.0)
    model.update_teacher(0.5)
    backbone = model.export_teacher()
    pixel_values = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(backbone(pixel_values).pooler_output, model.teacher(pixel_values).pooler_output)
    assert not torch.allclose(backbone(pixel_values).pooler_output, model.student.eval()(pixel_values).pooler_output)
    # from a full state dict (what accelerate gathers where parameters are sharded): the teacher's entries only
    gathered = model.export_teacher(model.state_dict()).state_dict()
    assert all(torch.equal(gathered[name], value) for name, value in model.teacher.state_dict().items())


def test_active_prototype_count_matches_unique():
    targets = torch.softmax(torch.randn(2, 5, 16), dim=-1)
    expected = targets.argmax(dim=-1).unique().numel()
    assert ProSForPreTraining._count_active_prototypes(targets).item() == expected
    one_hot = torch.zeros(3, 4, 16)
    one_hot[..., 7] = 1.0
    assert ProSForPreTraining._count_active_prototypes(one_hot).item() == 1


@pytest.mark.parametrize(
    "overrides, num_local",
    [
        ({}, 3),
        ({}, 0),
        ({"head_num_layers": 1, "num_prototypes": 128}, 2),
        ({"patch_loss_weight": 1.0, "mask_probability": 1.0, "mask_ratio": [0.25, 0.25]}, 2),
    ],
)
def test_training_flops_per_image_match_the_flop_counter(overrides, num_local):
    """The analytic count the Trainer logs as total_flos equals what FlopCounterMode measures on a real step."""
    from pros_hf.flop_counting import flop_counter

    model = micro_model(**overrides).train()
    global_crops = torch.randn(2, 2, 3, 32, 32)
    local_crops = torch.randn(2, num_local, 3, 16, 16) if num_local else None
    with flop_counter() as counter:
        model(global_crops=global_crops, local_crops=local_crops).loss.backward()
    expected = 2 * model.training_flops_per_image(32, 2, 16, num_local)
    assert expected == pytest.approx(counter.get_total_flops(), rel=2e-3)
    if num_local:
        with pytest.raises(ValueError, match="need their local_size"):
            model.training_flops_per_image(32, 2, None, num_local)


def test_training_flops_per_image_count_the_samples_stochastic_depth_skips():
    """The student's blocks skip the samples their branches drop: the count is the expected share, which the
    mean over steps of the measured FLOPs meets (the teacher, in eval mode, runs on all)."""
    from pros_hf.flop_counting import flop_counter

    torch.manual_seed(0)
    model = micro_model(drop_path_rate=0.6).train()
    global_crops = torch.randn(16, 2, 3, 32, 32)
    measured = []
    for _ in range(8):
        with flop_counter() as counter:
            model(global_crops=global_crops).loss.backward()
        measured.append(counter.get_total_flops())
    expected = 16 * model.training_flops_per_image(32, 2)
    assert sum(measured) / len(measured) == pytest.approx(expected, rel=0.03)
    assert expected < 0.85 * 16 * micro_model().training_flops_per_image(32, 2)  # what it saves at this rate
    # compiled blocks keep DINO's mask and run on every sample
    assert model.training_flops_per_image(32, 2, compiled=True) == micro_model().training_flops_per_image(32, 2)


def test_flop_counter_sees_cpu_attention():
    """torch's FlopCounterMode alone counts no FLOPs for SDPA's CPU kernel; pros_hf.flop_counting adds them."""
    from torch.utils.flop_counter import FlopCounterMode

    from pros_hf import ProSModel
    from pros_hf.flop_counting import flop_counter

    config = ProSConfig.from_preset("micro", image_size=32)
    model = ProSModel(config).eval()
    pixels = torch.randn(2, 3, 32, 32)
    with FlopCounterMode(display=False) as plain, flop_counter() as full:
        model(pixels)
    assert model.config._attn_implementation == "sdpa"
    tokens, layers = (32 // config.patch_size) ** 2 + 1, config.num_hidden_layers
    attention = 2 * layers * 4 * tokens * tokens * config.hidden_size  # QK^T and AV, 2 images
    assert full.get_total_flops() - plain.get_total_flops() == attention

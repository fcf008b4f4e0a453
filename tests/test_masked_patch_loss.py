"""iBOT's masked patch loss (`patch_loss_weight > 0`): the masks, the mask token, the loss against a plain
recomputation, and that everything it adds is trained, saved and reloaded."""

import pytest
import torch
from torch.nn import functional as F

from pros_hf import ProSConfig, ProSModel, losses
from pros_hf.modeling_pros_pretraining import ProSForPreTraining


def micro_model(**overrides):
    torch.manual_seed(0)
    return ProSForPreTraining(ProSConfig.from_preset("micro", patch_loss_weight=1.0, **overrides))


def crops(batch=4, seed=1):
    generator = torch.Generator().manual_seed(seed)
    return (
        torch.randn(batch, 2, 3, 32, 32, generator=generator),
        torch.randn(batch, 3, 3, 16, 16, generator=generator),
    )


def test_patch_loss_equals_a_per_image_loop():
    torch.manual_seed(0)
    masks = torch.tensor([[1, 0, 1, 1], [0, 0, 0, 0], [0, 1, 0, 0]], dtype=torch.bool)
    teacher = F.softmax(torch.randn(4, 8) / 0.1, dim=-1)
    student_log = F.log_softmax(torch.randn(4, 8), dim=-1)
    loss = losses.masked_patch_loss(teacher, student_log, masks)
    # image 0 has three masked patches (rows 0-2), image 1 none, image 2 one (row 3): each masked image weighs the same
    image0 = (-(teacher[:3] * student_log[:3]).sum(-1)).mean()
    image2 = -(teacher[3] * student_log[3]).sum()
    torch.testing.assert_close(loss, (image0 + image2) / 2)
    with pytest.raises(ValueError, match="3 patch distributions for 4 masked patches"):
        losses.masked_patch_loss(teacher[:3], student_log[:3], masks)


def test_masks_hide_the_configured_share_of_images_and_patches():
    model = micro_model(mask_probability=0.5, mask_ratio=[0.25, 0.5])
    torch.manual_seed(3)
    masks = model.sample_patch_masks(40, 16, torch.device("cpu"))
    counts = masks.sum(dim=1)
    assert masks.dtype == torch.bool and masks.shape == (40, 16)
    assert (counts > 0).sum() == 20
    assert counts[counts > 0].min() >= 4 and counts.max() <= 8
    # one image and a tiny ratio still mask one patch, so the loss always has something to predict
    single = micro_model(mask_probability=0.1, mask_ratio=[0.01, 0.01]).sample_patch_masks(1, 16, torch.device("cpu"))
    assert single.sum() == 1


def test_masked_patch_index_is_the_row_major_order_of_the_mask():
    generator = torch.Generator().manual_seed(0)
    masks = torch.rand(6, 9, generator=generator) < 0.4
    masks[1] = False  # an image without masked patches
    masks[4] = True  # and one with all of them
    index = ProSForPreTraining.masked_patch_index(masks, int(masks.sum()))
    assert torch.equal(index, masks.flatten().nonzero().squeeze(1))
    model = micro_model(mask_probability=0.5, mask_ratio=[0.1, 0.6])
    drawn, num_masked = model.sample_patch_masks(10, 16, torch.device("cpu"), return_num_masked=True)
    assert num_masked == int(drawn.sum()) > 0


def test_the_mask_token_replaces_masked_patches_only():
    config = ProSConfig.from_preset("micro", patch_loss_weight=1.0)
    model = ProSModel(config).eval()
    with torch.no_grad():
        model.embeddings.mask_token.normal_()
    pixels = torch.randn(2, 3, 32, 32)
    masks = torch.zeros(2, 16, dtype=torch.bool)
    masks[0, 5] = True
    embeddings = model.embeddings(pixels, masks)
    plain = model.embeddings(pixels)
    position = model.embeddings.position_embeddings[0, 1 + 5]
    torch.testing.assert_close(embeddings[0, 1 + 5], model.embeddings.mask_token[0, 0] + position)
    untouched = torch.ones(2, 17, dtype=torch.bool)
    untouched[0, 1 + 5] = False
    assert torch.equal(embeddings[untouched], plain[untouched])
    with pytest.raises(ValueError, match=r"shape \(batch, num_patches\) = \(2, 16\)"):
        model(pixels, bool_masked_pos=masks[:, :8])
    with pytest.raises(ValueError, match="patch_loss_weight > 0"):
        ProSModel(ProSConfig.from_preset("micro"))(pixels, bool_masked_pos=masks)
    assert ProSModel(ProSConfig.from_preset("micro")).embeddings.mask_token is None


@pytest.mark.parametrize("target_mode", ["center", "sinkhorn", "sharpen"])
def test_loss_equals_a_plain_recomputation(target_mode):
    model = micro_model(target_mode=target_mode).eval()
    with torch.no_grad():
        model.student.embeddings.mask_token.normal_()
    global_crops, local_crops = crops()
    torch.manual_seed(7)
    output = model(global_crops, local_crops, teacher_temperature=0.05)
    torch.manual_seed(7)
    masks = model.sample_patch_masks(4 * 2, 16, torch.device("cpu"))
    config = model.config
    flat = global_crops.flatten(0, 1)
    prototypes = F.normalize(model.prototypes, dim=-1)

    def distributions(backbone, head, pixels, bool_masked_pos=None):
        tokens = backbone(pixels, bool_masked_pos=bool_masked_pos).last_hidden_state
        return F.normalize(head(tokens[:, 0]), dim=-1) @ prototypes.t(), F.normalize(
            head(tokens[:, 1:][masks]), dim=-1
        ) @ prototypes.t()

    def targets(scores, center):
        if target_mode == "center":
            return F.softmax((scores - center) / 0.05, dim=-1)
        if target_mode == "sinkhorn":
            return losses.sinkhorn_knopp(scores, 0.05, config.sinkhorn_iterations)
        return losses.sharpened_teacher_probabilities(scores, 0.05, config.sharpen_temperature)

    student_cls, student_patches = distributions(model.student, model.student_head, flat, masks)
    teacher_cls, teacher_patches = distributions(model.teacher, model.teacher_head, flat)
    patch_targets = targets(teacher_patches, model.patch_center)
    log_q = F.log_softmax(student_patches / config.student_temperature, dim=-1)
    per_patch = -(patch_targets * log_q).sum(-1)
    image_losses, start = [], 0
    for count in masks.sum(1).tolist():
        if count:
            image_losses.append(per_patch[start : start + count].mean())
        start += count
    patch_loss = torch.stack(image_losses).mean()
    torch.testing.assert_close(output.patch_loss, patch_loss, atol=1e-5, rtol=1e-5)
    # the CLS loss sees the masked student crops, against the teacher's unmasked ones
    student_views = list(student_cls.view(4, 2, -1).transpose(0, 1))
    student_views += [
        F.normalize(model.student_head(model.student(local_crops[:, v]).pooler_output), dim=-1) @ prototypes.t()
        for v in range(3)
    ]
    teacher_targets = targets(teacher_cls, model.center).view(4, 2, -1).transpose(0, 1)
    matching = losses.prototype_matching_loss(
        teacher_targets, torch.stack([F.log_softmax(s / config.student_temperature, dim=-1) for s in student_views])
    )
    torch.testing.assert_close(output.matching_loss, matching, atol=1e-5, rtol=1e-5)
    expected = matching + config.patch_loss_weight * patch_loss
    if target_mode == "sharpen":  # me-max (on by default with sharpen) sees the CLS distributions only
        expected = expected + config.me_max_weight * output.me_max_loss
    torch.testing.assert_close(output.loss, expected, atol=1e-5, rtol=1e-5)


def test_mask_token_and_patch_center_train_save_and_reload(tmp_path):
    model = micro_model(target_mode="center").train()
    output = model(*crops())
    output.loss.backward()
    assert model.student.embeddings.mask_token.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.teacher.parameters())
    assert model.patch_center.abs().sum() > 0  # centering mode: the patch targets have their own center
    model.update_teacher(0.5)
    model.save_pretrained(tmp_path)
    loaded = ProSForPreTraining.from_pretrained(tmp_path)
    original, reloaded = model.state_dict(), loaded.state_dict()
    assert set(original) == set(reloaded) and "patch_center" in original
    for name, tensor in original.items():
        assert torch.equal(tensor, reloaded[name]), name
    # the exported teacher keeps its mask token and loads back as a ProSModel
    backbone = model.export_teacher()
    backbone.save_pretrained(tmp_path / "backbone")
    reloaded_backbone = ProSModel.from_pretrained(tmp_path / "backbone")
    assert torch.equal(reloaded_backbone.embeddings.mask_token, model.teacher.embeddings.mask_token)


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("patch_loss_weight", -1.0, "patch_loss_weight must be >= 0"),
        ("mask_probability", 0.0, r"mask_probability must be in \(0, 1\]"),
        ("mask_ratio", [0.5, 0.1], "mask_ratio must be"),
        ("mask_ratio", [0.1, 1.0], "mask_ratio must be"),
    ],
)
def test_bad_mask_settings_are_refused(field, value, message):
    with pytest.raises(ValueError, match=message):
        ProSConfig.from_preset("micro", **{field: value})


def test_trainer_logs_the_patch_loss_and_exports_a_loadable_backbone(tmp_path):
    from pros_hf.data.loading import load_pretraining_images
    from pros_hf.data.synthetic import make_synthetic_faces
    from pros_hf.training import ProSTrainer, ProSTrainingArguments

    faces = load_pretraining_images(
        make_synthetic_faces(16, image_size=40, seed=0).select_columns(["image"]), image_size=36
    )
    torch.manual_seed(0)
    model = ProSForPreTraining(
        ProSConfig.from_preset("micro", num_prototypes=32, patch_loss_weight=1.0, target_mode="sinkhorn")
    )
    args = ProSTrainingArguments(
        output_dir=str(tmp_path / "run"),
        per_device_train_batch_size=8,
        num_train_epochs=2,
        global_crop_size=32,
        local_crop_size=16,
        num_local_crops=2,
        logging_steps=2,
        report_to="none",
        save_strategy="no",
        disable_tqdm=True,
        learning_rate=1e-3,
        freeze_prototypes_epochs=0,
        seed=0,
    )
    trainer = ProSTrainer(model=model, args=args, train_dataset=faces, dataset_name="synthetic test faces")
    assert "student.embeddings.mask_token" not in set(trainer.get_decay_parameter_names(model))
    mask_token = model.student.embeddings.mask_token.detach().clone()
    trainer.train()
    logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert logs and all(0 < entry["patch_loss"] < 10 for entry in logs)
    assert not torch.equal(model.student.embeddings.mask_token, mask_token)  # the mask token trains
    backbone = ProSModel.from_pretrained(tmp_path / "run")
    assert torch.equal(backbone.embeddings.mask_token, model.teacher.embeddings.mask_token)


@pytest.mark.slow
def test_pretrain_example_flags_reach_the_config(tmp_path):
    """examples/pretrain.py: the patch-loss flags and --config_overrides end up in the model's config; a misspelt or
    invalid override stops with a message naming it."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location(
        "pretrain_example", Path(__file__).resolve().parents[1] / "examples" / "pretrain.py"
    )
    pretrain = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(pretrain)
    base = [
        "--output_dir",
        str(tmp_path),
        "--num_synthetic_images",
        "8",
        "--synthetic_image_size",
        "40",
        "--global_crop_size",
        "32",
        "--local_crop_size",
        "16",
        "--report_to",
        "none",
    ]
    trainer, _ = pretrain.build_trainer(
        base
        + [
            "--patch_loss_weight",
            "0.5",
            "--mask_ratio",
            "0.2",
            "0.3",
            "--config_overrides",
            "hidden_size=96,intermediate_size=384",
        ]
    )
    config = trainer.model.config
    assert (config.patch_loss_weight, config.mask_ratio, config.hidden_size, config.intermediate_size) == (
        0.5,
        [0.2, 0.3],
        96,
        384,
    )
    assert trainer.model.student.embeddings.mask_token.shape == (1, 1, 96)
    with pytest.raises(SystemExit, match=r"unknown ProSConfig fields \['hiden_size'\]"):
        pretrain.build_trainer(base + ["--config_overrides", "hiden_size=96"])
    with pytest.raises(SystemExit, match="hidden_size=90"):
        pretrain.build_trainer(base + ["--config_overrides", "hidden_size=90"])  # not a multiple of 4 heads

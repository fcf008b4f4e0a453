"""The loss pieces against plain references: ln K at uniform outputs, Sinkhorn balance, no same-view pairs."""

import math

import pytest
import torch
from torch.nn import functional as F

from pros_hf import losses


def test_uniform_student_gives_ln_k():
    num_prototypes = 128
    teacher = F.softmax(torch.randn(2, 8, num_prototypes), dim=-1)
    student_log = F.log_softmax(torch.zeros(6, 8, num_prototypes), dim=-1)
    loss = losses.prototype_matching_loss(teacher, student_log)
    assert loss.item() == pytest.approx(math.log(num_prototypes), rel=1e-5)


def reference_matching_loss(teacher, student_log):
    """DINO's double loop, written plainly."""
    total, pairs = 0.0, 0
    for g in range(teacher.shape[0]):
        for v in range(student_log.shape[0]):
            if v == g:
                continue
            total += torch.sum(-teacher[g] * student_log[v], dim=-1).mean()
            pairs += 1
    return total / pairs


def test_matching_loss_equals_the_reference_and_skips_same_view_pairs():
    torch.manual_seed(0)
    teacher = F.softmax(torch.randn(2, 5, 16) / 0.1, dim=-1)
    student_log = F.log_softmax(torch.randn(8, 5, 16), dim=-1)
    loss = losses.prototype_matching_loss(teacher, student_log)
    torch.testing.assert_close(loss, reference_matching_loss(teacher, student_log))
    # including the same-view pairs would give a different number
    all_pairs = torch.stack([torch.sum(-t * s, -1).mean() for t in teacher for s in student_log]).mean()
    assert not torch.isclose(loss, all_pairs)
    # a student that copies the teacher on its own view gains nothing from it
    copied = student_log.clone()
    copied[:2] = torch.log(teacher)
    torch.testing.assert_close(
        losses.prototype_matching_loss(teacher, copied), reference_matching_loss(teacher, copied)
    )


def test_matching_loss_needs_two_views():
    with pytest.raises(ValueError, match="two views"):
        losses.prototype_matching_loss(torch.ones(1, 2, 4) / 4, torch.zeros(1, 2, 4))


def test_sinkhorn_balances_rows_and_columns():
    torch.manual_seed(0)
    scores = torch.randn(32, 8) + torch.linspace(0, 2, 8)  # skewed: a plain softmax favours the last prototypes
    q = losses.sinkhorn_knopp(scores, temperature=0.5, iterations=100)
    torch.testing.assert_close(q.sum(dim=1), torch.ones(32))
    torch.testing.assert_close(q.sum(dim=0), torch.full((8,), 32 / 8), atol=1e-3, rtol=1e-3)
    plain = F.softmax(scores / 0.5, dim=-1).sum(dim=0)
    assert plain.max() / plain.min() > 5  # the unbalanced version really was unbalanced
    few = losses.sinkhorn_knopp(scores, temperature=0.5, iterations=3)
    torch.testing.assert_close(few.sum(dim=1), torch.ones(32))
    assert (few.sum(dim=0) - 4).abs().max() < (plain - 4).abs().max()


def test_sinkhorn_is_fp32_and_survives_large_scores():
    scores = torch.randn(16, 32, dtype=torch.bfloat16) * 50
    q = losses.sinkhorn_knopp(scores, temperature=0.02, iterations=3)
    assert q.dtype == torch.float32 and torch.isfinite(q).all()


def test_prototypes_receive_gradients_through_the_scores():
    features = torch.randn(4, 8, requires_grad=True)
    prototypes = torch.randn(16, 8, requires_grad=True)
    scores = losses.prototype_scores(features, prototypes)
    assert scores.shape == (4, 16) and scores.abs().max() <= 1 + 1e-6
    teacher = F.softmax(torch.randn(2, 2, 16), dim=-1)
    student_log = F.log_softmax(scores.view(2, 2, 16) / 0.1, dim=-1)
    losses.prototype_matching_loss(teacher, student_log).backward()
    assert prototypes.grad is not None and prototypes.grad.abs().sum() > 0
    assert features.grad.abs().sum() > 0


def test_scores_stay_fp32_under_bf16_autocast():
    with torch.autocast("cpu", dtype=torch.bfloat16):
        scores = losses.prototype_scores(torch.randn(4, 8), torch.randn(16, 8))
    assert scores.dtype == torch.float32


def test_centered_and_sharpened_targets():
    scores = torch.tensor([[0.5, 0.2, 0.1]])
    center = torch.tensor([[0.5, 0.0, 0.0]])
    expected = F.softmax((scores - center) / 0.04, dim=-1)
    torch.testing.assert_close(losses.centered_teacher_probabilities(scores, center, 0.04), expected)
    sharpened = losses.sharpened_teacher_probabilities(scores, 0.1, 0.25)
    manual = F.softmax(scores / 0.1, dim=-1) ** 4
    torch.testing.assert_close(sharpened, manual / manual.sum())
    assert losses.entropy(sharpened).item() < losses.entropy(F.softmax(scores / 0.1, -1)).item()
    with pytest.raises(ValueError, match="temperature"):
        losses.centered_teacher_probabilities(scores, center, 0.0)


def test_me_max_is_zero_when_balanced_and_log_k_when_collapsed():
    balanced = torch.eye(8)
    assert losses.mean_entropy_maximization(balanced).item() == pytest.approx(0.0, abs=1e-6)
    collapsed = torch.zeros(8, 8)
    collapsed[:, 3] = 1
    assert losses.mean_entropy_maximization(collapsed).item() == pytest.approx(math.log(8), rel=1e-5)


def test_koleo_prefers_spread_features():
    torch.manual_seed(0)
    spread = torch.eye(8)
    clustered = torch.ones(8, 8) + 0.01 * torch.randn(8, 8)
    assert losses.koleo_loss(spread) < losses.koleo_loss(clustered)
    assert losses.koleo_loss(spread).item() == pytest.approx(-math.log(math.sqrt(2)), rel=1e-4)
    with pytest.raises(ValueError, match="two samples"):
        losses.koleo_loss(torch.randn(1, 8))


def test_center_update_is_an_ema_of_the_batch_mean():
    center = torch.zeros(1, 4)
    scores = torch.tensor([[1.0, 2.0, 3.0, 4.0], [3.0, 2.0, 1.0, 0.0]])
    losses.update_center(center, scores, momentum=0.9)
    torch.testing.assert_close(center, torch.tensor([[0.2, 0.2, 0.2, 0.2]]))
    losses.update_center(center, scores, momentum=0.9)
    torch.testing.assert_close(center, torch.tensor([[0.38, 0.38, 0.38, 0.38]]))


def test_single_process_never_touches_torch_distributed():
    assert losses.distributed_world_size() == 1
    value = torch.tensor([3.0])
    assert losses.all_reduce_mean(value).item() == 3.0 and losses.all_reduce_sum(value).item() == 3.0


def test_prototype_scores_are_cosines_with_exact_gradients():
    torch.manual_seed(0)
    features = torch.randn(5, 7, dtype=torch.float64, requires_grad=True)
    prototypes = torch.randn(9, 7, dtype=torch.float64, requires_grad=True)
    reference = F.normalize(features, dim=-1) @ F.normalize(prototypes, dim=-1).t()
    torch.testing.assert_close(losses.prototype_scores(features, prototypes).double(), reference)
    # the hand-written backward against autograd's, numerically
    assert torch.autograd.gradcheck(losses._CosineScores.apply, (F.normalize(features, dim=-1), prototypes))
    weights = torch.randn(5, 9, dtype=torch.float64)
    (reference * weights).sum().backward()
    expected = prototypes.grad.clone(), features.grad.clone()
    prototypes.grad = features.grad = None
    (losses.prototype_scores(features.float(), prototypes.float()) * weights.float()).sum().backward()
    torch.testing.assert_close(prototypes.grad, expected[0], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(features.grad, expected[1], rtol=1e-4, atol=1e-5)

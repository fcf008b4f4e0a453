"""Linear probes on frozen features, with hyper-parameters chosen on a validation split of the training labels.

A linear probe asks what a frozen representation makes *linearly* available: the backbone never moves, only a linear
map is fitted on top. This follows DINO's ``eval_linear.py`` and DINOv2's linear evaluation, with one difference that
matters on small sets: the learning rate and weight decay (or, for regression, the ridge strength) are chosen on a
validation split carved from the training labels, never on the test set, and the probe is then refitted on every
training label with the chosen values. Features are standardised with the training statistics first (DINO's probe
sees a BatchNorm-free, normalised CLS; standardising makes one learning-rate grid serve backbones whose feature
scales differ by orders of magnitude, such as a trained and a random-init one).

Three kinds of target:

- ``"single_label"``: class ids, softmax cross-entropy (expressions, identities); scored by accuracy;
- ``"multi_label"``: 0/1 vectors, one logistic regression per column (attributes); scored by mean accuracy;
- ``"regression"``: real vectors (landmark coordinates), ridge regression in closed form; scored by a caller-given
  error (lower is better), by default the mean squared error.
"""

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.nn import functional as F

TARGET_KINDS = ("single_label", "multi_label", "regression")

# DINO sweeps learning rates over two orders of magnitude; on standardised features and full-batch AdamW these cover
# the useful range for probes of a few thousand examples.
DEFAULT_LEARNING_RATES = (1e-3, 3e-3, 1e-2, 3e-2, 1e-1)
DEFAULT_WEIGHT_DECAYS = (1e-4, 1e-2)
# Ridge strengths relative to the mean eigenvalue of the feature covariance: from nearly unregularised to strong.
DEFAULT_RIDGE_ALPHAS = (1e-3, 1e-2, 1e-1, 1.0, 10.0)


@dataclass
class LinearProbeResult:
    """What a probe scored on the test set, and how its hyper-parameters were chosen."""

    test_score: float
    higher_is_better: bool
    hyperparameters: dict
    validation_scores: list[dict] = field(default_factory=list)  # one entry per setting tried
    test_predictions: torch.Tensor | None = None


def _check_inputs(train_features, train_targets, test_features, test_targets, kind):
    if kind not in TARGET_KINDS:
        raise ValueError(f"kind must be one of {list(TARGET_KINDS)}, got {kind!r}.")
    tensors = []
    for name, value in (
        ("train_features", train_features),
        ("train_targets", train_targets),
        ("test_features", test_features),
        ("test_targets", test_targets),
    ):
        tensor = torch.as_tensor(value)
        if tensor.numel() == 0:
            raise ValueError(f"{name} is empty.")
        tensors.append(tensor)
    train_x, train_y, test_x, test_y = tensors
    if train_x.ndim != 2 or test_x.ndim != 2 or train_x.shape[1] != test_x.shape[1]:
        raise ValueError(
            f"features must be (N, D) with the same D for train and test, got {tuple(train_x.shape)} "
            f"and {tuple(test_x.shape)}."
        )
    if len(train_x) != len(train_y) or len(test_x) != len(test_y):
        raise ValueError(
            f"features and targets differ in length: train {len(train_x)} / {len(train_y)}, test "
            f"{len(test_x)} / {len(test_y)}."
        )
    if not (torch.isfinite(train_x).all() and torch.isfinite(test_x).all()):
        raise ValueError("features hold NaN or infinite values.")
    if kind == "single_label":
        train_y, test_y = train_y.long().reshape(-1), test_y.long().reshape(-1)
        if train_y.min() < 0 or test_y.min() < 0:
            raise ValueError("single_label targets must be class ids >= 0.")
    else:
        train_y, test_y = train_y.float().reshape(len(train_y), -1), test_y.float().reshape(len(test_y), -1)
        if train_y.shape[1] != test_y.shape[1]:
            raise ValueError(f"train and test targets have {train_y.shape[1]} and {test_y.shape[1]} columns.")
    return train_x.float(), train_y, test_x.float(), test_y


def standardize(train: torch.Tensor, *others: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Centre and scale every feature by the training set's mean and standard deviation (constant features are
    left at 0)."""
    mean, std = train.mean(0), train.std(0)
    std = torch.where(std > 1e-6, std, torch.ones_like(std))
    return tuple((x - mean) / std for x in (train, *others))


def validation_split(targets: torch.Tensor, kind: str, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(fit rows, validation rows) of the training set: `fraction` held out, per class for single-label targets so
    that every class is in both parts where it has two examples or more."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"validation_fraction must be in (0, 1), got {fraction}.")
    rng = np.random.default_rng(seed)
    n = len(targets)
    if kind != "single_label":
        order = rng.permutation(n)
        held = max(1, int(round(fraction * n)))
        return np.sort(order[held:]), np.sort(order[:held])
    labels = targets.numpy()
    fit, held = [], []
    for label in np.unique(labels):
        rows = rng.permutation(np.flatnonzero(labels == label))
        take = int(round(fraction * len(rows))) if len(rows) > 1 else 0
        held += list(rows[:take])
        fit += list(rows[take:])
    if not held or not fit:
        raise ValueError(f"{n} training examples are too few to carve a validation split of {fraction:.0%}.")
    return np.sort(np.array(fit)), np.sort(np.array(held))


def _fit_logistic(x, y, kind, settings, steps, seed, num_outputs):
    """One linear layer per (learning rate, weight decay) setting, all fitted at once: full-batch AdamW with a cosine
    schedule on the settings' weights side by side, a (D, settings x C) matrix, so that a step is one matrix product
    each way. Each setting's loss and gradient are its own (the gradients of softmax cross-entropy and of the
    logistic loss are written out: autograd cost more than the products themselves at these sizes); full batches make
    the fit deterministic given the seed's initialisation, and fitting every setting in one pass costs about as much
    as fitting one."""
    generator = torch.Generator().manual_seed(seed)
    count, (n, dim) = len(settings), x.shape
    initial = torch.randn(count, dim, num_outputs, generator=generator) * 0.01
    weight = initial.permute(1, 0, 2).reshape(dim, count * num_outputs).contiguous()  # setting s: columns s*C..
    bias = torch.zeros(count * num_outputs)
    learning_rate, weight_decay = (
        torch.tensor([s[key] for s in settings]).repeat_interleave(num_outputs)  # one value per column
        for key in ("learning_rate", "weight_decay")
    )
    if kind == "single_label":
        target = F.one_hot(y, num_outputs).float().repeat(1, count)  # (N, settings x C)
    else:
        target = y.repeat(1, count)
    moments = [[torch.zeros_like(weight), torch.zeros_like(weight)], [torch.zeros_like(bias), torch.zeros_like(bias)]]
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    x_t = x.T.contiguous()
    for step in range(1, steps + 1):
        logits = torch.addmm(bias, x, weight)
        if kind == "single_label":  # mean cross-entropy per setting: d/dlogits = (softmax - one-hot) / N
            grouped = logits.view(n, count, num_outputs)  # softmax written out: 3x faster than torch's over C ~ 7
            grouped = (grouped - grouped.amax(-1, keepdim=True)).exp_()
            grad_logits = (grouped / grouped.sum(-1, keepdim=True)).view(n, -1).sub_(target).div_(n)
        else:  # logistic loss averaged over examples and columns: (sigmoid - y) / (N C)
            grad_logits = torch.sigmoid(logits).sub_(target).div_(n * num_outputs)
        grads = (x_t @ grad_logits, grad_logits.sum(0))
        scale = 0.5 * (1.0 + math.cos(math.pi * (step - 1) / steps))  # cosine decay of the learning rate
        for tensor, grad, (m, v), decay in ((weight, grads[0], moments[0], True), (bias, grads[1], moments[1], False)):
            m.mul_(beta1).add_(grad, alpha=1 - beta1)
            v.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            update = (m / (1 - beta1**step)) / ((v / (1 - beta2**step)).sqrt() + eps)
            if decay:  # decoupled weight decay on the weights, not the bias (AdamW)
                tensor.mul_(1 - learning_rate * scale * weight_decay)
            tensor.sub_(learning_rate * scale * update)
    columns = [slice(i * num_outputs, (i + 1) * num_outputs) for i in range(count)]
    return [(lambda features, w=weight[:, c], b=bias[c]: features @ w + b) for c in columns]


def _fit_ridge(x, y, alphas):
    """Closed-form ridge regression with an unpenalised bias, one predictor per strength in `alphas` (relative to the
    mean feature variance: the trace of the covariance over its size). One Cholesky solve per strength, of the D x D
    covariance, or of the N x N kernel when there are more features than examples (the dual form): a few times
    cheaper than one eigendecomposition serving every strength, at the sizes of token features (D ~ 2,400)."""
    x_mean, y_mean = x.mean(0), y.mean(0)
    xc, yc = x - x_mean, y - y_mean  # float32: the ridge keeps the system well conditioned
    primal = xc.shape[1] <= xc.shape[0]
    gram = xc.T @ xc if primal else xc @ xc.T
    scale = gram.diagonal().mean().clamp_min(1e-12)
    rhs = xc.T @ yc if primal else yc
    identity = torch.eye(len(gram), dtype=gram.dtype)
    predictors = []
    for alpha in alphas:
        system = gram + alpha * scale * identity
        factor, info = torch.linalg.cholesky_ex(system)
        if int(info) == 0:
            solution = torch.cholesky_solve(rhs, factor)
        else:  # singular (a zero strength on rank-deficient features): the minimum-norm least-squares solution
            solution = torch.linalg.lstsq(system, rhs, driver="gelsd").solution
        weight = solution if primal else xc.T @ solution
        bias = y_mean - x_mean @ weight
        predictors.append(lambda features, w=weight, b=bias: features @ w + b)
    return predictors


def _predict(model, x):
    with torch.no_grad():
        return model(x)


def _score(outputs, targets, kind, error_fn):
    if kind == "single_label":
        return float((outputs.argmax(1) == targets).float().mean())
    if kind == "multi_label":
        return float(((outputs > 0) == (targets > 0.5)).float().mean())
    return float(error_fn(outputs, targets))


def linear_probe(
    train_features,
    train_targets,
    test_features,
    test_targets,
    kind: str,
    *,
    learning_rates: Sequence[float] = DEFAULT_LEARNING_RATES,
    weight_decays: Sequence[float] = DEFAULT_WEIGHT_DECAYS,
    ridge_alphas: Sequence[float] = DEFAULT_RIDGE_ALPHAS,
    validation_fraction: float = 0.2,
    steps: int = 200,
    seed: int = 0,
    regression_error: Callable[[torch.Tensor, torch.Tensor], float] | None = None,
    return_predictions: bool = False,
) -> LinearProbeResult:
    """Fit a linear probe on frozen `train_features` and score it on `test_features`.

    The hyper-parameters (learning rate x weight decay for the classifiers, the ridge strength for regression) are
    chosen by the score on a validation split of the training rows (`validation_fraction`, stratified for
    single-label targets, drawn with `seed`); the probe is then refitted on every training row and scored once on
    the test set. `regression_error(predictions, targets)` scores regression (lower is better; default: mean squared
    error), e.g. a landmark NME. Different seeds give different validation splits and initialisations.
    """
    train_x, train_y, test_x, test_y = _check_inputs(train_features, train_targets, test_features, test_targets, kind)
    for name, values in (
        ("learning_rates", learning_rates),
        ("weight_decays", weight_decays),
        ("ridge_alphas", ridge_alphas),
    ):
        if not len(values) or any(not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0) for v in values):
            raise ValueError(f"{name} must be a non-empty list of finite numbers >= 0, got {list(values)!r}.")
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}.")
    error_fn = regression_error or (lambda p, t: float(F.mse_loss(p, t)))
    higher_is_better = kind != "regression"
    train_x, test_x = standardize(train_x, test_x)
    fit_rows, held_rows = validation_split(train_y, kind, validation_fraction, seed)
    num_outputs = int(max(train_y.max(), test_y.max())) + 1 if kind == "single_label" else train_y.shape[1]

    def fit(rows, settings):
        x, y = train_x[rows], train_y[rows]
        if kind == "regression":
            return _fit_ridge(x, y, [setting["ridge_alpha"] for setting in settings])
        return _fit_logistic(x, y, kind, settings, steps, seed, num_outputs)

    settings = (
        [{"ridge_alpha": float(a)} for a in ridge_alphas]
        if kind == "regression"
        else [{"learning_rate": float(lr), "weight_decay": float(wd)} for lr in learning_rates for wd in weight_decays]
    )
    tried = []
    for setting, model in zip(settings, fit(fit_rows, settings)):
        score = _score(_predict(model, train_x[held_rows]), train_y[held_rows], kind, error_fn)
        tried.append({**setting, "validation_score": score})
    pick = max if higher_is_better else min
    best = pick(tried, key=lambda entry: entry["validation_score"])
    chosen = {key: value for key, value in best.items() if key != "validation_score"}
    model = fit(np.arange(len(train_x)), [chosen])[0]
    predictions = _predict(model, test_x)
    return LinearProbeResult(
        test_score=_score(predictions, test_y, kind, error_fn),
        higher_is_better=higher_is_better,
        hyperparameters=chosen,
        validation_scores=tried,
        test_predictions=predictions if return_predictions else None,
    )


__all__ = [
    "DEFAULT_LEARNING_RATES",
    "DEFAULT_RIDGE_ALPHAS",
    "DEFAULT_WEIGHT_DECAYS",
    "LinearProbeResult",
    "TARGET_KINDS",
    "linear_probe",
    "standardize",
    "validation_split",
]

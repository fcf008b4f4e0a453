"""ProSForImageClassification: a linear classifier on the ProS backbone, for attributes and expressions.

As transformers' `ViTForImageClassification` / `Dinov2ForImageClassification`: the classifier sees the final-norm CLS
token (`classifier_pooling="cls"`) or CLS concatenated with the mean patch token ("cls_mean"); the loss follows
`config.problem_type`, inferred from the labels when unset (one output: regression; integer labels: single-label
cross-entropy; float labels: multi-label BCE). Attributes are `problem_type="multi_label_classification"`, expressions
single-label.

Copied next to the weights by `save_pretrained` for `trust_remote_code=True` users: torch, transformers and
relative imports only.
"""

import torch
from torch import nn
from torch.nn import functional as F
from transformers.modeling_outputs import ImageClassifierOutput

from .configuration_pros import ProSConfig
from .modeling_pros import ProSModel, ProSPreTrainedModel
from .modeling_pros_heads import head_from_backbone


class ProSForImageClassification(ProSPreTrainedModel):
    """ProS backbone + linear classifier.

    Build it from a pre-trained backbone with `ProSForImageClassification.from_backbone(folder_or_model,
    num_labels=..., problem_type=...)`, or with `from_pretrained(prosmodel_folder, num_labels=...)` (transformers loads
    the backbone into `pros` and initialises the classifier).
    """

    # the loss is a per-batch mean that ignores `num_items_in_batch`: tell transformers' Trainer to scale it for
    # gradient accumulation itself
    accepts_loss_kwargs = False

    def __init__(self, config: ProSConfig):
        super().__init__(config)
        config.sync_label_maps()
        self.num_labels = config.num_labels
        self.pros = ProSModel(config)
        width = config.hidden_size * (2 if config.classifier_pooling == "cls_mean" else 1)
        self.classifier = nn.Linear(width, config.num_labels) if config.num_labels > 0 else nn.Identity()
        self.post_init()

    @classmethod
    def from_backbone(cls, pretrained, **config_overrides) -> "ProSForImageClassification":
        """A classifier on the backbone of `pretrained`: a `ProSModel` or its folder / Hub id, a fine-tuned head's
        folder, or a pre-training checkpoint (`ProSForPreTraining` or its folder, whose EMA teacher is taken).
        `config_overrides` (e.g. `num_labels=7`, `id2label=...`, `problem_type="multi_label_classification"`,
        `classifier_pooling`) are added to the backbone's config. The classifier is freshly initialised."""
        return head_from_backbone(cls, pretrained, **config_overrides)

    def _pool(self, sequence_output: torch.Tensor) -> torch.Tensor:
        cls_token = sequence_output[:, 0]
        if self.config.classifier_pooling == "cls_mean":
            return torch.cat((cls_token, sequence_output[:, 1:].mean(dim=1)), dim=-1)
        return cls_token

    def _problem_type(self, labels: torch.Tensor) -> str:
        """`config.problem_type`, or what the labels imply when it is unset (as transformers infers it)."""
        if self.config.problem_type is not None:
            return self.config.problem_type
        if self.num_labels == 1:
            return "regression"
        return "multi_label_classification" if labels.is_floating_point() else "single_label_classification"

    def _check_labels(self, labels: torch.Tensor, batch_size: int, problem_type: str) -> torch.Tensor:
        """Labels of the wrong kind raise here, saying what was expected, instead of deep inside a torch loss."""
        num_labels, shape = self.num_labels, tuple(labels.shape)
        if problem_type == "single_label_classification":
            if labels.is_floating_point() or labels.dtype == torch.bool or labels.numel() != batch_size:
                raise ValueError(
                    f"Single-label classification expects integer class indices of shape ({batch_size},), got "
                    f"dtype {labels.dtype} and shape {shape}; for multi-hot float labels set "
                    "problem_type='multi_label_classification'."
                )
            labels = labels.reshape(batch_size)
            bad = ((labels < 0) | (labels >= num_labels)) & (labels != -100)
            if bad.any():
                rows = bad.nonzero().flatten().tolist()
                raise ValueError(
                    f"Labels must be class indices in [0, {num_labels - 1}] (or -100 to ignore), got "
                    f"{labels[bad].tolist()[:5]} in batch rows {rows[:5]}; check num_labels / id2label."
                )
            return labels
        if problem_type == "multi_label_classification":
            if shape != (batch_size, num_labels):
                raise ValueError(
                    f"Multi-label classification expects multi-hot labels of shape (batch={batch_size}, "
                    f"num_labels={num_labels}), got {shape}."
                )
            labels = labels.to(torch.float32)
            bad = ~(torch.isfinite(labels) & (labels >= 0) & (labels <= 1))
            if bad.any():
                rows = bad.any(dim=1).nonzero().flatten().tolist()
                raise ValueError(f"Multi-label targets must lie in [0, 1], batch rows {rows[:5]} do not.")
            return labels
        # regression
        if labels.numel() != batch_size * num_labels:
            raise ValueError(
                f"Regression expects labels of shape (batch={batch_size}, num_labels={num_labels}), got {shape}."
            )
        labels = labels.to(torch.float32).reshape(batch_size, num_labels)
        if not torch.isfinite(labels).all():
            raise ValueError("Regression labels contain NaN or infinite values.")
        return labels

    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
        interpolate_pos_encoding: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> ImageClassifierOutput | tuple:
        r"""
        pixel_values (`torch.FloatTensor` of shape `(batch_size, num_channels, height, width)`): normalised images;
            any size that is a multiple of `patch_size`.
        labels (`torch.Tensor`, *optional*): class indices `(batch_size,)` (single-label), multi-hot `(batch_size,
            num_labels)` in [0, 1] (multi-label), or float targets (regression).
        interpolate_pos_encoding (`bool`, *optional*): accepted for compatibility with ViT; position embeddings are
            always interpolated to the input size.
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        problem_type = None
        if labels is not None:
            self.pros._check_pixel_values(pixel_values)
            if not isinstance(labels, torch.Tensor):
                raise TypeError(
                    f"ProSForImageClassification expects `labels` as a torch.Tensor, got {type(labels).__name__}."
                )
            problem_type = self._problem_type(labels)
            labels = self._check_labels(labels, pixel_values.shape[0], problem_type)
            self.config.problem_type = problem_type  # stored once known, as transformers' heads do
        outputs = self.pros(
            pixel_values,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            return_dict=True,
        )
        logits = self.classifier(self._pool(outputs.last_hidden_state))

        loss = None
        if labels is not None:
            if problem_type == "regression":
                loss = F.mse_loss(logits.float(), labels)
            elif problem_type == "single_label_classification":
                loss = F.cross_entropy(logits.float(), labels)
            else:
                loss = F.binary_cross_entropy_with_logits(logits.float(), labels)

        output = ImageClassifierOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )
        return output if return_dict else output.to_tuple()


__all__ = ["ProSForImageClassification"]

"""FLOP counting that sees attention on a CPU.

torch's `FlopCounterMode` has formulas for the CUDA attention kernels but none for
`aten._scaled_dot_product_flash_attention_for_cpu` (and its backward), the kernel SDPA runs on a CPU. There a ViT's
attention matmuls would count as zero, and a step's FLOPs and utilisation come out too low. `flop_counter()` adds
the two CPU kernels with torch's own formulas for the CUDA ones (a backward counts 2.5 forwards: it recomputes the
attention scores).
"""

import torch
from torch.utils import flop_counter as _flop_counter
from torch.utils.flop_counter import FlopCounterMode


def _cpu_attention_forward(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return _flop_counter.sdpa_flop_count(query_shape, key_shape, value_shape)


def _cpu_attention_backward(
    grad_out_shape, query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs
) -> int:
    return _flop_counter.sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape, value_shape)


CPU_ATTENTION_FLOPS = {
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_attention_forward,
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward: _cpu_attention_backward,
}


def flop_counter(**kwargs) -> FlopCounterMode:
    """A `FlopCounterMode` (silent unless `display=True` is given) that also counts CPU attention."""
    kwargs.setdefault("display", False)
    mapping = {**CPU_ATTENTION_FLOPS, **kwargs.pop("custom_mapping", {})}
    return FlopCounterMode(custom_mapping=mapping, **kwargs)


__all__ = ["CPU_ATTENTION_FLOPS", "flop_counter"]

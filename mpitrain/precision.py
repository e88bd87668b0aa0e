"""The floating precisions by name, in one map: the trainer's short names (fp32, bf16, fp16) and
the long ones the kernels and collectives use (float32, bfloat16, float16), to torch dtypes.

    torch_dtype("bf16") == torch_dtype("bfloat16") == torch.bfloat16
    with autocast(device, "bf16"): ...        # fp32: autocast off
"""
SHORT = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


def torch_dtype(name):
    import torch
    return getattr(torch, SHORT.get(name, name))


def autocast(device_type, precision):
    """torch.autocast in `precision` (fp32, bf16 or fp16); fp32 leaves it off."""
    import torch
    enabled = precision != "fp32"
    return torch.autocast(device_type, torch_dtype(precision) if enabled else torch.float32,
                          enabled=enabled)

"""Which attention isolates the samples of a packed row, and the forward inputs it needs.

- flash_attention_2: the flash-attn package's flash_attn_varlen_func with cu_seqlens (CUDA);
- torch_varlen: PyTorch's own flash kernel for variable-length sequences
  (torch.nn.attention.varlen, PyTorch >= 2.10), for CUDA machines without the flash-attn package;
- sdpa: an exact block-diagonal causal mask (CPU, or any device), dense in the row length.
The varlen kernels only ever compute attention inside a sample; the mask path computes the whole
row and masks it, which costs as much as the padding that packing saved at long rows.
"""
import inspect

import torch
import torch.nn.functional as F

from agentune.packing import block_causal_mask

TORCH_VARLEN = "torch_varlen"


def choose_implementation():
    if not torch.cuda.is_available():
        return "sdpa"
    try:
        import flash_attn  # noqa: F401
        return "flash_attention_2"
    except ImportError:
        pass
    try:
        from torch.nn.attention.varlen import varlen_attn  # noqa: F401
    except ImportError:
        return "sdpa"
    register_torch_varlen()
    return TORCH_VARLEN


def register_torch_varlen():
    """Make attn_implementation='torch_varlen' known to transformers."""
    from torch.nn.attention.varlen import varlen_attn
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, flash_attention_mask
    params = inspect.signature(varlen_attn).parameters
    # PyTorch 2.10 takes is_causal; later releases express causality as a (-1, 0) window
    causal = {"window_size": (-1, 0)} if "window_size" in params else {"is_causal": True}

    def attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
        cu, max_len = kwargs["cu_seq_lens_q"], kwargs["max_length_q"]
        q, k, v = (x[0].transpose(0, 1).contiguous() for x in (query, key, value))  # (T, heads, dim)
        if k.shape[1] != q.shape[1]:  # grouped-query attention: each kv head serves a group
            k = k.repeat_interleave(q.shape[1] // k.shape[1], dim=1)
            v = v.repeat_interleave(q.shape[1] // v.shape[1], dim=1)
        extra = {"scale": scaling} if "scale" in params and scaling is not None else {}
        out = varlen_attn(q, k, v, cu, cu, max_len, max_len, **causal, **extra)
        return out.unsqueeze(0), None

    AttentionInterface.register(TORCH_VARLEN, attention)
    AttentionMaskInterface.register(TORCH_VARLEN, flash_attention_mask)


def packed_forward_kwargs(batch, implementation, device):
    """Model inputs for one flattened packed micro-batch (see agentune.packing.collate)."""
    kwargs = dict(input_ids=batch["input_ids"].to(device), position_ids=batch["position_ids"].to(device),
                  use_cache=False)
    if implementation == "sdpa":
        kwargs["attention_mask"] = block_causal_mask(batch["cu_seqlens"], device)
    else:  # transformers hands these to the varlen kernel
        cu = batch["cu_seqlens"].to(device)
        max_len = int((cu[1:] - cu[:-1]).max())
        kwargs.update(cu_seq_lens_q=cu, cu_seq_lens_k=cu, max_length_q=max_len, max_length_k=max_len)
    return kwargs


def token_losses(model, batch, device, implementation):
    """Sum of the cross-entropy over the trained tokens of one flattened micro-batch, and their count."""
    logits = model(**packed_forward_kwargs(batch, implementation, device)).logits
    labels = batch["labels"][:, 1:].to(device)
    loss_sum = F.cross_entropy(logits[:, :-1].float().flatten(0, 1), labels.flatten(),
                               ignore_index=-100, reduction="sum")
    return loss_sum, int((labels != -100).sum())

"""Which attention isolates the samples of a packed row, and the forward inputs it needs.

- flash_attention_2: the flash-attn package's flash_attn_varlen_func with cu_seqlens (CUDA);
- torch_varlen: PyTorch's own flash kernel for variable-length sequences
  (torch.nn.attention.varlen, PyTorch >= 2.10), for CUDA machines without the flash-attn package;
- segment_sdpa: PyTorch's scaled_dot_product_attention run once per sample of the row
  (is_causal=True, native grouped-query attention), the CPU default: no T x T mask, no K/V copies;
- sdpa: an exact block-diagonal causal mask (any device), dense in the row length.
The varlen kernels and segment_sdpa only ever compute attention inside a sample; the mask path
computes the whole row and masks it, which costs as much as the padding that packing saved.

token_losses computes the LM head and the cross-entropy only at the positions whose next token is
trained (transformers' logits_to_keep), so no full-vocabulary logits are made for prompt tokens.
"""
import inspect

import torch
import torch.nn.functional as F

from agentune.packing import block_causal_mask

TORCH_VARLEN = "torch_varlen"
SEGMENT_SDPA = "segment_sdpa"
IMPLEMENTATIONS = ("auto", "flash_attention_2", TORCH_VARLEN, SEGMENT_SDPA, "sdpa")


def choose_implementation(requested="auto"):
    """The attention for packed rows: `requested`, or with 'auto' the fastest exact one here."""
    if requested not in IMPLEMENTATIONS:
        raise SystemExit(f"config error: --attn_implementation={requested}; known: {', '.join(IMPLEMENTATIONS)}")
    if requested == SEGMENT_SDPA or (requested == "auto" and not torch.cuda.is_available()):
        register_segment_sdpa()
        return SEGMENT_SDPA
    if requested == TORCH_VARLEN:
        register_torch_varlen()
    if requested != "auto":
        return requested
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


def register_segment_sdpa():
    """Make attn_implementation='segment_sdpa' known to transformers: per-sample causal SDPA."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, flash_attention_mask

    # left out of torch.compile (agentune.model.compile_decoder_layers): the loop over the samples
    # depends on the row, a compiled one would be recompiled for every new sample count
    @torch.compiler.disable
    def attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
        # query (1, heads, T, dim), key/value (1, kv_heads, T, dim); one SDPA call per sample
        bounds = kwargs["cu_seq_lens_q"].tolist()
        dropout = dropout if module.training else 0.0
        out = torch.cat([F.scaled_dot_product_attention(
            query[:, :, a:b], key[:, :, a:b], value[:, :, a:b], dropout_p=dropout, is_causal=True,
            scale=scaling, enable_gqa=True) for a, b in zip(bounds[:-1], bounds[1:])], dim=2)
        return out.transpose(1, 2).contiguous(), None  # (1, T, heads, dim)

    AttentionInterface.register(SEGMENT_SDPA, attention)
    AttentionMaskInterface.register(SEGMENT_SDPA, flash_attention_mask)


CACHED_GQA = "cached_gqa"


def register_cached_gqa():
    """Make attn_implementation='cached_gqa' known to transformers: the hf agent's attention over
    its slot cache (agentune.agents.SlotCache), which hands each layer its rows' keys/values.

    A step feeds the new tokens of all rows as one flat sequence (1, heads, tokens, dim): each
    decoding row's last token and the tokens drafted after it (agentune.agents.HFAgent._draft), then
    the prompts of the rows admitted since the last step (their prefill). The forward's kwarg
    `groups` says where each token belongs: a list of (rows, tokens, row_of, col_of, bias), rows and
    tokens slices of the cache's rows and of the flat sequence, row_of/col_of each token's row
    (within the group) and place among its row's new tokens, bias the additive mask in the model's
    dtype (group rows, 1, most new tokens of a row, width). The decoding rows are one group; a
    prefilling row is a group of its own, so its long prompt pads no other row's queries (the
    attention_mask argument is only there for transformers and goes unused). In each group the
    queries are laid out per row, each kv head's group of queries is multiplied with that head's
    keys (no per-head copies), softmax (fp32 inside), and the outputs go back to the flat order. The
    linears before and after thus see only real tokens, all rows' in one pass. transformers' sdpa
    path instead runs PyTorch's flash kernel, slow on CPUs for a few queries per row, and repeats
    keys/values per head on devices without native GQA. The cache hands over its rows' whole
    capacity, one contiguous block (a group's rows: a slice of it), which the CPU's batched bf16
    matmul reads in place (strided views it copies first). Without groups (model.generate, in
    reply_plain) it is SDPA with native grouped-query attention and the mask given (or causal)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    def grouped(query, key, value, row_of, col_of, bias, scaling):
        """query (tokens, heads, dim) of the rows whose keys/values are key, value (rows, kv heads, width, dim)."""
        heads, dim = query.shape[1], query.shape[2]
        rows, kv_heads, width, _ = key.shape
        span = bias.shape[2]  # the most new tokens of one row
        group = heads // kv_heads
        laid = query.new_zeros(rows, heads, span, dim)
        laid[row_of, :, col_of] = query * scaling  # scaled here, on tokens x dims, not on the scores (x width)
        by_kv_head = laid.reshape(rows, kv_heads, group * span, dim)
        # softmax takes the scores in the model's dtype: it computes in fp32 inside and rounds its output
        # as a cast after an fp32 softmax would; an fp32 copy of the scores made a drafted step's
        # softmax ~2.5x slower (the products are rounded to bf16 anyway; at head dim 64 the scaling, 1/8,
        # is exact wherever it is applied)
        scores = torch.matmul(by_kv_head, key.transpose(-1, -2))  # (rows, kv heads, group * span, width)
        scores = scores.view(rows, kv_heads, group, span, width).add_(bias.unsqueeze(1))
        probs = torch.softmax(scores, dim=-1).view(rows, kv_heads, group * span, width)
        return torch.matmul(probs, value).view(rows, heads, span, dim)[row_of, :, col_of]

    def attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, groups=None, **kwargs):
        scaling = query.shape[3] ** -0.5 if scaling is None else scaling
        if groups is None:
            out = F.scaled_dot_product_attention(query, key, value, attn_mask=attention_mask, scale=scaling,
                                                 is_causal=attention_mask is None, enable_gqa=True)
            return out.transpose(1, 2).contiguous(), None
        flat = query[0].transpose(0, 1)  # (tokens, heads, dim)
        outs = [grouped(flat[tokens], key[rows], value[rows], row_of, col_of, bias, scaling)
                for rows, tokens, row_of, col_of, bias in groups]
        return torch.cat(outs).unsqueeze(0), None  # (1, tokens, heads, dim)

    AttentionInterface.register(CACHED_GQA, attention)
    AttentionMaskInterface.register(CACHED_GQA, sdpa_mask)


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


class TokenCrossEntropy(torch.autograd.Function):
    """Summed cross-entropy of logits (tokens, vocab) in any dtype, computed in fp32 a few rows at a
    time: the same loss and gradient (rounded to the logits' dtype) as cross_entropy(logits.float()),
    without the fp32 copy of the logits, their fp32 log-probabilities and their fp32 gradient
    (three full-vocabulary fp32 tensors per micro-batch: on a CPU their memory traffic and page faults
    took more time than the LM head's matmul). Chunks of ~1 MB of fp32 stay in the core's cache."""

    @staticmethod
    def forward(ctx, logits, targets, chunk):
        lse = torch.empty(logits.shape[0], dtype=torch.float32, device=logits.device)
        for a in range(0, logits.shape[0], chunk):
            lse[a:a + chunk] = torch.logsumexp(logits[a:a + chunk].float(), dim=-1)
        picked = logits.gather(1, targets[:, None]).squeeze(1).float()
        ctx.save_for_backward(logits, targets, lse)
        ctx.chunk = chunk
        return (lse - picked).sum()

    @staticmethod
    def backward(ctx, grad):
        logits, targets, lse = ctx.saved_tensors
        out = torch.empty_like(logits)
        for a in range(0, logits.shape[0], ctx.chunk):
            part = torch.exp(logits[a:a + ctx.chunk].float() - lse[a:a + ctx.chunk, None])  # softmax
            part[torch.arange(part.shape[0], device=part.device), targets[a:a + ctx.chunk]] -= 1
            out[a:a + ctx.chunk] = part.mul_(grad)
        return out, None, None


def summed_cross_entropy(logits, targets):
    """Sum over rows of the fp32 cross-entropy of logits (tokens, vocab); on CPU chunked
    (TokenCrossEntropy), on GPUs cross_entropy on an fp32 copy as before."""
    if logits.device.type != "cpu":
        return F.cross_entropy(logits.float(), targets, reduction="sum")
    return TokenCrossEntropy.apply(logits, targets, max(1, 2 ** 18 // logits.shape[-1]))


def token_losses(model, batch, device, implementation):
    """Sum of the cross-entropy over the trained tokens of one flattened micro-batch, and their count.

    The LM head runs only on the hidden states of positions whose next token is trained (gathered
    by logits_to_keep), and the loss is taken in fp32 whatever the compute dtype."""
    labels = batch["labels"][0, 1:]
    keep = (labels != -100).nonzero().squeeze(1)  # position i predicts token i + 1
    logits = model(**packed_forward_kwargs(batch, implementation, device), logits_to_keep=keep.to(device)).logits
    # squeeze, a view: logits[0] would give the backward a zeroed full-size gradient to copy into
    loss_sum = summed_cross_entropy(logits.squeeze(0), labels[keep].to(device))
    return loss_sum, len(keep)

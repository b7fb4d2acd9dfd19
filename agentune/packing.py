"""Packing tokenized samples into fixed-length rows, and the per-row tensors the trainer feeds.

A row holds several whole samples; position ids restart at 0 for each sample, and attention never
crosses a sample boundary (flash-attn varlen with cu_seqlens on GPU, an exact block-diagonal
causal mask otherwise), so each sample's logits are exactly those it gets when run alone.
"""
import bisect
import math
import random

import torch


def best_fit_decreasing(lengths, capacity):
    """Bins (lists of sample indices) whose lengths sum to at most capacity: each sample, longest
    first, goes into the fullest bin it still fits in (ties: the earliest opened)."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    bins, free = [], []          # free: sorted list of (space left, bin index)
    for i in order:
        n = lengths[i]
        if n > capacity:
            raise ValueError(f"sample {i} has {n} tokens, more than the row length {capacity}")
        at = bisect.bisect_left(free, (n, -1))
        if at < len(free):
            space, b = free.pop(at)
            bins[b].append(i)
            if space - n > 0:
                bisect.insort(free, (space - n, b))
        else:
            bins.append([i])
            if capacity - n > 0:
                bisect.insort(free, (capacity - n, len(bins) - 1))
    return bins


def epoch_rows(lengths, capacity, seed, epoch):
    """The packed rows of one epoch, in a seeded random order (deterministic for seed, epoch)."""
    rows = best_fit_decreasing(lengths, capacity)
    rng = random.Random(seed * 1_000_003 + epoch)
    rng.shuffle(rows)
    for row in rows:  # a random order inside a row too, so no row always starts long
        rng.shuffle(row)
    return rows


def rank_micro_batches(rows, rank, world, micro):
    """This rank's contiguous share of rows as micro-batches (lists of rows), the same number on
    every rank whatever len(rows): a short rank gets empty batches ([]) to run as zero-weight
    forwards. Under ZeRO-3 every forward gathers weights from all ranks, so one rank with a
    forward more than the others would deadlock them."""
    per_rank = math.ceil(len(rows) / (world * micro)) * micro
    mine = rows[rank * per_rank:(rank + 1) * per_rank]
    return [mine[i:i + micro] for i in range(0, per_rank, micro)]


def collate(samples, pad_id):
    """One flattened micro-batch from a list of (input_ids, loss_mask) samples.

    Returns input_ids, labels (-100 where untrained), position_ids (restarting per sample), all of
    shape (1, T), and cu_seqlens (int32, [0, len1, len1+len2, ...]) with T = total length."""
    ids, labels, positions, cu = [], [], [], [0]
    for sample_ids, mask in samples:
        ids += sample_ids
        labels += [t if m else -100 for t, m in zip(sample_ids, mask)]
        positions += range(len(sample_ids))
        cu.append(cu[-1] + len(sample_ids))
    as_row = lambda xs: torch.tensor(xs, dtype=torch.long).unsqueeze(0)
    return {"input_ids": as_row(ids), "labels": as_row(labels), "position_ids": as_row(positions),
            "cu_seqlens": torch.tensor(cu, dtype=torch.int32)}


def block_causal_mask(cu_seqlens, device=None):
    """(1, 1, T, T) boolean mask, True where query i may attend key j: same sample and j <= i."""
    cu_seqlens = cu_seqlens.to(device)
    lengths = (cu_seqlens[1:] - cu_seqlens[:-1]).long()
    sample_of = torch.repeat_interleave(torch.arange(len(lengths), device=device), lengths)
    total = int(cu_seqlens[-1])
    causal = torch.ones(total, total, dtype=torch.bool, device=device).tril()
    return (causal & (sample_of[:, None] == sample_of[None, :]))[None, None]

"""Attention for the shared-prefix layout that computes only the blocks the tree lets through.

In a packed row a response attends to its prompt and to itself (lambda_dpo/data/packing.py). A
dense 4-D mask makes the attention kernel score every pair of tokens in the row and throw most
away: a prompt with four responses wastes the response-to-other-response blocks, and rows of
several prompts waste more. Here every block is computed on its own: a prompt's tokens attend
causally to the prompt, a response's tokens to its prompt's keys followed by its own, causally.
Blocks of similar length are gathered into buckets (padding within a bucket is bounded by
:data:`SLACK`), one SDPA call per bucket and layer, and the outputs are written back to their
places in the rows. The result equals dense masked attention (tested against
:func:`lambda_dpo.data.packing.attends`).

It is registered with transformers' ``AttentionInterface`` (:func:`install_tree_attention`, done
by the scorer once per model): a layer handed the batch's :class:`TreePlan` as a keyword argument,
which transformers passes down to every attention layer, attends by the tree; any other call runs
the model's own implementation.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from lambda_dpo.data.packing import Layout

TREE_ATTENTION = "lambda_dpo_tree"
SLACK = 1.3  # a bucket's padded query × key area stays within this factor of its blocks' own


@dataclass
class Bucket:
    """Blocks attended in one SDPA call, as flat indices into a batch's ``R·L`` positions:
    ``query_index`` ``[n, q]`` (``query_valid`` marks real queries), ``key_index`` ``[n, k]`` and
    ``mask`` ``[n, 1, q, k]`` (True = attend; every query row sees at least one key)."""

    query_index: Tensor
    query_valid: Tensor
    key_index: Tensor
    mask: Tensor


@dataclass
class TreePlan:
    """The buckets of one packed batch, built once and used by every layer."""

    buckets: list[Bucket]

    @classmethod
    def of(cls, layout: Layout) -> "TreePlan":
        """Prompt blocks (causal within the prompt) and response blocks (the prompt's keys, then the
        response's own, causally), each bucketed by size."""
        prompts = [(int(start), int(length)) for start, length in layout.prompt_blocks.tolist()]
        blocks = [(_range(start, length), [], _range(start, length)) for start, length in prompts]  # (queries, prompt keys, own keys)
        blocks += [(_range(start, length), _range(*prompts[prompt]), _range(start, length)) for start, length, prompt in layout.response_blocks.tolist()]
        device = layout.prompt_blocks.device
        return cls([_bucket([blocks[i] for i in members], device) for members in _buckets(blocks)])


def _range(start: int, length: int) -> list[int]:
    return list(range(start, start + length))


def _area(block) -> int:
    queries, prompt_keys, own_keys = block
    return len(queries) * (len(prompt_keys) + len(own_keys))


def _buckets(blocks) -> list[list[int]]:
    """Indices of ``blocks`` grouped largest first, a bucket closed when padding its next block to
    the bucket's widest would exceed :data:`SLACK` × the blocks' own area."""
    order = sorted(range(len(blocks)), key=lambda i: (-len(blocks[i][0]), -len(blocks[i][1])))
    groups, current, area, widths = [], [], 0, (0, 0, 0)
    for i in order:
        queries, prompt_keys, own_keys = blocks[i]
        grown = tuple(max(a, b) for a, b in zip(widths, (len(queries), len(prompt_keys), len(own_keys))))
        if current and (len(current) + 1) * grown[0] * (grown[1] + grown[2]) > SLACK * (area + _area(blocks[i])):
            groups.append(current)
            current, area, grown = [], 0, (len(queries), len(prompt_keys), len(own_keys))
        current.append(i)
        area += _area(blocks[i])
        widths = grown
    return groups + [current] if current else groups


def _bucket(blocks, device) -> Bucket:
    """Queries padded to the widest; keys as [prompt keys, padded | own keys, padded], with the
    prompt part visible where real and the own part causal."""
    q_width = max(len(queries) for queries, _, _ in blocks)
    p_width = max(len(prompt_keys) for _, prompt_keys, _ in blocks)
    n = len(blocks)
    query_index = torch.zeros(n, q_width, dtype=torch.long)
    query_valid = torch.zeros(n, q_width, dtype=torch.bool)
    key_index = torch.zeros(n, p_width + q_width, dtype=torch.long)
    prompt_visible = torch.zeros(n, p_width, dtype=torch.bool)
    for row, (queries, prompt_keys, own_keys) in enumerate(blocks):
        query_index[row, : len(queries)] = torch.tensor(queries)
        query_valid[row, : len(queries)] = True
        key_index[row, : len(prompt_keys)] = torch.tensor(prompt_keys, dtype=torch.long)
        key_index[row, p_width : p_width + len(own_keys)] = torch.tensor(own_keys)
        prompt_visible[row, : len(prompt_keys)] = True
    causal = torch.ones(q_width, q_width, dtype=torch.bool).tril()
    # A padded query row still sees its block's first own key (causal), so no softmax row is empty.
    mask = torch.cat([prompt_visible[:, None, :].expand(-1, q_width, -1), causal.expand(n, -1, -1)], dim=-1)
    return Bucket(query_index.to(device), query_valid.to(device), key_index.to(device), mask[:, None].to(device))


def _gathered(flat: Tensor, index: Tensor) -> Tensor:
    """``[R·L, H, D]`` states at flat positions ``index`` ``[n, w]`` → ``[n, H, w, D]``."""
    return flat[index].permute(0, 2, 1, 3)


def tree_attention(module, query: Tensor, key: Tensor, value: Tensor, attention_mask=None, *, scaling=None, dropout: float = 0.0,
                   tree_plan: TreePlan | None = None, **unused) -> tuple[Tensor, None]:
    """transformers attention function: query ``[B, H, L, D]``, key/value ``[B, Hkv, L, D]`` →
    ``[B, L, H, D]``; ``tree_plan`` names the blocks (the attention mask is not used). Positions
    that belong to no block (padding) get zeros."""
    if tree_plan is None:
        raise ValueError("tree attention runs only on a shared-prefix batch (lambda_dpo.modeling.ResponseScorer)")
    batch, heads, length, dim = query.shape
    repeat = heads // key.shape[1]
    if repeat > 1:  # grouped-query attention: each key/value head serves `repeat` query heads
        key, value = key.repeat_interleave(repeat, dim=1), value.repeat_interleave(repeat, dim=1)
    flat_query, flat_key, flat_value = (states.transpose(1, 2).reshape(batch * length, heads, dim) for states in (query, key, value))
    dropout = dropout if module.training else 0.0
    out = None
    for bucket in tree_plan.buckets:
        attended = F.scaled_dot_product_attention(
            _gathered(flat_query, bucket.query_index), _gathered(flat_key, bucket.key_index), _gathered(flat_value, bucket.key_index),
            attn_mask=bucket.mask, dropout_p=dropout, scale=scaling,
        )
        if out is None:  # in SDPA's output dtype: under autocast that is the autocast dtype, not the fp32 query's
            out = attended.new_zeros(batch * length, heads, dim)
        out = out.index_put((bucket.query_index[bucket.query_valid],), attended.permute(0, 2, 1, 3)[bucket.query_valid])
    return out.view(batch, length, heads, dim), None


def install_tree_attention(model) -> None:
    """Give ``model``'s attention layers :func:`tree_attention` for calls that carry a ``tree_plan``
    and their own implementation (sdpa, eager, …) for all others, with that implementation's masks.

    Installed once and left in place: gradient checkpointing recomputes a layer in the backward
    pass, outside any forward-time switch, and must meet the same function. transformers does not
    save the implementation's name with a model."""
    import sys

    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    config = model.config
    own = config._attn_implementation or "sdpa"
    if own.startswith(TREE_ATTENTION):
        return
    name = f"{TREE_ATTENTION}+{own}"

    def attention(module, query, key, value, attention_mask=None, **kwargs):
        if kwargs.get("tree_plan") is not None:
            return tree_attention(module, query, key, value, attention_mask, **kwargs)
        # "eager" is each model's own function, in its modeling module; the others are registered.
        fallback = ALL_ATTENTION_FUNCTIONS[own] if own in ALL_ATTENTION_FUNCTIONS else sys.modules[type(module).__module__].eager_attention_forward
        return fallback(module, query, key, value, attention_mask, **kwargs)

    AttentionInterface.register(name, attention)
    AttentionMaskInterface.register(name, ALL_MASK_ATTENTION_FUNCTIONS[own])
    config._attn_implementation = name

"""Layouts of a listwise batch for the forward pass, and which hidden state scores which token.

The collator's batch is *padded*: ``B·N`` rows, each a prompt followed by one response, so a
prompt is encoded N times and every row is padded to the longest. The *shared-prefix* layout
(``data.packing: shared_prefix``) writes each prompt once, followed by its N responses; several
prompts share a row up to ``data.max_tokens_per_row`` tokens, so padding is left only at the
ends of rows. Its attention is a tree (:func:`attends`): a response sees its prompt and itself,
causally, never another response or another prompt; positions restart after the prompt for
each response. Each (prompt, response) is then computed exactly as in its padded row: same
positions, same attended tokens. docs/method.md ("Shared-prefix packing") has a picture.

Both layouts reduce to the same description of what to score: for every response token, the
row and position of the hidden state that predicts it (``rows``, ``positions``), the token
(``targets``) and the response it belongs to (``owners``: ``b·N + i``). In the shared layout
the first token of every response is predicted from the prompt's last position.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from lambda_dpo.data.collate import IGNORE_INDEX

PACKINGS = ("none", "shared_prefix")
PROMPT_BRANCH = 0  # branch id of prompt tokens; response i of a prompt has branch i + 1
PADDING = -1  # segment id of padding


@dataclass
class Layout:
    """A batch laid out for one forward pass.

    input_ids: ``[R, L]``. position_ids: ``[R, L]``. attention_mask: ``[R, L]`` 2-D padding mask
    (padded layout) or None. segments, branches: ``[R, L]`` (shared layout): which prompt a
    token belongs to (PADDING for padding) and whether it is that prompt's text (PROMPT_BRANCH)
    or its response i (i + 1). rows, positions, targets, owners: ``[T]``, one entry per scored
    response token. num_responses: B·N, the number of owners. prompt_blocks ``[G, 2]`` and
    response_blocks ``[S, 3]`` (shared layout): where each prompt and each response sits, as
    (flat start in the ``R·L`` positions, length) and, for a response, the index of its prompt's block.
    """

    input_ids: Tensor
    position_ids: Tensor | None
    attention_mask: Tensor | None
    segments: Tensor | None
    branches: Tensor | None
    rows: Tensor
    positions: Tensor
    targets: Tensor
    owners: Tensor
    num_responses: int
    prompt_blocks: Tensor | None = None
    response_blocks: Tensor | None = None

    @property
    def shared(self) -> bool:
        return self.segments is not None

    def to(self, device: torch.device) -> "Layout":
        moved = {name: (value.to(device) if isinstance(value, Tensor) else value) for name, value in vars(self).items()}
        return Layout(**moved)


def padded_layout(batch: dict[str, Tensor]) -> Layout:
    """The collator's own layout: row ``b·N + i`` is prompt b then response i, right-padded; the
    token at position t is predicted by the hidden state at t − 1."""
    labels = batch["labels"]
    rows, label_positions = (labels[:, 1:] != IGNORE_INDEX).nonzero(as_tuple=True)
    return Layout(
        input_ids=batch["input_ids"], position_ids=None, attention_mask=batch["attention_mask"], segments=None, branches=None,
        rows=rows, positions=label_positions, targets=labels[rows, label_positions + 1], owners=rows, num_responses=labels.shape[0],
    )


def _groups(batch: dict[str, Tensor]) -> list[tuple[list[int], list[tuple[int, list[int]]]]]:
    """Per prompt: its token ids and its responses as ``(owner, token ids)`` (padded slots left out)."""
    input_ids, labels, lengths = batch["input_ids"], batch["labels"], batch["attention_mask"].sum(dim=-1)
    num_prompts, slots = batch["response_mask"].shape
    scored = labels != IGNORE_INDEX
    groups = []
    for b in range(num_prompts):
        prompt, responses = None, []
        for i in range(slots):
            row = b * slots + i
            if not bool(batch["response_mask"][b, i]) or not bool(scored[row].any()):
                continue
            start, end = int(scored[row].nonzero()[0]), int(lengths[row])
            if prompt is None:
                prompt = input_ids[row, :start].tolist()
            responses.append((row, input_ids[row, start:end].tolist()))
        if prompt is not None:
            groups.append((prompt, responses))
    return groups


def shared_prefix_layout(batch: dict[str, Tensor], max_tokens_per_row: int, pad_token_id: int) -> Layout:
    """Each prompt once, then its responses, prompts packed first-fit decreasing into rows of at
    most ``max_tokens_per_row`` tokens (a prompt whose responses alone exceed it gets a row of its own)."""
    groups = _groups(batch)
    sizes = [len(prompt) + sum(len(ids) for _, ids in responses) for prompt, responses in groups]
    rows_of_groups: list[list[int]] = []
    room: list[int] = []
    for index in sorted(range(len(sizes)), key=lambda g: -sizes[g]):  # first fit, largest first: rows of even lengths
        size = sizes[index]
        target = next((r for r, free in enumerate(room) if free >= size), None)
        if target is None:
            rows_of_groups.append([index])
            room.append(max_tokens_per_row - size)
        else:
            rows_of_groups[target].append(index)
            room[target] -= size
    length = max(sum(sizes[g] for g in row) for row in rows_of_groups)
    shape = (len(rows_of_groups), length)
    input_ids = torch.full(shape, pad_token_id, dtype=torch.long)
    position_ids = torch.zeros(shape, dtype=torch.long)
    segments = torch.full(shape, PADDING, dtype=torch.long)
    branches = torch.zeros(shape, dtype=torch.long)
    rows, positions, targets, owners = [], [], [], []
    prompt_blocks, response_blocks = [], []
    for r, members in enumerate(rows_of_groups):
        cursor = 0
        for g in members:
            prompt, responses = groups[g]
            p = len(prompt)
            prompt_blocks.append((r * length + cursor, p))
            input_ids[r, cursor : cursor + p] = torch.tensor(prompt)
            position_ids[r, cursor : cursor + p] = torch.arange(p)
            segments[r, cursor : cursor + p] = g
            prompt_end = cursor + p - 1  # its hidden state predicts every response's first token
            cursor += p
            for branch, (owner, ids) in enumerate(responses, start=1):
                n = len(ids)
                response_blocks.append((r * length + cursor, n, len(prompt_blocks) - 1))
                span = slice(cursor, cursor + n)
                input_ids[r, span] = torch.tensor(ids)
                position_ids[r, span] = torch.arange(p, p + n)
                segments[r, span] = g
                branches[r, span] = branch
                rows += [r] * n
                positions += [prompt_end, *range(cursor, cursor + n - 1)]
                targets += ids
                owners += [owner] * n
                cursor += n
    as_long = lambda values: torch.tensor(values, dtype=torch.long)  # noqa: E731
    return Layout(
        input_ids=input_ids, position_ids=position_ids, attention_mask=None, segments=segments, branches=branches,
        rows=as_long(rows), positions=as_long(positions), targets=as_long(targets), owners=as_long(owners),
        num_responses=batch["labels"].shape[0], prompt_blocks=as_long(prompt_blocks).view(-1, 2), response_blocks=as_long(response_blocks).view(-1, 3),
    )


@dataclass(frozen=True)
class LayoutSettings:
    """How a batch is laid out for its forward pass; the collator puts it in the batch as
    ``batch["layout"]`` and :func:`lambda_dpo.modeling.response_logps` applies it to whatever rows
    the batch holds by then (a pairwise loss first keeps only its two responses)."""

    packing: str = "none"
    max_tokens_per_row: int = 1024
    pad_token_id: int = 0

    def of(self, batch: dict[str, Tensor]) -> Layout:
        if self.packing == "none":
            return padded_layout(batch)
        if self.packing == "shared_prefix":
            return shared_prefix_layout(batch, self.max_tokens_per_row, self.pad_token_id)
        raise ValueError(f"data.packing must be one of {', '.join(PACKINGS)}; got {self.packing!r}")


def attends(segments: Tensor, branches: Tensor) -> Tensor:
    """``[R, L, L]`` bool: query q may attend key k (same prompt, k not after q, and k is prompt
    text or in q's own response). Padding attends to itself only, so no softmax row is empty."""
    length = segments.shape[1]
    causal = torch.ones(length, length, dtype=torch.bool, device=segments.device).tril()
    same_prompt = segments[:, :, None] == segments[:, None, :]
    visible_branch = (branches[:, None, :] == PROMPT_BRANCH) | (branches[:, :, None] == branches[:, None, :])
    allowed = causal & same_prompt & visible_branch & (segments[:, None, :] != PADDING)
    padding_self = (segments == PADDING)[:, :, None] & torch.eye(length, dtype=torch.bool, device=segments.device)
    return allowed | padding_self

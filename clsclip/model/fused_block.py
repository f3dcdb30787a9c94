"""open_clip's ``ResidualAttentionBlock`` run with fused attention and a cheaper QuickGELU.

open_clip's block calls ``nn.MultiheadAttention``, whose inference fast path on the CPU computes
attention as two batched products over thin per-head matrices with a separate softmax (about half
the machine's matrix-product rate), and QuickGELU (``x * sigmoid(1.702 x)``) makes three
passes over the MLP's hidden activations. `run_block` computes the same function with the
block's own parameters and submodules: one `scaled_dot_product_attention` over the packed
projection, and the MLP (QuickGELU or GELU) in place on cache-sized blocks of rows when no
gradient is needed (`feed_forward`).
Outputs agree with open_clip's to float rounding (tests: 1e-5 in float32, 1e-12 in float64).

Blocks of any other type (custom blocks, cross-attention, separate q/k/v projections, or
subclasses that may change the computation) and blocks with forward hooks run as open_clip runs
them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


def is_plain_block(block: Any) -> bool:
    """Whether `run_block` computes ``block`` itself (else it calls the block)."""
    from open_clip.transformer import ResidualAttentionBlock

    if type(block) is not ResidualAttentionBlock or hasattr(block, "ln_1_kv"):
        return False
    if block._forward_hooks or block._forward_pre_hooks:  # a user's hooks see the real call
        return False
    attention = block.attn
    return (
        isinstance(attention, nn.MultiheadAttention)
        and attention.batch_first
        and attention._qkv_same_embed_dim
        and attention.in_proj_weight is not None
        and attention.bias_k is None
        and not attention.add_zero_attn
        and (attention.dropout == 0.0 or not attention.training)
    )


# Rows of the feed-forward block per step on the CPU: 1024 rows of a 3072-wide hidden layer are
# 12 MB, which stays in the last-level cache and, unlike a fresh 100 MB tensor, costs no page
# faults (on a 2-core EPYC those made QuickGELU cost more than the MLP's matrix products).
FFN_ROWS = 1024

Activation = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _linear(layer: nn.Linear, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    if layer.bias is None:
        return torch.mm(x, layer.weight.t(), out=out)
    return torch.addmm(layer.bias, x, layer.weight.t(), out=out)


def relu_(hidden: torch.Tensor, scratch: torch.Tensor) -> torch.Tensor:
    """ReLU in place (`Activation`; needs no scratch)."""
    return hidden.relu_()


def quick_gelu_(hidden: torch.Tensor, scratch: torch.Tensor) -> torch.Tensor:
    """open_clip's QuickGELU, ``x * sigmoid(1.702 x)``, in place, with a same-shape scratch."""
    gate = torch.mul(hidden, 1.702, out=scratch).sigmoid_()
    return hidden.mul_(gate)


def _gelu(approximate: str) -> Activation:
    def gelu_(hidden: torch.Tensor, scratch: torch.Tensor) -> torch.Tensor:
        return torch.ops.aten.gelu_(hidden, approximate=approximate)

    return gelu_


def feed_forward(
    x: torch.Tensor, first: nn.Module, activation: Activation, second: nn.Module
) -> torch.Tensor:
    """``second(activation(first(x)))`` for inference, a block of rows at a time on the CPU.

    On the CPU with plain ``nn.Linear`` layers and no autocast, the hidden activations and the
    activation's scratch live in two buffers reused by every block of rows (``addmm`` with
    ``out=``); otherwise (quantised layers, GPUs, autocast) the layers run once on all rows.
    Needs no-grad mode: it works in place.
    """
    flat = x.reshape(-1, x.shape[-1])
    plain = type(first) is nn.Linear and type(second) is nn.Linear
    if not plain or x.device.type != "cpu" or torch.is_autocast_enabled(x.device.type):
        # Quantised layers pick their activation scale per call: blocks would change results.
        # Autocast does not apply to `out=` products; on GPUs one call for all rows is best.
        hidden = first(flat)
        scratch = hidden if activation is relu_ else torch.empty_like(hidden)
        out = second(activation(hidden, scratch))
        return out.view(*x.shape[:-1], out.shape[-1])
    assert isinstance(first, nn.Linear) and isinstance(second, nn.Linear)
    rows = flat.shape[0]
    step = max(1, min(rows, FFN_ROWS))
    hidden = flat.new_empty(step, first.out_features)
    scratch = flat.new_empty(step, first.out_features) if activation is not relu_ else hidden
    out_width = second.out_features
    out = flat.new_empty(rows, out_width)
    for start in range(0, rows, step):
        stop = min(start + step, rows)
        h = _linear(first, flat[start:stop], hidden[: stop - start])
        h = activation(h, scratch[: stop - start])
        _linear(second, h, out[start:stop])
    return out.view(*x.shape[:-1], out_width)


def _mlp(block: Any, x: torch.Tensor) -> torch.Tensor:
    from open_clip.transformer import QuickGELU

    mlp = block.mlp
    act = mlp.gelu
    activation: Activation | None = None
    if type(act) is QuickGELU:
        activation = quick_gelu_
    elif type(act) is nn.GELU:
        activation = _gelu(act.approximate)
    if activation is None or torch.is_grad_enabled():
        return mlp(x)
    return feed_forward(x, mlp.c_fc, activation, mlp.c_proj)


Mixer = Callable[[torch.Tensor], torch.Tensor]


def _forward(block: Any, x: torch.Tensor, mix: Mixer) -> torch.Tensor:
    """A plain block on tokens ``... x W``: ``mix`` turns the packed projection (``... x 3W``,
    queries, keys and values) into the attention's output (``... x W``)."""
    attention = block.attn
    qkv = F.linear(block.ln_1(x), attention.in_proj_weight, attention.in_proj_bias)
    x = x + block.ls_1(attention.out_proj(mix(qkv)))
    return x + block.ls_2(_mlp(block, block.ln_2(x)))


def split_heads(qkv: torch.Tensor, heads: int) -> torch.Tensor:
    """``B x T x 3W`` -> ``3 x B x heads x T x head_dim``."""
    batch, tokens, width3 = qkv.shape
    return qkv.view(batch, tokens, 3, heads, width3 // (3 * heads)).permute(2, 0, 3, 1, 4)


def merge_heads(mixed: torch.Tensor) -> torch.Tensor:
    """``B x heads x T x head_dim`` -> ``B x T x W``."""
    batch, heads, tokens, dim = mixed.shape
    return mixed.transpose(1, 2).reshape(batch, tokens, heads * dim)


def packed_attention(
    qkv: torch.Tensor, heads: int, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Multi-head self-attention of a packed projection: ``B x T x 3W`` (queries, keys, values,
    as ``nn.MultiheadAttention.in_proj_weight`` packs them) -> ``B x T x W``, one fused
    `scaled_dot_product_attention`; ``mask`` is an additive ``T x T`` float mask or None."""
    q, k, v = split_heads(qkv, heads)
    return merge_heads(F.scaled_dot_product_attention(q, k, v, attn_mask=mask))


def run_block(
    block: nn.Module, x: torch.Tensor, attn_mask: torch.Tensor | None = None
) -> torch.Tensor:
    """One open_clip transformer block on batch-first tokens ``B x T x W``.

    Args:
        block: an open_clip ``ResidualAttentionBlock`` (others are called as they are).
        x: tokens, batch first.
        attn_mask: an additive float mask ``T x T`` (open_clip's causal text mask) or None.
    """
    if not is_plain_block(block):
        return block(x, attn_mask=attn_mask)
    mask = attn_mask.to(x.dtype) if attn_mask is not None else None
    heads = int(getattr(block.attn, "num_heads"))  # noqa: B009 (nn.Module attributes are untyped)
    return _forward(block, x, lambda qkv: packed_attention(qkv, heads, mask))


def run_causal_with_shared_prefix(
    blocks: Sequence[Any], x: torch.Tensor, causal_mask: torch.Tensor, prefix: int
) -> torch.Tensor:
    """Causal blocks over sequences whose first ``prefix`` tokens are the same in every row.

    Under a causal mask a token sees only earlier tokens, so the shared prefix has the same
    activations in every row: it is computed once (its rows join the other rows' matrix
    products), and the rest of each row attends to its keys and values, as a language model's
    prompt cache does. Prompt templates make this common
    ("a photo of a {}." shares 5 of about 8 tokens), and the text tower's cost falls with it.

    Args:
        blocks: plain open_clip blocks (`run_block`'s fused path; others are not accepted).
        x: ``B x T x W`` tokens; rows equal on ``[:prefix]``.
        causal_mask: the additive ``T x T`` causal mask.
        prefix: the shared length, ``1 <= prefix < T``.

    Returns:
        ``B x (T - prefix) x W``: the tokens after the prefix.
    """
    if not all(is_plain_block(block) for block in blocks):
        raise ValueError("a shared prefix needs open_clip's plain ResidualAttentionBlock blocks")
    if not 1 <= prefix < x.shape[1]:
        raise ValueError(f"prefix {prefix} must be in [1, {x.shape[1]})")
    batch, tokens, width = x.shape
    rest = tokens - prefix
    mask = causal_mask.to(x.dtype)
    # Prefix rows and the other rows share every matrix product (one pass over the weights).
    flat = torch.cat([x[0, :prefix], x[:, prefix:].reshape(-1, width)])

    for block in blocks:

        def mix(qkv: torch.Tensor, heads: int = block.attn.num_heads) -> torch.Tensor:
            q0, k0, v0 = split_heads(qkv[None, :prefix], heads)
            q, k, v = split_heads(qkv[prefix:].view(batch, rest, -1), heads)
            head = F.scaled_dot_product_attention(q0, k0, v0, attn_mask=mask[:prefix, :prefix])
            keys = torch.cat([k0.expand(batch, -1, -1, -1), k], dim=2)
            values = torch.cat([v0.expand(batch, -1, -1, -1), v], dim=2)
            others = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask[prefix:])
            return torch.cat([merge_heads(head)[0], merge_heads(others).reshape(-1, width)])

        flat = _forward(block, flat, mix)
    return flat[prefix:].view(batch, rest, width)

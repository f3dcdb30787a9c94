"""The fused open_clip block computes open_clip's function with open_clip's parameters."""

import pytest
import torch
from open_clip.transformer import QuickGELU, ResidualAttentionBlock
from torch import nn

from clsclip.model import fused_block
from clsclip.model.fused_block import feed_forward, quick_gelu_, relu_, run_block


def _block(act: type[nn.Module] = QuickGELU, ls: float | None = None, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    block = ResidualAttentionBlock(32, 4, act_layer=act, ls_init_value=ls).eval()
    with torch.no_grad():  # non-trivial biases and layer norms
        for p in block.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return block


def _causal(tokens: int) -> torch.Tensor:
    return torch.full((tokens, tokens), float("-inf")).triu_(1)


@pytest.mark.parametrize("act", [QuickGELU, nn.GELU])
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("ls", [None, 0.5])
def test_matches_open_clip_in_float64(act, masked, ls, monkeypatch) -> None:
    monkeypatch.setattr(fused_block, "FFN_ROWS", 7)  # several blocks of rows and a remainder
    block = _block(act, ls).double()
    x = torch.randn(3, 11, 32, dtype=torch.float64)
    mask = _causal(11).double() if masked else None
    with torch.inference_mode():
        expected = block(x, attn_mask=mask)
        ours = run_block(block, x, attn_mask=mask)
    torch.testing.assert_close(ours, expected, rtol=0, atol=1e-12)


def test_matches_open_clip_in_float32_with_the_text_mask() -> None:
    block = _block()
    x = torch.randn(5, 9, 32)
    with torch.no_grad():
        torch.testing.assert_close(
            run_block(block, x, attn_mask=_causal(9)),
            block(x, attn_mask=_causal(9)),
            rtol=1e-5,
            atol=1e-5,
        )


def test_gradients_match_open_clip() -> None:
    block = _block().double()
    x = torch.randn(2, 6, 32, dtype=torch.float64, requires_grad=True)
    expected = torch.autograd.grad(block(x).square().sum(), [x, block.attn.in_proj_weight])
    ours = torch.autograd.grad(run_block(block, x).square().sum(), [x, block.attn.in_proj_weight])
    for a, b in zip(ours, expected, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-10)


def test_hooked_and_custom_blocks_run_as_open_clip_runs_them() -> None:
    block = _block()
    calls = []
    block.register_forward_hook(lambda m, args, out: calls.append(out.shape))
    x = torch.randn(2, 5, 32)
    with torch.no_grad():
        run_block(block, x)
    assert calls == [(2, 5, 32)]

    class Doubling(ResidualAttentionBlock):
        def forward(self, q_x, k_x=None, v_x=None, attn_mask=None):
            return 2 * super().forward(q_x, attn_mask=attn_mask)

    torch.manual_seed(0)
    custom = Doubling(32, 4).eval()
    with torch.no_grad():
        torch.testing.assert_close(run_block(custom, x), custom(x))


def test_feed_forward_with_empty_and_quantised_inputs() -> None:
    torch.manual_seed(0)
    first, second = nn.Linear(8, 24), nn.Linear(24, 8)
    with torch.no_grad():
        empty = feed_forward(torch.empty(0, 3, 8), first, relu_, second)
        assert empty.shape == (0, 3, 8)
        x = torch.randn(4, 5, 8)
        expected = second(QuickGELU()(first(x)))
        torch.testing.assert_close(feed_forward(x, first, quick_gelu_, second), expected)
        quantised = torch.ao.quantization.quantize_dynamic(
            nn.Sequential(first, second), {nn.Linear}, dtype=torch.qint8
        )
        q_first, q_second = quantised[0], quantised[1]
        reference = q_second(QuickGELU()(q_first(x.reshape(-1, 8)))).reshape(4, 5, 8)
        # Quantised layers run on all rows at once: their per-call scale is unchanged.
        torch.testing.assert_close(
            feed_forward(x, q_first, quick_gelu_, q_second), reference, rtol=0, atol=0
        )


def test_shared_prefix_equals_the_full_causal_run_and_checks_its_inputs() -> None:
    from clsclip.model.fused_block import run_causal_with_shared_prefix

    blocks = [_block(seed=s).double() for s in range(3)]
    x = torch.randn(4, 9, 32, dtype=torch.float64)
    x[:, :5] = x[:1, :5]  # five shared tokens
    mask = _causal(9).double()
    with torch.inference_mode():
        full = x
        for block in blocks:
            full = block(full, attn_mask=mask)
        ours = run_causal_with_shared_prefix(blocks, x, mask, 5)
        assert ours.shape == (4, 4, 32)
        torch.testing.assert_close(ours, full[:, 5:], rtol=0, atol=1e-12)
        with pytest.raises(ValueError, match=r"prefix 9 must be in \[1, 9\)"):
            run_causal_with_shared_prefix(blocks, x, mask, 9)
        blocks[1].register_forward_hook(lambda *args: None)
        with pytest.raises(ValueError, match="plain ResidualAttentionBlock"):
            run_causal_with_shared_prefix(blocks, x, mask, 5)


def test_feed_forward_keeps_autocast_precision() -> None:
    torch.manual_seed(0)
    first, second = nn.Linear(8, 24), nn.Linear(24, 8)
    x = torch.randn(3, 5, 8)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        ours = feed_forward(x, first, relu_, second)
        expected = second(torch.relu(first(x)))
    assert ours.dtype == torch.bfloat16
    torch.testing.assert_close(ours, expected, rtol=0, atol=0)

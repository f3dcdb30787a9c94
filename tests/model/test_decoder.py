import pytest
import torch

from clsclip.model.decoder import SegmentationDecoder


def test_output_shape_and_extra_channel() -> None:
    decoder = SegmentationDecoder(
        width=48, num_layers=2, num_heads=3, mlp_ratio=2.0, channels=(16, 8), extra_channels=1
    )
    tokens = torch.randn(5, 4 * 6, 48)
    out = decoder(tokens, (4, 6), torch.randn(5, 1, 4, 6))
    assert out.shape == (5, 1, 4, 6)
    with pytest.raises(ValueError, match="1 extra input channels"):
        decoder(tokens, (4, 6))


def test_head_narrows_as_configured() -> None:
    decoder = SegmentationDecoder(
        width=64, num_layers=2, num_heads=1, mlp_ratio=4.0, channels=(256, 128, 64)
    )
    convs = [m for m in decoder.head if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size) for c in convs] == [
        (64, 256, (3, 3)),
        (256, 128, (3, 3)),
        (128, 64, (3, 3)),
        (64, 1, (1, 1)),
    ]
    assert len(decoder.layers) == 2


def test_heads_must_divide_width() -> None:
    with pytest.raises(
        ValueError, match=r"decoder heads \(5\) must divide the visual width \(64\)"
    ):
        SegmentationDecoder(width=64, num_layers=1, num_heads=5, mlp_ratio=4.0, channels=(8,))

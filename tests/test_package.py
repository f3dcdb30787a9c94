import subprocess
import sys

import clsclip


def test_public_api() -> None:
    assert clsclip.__all__ == [
        "ClipSegConfig",
        "ClsClipConfig",
        "SegmentationResult",
        "Segmenter",
        "TensorSegmentation",
        "__version__",
    ]
    for name in clsclip.__all__:
        assert hasattr(clsclip, name)


def test_import_is_light_and_offline() -> None:
    """`import clsclip` loads no ultralytics, training code, Hub client or open_clip."""
    code = (
        "import sys, socket\n"
        "def no_network(*a, **k): raise AssertionError('network touched on import')\n"
        "socket.socket.connect = no_network\n"
        "import clsclip\n"
        "bad = [m for m in ('ultralytics', 'clsclip.training', 'clsclip.evaluation',"
        " 'huggingface_hub', 'open_clip', 'transformers') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)

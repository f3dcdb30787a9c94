import subprocess
import sys

import clsclip


def test_public_api() -> None:
    assert clsclip.__all__ == [
        "ClassSpec",
        "ClipSegConfig",
        "ClsClipConfig",
        "DenseClipConfig",
        "FrameResult",
        "SegmentationResult",
        "Segmenter",
        "Smoother",
        "TensorSegmentation",
        "__version__",
    ]
    for name in clsclip.__all__:
        assert hasattr(clsclip, name)


def test_import_is_light_and_offline() -> None:
    """`import clsclip` loads no ultralytics, training code, Hub client, open_clip or any
    annotation tool."""
    code = (
        "import sys, socket\n"
        "def no_network(*a, **k): raise AssertionError('network touched on import')\n"
        "socket.socket.connect = no_network\n"
        "import clsclip\n"
        "bad = [m for m in ('ultralytics', 'clsclip.training', 'clsclip.evaluation', 'fastapi',"
        " 'clsclip.serving', 'uvicorn', 'huggingface_hub', 'open_clip', 'transformers',"
        " 'fiftyone', 'autodistill', 'datumaro', 'clsclip.integrations')"
        " if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_no_module_imports_the_package_root() -> None:
    """Inside the package, modules import what they use from its module, never `clsclip`
    itself (which imports the facade and with it almost everything)."""
    import grimp

    graph = grimp.build_graph("clsclip")
    assert graph.find_modules_that_directly_import("clsclip") == set()


def test_architecture_diagram_is_current() -> None:
    """docs/architecture.md's folder diagram is the one the code's imports give."""
    import runpy
    from pathlib import Path

    tool = Path(__file__).resolve().parents[1] / "docs" / "tools" / "architecture_graph.py"
    module = runpy.run_path(str(tool))
    assert module["main"](["--check"]) == 0, "run: python docs/tools/architecture_graph.py"

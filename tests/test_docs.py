"""The command blocks of README.md and docs/*.md, checked against the code so the docs cannot
drift from it.

Every ``clsclip ...`` line of a ``bash`` block is parsed by the real command-line parser (a
renamed or removed flag, or a value outside its choices, fails here). The lines that can run
offline are run, as a user would (``python -m clsclip``, in a scratch folder holding the
repository's ``examples``): those whose inputs and model are files of the repository. A line
cannot run offline when it names something a reader supplies: a placeholder in capitals
(``ID_OR_DIR``, ``IMAGE_OR_FOLDER``), a file the repository does not hold (``photo.jpg``,
``data/``, ``clip.mp4``), a Hub id, a dataset, a server or a cluster; the test lists those it
skipped, with the reason, in its output (``pytest -rA``). Usage synopses (``[--device ...]``)
are parsed without their optional parts.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from clsclip.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
_BLOCK = re.compile(r"```(?:bash|sh|shell)\n(.*?)```", re.S)
_SEPARATORS = {"&&", "||", "|", ";", ">", ">>", "2>", "2>&1", "&"}
_PLACEHOLDER = re.compile(r"^[A-Z][A-Z0-9_]{2,}$")
_NEEDS = ("--engine", "--ray-address", "--data-root", "--proposals", "--device cuda")


def documented_commands() -> list[tuple[str, str]]:
    """(where, command line) of every ``clsclip`` line in the docs' bash blocks, continuation
    lines joined, comments dropped."""
    found = []
    for path in DOCS:
        for block in _BLOCK.findall(path.read_text(encoding="utf-8")):
            joined = re.sub(r"\\\n\s*", " ", block)
            for line in joined.splitlines():
                line = line.strip()
                if not line or line.startswith("#"):
                    continue
                words = shlex.split(line, comments=True)
                while words and re.fullmatch(r"[A-Z_]+=\S*", words[0]):  # VAR=value prefixes
                    words = words[1:]
                if words and words[0].endswith("clsclip"):
                    found.append((f"{path.relative_to(ROOT)}", shlex.join(words)))
    return found


def _argv(command: str) -> list[str]:
    """The arguments after ``clsclip``, up to a shell operator; shell variables (a loop's
    ``$f``) stand for ``0``."""
    words = [re.sub(r"\$\{?\w+\}?", "0", w) for w in shlex.split(command)[1:]]
    for i, word in enumerate(words):
        if word in _SEPARATORS:
            return words[:i]
    return words


def _synopsis(argv: list[str]) -> list[str]:
    """A usage synopsis without its optional ``[...]`` parts and ``...`` repeats."""
    out, depth = [], 0
    for word in argv:
        depth += word.count("[")
        if depth == 0 and word != "...":
            out.append(word.removesuffix("..."))
        depth -= word.count("]")
    return out


COMMANDS = documented_commands()


def test_the_docs_have_commands() -> None:
    assert len(COMMANDS) >= 40
    assert {where for where, _ in COMMANDS} >= {"README.md", "docs/video.md", "docs/labelling.md"}


@pytest.mark.parametrize(("where", "command"), COMMANDS)
def test_every_documented_command_parses(where: str, command: str) -> None:
    argv = _synopsis(_argv(command))
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:
        if e.code == 0 and ({"--help", "-h", "--version", "-V"} & set(argv)):
            return
        raise AssertionError(f"{where}: `{command}` does not parse") from None
    assert callable(args.run)


def _why_not_offline(argv: list[str]) -> str | None:
    """Why a documented command cannot run here, or None when it can."""
    text = " ".join(argv)
    for need in _NEEDS:
        if need in text and "--engine local" not in text and "--proposals none" not in text:
            return f"needs {need.split()[-1].lstrip('-')}"
    if argv and argv[0] in ("serve", "train", "data", "calibrate", "convert", "eval", "export"):
        return f"clsclip {argv[0]}: a server, a dataset or a run of the reader's"
    for word in argv[1:]:
        if _PLACEHOLDER.match(word.split("/")[0]):
            return f"a placeholder ({word})"
    model = argv[argv.index("--model") + 1] if "--model" in argv else None
    if model is not None and not (ROOT / model).exists():
        return f"a model of the reader's ({model})"
    for i, word in enumerate(argv[1:], start=1):
        if word.startswith("-") or argv[i - 1] in ("--out", "--classes") or word == model:
            continue
        if ("/" in word or "." in word) and not (ROOT / word).exists():
            return f"a file of the reader's ({word})"
    return None


def test_the_documented_commands_that_can_run_offline_run(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "YOLO_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    ran, skipped = [], []
    for where, command in COMMANDS:
        argv = _argv(command)
        if "--help" in argv or "--version" in argv or "-V" in argv:
            continue
        why = _why_not_offline(argv)
        if why is not None:
            skipped.append(f"{where}: {command}  [{why}]")
            continue
        done = subprocess.run([sys.executable, "-m", "clsclip", *argv], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=600)  # fmt: skip
        assert done.returncode == 0, (
            f"{where}: `{command}` exited {done.returncode}:\n" + (done.stderr[-2000:])
        )
        ran.append(command)
    sys.stdout.write("\n  ".join(["ran:", *ran, "skipped (cannot run offline):", *skipped]) + "\n")
    assert len(ran) >= 2, ran  # the demo model's commands at least

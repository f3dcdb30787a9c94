"""Class specs: names, prompts, negatives and thresholds, and the text rows they become."""

from clsclip.classes.files import read_classes_file, specs_identity
from clsclip.classes.rows import RowLayout, class_rows
from clsclip.classes.spec import (
    ClassesArg,
    ClassSpec,
    resolve_classes,
)
from clsclip.config.base import PROMPT_RULES

__all__ = [
    "PROMPT_RULES",
    "ClassSpec",
    "ClassesArg",
    "RowLayout",
    "class_rows",
    "read_classes_file",
    "resolve_classes",
    "specs_identity",
]

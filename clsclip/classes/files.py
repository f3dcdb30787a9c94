"""Class specs in a file (``clsclip segment --classes-file``, ``clsclip calibrate``): YAML or
JSON, one mapping from class names to what each means. See docs/calibration.md::

    dog: [dog, puppy, a dog's head]      # several prompts
    car: car                             # one prompt (the same as the plain name)
    cat:
      prompts: [cat, kitten]
      negatives: [a statue of a cat]     # a pixel where this wins is not "cat"
      threshold: 0.4
    grass:                               # nothing: the name alone
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from clsclip.classes.spec import ClassSpec, resolve_classes
from clsclip.optional import require

YAML_SUFFIXES = (".yaml", ".yml")


def read_classes_file(path: str | os.PathLike[str]) -> list[ClassSpec]:
    """The specs of a classes file, in file order; `ValueError` naming the file for one that is
    not a mapping of class names, or whose entries are wrong."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise OSError(f"cannot read the classes file {path}: {e.strerror or e}") from e
    except UnicodeDecodeError as e:
        raise ValueError(f"the classes file {path} is not UTF-8 text: {e}") from None
    try:
        if path.suffix.lower() in YAML_SUFFIXES:
            data = _yaml(text)
        else:
            data = json.loads(text, object_pairs_hook=_unique_keys)
    except ImportError:
        raise
    except _DuplicateName as e:
        raise ValueError(f"the classes file {path} names {e} twice") from None
    except Exception as e:  # yaml.YAMLError, json.JSONDecodeError: one line naming the file
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ValueError(f"the classes file {path} cannot be parsed: {first}") from None
    if not isinstance(data, Mapping) or not data:
        found = "an empty file" if data is None else type(data).__name__
        raise ValueError(
            f"the classes file {path} must be a mapping from class names to prompts (see "
            f"docs/calibration.md), got {found}"
        )
    try:
        return resolve_classes(dict(data))
    except (TypeError, ValueError) as e:
        raise type(e)(f"the classes file {path}: {e}") from None


class _DuplicateName(ValueError):
    """A mapping of the file names one key twice (the message: the key's repr)."""


def _unique_keys(pairs: list[tuple[Any, Any]]) -> dict[Any, Any]:
    out: dict[Any, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateName(repr(key))
        out[key] = value
    return out


def _yaml(text: str) -> Any:
    """YAML with every mapping key read as the text it is written as (``1``, ``no``, ``~`` and
    ``on`` are the names "1", "no", "~" and "on", never numbers, booleans or null; ``1`` and
    ``'1'`` are one name, so the second is a duplicate), and duplicate keys refused."""
    yaml = require("yaml", purpose="reading YAML classes files")

    class Loader(yaml.SafeLoader):  # type: ignore[name-defined]
        pass

    def mapping(loader: Any, node: Any, deep: bool = False) -> dict[Any, Any]:
        pairs = []
        for key_node, value_node in node.value:
            if isinstance(key_node, yaml.ScalarNode):
                key = key_node.value  # the name as written
            else:
                key = loader.construct_object(key_node, deep=deep)
            pairs.append((key, loader.construct_object(value_node, deep=deep)))
        return _unique_keys(pairs)

    Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, mapping)
    return yaml.load(text, Loader=Loader)  # a SafeLoader: no arbitrary objects


def specs_identity(specs: Sequence[ClassSpec]) -> list[Any]:
    """The specs as JSON: plain classes as their names (so a list of names stays a list of
    names), the others as ``{"name": ..., "prompts": [...], ...}``; `resolve_classes` reads it
    back to equal specs."""
    return [spec.name if spec.plain else {"name": spec.name, **spec.to_dict()} for spec in specs]

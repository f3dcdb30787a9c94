"""What a class means: its name, the prompts that describe it, the prompts it must beat, and its
threshold. `resolve_classes` turns what users pass (names, mappings, `ClassSpec`s) into specs."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from clsclip.checks import check_class_names, check_threshold, text_key

SPEC_KEYS = ("prompts", "negatives", "threshold")


@dataclass(frozen=True)
class ClassSpec:
    """One class: the name results are keyed by, and what the network is asked.

    Attributes:
        name: the class's name in results (masks, label map order, summaries, files).
        prompts: the texts that describe it (default: the name alone). Several prompts are
            combined by the segmenter's ``prompt_rule``.
        negatives: texts the class must beat: a pixel where any negative's logit is above the
            class's is not that class ("a statue of a dog" for "dog").
        threshold: this class's mask threshold in [0, 1]; it takes precedence over the call's
            and the model config's.
    """

    name: str
    prompts: tuple[str, ...] = ()
    negatives: tuple[str, ...] = ()
    threshold: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str):
            raise TypeError(f"a class name must be a str, got {type(self.name).__name__}")
        for field_name in ("prompts", "negatives"):
            value = getattr(self, field_name)
            if isinstance(value, str):
                value = (value,)
            elif not isinstance(value, Iterable):
                raise TypeError(
                    f"class {self.name!r}: {field_name} must be a list of texts, got "
                    f"{type(value).__name__}"
                )
            object.__setattr__(self, field_name, tuple(value))
        if not self.prompts:
            object.__setattr__(self, "prompts", (self.name,))
        check_class_names([self.name])
        _check_texts(self.name, "prompts", self.prompts)
        if self.negatives:
            _check_texts(self.name, "negatives", self.negatives)
        same = {text_key(p) for p in self.prompts} & {text_key(n) for n in self.negatives}
        if same:
            raise ValueError(
                f"class {self.name!r}: {sorted(same)[0]!r} is both a prompt and a negative"
            )
        if self.threshold is not None:
            try:
                object.__setattr__(self, "threshold", check_threshold(self.threshold))
            except (TypeError, ValueError) as e:
                raise type(e)(f"class {self.name!r}: {e}") from None

    @property
    def plain(self) -> bool:
        """One prompt equal to the name, no negatives, no threshold: a plain class name."""
        return self.prompts == (self.name,) and not self.negatives and self.threshold is None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"prompts": list(self.prompts)}
        if self.negatives:
            out["negatives"] = list(self.negatives)
        if self.threshold is not None:
            out["threshold"] = self.threshold
        return out


ClassesArg = Sequence["str | ClassSpec | Mapping[str, Any]"] | Mapping[str, Any]
"""What ``segment`` takes as classes: a list of names, `ClassSpec`s and one-entry mappings, or
one mapping from names to their prompts (a text, a list of texts, or ``{"prompts": [...],
"negatives": [...], "threshold": 0.4}``)."""


def resolve_classes(classes: object) -> list[ClassSpec]:
    """The classes a user passed, as specs in order; `TypeError` / `ValueError` naming the item.

    Plain names give plain specs, so a list of names behaves exactly as before specs existed.
    """
    if isinstance(classes, str):
        check_class_names(classes)  # the error that says to pass a list
    if isinstance(classes, Mapping):
        specs = [_from_entry(name, value) for name, value in classes.items()]
    elif isinstance(classes, Iterable):
        items = list(classes)
        if all(isinstance(item, str) for item in items):  # plain names: their own checks
            return [ClassSpec(name) for name in check_class_names(items)]
        specs = []
        for i, item in enumerate(items):
            if isinstance(item, ClassSpec):
                specs.append(item)
            elif isinstance(item, str):
                specs.append(ClassSpec(item))
            elif isinstance(item, Mapping):
                if "name" in item:  # {"name": "dog", "prompts": [...]}
                    rest = {k: v for k, v in item.items() if k != "name"}
                    specs.append(_from_entry(item["name"], rest))
                else:
                    specs.extend(_from_entry(name, value) for name, value in item.items())
            else:
                raise TypeError(
                    f"class names must be str (or class specs), got {type(item).__name__} "
                    f"{item!r} at position {i}"
                )
    else:
        raise TypeError(
            f"class_names must be a list of strings (or class specs), got {type(classes).__name__}"
        )
    check_class_names([spec.name for spec in specs])  # empty, duplicates
    return specs


def _from_entry(name: object, value: object) -> ClassSpec:
    if not isinstance(name, str):
        raise TypeError(f"class names must be str, got {type(name).__name__} {name!r}")
    if value is None:
        return ClassSpec(name)
    if isinstance(value, str):
        return ClassSpec(name, (value,))
    if isinstance(value, Mapping):
        unknown = sorted(set(value) - set(SPEC_KEYS))
        if unknown:
            raise ValueError(
                f"class {name!r}: unknown keys {unknown}; a class takes {list(SPEC_KEYS)}"
            )
        prompts = value.get("prompts", ())
        if "prompts" in value and not prompts:
            raise ValueError(f"class {name!r}: the prompt list is empty")
        return ClassSpec(name, prompts, value.get("negatives", ()), value.get("threshold"))
    if isinstance(value, Sequence):
        if not value:
            raise ValueError(f"class {name!r}: the prompt list is empty")
        return ClassSpec(name, tuple(value))
    raise TypeError(
        f"class {name!r}: give a prompt, a list of prompts or a mapping, got {type(value).__name__}"
    )


def _check_texts(name: str, field_name: str, texts: Sequence[object]) -> None:
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(
                f"class {name!r}: {field_name}[{i}] must be a str, got {type(text).__name__}"
            )
    try:
        check_class_names(list(texts))
    except (TypeError, ValueError) as e:
        raise type(e)(f"class {name!r}: {field_name}: {e}") from None

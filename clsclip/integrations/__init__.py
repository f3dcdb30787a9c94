"""Bridges into other tools' own interfaces, each an optional extra imported when used:
`clsclip.integrations.fiftyone` (a FiftyOne ``Model`` for ``dataset.apply_model``) and
`clsclip.integrations.autodistill` (an autodistill base model)."""

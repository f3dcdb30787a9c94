"""Fault injection for the Ray tests, on the PYTHONPATH of the processes they start: decoding a
file whose name has "poison" in it kills the worker process (as the OOM killer or a crash in a
decoder would); with ``CLSCLIP_DIE_AT_FRAME=N`` and ``CLSCLIP_DIE_ONCE=file``, the first worker
about to write a video's frame N creates that file and dies. Nothing else changes."""

import os

from tests.import_hooks import PatchOnImport


def _poison(module):
    real = module.load_image

    def load_image(image, *args, **kwargs):
        if "poison" in str(image):
            os._exit(1)
        return real(image, *args, **kwargs)

    module.load_image = load_image


def _die_at_frame(module):
    at, once = os.environ.get("CLSCLIP_DIE_AT_FRAME"), os.environ.get("CLSCLIP_DIE_ONCE")
    if at is None or once is None:
        return
    real = module._VideoJob.write_frame

    def write_frame(job, frame):
        if frame.index == int(at):
            try:
                os.close(os.open(once, os.O_CREAT | os.O_EXCL))
            except FileExistsError:
                pass
            else:
                os._exit(1)
        real(job, frame)

    module._VideoJob.write_frame = write_frame


PatchOnImport(
    {"clsclip.pipeline.images": _poison, "clsclip.labelling.video": _die_at_frame}
).install()

"""A gate for the server tests, on the PYTHONPATH of the server they start: while the file
named by ``CLSCLIP_TEST_GATE`` exists, every `Segmenter.segment_batch` call (the network's pass
of a batch) waits, after creating ``CLSCLIP_TEST_GATE + ".entered"``; the test opens the gate
by deleting the file. So a test drives the server's clock: no sleeps, no timing."""

import os
import time


def _gate(module):
    real = module.Segmenter.segment_batch
    gate = os.environ["CLSCLIP_TEST_GATE"]

    def segment_batch(self, *args, **kwargs):
        if os.path.exists(gate):
            open(gate + ".entered", "w").close()
            while os.path.exists(gate):
                time.sleep(0.01)
        return real(self, *args, **kwargs)

    module.Segmenter.segment_batch = segment_batch


if os.environ.get("CLSCLIP_TEST_GATE"):
    from tests.import_hooks import PatchOnImport

    PatchOnImport({"clsclip.segmenter.facade": _gate}).install()

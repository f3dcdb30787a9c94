"""Serving clsclip to apps over HTTP (``clsclip serve``, extra ``clsclip[serve]``): FastAPI on
uvicorn, batching across requests, limits, load shedding, metrics. Inference never imports it.
"""

from clsclip.serving.app import ServeSettings, create_app
from clsclip.serving.form import Limits

__all__ = ["Limits", "ServeSettings", "create_app"]

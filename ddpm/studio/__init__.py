"""The studio: a local web page to generate, infill and interpolate melodies with a trained model.

``python serve.py`` starts it (``ddpm/studio/server.py``); ``app.py`` is the FastAPI app,
``engine.py`` the model side, ``static/`` the page (no CDN: it works offline).
"""

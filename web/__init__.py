"""The web app: server-rendered pages (``web.pages``) and a JSON API under ``/api/v1`` (``web.api``).

``web.app.create_app`` builds it from settings; nothing is created at import time.
"""

"""Static files: the vendored htmx (version and checksum recorded here), the stylesheet, nothing from another host."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from fastapi.testclient import TestClient

from web.app import STATIC_DIR

# htmx.org 2.0.11 from the npm registry (npm pack htmx.org@2.0.11; dist/htmx.min.js). Update both together.
HTMX_VERSION = "2.0.11"
HTMX_SHA256 = "d6fdc75f204e6bdefa99b69bf1e6d4ac69b8a364f77929f45c13476b4000f717"
TEMPLATES = Path(STATIC_DIR).parent / "templates"


def test_vendored_htmx_is_the_recorded_release() -> None:
    data = (STATIC_DIR / "htmx.min.js").read_bytes()
    assert hashlib.sha256(data).hexdigest() == HTMX_SHA256
    assert f'version:"{HTMX_VERSION}"'.encode() in data


def test_static_files_are_served(client: TestClient) -> None:
    js = client.get("/static/htmx.min.js")
    assert js.status_code == 200 and js.headers["content-type"].startswith(("text/javascript", "application/javascript"))
    assert hashlib.sha256(js.content).hexdigest() == HTMX_SHA256
    css = client.get("/static/forumflow.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    assert "@media" in css.text  # narrow screens have rules of their own
    assert client.get("/static/../app.py").status_code == 404


def test_nothing_is_loaded_from_another_host(client: TestClient) -> None:
    for path in [*TEMPLATES.glob("*.html"), STATIC_DIR / "forumflow.css"]:
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", text), path
        assert not re.search(r"url\(\s*['\"]?(https?:)?//", text), path
        assert "@import" not in text, path
    page = client.get("/sign-in").text
    assert re.findall(r'(?:src|href)="([^"]+)"', page)[:2] == ["/static/forumflow.css", "/static/htmx.min.js"]


def test_htmx_is_configured_for_the_content_security_policy(client: TestClient) -> None:
    page = client.get("/sign-in").text
    config = re.search(r"""<meta name="htmx-config" content='([^']+)'>""", page)
    assert config and '"includeIndicatorStyles": false' in config.group(1) and '"allowEval": false' in config.group(1)
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in page

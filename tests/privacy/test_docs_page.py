"""/docs: Swagger UI from the server's own assets under a strict Content-Security-Policy."""

from __future__ import annotations

import re

import httpx


async def test_docs_load_only_their_own_scripts(client: httpx.AsyncClient) -> None:
    r = await client.get("/docs", headers={"Authorization": ""})
    assert r.status_code == 200
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp.split("script-src")[1]
    assert "frame-ancestors 'none'" in csp
    assert r.headers["x-content-type-options"] == "nosniff"
    assert "cdn" not in r.text.lower() and "http" not in r.text.split("<body>")[1]
    assert not re.search(r"<script>(?!</script>)", r.text), "no inline script"
    assets = re.findall(r'(?:src|href)="(/docs/assets/[^"]+)"', r.text)
    assert len(assets) == 4
    for path in assets:
        got = await client.get(path)
        assert got.status_code == 200, path
        assert got.headers["content-security-policy"] == csp
    assert (await client.get("/docs/assets/index.html")).status_code == 404
    assert (await client.get("/docs/assets/..%2Fapi.py")).status_code == 404
    assert (await client.get("/redoc")).status_code == 404

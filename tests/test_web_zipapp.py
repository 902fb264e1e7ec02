"""The web chat from the built zipapp on a bare Python: served from inside the archive.

hypercorn and its protocol libraries come from the archive, the page's files are read
from the zip with importlib.resources (never unpacked), and nothing is written outside
the state directory.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

SCRIPT = r"""
import http.client, importlib.resources, json, sys
sys.path.insert(0, sys.argv[1])
import trio, hypercorn
from supervisor.chat.web.server import WebSettings, serve_web_chat


def fetch(port, path, cookie=""):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request("GET", path, headers={"cookie": cookie} if cookie else {})
    response = connection.getresponse()
    return response.status, dict(response.getheaders()), response.read()


async def main():
    settings = WebSettings(state_dir=__import__("pathlib").Path(sys.argv[2]), listen="127.0.0.1:0")
    async with trio.open_nursery() as nursery:
        chat = await nursery.start(serve_web_chat, settings)
        path = chat.url.split(str(chat.port), 1)[1]
        status, headers, _ = await trio.to_thread.run_sync(fetch, chat.port, path)
        cookie = headers["set-cookie"].split(";")[0]
        page = await trio.to_thread.run_sync(fetch, chat.port, "/", cookie)
        asset = await trio.to_thread.run_sync(fetch, chat.port, "/static/vendor/purify.min.js", cookie)
        bare = await trio.to_thread.run_sync(fetch, chat.port, "/")
        static = importlib.resources.files("supervisor.chat.web") / "static"
        print(json.dumps({
            "first": status, "page": page[0], "doctype": page[2][:15].decode(),
            "asset": asset[0], "asset_size": len(asset[2]), "bare": bare[0],
            "hypercorn": hypercorn.__file__, "static": str(static),
        }))
        nursery.cancel_scope.cancel()

trio.run(main)
"""


def test_the_zipapp_serves_the_page_from_inside_the_archive(
    zipapp_path: Path, bare_python: Path, tmp_path: Path
) -> None:
    home, tmp, cwd, state = (tmp_path / n for n in ("home", "tmp", "cwd", "state"))
    for folder in (home, tmp, cwd):
        folder.mkdir()
    env = {"PATH": os.environ["PATH"], "HOME": str(home), "TMPDIR": str(tmp)}
    result = subprocess.run(
        [str(bare_python), "-I", "-c", SCRIPT, str(zipapp_path), str(state)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout.splitlines()[-1])

    assert seen["first"] == 303 and seen["page"] == 200 and seen["bare"] == 401
    assert seen["doctype"].lower() == "<!doctype html>"
    assert seen["asset"] == 200 and seen["asset_size"] > 10_000
    assert seen["hypercorn"].startswith(f"{zipapp_path}/")
    assert seen["static"].startswith(f"{zipapp_path}/")
    assert not list(home.iterdir()) and not list(tmp.iterdir()) and not list(cwd.iterdir())
    assert {p.name for p in state.iterdir()} <= {
        "web-token", "web.sqlite3", "web.sqlite3-wal", "web.sqlite3-shm",
    }  # fmt: skip

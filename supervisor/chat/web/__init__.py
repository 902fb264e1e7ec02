"""The local web chat: a page served by the supervisor itself, the embedded default.

- `security`: the listen rule (`listen_problem`), the access token, the Origin rule.
- `db` / `store`: the history in `<state.dir>/web.sqlite3`, owned by one task.
- `port`: the chat port's words as this front end uses them (until the core has them).
- `front`: `WebChat`, the ops the core calls and the events it reads.
- `codec`: the page's JSON; `hub`: live updates to every tab; `asgi`: the HTTP/WebSocket
  application; `server`: `serve_web_chat`, the service started with `nursery.start`.
- `static/`: the page (HTML, CSS, plain JavaScript) and the vendored Markdown renderer
  and sanitiser, read from the package (inside the zipapp) without unpacking.
"""

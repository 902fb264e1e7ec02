"""Telegram as a front end: the Bot API's words, kept inside this folder.

- `codec`: the wire shapes we use (sans-IO, one cattrs converter).
- `client`: `BotApi`, the Bot API methods we use, each one call through `calls`.
- `calls`: one method call (httpx under trio): retries, pacing, token redaction, errors.
- `updates`: the long-polling update source; the offset moves only past confirmed updates.
- `render`: the core's Markdown-ish text as Telegram HTML, split into messages.
- `runs`: text with its tags: its HTML, and its split into messages of Telegram's size.
- `choices`: permission buttons <-> `callback_data`.
- `incoming`: an update read as the port's incoming events (posted, pressed, stop).
- `limits`: the numbers a Telegram chat allows, as data.
- `doctor`: the `check` lines for a bot token.
- `link`: the chat port over the Bot API, composed of `messages` (the bot's messages: parts,
  buttons, one change at a time) and `drafts` (growing posts shown as drafts).
- `front`: the front end (connect, the update loop), with `backlog` (when the offset may
  pass an update; updates held past 100) and `active` (without topics: the active session).

Nothing outside this folder should need to know a Bot API field name: a thin glue module
presents these pieces in the chat port's words (threads, messages, choices).
"""

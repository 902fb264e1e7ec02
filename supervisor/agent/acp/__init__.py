"""Agent Client Protocol agents (OpenCode, and any other ACP agent) behind our sessions.

- `wire.py`: JSON-RPC 2.0 frames and ACP shapes, one cattrs converter (sans-IO).
- `client.py`: `AcpClient`, the protocol state machine (sans-IO): lines in, events out.
- `answers.py`: what the agent's answers to initialize and session opening mean, and
  which offered option answers a permission choice (sans-IO).
- `turn.py`: a turn's prompt blocks out, and the agent's news of it in as events (sans-IO).
- `summary.py`: the one-line summary of a tool call.
- `events.py`: the events and commands today's vocabulary has no word for.
- `backend.py`: argv and environment (OpenCode: offline, asks permissions, start gate).
- `driver.py`: the trio shell that owns one agent process's stdio.

What maps onto today's `core.agent_events`:
message chunks -> TextDelta (+ a TextBlock per message when it ends); thought chunks ->
ThinkingBlock (one per thought part); tool_call -> ToolCall (name = first title, input =
rawInput); tool_call_update completed/failed -> ToolOutcome; session/request_permission ->
PermissionAsked (request_id = str(JSON-RPC id)); cancel -> PermissionCancelled per pending
request; the agent's `$/cancel_request` of one -> PermissionCancelled; any other agent request -> ControlAsked (already refused with -32601); a prompt
sent -> TurnStarted; stop reasons and prompt errors -> TurnEnded (cancelled ->
terminal_reason "aborted_cancelled"; max_tokens / max_turn_requests / refusal -> is_error
with a plain message). Commands: SendPrompt -> session/prompt; Interrupt -> session/cancel;
AllowTool -> allow_once (allow_always when the person chose "always"); DenyTool ->
reject_once.

What does NOT fit (the list that shapes issue 10's agent port):
1. Handshake: AgentReady (name, version, resume/load/image capabilities) and
   HandshakeFailed (unsupported version, initialize error): no word today.
2. Session id chosen by the agent (SessionOpened, to persist before announcing the thread)
   and a conversation that is missing (SessionOpenFailed): Claude gets our id on argv.
3. Permission options: PermissionAsked has no field for the options offered and their
   kinds (OpenCode: once / always / reject; no reject_always); the client keeps them in
   `AcpClient.permissions` and answers by kind (AnswerPermission). AllowTool/DenyTool
   carry Claude's updated_input / rules, which ACP has no use for.
4. Tool calls change after they start (OpenCode names the command only in the update):
   ToolCallUpdated(summary, status). ToolCall has no summary field.
5. Plans (PlanUpdated) and usage per update (UsageUpdated: context used/size, cumulative
   cost and the turn's cost). TurnEnded.total_cost_usd is filled with the session's
   cumulative cost (0 when the turn reported none, e.g. OpenCode's cancelled turn).
6. Prompt attachments as file paths (resource links): SendPromptWithFiles.
7. Non-fatal protocol trouble (ProtocolError: a malformed line, a stray response) and
   errors answering other requests (RequestFailed).
8. The agent's exit (driver.AgentExited) is the shell's word, as today.
"""

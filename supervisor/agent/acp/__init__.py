"""Agent Client Protocol agents (OpenCode, and any other ACP agent) behind our sessions.

- `wire.py`: JSON-RPC 2.0 frames and ACP shapes, one cattrs converter (sans-IO).
- `client.py`: `AcpClient`, the protocol state machine (sans-IO): lines in, events out.
- `answers.py`: what the agent's answers to initialize and session opening mean, and
  which offered option answers a permission choice (sans-IO).
- `turn.py`: a turn's prompt blocks out, and the agent's news of it in as events (sans-IO).
- `summary.py`: the one-line summary of a tool call.
- `events.py`: the events and commands today's vocabulary has no word for.
- `backend.py`: argv and environment (OpenCode: offline, asks permissions, start gate).
- `conversation.py`: `AcpConversation`, one agent process as the agent port sees it:
  the opening, the "always" rules, tool calls held until named (sans-IO).
- `driver.py`: a trio shell around the client for the probes (`check`) and the tests;
  sessions run their agent through `runtime.agent_process`.

What maps onto `core.agent_events`:
message chunks -> TextDelta (+ a TextBlock per message when it ends); thought chunks ->
ThinkingBlock (one per thought part); tool_call -> ToolCall (name = first title, input =
rawInput), shown again when the agent names it later (ToolCallUpdated's summary);
tool_call_update completed/failed -> ToolOutcome; session/request_permission (the turn's,
or a subagent's in its child session) -> PermissionAsked (request_id = str(JSON-RPC id));
cancel -> PermissionCancelled per pending request; the agent's `$/cancel_request` of one
-> PermissionCancelled; any other agent request -> ControlAsked (already refused with
-32601); a prompt sent -> TurnStarted; stop reasons and prompt errors -> TurnEnded
(cancelled -> terminal_reason "aborted_cancelled"; max_tokens / max_turn_requests /
refusal -> is_error with a plain message); plans -> PlanUpdated; usage -> UsageUpdated.
The opening: ConversationOpened (the agent's own id, kept before the first prompt),
ConversationMissing (said, and a new one opened), AgentNotReady (one it still lists but
would not open: started again under the restart policy), AgentUnusable (the session fails).
Commands: SendPrompt -> session/prompt; Interrupt -> session/cancel; AllowTool ->
allow_once, "always" too (the rule is kept and answered here: the agent's own "always"
may cover more); DenyTool -> reject_once. What the port has no word for (protocol
trouble, errors of other requests) is logged and dropped by the conversation.
"""

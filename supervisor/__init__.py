"""Run Claude Code sessions behind Mattermost threads: one thread, one session, one agent."""

__version__ = "0.1.0"

"""Test fakes: an OpenAI-compatible server for the real litellm client, and a host-process sandbox."""

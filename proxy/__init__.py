"""CheapLM: a metered gateway for the Anthropic Messages and OpenAI Chat Completions APIs."""

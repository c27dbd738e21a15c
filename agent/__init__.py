"""The curation agent: LangGraph planning over the tools, LLM backends, the CLI."""

"""How the command line starts the chat UI without ``agent`` importing ``ui``.

``agent/cli.py`` finds :func:`chat` through the ``curate.ui`` entry point (``pyproject.toml``), so
the dependency still points ``ui -> agent``: a CPU-only install without Gradio simply has no entry
point, and ``curate chat`` says how to add it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def chat(
    *,
    host: str = "127.0.0.1",
    port: int = 7860,
    auth: str | None = None,
    share: bool = False,
    planner: str = "auto",
    policy: str | None = None,
    engine: str | None = None,
    service: Any = None,
    say: Callable[[str], None] = lambda s: None,
) -> None:
    """Build the agent service (unless given) and serve the chat app; ValueError for bad settings.

    ``engine``: where tools that support it run (local or ray); None = the configured one."""
    from agent.config import apply_env
    from ui import app as ui_app

    apply_env()  # the config file's services (a no-op for what `curate` already applied or the env sets)
    creds = ui_app.parse_auth(auth) if auth else None
    if host not in ("127.0.0.1", "localhost", "::1") and creds is None:
        say(f"warning: binding {host} without --auth; anyone who can reach this port can use the app")
    if service is None:
        from agent.cli_common import make_service

        service = make_service(planner=planner, policy=policy, engine=engine)
    say(f"chat UI on http://{host}:{port} (planner {service.settings().get('planner')}, "
        f"engine {getattr(getattr(service, 'ctx', None), 'engine', 'local')}; Ctrl+C to stop)")
    ui_app.launch(host=host, port=port, auth=creds, share=share, service=service)

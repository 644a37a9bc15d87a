"""OpenAI-compatible HTTP server: `protocol` (wire format), `scheduler` (decode queue), `app` (routes)."""

from specbranch.server.app import ServerConfig, create_app

__all__ = ["ServerConfig", "create_app"]

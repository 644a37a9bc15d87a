"""`specbranch serve`: the OpenAI-compatible HTTP server."""

from __future__ import annotations

import argparse
import sys

from specbranch.cli.options import (
    add_config_options,
    add_method_options,
    add_model_options,
    config_from_args,
    load_from_args,
    method_options,
)
from specbranch.config import SpeculativeConfig
from specbranch.models.builtin import DEFAULT_PAIR
from specbranch.server.app import ServerConfig


def register(sub: argparse._SubParsersAction) -> None:
    serve = sub.add_parser(
        "serve",
        help="OpenAI-compatible HTTP server (/v1/completions, /v1/chat/completions, streaming)",
        description="Serve the model pair behind OpenAI's API: GET /v1/models, POST /v1/completions, "
        "POST /v1/chat/completions (chat template), GET /health, GET /metrics (Prometheus text format; "
        "GET /v1/metrics or /metrics?format=json: JSON). Up to --max-batch requests are decoded together "
        "(continuous batching: they join and leave between rounds, in arrival order, and each round's "
        "target forward runs all their tokens); --max-queue more may wait, beyond that the server "
        "answers 503.",
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000)")
    serve.add_argument(
        "--served-model-name",
        help="the model id clients send (default: specbranch/PAIR, or the --target path)",
    )
    add_config_options(serve, ServerConfig)
    serve.add_argument(
        "--log-level",
        default="info",
        choices=["critical", "error", "warning", "info", "debug"],
        help="uvicorn log level (default info)",
    )
    add_model_options(serve)
    add_method_options(serve)
    serve.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from specbranch.engine import Engine
    from specbranch.server import create_app
    from specbranch.server.scheduler import off_main_thread

    name = args.served_model_name or (args.target or f"specbranch/{args.pair or DEFAULT_PAIR}")
    config = config_from_args(ServerConfig, args, model_name=name)
    spec = config_from_args(SpeculativeConfig, args)
    options = method_options(args)
    pair = off_main_thread(lambda: load_from_args(args, draft_needed=args.method != "ar"))
    app = create_app(pair, lambda: Engine(pair, args.method, spec, **options), config)
    url = f"http://{args.host}:{args.port}/v1"
    print(f"serving {name!r} with --method {args.method} on {url}", file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
    return 0

"""`specbranch serve`: the OpenAI-compatible HTTP server."""

from __future__ import annotations

import argparse
import sys

from specbranch.cli.options import (
    add_method_options,
    add_model_options,
    config_from_args,
    load_from_args,
    method_options,
)
from specbranch.config import SpeculativeConfig
from specbranch.errors import SpecBranchError
from specbranch.models.builtin import DEFAULT_PAIR


def register(sub: argparse._SubParsersAction) -> None:
    serve = sub.add_parser(
        "serve",
        help="OpenAI-compatible HTTP server (/v1/completions, /v1/chat/completions, streaming)",
        description="Serve the model pair behind OpenAI's API: GET /v1/models, POST /v1/completions, "
        "POST /v1/chat/completions (chat template), GET /health, GET /metrics. Requests are decoded one "
        "at a time in arrival order; --max-queue more may wait, beyond that the server answers 503.",
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000)")
    serve.add_argument(
        "--served-model-name",
        help="the model id clients send (default: specbranch/PAIR, or the --target path)",
    )
    serve.add_argument(
        "--max-queue", type=int, default=32, help="requests that may wait while one runs (default 32)"
    )
    serve.add_argument(
        "--request-timeout",
        type=float,
        default=300.0,
        help="seconds from arrival after which a request is abandoned with 504 (default 300)",
    )
    serve.add_argument(
        "--default-max-tokens",
        type=int,
        default=256,
        help="max_tokens of chat requests that give none (completions default to 16, as OpenAI's)",
    )
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
    from specbranch.server import ServerConfig, create_app

    if args.max_queue < 1 or args.request_timeout <= 0 or args.default_max_tokens < 1:
        raise SpecBranchError("--max-queue must be >= 1, --request-timeout > 0, --default-max-tokens >= 1")
    spec = config_from_args(SpeculativeConfig, args)
    options = method_options(args)
    pair = load_from_args(args, draft_needed=args.method != "ar")
    name = args.served_model_name or (args.target or f"specbranch/{args.pair or DEFAULT_PAIR}")
    config = ServerConfig(name, args.method, args.max_queue, args.request_timeout, args.default_max_tokens)
    app = create_app(pair, lambda: Engine(pair, args.method, spec, **options), config)
    url = f"http://{args.host}:{args.port}/v1"
    print(f"serving {name!r} with --method {args.method} on {url}", file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
    return 0

"""`specbranch models`: the built-in models and pairs, whether their packages are installed, and
which backend runs them by default (`--backend auto`)."""

from __future__ import annotations

import argparse

from specbranch.models.builtin import DEFAULT_PAIR, MODELS, PAIRS, installed_models
from specbranch.models.pair import resolve_backend


def register(sub: argparse._SubParsersAction) -> None:
    models = sub.add_parser("models", help="list built-in models and pairs and whether they are installed")
    models.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    installed = installed_models()
    print("built-in models:")
    for name, model in MODELS.items():
        print(f"  {name:22s} {'installed' if installed[name] else 'missing  '}  {model.description}")
    print("built-in pairs (target <- draft):")
    for name, (target, draft) in PAIRS.items():
        print(f"  {name:22s} {target} <- {draft}{'  (default)' if name == DEFAULT_PAIR else ''}")
    backend = resolve_backend("auto", [f"builtin:{name}" for name in MODELS], "cpu", None)
    print(f"backend: {backend} on the CPU by default (--backend auto; --backend torch for transformers)")
    return 0

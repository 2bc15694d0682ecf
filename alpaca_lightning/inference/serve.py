"""``alpaca-serve RUN_DIR``: a finished run's classifier behind HTTP, on LitServe (Lightning's serving library).

    alpaca-serve outputs/rotten_tomatoes/2026-12-03_10-00-00 --port 8000
    curl -X POST localhost:8000/predict -H 'Content-Type: application/json' -d '{"text": "a dull, tedious mess"}'
    # {"label": "rotten", "probability": 0.991, "probabilities": {"rotten": 0.991, "fresh": 0.009}}  (the default
    # job's model, rounded)
    curl localhost:8000/health                                                 # "ok" once the model is loaded

A request is ``{"text": "..."}`` (``{"text": ["...", "..."]}`` for a sentence pair; ``{"tokens": [...]}`` or a
text for a token task, which answers ``{"tags": [...], "probabilities": [...]}``, one per word). Requests that
arrive within ``--batch-timeout`` seconds of each other are predicted together, up to ``--max-batch-size``, through
the same prediction path as ``alpaca-predict``; trailing ``key=value`` settings are the same as there (e.g.
``hardware=gpu``).
Needs ``pip install 'alpaca-lightning[serve]'``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

from alpaca_lightning.errors import AlpacaError, DataError
from alpaca_lightning.inference.classifier import label_names_of

try:
    import litserve as ls
except ImportError:  # alpaca-serve says how to install it
    ls = None


def request_text(request: dict[str, Any]) -> str | tuple[str, str] | list[str]:
    """``{"text": "..."}``, ``{"text": [first, second]}`` (a sentence pair) or ``{"tokens": [...]}`` (a token task's
    words; a token task also splits a text at white space)."""
    tokens = request.get("tokens") if isinstance(request, dict) else None
    if isinstance(tokens, list) and tokens and all(isinstance(t, str) and t.strip() for t in tokens):
        return tokens
    text = request.get("text") if isinstance(request, dict) else None
    if isinstance(text, list) and len(text) == 2 and all(isinstance(t, str) for t in text):
        return (text[0], text[1])
    if not isinstance(text, str) or not text.strip():
        raise DataError('A request is a JSON object {"text": "..."} with a non-empty text ({"text": ["...", "..."]} '
                        'for a sentence pair, {"tokens": ["...", ...]} for a token task).')
    return text


class ServedClassifier:
    """The LitServe API's work, apart from LitServe: load once per worker, predict a batch of requests."""

    def __init__(self, run_dir: Path, round_index: int | None, overrides: list[str]) -> None:
        self.settings = (run_dir, round_index, list(overrides))
        self.classifier: Any = None

    def load(self) -> None:
        from alpaca_lightning.inference.classifier import load

        self.classifier = load(*self.settings)

    def respond(self, texts: list) -> list[dict[str, Any]]:
        return [answer(probs, self.classifier.label_names) for probs in self.classifier.predict_proba(texts)]


def answer(probs: np.ndarray, names: list[str]) -> dict[str, Any]:
    """A text's label with its probability and every class's, or a token task's tag and probability per word."""
    if probs.ndim == 2:
        return {"tags": label_names_of(probs, names), "probabilities": probs.max(axis=1).tolist()}
    best = int(probs.argmax())
    return {"label": names[best], "probability": float(probs[best]),
            "probabilities": {name: float(p) for name, p in zip(names, probs)}}


if ls is not None:
    class ClassifierAPI(ls.LitAPI):
        """Module level, so that LitServe's worker processes can unpickle it."""

        def __init__(self, served: ServedClassifier, **options: Any) -> None:
            super().__init__(**options)
            self.served = served

        def setup(self, device: str) -> None:
            self.served.load()

        def decode_request(self, request):  # no annotation: LitServe would build the route's schema from it
            """A text, a text pair or a sentence's words; 422 for anything else."""
            from fastapi import HTTPException

            try:
                return request_text(request)
            except DataError as err:
                raise HTTPException(status_code=422, detail=str(err)) from None

        def batch(self, inputs: list) -> list:
            return list(inputs)

        def predict(self, texts: Any) -> Any:
            if isinstance(texts, list):
                return self.served.respond(texts)
            return self.served.respond([texts])[0]

        def unbatch(self, output: list) -> list:
            return list(output)

        def encode_response(self, answer: dict[str, Any]) -> dict[str, Any]:
            return answer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="alpaca-serve", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path, help="a finished alpaca-train run folder (holds results.json)")
    parser.add_argument("overrides", nargs="*", help="prediction settings, as for alpaca-predict")
    parser.add_argument("--round", type=int, dest="round_index", help="a kept round's model (default: the reported)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--max-batch-size", type=int, default=64)
    parser.add_argument("--batch-timeout", type=float, default=0.01, help="seconds to wait for a batch to fill")
    args = parser.parse_intermixed_args(argv)
    if ls is None:
        print("alpaca-serve: error: LitServe is not installed: pip install 'alpaca-lightning[serve]'", file=sys.stderr)
        return 2
    try:
        from alpaca_lightning.inference.run_folder import open_run

        open_run(args.run_dir, args.round_index)  # a bad folder fails here, not inside a server worker
        served = ServedClassifier(args.run_dir, args.round_index, args.overrides)
        api = ClassifierAPI(served, max_batch_size=args.max_batch_size, batch_timeout=args.batch_timeout)
    except AlpacaError as err:
        print(f"alpaca-serve: error: {err}", file=sys.stderr)
        return 2
    server = ls.LitServer(api, accelerator="auto", devices=1)
    server.run(host=args.host, port=args.port, generate_client_file=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())

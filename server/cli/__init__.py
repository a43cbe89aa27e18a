"""The `shoprank` command line. Every failure is one plain line on stderr and a
non-zero exit."""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

from features.errors import DataSourceError
from server.cli import commands
from server.cli.commands import Regression
from server.config import LOG_FORMATS, ConfigError, Settings, from_env, with_overrides
from server.errors import StartupError

EXIT_FAILURE = 1
# A serving install (plain `pip install .`) has none of these: the extra that brings each.
TRAIN = "from the train extra: pip install torch==2.13.0, then pip install 'shoprank[train]'"
LOAD = "from the load extra: pip install 'shoprank[load]'"
EXTRAS = {"torch": TRAIN, "onnx": TRAIN, "onnxscript": TRAIN, "matplotlib": LOAD, "locust": LOAD}
EXIT_INTERRUPTED = 130
# `shoprank loadtest compare A B` reaches its own parser; `loadtest` keeps its flags.
COMPARE = "loadtest-compare"


def _home(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--home", help="workspace directory (default: $SHOPRANK_HOME, then ./var)")


SERVER_HELP = (
    "HOST:PORT; or IP:PORT,IP:PORT,... or dns:///NAME:PORT, balanced round robin over "
    "every address (gRPC's client-side balancing)"
)


def _access(parser: argparse.ArgumentParser) -> None:
    """How a client command reaches the server: TLS, mutual TLS, a token."""
    parser.add_argument("--tls-ca", help="PEM roots to trust: call over TLS")
    parser.add_argument("--tls-cert", help="PEM client certificate, for mutual TLS")
    parser.add_argument("--tls-key", help="PEM key of --tls-cert")
    parser.add_argument("--tls-server-name", help="the name to check in the server's certificate")
    parser.add_argument("--token", help="bearer token, sent as `authorization: Bearer ...`")


def _data_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    data = sub.add_parser("data", help="prepare a data set in a workspace")
    data.add_argument("dataset", choices=commands.DATASETS)
    _home(data)
    _synthetic_options(data)
    data.set_defaults(run=commands.cmd_data)


def _synthetic_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--users", type=int, default=2000, help="synthetic: users")
    parser.add_argument("--items", type=int, default=1000, help="synthetic: catalog items")
    parser.add_argument("--days", type=int, default=30, help="synthetic: days of events")
    parser.add_argument("--seed", type=int, default=7, help="synthetic: random seed")


def _feature_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    features = sub.add_parser("features", help="the Feast repo's life cycle")
    features.add_argument(
        "action", choices=("apply", "backfill", "materialize", "stream", "text-encoder")
    )
    features.add_argument("--start", help="ISO date/time (backfill, materialize)")
    features.add_argument("--end", help="ISO date/time (backfill, materialize)")
    features.add_argument(
        "--dry-run", action="store_true", help="backfill: say what it would write"
    )
    features.add_argument(
        "--incremental", action="store_true", help="materialize: from where the last run ended"
    )
    features.add_argument(
        "--writer",
        choices=("shoprank", "feast"),
        default="shoprank",
        help="materialize, stream: shoprank's bulk writer (default) or Feast's own",
    )
    features.add_argument(
        "--engine",
        choices=("local", "spark"),
        default="local",
        help="backfill: this process (numpy) or PySpark (see docs/data-team.md)",
    )
    features.add_argument(
        "--spark-master", help="backfill --engine spark: a master URL (default local[*])"
    )
    features.add_argument(
        "--batch-rows", type=int, help="materialize: entities per write batch (default 10000)"
    )
    features.add_argument(
        "--batch-events", type=int, help="stream: events per batch at most (default 5000)"
    )
    _home(features)
    features.set_defaults(run=commands.cmd_features)


def _model_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    train = sub.add_parser("train", help="train, evaluate, export and register a model")
    train.add_argument("--epochs", type=int, default=8)
    train.add_argument(
        "--stack-per-user",
        type=int,
        default=0,
        help="train the ranker on each user's latest N positives, which the embeddings "
        "never see (training/stacking.py); 0: on every positive",
    )
    train.add_argument(
        "--embedding-folds",
        type=int,
        default=0,
        help="score the ranker's rows with out-of-fold ALS from N folds, and publish ALS "
        "fitted on every pair (training/publish.py); 0: MF, scored in sample",
    )
    train.add_argument(
        "--force",
        action="store_true",
        help="make the new model current even if the quality gate holds it back",
    )
    _home(train)
    train.set_defaults(run=commands.cmd_train)
    models = sub.add_parser("models", help="the model registry")
    models.add_argument("action", choices=("list", "promote", "rollback"))
    models.add_argument("version", nargs="?", help="promote: the version to serve, e.g. 0003")
    _home(models)
    models.set_defaults(run=commands.cmd_models)
    pipeline = sub.add_parser("pipeline", help="data, features, train and export in order")
    pipeline.add_argument("--dataset", choices=commands.DATASETS, default="synthetic")
    _home(pipeline)
    _synthetic_options(pipeline)
    pipeline.set_defaults(run=commands.cmd_pipeline)


def _serving_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    serve = sub.add_parser("serve", help="the gRPC ranking server")
    _home(serve)
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--metrics-port", type=int, help="Prometheus metrics on this port")
    serve.add_argument("--processes", type=int, help="server processes; 0 = one per core")
    serve.add_argument("--log-format", choices=LOG_FORMATS, help="json: a line per call")
    serve.add_argument("--tls-cert", help="PEM certificate chain: serve TLS")
    serve.add_argument("--tls-key", help="PEM private key of --tls-cert")
    serve.add_argument("--tls-client-ca", help="PEM roots: callers need a certificate (mTLS)")
    serve.add_argument(
        "--auth-tokens", help="file of bearer tokens, one per line; re-read on change"
    )
    serve.add_argument(
        "--stream-worker",
        action="store_true",
        default=None,
        help="also run the event stream worker (`features stream`) in this server",
    )
    serve.set_defaults(run=commands.cmd_serve)
    rank = sub.add_parser("rank", help="rank candidates through a running server")
    rank.add_argument("--server", default="127.0.0.1:50051", help=SERVER_HELP)
    rank.add_argument("--user", required=True)
    rank.add_argument("--candidates", required=True, help="comma-separated item ids")
    rank.add_argument("--top-k", type=int, default=0)
    rank.add_argument("--page-size", type=int, default=0)
    rank.add_argument("--query")
    rank.add_argument("--explain", action="store_true")
    rank.add_argument("--timeout", type=float, default=10.0, help="deadline in seconds")
    _access(rank)
    rank.set_defaults(run=commands.cmd_rank)
    evaluate = sub.add_parser("eval", help="ranking quality through a running server")
    evaluate.add_argument("--dataset", choices=commands.DATASETS, required=True)
    evaluate.add_argument("--server", default="127.0.0.1:50051", help=SERVER_HELP)
    _home(evaluate)
    evaluate.add_argument("--negatives", type=int, default=99, help="sampled per user")
    evaluate.add_argument("--max-users", type=int, default=0, help="0 = every held-out user")
    evaluate.add_argument("--concurrency", type=int, default=8)
    evaluate.add_argument("--seed", type=int, default=0)
    evaluate.add_argument("--out", help="JSON path (a PNG chart is written beside it)")
    _access(evaluate)
    evaluate.set_defaults(run=commands.cmd_eval)
    _loadtest_parsers(sub)
    proto = sub.add_parser("proto", help="write the gRPC contract, for clients in other languages")
    proto.add_argument("--out", required=True, help="directory; gets shoprank/v1/ranking.proto")
    proto.set_defaults(run=commands.cmd_proto)


def _loadtest_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    load = sub.add_parser(
        "loadtest",
        help="load-test a running server (and `loadtest compare A.json B.json`)",
        description="Load-test a running server; `shoprank loadtest compare A.json B.json` "
        "compares two --json reports.",
    )
    load.add_argument("--server", default="127.0.0.1:50051", help=SERVER_HELP)
    load.add_argument("--scenario", help="YAML or JSON scenario (see README); default: built in")
    _home(load)
    pace = load.add_mutually_exclusive_group()
    pace.add_argument("--concurrency", type=int, default=8, help="closed loop: calls in flight")
    pace.add_argument("--rps", type=float, help="open loop: calls started per second")
    load.add_argument("--duration", type=float, help="seconds measured (default 10)")
    load.add_argument("--requests", type=int, help="measured calls; alone, bounds the run")
    load.add_argument("--warmup", type=float, default=1.0, help="seconds not measured")
    load.add_argument(
        "--connections", type=int, default=4, help="TCP connections; a call takes the least busy"
    )
    load.add_argument("--workers", type=int, default=1, help="load generator processes")
    load.add_argument("--candidates", type=int, help="override the scenario's candidates per call")
    load.add_argument("--top-k", type=int, help="override the scenario's top_k")
    load.add_argument("--json", help="write the full report here")
    load.add_argument("--html", help="write a page with the summary and both charts here")
    load.add_argument("--png", help="write latency-over-time and histogram PNGs to this directory")
    load.add_argument("--quiet", action="store_true", help="no progress line each second")
    _access(load)
    load.set_defaults(run=commands.cmd_loadtest)
    compare = sub.add_parser(
        COMPARE,
        # Python 3.11's argparse prints a suppressed subcommand as "==SUPPRESS==".
        help="what `shoprank loadtest compare A.json B.json` runs",
        prog="shoprank loadtest compare",
        description="Compare two `loadtest --json` reports; exit 1 when B regressed against A.",
    )
    compare.add_argument("a", help="baseline report (JSON)")
    compare.add_argument("b", help="candidate report (JSON)")
    compare.add_argument(
        "--threshold", type=float, default=10.0, help="percent change in p50, p99 or QPS"
    )
    compare.add_argument(
        "--error-points", type=float, default=0.1, help="rise in the error rate, in points"
    )
    compare.set_defaults(run=commands.cmd_loadtest_compare)


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="shoprank", description=__doc__)
    sub = root.add_subparsers(dest="command", required=True)
    _data_parsers(sub)
    _feature_parsers(sub)
    _model_parsers(sub)
    _serving_parsers(sub)
    return root


def settings_for(args: argparse.Namespace) -> Settings:
    home = getattr(args, "home", None)
    return with_overrides(
        from_env(),
        home=Path(home) if home else None,
        host=getattr(args, "host", None),
        port=getattr(args, "port", None),
        metrics_port=getattr(args, "metrics_port", None),
        processes=getattr(args, "processes", None),
        tls_cert=getattr(args, "tls_cert", None),
        tls_key=getattr(args, "tls_key", None),
        tls_client_ca=getattr(args, "tls_client_ca", None),
        auth_tokens=getattr(args, "auth_tokens", None),
        log_format=getattr(args, "log_format", None),
        spark_master=getattr(args, "spark_master", None),
        stream_worker=getattr(args, "stream_worker", None),
    )


def _one_line(error: BaseException) -> str:
    import grpc

    if isinstance(error, grpc.RpcError) and hasattr(error, "code"):
        return f"{error.code().name}: {error.details()}"
    if isinstance(error, ModuleNotFoundError) and error.name in EXTRAS:
        return f"this command needs {error.name}, {EXTRAS[error.name]}"
    text = str(error).strip().splitlines()
    detail = text[0] if text else ""
    # These carry messages written for the operator; anything else names its type.
    known = (ConfigError, StartupError, DataSourceError, ValueError, OSError, Regression)
    return detail if isinstance(error, known) and detail else f"{type(error).__name__}: {detail}"


def main(argv: Sequence[str] | None = None) -> int:
    # Feast and its engines warn about their own deprecations on every run.
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    words = list(sys.argv[1:] if argv is None else argv)
    if words[:2] == ["loadtest", "compare"]:
        words[:2] = [COMPARE]
    args = parser().parse_args(words)
    try:
        args.run(settings_for(args), args)
    except KeyboardInterrupt:
        print("shoprank: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as error:
        name = "loadtest compare" if args.command == COMPARE else args.command
        print(f"shoprank {name}: {_one_line(error)}", file=sys.stderr)
        return EXIT_FAILURE
    return 0

"""What each `shoprank` command does. Heavy imports happen inside the command
that needs them, so `shoprank rank` does not pay for torch or Feast."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from features.workspace import Workspace
from server.config import Settings

if TYPE_CHECKING:
    from server.clients.channels import Access

DATASETS = ("synthetic", "complete-journey", "movielens-1m")


def say(message: str) -> None:
    print(message, flush=True)


def parse_time(text: str) -> datetime:
    """An ISO date or time; naive values are UTC."""
    value = datetime.fromisoformat(text)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def prepare_data(dataset: str, workspace: Workspace, args: argparse.Namespace) -> None:
    started = time.perf_counter()
    if dataset == "synthetic":
        from features.synthetic import SyntheticSpec, prepare

        spec = SyntheticSpec(users=args.users, items=args.items, days=args.days, seed=args.seed)
        manifest = prepare(workspace, spec)
    elif dataset == "movielens-1m":
        from features import movielens

        manifest = movielens.prepare(workspace)
    else:
        from features import complete_journey

        manifest = complete_journey.prepare(workspace)
    counts = ", ".join(f"{k}={v}" for k, v in sorted(manifest.counts.items()))
    say(f"data {dataset}: {counts} in {time.perf_counter() - started:.1f}s -> {workspace.data_dir}")


def cmd_data(settings: Settings, args: argparse.Namespace) -> None:
    prepare_data(args.dataset, settings.workspace, args)


def cmd_features(settings: Settings, args: argparse.Namespace) -> None:
    from features import store

    workspace = settings.workspace
    if args.action == "apply":
        say(f"applied {', '.join(store.apply(workspace))} -> {workspace.repo_dir}")
    elif args.action == "backfill":
        run_backfill(workspace, args)
    elif args.action == "stream":
        run_stream(settings, args)
    elif args.action == "text-encoder":
        export_encoder(workspace)
    else:
        start = parse_time(args.start) if args.start else None
        end = parse_time(args.end) if args.end else None
        started = time.perf_counter()
        counts = store.materialize(
            workspace,
            start,
            end,
            args.incremental,
            writer=args.writer,
            progress=True,
            batch_rows=args.batch_rows,
        )
        for view, rows in counts.items():
            say(f"materialized {view}: {rows} entities")
        say(f"materialize took {time.perf_counter() - started:.1f}s")


def export_encoder(workspace: Workspace) -> None:
    """The language model to ONNX, for item text and queries (needs the train extra)."""
    try:
        from training.text_encoder import export_text_encoder
    except ImportError as error:
        raise ValueError(
            f"the text encoder export needs the train extra ({error}); pip install -e '.[train]'"
        ) from None
    seconds = export_text_encoder(workspace.text_encoder_dir)
    say(f"text encoder exported to {workspace.text_encoder_dir} in {seconds:.1f}s")


def run_stream(settings: Settings, args: argparse.Namespace) -> None:
    """The stream worker until SIGTERM or SIGINT; a line of progress every 10 s."""
    import signal
    import threading

    from features.event_log import open_event_log
    from features.stream_worker import BATCH_EVENTS, StreamConfig, StreamWorker

    workspace = settings.workspace
    config = StreamConfig(
        batch_events=args.batch_events or BATCH_EVENTS,
        writer=args.writer,
        dedup_seconds=settings.event_dedup_seconds,
    )
    worker = StreamWorker(
        workspace, open_event_log(workspace, settings.event_dedup_seconds), config
    )
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    worker.load()
    assert worker.snapshot is not None
    say(
        f"stream: on the snapshot of {worker.snapshot.at:%Y-%m-%d %H:%M:%S}, "
        f"{workspace.stores.event_log_kind} event log; stop with Ctrl-C"
    )
    shown = [time.monotonic(), 0]

    def progress() -> None:
        if time.monotonic() - shown[0] >= 10:
            stats = worker.stats
            rate = (stats.events - shown[1]) / (time.monotonic() - shown[0])
            say(
                f"stream: {stats.events} events applied ({rate:.0f}/s), "
                f"{stats.duplicates} duplicates, {stats.late} late"
            )
            shown[:] = [time.monotonic(), stats.events]

    try:
        worker.run(stop, progress)
    finally:
        worker.close()
    say(f"stream: stopped after {worker.stats.events} events")


def run_backfill(workspace: Workspace, args: argparse.Namespace) -> None:
    from features.offline import backfill, snapshot_times

    times = None
    if args.start or args.end:
        if not (args.start and args.end):
            raise ValueError("backfill needs both --start and --end, or neither")
        start, end = parse_time(args.start), parse_time(args.end)
        if end <= start:
            raise ValueError(f"--end {args.end} is not after --start {args.start}")
        # One snapshot per day boundary in (start, end], plus end itself.
        times = snapshot_times(start - timedelta(days=1), end, limit=100_000)
        times = [t for t in times if t >= start]
    if args.engine == "spark":
        if args.dry_run:
            raise ValueError("--dry-run is the local engine's; leave out --engine spark")
        from features.spark_backfill import backfill_spark

        report = backfill_spark(workspace, times, progress=True)
    else:
        report = backfill(workspace, times, dry_run=args.dry_run, progress=not args.dry_run)
    for line in report.lines():
        say(line)


def cmd_train(settings: Settings, args: argparse.Namespace) -> None:
    if args.stack_per_user < 0:
        raise ValueError(f"--stack-per-user {args.stack_per_user}: 0 (off), or 1 or more")
    if args.embedding_folds < 0 or args.embedding_folds == 1:
        raise ValueError(f"--embedding-folds {args.embedding_folds}: 0 (off), or 2 or more")
    if args.stack_per_user and args.embedding_folds:
        raise ValueError("--stack-per-user and --embedding-folds are two schemes; pick one")
    from dataclasses import replace as with_fields

    from features.prepare import Manifest
    from training.train import config_for, train

    workspace = settings.workspace
    dataset = Manifest.read(workspace.manifest_path).dataset
    config = with_fields(
        config_for(dataset),
        epochs=args.epochs,
        stack_per_user=args.stack_per_user,
        embedding_folds=args.embedding_folds,
    )
    result = train(workspace, config, say, force=args.force)
    say(f"{result.table}\n{result.summary()}")


def cmd_models(settings: Settings, args: argparse.Namespace) -> None:
    from training import registry
    from training.registry import versions

    workspace = settings.workspace
    if args.action == "promote":
        if not args.version:
            raise ValueError("models promote needs a VERSION; `shoprank models list` shows them")
        registry.promote(workspace.models_dir, args.version)
        say(f"{args.version} is current; servers swap it in within their model poll interval")
        return
    if args.action == "rollback":
        version = registry.rollback(workspace.models_dir)
        say(f"rolled back: {version} is current")
        return
    found = versions(workspace.models_dir)
    if not found:
        say(f"no models in {workspace.models_dir}; run `shoprank train`")
        return
    say("* current; validation: the training set's newest tenth (the gate's); test: held out")
    say(
        f"{'':2}{'version':<8} {'trained_at':<19} {'val auc':>8} "
        f"{'test ndcg@10':>12} {'test hr@10':>10} {'test auc':>8}  gate"
    )
    for model in found:
        metrics = model.metadata.get("metrics", {}).get("ranker", {})
        validation = model.metadata.get("validation", {}).get("auc")
        verdict = model.metadata.get("gate", {})
        decided = "" if not verdict else ("made current" if verdict["current"] else "held back")
        say(
            f"{'*' if model.current else ' '} {model.version:<8} "
            f"{model.metadata.get('trained_at', '?')[:19]:<19} {_figure(validation):>8} "
            f"{_figure(metrics.get('ndcg@10')):>12} {_figure(metrics.get('hr@10')):>10} "
            f"{_figure(metrics.get('auc')):>8}  {decided}"
        )


def _figure(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def timed(name: str, step: Callable[[], Any], timings: dict[str, float]) -> None:
    say(f"== {name}")
    started = time.perf_counter()
    step()
    timings[name] = time.perf_counter() - started


def cmd_pipeline(settings: Settings, args: argparse.Namespace) -> None:
    from features import store
    from features.offline import backfill
    from features.text_encoder import exported
    from training.train import config_for, train

    workspace = settings.workspace
    timings: dict[str, float] = {}
    timed("data", lambda: prepare_data(args.dataset, workspace, args), timings)
    if not exported(workspace.text_encoder_dir):  # the same model whatever the data
        timed("features text-encoder", lambda: export_encoder(workspace), timings)
    timed("features apply", lambda: store.apply(workspace), timings)
    timed("features backfill", lambda: say("\n".join(backfill(workspace).lines())), timings)
    timed("features materialize", lambda: say(str(store.materialize(workspace))), timings)

    def trained() -> None:
        result = train(workspace, config_for(args.dataset), say)
        say(f"{result.table}\n{result.summary()}")

    timed("train", trained, timings)
    write_example(workspace)
    say("== stage wall times")
    for name, seconds in timings.items():
        say(f"{name:<22} {seconds:>7.1f}s")


def write_example(workspace: Workspace) -> None:
    """A user with held-out positives and some other items, for `shoprank rank`."""
    import pyarrow.parquet as pq

    heldout = pq.read_table(workspace.heldout_path, columns=["user_id", "item_id"]).to_pylist()
    catalog = pq.read_table(workspace.catalog_path, columns=["item_id"])["item_id"].to_pylist()
    user = heldout[0]["user_id"] if heldout else "unknown-user"
    mine = [row["item_id"] for row in heldout if row["user_id"] == user][:3]
    # `--candidates` is comma-separated: ids with commas or quotes (film titles) stay out.
    usable = [item for item in catalog if "," not in item and "'" not in item]
    allowed = set(usable)
    mine = [item for item in mine if item in allowed]
    others = [item for item in usable[:: max(1, len(usable) // 12)] if item not in mine]
    body = {"user": user, "candidates": list(dict.fromkeys(mine + others))[:12]}
    workspace.example_path.write_text(json.dumps(body, indent=2))


def cmd_serve(settings: Settings, args: argparse.Namespace) -> None:
    from server import logs
    from server.app import run
    from server.processes import serve_processes

    logs.configure(settings.log_format)
    processes = settings.processes or os.cpu_count() or 1
    if processes == 1:
        run(settings, on_ready=lambda port: announce(settings, port))
    else:
        settings = replace(settings, processes=processes)
        serve_processes(settings, on_ready=lambda port: announce(settings, port))


def announce(settings: Settings, port: int) -> None:
    say(
        f"shoprank serving on {settings.host}:{port} with {settings.processes or 1} process(es) "
        f"(home {settings.home}); Ctrl-C stops"
    )
    example = settings.workspace.example_path
    if example.exists():
        body = json.loads(example.read_text())
        program = Path(sys.argv[0])
        if program.is_absolute() and program.is_relative_to(Path.cwd()):
            program = program.relative_to(Path.cwd())
        say(
            f"try: {program} rank --server {settings.host}:{port} --user '{body['user']}' "
            f"--candidates '{','.join(body['candidates'])}' --top-k 5 --explain"
        )


def cmd_rank(settings: Settings, args: argparse.Namespace) -> None:

    from server.clients.client import print_ranking, rank
    from server.proto.shoprank.v1 import ranking_pb2 as pb

    request = pb.RankRequest(
        user_id=args.user,
        candidate_item_ids=[c for c in args.candidates.split(",") if c],
        top_k=args.top_k,
        explain=args.explain,
        page_size=args.page_size,
        query=args.query or "",
    )
    access = access_for(args)
    with access.channel(args.server) as channel:
        pages = rank(channel, request, args.timeout, access.metadata)
        print_ranking(pages, args.explain, sys.stdout)


def access_for(args: argparse.Namespace) -> Access:
    """The --tls-* and --token flags of a client command; its --server checked."""
    from server.clients.channels import Access, Tls, balanced

    balanced(args.server)  # a bad list of servers is one line now, not a worker's traceback
    tls = None
    if args.tls_ca or args.tls_cert or args.tls_key or args.tls_server_name:
        if bool(args.tls_cert) != bool(args.tls_key):
            raise ValueError("--tls-cert and --tls-key go together")
        tls = Tls(
            ca=args.tls_ca or "",
            cert=args.tls_cert or "",
            key=args.tls_key or "",
            server_name=args.tls_server_name or "",
        )
    return Access(tls, args.token or "")


def cmd_loadtest(settings: Settings, args: argparse.Namespace) -> None:
    from server.clients.loadtest.command import Outputs, loadtest
    from server.clients.loadtest.generator import Load

    access = access_for(args)

    load = Load(
        concurrency=args.concurrency,
        rps=args.rps or 0.0,
        # A count alone bounds the run; with both, whichever comes first.
        duration=args.duration if args.duration is not None else (0 if args.requests else 10),
        requests=args.requests or 0,
        warmup=args.warmup,
        connections=args.connections,
    )
    outputs = Outputs(
        json=Path(args.json) if args.json else None,
        html=Path(args.html) if args.html else None,
        png=Path(args.png) if args.png else None,
    )
    loadtest(
        args.server,
        settings.workspace,
        Path(args.scenario) if args.scenario else None,
        load,
        args.workers,
        outputs,
        sys.stdout,
        None if args.quiet else sys.stderr,
        candidates=args.candidates,
        top_k=args.top_k,
        tls=access.tls,
        token=access.token,
    )


def cmd_loadtest_compare(settings: Settings, args: argparse.Namespace) -> None:
    from server.clients.loadtest.command import compare

    if compare(Path(args.a), Path(args.b), args.threshold, args.error_points, sys.stdout):
        raise Regression(f"{args.b} regressed against {args.a}; see the table above")


class Regression(Exception):
    """`loadtest compare` found B worse than A beyond the threshold."""


def cmd_eval(settings: Settings, args: argparse.Namespace) -> None:
    import asyncio

    from features.prepare import Manifest
    from server.clients import served_eval

    workspace = settings.workspace
    manifest = Manifest.read(workspace.manifest_path)
    if manifest.dataset != args.dataset:
        raise ValueError(
            f"{workspace.home} holds {manifest.dataset!r}, not {args.dataset!r}; pass its --home"
        )
    groups = served_eval.groups_for(workspace, args.negatives, args.seed, args.max_users)
    started = time.perf_counter()
    rankings = asyncio.run(
        served_eval.rank_all(args.server, groups, args.concurrency, access=access_for(args))
    )
    table = served_eval.score_table(groups, rankings)
    say(f"{len(groups)} users ranked through {args.server} in {time.perf_counter() - started:.1f}s")
    say(served_eval.format_table(table))
    out = Path(args.out) if args.out else workspace.home / "eval" / f"{args.dataset}.json"
    png = served_eval.write_outputs(table, args.dataset, out)
    say(f"wrote {out} and {png}" if png else f"wrote {out} (the PNG needs shoprank[train])")


def cmd_proto(settings: Settings, args: argparse.Namespace) -> None:
    from importlib import resources

    source = resources.files("server.proto.shoprank.v1") / "ranking.proto"
    target = Path(args.out) / "shoprank" / "v1" / "ranking.proto"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(source.read_bytes())
    say(f"wrote {target}; compile it with -I {args.out}")

"""`strat-llm`: the command line (DESIGN §9). Each command materializes Dagster assets.

Heavy imports (dagster, pandas) happen inside the commands so `--help` stays instant.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ingest.calendars import MARKETS
from ingest.layout import DATA_DIR_ENV, WAREHOUSE_ENV

SOURCES = ("sample", "files")


def _set_locations(data_dir: str | None, warehouse: str | None) -> None:
    """Environment variables are how the locations reach Dagster resources and dbt alike.
    An explicit data directory brings its own warehouse file unless --warehouse names one."""
    from ingest.layout import DataLayout

    if data_dir or warehouse:
        layout = DataLayout.from_env(data_dir, warehouse)
        os.environ[DATA_DIR_ENV] = str(layout.data_dir)
        os.environ[WAREHOUSE_ENV] = str(layout.warehouse)


def _ingest(
    *,
    markets: list[str] | None,
    config: dict[str, object],
) -> str:
    from dagster_project.ingest_assets import raw_asset_keys, raw_tables
    from dagster_project.resources import DataDirResource
    from dagster_project.runner import run_assets
    from ingest.layout import DataLayout
    from ingest.load import format_summary, read_manifest

    chosen = markets or list(MARKETS)
    run_assets(
        [raw_tables],
        raw_asset_keys(chosen),
        resources={"data_dir": DataDirResource()},
        ops={"raw_tables": {"config": config}},
    )
    layout = DataLayout.from_env()
    summary = format_summary([read_manifest(layout, market) for market in chosen])
    return f"{summary}\nraw Parquet under {layout.data_dir / 'raw'}"


def cmd_ingest(args: argparse.Namespace) -> int:
    if args.source == "files" and not args.path:
        raise SystemExit("strat-llm ingest: --source files needs --path DIR (the dataset folder)")
    if args.source == "sample" and args.path:
        raise SystemExit("strat-llm ingest: --path is only for --source files")
    config: dict[str, object] = {
        "source": args.source,
        "on_bad_rows": args.on_bad_rows,
        "allow_missing_sessions": args.allow_missing_sessions,
    }
    markets = args.market
    if args.path:
        from ingest.files import dataset_markets

        config["path"] = str(Path(args.path).expanduser().resolve())
        # Without --market, the markets are the folders the dataset has.
        markets = dataset_markets(Path(config["path"]), args.market)
    for name in ("seed", "start", "end"):
        if getattr(args, name) is not None:
            config[name] = getattr(args, name)
    print(_ingest(markets=markets, config=config))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from dagster_project.runner import backtest, build_warehouse, infer
    from inference.experiments import load_experiment
    from ingest.layout import DataLayout
    from ingest.load import ingested_markets, session_span

    out = Path(args.out).expanduser().resolve()
    _set_locations(str(out), None)
    experiment = load_experiment()
    print("Strat-LLM demo on the embedded SYNTHETIC sample market (offline)")
    print("[1/4] ingest")
    print(_ingest(markets=None, config={"source": "sample"}))
    layout = DataLayout.from_env()
    start, end = session_span(layout)
    print(f"[2/4] point-in-time warehouse for decision dates {start} .. {end} (dbt + gate)")
    print(build_warehouse(start, end))
    print(
        f"[3/4] decisions of {len(experiment.arms)} arm(s) from {experiment.source}, date after "
        "date (position-aware arms see their book)"
    )
    for arm in experiment.arms:
        kind = "an LLM" if arm.model.is_llm else "a reference rule agent, NOT an LLM"
        print(f"  {arm.slug}: {kind}, {'position-aware' if arm.position_aware else 'blind'}")
    markets = ingested_markets(layout)
    print(infer([arm.slug for arm in experiment.arms], start, end, {"markets": markets}))
    print("[4/4] backtest with the baselines, metric and regime tables")
    print(backtest({}))
    print(f"warehouse: {layout.warehouse}")
    print(f"decisions: {layout.landing_dir / 'llm_decisions'}")
    return 0


def cmd_build(args: argparse.Namespace) -> int:
    from dagster_project.runner import build_warehouse
    from ingest.layout import DataLayout

    layout = DataLayout.from_env()
    start, end = build_window(layout, args.start, args.end)
    print(f"building the point-in-time warehouse for decision dates {start} .. {end}")
    summary = build_warehouse(start, end)
    print(summary)
    print(f"warehouse: {layout.warehouse}")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from dagster_project.runner import check_gate
    from ingest.layout import DataLayout

    print(f"leakage gate on {DataLayout.from_env().warehouse}")
    print(check_gate())
    return 0


def cmd_infer(args: argparse.Namespace) -> int:
    from datetime import date

    from dagster_project.runner import infer
    from inference.experiments import ExperimentError, load_experiment
    from ingest.layout import DataLayout
    from ingest.load import ingested_markets

    try:
        experiment = load_experiment(args.experiments)
        for slug in args.arm:
            experiment.arm(slug, args.base_url)
    except ExperimentError as error:
        print(f"strat-llm infer: {error}", file=sys.stderr)
        return 1
    config: dict[str, object] = {"markets": ingested_markets(DataLayout.from_env(), args.market)}
    for name in ("base_url", "concurrency", "experiments", "token_budget"):
        if getattr(args, name) is not None:
            config[name] = getattr(args, name)
    start, end = date.fromisoformat(args.start), date.fromisoformat(args.end)
    if end < start:
        print(f"strat-llm infer: --end {end} is before --start {start}", file=sys.stderr)
        return 1
    print(infer(args.arm, start, end, config))
    return 0


def cmd_backtest(args: argparse.Namespace) -> int:
    from dagster_project.runner import backtest
    from ingest.layout import DataLayout
    from ingest.load import ingested_markets

    config: dict[str, object] = {"random_seed": args.seed, "fill_at": args.fill_at}
    config["markets"] = ingested_markets(DataLayout.from_env(), args.market)
    for name in ("start", "end", "arms", "baselines", "market"):
        value = getattr(args, name)
        if value is not None:
            config["markets" if name == "market" else name] = value
    print(f"backtest on {DataLayout.from_env().warehouse}")
    print(backtest(config))
    return 0


def cmd_batch(args: argparse.Namespace) -> int:

    from inference.batch import export_batch, import_batch
    from inference.experiments import ExperimentError, load_experiment
    from ingest.calendars import sessions
    from ingest.layout import DataLayout
    from ingest.load import ingested_markets

    layout = DataLayout.from_env()
    cache_path = layout.response_cache
    if args.action == "import":
        summary = import_batch(Path(args.file), cache_path)
        print(f"stored {summary.stored} answers in {cache_path}")
        for line in summary.failed[:20]:
            print(f"failed {line}")
        if summary.unknown:
            print(f"{len(summary.unknown)} answers match no exported request (ignored)")
        return 1 if summary.failed else 0
    try:
        arm = load_experiment(args.experiments).arm(args.arm, args.base_url)
    except ExperimentError as error:
        print(f"strat-llm batch: {error}", file=sys.stderr)
        return 1
    markets = ingested_markets(layout, args.market)
    days = sorted({day for market in markets for day in sessions(market, args.start, args.end)})
    if not days:
        print(f"strat-llm batch: no sessions from {args.start} to {args.end}", file=sys.stderr)
        return 1
    try:
        summary = export_batch(
            arm,
            days,
            Path(args.out),
            warehouse=layout.warehouse,
            cache_path=cache_path,
            markets=markets,
        )
    except ValueError as error:
        print(f"strat-llm batch: {error}", file=sys.stderr)
        return 1
    print(
        f"wrote {summary.written} requests to {summary.path} "
        f"({summary.already_answered} already answered in the cache)"
    )
    return 0


def cmd_prompt(args: argparse.Namespace) -> int:
    from datetime import date

    from inference.book import latest_books
    from inference.engine import build_request
    from inference.experiments import ExperimentError, load_experiment
    from inference.snapshots import SnapshotNotFound, load_snapshot
    from ingest.layout import DataLayout

    layout = DataLayout.from_env()
    day = date.fromisoformat(args.date)
    try:
        arm = load_experiment(args.experiments).arm(args.arm, args.base_url)
        snapshot = load_snapshot(layout.warehouse, args.market, args.ticker, day)
    except (ExperimentError, SnapshotNotFound) as error:
        print(f"strat-llm prompt: {error}", file=sys.stderr)
        return 1
    book_date, books = latest_books(layout, arm.slug, args.market, day)
    holding = books.get(args.ticker)
    if not arm.position_aware:
        where = "none: a blind arm's prompt does not show its book"
    elif holding is None:
        where = f"none yet for {arm.slug} in {args.market} before {day} (a flat, all-cash sleeve)"
    else:
        where = f"{arm.slug} after the close of {book_date}"
    request = build_request(arm, snapshot, args.token_budget, holding)
    for message in request.message_dicts():
        print(f"===== {message['role']} =====")
        print(message["content"])
    print(
        f"===== prompt {request.prompt_version}, arm {arm.slug}, book {where}, request "
        f"{request.hash[:16]} ====="
    )
    return 0


def build_window(layout, start: str | None, end: str | None):
    """The requested window, or the whole span of the ingested session calendars."""
    from datetime import date

    from ingest.load import session_span

    if start and end:
        return date.fromisoformat(start), date.fromisoformat(end)
    first, last = session_span(layout)
    return (date.fromisoformat(start) if start else first), (
        date.fromisoformat(end) if end else last
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="strat-llm",
        description="Point-in-time warehouse for evaluating LLM trading agents.",
    )
    parser.add_argument("--data-dir", help=f"data directory (default: ${DATA_DIR_ENV} or ./data)")
    parser.add_argument(
        "--warehouse",
        help=f"DuckDB warehouse file (default: <data-dir>/warehouse.duckdb when --data-dir is "
        f"given, else ${WAREHOUSE_ENV}, else ./data/warehouse.duckdb)",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo", help="run the pipeline on the embedded sample, offline")
    demo.add_argument("--out", default="data", help="output directory (default: data)")
    demo.set_defaults(handler=cmd_demo)

    ingest = commands.add_parser("ingest", help="load raw data into data/raw/<market>/")
    ingest.add_argument("--source", choices=SOURCES, required=True)
    ingest.add_argument("--path", help="dataset folder with us/ and/or cn/ (for --source files)")
    ingest.add_argument(
        "--market", choices=MARKETS, action="append", help="only this market (repeatable)"
    )
    ingest.add_argument(
        "--on-bad-rows",
        choices=("fail", "quarantine"),
        default="fail",
        help="fail: stop and write nothing (default); quarantine: load the valid rows and "
        "write rejected ones with their reason to data/quarantine/",
    )
    ingest.add_argument(
        "--allow-missing-sessions",
        action="store_true",
        help="accept exchange sessions missing inside a series (they are listed in the manifest)",
    )
    ingest.add_argument("--seed", type=int, help="sample generator seed")
    ingest.add_argument("--start", help="sample span start, YYYY-MM-DD (default 2024-07-01)")
    ingest.add_argument("--end", help="sample span end, YYYY-MM-DD (default 2025-12-31)")
    ingest.set_defaults(handler=cmd_ingest)

    build = commands.add_parser(
        "build", help="build the point-in-time warehouse (dbt) for a decision-date window"
    )
    build.add_argument("--start", help="first decision date, YYYY-MM-DD (default: data start)")
    build.add_argument("--end", help="last decision date, YYYY-MM-DD (default: data end)")
    build.set_defaults(handler=cmd_build)

    check = commands.add_parser(
        "check", help="run the leakage gate; exit 1 naming the expectation and rows if it fails"
    )
    check.set_defaults(handler=cmd_check)

    from inference.experiments import SLUG_GRAMMAR
    from inference.prompts import DEFAULT_TOKEN_BUDGET

    infer = commands.add_parser("infer", help="decisions of one arm over a date range")
    infer.add_argument(
        "--arm",
        required=True,
        action="append",
        help=f"{SLUG_GRAMMAR} (repeatable: the arms of a date go out together)",
    )
    infer.add_argument("--start", required=True, help="first decision date, YYYY-MM-DD")
    infer.add_argument("--end", required=True, help="last decision date, YYYY-MM-DD")
    infer.add_argument(
        "--base-url", help="OpenAI-compatible server; an unconfigured model is its model id"
    )
    infer.add_argument("--concurrency", type=int, help="requests in flight (overrides config)")
    infer.add_argument(
        "--market", choices=MARKETS, action="append", help="only this market (repeatable)"
    )
    infer.add_argument("--experiments", help="experiments YAML (default experiments/default.yaml)")
    infer.add_argument("--token-budget", type=int, help="prompt budget in estimated tokens")
    infer.set_defaults(handler=cmd_infer)

    from backtest.run import FILL_PRICES
    from backtest.targets import BASELINE_ARMS

    backtest = commands.add_parser(
        "backtest",
        help="simulate the arms and baselines, each arm over its own decision window; replace "
        "only their stored results; build the metric and regime tables",
    )
    backtest.add_argument(
        "--start", help="first session, YYYY-MM-DD (default: each arm's first decision)"
    )
    backtest.add_argument(
        "--end", help="last session, YYYY-MM-DD (default: each arm's last decision)"
    )
    backtest.add_argument(
        "--arm",
        dest="arms",
        action="append",
        help="only this arm (repeatable; default: all); other arms' results stay",
    )
    backtest.add_argument(
        "--baseline",
        dest="baselines",
        action="append",
        choices=BASELINE_ARMS,
        help="only these baselines (repeatable; default: all, none when --arm is given)",
    )
    backtest.add_argument(
        "--market",
        choices=MARKETS,
        action="append",
        help="only this market (repeatable); other markets' results stay",
    )
    backtest.add_argument("--seed", type=int, default=0, help="seed of the random arm")
    backtest.add_argument(
        "--fill-at",
        choices=FILL_PRICES,
        default="open",
        help="price a decision for session D fills at (default: D's open)",
    )
    backtest.set_defaults(handler=cmd_backtest)

    batch = commands.add_parser("batch", help="OpenAI batch JSONL export and import")
    batch_actions = batch.add_subparsers(dest="action", required=True)
    export = batch_actions.add_parser("export", help="write an arm's unanswered requests")
    export.add_argument("--arm", required=True)
    export.add_argument("--start", required=True)
    export.add_argument("--end", required=True)
    export.add_argument("--out", required=True, help="JSONL file to write")
    export.add_argument("--market", choices=MARKETS, action="append")
    export.add_argument("--base-url", help="as for infer: makes an unconfigured model usable")
    export.add_argument("--experiments")
    load = batch_actions.add_parser("import", help="store a batch output file's answers")
    load.add_argument("file", help="output JSONL of vllm run-batch or the OpenAI Batch API")
    batch.set_defaults(handler=cmd_batch)

    prompt = commands.add_parser(
        "prompt", help="print the exact messages an arm would send for one snapshot"
    )
    prompt.add_argument("--arm", required=True, help=SLUG_GRAMMAR)
    prompt.add_argument("--market", choices=MARKETS, required=True)
    prompt.add_argument("--ticker", required=True)
    prompt.add_argument("--date", required=True, help="decision date, YYYY-MM-DD")
    prompt.add_argument("--experiments", help="experiments YAML (default experiments/default.yaml)")
    prompt.add_argument("--base-url", help="as for infer: makes an unconfigured model usable")
    prompt.add_argument("--token-budget", type=int, default=DEFAULT_TOKEN_BUDGET)
    prompt.set_defaults(handler=cmd_prompt)
    return parser


def _quiet_environment() -> None:
    """Offline by default: no telemetry; Dagster's beta notices are not for CLI users."""
    import warnings

    for name, value in (
        ("DAGSTER_DISABLE_TELEMETRY", "1"),
        ("DBT_SEND_ANONYMOUS_USAGE_STATS", "false"),
        ("GX_ANALYTICS_ENABLED", "false"),
    ):
        os.environ.setdefault(name, value)
    warnings.filterwarnings("ignore", message=r".*is currently in beta")


def main(argv: list[str] | None = None) -> int:
    _quiet_environment()
    args = build_parser().parse_args(argv)
    _set_locations(args.data_dir, args.warehouse)
    from backtest.run import BacktestError
    from dagster_project.runner import PipelineError
    from ingest.validation import ContractError

    try:
        return args.handler(args)
    except (PipelineError, ContractError, BacktestError) as error:
        print(f"strat-llm {args.command}: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

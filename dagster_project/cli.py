"""`strat-llm`: the command line (DESIGN §9). Each command materializes Dagster assets.

Heavy imports (dagster, pandas) happen inside the commands so `--help` stays instant.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from datetime import date
from pathlib import Path
from typing import NoReturn

from dagster_project.console import VERBOSE_ENV
from ingest.calendars import MARKETS
from ingest.layout import DATA_DIR_ENV, WAREHOUSE_ENV, DataLayout

SOURCES = ("sample", "files")
DEBUG_ENV = "STRAT_LLM_DEBUG"
_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


class UsageError(Exception):
    """The command line itself is wrong (a value or a combination of options): exit 2."""


class DataError(Exception):
    """The command line is fine but the files it names are not there or not usable: exit 1."""


class CliParser(argparse.ArgumentParser):
    """argparse, with its complaint on one line (no usage block) and a pointer to --help."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see `{self.prog} --help`)\n")


def iso_date(text: str) -> str:
    """An argparse type: a real calendar date written YYYY-MM-DD, kept as that text."""
    if not _ISO_DATE.fullmatch(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a date written YYYY-MM-DD")
    try:
        date.fromisoformat(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"{text!r} is not a real date ({error})") from error
    return text


def _whole_number(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None


def positive_int(text: str) -> int:
    """An argparse type for counts and budgets: 1 or more."""
    value = _whole_number(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a positive whole number (1 or more)")
    return value


def non_negative_int(text: str) -> int:
    """An argparse type for seeds: numpy refuses negative ones."""
    value = _whole_number(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is negative; a seed is 0 or more")
    return value


def check_window(args: argparse.Namespace) -> None:
    """Every command with both --start and --end wants them in order (ISO text sorts as dates)."""
    start, end = getattr(args, "start", None), getattr(args, "end", None)
    if start and end and end < start:
        raise UsageError(f"--end {end} is before --start {start}")


def check_locations(layout: DataLayout) -> None:
    """The locations may come from options or the environment; the message names both."""
    if layout.data_dir.exists() and not layout.data_dir.is_dir():
        raise DataError(
            f"the data directory {layout.data_dir} (--data-dir / ${DATA_DIR_ENV}) is a file; "
            "name a directory"
        )
    if layout.warehouse.is_dir():
        raise DataError(
            f"the warehouse {layout.warehouse} (--warehouse / ${WAREHOUSE_ENV}) is a directory; "
            "name a DuckDB file"
        )


def require_warehouse(layout: DataLayout) -> None:
    """Commands that read the warehouse say so, and what to run, before anything opens it."""
    if layout.warehouse.is_file():
        return
    if (layout.data_dir / "raw").is_dir():
        raise DataError(f"no warehouse at {layout.warehouse}; run `strat-llm build` first")
    raise DataError(
        f"no warehouse at {layout.warehouse} and nothing ingested in {layout.data_dir}; run "
        "`strat-llm ingest` then `strat-llm build` first"
    )


def _set_locations(data_dir: str | None, warehouse: str | None) -> None:
    """Environment variables are how the locations reach Dagster resources and dbt alike.
    An explicit data directory brings its own warehouse file unless --warehouse names one."""
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
    from ingest.load import format_summary, read_manifest

    chosen = markets or list(MARKETS)
    run_assets(
        [raw_tables],
        raw_asset_keys(chosen),
        resources={"data_dir": DataDirResource()},
        ops={"raw_tables": {"config": config}},
        heartbeat="ingesting",
    )
    layout = DataLayout.from_env()
    summary = format_summary([read_manifest(layout, market) for market in chosen])
    return f"{summary}\nraw Parquet under {layout.data_dir / 'raw'}"


def cmd_ingest(args: argparse.Namespace) -> int:
    if args.source == "files" and not args.path:
        raise UsageError("--source files needs --path DIR (the dataset folder)")
    if args.source == "sample" and args.path:
        raise UsageError("--path is only for --source files")
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
    from inference.signal_rates import firing_table
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
    print(firing_table(layout.warehouse))
    print(
        f"[3/4] decisions of {len(experiment.arms)} arm(s) from {experiment.source}, date after "
        "date (position-aware arms see their book)"
    )
    for arm in experiment.arms:
        kind = (
            "an LLM"
            if arm.model.is_llm
            else "the random control of the Strict guardrail, NOT an LLM"
            if arm.model.is_control
            else "a reference rule agent, NOT an LLM"
        )
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

    layout = DataLayout.from_env()
    start, end = build_window(layout, args.start, args.end)
    if end < start:
        raise DataError(
            f"the window {start} .. {end} is empty: the ingested sessions end {end}; "
            "choose an earlier --start"
            if args.start and not args.end
            else f"the window {start} .. {end} is empty: the ingested sessions begin {start}; "
            "choose a later --end"
        )
    print(f"building the point-in-time warehouse for decision dates {start} .. {end}")
    summary = build_warehouse(start, end, force=args.force)
    print(summary)
    print(f"warehouse: {layout.warehouse}")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from dagster_project.runner import check_gate

    print(f"leakage gate on {DataLayout.from_env().warehouse}")
    print(check_gate())
    return 0


def cmd_infer(args: argparse.Namespace) -> int:
    from datetime import date

    from dagster_project.runner import infer
    from inference.experiments import load_experiment
    from ingest.layout import DataLayout
    from ingest.load import ingested_markets

    experiment = load_experiment(args.experiments)
    for slug in args.arm:  # every arm named is checked before anything runs
        experiment.arm(slug, args.base_url)
    config: dict[str, object] = {"markets": ingested_markets(DataLayout.from_env(), args.market)}
    for name in ("base_url", "concurrency", "experiments", "token_budget"):
        if getattr(args, name) is not None:
            config[name] = getattr(args, name)
    start, end = date.fromisoformat(args.start), date.fromisoformat(args.end)
    print(infer(args.arm, start, end, config, force=args.force))
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

    from inference.batch import BatchFileError, export_batch, import_batch
    from inference.experiments import ExperimentError, load_experiment
    from ingest.calendars import sessions
    from ingest.layout import DataLayout
    from ingest.load import ingested_markets

    layout = DataLayout.from_env()
    cache_path = layout.response_cache
    if args.action == "import":
        source = Path(args.file)
        if source.is_dir():
            raise DataError(f"{source} is a directory; name the batch output file (JSONL)")
        if not source.is_file():
            raise DataError(f"{source}: no such file")
        try:
            summary = import_batch(source, cache_path)
        except BatchFileError as error:
            raise DataError(str(error)) from error
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
    if Path(args.out).is_dir():
        raise DataError(f"--out {args.out} is a directory; name the JSONL file to write")
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
    from inference.book import latest_books
    from inference.engine import build_request, prompt_request
    from inference.experiments import ExperimentError, load_experiment
    from inference.snapshots import SnapshotNotFound, load_snapshot

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
    shown = prompt_request(arm, snapshot, args.token_budget, holding)
    for message in shown.message_dicts():
        print(f"===== {message['role']} =====")
        print(message["content"])
    print(
        f"===== prompt {shown.prompt_version}, arm {arm.slug}, book {where}, request "
        f"{build_request(arm, snapshot, args.token_budget, holding).hash[:16]} ====="
    )
    if not arm.model.is_llm:
        print(
            f"({arm.slug} is a rule agent: it reads no prompt and decides from the snapshot and "
            "the book themselves; the prompt above is what an LLM arm of this mode is sent)"
        )
    return 0


def build_window(layout: DataLayout, start: str | None, end: str | None) -> tuple[date, date]:
    """The requested window, or the whole span of the ingested session calendars."""
    from ingest.load import session_span

    if start and end:
        return date.fromisoformat(start), date.fromisoformat(end)
    first, last = session_span(layout)
    return (date.fromisoformat(start) if start else first), (
        date.fromisoformat(end) if end else last
    )


def build_parser() -> argparse.ArgumentParser:
    parser = CliParser(
        prog="strat-llm",
        description="Point-in-time warehouse for evaluating LLM trading agents.",
    )
    parser.add_argument("--data-dir", help=f"data directory (default: ${DATA_DIR_ENV} or ./data)")
    parser.add_argument(
        "--warehouse",
        help=f"DuckDB warehouse file (default: <data-dir>/warehouse.duckdb when --data-dir is "
        f"given, else ${WAREHOUSE_ENV}, else ./data/warehouse.duckdb)",
    )
    parser.add_argument(
        "--verbose",
        action="store_true",
        help="also show dbt's line per model, seed and test (default: a progress line every 10 s)",
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
    ingest.add_argument("--seed", type=non_negative_int, help="sample generator seed")
    ingest.add_argument(
        "--start", type=iso_date, help="sample span start, YYYY-MM-DD (default 2024-07-01)"
    )
    ingest.add_argument(
        "--end", type=iso_date, help="sample span end, YYYY-MM-DD (default 2025-12-31)"
    )
    ingest.set_defaults(handler=cmd_ingest)

    build = commands.add_parser(
        "build", help="build the point-in-time warehouse (dbt) for a decision-date window"
    )
    build.add_argument(
        "--start", type=iso_date, help="first decision date, YYYY-MM-DD (default: data start)"
    )
    build.add_argument(
        "--end", type=iso_date, help="last decision date, YYYY-MM-DD (default: data end)"
    )
    build.add_argument(
        "--force",
        action="store_true",
        help="build even when those sessions are built from the same inputs and the warehouse "
        "is unchanged (otherwise nothing is run)",
    )
    build.set_defaults(handler=cmd_build)

    check = commands.add_parser(
        "check", help="run the leakage gate; exit 1 naming the expectation and rows if it fails"
    )
    check.set_defaults(handler=cmd_check, needs_warehouse=True)

    from inference.experiments import SLUG_GRAMMAR
    from inference.prompts import DEFAULT_TOKEN_BUDGET

    infer = commands.add_parser("infer", help="decisions of one arm over a date range")
    infer.add_argument(
        "--arm",
        required=True,
        action="append",
        help=f"{SLUG_GRAMMAR} (repeatable: the arms of a date go out together)",
    )
    infer.add_argument(
        "--start", type=iso_date, required=True, help="first decision date, YYYY-MM-DD"
    )
    infer.add_argument("--end", type=iso_date, required=True, help="last decision date, YYYY-MM-DD")
    infer.add_argument(
        "--base-url", help="OpenAI-compatible server; an unconfigured model is its model id"
    )
    infer.add_argument(
        "--concurrency", type=positive_int, help="requests in flight (overrides config)"
    )
    infer.add_argument(
        "--market", choices=MARKETS, action="append", help="only this market (repeatable)"
    )
    infer.add_argument("--experiments", help="experiments YAML (default experiments/default.yaml)")
    infer.add_argument(
        "--token-budget", type=positive_int, help="prompt budget in estimated tokens"
    )
    infer.add_argument(
        "--force",
        action="store_true",
        help="decide again even when every decision is made and current (otherwise the arms "
        "are skipped); an LLM's answers still come from the response cache",
    )
    infer.set_defaults(handler=cmd_infer, needs_warehouse=True)

    from backtest.run import FILL_PRICES
    from backtest.targets import BASELINE_ARMS

    backtest = commands.add_parser(
        "backtest",
        help="simulate the arms and baselines, each arm over its own decision window; replace "
        "only their stored results; build the metric and regime tables",
    )
    backtest.add_argument(
        "--start",
        type=iso_date,
        help="first session, YYYY-MM-DD (default: each arm's first decision)",
    )
    backtest.add_argument(
        "--end", type=iso_date, help="last session, YYYY-MM-DD (default: each arm's last decision)"
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
    backtest.add_argument("--seed", type=non_negative_int, default=0, help="seed of the random arm")
    backtest.add_argument(
        "--fill-at",
        choices=FILL_PRICES,
        default="open",
        help="price a decision for session D fills at (default: D's open)",
    )
    backtest.set_defaults(handler=cmd_backtest, needs_warehouse=True)

    batch = commands.add_parser("batch", help="OpenAI batch JSONL export and import")
    batch_actions = batch.add_subparsers(dest="action", required=True)
    export = batch_actions.add_parser("export", help="write an arm's unanswered requests")
    export.add_argument("--arm", required=True)
    export.add_argument("--start", type=iso_date, required=True, help="YYYY-MM-DD")
    export.add_argument("--end", type=iso_date, required=True, help="YYYY-MM-DD")
    export.add_argument("--out", required=True, help="JSONL file to write")
    export.add_argument("--market", choices=MARKETS, action="append")
    export.add_argument("--base-url", help="as for infer: makes an unconfigured model usable")
    export.add_argument("--experiments")
    export.set_defaults(needs_warehouse=True)
    load = batch_actions.add_parser("import", help="store a batch output file's answers")
    load.add_argument("file", help="output JSONL of vllm run-batch or the OpenAI Batch API")
    batch.set_defaults(handler=cmd_batch)

    prompt = commands.add_parser(
        "prompt", help="print the exact messages an arm would send for one snapshot"
    )
    prompt.add_argument("--arm", required=True, help=SLUG_GRAMMAR)
    prompt.add_argument("--market", choices=MARKETS, required=True)
    prompt.add_argument("--ticker", required=True)
    prompt.add_argument("--date", type=iso_date, required=True, help="decision date, YYYY-MM-DD")
    prompt.add_argument("--experiments", help="experiments YAML (default experiments/default.yaml)")
    prompt.add_argument("--base-url", help="as for infer: makes an unconfigured model usable")
    prompt.add_argument("--token-budget", type=positive_int, default=DEFAULT_TOKEN_BUDGET)
    prompt.set_defaults(handler=cmd_prompt, needs_warehouse=True)
    return parser


def _quiet_environment() -> None:
    """Offline by default: no telemetry (runner.py makes DAGSTER_DISABLE_TELEMETRY count: this
    Dagster reads only dagster.yaml); no colour codes where the output is not a terminal;
    Dagster's beta notices are not for CLI users."""
    import warnings

    settings = [
        ("DAGSTER_DISABLE_TELEMETRY", "1"),
        ("DBT_SEND_ANONYMOUS_USAGE_STATS", "false"),
        ("GX_ANALYTICS_ENABLED", "false"),
    ]
    if not (sys.stdout.isatty() and sys.stderr.isatty()):
        settings += [("DBT_USE_COLORS", "false"), ("NO_COLOR", "1")]
    for name, value in settings:
        os.environ.setdefault(name, value)
    warnings.filterwarnings("ignore", message=r".*is currently in beta")


def main(argv: list[str] | None = None) -> int:
    """Run one command; every failure ends as a short message and an exit status (2: usage,
    1: data or a failed step), never a traceback unless STRAT_LLM_DEBUG asks for one."""
    _quiet_environment()
    try:
        args, unknown = build_parser().parse_known_args(argv)
    except SystemExit as exit:  # argparse has printed its one line (or the help)
        return exit.code if isinstance(exit.code, int) else 2
    from backtest.run import BacktestError
    from dagster_project.runner import PipelineError
    from inference.experiments import ExperimentError
    from ingest.validation import ContractError

    name = f"strat-llm {args.command}"
    if unknown:  # named by the command they were given to, not by the top-level parser
        print(
            f"{name}: unrecognized arguments: {' '.join(unknown)} (see `{name} --help`)",
            file=sys.stderr,
        )
        return 2
    if args.verbose:
        os.environ[VERBOSE_ENV] = "1"
    try:
        check_window(args)
        _set_locations(args.data_dir, args.warehouse)
        layout = DataLayout.from_env()
        check_locations(layout)
        if getattr(args, "needs_warehouse", False):
            require_warehouse(layout)
        return args.handler(args)
    except UsageError as error:
        print(f"{name}: {error} (see `{name} --help`)", file=sys.stderr)
        return 2
    except (DataError, PipelineError, ContractError, BacktestError, ExperimentError) as error:
        print(f"{name}: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{name}: interrupted", file=sys.stderr)
        return 130
    except Exception as error:
        if os.environ.get(DEBUG_ENV):
            raise
        # An error nobody anticipated: its class and text on one line, the traceback on demand.
        text = " ".join(str(error).split()) or "(no message)"
        print(
            f"{name}: {type(error).__name__}: {text} (an unexpected error; set {DEBUG_ENV}=1 to "
            "see the traceback)",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())

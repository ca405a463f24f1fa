"""Every bad input is a clear error: one case per input, its exit status and its message.

The cases are data. One parametrized test runs each through `dagster_project.cli.main` in
process and checks the status (2: usage, 1: data, 0: accepted with a note), that the message is
one line (or a short block for row-level data errors), and that no traceback reaches the user.
The README's "What happens when…" table is rendered from what the cases print now, and a test
fails when it differs; `STRAT_LLM_WRITE_README=1 pytest tests/test_bad_inputs.py` rewrites it.
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from dagster_project.cli import main
from ingest.layout import DATA_DIR_ENV, WAREHOUSE_ENV
from tests.conftest import TINY_US, replace_in_table, write_dataset

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
WRITE_ENV = "STRAT_LLM_WRITE_README"
START, END = "<!-- bad-inputs:start -->", "<!-- bad-inputs:end -->"

Edit = Callable[[Path], None]


edit = replace_in_table  # a change to a market folder's CSV table


def add_file(name: str, content: bytes = b"x\n") -> Edit:
    """A file (or, for a name ending in /, a folder) relative to the market folder."""

    def apply(folder: Path) -> None:
        path = folder / name
        if name.endswith("/"):
            path.mkdir(parents=True)
        else:
            path.write_bytes(content)

    return apply


@dataclass(frozen=True)
class Case:
    title: str  # completes "What happens when…"
    argv: tuple[str, ...]  # after `--data-dir <data-dir>`; {dataset} and {tmp} are filled in
    status: int
    fragment: str  # part of the message
    setup: str = "none"  # none (empty data dir) | ingested (tiny dataset) | built (sample)
    dataset: Edit | None = None  # a change to the tiny dataset written at {dataset}
    files: dict[str, str] = field(default_factory=dict)  # files (or dirs: "/") under {tmp}
    stream: str = "err"  # where the message goes: err, or out for accepted input with a note
    lines: int = 1  # most lines the message may take

    @property
    def command(self) -> str:
        return "strat-llm " + " ".join(self.argv)


def case(title: str, argv: str, status: int, fragment: str, **options: object) -> Case:
    return Case(title, tuple(argv.split()), status, fragment, **options)  # type: ignore[arg-type]


ROWS = 4  # a row-level data error: the summary line, the rows, the way out
PROMPT = "prompt --arm reference__free --market us --ticker AAA"
SAMPLE_PROMPT = "prompt --market us --ticker AAPL --date 2025-03-04"
EXPORT = "batch export --arm reference__free__blind --start 2025-03-03 --end 2025-03-07"
FILES = "ingest --source files --path {dataset}"
CASES: tuple[Case, ...] = (
    # Usage: the command line itself is wrong (exit 2), refused before anything runs.
    case("a date does not exist", f"{PROMPT} --date 2025-13-01", 2, "is not a real date"),
    case("a date is not ISO", "build --start 03/10/2025", 2, "is not a date written YYYY-MM-DD"),
    case(
        "a date is a word",
        "batch export --arm reference__free__blind --start 2025-03-03 --end tomorrow --out x",
        2,
        "argument --end: 'tomorrow' is not a date written YYYY-MM-DD",
    ),
    case("February 30th", "backtest --start 2025-02-30", 2, "day is out of range for month"),
    case("a sample span date lacks zeros", "ingest --source sample --end 2025-1-5", 2, "2025-1-5"),
    case("the end is before the start", "build --start 2025-03-10 --end 2025-03-03", 2, "before"),
    case(
        "infer's end is before its start",
        "infer --arm reference__free --start 2025-03-10 --end 2025-03-03",
        2,
        "--end 2025-03-03 is before --start 2025-03-10",
    ),
    case(
        "the token budget is 0",
        f"{PROMPT} --date 2025-03-04 --token-budget 0",
        2,
        "0 is not a positive whole number",
    ),
    case(
        "a count is not a number",
        "infer --arm reference__free --start 2025-03-03 --end 2025-03-04 --token-budget many",
        2,
        "'many' is not a whole number",
    ),
    case(
        "the concurrency is 0",
        "infer --arm reference__free --start 2025-03-03 --end 2025-03-04 --concurrency 0",
        2,
        "argument --concurrency: 0 is not a positive whole number",
    ),
    case("a seed is negative", "backtest --seed -3", 2, "-3 is negative"),
    case("a sample seed is negative", "ingest --source sample --seed -1", 2, "a seed is 0 or more"),
    case(
        "prompt is given a book by hand (it shows the arm's real book)",
        f"{PROMPT} --date 2025-03-04 --exposure 5 --unrealized-return -7",
        2,
        "strat-llm prompt: unrecognized arguments: --exposure 5 --unrealized-return -7",
    ),
    case("the source is unknown", "ingest --source yahoo", 2, "invalid choice: 'yahoo'"),
    case("--source files has no --path", "ingest --source files", 2, "needs --path DIR"),
    case("--source sample gets a --path", "ingest --source sample --path x", 2, "only for"),
    case("the market is unknown", "prompt --arm a__free --market hk", 2, "invalid choice: 'hk'"),
    case("the baseline is unknown", "backtest --baseline S9", 2, "invalid choice: 'S9'"),
    case("the fill price is unknown", "backtest --fill-at noon", 2, "invalid choice: 'noon'"),
    case("no command is given", "", 2, "the following arguments are required: command"),
    # Data: the command line is fine, the files it names are not there or not usable (exit 1).
    case("the data directory is a file", "check", 1, "is a file; name a directory"),
    case(
        "the warehouse is a folder",
        "--warehouse {tmp} check",
        1,
        "(--warehouse / $STRAT_LLM_WAREHOUSE) is a directory; name a DuckDB file",
    ),
    case("check runs on an empty data directory", "check", 1, "no warehouse at"),
    case("backtest runs before any build", "backtest", 1, "run `strat-llm ingest` then"),
    case("batch export runs before any build", f"{EXPORT} --out x.jsonl", 1, "no warehouse at"),
    case("prompt runs before any build", f"{PROMPT} --date 2025-03-04", 1, "no warehouse at"),
    case(
        "infer runs before any build",
        "infer --arm reference__free --start 2025-03-03 --end 2025-03-04",
        1,
        "no warehouse at",
    ),
    case("build runs before any ingest", "build", 1, "nothing ingested yet"),
    case(
        "check runs before build",
        "check",
        1,
        "run `strat-llm build` first",
        setup="ingested",
    ),
    case(
        "the build window starts after the data",
        "build --start 2030-01-02",
        1,
        "the ingested sessions end",
        setup="ingested",
    ),
    case(
        "the build window holds no session of the ingested calendars",
        "build --start 1990-01-02 --end 1990-12-31",
        1,
        "no session of the ingested calendars falls in 1990-01-02 .. 1990-12-31 (sessions: "
        "2025-03-03 .. 2025-03-19)",
        setup="ingested",
    ),
    case("batch import's file is missing", "batch import {tmp}/out.jsonl", 1, "no such file"),
    case(
        "batch import is given a folder",
        "batch import {tmp}/outputs",
        1,
        "is a directory",
        files={"outputs/": ""},
    ),
    case(
        "batch import is given a CSV",
        "batch import {tmp}/out.csv",
        1,
        "not a JSONL batch output file",
        files={"out.csv": "custom_id,answer\nabc,buy\n"},
    ),
    case(
        "a batch output line has no status code",
        "batch import {tmp}/out.jsonl",
        1,
        "response has no status_code",
        files={"out.jsonl": '{"custom_id": "abc", "response": {"body": {}}}\n'},
        stream="out",
    ),
    case(
        "a batch output line's body is not a chat completion",
        "batch import {tmp}/out.jsonl",
        1,
        "is not a chat completion: response has no choices",
        files={"out.jsonl": '{"custom_id": "abc", "response": {"status_code": 200, "body": {}}}\n'},
        stream="out",
    ),
    case("--path does not exist", "ingest --source files --path {tmp}/nowhere", 1, "no such dir"),
    case(
        "--path is a file",
        "ingest --source files --path {tmp}/prices.csv",
        1,
        "is a file; --path names the dataset folder",
        files={"prices.csv": "ticker,date\n"},
    ),
    case(
        "the dataset folder has no market folders",
        "ingest --source files --path {tmp}/empty",
        1,
        "no market folders; expected us/ and/or cn/",
        files={"empty/": ""},
    ),
    case(
        "the dataset lacks the market asked for",
        f"{FILES} --market cn",
        1,
        "no folder for market(s) cn",
        dataset=add_file("notes.txt"),
    ),
    case(
        "a market folder lacks a table",
        FILES,
        1,
        "no reports.csv or reports.parquet",
        dataset=lambda folder: (folder / "reports.csv").unlink(),
    ),
    case(
        "a table lacks a required column",
        FILES,
        1,
        "us/universe.csv: missing required column(s) name",
        dataset=edit("universe", "ticker,name,sector", "ticker,title,sector"),
    ),
    case(
        "a file is not UTF-8",
        FILES,
        1,
        "not UTF-8 text",
        dataset=add_file("universe.csv", "ticker,name\nAAA,Société Générale\n".encode("latin-1")),
    ),
    case(
        "a ticker is listed twice in universe",
        FILES,
        1,
        "us/universe.csv: ticker(s) listed more than once: AAA (rows 1, 3)",
        dataset=edit("universe", "BBB,Beta Inc,Energy\n", "BBB,Beta Inc,Energy\nAAA,Again,Tech\n"),
    ),
    case(
        "published_at is a word",
        FILES,
        1,
        "published_at 'yesterday' is not an ISO 8601 timestamp with a UTC offset",
        dataset=edit("news", "2025-03-02T20:00:00-05:00", "yesterday"),
        lines=ROWS,
    ),
    case(
        "a timestamp has no UTC offset",
        FILES,
        1,
        "published_at '2025-03-02T20:00:00' has no UTC offset",
        dataset=edit("news", "2025-03-02T20:00:00-05:00", "2025-03-02T20:00:00"),
        lines=ROWS,
    ),
    case(
        "a price is negative",
        FILES,
        1,
        "us/prices.csv row 6: close -48.2 is not > 0",
        dataset=edit("prices", "49.5,48.0,48.2", "49.5,48.0,-48.2"),
        lines=ROWS,
    ),
    case(
        "a price is dated on a Saturday",
        FILES,
        1,
        "date 2025-03-08 is not a XNYS trading session",
        dataset=edit("benchmark", "2025-03-05,4990.25", "2025-03-05,4990.25\n2025-03-08,4991"),
        lines=ROWS,
    ),
    case(
        "a row names a ticker outside universe",
        FILES,
        1,
        "ticker 'ZZZ' is not in us/universe.csv",
        dataset=edit("news", "n2,BBB", "n2,ZZZ"),
        lines=ROWS,
    ),
    case(
        "a series misses a session",
        FILES,
        1,
        "us: 1 series (AAA) miss 2025-03-04",
        dataset=edit("prices", "AAA,2025-03-04,10.2,10.9,10.1,10.8,1200\n", ""),
        lines=ROWS,
    ),
    case(
        "a market folder holds a file outside the contract",
        FILES,
        0,
        "ignored files: us/dividends.csv",
        dataset=add_file("dividends.csv", b"ticker,ex_date\n"),
        stream="out",
    ),
    case(
        "the dataset folder holds an unknown market",
        FILES,
        0,
        "ignored in the dataset folder: hk/",
        dataset=lambda folder: (folder.parent / "hk").mkdir(),
        stream="out",
    ),
    # Against a built warehouse: names that are not in it or not in the experiments file.
    case(
        "the ticker is not in the warehouse",
        "prompt --arm reference__free --market us --ticker ZZZ --date 2025-03-04",
        1,
        "no snapshot for us/ZZZ on 2025-03-04",
        setup="built",
    ),
    case(
        "the date is not a session",
        "prompt --arm reference__free --market us --ticker AAPL --date 2025-03-08",
        1,
        "(sessions only)",
        setup="built",
    ),
    case(
        "the arm's model is not configured",
        f"{SAMPLE_PROMPT} --arm nobody__free",
        1,
        "model 'nobody' is not in",
        setup="built",
    ),
    case(
        "the arm's mode is unknown",
        f"{SAMPLE_PROMPT} --arm reference__sideways",
        1,
        "mode 'sideways' is not one of",
        setup="built",
    ),
    case(
        "the arm's attitude is unknown",
        f"{SAMPLE_PROMPT} --arm reference__free__reckless",
        1,
        "'reckless'",
        setup="built",
    ),
    case(
        "the arm's model reads as a path",
        f"{SAMPLE_PROMPT} --arm ../evil__free",
        1,
        "'../evil'",
        setup="built",
    ),
    case(
        "the experiments file is missing",
        f"{SAMPLE_PROMPT} --arm reference__free --experiments {{tmp}}/none.yaml",
        1,
        "no such experiments file",
        setup="built",
    ),
    case(
        "the experiments file is not YAML",
        f"{SAMPLE_PROMPT} --arm reference__free --experiments {{tmp}}/bad.yaml",
        1,
        "not valid YAML: line 2, column 6: expected ',' or ']'",
        files={"bad.yaml": "models: [reference\nmodes: free: guided\n"},
        setup="built",
    ),
    case(
        "a model key is a word YAML reads as a boolean",
        f"{SAMPLE_PROMPT} --arm off__free --experiments {{tmp}}/off.yaml",
        1,
        "model key False is not text",
        files={"off.yaml": "models:\n  off: {backend: reference}\n"},
        setup="built",
    ),
    case(
        "an arm's model is an org/name id with an empty part",
        f"{SAMPLE_PROMPT} --arm Qwen//Qwen3__free --base-url http://127.0.0.1:8000/v1",
        1,
        "is not a model id",
        setup="built",
    ),
    case(
        "a position-aware arm is exported as one batch",
        "batch export --arm reference__free --start 2025-03-03 --end 2025-03-07 --out x.jsonl",
        1,
        "export the blind arm reference__free__blind",
        setup="built",
    ),
    case(
        "batch export's --out is a folder",
        f"{EXPORT} --out {{tmp}}/outputs",
        1,
        "is a directory; name the JSONL file to write",
        files={"outputs/": ""},
        setup="built",
    ),
    case(
        "the backtest names an arm without decisions",
        "backtest --arm qwen__free --baseline buy_and_hold",
        1,
        "run infer first",
        setup="built",
    ),
    case(
        "the warehouse file is not a DuckDB database",
        f"{PROMPT} --date 2025-03-04",
        1,
        "(an unexpected error; set STRAT_LLM_DEBUG=1 to see the traceback)",
        files={"data/warehouse.duckdb": "not a database\n"},
    ),
)


@dataclass(frozen=True)
class Observed:
    status: int
    out: str
    err: str
    message: str  # what the table shows: stderr, or the stdout line(s) holding the fragment


_OBSERVED: dict[str, Observed] = {}


def _normalise(text: str, places: dict[Path, str]) -> str:
    """Temporary and checkout paths become placeholders so the README table is stable."""
    pairs = {str(path.resolve()): name for path, name in places.items()}
    pairs.update({str(path): name for path, name in places.items()})
    for path in sorted(pairs, key=len, reverse=True):
        text = text.replace(path, pairs[path])
    return text


def _data_dir(case: Case, tmp: Path, request: pytest.FixtureRequest) -> Path:
    if case.setup == "built":
        return request.getfixturevalue("built_sample").data_dir
    if case.setup == "ingested":
        return request.getfixturevalue("ingested_tiny")
    data_dir = tmp / "data"
    if case.title == "the data directory is a file":
        data_dir.write_text("not a directory\n")
    else:
        data_dir.mkdir(exist_ok=True)
    return data_dir


def observe(case: Case, request: pytest.FixtureRequest) -> Observed:
    """Run a case once per session (the parametrized test and the README test share it)."""
    if case.title in _OBSERVED:
        return _OBSERVED[case.title]
    tmp = request.getfixturevalue("tmp_path_factory").mktemp("bad")
    for name, content in case.files.items():
        target = tmp / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if name.endswith("/"):
            target.mkdir(exist_ok=True)
        else:
            target.write_text(content)
    dataset = tmp / "dataset"
    if case.dataset is not None:
        write_dataset(dataset, TINY_US)
        case.dataset(dataset / "us")
    data_dir = _data_dir(case, tmp, request)
    argv = [part.format(dataset=dataset, tmp=tmp) for part in case.argv]
    saved = {name: os.environ.get(name) for name in (DATA_DIR_ENV, WAREHOUSE_ENV)}
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            status = main(["--data-dir", str(data_dir), *argv])
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    places = {data_dir: "<data-dir>", dataset: "<dataset>", tmp: "<tmp>", REPO: "<repo>"}
    out_text, err_text = _normalise(out.getvalue(), places), _normalise(err.getvalue(), places)
    if case.stream == "out":
        message = "\n".join(line for line in out_text.splitlines() if case.fragment in line)
    else:
        message = err_text.strip()
    _OBSERVED[case.title] = Observed(status, out_text, err_text, message)
    return _OBSERVED[case.title]


@pytest.fixture(scope="session")
def ingested_tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny dataset ingested once (read-only): commands after ingest, before build."""
    root = tmp_path_factory.mktemp("ingested")
    dataset = write_dataset(root / "dataset", TINY_US)
    data_dir = root / "data"
    saved = {name: os.environ.get(name) for name in (DATA_DIR_ENV, WAREHOUSE_ENV)}
    with contextlib.redirect_stdout(io.StringIO()):
        status = main(
            ["--data-dir", str(data_dir), "ingest", "--source", "files", "--path", str(dataset)]
        )
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    assert status == 0
    return data_dir


def test_cases_have_unique_titles_and_cover_the_issue():
    titles = [case.title for case in CASES]
    assert len(set(titles)) == len(titles)
    assert len(CASES) >= 30
    assert {case.status for case in CASES} == {0, 1, 2}


@pytest.mark.parametrize("case", CASES, ids=[case.title for case in CASES])
def test_bad_input_gets_a_clear_message(case: Case, request: pytest.FixtureRequest):
    seen = observe(case, request)
    assert seen.status == case.status, seen.err or seen.out
    assert "Traceback" not in seen.err + seen.out
    assert case.fragment in seen.message, seen.err or seen.out
    assert 1 <= len(seen.message.splitlines()) <= case.lines, seen.message
    if case.stream == "err":
        assert seen.message.startswith("strat-llm"), seen.message
    else:
        assert not seen.err.strip(), seen.err
    if case.status == 2:  # usage errors point to the command's help
        assert "--help`)" in seen.message


def _cell(text: str) -> str:
    """A table cell: each line as a code span (safe for <, > and backticks), | escaped."""
    spans = [f"`` {line.strip()} ``" for line in text.splitlines() if line.strip()]
    return "<br>".join(spans).replace("|", "\\|") or " "


def readme_table(request: pytest.FixtureRequest) -> str:
    lines = ["| what happens when… | input | exit | message |", "|---|---|---|---|"]
    for case in CASES:
        seen = observe(case, request)
        argv = case.command.format(dataset="<dataset>", tmp="<tmp>")
        setup = {"none": "", "ingested": " (after ingest)", "built": " (after build)"}
        lines.append(
            f"| {case.title}{setup[case.setup]} | {_cell(argv)} | {seen.status} | "
            f"{_cell(seen.message)} |"
        )
    return "\n".join(lines)


def test_readme_table_is_what_the_cases_print(request: pytest.FixtureRequest):
    text = README.read_text(encoding="utf-8")
    assert START in text and END in text, f"README.md needs the markers {START} and {END}"
    before, rest = text.split(START, 1)
    _, after = rest.split(END, 1)
    table = readme_table(request)
    expected = f"{before}{START}\n{table}\n{END}{after}"
    if os.environ.get(WRITE_ENV):
        README.write_text(expected, encoding="utf-8")
        return
    assert text == expected, (
        f"README's 'What happens when…' table is stale: rerun with {WRITE_ENV}=1 to rewrite it"
    )


def test_debug_setting_shows_the_traceback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The one-line report of an unexpected error hides nothing: STRAT_LLM_DEBUG re-raises it."""
    import duckdb

    from dagster_project.cli import DEBUG_ENV

    (tmp_path / "warehouse.duckdb").write_text("not a database\n")
    monkeypatch.setenv(DEBUG_ENV, "1")
    for name in (DATA_DIR_ENV, WAREHOUSE_ENV):  # main sets them; monkeypatch restores them
        monkeypatch.setenv(name, str(tmp_path))
    argv = ["--data-dir", str(tmp_path), *f"{PROMPT} --date 2025-03-04".split()]
    with pytest.raises(duckdb.IOException):
        main(argv)

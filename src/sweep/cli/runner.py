"""One way in and one way out for every command: `python -m sweep <command> ...`.

The runner parses a command's arguments (Hydra overrides for the commands that compose `conf/`,
options for the ones that read a past run or serve a store), resolves the store, runs the
command's function, and turns every known failure into one line and an exit code from the one
table in `sweep.core.errors`. `SWEEP_TRACEBACK=1` shows the traceback instead. Command
functions take plain arguments and return an exit code: they never print errors or call `sys.exit`.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sweep import CONF_DIR
from sweep.core import interrupt
from sweep.core.errors import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    ConfigError,
    DiskFull,
    SweepError,
    first_line,
    hydra_message,
    no_space,
)


@dataclass(frozen=True)
class Option:
    """One argparse argument: its names and add_argument keywords."""

    names: tuple[str, ...]
    kwargs: dict[str, Any] = field(default_factory=dict)


def opt(*names: str, **kwargs: Any) -> Option:
    return Option(names, kwargs)


STORE_OPTIONS = (
    opt("--store", help="folder of the local stores (default: $MLFLOW_TRACKING_URI, else mlruns)"),
    opt("--tracking-uri", help="MLflow tracking URI (wins over --store)"),
)


@dataclass(frozen=True)
class Command:
    """A command: where its function lives and how its arguments are read.

    `hydra` commands compose conf/ and get `(cfg, overrides)`; the others get their parsed
    options as keywords, plus `store` (a `config.Store`) when `store` is set.
    """

    name: str
    summary: str
    target: str  # "module:function" under sweep, imported only when the command runs
    options: tuple[Option, ...] = ()
    store: bool = False
    hydra: bool = False
    multirun: bool = False  # accepts Hydra's -m: every job of the grid runs and reports

    def function(self) -> Callable[..., int | None]:
        module, name = self.target.split(":")
        return getattr(importlib.import_module(f"sweep.{module}"), name)


def port(default: int) -> Option:
    return opt("--port", type=int, default=default, help=f"port to listen on ({default})")


HOST = opt("--host", default="127.0.0.1", help="interface to bind (127.0.0.1)")
STORAGE = opt("--storage", help="Optuna storage URL (default: sqlite:///<store>/optuna.db)")
RERUN = (
    opt("run_id", help="the MLflow run id to replay, or a unique start of it (4+ digits)"),
    opt(
        "--tolerance",
        type=float,
        help="relative tolerance (default: exact when platform, "
        "versions and commit match, else 1e-3)",
    ),
)
ROBUST = (
    opt("study", help="the Optuna study name (search.study_name)"),
    opt("--top", type=int, default=5, help="how many of the best trials (5)"),
    opt("--seeds", type=int, default=5, help="new seeds per trial (5)"),
    STORAGE,
)
PREDICT = (
    opt("--model", default="sine-mlp", help="registered model name (sine-mlp)"),
    opt("--alias", default="champion", help="alias to load (champion)"),
    opt("--x", type=float, nargs="+", help="inputs (default -6..6)"),
    opt("--csv", help="a CSV of inputs (header row) for a model of N-D inputs"),
)
SERVER = (
    HOST,
    port(5000),
    opt(
        "--backend-store-uri",
        help="SQLAlchemy URL of the run database (default: "
        "$SWEEP_TRACKING_DB); keep the password in PGPASSWORD or ~/.pgpass",
    ),
    opt(
        "--artifacts-destination",
        default="mlruns/server-artifacts",
        help="a folder or an artifact URI such as s3://bucket",
    ),
    opt("--experiment", default="sine", help="experiment created before workers"),
    opt("--workers", type=int, help="server processes (one per core, at most 4)"),
    opt("--allowed-hosts", help="extra Host headers to accept, e.g. mlflow.lab:5000"),
    opt("--cors-allowed-origins", help="extra browser origins to allow"),
    opt(
        "--basic-auth",
        action="store_true",
        help="MLflow's login (--app-name basic-auth); needs MLFLOW_AUTH_CONFIG_PATH",
    ),
)
PROXY = (
    opt(
        "--storage",
        help="SQLAlchemy URL of the study's database (default: $SWEEP_STORAGE); keep the "
        "password in PGPASSWORD or ~/.pgpass",
    ),
    HOST,
    port(13000),
    opt("--threads", type=int, default=10, help="gRPC threads = database connections at most (10)"),
)
LAUNCH = (
    opt("--engine", choices=["ray"], default="ray", help="the engine that runs the workers (ray)"),
    opt("--address", default="auto", help="the cluster: auto, host:port or ray://host:port"),
    opt("--workers", type=int, default=2, help="workers at a time, one per task (2)"),
    opt("--cpus", type=float, default=1, help="CPUs per worker; trainer.threads follows (1)"),
    opt("--retries", type=int, default=3, help="replacements per crashed worker (3)"),
)
COMMANDS: dict[str, Command] = {c.name: c for c in (
    Command("baseline", "one run of the configured model", "cli.commands:baseline", hydra=True,
            multirun=True),
    Command("sweep", "create or resume the study; search.jobs workers here", "cli.commands:sweep",
            hydra=True),
    Command("worker", "join the study on a shared storage and run trials", "cli.commands:worker",
            hydra=True),
    Command("report", "self-contained HTML report of a study", "serve.report:report_command",
            hydra=True),
    Command("launch", "workers as tasks of an engine (Ray): --workers N [overrides]",
            "cli.commands:launch", LAUNCH, hydra=True),
    Command("rerun", "train a past run again from its record and compare every metric",
            "replay.rerun:rerun_command", RERUN, store=True),
    Command("robust", "rerun a study's best trials with new seeds",
            "replay.robust:robust_command", ROBUST, store=True),
    Command("predict", "the registered champion's predictions",
            "study.registry:predict_command", PREDICT, store=True),
    Command("ui", "mlflow server over the store on 127.0.0.1; prints the runs table's address",
            "serve.ui:ui_command", (port(5000), HOST), store=True),
    Command("dashboard", "optuna-dashboard on the study's storage; prints each study's address",
            "serve.dashboard:dashboard_command", (port(8080), HOST, STORAGE), store=True),
    Command("server", "MLflow tracking server on PostgreSQL for workers on many machines",
            "serve.server:server_command", SERVER),
    Command("proxy", "Optuna's gRPC proxy on the study's database: search.storage=grpc://host:port",
            "serve.proxy:proxy_command", PROXY),
)}  # fmt: skip


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: python -m sweep <command> [arguments]  (<command> --help for its own)", ""]
    lines += [f"  {c.name:<{width}}  {c.summary}" for c in COMMANDS.values()]
    lines += ["", "Hydra commands take key=value overrides, --cfg job, --help; baseline takes -m."]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command line; returns its exit code (the one table in sweep.core.errors)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return EXIT_OK if argv else EXIT_USAGE
    command = COMMANDS.get(argv[0])
    if command is None:
        return report(ConfigError(f"unknown command {argv[0]!r}; one of: {', '.join(COMMANDS)}"))
    if command.hydra:
        return run_hydra(command, argv[1:])
    return guard(lambda: run_plain(command, argv[1:]))


def guard(work: Callable[[], int | None]) -> int:
    """Run `work`; a known failure becomes one line and its exit code, a bug a masked traceback."""
    try:
        return work() or EXIT_OK
    except SweepError as exc:
        if os.environ.get("SWEEP_TRACEBACK"):
            raise
        return report(exc)
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:
        # A full disk outside a trial (opening the stores, the summary) is one line too.
        if (why := no_space(exc)) and not os.environ.get("SWEEP_TRACEBACK"):
            return report(DiskFull(f"{why}; free some space and run the same command again"))
        from sweep.core.secrets import mask_text

        print(mask_text(traceback.format_exc()), file=sys.stderr, end="")
        return EXIT_FAILED


def report(exc: SweepError) -> int:
    """The one line a known failure prints; URL passwords masked, control characters not shown."""
    from sweep.core.secrets import printable

    print(f"error: {printable(first_line(exc))}", file=sys.stderr)
    return exc.exit_code


# --------------------------------------------------------------------------- plain commands


class _Parser(argparse.ArgumentParser):
    """argparse whose mistakes are ConfigErrors: one line and exit 2, like every bad input."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise ConfigError(f"{self.prog}: {message}")


def parser_for(command: Command) -> argparse.ArgumentParser:
    parser = _Parser(prog=f"python -m sweep {command.name}", description=command.summary)
    for option in (*command.options, *(STORE_OPTIONS if command.store else ())):
        parser.add_argument(*option.names, **option.kwargs)
    return parser


def run_plain(command: Command, argv: list[str]) -> int | None:
    """Parse options, resolve the store, call the command's function with keywords."""
    from sweep.config.stores import existing_store

    try:
        kwargs = vars(parser_for(command).parse_args(argv))
    except SystemExit as exc:  # --help
        return exc.code if isinstance(exc.code, int) else EXIT_OK
    if command.store:
        kwargs["store"] = existing_store(kwargs.pop("store"), kwargs.pop("tracking_uri"))
    if command.name not in ("ui", "server", "dashboard"):  # they stop on Ctrl-C with exit 0
        interrupt.install()
    return command.function()(**kwargs)


# --------------------------------------------------------------------------- Hydra commands


# Hydra writes multirun.yaml (and, with hydra.output_subdir set, a job's .hydra/ files) before a
# job runs, with the overrides' passwords in them: under this umask only their owner can read
# them until the job masks them.
PRIVATE_UMASK = 0o077


class _Stop(BaseException):
    """Carries an interrupt's exit code out through Hydra's multirun loop."""

    def __init__(self, code: int) -> None:
        self.code = code


def run_hydra(command: Command, argv: list[str]) -> int:
    """Compose conf/ with Hydra's own main (overrides, --cfg, --help, -m) and run each job."""
    if not command.multirun and any(a in ("-m", "--multirun") for a in argv):
        return report(
            ConfigError(
                f"`{command.name}` does not take -m: it runs one study over search.space; "
                "a grid of single runs is `baseline -m key=a,b`"
            )
        )
    if refused := split_password_refused(argv):
        return report(refused)
    try:
        options, argv = own_options(command, argv)
    except ConfigError as exc:
        return report(exc)
    codes: list[int] = []
    umask = os.umask(PRIVATE_UMASK)
    task = _hydra_task(command, codes, umask, options)
    saved, os.environ["HYDRA_FULL_ERROR"] = os.environ.get("HYDRA_FULL_ERROR"), "1"
    saved_argv, sys.argv = sys.argv, [f"sweep {command.name}", *argv]
    try:
        _hydra_main(task)
    except _Stop as stop:
        return stop.code
    except SystemExit as exc:  # argparse inside Hydra (--help, a bad flag)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    except Exception as exc:  # Hydra's composition errors: a bad override or group option
        return report(ConfigError(hydra_message(exc)))
    finally:
        os.umask(umask)
        sys.argv = saved_argv
        _restore_env("HYDRA_FULL_ERROR", saved)
    return next((c for c in codes if c), EXIT_OK)


def own_options(command: Command, argv: list[str]) -> tuple[dict[str, Any], list[str]]:
    """A Hydra command's own `--options` (launch's), and the overrides left for Hydra."""
    if not command.options:
        return {}, argv
    parser = parser_for(command)
    if {"-h", "--help"} & set(argv):  # its own options first, then Hydra's help of the config
        parser.print_help()
        print()
        return {}, argv
    options, rest = parser.parse_known_args(argv)
    return vars(options), rest


def _hydra_task(
    command: Command, codes: list[int], umask: int, options: dict[str, Any] | None = None
) -> Callable[[Any], None]:
    """The function Hydra calls once per job: mask what Hydra wrote, check the config, run,
    record the exit code. The job's own files (stores, artifacts) get the user's umask."""

    def task(raw: Any) -> None:
        from sweep.config.checks import prepare

        os.umask(umask)
        try:
            for path in hydra_files():
                mask_file(path)
            interrupt.install()
            announce_job()
            run = command.function()
            code = guard(lambda: run(prepare(raw), task_overrides(), **(options or {})))
        finally:
            os.umask(PRIVATE_UMASK)
        codes.append(code)
        if code == EXIT_INTERRUPTED:
            raise _Stop(code)

    return task


def _hydra_main(task: Callable[[Any], None]) -> None:
    import hydra

    hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")(task)()


def task_overrides() -> list[str]:
    """The command-line overrides of this job (recorded with every run)."""
    from hydra.core.hydra_config import HydraConfig

    try:
        return list(HydraConfig.get().overrides.task)
    except ValueError:
        return []


def announce_job() -> None:
    """In a multirun, say which job of the grid is starting (`job 1/3: model.depth=2`)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from sweep.core.secrets import printable

    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode == RunMode.MULTIRUN:
        job = hydra_cfg.job
        print(printable(f"job {job.num}: {' '.join(hydra_cfg.overrides.task)}"), flush=True)


def hydra_files() -> list[Path]:
    """What Hydra wrote before this job ran: multirun.yaml in a multirun and, when
    hydra.output_subdir is set, the job's config.yaml, hydra.yaml and overrides.yaml."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    hydra_cfg = HydraConfig.get()
    files = []
    if hydra_cfg.mode == RunMode.MULTIRUN:
        files.append(Path(hydra_cfg.sweep.dir, "multirun.yaml"))
    if hydra_cfg.output_subdir is not None:
        folder = Path(hydra_cfg.runtime.output_dir, hydra_cfg.output_subdir)
        files += [folder / name for name in ("config.yaml", "hydra.yaml", "overrides.yaml")]
    return files


def mask_file(path: Path) -> None:
    """A YAML file Hydra wrote, masked value by value (PyYAML folds a long value over lines, so
    its text alone could hide a password's halves); rewritten in place, its mode kept."""
    import yaml

    from sweep.core.secrets import mask_data, mask_text

    if not path.is_file():
        return
    text = path.read_text(encoding="utf-8")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        masked = mask_text(text)
    else:
        masked = text
        if mask_data(data) != data:
            masked = yaml.safe_dump(mask_data(data), sort_keys=False, allow_unicode=True)
    if masked != text:
        path.write_text(masked, encoding="utf-8")


def split_password_refused(argv: Sequence[str]) -> ConfigError | None:
    """Hydra cuts an unquoted value at each `,` (a sweep), so a password holding one would
    reach the jobs, and their error lines, in halves that no masking recognises."""
    from sweep.core.secrets import mask_text, url_password

    for arg in argv:
        key, eq, value = arg.partition("=")
        password = url_password(value) if eq and not value.startswith(("'", '"')) else None
        if password and "," in password and "://" not in password:
            return ConfigError(
                f"{mask_text(arg)}: Hydra splits a value at ',' and the password holds one; "
                f"quote the value ({key}='...') or write the comma as %2C"
            )
    return None


def _restore_env(key: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(key, None)
    else:
        os.environ[key] = value

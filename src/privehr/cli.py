"""The ``privehr`` command line (Typer + Rich).

Bad input never ends in a bare traceback: known error types are caught at the edge and printed
as one message that says what is wrong and what to do, with exit code 2.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
os.environ.setdefault("FLWR_DISABLE_UPDATE_CHECK", "1")

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__, pretty_exceptions_show_locals=False)
console = Console()
err_console = Console(stderr=True, soft_wrap=True)  # long paths stay on one line


def _user_errors() -> tuple[type[BaseException], ...]:
    from privehr.federation.config import ConfigError

    errors: list[type[BaseException]] = [ConfigError, FileNotFoundError, NotADirectoryError]
    try:
        from privehr.ehr.errors import EhrInputError

        errors.append(EhrInputError)
    except ImportError:  # pragma: no cover - during partial installs
        pass
    try:
        from privehr.privacy.errors import PrivacyError

        errors.append(PrivacyError)
    except ImportError:  # pragma: no cover
        pass
    return tuple(errors)


def friendly(fn: Callable) -> Callable:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except _user_errors() as exc:
            err_console.print(f"[bold red]error:[/] {exc}")
            raise typer.Exit(2) from None

    return wrapper


def repo_root() -> Path:
    """Where the bundled data lives: the source checkout (editable install) or the CWD."""
    here = Path(__file__).resolve().parents[2]
    return here if (here / "data" / "synthea").is_dir() else Path.cwd()


class RichUI:
    """Progress callbacks for long stages, printed with the time of each stage."""

    def __init__(self) -> None:
        self._progress: Progress | None = None
        self._task = None
        self._t = time.perf_counter()

    def progress(self, label: str, done: int, total: int) -> None:
        if self._progress is None:
            self._progress = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                                      TimeElapsedColumn(), console=console, transient=False)
            self._progress.start()
            self._task = self._progress.add_task(label, total=total)
        self._progress.update(self._task, completed=done, total=total)
        if done >= total:
            self._progress.stop()
            self._progress = None
            self.stage_done(label)

    def stage(self, label: str) -> None:
        self._t = time.perf_counter()
        console.print(f"[dim]→ {label}[/]")

    def stage_done(self, label: str) -> None:
        console.print(f"[green]✓[/] {label} ({time.perf_counter() - self._t:.1f} s)")
        self._t = time.perf_counter()

    def config_done(self, entry: dict[str, Any]) -> None:
        g = entry.get("global") or {}
        auroc = g.get("auroc")
        eps = (entry.get("privacy") or {}).get("epsilon")
        console.print(f"[green]✓[/] {entry['name']}: AUROC {auroc:.3f}" if auroc is not None else f"✓ {entry['name']}",
                      f"ε={eps:.2f}" if eps is not None else "ε=∞", f"({entry['seconds']:.1f} s)")


@app.command()
@friendly
def ingest(
    source: Path = typer.Argument(..., help="A Synthea CSV export directory or a directory of FHIR R4 bundles."),
    store: Path = typer.Option(..., "--store", help="The site's DuckDB store (created if absent)."),
    site: str | None = typer.Option(None, "--site", help="Source label (default: the directory name)."),
    strict: bool = typer.Option(False, "--strict", help="Fail on any rejected row."),
    as_json: bool = typer.Option(False, "--json", help="Print a machine-readable summary."),
) -> None:
    """Load an EHR export into a de-identified local store (identifiers never enter it)."""
    from privehr.ehr.store import ingest as do_ingest

    ui = RichUI()
    summary = do_ingest(source, store, site=site, strict=strict, progress=None if as_json else ui.progress)
    data = summary.to_dict()
    if as_json:
        typer.echo(json.dumps(data, indent=2, sort_keys=True, default=str))
        return
    table = Table(title=f"ingested {data.get('source')} ({data.get('kind')}, format {data.get('format_version')})")
    for col in ("table", "read", "stored", "rejected"):
        table.add_column(col, justify="right" if col != "table" else "left")
    for name, c in sorted(data.get("tables", {}).items()):
        table.add_row(name, str(c["rows_read"]), str(c["rows_stored"]), str(c["rows_rejected"]))
    console.print(table)
    console.print(f"{data.get('n_patients')} patients, dates {data.get('date_range')}")


@app.command()
def tasks() -> None:
    """List the built-in prediction tasks with their definitions."""
    from privehr.ehr.tasks import BUILTIN_TASKS, describe_task

    for name, task in BUILTIN_TASKS.items():
        console.rule(f"[bold]{name}")
        console.print(describe_task(task))


@app.command()
@friendly
def study(
    config: Path = typer.Argument(..., help="Study TOML (see configs/)."),
    out: Path = typer.Option(Path("runs/study"), "--out", help="Run directory to write."),
    federation: Path | None = typer.Option(
        None, "--federation", help="State dir of a running `privehr coordinator start`: run on Flower, not the simulator."),
    credentials: Path | None = typer.Option(None, "--credentials", help="With --federation: DIR/coordinator from provision."),
    only: str | None = typer.Option(None, "--config", help="With --federation: run only this configuration."),
) -> None:
    """Run a grid of configurations and write RUN_DIR (metrics.json, rounds.jsonl, models, summary)."""
    from privehr.federation.config import load_config

    cfg = load_config(config)
    if federation is not None:
        from privehr.deploy.launch import run_deployed_study

        if credentials is None:
            raise typer.BadParameter("--federation needs --credentials DIR/coordinator (from `privehr provision`)")
        for entry in cfg.configs:
            if only is not None and entry.name != only:
                continue
            res = run_deployed_study(config, entry.name, credentials, out / entry.name, federation)
            console.print(f"{entry.name}: {res['status']} (log: {out / entry.name / 'serverapp.log'})")
        return
    _run(cfg, out, base=config.resolve().parent if not (repo_root() / "data").is_dir() else repo_root(),
         command=f"privehr study {config} --out {out}")


def _run(cfg, out: Path, base: Path, command: str) -> dict[str, Any]:
    from privehr.federation.runner import run_study
    from privehr.report import render_all

    ui = RichUI()
    t0 = time.perf_counter()
    metrics = run_study(cfg, out, base, ui=ui, command=command)
    _print_metrics(metrics)
    console.print(f"run directory: [bold]{out}[/]")
    ui.stage("report and slides")
    report_path, slides_path = render_all(out)
    console.print(f"report: [bold]{report_path}[/]")
    console.print(f"slides: [bold]{slides_path}[/]")
    console.print(f"total {time.perf_counter() - t0:.1f} s")
    return metrics


def _render(fn_name: str, run_dir: Path) -> Path | None:
    try:
        import privehr.report as report
    except ImportError:  # pragma: no cover
        return None
    fn = getattr(report, fn_name, None)
    return fn(run_dir) if fn is not None else None


@app.command()
@friendly
def attack(run_dir: Path = typer.Argument(..., help="A run directory written by `privehr study`.")) -> None:
    """Run membership inference, update inversion and the one-run audit on an existing run."""
    from privehr.federation.config import parse_config
    from privehr.federation.runner import LedgerBook, run_attacks
    from privehr.federation.study import prepare, write_json

    resolved = json.loads((run_dir / "config.resolved.json").read_text(encoding="utf-8"))
    cfg = parse_config(resolved["config"], source=str(run_dir / "config.resolved.json"))
    metrics = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
    prep = prepare(cfg, run_dir, repo_root())
    book = LedgerBook(prep, metrics["study"]["id"])
    metrics["attacks"] = run_attacks(cfg, prep, metrics, run_dir, book, RichUI())
    metrics["ledger_totals"] = book.store_totals()
    write_json(run_dir / "metrics.json", metrics)
    console.print(f"attack results written to {run_dir / 'metrics.json'}")


@app.command()
@friendly
def report(run_dir: Path = typer.Argument(..., help="A run directory.")) -> None:
    """Re-render RUN_DIR/report.html from the run's files alone."""
    console.print(f"report: {_render('render_report', run_dir)}")


@app.command()
@friendly
def present(run_dir: Path = typer.Argument(..., help="A run directory.")) -> None:
    """Write RUN_DIR/slides.html: the study's key findings as a self-contained slide deck."""
    console.print(f"slides: {_render('render_slides', run_dir)}")


def _print_metrics(metrics: dict[str, Any]) -> None:
    t = Table(title=f"task {metrics['study']['task']} — {len(metrics['sites'])} sites")
    for col in ("configuration", "method", "protection", "AUROC [95% CI] released", "exact (sim.)", "Brier",
                "ε (worst site)", "s"):
        t.add_column(col)
    for c in metrics["configs"]:
        g = c.get("global") or {}
        ci = (g.get("ci") or {}).get("auroc") or [float("nan")] * 2
        eps = (c.get("privacy") or {}).get("epsilon")
        t.add_row(c["name"], c["method"], c["protection"],
                  f"{g.get('auroc', float('nan')):.3f} [{ci[0]:.3f}, {ci[1]:.3f}]",
                  _num((c.get("simulation_exact") or {}).get("auroc")), f"{g.get('brier', float('nan')):.3f}",
                  "∞" if eps is None else f"{eps:.2f}", f"{c['seconds']:.1f}")
    console.print(t)


@app.command()
@friendly
def demo(
    out: Path = typer.Option(Path("runs/demo"), "--out", help="Run directory to write."),
) -> None:
    """The whole study on the bundled real Synthea data: baselines, federated, protected."""
    from privehr.federation.config import load_config

    cfg = load_config(repo_root() / "configs" / "demo.toml")
    _run(cfg, out, base=repo_root(), command="make demo" if out == Path("runs/demo") else f"privehr demo --out {out}")


@app.command()
@friendly
def sites(
    store: Path = typer.Argument(..., help="A store holding one or more ingested exports."),
    method: str = typer.Option("source", help="source | organization | stratified | dirichlet"),
    task: str = typer.Option("readmission_30d", help="Task whose cohort and prevalence to show."),
    k: int | None = typer.Option(None, help="Number of sites (organization regions, stratified, dirichlet)."),
    alpha: float = typer.Option(0.5, help="Dirichlet concentration (smaller = more non-IID)."),
    min_patients: int = typer.Option(50, help="Sites below this are merged (or excluded with --exclude-small)."),
    exclude_small: bool = typer.Option(False, "--exclude-small", help="Exclude small sites instead of merging."),
    seed: int = typer.Option(0),
) -> None:
    """Split a store into sites; print site, patients, examples and outcome prevalence."""
    from privehr.ehr.features import build_task_data
    from privehr.ehr.sites import plan_sites, summarise_sites
    from privehr.ehr.store import open_store
    from privehr.ehr.tasks import get_task

    if not store.exists():
        raise FileNotFoundError(f"{store}: no such store; create it with `privehr ingest EXPORT --store {store}`")
    con = open_store(store)
    try:
        td = build_task_data(con, get_task(task))
        plan = plan_sites(con, method, td, k=k, alpha=alpha, seed=seed, min_patients=min_patients,
                          small="exclude" if exclude_small else "merge")
        rows = summarise_sites(plan, plan.split(td))
    finally:
        con.close()
    table = Table(title=f"{method} split of {store.name} — task {task}")
    for col in ("site", "patients", "examples", "positives", "prevalence"):
        table.add_column(col, justify="left" if col == "site" else "right")
    for r in rows:
        prev = r.get("prevalence")
        table.add_row(str(r["site"]), str(r["patients"]), str(r["examples"]), str(r.get("positives", "")),
                      "–" if prev is None else f"{prev:.3f}")
    console.print(table)
    for note in plan.notes:
        console.print(f"[yellow]note:[/] {note}")


@app.command()
@friendly
def ledger(
    target: Path = typer.Argument(..., help="A site store (.duckdb) or a run directory."),
    releases: int = typer.Option(20, help="How many of the latest releases to list per site (0 = all)."),
) -> None:
    """A site's ε, release by release and study by study (from the ledger beside its store)."""
    from privehr.privacy.ledger import PrivacyLedger, ledger_path_for_store

    if target.is_dir():
        paths = sorted((target / "stores").glob("*.ledger.jsonl"))
        if not paths:
            raise FileNotFoundError(f"{target}: no stores/*.ledger.jsonl here; is it a run directory?")
    else:
        paths = [ledger_path_for_store(target)]
        if not paths[0].exists():
            raise FileNotFoundError(f"{paths[0]}: no ledger yet (the store has made no release)")
    for path in paths:
        led = PrivacyLedger(path)
        eps = led.epsilon()
        console.rule(f"[bold]{led.site}[/] — ε = {'∞ (a non-private release was made)' if eps == float('inf') else f'{eps:.3f}'}"
                     f" at δ = {led.delta:g}")
        t = Table(title="by study")
        for col in ("study", "releases", "non-private", "ε of study alone", "ε cumulative after"):
            t.add_column(col)
        for study, row in led.by_study().items():
            t.add_row(study, str(row["releases"]), str(row["non_private"]), _eps_text(row["epsilon_alone"]),
                      _eps_text(row["epsilon_cumulative_after"]))
        console.print(t)
        entries = led.entries()
        shown = entries if releases == 0 else entries[-releases:]
        r = Table(title=f"releases ({len(shown)} of {len(entries)})")
        for col in ("#", "study", "config", "round", "kind", "event", "ε cumulative"):
            r.add_column(col)
        for e in shown:
            r.add_row(str(e.seq), e.study, e.config, str(e.round), e.kind, type(e.event).__name__, _eps_text(e.epsilon))
        console.print(r)


def _num(x: float | None) -> str:
    return "–" if x is None else f"{x:.3f}"


def _eps_text(x: float | None) -> str:
    return "∞" if x is None or x == float("inf") else f"{x:.3f}"


@app.command()
@friendly
def score(
    export: Path = typer.Argument(..., help="The scoring site's own export (CSV or FHIR) or store (.duckdb)."),
    run: Path = typer.Option(..., "--run", help="Run directory holding the model (metrics.json, models/)."),
    config: str = typer.Option("fedavg", "--config", help="Which configuration's final model to use."),
    encrypted: bool = typer.Option(True, "--encrypted/--plain", help="CKKS: the host never sees the patients."),
    out: Path = typer.Option(Path("scores.csv"), "--out", help="CSV of (patient pseudonym, score)."),
) -> None:
    """Score a site's patients against a federated model (encrypted: the site never sees the weights)."""
    import numpy as np

    from privehr.ehr.features import build_task_data
    from privehr.ehr.store import ingest as do_ingest
    from privehr.ehr.store import open_store
    from privehr.ehr.tasks import get_task
    from privehr.federation.scoring import score_patients

    metrics = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
    entry = next((c for c in metrics["configs"] if c["name"] == config), None)
    if entry is None or "standardizer" not in entry:
        names = [c["name"] for c in metrics["configs"] if "standardizer" in c]
        raise FileNotFoundError(f"{run}: no federated configuration {config!r}; choose one of {names}")
    if not encrypted:
        raise typer.BadParameter("plain scoring hands the model to the site; use --encrypted")
    store = export if export.suffix == ".duckdb" else out.with_suffix(".duckdb")
    if store is not export:
        do_ingest(export, store)
    con = open_store(store)
    try:
        td = build_task_data(con, get_task(metrics["study"]["task"]))
    finally:
        con.close()
    params = np.load(run / "models" / f"{config}.npy")
    result = score_patients(td.X, td.patient_id, params, entry["standardizer"], site_id=export.stem, out_csv=out)
    console.print_json(data=result)


def _mount_deploy() -> None:
    """`privehr provision`, `privehr coordinator …`, `privehr site …`, `privehr audit verify`."""
    from privehr.deploy.cli import deploy_app

    app.registered_commands.extend(deploy_app.registered_commands)
    app.registered_groups.extend(deploy_app.registered_groups)


_mount_deploy()


def main() -> None:
    import torch

    # Tiny tabular models: extra intra-op threads only add overhead (measured 10-25x slower
    # per step with 2 threads on this 2-core machine; bench/README.md "Federation").
    torch.set_num_threads(int(os.environ.get("PRIVEHR_TORCH_THREADS", "1")))
    logging.basicConfig(level=os.environ.get("PRIVEHR_LOG", "WARNING"))
    logging.getLogger("absl").setLevel(logging.ERROR)  # dp-accounting RDP order warnings
    app()


if __name__ == "__main__":
    main()

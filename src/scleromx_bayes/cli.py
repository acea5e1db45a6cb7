"""``scleromx-bayes``: the command line, a thin shell over the Python API.

Bad input (unreadable or invalid data, an invalid spec, an impossible option)
ends with exit status 2 and one clear message on stderr, before anything is
written to the output folder.
"""

from __future__ import annotations

import sys
import warnings
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from .cohort import Cohort, CohortError, OutcomeDefinition, read_data
from .spec import ModelSpec, SpecError, load_spec

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Bayesian CR-probability models for small rare-disease cohorts.",
)
out = Console()
err = Console(stderr=True)


class Outcome(StrEnum):
    cr = "cr"
    orr = "orr"


class NEPolicy(StrEnum):
    exclude = "exclude"
    failure = "failure"
    success = "success"


class Kind(StrEnum):
    auto = "auto"
    episodes = "episodes"
    counts = "counts"


class BadInput(Exception):
    """Raised for anything the user can fix; reported without a traceback."""


def _fail(message: str) -> None:
    err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True, markup=True)
    sys.exit(2)


def _load(data: Path, kind: Kind) -> Cohort:
    return read_data(data, kind=None if kind == Kind.auto else kind.value)


def _spec(model: str) -> ModelSpec:
    return load_spec(model)


def _out_dir(path: Path) -> Path:
    if path.exists() and not path.is_dir():
        raise BadInput(f"--out {path} exists and is not a folder")
    return path


def print_summary(ds, console: Console = out) -> None:
    """Print CR probability (mean, HDI) and P(better than reference) per regimen x severity."""
    ref = ds.attrs["reference_regimen"]
    prob = ds.attrs["hdi_prob"]
    title = f"CR probability at a new centre, model '{ds.attrs['model_name']}'"
    if ds.attrs.get("synthetic"):
        title += "  [bold yellow](SYNTHETIC DATA - not real patients)[/]"
    table = Table(title=title, title_justify="left")
    table.add_column("regimen")
    table.add_column("severity")
    table.add_column("n (CR)", justify="right")
    table.add_column(f"P(CR) mean [{prob:.0%} HDI]", justify="right")
    table.add_column(f"P(better than {ref})", justify="right")
    p = ds["p_cr_new_site"]
    n = ds["n_evaluable"].sum("site")
    y = ds["n_responders"].sum("site")
    for reg in ds["regimen"].values:
        for sev in ds["severity"].values:
            s = p.sel(regimen=reg, severity=sev)
            better = float(ds["prob_better"].sel(regimen=reg, severity=sev))
            table.add_row(
                str(reg),
                str(sev),
                f"{int(n.sel(regimen=reg, severity=sev))} "
                f"({int(y.sel(regimen=reg, severity=sev))})",
                f"{float(s.sel(stat='mean')):.2f} [{float(s.sel(stat='hdi_lower')):.2f}, "
                f"{float(s.sel(stat='hdi_upper')):.2f}]",
                "reference" if reg == ref else f"{better:.2f}",
            )
    console.print(table)
    if "exchangeability_weight" in ds:
        weights = ", ".join(
            f"{r} {float(w):.2f}" for r, w in ds["exchangeability_weight"].to_series().items()
        )
        console.print(f"EXNEX: posterior probability of being exchangeable: {weights}")
    problems = ds.attrs.get("diagnostics_problems", "none")
    if problems != "none":
        console.print(f"[bold yellow]sampling diagnostics:[/] {problems}")
    else:
        console.print(
            f"diagnostics: R-hat <= {ds.attrs['diagnostics_max_rhat']:.3f}, "
            f"bulk ESS >= {ds.attrs['diagnostics_min_ess_bulk']:.0f}, no divergences"
        )


def _run_fit(
    cohort: Cohort,
    spec: ModelSpec,
    outcome: OutcomeDefinition,
    out_dir: Path,
    *,
    draws: int,
    tune: int,
    chains: int,
    seed: int,
    sampler: str,
    fmt: str,
    target_accept: float | None = None,
) -> None:
    from .checks import posterior_predictive_check
    from .fit import fit
    from .io import write_dataset, write_posterior
    from .plots import forest_plot, predictive_plot

    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")  # diagnostics are printed below, not as warnings
        result = fit(
            cohort,
            spec,
            outcome=outcome,
            draws=draws,
            tune=tune,
            chains=chains,
            seed=seed,
            sampler=sampler,
            target_accept=target_accept,
        )
    ds = result.summary()
    print_summary(ds)
    ppc = posterior_predictive_check(result, seed=seed)
    print_predictive_check(ppc)
    out_dir.mkdir(parents=True, exist_ok=True)
    ext = ".zarr" if fmt == "zarr" else ".nc"
    paths = [
        write_dataset(ds, out_dir / f"summary{ext}"),
        write_posterior(result.posterior, out_dir / f"posterior{ext}"),
        forest_plot(ds, out_dir / "forest.png"),
        predictive_plot(ppc, out_dir / "ppc.png"),
    ]
    out.print("wrote " + ", ".join(str(p) for p in paths))


def print_predictive_check(ppc, console: Console = out) -> None:
    """One line on the posterior predictive check: the worst-reproduced count."""
    p = ppc["predictive_p_value"]
    if bool(p.isnull().all()):
        return
    worst = p.where(p.notnull(), 2.0).argmin(...)
    reg, sev = (
        str(p["regimen"].values[worst["regimen"]]),
        str(p["severity"].values[worst["severity"]]),
    )
    value = float(p.isel(worst))
    flag = "[bold yellow]check this count[/]" if value < 0.05 else "no count stands out"
    console.print(f"posterior predictive check: smallest p = {value:.2f} ({reg}, {sev}); {flag}")


OutcomeOpt = Annotated[Outcome, typer.Option(help="cr: complete response; orr: CR or PR.")]
NEOpt = Annotated[NEPolicy, typer.Option(help="What a not-evaluable episode becomes.")]
KindOpt = Annotated[Kind, typer.Option(help="Force the table kind (default: by its columns).")]
DrawsOpt = Annotated[int, typer.Option(min=50, help="Posterior draws per chain.")]
TuneOpt = Annotated[int, typer.Option(min=50, help="Warm-up iterations per chain.")]
ChainsOpt = Annotated[int, typer.Option(min=1, help="Number of chains.")]
SeedOpt = Annotated[int, typer.Option(help="Random seed (same seed, same draws).")]
FormatOpt = Annotated[str, typer.Option("--format", help="netcdf or zarr.")]
TargetAcceptOpt = Annotated[
    float | None,
    typer.Option(
        "--target-accept",
        min=0.5,
        max=0.999,
        help="NUTS adaptation target (default: the spec's, else 0.9); raise it on divergences.",
    ),
]


def _check_format(fmt: str) -> str:
    if fmt not in ("netcdf", "zarr"):
        raise BadInput(f"--format must be 'netcdf' or 'zarr', not {fmt!r}")
    return fmt


@app.command()
def demo(
    out_dir: Annotated[Path, typer.Option("--out", help="Output folder.")] = Path("demo-output"),
    draws: DrawsOpt = 1000,
    tune: TuneOpt = 1000,
    chains: ChainsOpt = 4,
    seed: SeedOpt = 1,
    fmt: FormatOpt = "netcdf",
    target_accept: TargetAcceptOpt = None,
) -> None:
    """Fit the embedded SYNTHETIC example cohort with the base model."""
    from .simulate import load_example

    cohort = load_example()
    out.print(
        f"Example cohort ([bold yellow]SYNTHETIC[/]): {cohort.n_patients} patients, "
        f"{cohort.n_episodes} episodes, {len(cohort.sites)} centres, "
        f"{len(cohort.regimens)} regimens"
    )
    _run_fit(
        cohort,
        load_spec("base"),
        OutcomeDefinition(),
        _out_dir(out_dir),
        draws=draws,
        tune=tune,
        chains=chains,
        seed=seed,
        sampler="nutpie",
        fmt=_check_format(fmt),
        target_accept=target_accept,
    )


@app.command("fit")
def fit_command(
    data: Annotated[Path, typer.Argument(help="Episode or counts table (.csv, .parquet, .xlsx).")],
    out_dir: Annotated[Path, typer.Option("--out", help="Output folder.")],
    model: Annotated[str, typer.Option(help="Shipped spec name or path to a .toml.")] = "base",
    outcome: OutcomeOpt = Outcome.cr,
    ne: NEOpt = NEPolicy.exclude,
    kind: KindOpt = Kind.auto,
    draws: DrawsOpt = 1000,
    tune: TuneOpt = 1000,
    chains: ChainsOpt = 4,
    seed: SeedOpt = 1,
    sampler: Annotated[str, typer.Option(help="nutpie or pymc.")] = "nutpie",
    fmt: FormatOpt = "netcdf",
    target_accept: TargetAcceptOpt = None,
) -> None:
    """Fit a model to DATA and write summary, posterior and forest plot to --out."""
    if sampler not in ("nutpie", "pymc"):
        raise BadInput(f"--sampler must be 'nutpie' or 'pymc', not {sampler!r}")
    fmt = _check_format(fmt)
    out_dir = _out_dir(out_dir)
    spec = _spec(model)
    cohort = _load(data, kind)
    definition = OutcomeDefinition(outcome.value, ne=ne.value)
    from .fit import cells_for

    # raises here, before any output, if the outcome or the model needs a column
    cells_for(cohort, spec, definition)
    _run_fit(
        cohort,
        spec,
        definition,
        out_dir,
        draws=draws,
        tune=tune,
        chains=chains,
        seed=seed,
        sampler=sampler,
        fmt=fmt,
        target_accept=target_accept,
    )


@app.command()
def sensitivity(
    data: Annotated[Path, typer.Argument(help="Episode or counts table (.csv, .parquet, .xlsx).")],
    out_dir: Annotated[Path, typer.Option("--out", help="Output folder (holds the store too).")],
    grid: Annotated[str, typer.Option(help="Shipped grid name or path to a .toml.")] = "default",
    workers: Annotated[int, typer.Option(min=1, help="Scenarios run in parallel (processes).")] = 1,
    scheduler: Annotated[
        str | None,
        typer.Option(
            help="Dask scheduler address (tcp://host:8786): run the scenarios on that cluster."
        ),
    ] = None,
    resume: Annotated[
        bool,
        typer.Option("--resume", help="Reuse the finished scenarios already in --out's store."),
    ] = False,
    kind: KindOpt = Kind.auto,
    draws: Annotated[int | None, typer.Option(min=50, help="Override the grid's draws.")] = None,
    tune: Annotated[int | None, typer.Option(min=50, help="Override the grid's warm-up.")] = None,
    chains: Annotated[int | None, typer.Option(min=1, help="Override the grid's chains.")] = None,
    seed: Annotated[int | None, typer.Option(help="Override the grid's seed.")] = None,
    decision: Annotated[
        float, typer.Option(min=0.5, max=1.0, help="Decision threshold on P(better).")
    ] = 0.9,
) -> None:
    """Run a sensitivity grid on DATA: one Dataset, a conclusions table, a forest plot.

    Every finished scenario is kept in --out/store as soon as it finishes; run again
    with --resume after an interruption to redo only what was not finished.
    """
    from .io import atomic_path, write_dataset
    from .plots import sensitivity_forest
    from .sensitivity import (
        Store,
        conclusions,
        load_grid,
        rank_stability,
        resolve,
        run_sensitivity,
    )

    if workers > 1 and scheduler:
        raise BadInput("give --workers or --scheduler, not both")
    out_dir = _out_dir(out_dir)
    the_grid = load_grid(grid).with_run_settings(draws=draws, tune=tune, chains=chains, seed=seed)
    cohort = _load(data, kind)
    for scenario in the_grid.expand(cohort):  # bad axis values fail here, before any fit
        resolve(cohort, the_grid, scenario)
    store = out_dir / "store"
    if not resume and Store(store).finished():
        raise BadInput(
            f"{store} already holds {Store(store).finished()} finished scenario(s): "
            "add --resume to reuse them, or choose another --out"
        )
    executor, closer = _executor(workers, scheduler)
    try:
        sens = run_sensitivity(
            cohort, the_grid, executor=executor, store=store, resume=True, progress=True
        )
    except KeyboardInterrupt:
        err.print(
            f"interrupted: {Store(store).finished()} finished scenario(s) are kept in "
            f"{store}; run again with --resume to finish"
        )
        sys.exit(130)
    finally:
        closer()
    table = conclusions(sens, decision=decision)
    ranks = rank_stability(sens)
    print_conclusions(sens, table, decision)
    severity = _most_informative_severity(sens)
    paths = [write_dataset(sens, out_dir / "sensitivity.nc")]
    for name, frame in (("conclusions.csv", table), ("rank_stability.csv", ranks)):
        with atomic_path(out_dir / name) as tmp:
            frame.to_csv(tmp, index=False)
        paths.append(out_dir / name)
    paths.append(sensitivity_forest(sens, out_dir / "sensitivity_forest.png", severity=severity))
    out.print("wrote " + ", ".join(str(p) for p in paths))


def _most_informative_severity(sens) -> str:
    """The severity level with the most evaluable episodes (the forest plot's panel)."""
    n = sens["n_evaluable"].isel(scenario=0).sum(("regimen", "site"))
    return str(n["severity"].values[int(n.values.argmax())])


def _executor(workers: int, scheduler: str | None):
    """An executor for the scenarios, and how to close it."""
    if scheduler:
        try:
            from dask.distributed import Client
        except ImportError:
            raise BadInput("--scheduler needs dask: pip install 'scleromx-bayes[dask]'") from None
        try:
            client = Client(scheduler, timeout="10s")
        except OSError as exc:
            raise BadInput(f"cannot reach the Dask scheduler at {scheduler}: {exc}") from None
        return client.get_executor(), client.close
    if workers > 1:
        import concurrent.futures as cf
        import multiprocessing as mp

        # spawn: a forked child would inherit the parent's sampler threads
        pool = cf.ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"))
        return pool, lambda: pool.shutdown(cancel_futures=True)
    return None, lambda: None


def print_conclusions(sens, table, decision: float, console: Console = out) -> None:
    """Print P(better) and the risk difference per contrast: baseline and range across
    scenarios, and whether the decision flips."""
    a = sens.attrs
    title = (
        f"Sensitivity of regimen contrasts vs {a['reference_regimen']}: "
        f"{a['n_ok']} of {a['n_scenarios']} scenarios usable, "
        f"{a['compilations']} model(s) compiled"
    )
    if a.get("synthetic"):
        title += "  [bold yellow](SYNTHETIC DATA - not real patients)[/]"
    t = Table(title=title, title_justify="left")
    for col in (
        "regimen",
        "severity",
        "P(better) baseline [range]",
        "RD baseline [range]",
        f"P(better) > {decision:g} flips?",
    ):
        t.add_column(col, justify="left" if col in ("regimen", "severity") else "right")
    for row in table.itertuples(index=False):
        flips = "yes: " + row.flipping_scenarios if row.decision_flips else "no"
        t.add_row(
            str(row.regimen),
            str(row.severity),
            f"{row.p_better_baseline:.2f} [{row.p_better_min:.2f}, {row.p_better_max:.2f}]",
            f"{row.rd_baseline:+.2f} [{row.rd_min:+.2f}, {row.rd_max:+.2f}]",
            flips,
        )
    console.print(t)
    failed = sens["status"].values != "ok"
    if failed.any():
        console.print("[bold yellow]scenarios left out of the ranges[/] (reported, not hidden):")
        for name, status, reason in zip(
            sens["scenario"].values[failed],
            sens["status"].values[failed],
            sens["reason"].values[failed],
            strict=True,
        ):
            console.print(f"  {name}: {status}: {reason}")


@app.command("compare")
def compare_command(
    data: Annotated[Path, typer.Argument(help="Episode or counts table (.csv, .parquet, .xlsx).")],
    models: Annotated[
        list[str], typer.Option("--model", help="A spec name or .toml path; give two or more.")
    ] = None,  # noqa: B008
    level: Annotated[
        str,
        typer.Option(
            help="What LOO leaves out: 'episode' (one treatment episode) or 'cell' "
            "(a regimen x site x severity count)."
        ),
    ] = "episode",
    out_dir: Annotated[
        Path | None, typer.Option("--out", help="Write comparison.csv here.")
    ] = None,
    outcome: OutcomeOpt = Outcome.cr,
    ne: NEOpt = NEPolicy.exclude,
    kind: KindOpt = Kind.auto,
    draws: DrawsOpt = 1000,
    tune: TuneOpt = 1000,
    chains: ChainsOpt = 4,
    seed: SeedOpt = 1,
) -> None:
    """Compare models of DATA by PSIS-LOO (ArviZ), with Pareto-k warnings."""
    from .checks import compare
    from .fit import cells_for, fit
    from .io import atomic_path

    models = list(models or ["base", "no_pooling", "complete_pooling"])
    if len(models) < 2:
        raise BadInput("give at least two --model")
    if level not in ("episode", "cell"):
        raise BadInput(f"--level must be 'episode' or 'cell', not {level!r}")
    if out_dir is not None:
        out_dir = _out_dir(out_dir)
    specs = {m: _spec(m) for m in models}
    cohort = _load(data, kind)
    definition = OutcomeDefinition(outcome.value, ne=ne.value)
    for spec in specs.values():
        cells_for(cohort, spec, definition)  # bad input fails before any fit
    fits = {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for name, spec in specs.items():
            fits[name] = fit(
                cohort, spec, outcome=definition, draws=draws, tune=tune, chains=chains, seed=seed
            )
        table = compare(fits, level)
    title = f"PSIS-LOO comparison, leaving out one {level} at a time"
    if cohort.synthetic:
        title += "  [bold yellow](SYNTHETIC DATA - not real patients)[/]"
    t = Table(title=title, title_justify="left")
    for col in ("model", "rank", "elpd", "se", "elpd_diff", "dse", "weight", "Pareto k > 0.7"):
        t.add_column(col, justify="left" if col == "model" else "right")
    for name, row in table.iterrows():
        t.add_row(
            str(name),
            str(int(row["rank"])),
            f"{row['elpd']:.1f}",
            f"{row['se']:.1f}",
            f"{row['elpd_diff']:.1f}",
            f"{row['dse']:.1f}",
            f"{row['weight']:.2f}",
            f"{int(row['n_high_pareto_k'])} of {int(row['n_obs'])}",
        )
    out.print(t)
    for w in caught:
        if issubclass(w.category, RuntimeWarning):
            out.print(f"[bold yellow]warning:[/] {w.message}")
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        with atomic_path(out_dir / "comparison.csv") as tmp:
            table.to_csv(tmp, index_label="model")
        out.print(f"wrote {out_dir / 'comparison.csv'}")


@app.command()
def validate(
    data: Annotated[Path, typer.Argument(help="Episode or counts table.")],
    kind: KindOpt = Kind.auto,
) -> None:
    """Check DATA and print what would be modelled; exit 2 listing every problem."""
    cohort = _load(data, kind)
    cells = cohort.cells()
    out.print(f"{data}: valid {cohort.kind} table" + (" (SYNTHETIC)" if cohort.synthetic else ""))
    if cohort.n_patients is not None:
        out.print(f"  {cohort.n_patients} patients, {cohort.n_episodes} episodes")
    else:
        out.print(f"  {cohort.n_episodes} episodes")
    out.print(f"  regimens: {', '.join(cohort.regimens)}")
    out.print(f"  sites: {', '.join(cohort.sites)}")
    out.print(f"  severity (reference first): {', '.join(cohort.severities)}")
    out.print(
        f"  {len(cells.frame)} regimen x site x severity cells; CR {cells.y.sum()}/{cells.n.sum()}"
        " evaluable"
    )


@app.command()
def specs() -> None:
    """List the shipped model specs."""
    from .spec import list_specs

    for name in list_specs():
        out.print(f"{name}: {load_spec(name).description}")


def main(argv: list[str] | None = None) -> None:
    """Entry point: usage errors and bad input exit with status 2 and no traceback."""
    try:
        app(args=argv)
    except (CohortError, SpecError, BadInput, FileNotFoundError, ValueError) as exc:
        _fail(str(exc))


if __name__ == "__main__":
    main()

"""``scleromx-bayes``: the command line, a thin shell over the public Python API.

Exit status: 0 on success; 2 for bad input (data, spec, grid, option: anything the
user can fix), with one message on stderr naming what to fix, before anything is
written to the output folder; 1 for anything else, which is a bug in the package:
a short message, and the traceback with ``--debug``. Everything a user wrote
(labels, file names, scenario names) is printed literally, never as markup.
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import multiprocessing as mp
import sys
import traceback
import warnings
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

import scleromx_bayes as sxb
from scleromx_bayes.errors import InputError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Bayesian CR-probability models for small rare-disease cohorts.",
)
out = Console(highlight=False)
err = Console(stderr=True, highlight=False)
SYNTHETIC_TAG = "(SYNTHETIC DATA - not real patients)"


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


class BadInput(InputError):
    """An impossible combination of options; reported without a traceback."""


def say(*parts: str | Text, console: Console = out, wrap: bool = True) -> None:
    """Print text literally (user labels may contain square brackets). ``wrap=False``
    prints it on one line, however long (the terminal folds it): an error message's
    file names and quoted values stay whole, to copy or to search for."""
    console.print(Text.assemble(*parts), soft_wrap=not wrap)


def _title(text: str, synthetic: bool) -> Text:
    title = Text(text)
    if synthetic:
        title.append("  " + SYNTHETIC_TAG, style="bold yellow")
    return title


def _load(
    data: Path,
    kind: Kind,
    sheet: str | None = None,
    encoding: str | None = None,
    severity_order: str | None = None,
) -> sxb.Cohort:
    order = [s.strip() for s in severity_order.split(",")] if severity_order else None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", sxb.LevelWarning)
        cohort = sxb.read_data(
            data,
            kind=None if kind == Kind.auto else kind.value,
            sheet=sheet,
            encoding=encoding,
            severity_order=order,
        )
    for w in caught:
        say(Text("warning: ", style="bold yellow"), str(w.message), console=err)
    return cohort


def print_summary(ds, console: Console = out) -> None:
    """Print CR probability (mean, HDI) and P(better than reference) per regimen x severity."""
    ref = ds.attrs["reference_regimen"]
    prob = ds.attrs["hdi_prob"]
    title = _title(
        f"CR probability at a new centre, model '{ds.attrs['model_name']}'",
        bool(ds.attrs.get("synthetic")),
    )
    table = Table(title=title, title_justify="left")
    for name in ("regimen", "severity", "n (CR)", f"P(CR) mean [{prob:.0%} HDI]"):
        table.add_column(Text(name), justify="left" if name in ("regimen", "severity") else "right")
    table.add_column(Text(f"P(better than {ref})"), justify="right")
    p = ds["p_cr_new_site"]
    n = ds["n_evaluable"].sum("site")
    y = ds["n_responders"].sum("site")
    for reg in map(str, ds["regimen"].values):
        for sev in map(str, ds["severity"].values):
            s = p.sel(regimen=reg, severity=sev)
            better = float(ds["prob_better"].sel(regimen=reg, severity=sev))
            cells = [
                reg,
                sev,
                f"{int(n.sel(regimen=reg, severity=sev))} "
                f"({int(y.sel(regimen=reg, severity=sev))})",
                f"{float(s.sel(stat='mean')):.2f} [{float(s.sel(stat='hdi_lower')):.2f}, "
                f"{float(s.sel(stat='hdi_upper')):.2f}]",
                "reference"
                if reg == ref
                else ("undefined" if better != better else f"{better:.2f}"),
            ]
            table.add_row(*map(Text, cells))
    console.print(table)
    if "borrowing_method" in ds.attrs:
        borrowed = json.loads(ds.attrs["borrowed_regimens"])
        ess = ds["prior_ess"].sel(ess_method="elir")
        parts = [
            f"{r} prior ESS {float(ess.sel(regimen=r)):.1f}" for r in borrowed if r in ess.regimen
        ]
        weight = ds["robust_weight_posterior"]
        parts = [
            p
            + (
                f", robust weight now {float(weight.sel(regimen=r)):.2f}"
                if weight.notnull().sel(regimen=r)
                else ""
            )
            for p, r in zip(parts, borrowed, strict=True)
        ]
        say(f"borrowed ({ds.attrs['borrowing_method']}): " + "; ".join(parts), console=console)
    if "exchangeability_weight" in ds:
        weights = ", ".join(
            f"{r} {float(w):.2f}" for r, w in ds["exchangeability_weight"].to_series().items()
        )
        say(f"EXNEX: posterior probability of being exchangeable: {weights}", console=console)
    problems = ds.attrs.get("diagnostics_problems", "none")
    if problems != "none":
        say(Text("sampling diagnostics: ", style="bold yellow"), problems, console=console)
    else:
        say(
            f"diagnostics: R-hat <= {ds.attrs['diagnostics_max_rhat']:.3f}, "
            f"bulk ESS >= {ds.attrs['diagnostics_min_ess_bulk']:.0f}, no divergences",
            console=console,
        )


def print_predictive_check(ppc, console: Console = out) -> None:
    """One line on the posterior predictive check: the worst-reproduced count."""
    p = ppc["predictive_p_value"]
    if bool(p.isnull().all()):
        return
    worst = p.where(p.notnull(), 2.0).argmin(...)
    reg = str(p["regimen"].values[worst["regimen"]])
    sev = str(p["severity"].values[worst["severity"]])
    value = float(p.isel(worst))
    flag = Text("check this count", style="bold yellow") if value < 0.05 else "no count stands out"
    say(
        f"posterior predictive check: smallest p = {value:.2f} ({reg}, {sev}); ",
        flag,
        console=console,
    )


def _run_fit(
    cohort: sxb.Cohort,
    spec: sxb.ModelSpec,
    outcome: sxb.OutcomeDefinition,
    out_dir: Path,
    *,
    settings: dict,
    seed: int,
    fmt: str,
) -> None:
    sxb.check_writable(out_dir)  # before the fit, not after it
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")  # diagnostics are printed below, not as warnings
        result = sxb.fit(cohort, spec, outcome=outcome, seed=seed, **settings)
    ds = result.summary()
    print_summary(ds)
    ppc = sxb.posterior_predictive_check(result, seed=seed)
    print_predictive_check(ppc)
    ext = ".zarr" if fmt == "zarr" else ".nc"
    # every file written to a staging folder, moved into place only when all succeeded
    with sxb.output_folder(out_dir) as stage:
        sxb.write_dataset(ds, stage / f"summary{ext}")
        sxb.write_posterior(result.posterior, stage / f"posterior{ext}")
        sxb.forest_plot(ds, stage / "forest.png")
        sxb.predictive_plot(ppc, stage / "ppc.png")
        names = sorted(p.name for p in stage.iterdir())
    say("wrote " + ", ".join(str(out_dir / name) for name in names))


OutcomeOpt = Annotated[Outcome, typer.Option(help="cr: complete response; orr: CR or PR.")]
NEOpt = Annotated[NEPolicy, typer.Option(help="What a not-evaluable episode becomes.")]
KindOpt = Annotated[Kind, typer.Option(help="Force the table kind (default: by its columns).")]
SheetOpt = Annotated[
    str | None, typer.Option(help="Excel: the sheet to read (needed if several have data).")
]
EncodingOpt = Annotated[
    str | None, typer.Option(help="Text encoding of a CSV file (default UTF-8 or UTF-16).")
]
SeverityOrderOpt = Annotated[
    str | None,
    typer.Option(help="Severity levels, least severe first, comma-separated (e.g. mild,severe)."),
]
DrawsOpt = Annotated[int, typer.Option(min=50, help="Posterior draws per chain.")]
TuneOpt = Annotated[int, typer.Option(min=50, help="Warm-up iterations per chain.")]
ChainsOpt = Annotated[int, typer.Option(min=1, max=64, help="Number of chains.")]
SeedOpt = Annotated[
    int, typer.Option(min=0, max=2**63 - 1, help="Random seed (same seed, same draws).")
]
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


@app.callback()
def _options(
    debug: Annotated[
        bool, typer.Option("--debug", help="On an internal error, show the traceback.")
    ] = False,
) -> None:
    """Bayesian CR-probability models for small rare-disease cohorts."""


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
    cohort = sxb.load_example()
    say(
        "Example cohort (",
        Text("SYNTHETIC", style="bold yellow"),
        f"): {cohort.n_patients} patients, {cohort.n_episodes} episodes, "
        f"{len(cohort.sites)} centres, {len(cohort.regimens)} regimens",
    )
    _run_fit(
        cohort,
        sxb.load_spec("base"),
        sxb.OutcomeDefinition(),
        out_dir,
        settings={"draws": draws, "tune": tune, "chains": chains, "target_accept": target_accept},
        seed=seed,
        fmt=_check_format(fmt),
    )


@app.command("fit")
def fit_command(
    data: Annotated[Path, typer.Argument(help="Episode or counts table (.csv, .parquet, .xlsx).")],
    out_dir: Annotated[Path, typer.Option("--out", help="Output folder.")],
    model: Annotated[str, typer.Option(help="Shipped spec name or path to a .toml.")] = "base",
    outcome: OutcomeOpt = Outcome.cr,
    ne: NEOpt = NEPolicy.exclude,
    kind: KindOpt = Kind.auto,
    sheet: SheetOpt = None,
    encoding: EncodingOpt = None,
    severity_order: SeverityOrderOpt = None,
    draws: DrawsOpt = 1000,
    tune: TuneOpt = 1000,
    chains: ChainsOpt = 4,
    seed: SeedOpt = 1,
    sampler: Annotated[str, typer.Option(help="nutpie or pymc.")] = "nutpie",
    fmt: FormatOpt = "netcdf",
    target_accept: TargetAcceptOpt = None,
    evidence: Annotated[
        Path | None,
        typer.Option(help="Published series to borrow from (a spec with [borrowing])."),
    ] = None,
) -> None:
    """Fit a model to DATA and write summary, posterior and plots to --out."""
    if sampler not in ("nutpie", "pymc"):
        raise BadInput(f"--sampler must be 'nutpie' or 'pymc', not {sampler!r}")
    fmt = _check_format(fmt)
    sxb.check_writable(out_dir)
    spec = sxb.load_spec(model)
    cohort = _load(data, kind, sheet, encoding, severity_order)
    if spec.borrowing and evidence is None:
        raise BadInput(f"--model {model} borrows from published series: give --evidence FILE")
    if evidence is not None and not spec.borrowing:
        raise BadInput(f"--evidence needs a spec with a [borrowing] table; {model!r} has none")
    studies = sxb.read_evidence(evidence, regimens=cohort.regimens) if evidence else None
    _run_fit(
        cohort,
        spec,
        sxb.OutcomeDefinition(outcome.value, ne=ne.value),
        out_dir,
        settings={
            "draws": draws,
            "tune": tune,
            "chains": chains,
            "sampler": sampler,
            "target_accept": target_accept,
            "evidence": studies,
        },
        seed=seed,
        fmt=fmt,
    )


def _executor(workers: int, scheduler: str | None):
    """An executor for the scenarios, and how to close it."""
    if scheduler:
        try:
            import dask  # optional dependency: the dask extra
            from dask.distributed import Client
            from dask.utils import parse_timedelta
        except ImportError:
            raise BadInput("--scheduler needs dask: pip install 'scleromx-bayes[dask]'") from None
        # at most 10 s to reach the scheduler; less where Dask's own connect timeout is
        # shorter (DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT)
        connect = dask.config.get("distributed.comm.timeouts.connect", "10s")
        timeout = min(10.0, parse_timedelta(connect, default="seconds"))
        try:
            client = Client(scheduler, timeout=timeout)
        except OSError as exc:
            raise BadInput(f"cannot reach the Dask scheduler at {scheduler}: {exc}") from None
        return client.get_executor(), client.close
    if workers > 1:
        # spawn: a forked child would inherit the parent's sampler threads
        pool = cf.ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"))
        return pool, lambda: pool.shutdown(cancel_futures=True)
    return None, lambda: None


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
    sheet: SheetOpt = None,
    encoding: EncodingOpt = None,
    severity_order: SeverityOrderOpt = None,
    draws: Annotated[int | None, typer.Option(min=50, help="Override the grid's draws.")] = None,
    tune: Annotated[int | None, typer.Option(min=50, help="Override the grid's warm-up.")] = None,
    chains: Annotated[
        int | None, typer.Option(min=1, max=64, help="Override the grid's chains.")
    ] = None,
    seed: Annotated[
        int | None, typer.Option(min=0, max=2**63 - 1, help="Override the grid's seed.")
    ] = None,
    decision: Annotated[
        float, typer.Option(min=0.5, max=1.0, help="Decision threshold on P(better).")
    ] = 0.9,
    evidence: Annotated[
        Path | None,
        typer.Option(help="Published series, for a borrowing axis or a [borrowing] model."),
    ] = None,
    reweight: Annotated[
        bool,
        typer.Option(
            "--reweight",
            help="Answer prior and data-subset scenarios from the baseline's draws by "
            "Pareto-smoothed importance sampling where k-hat <= 0.7; refit the rest.",
        ),
    ] = False,
) -> None:
    """Run a sensitivity grid on DATA: one Dataset, a conclusions table, a forest plot.

    Every finished scenario is kept in --out/store as soon as it finishes; run again
    with --resume after an interruption to redo only what was not finished.
    """
    if workers > 1 and scheduler:
        raise BadInput("give --workers or --scheduler, not both")
    sxb.check_writable(out_dir)
    the_grid = sxb.load_grid(grid).with_run_settings(
        draws=draws, tune=tune, chains=chains, seed=seed
    )
    cohort = _load(data, kind, sheet, encoding, severity_order)
    studies = sxb.read_evidence(evidence, regimens=cohort.regimens) if evidence else None
    store = out_dir / "store"
    executor, closer = _executor(workers, scheduler)
    try:
        sens = sxb.run_sensitivity(
            cohort,
            the_grid,
            executor=executor,
            store=store,
            resume=resume,
            progress=True,
            reweight=reweight,
            evidence=studies,
        )
    except KeyboardInterrupt:
        say(
            f"interrupted: the finished scenarios are kept in {store}; run again with "
            "--resume to finish",
            console=err,
        )
        sys.exit(130)
    finally:
        closer()
    table = sxb.conclusions(sens, decision=decision)
    print_conclusions(sens, table, decision)
    with sxb.output_folder(out_dir) as stage:
        sxb.write_dataset(sens, stage / "sensitivity.nc")
        sxb.write_csv(table, stage / "conclusions.csv", index=False)
        sxb.write_csv(sxb.rank_stability(sens), stage / "rank_stability.csv", index=False)
        sxb.sensitivity_forest(
            sens, stage / "sensitivity_forest.png", severity=_most_informative_severity(sens)
        )
        names = sorted(p.name for p in stage.iterdir())
    say("wrote " + ", ".join(str(out_dir / name) for name in names))


def _most_informative_severity(sens) -> str:
    """The severity level with the most evaluable episodes (the forest plot's panel)."""
    n = sens["n_evaluable"].isel(scenario=0).sum(("regimen", "site"))
    return str(n["severity"].values[int(n.values.argmax())])


def _interval(base: float, low: float, high: float, fmt: str) -> str:
    if base != base and low != low:
        return "not assessable"
    base_text = "n/a" if base != base else format(base, fmt)
    return f"{base_text} [{format(low, fmt)}, {format(high, fmt)}]"


def print_conclusions(sens, table, decision: float, console: Console = out) -> None:
    """P(better) and the risk difference per contrast: baseline and range across the
    scenarios where the contrast is defined and trusted, whether the decision flips,
    and (under the table, so it stays readable in 80 columns) which scenarios flip
    it and which were left out, and why."""
    a = sens.attrs
    # the title is a line of its own: as a table title it would widen the table
    console.print(
        _title(
            f"Regimen contrasts vs {a['reference_regimen']}: {a['n_ok']} of "
            f"{a['n_scenarios']} scenarios ran cleanly, {a['compilations']} model(s) compiled",
            bool(a.get("synthetic")),
        )
    )
    t = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    for col in ("regimen", "severity", "P(better) [range]", "RD [range]", "flips?"):
        left = col in ("regimen", "severity")
        t.add_column(Text(col), justify="left" if left else "right", no_wrap=not left)
    for row in table.itertuples(index=False):
        t.add_row(
            Text(str(row.regimen)),
            Text(str(row.severity)),
            Text(_interval(row.p_better_baseline, row.p_better_min, row.p_better_max, ".2f")),
            Text(_interval(row.rd_baseline, row.rd_min, row.rd_max, "+.2f")),
            Text("n/a" if row.flips == "not assessable" else row.flips),
        )
    console.print(t)
    if a.get("n_reweighted"):
        say(
            f"{a['n_reweighted']} scenario(s) answered from the baseline's draws by "
            "importance sampling (Pareto k-hat <= 0.7); the rest fitted exactly",
            console=console,
        )
    say(
        f"flips?: does the decision P(better) > {decision:g} at baseline change in some "
        "scenario (n/a: not assessable, the baseline is left out)",
        console=console,
    )
    for row in table.itertuples(index=False):
        if row.flips == "yes":
            say(
                f"  {row.regimen}, {row.severity}: flips under {row.flipping_scenarios}",
                console=console,
            )
    # scenarios left out of the ranges, grouped: most rows share the same list
    left_out: dict[str, list[str]] = {}
    for row in table.itertuples(index=False):
        if row.scenarios_left_out:
            left_out.setdefault(row.scenarios_left_out, []).append(
                f"{row.regimen} ({row.severity})"
            )
    for reasons, rows in left_out.items():
        which = "every row" if len(rows) == len(table) else "; ".join(rows)
        say(
            Text("left out of the ranges", style="bold yellow"),
            f" for {which}: {reasons}",
            console=console,
        )


@app.command("compare")
def compare_command(
    data: Annotated[Path, typer.Argument(help="Episode or counts table (.csv, .parquet, .xlsx).")],
    models: Annotated[
        list[str] | None,
        typer.Option("--model", help="A spec name or .toml path; give two or more."),
    ] = None,
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
    sheet: SheetOpt = None,
    encoding: EncodingOpt = None,
    severity_order: SeverityOrderOpt = None,
    draws: DrawsOpt = 1000,
    tune: TuneOpt = 1000,
    chains: ChainsOpt = 4,
    seed: SeedOpt = 1,
) -> None:
    """Compare models of DATA by PSIS-LOO (ArviZ), with Pareto-k warnings."""
    models = list(models or ["base", "no_pooling", "complete_pooling"])
    if len(models) < 2:
        raise BadInput("give at least two --model")
    if level not in ("episode", "cell"):
        raise BadInput(f"--level must be 'episode' or 'cell', not {level!r}")
    if out_dir is not None:
        sxb.check_writable(out_dir)
    specs = {m: sxb.load_spec(m) for m in models}
    cohort = _load(data, kind, sheet, encoding, severity_order)
    definition = sxb.OutcomeDefinition(outcome.value, ne=ne.value)
    fits = {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for name, spec in specs.items():
            fits[name] = sxb.fit(
                cohort, spec, outcome=definition, draws=draws, tune=tune, chains=chains, seed=seed
            )
        table = sxb.compare(fits, level)
    title = _title(f"PSIS-LOO comparison, leaving out one {level} at a time", cohort.synthetic)
    t = Table(title=title, title_justify="left")
    for col in ("model", "rank", "elpd", "se", "elpd_diff", "dse", "weight", "Pareto k > 0.7"):
        t.add_column(Text(col), justify="left" if col == "model" else "right")
    for name, row in table.iterrows():
        t.add_row(
            Text(str(name)),
            *map(
                Text,
                (
                    str(int(row["rank"])),
                    f"{row['elpd']:.1f}",
                    f"{row['se']:.1f}",
                    f"{row['elpd_diff']:.1f}",
                    f"{row['dse']:.1f}",
                    f"{row['weight']:.2f}",
                    f"{int(row['n_high_pareto_k'])} of {int(row['n_obs'])}",
                ),
            ),
        )
    out.print(t)
    for w in caught:
        if issubclass(w.category, RuntimeWarning):
            say(Text("warning: ", style="bold yellow"), str(w.message))
    if out_dir is not None:
        with sxb.output_folder(out_dir) as stage:
            sxb.write_csv(table, stage / "comparison.csv", index_label="model")
        say(f"wrote {out_dir / 'comparison.csv'}")


def _aliases(pairs: list[str] | None) -> dict[str, str]:
    out = {}
    for pair in pairs or []:
        name, sep, target = pair.partition("=")
        if not sep or not name.strip() or not target.strip():
            raise BadInput(f"--alias needs LITERATURE_NAME=COHORT_REGIMEN, not {pair!r}")
        out[name.strip()] = target.strip()
    return out


def print_map_prior(prior, robust, conflict, console: Console = out) -> None:
    """The studies, the MAP prior (summary, mixture, accuracy, ESS), and conflict."""
    console.print(_title(f"MAP prior for {prior.regimen}", prior.synthetic))
    studies = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    for col in ("study", "n", "CR"):
        studies.add_column(Text(col), justify="left" if col == "study" else "right")
    for row in prior.studies.itertuples(index=False):
        studies.add_row(Text(str(row.label)), Text(str(row.n)), Text(str(row.n_cr)))
    console.print(studies)
    tau = prior.tau
    say(
        f"between-study SD (log-odds): {tau['mean']:.2f} [{tau['q2.5']:.2f}, "
        f"{tau['q97.5']:.2f}]; HalfNormal({prior.settings['tau_prior_halfnormal_scale']:g}) prior",
        console=console,
    )
    t = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    for col in ("prior", "mean", "median", "95% interval", "ESS elir", "moment", "morris"):
        t.add_column(Text(col), justify="left" if col == "prior" else "right")
    for label, mix in (("MAP", prior.mixture), ("robust MAP", robust)):
        summ = mix.summary()
        t.add_row(
            Text(label),
            Text(f"{summ['mean']:.2f}"),
            Text(f"{summ['median']:.2f}"),
            Text(f"[{summ['q2.5']:.2f}, {summ['q97.5']:.2f}]"),
            *(Text(f"{mix.ess(m):.1f}") for m in ("elir", "moment", "morris")),
        )
    console.print(t)
    mix = prior.mixture
    parts = ", ".join(
        f"{w:.2f} x N({m:+.2f}, {sd:.2f})"
        for w, m, sd in zip(mix.weights, mix.means, mix.sds, strict=True)
    )
    gap = float((prior.accuracy["mixture"] - prior.accuracy["draws"]).abs().max())
    say(
        f"mixture on the log-odds ({mix.components} components by AIC): {parts}; largest "
        f"quantile gap to the MAP draws {gap:.3f} (CR probability)",
        console=console,
    )
    if not prior.diagnostics.ok:
        say("SAMPLING PROBLEMS: " + "; ".join(prior.diagnostics.problems), console=console)
    if conflict is not None:
        say(conflict.message, console=console)


@app.command()
def borrow(
    evidence: Annotated[Path, typer.Argument(help="Table of published series (.csv, .xlsx).")],
    regimen: Annotated[str, typer.Option(help="The regimen to build the prior for.")],
    out_dir: Annotated[Path, typer.Option("--out", help="Output folder.")],
    data: Annotated[
        Path | None,
        typer.Option(help="The cohort (episodes or counts): conflict against its count."),
    ] = None,
    alias: Annotated[
        list[str] | None,
        typer.Option(help="LITERATURE_NAME=COHORT_REGIMEN; repeat for several."),
    ] = None,
    tau_prior: Annotated[
        float, typer.Option(min=0.0, help="HalfNormal scale of the between-study SD.")
    ] = 1.0,
    robust_weight: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Weight of the robust component.")
    ] = 0.2,
    robust_mean: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="CR probability the robust part centres on.")
    ] = 0.5,
    seed: SeedOpt = 1,
) -> None:
    """Build a MAP prior for one regimen from published series: its summary, mixture,
    effective sample size, robust version, and (with --data) prior-data conflict."""
    sxb.check_writable(out_dir)
    cohort = _load(data, Kind.auto, None, None, None) if data is not None else None
    ev = sxb.read_evidence(
        evidence,
        regimens=cohort.regimens if cohort is not None else None,
        regimen_aliases=_aliases(alias),
    )
    if regimen not in ev.regimens:
        raise BadInput(
            f"--regimen {regimen!r}: no study of it in {evidence.name} "
            f"(regimens there: {', '.join(ev.regimens)})"
        )
    prior = sxb.map_prior(ev, regimen, tau_prior=tau_prior, seed=seed)
    robust = prior.robustify(robust_weight, robust_mean) if 0 < robust_weight < 1 else prior.mixture
    conflict, count = None, None
    if cohort is not None:
        cells = cohort.cells()
        mine = cells.frame["regimen"].to_numpy() == regimen
        count = (int(cells.y[mine].sum()), int(cells.n[mine].sum()))
        if count[1] == 0:
            raise BadInput(f"the cohort has no evaluable episode of {regimen!r}")
        weighted = robust is not prior.mixture
        conflict = sxb.prior_data_conflict(
            robust, *count, robust_component=-1 if weighted else None
        )
    print_map_prior(prior, robust, conflict)
    synthetic = prior.synthetic or bool(cohort is not None and cohort.synthetic)
    ds = prior.to_dataset()
    for m in ("elir", "moment", "morris"):
        ds.attrs[f"robust_ess_{m}"] = robust.ess(m)
    ds.attrs["robust_weight"] = robust_weight
    ds.attrs["robust_mean"] = robust_mean
    if conflict is not None:
        ds.attrs["cohort_cr"], ds.attrs["cohort_n"] = count
        ds.attrs["conflict_tail_probability"] = conflict.tail_probability
        ds.attrs["robust_weight_posterior"] = conflict.robust_weight_posterior
        ds.attrs["conflict"] = conflict.message
    with sxb.output_folder(out_dir) as stage:
        sxb.write_dataset(ds, stage / "map_prior.nc")
        sxb.borrowing_plot(
            prior.mixture,
            stage / "borrowing.png",
            robust=robust,
            cohort=count,
            title=f"{regimen}: borrowed prior and cohort",
            synthetic=synthetic,
        )
        names = sorted(p.name for p in stage.iterdir())
    say("wrote " + ", ".join(str(out_dir / name) for name in names))


def _truths(
    texts: list[str],
    table: Path | None,
    cohort: sxb.Cohort,
    planned: bool,
    p_reference: str | None,
    site_sd: float,
    reference: str | None,
    fitted_model: str,
    seed: int,
) -> list[sxb.Truth]:
    """Truths from the command line: ``null``, ``fitted``, ``REGIMEN:DELTA``."""
    if p_reference is not None:
        try:
            if "=" in p_reference:
                p = {
                    k.strip(): float(x)
                    for k, x in (part.split("=", 1) for part in p_reference.split(","))
                }
            else:
                p = float(p_reference)
        except ValueError:
            raise BadInput(
                f"--p-reference {p_reference!r}: write 0.4, or nonsevere=0.5,severe=0.2"
            ) from None
    elif planned:
        p = None
    else:
        p = sxb.reference_rates(cohort, reference)
    out = []
    for text in texts:
        if text in ("fitted", "null") or ":" in text:
            if text == "fitted":
                if planned:
                    raise BadInput("--truth fitted needs outcomes: DATA is a planned design")
                say(f"fitting {fitted_model} for the posterior-predictive truth ...")
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)
                    fitted = sxb.fit(cohort, fitted_model, seed=seed)
                out.append(sxb.Truth.from_fit(fitted, name=f"as fitted ({fitted_model})"))
                continue
            if p is None:
                raise BadInput("a planned design has no outcomes: give --p-reference")
            if text == "null":
                out.append(sxb.Truth.all_equal(p, site_sd=site_sd))
                continue
            regimen, _, delta = text.rpartition(":")
            try:
                out.append(sxb.Truth.one_better(regimen, float(delta), p=p, site_sd=site_sd))
            except ValueError as exc:
                if isinstance(exc, InputError):
                    raise
                raise BadInput(f"--truth {text!r}: the difference must be a number") from None
            continue
        raise BadInput(
            f"--truth {text!r}: write null, fitted, or REGIMEN:DELTA (e.g. 'DNS rescue:0.3')"
        )
    if table is not None:
        out.append(sxb.Truth.from_table(table, site_sd=site_sd))
    return out


def print_oc(oc, table, console: Console = out) -> None:
    """P(go) per regimen x severity, one column per model, for each rule and truth."""
    specs = [str(s) for s in oc["spec"].values]
    for rule in oc["rule"].values:
        for truth in oc["truth"].values:
            rows = table[(table["rule"] == rule) & (table["truth"] == truth)]
            t = Table(
                title=f"P(go): {rule}; truth: {truth}",
                box=box.SIMPLE,
                title_justify="left",
            )
            for col in ("regimen", "severity", "n", "true diff."):
                t.add_column(col, justify="left" if col in ("regimen", "severity") else "right")
            for spec in specs:
                t.add_column(spec, justify="right")
            for regimen, severity in (
                (r, k) for r in oc["regimen"].values for k in oc["severity"].values
            ):
                cell = rows[(rows["regimen"] == regimen) & (rows["severity"] == severity)]
                first = cell.iloc[0]
                if first["p_go"] != first["p_go"]:  # NaN: the reference itself
                    continue
                values = [
                    f"{r.p_go:.3f} ({r.p_go_mcse:.3f})"
                    for r in (cell[cell["spec"] == s].iloc[0] for s in specs)
                ]
                t.add_row(
                    Text(str(regimen)),
                    Text(str(severity)),
                    str(int(first["design_n"])),
                    f"{first['true_risk_difference']:+.2f}",
                    *values,
                )
            console.print(t)
            anyg = oc["p_any_go"].sel(rule=rule, truth=truth)
            say(
                "  P(any regimen x severity says go): "
                + ", ".join(f"{s} {float(anyg.sel(spec=s)):.3f}" for s in specs),
                console=console,
            )
    failed = oc["n_failed_diagnostics"].sum().item()
    errors = oc["n_errors"].sum().item()
    say(
        f"{int(oc['n_simulations'].sum())} simulated fits; {failed} failed a diagnostic "
        f"(kept, as an analyst would report them), {errors} raised an error (not used). "
        "Brackets: Monte Carlo SE.",
        console=console,
    )


@app.command("oc")
def oc_command(
    data: Annotated[
        Path, typer.Argument(help="The cohort (its design is used) or, with --planned, a design.")
    ],
    out_dir: Annotated[Path, typer.Option("--out", help="Output folder (holds the store too).")],
    model: Annotated[
        list[str] | None, typer.Option(help="Spec name or .toml path; repeat to compare.")
    ] = None,
    truth: Annotated[
        list[str] | None,
        typer.Option(
            help="null (all regimens at the reference's rate), fitted (posterior-predictive), "
            "or REGIMEN:DELTA (that regimen better by DELTA); repeat for several."
        ),
    ] = None,
    truth_table: Annotated[
        Path | None, typer.Option(help="CSV of true CR probabilities: regimen, [severity], p_cr.")
    ] = None,
    rule: Annotated[
        list[str] | None,
        typer.Option(help="better:GO[:NOGO] or above:P0:GO[:NOGO]; repeat for several."),
    ] = None,
    planned: Annotated[
        bool,
        typer.Option("--planned", help="DATA is a planned design: site, regimen, severity, n."),
    ] = False,
    p_reference: Annotated[
        str | None,
        typer.Option(help="CR probability of the null truth: 0.4, or nonsevere=0.5,severe=0.2."),
    ] = None,
    site_sd: Annotated[
        float, typer.Option(min=0.0, help="SD of the simulated centre effects (log-odds).")
    ] = 0.5,
    reference: Annotated[str | None, typer.Option(help="Reference regimen.")] = None,
    n_sims: Annotated[int, typer.Option(min=2, help="Simulated cohorts per truth.")] = 200,
    calibrate: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            max=1.0,
            help="Also report the P(better) threshold holding this false-"
            "positive rate under null (per comparison).",
        ),
    ] = None,
    workers: Annotated[
        int, typer.Option(min=1, help="Simulations run in parallel (processes).")
    ] = 1,
    scheduler: Annotated[
        str | None, typer.Option(help="Dask scheduler address: run on that cluster.")
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Reuse the finished simulations in --out's store.")
    ] = False,
    evidence: Annotated[
        Path | None, typer.Option(help="Published series, for a model that borrows.")
    ] = None,
    draws: Annotated[int, typer.Option(min=50, help="Posterior draws per chain per fit.")] = 500,
    tune: Annotated[int, typer.Option(min=50, help="Warm-up per chain per fit.")] = 500,
    chains: Annotated[int, typer.Option(min=1, max=64)] = 2,
    seed: SeedOpt = 1,
) -> None:
    """Operating characteristics of decision rules on DATA's design: how often each
    rule says go when regimens are equal (false positives) or one is better (power),
    and the bias and coverage of the estimates, for each model.

    Finished simulations are kept in --out/store at once; run again with --resume
    after an interruption.
    """
    if workers > 1 and scheduler:
        raise BadInput("give --workers or --scheduler, not both")
    sxb.check_writable(out_dir)
    cohort = sxb.read_design(data) if planned else _load(data, Kind.auto)
    specs = model or ["base"]
    if calibrate is not None and "null" not in (truth or ["null"]):
        raise BadInput("--calibrate needs the null truth: add --truth null")
    truths = _truths(
        truth or (["null"] if truth_table is None else []),
        truth_table,
        cohort,
        planned,
        p_reference,
        site_sd,
        reference,
        specs[0],
        seed,
    )
    rules = [sxb.DecisionRule.parse(r) for r in rule or ["better:0.9"]]
    studies = sxb.read_evidence(evidence, regimens=cohort.regimens) if evidence else None
    settings = sxb.SamplerSettings(
        draws=draws, tune=tune, chains=chains, cores=1 if workers > 1 or scheduler else None
    )
    store = out_dir / "store"
    executor, closer = _executor(workers, scheduler)
    try:
        oc = sxb.operating_characteristics(
            cohort,
            specs,
            truths,
            rules,
            n_sims=n_sims,
            seed=seed,
            reference=reference,
            settings=settings,
            evidence=studies,
            executor=executor,
            store=store,
            resume=resume,
            progress=True,
        )
    except KeyboardInterrupt:
        say(
            f"interrupted: the finished simulations are kept in {store}; run again with "
            "--resume to finish",
            console=err,
        )
        sys.exit(130)
    finally:
        closer()
    table = sxb.oc_table(oc)
    say(_title("Operating characteristics on the design of " + data.name, True))
    print_oc(oc, table)
    if calibrate is not None:
        for spec in oc["spec"].values:
            cal = sxb.threshold_for(oc, spec=str(spec), truth="all equal", target=calibrate)
            say(
                f"{spec}: go when P(better) > {cal.threshold:.3f} (MC SE {cal.threshold_mcse:.3f}) "
                f"holds every comparison's false-positive rate at <= {calibrate:g} "
                f"(here {cal.false_positive_rate:.3f})"
            )
    regimen, severity = sxb.oc_focus(oc)
    with sxb.output_folder(out_dir) as stage:
        sxb.write_dataset(oc, stage / "oc.nc")
        sxb.write_csv(table, stage / "oc_table.csv", index=False)
        sxb.oc_plot(oc, stage / "oc.png", regimen=regimen, severity=severity)
        names = sorted(p.name for p in stage.iterdir())
    say("wrote " + ", ".join(str(out_dir / name) for name in names))


@app.command("report")
def report_command(
    data: Annotated[Path, typer.Argument(help="Episode or counts table (.csv, .parquet, .xlsx).")],
    out_dir: Annotated[Path, typer.Option("--out", help="Output folder for the report.")],
    model: Annotated[
        list[str] | None,
        typer.Option(help="Spec name or .toml path; the first is reported, others compared."),
    ] = None,
    grid: Annotated[
        str | None, typer.Option(help="Also run this sensitivity grid (name or .toml).")
    ] = None,
    evidence: Annotated[
        Path | None, typer.Option(help="Published series, for a model that borrows.")
    ] = None,
    oc: Annotated[
        Path | None, typer.Option(help="An operating-characteristics Dataset (oc.nc from 'oc').")
    ] = None,
    outcome: OutcomeOpt = Outcome.cr,
    ne: NEOpt = NEPolicy.exclude,
    kind: KindOpt = Kind.auto,
    sheet: SheetOpt = None,
    encoding: EncodingOpt = None,
    severity_order: SeverityOrderOpt = None,
    draws: DrawsOpt = 1000,
    tune: TuneOpt = 1000,
    chains: ChainsOpt = 4,
    seed: SeedOpt = 1,
    decision: Annotated[
        float, typer.Option(min=0.5, max=1.0, help="Decision threshold on P(better).")
    ] = 0.9,
) -> None:
    """Fit DATA and write a report a manuscript can use: report.html (self-contained),
    report.md, every table as CSV and LaTeX, every figure as PNG and SVG."""
    sxb.check_writable(out_dir)
    cohort = _load(data, kind, sheet, encoding, severity_order)
    studies = sxb.read_evidence(evidence, regimens=cohort.regimens) if evidence else None
    oc_data = sxb.read_dataset(oc) if oc is not None else None
    the_grid = sxb.load_grid(grid) if grid else None
    specs = [sxb.load_spec(m) for m in (model or ["base"])]
    definition = sxb.OutcomeDefinition(outcome.value, ne=ne.value)
    settings = {"draws": draws, "tune": tune, "chains": chains, "seed": seed}
    fits = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # diagnostics go into the report
        for spec in specs:
            say(f"fitting {spec.name} ...")
            fits[spec.name] = sxb.fit(
                cohort, spec, outcome=definition, evidence=studies, **settings
            )
    sens = tipping = None
    main_fit = fits[specs[0].name]
    if the_grid is not None:
        say(f"running the sensitivity grid {the_grid.name} ...")
        sens = sxb.run_sensitivity(cohort, the_grid, progress=True, evidence=studies)
        # the tipping point of the contrast closest to a claim: the largest P(better)
        # (a scale tipping point needs partial pooling; otherwise the regimen's prior
        # is shifted; complete pooling has no contrast to tip)
        pooling = specs[0].regimen_pooling
        if pooling != "complete":
            best = main_fit.summary()["prob_better"].fillna(-1).argmax(...)
            regimen = str(main_fit.cells.regimens[int(best["regimen"])])
            severity = str(main_fit.cells.severities[int(best["severity"])])
            say(f"tipping point of {regimen} ({severity}) ...")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                tipping = sxb.tipping_point(
                    cohort,
                    regimen,
                    severity=severity,
                    kind="scale" if pooling == "partial" else "shift",
                    spec=specs[0],
                    decision=decision,
                    seed=seed,
                    draws=draws,
                    tune=tune,
                    chains=chains,
                )
    others = {name: f for name, f in fits.items() if name != specs[0].name}
    command = "scleromx-bayes " + " ".join(sys.argv[1:])
    files = sxb.report(
        cohort,
        main_fit,
        out_dir,
        sensitivity=sens,
        oc=oc_data,
        compare=others or None,
        tipping=tipping,
        command=command,
        decision=decision,
    )
    if main_fit.diagnostics.problems:
        say(
            Text("warning: ", style="bold yellow"),
            "sampling diagnostics: " + "; ".join(main_fit.diagnostics.problems),
            console=err,
        )
    say(
        f"wrote {files.html}, {files.markdown}, {len(files.tables)} tables (CSV, LaTeX) and "
        f"{len(files.figures)} figures (PNG, SVG) in {files.folder}"
    )


@app.command()
def validate(
    data: Annotated[Path, typer.Argument(help="Episode or counts table.")],
    kind: KindOpt = Kind.auto,
    sheet: SheetOpt = None,
    encoding: EncodingOpt = None,
    severity_order: SeverityOrderOpt = None,
) -> None:
    """Check DATA and print what would be modelled; exit 2 listing every problem."""
    cohort = _load(data, kind, sheet, encoding, severity_order)
    cells = cohort.cells()
    say(f"{data}: valid {cohort.kind} table" + (" (SYNTHETIC)" if cohort.synthetic else ""))
    if cohort.n_patients is not None:
        say(f"  {cohort.n_patients} patients, {cohort.n_episodes} episodes")
    else:
        say(f"  {cohort.n_episodes} episodes")
    say(f"  regimens: {_labels(cohort.regimens)}")
    say(f"  sites: {_labels(cohort.sites)}")
    say(f"  severity (reference first): {_labels(cohort.severities)}")
    say(
        f"  {len(cells.frame)} regimen x site x severity cells; CR {cells.y.sum()}/{cells.n.sum()}"
        " evaluable"
    )


def _labels(levels, limit: int = 60) -> str:
    """Levels for a listing, each cut to ``limit`` characters (a label can be huge)."""
    return ", ".join(x if len(x) <= limit else x[: limit - 1] + "…" for x in levels)


@app.command()
def specs() -> None:
    """List the shipped model specs."""
    for name in sxb.list_specs():
        say(f"{name}: {sxb.load_spec(name).description}")


def main(argv: list[str] | None = None) -> None:
    """Entry point: exit 2 for bad input, 1 (traceback with --debug) for a bug."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        app(args=args)
    except InputError as exc:
        say(Text("error: ", style="bold red"), str(exc), console=err, wrap=False)
        sys.exit(2)
    except Exception as exc:
        if "--debug" in args:
            traceback.print_exc()
        else:
            say(
                Text("internal error: ", style="bold red"),
                f"{type(exc).__name__}: {exc}\nThis is a bug in scleromx-bayes, not in your "
                "input: run again with --debug for the traceback, and please report it.",
                console=err,
            )
        sys.exit(1)


if __name__ == "__main__":
    main()

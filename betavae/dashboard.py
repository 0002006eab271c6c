"""``dashboard``: the W&B β-comparison workspace (a saved view) and report, built in code.

Built with W&B's own ``wandb-workspaces`` library (``pip install -e ".[wandb-dashboards]"``) from the keys of
``betavae.wandb_keys``, the ones every run logs:

- runs filtered to the study's β tags (``beta1``, ``beta10``, ...; ``betavae.tracking.run_tags``), and to one
  W&B group (``--group``) when given; grouped by ``dataset``, then ``beta``; ordered by β;
- section "β against the scores": a scatter plot of β (config, log axis) against the end-of-training value
  (summary) of ``val/fid``, ``val/ssim``, ``val/psnr``, ``val/kl`` and each disentanglement metric, and PSNR
  against MIG (the reconstruction–disentanglement trade-off);
- section "Over training": line plots of the same scores over ``epoch``;
- section "Latent usage": the ``val/kl_per_dim`` histograms (W&B draws a histogram logged over steps as a heat
  map);
- section "Images by β": media panels of ``val/traversal``, ``val/samples`` and ``val/reconstructions``, runs
  in β order.

The report holds the same panels; its image grid has one run set per β, so each β gets its own column.
Online (an API key, ``WANDB_MODE`` not offline) both are saved and their URLs printed. Either way the
specification is written to a JSON file (``--spec_path``): the command that rebuilds it, the filters, the
grouping and every panel with its keys, so an offline cluster can build it now and push it later.
"""

from __future__ import annotations

import json
import os
import shlex
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from betavae.errors import ConfigError
from betavae.wandb_keys import (
    BETA,
    DISENTANGLEMENT,
    EPOCH,
    GROUP_BY,
    HISTOGRAM,
    MEDIA,
    SCORES,
    TRADEOFF,
    beta_tag,
    val_key,
)

#: the β values of both study scripts (``reproduce_study.sh``: 1, 10, 100; ``disentanglement_study.sh``: 1-16)
STUDY_BETAS = (1.0, 2.0, 4.0, 8.0, 10.0, 16.0, 100.0)
VIEW_NAME = "β study"
INSTALL_HINT = (
    '`betavae dashboard` needs W&B\'s wandb-workspaces library: pip install -e ".[wandb-dashboards]" '
    "(or pip install wandb-workspaces)"
)

__all__ = ["STUDY_BETAS", "build_report", "build_workspace", "dashboard", "describe", "panel_keys", "sections"]


def _library() -> tuple[Any, Any, Any]:
    """``(workspaces, reports.v2, expr)`` of ``wandb_workspaces``, or a ConfigError saying how to install it."""
    try:
        import wandb_workspaces.reports.v2 as wr
        import wandb_workspaces.workspaces as ws
        from wandb_workspaces import expr
    except ImportError as err:
        raise ConfigError(f"{INSTALL_HINT}; import failed: {err}") from err
    return ws, wr, expr


def _score_label(name: str) -> str:
    labels = {key: label for key, label, _ in SCORES} | dict(DISENTANGLEMENT)
    return labels[name]


def _direction(name: str) -> str:
    higher = {key: up for key, _, up in SCORES}.get(name, True)  # every disentanglement metric: higher is better
    return "higher is better" if higher else "lower is better"


def sections() -> list[tuple[str, list[Any]]]:
    """The dashboard's panels by section: ``[(section title, [panel, ...]), ...]`` (wandb-workspaces panels,
    shared by the workspace and the report)."""
    _, wr, _ = _library()
    scores = [key for key, _, _ in SCORES] + [key for key, _ in DISENTANGLEMENT]
    scatter = [
        wr.ScatterPlot(
            title=f"β against {_score_label(name)} ({_direction(name)})",
            x=wr.Config(BETA),
            y=wr.SummaryMetric(val_key(name)),
            log_x=True,
        )
        for name in scores
    ]
    x_key, y_key = TRADEOFF
    scatter.append(
        wr.ScatterPlot(
            title=f"{_score_label(y_key)} against {_score_label(x_key)} (reconstruction against disentanglement)",
            x=wr.SummaryMetric(val_key(x_key)),
            y=wr.SummaryMetric(val_key(y_key)),
        )
    )
    curves = [
        wr.LinePlot(title=f"{_score_label(name)} over training", x=EPOCH, y=[val_key(name)])
        for name in [*(key for key, _, _ in SCORES), x_key]
    ]
    usage = [wr.LinePlot(title="KL per latent dimension (nats; histogram per epoch)", x=EPOCH, y=[HISTOGRAM])]
    media = [
        wr.MediaBrowser(title=f"{title}, runs in β order", media_keys=[key], mode="grid", grid_x_axis="run")
        for key, title in MEDIA
    ]
    return [
        ("β against the scores", scatter),
        ("Over training", curves),
        ("Latent usage", usage),
        ("Images by β", media),
    ]


def study_filters(betas: Sequence[float], group: str | None) -> list[Any]:
    """The runs of the study: tagged with one of the β tags, and in W&B group ``group`` when given."""
    _, _, expr = _library()
    filters = [expr.Tags().isin([beta_tag(b) for b in betas])]
    if group:
        filters.append(expr.Metric("Group") == group)
    return filters


def build_workspace(entity: str, project: str, group: str | None = None, betas: Sequence[float] = STUDY_BETAS):
    """The saved view (not saved yet): the study's runs grouped by dataset and β, ordered by β."""
    ws, _, expr = _library()
    name = f"{VIEW_NAME} ({group})" if group else VIEW_NAME
    return ws.Workspace(
        entity=entity,
        project=project,
        name=name,
        sections=[ws.Section(name=title, panels=panels, is_open=True) for title, panels in sections()],
        runset_settings=ws.RunsetSettings(
            filters=study_filters(betas, group),
            groupby=[expr.Config(key) for key in GROUP_BY],
            order=[expr.Ordering(expr.Config(BETA), ascending=True)],
        ),
    )


def build_report(entity: str, project: str, group: str | None = None, betas: Sequence[float] = STUDY_BETAS):
    """The report (not saved yet): the workspace's panels, each section a panel grid over the study's runs;
    the images in one run set per β."""
    _, wr, _ = _library()

    def runset(name: str, run_betas: Sequence[float]) -> Any:
        return wr.Runset(
            entity=entity,
            project=project,
            name=name,
            filters=study_filters(run_betas, group),
            groupby=[f"config.{key}" for key in GROUP_BY],
            order=[wr.OrderBy(wr.Config(BETA), ascending=True)],
        )

    blocks: list[Any] = [
        wr.P(
            "The β study's runs, grouped by dataset and β: what β costs (FID, SSIM, PSNR, KL) and what it buys "
            "(the disentanglement metrics). Built by `python -m betavae dashboard`."
        )
    ]
    for title, panels in sections():
        blocks.append(wr.H2(title))
        by_beta = title == "Images by β"  # one run set (a column) per β
        runsets = [runset(f"β = {b:g}", [b]) for b in betas] if by_beta else [runset("β study", betas)]
        blocks.append(wr.PanelGrid(runsets=runsets, panels=panels))
    title = f"β comparison: {project}" + (f" ({group})" if group else "")
    return wr.Report(entity=entity, project=project, title=title, width="fluid", blocks=blocks)


def _name(metric: Any) -> tuple[str, str]:
    """``(kind, key)`` of a panel axis: ``config``, ``summary`` or ``history`` (a plain key)."""
    kind = {"Config": "config", "SummaryMetric": "summary"}.get(type(metric).__name__, "history")
    return kind, str(getattr(metric, "name", metric))


def panel_keys(panel: Any) -> dict[str, list[str]]:
    """The keys a panel reads, by kind: ``config``, ``summary`` (end-of-run values), ``history`` (logged over
    steps) and ``media`` (images)."""
    keys: dict[str, list[str]] = {"config": [], "summary": [], "history": [], "media": []}
    y = getattr(panel, "y", None)
    axes = [getattr(panel, "x", None), *(y if isinstance(y, list) else [y])]
    for axis in axes:
        if axis is not None:
            kind, key = _name(axis)
            keys[kind].append(key)
    keys["media"] = list(getattr(panel, "media_keys", None) or [])
    return {kind: values for kind, values in keys.items() if values}


def _filters(filters: Any) -> list[str]:
    """A run set's filters as text (the library keeps a list of expressions as one expression string)."""
    return [filters] if isinstance(filters, str) else [str(f) for f in filters]


def describe(workspace: Any, report: Any, command: str) -> dict[str, Any]:
    """The JSON specification of a workspace and a report, read from the objects themselves."""
    settings = workspace.runset_settings
    panels = [
        {"section": section.name, "type": type(p).__name__, "title": p.title, "keys": panel_keys(p)}
        for section in workspace.sections
        for p in section.panels
    ]
    grids = [b for b in report.blocks if type(b).__name__ == "PanelGrid"]
    return {
        "entity": workspace.entity,
        "project": workspace.project,
        "command": command,
        "workspace": {
            "name": workspace.name,
            "filters": _filters(settings.filters),
            "groupby": [_name(g)[1] for g in settings.groupby],
            "order": [_name(o.item)[1] for o in settings.order],
            "sections": [s.name for s in workspace.sections],
            "panels": panels,
        },
        "report": {
            "title": report.title,
            "panel_grids": [
                {
                    "runsets": [{"name": r.name, "filters": _filters(r.filters)} for r in grid.runsets],
                    "panels": [p.title for p in grid.panels],
                }
                for grid in grids
            ],
        },
    }


def offline_reason() -> str | None:
    """Why nothing can be saved to W&B now (``WANDB_MODE`` offline or disabled, or no API key), or ``None``."""
    mode = os.environ.get("WANDB_MODE", "").strip().lower()
    if mode in ("offline", "disabled", "dryrun"):
        return f"WANDB_MODE={mode}"
    import wandb

    try:
        wandb.Api()  # raises UsageError when no API key is configured
    except wandb.errors.UsageError as err:
        return f"no W&B API key ({err})"
    return None


def dashboard(
    entity: str,
    project: str = "betavae",
    group: str | None = None,
    betas: list[float] | None = None,
    spec_path: str = "wandb_dashboard.json",
) -> dict[str, Any]:
    """Build the β-comparison workspace (a saved view) and report; save them when W&B is online.

    Args:
        entity: The W&B entity (user or team) that owns the project.
        project: The W&B project the runs were logged to.
        group: Only the runs of this W&B group (by default a run's group is its dataset).
        betas: The β values whose runs to show (their tags ``beta<β>``); default: both study scripts' β.
        spec_path: Where the JSON specification is written (always; the only output when offline).

    Returns:
        The specification, with ``urls`` when saved.
    """
    betas = list(betas or STUDY_BETAS)
    args = ["python", "-m", "betavae", "dashboard", "--entity", entity, "--project", project]
    args += ["--group", group] if group else []
    args += ["--betas", json.dumps([float(b) for b in betas], separators=(",", ":"))]
    command = shlex.join(args)
    workspace = build_workspace(entity, project, group, betas)
    report = build_report(entity, project, group, betas)
    spec = describe(workspace, report, command)
    reason = offline_reason()
    if reason is None:
        workspace.save()
        report.save()
        spec["urls"] = {"workspace": workspace.url, "report": report.url}
    path = Path(spec_path).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(spec, indent=2, ensure_ascii=False) + "\n")
    if reason is None:
        print(f"Saved view: {spec['urls']['workspace']}\nReport: {spec['urls']['report']}\nSpecification: {path}")
    else:
        print(
            f"W&B is offline ({reason}): nothing was saved to W&B. The specification is in {path}.\n"
            "To push it later, on a machine with internet: upload the runs (wandb sync runs/*/wandb/offline-run-*), "
            f"log in (wandb login), then run\n  {command}"
        )
    return spec

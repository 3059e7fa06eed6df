"""Multi-process training under torchrun, on CPU with gloo: one model trained on the global
batch, metrics over all ranks and all images, one run directory written by rank 0 alone,
resumed exactly after a rank's SIGKILL and after a SIGTERM mid-epoch; and the per-rank
random streams these rest on."""

from __future__ import annotations

import json
import os
import re
import signal
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from conftest import (
    CPU,
    assert_same_run,
    read_csv,
    run_cli,
    run_torchrun,
    start_torchrun,
    torchrun_train,
    torchrun_worker,
    train_run,
    wait_for,
    wait_for_state,
)
from torch import nn

from rcnnexp.engine.runtime import augmentation_generator, epoch_generator, rank_seed

# nothing random after initialisation: no dropout, no augmentation (RCNN has no BatchNorm)
DETERMINISTIC = ("model.K=8", "model.T=1", "model.dropout=0", "trainer.epochs=2",
                 "trainer.progress=false", CPU)
# a small RecNet, whose BatchNorms (per CRC step too) each rank runs on its own on CPU
RECNET = ("model=recnet", "model.e=1", "model.d=[2,2,2]", "model.S=[2,4,4]",
          "dataset.image_size=32", "trainer.epochs=1", "trainer.batch_size=64",
          "trainer.progress=false", CPU)
# dropout and augmentation, drawn per rank: what a resumed run must restore for each rank
RANDOM = ("model.K=8", "model.T=1", "trainer.epochs=3", "trainer.batch_size=32",
          "trainer.log_every=2", "trainer.progress=false", "dataset.padding=1",
          "dataset.flip=true", CPU)


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["model"]


@pytest.fixture(scope="module")
def one_and_two(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The deterministic run as one process of 64 images a step, and as two of 32; the
    second's directory named down to the microsecond, which each rank would resolve to
    another if each chose its own."""
    base = tmp_path_factory.mktemp("ddp")
    train_run(base / "one", *DETERMINISTIC, "trainer.batch_size=64")
    proc = run_torchrun(2, "train", *DETERMINISTIC, "trainer.batch_size=64",
                        f"hydra.run.dir={base}/two-${{now:%H%M%S%f}}")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    [two] = base.glob("two-*")
    return base / "one", two


def test_two_processes_of_32_images_train_as_one_process_of_64(one_and_two) -> None:
    one, two = one_and_two
    rows_one, rows_two = read_csv(one / "metrics.csv"), read_csv(two / "metrics.csv")
    assert len(rows_one) == len(rows_two) == 2
    for a, b in zip(rows_one, rows_two, strict=True):
        assert float(b["train_loss"]) == pytest.approx(float(a["train_loss"]), rel=1e-6)
        assert b["train_top1"] == a["train_top1"]  # every image counted, on both ranks
    w_one, w_two = weights(one), weights(two)
    assert w_one.keys() == w_two.keys()
    for key in w_one:
        torch.testing.assert_close(w_two[key], w_one[key], rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_evaluation_on_two_ranks_scores_every_image_as_one_rank_does(tmp_path: Path) -> None:
    """A RecNet: its BatchNorms' running statistics differ between the ranks of a CPU run,
    and each rank evaluates with rank 0's, those of the checkpoint."""
    run_dir = tmp_path / "recnet"
    results = torchrun_train(2, run_dir, *RECNET)
    checkpoint = f"checkpoint={run_dir / 'checkpoints' / 'last.pt'}"
    proc = run_cli("eval", checkpoint, f"output={tmp_path / 'alone.json'}")
    assert proc.returncode == 0, proc.stderr
    alone = json.loads((tmp_path / "alone.json").read_text())
    assert alone["examples"] == 359  # odd: the ranks' shards are 180 and 179 images
    assert results["last_test_top1"] == pytest.approx(alone["top1"], abs=1e-9)
    assert results["test_top5"] == pytest.approx(alone["top5"], abs=1e-9)
    last = read_csv(run_dir / "metrics.csv")[-1]
    assert float(last["test_loss"]) == pytest.approx(alone["loss"], rel=1e-6)
    # `rcnnexp eval` itself under torchrun: the same, written once by rank 0
    proc = run_torchrun(2, "eval", checkpoint, f"output={tmp_path / 'ranks.json'}")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("top-1") == 1, proc.stdout
    ranks = json.loads((tmp_path / "ranks.json").read_text())
    assert (ranks["top1"], ranks["top5"]) == (alone["top1"], alone["top5"])
    assert ranks["loss"] == pytest.approx(alone["loss"], rel=1e-6)  # float32 sums, other order


def test_two_ranks_write_one_run_directory_and_only_rank_0_writes(one_and_two) -> None:
    _, two = one_and_two
    log = (two / "train.log").read_text()
    assert log.count("run directory:") == 1 and log.count("epoch   2") == 1, log
    assert sorted(p.name for p in (two / ".hydra").iterdir()) == [
        "config.yaml", "hydra.yaml", "overrides.yaml"]
    assert not list(two.glob(".hydra.*"))  # no rank moved another's .hydra aside
    results = json.loads((two / "results.json").read_text())
    assert results["run_dir"] == str(two)
    # the banner and results.json say how the run ran: torchrun's processes, their backend
    assert "on cpu, 2 processes (gloo)" in log, log
    assert (results["processes"], results["backend"]) == (2, "gloo")


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The run with dropout and augmentation on two ranks, from start to end."""
    run_dir = tmp_path_factory.mktemp("ddp") / "whole"
    torchrun_train(2, run_dir, *RANDOM)
    return run_dir


def test_a_rank_killed_with_sigkill_ends_the_job_and_the_run_resumes_to_the_same_end(
        uninterrupted: Path, tmp_path: Path) -> None:
    killed = tmp_path / "killed"
    proc = start_torchrun(2, "train", *RANDOM, f"hydra.run.dir={killed}")
    wait_for(killed / "checkpoints" / "last.pt", proc)  # epoch 1 is saved
    os.kill(torchrun_worker(proc, 1), signal.SIGKILL)
    output = proc.communicate(timeout=120)[0]
    assert proc.returncode != 0, output  # torchrun ended rank 0 too, and the job failed
    assert not (killed / "results.json").exists(), output  # it was stopped mid-training
    torchrun_train(2, killed, *RANDOM, "trainer.resume=auto")
    assert_same_run(uninterrupted, killed)


@pytest.mark.slow  # 24 s; make test keeps the SIGKILL resume above
def test_a_run_killed_after_a_step_checkpoint_between_log_steps_resumes_to_the_same_end(
        uninterrupted: Path, tmp_path: Path) -> None:
    """A checkpoint every 5 steps, logs every 2: an odd step's checkpoint holds the window
    of sums since the last log, which each rank has only its share of until it is saved."""
    killed = tmp_path / "killed"
    proc = start_torchrun(2, "train", *RANDOM, "trainer.checkpoint_every_steps=5",
                          f"hydra.run.dir={killed}")
    wait_for_state(killed / "checkpoints" / "last.pt", proc,
                   lambda state: state["batch"] > 0 and state["epoch_sums"][5] > 0)
    os.kill(torchrun_worker(proc, 1), signal.SIGKILL)
    proc.communicate(timeout=120)
    torchrun_train(2, killed, *RANDOM, "trainer.checkpoint_every_steps=5",
                   "trainer.resume=auto")
    assert_same_run(uninterrupted, killed)


@pytest.mark.slow  # 26 s; make test keeps the SIGKILL resume above
def test_sigterm_stops_both_ranks_at_the_same_step_and_the_run_resumes_mid_epoch(
        uninterrupted: Path, tmp_path: Path) -> None:
    stopped = tmp_path / "stopped"
    # a checkpoint every 10 steps (which changes nothing else) tells when epoch 2 has begun:
    # a signal sent at epoch 1's end would stop the ranks there, together, but not mid-epoch
    proc = start_torchrun(2, "train", *RANDOM, "trainer.checkpoint_every_steps=10",
                          f"hydra.run.dir={stopped}")
    wait_for_state(stopped / "checkpoints" / "last.pt", proc,
                   lambda state: state["epoch"] == 1 and state["batch"] > 0)
    proc.send_signal(signal.SIGTERM)  # torchrun passes it to both ranks
    output = proc.communicate(timeout=120)[0]
    assert "interrupted by SIGTERM in epoch 2" in output, output
    # the command it prints starts both processes again
    assert "continue with: torchrun --nproc_per_node=2 --no-python rcnnexp train" in output
    state = torch.load(stopped / "checkpoints" / "last.pt", weights_only=True)["state"]
    assert state["epoch"] == 1 and state["batch"] > 0, output  # inside epoch 2
    torchrun_train(2, stopped, *RANDOM, "trainer.checkpoint_every_steps=10",
                   "trainer.resume=auto")
    assert_same_run(uninterrupted, stopped)


def test_a_global_batch_the_world_size_does_not_divide_is_refused(run_dir: Path) -> None:
    proc = run_torchrun(2, "train", *DETERMINISTIC, "trainer.batch_size=63",
                        f"hydra.run.dir={run_dir}")
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, proc.stderr  # rank 0 says it; rank 1 only exits as it does
    assert "trainer.batch_size=63" in errors[0] and "world size 2" in errors[0]
    # both ranks exit 2, but the first to do so makes torchrun stop the other (a race)
    assert re.search(r"exitcode\s+:\s+2\b", proc.stderr), proc.stderr
    assert not run_dir.exists()


def test_one_process_augments_from_the_shuffling_generator_as_before() -> None:
    shuffling = epoch_generator(3, 1, torch.device("cpu"))
    assert augmentation_generator(3, 1, 0, 1, shuffling) is shuffling
    assert rank_seed(3, 0) == 3


def test_each_rank_draws_its_own_augmentation_and_dropout_reproducibly() -> None:
    def draws(rank: int) -> torch.Tensor:
        shuffling = epoch_generator(3, 1, torch.device("cpu"))
        g = augmentation_generator(3, 1, rank, 2, shuffling)
        return torch.rand(8, generator=g)

    assert torch.equal(draws(1), draws(1))
    assert not torch.equal(draws(0), draws(1))
    assert len({rank_seed(3, r) for r in range(8)}) == 8


def test_torch_has_no_synchronised_batchnorm_on_cpu_which_is_why_gloo_runs_keep_batchnorm(
        ) -> None:
    """What rcnnexp.engine.distributed.wrap relies on: were this to pass one day, CPU runs
    could convert their BatchNorms too."""
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        with pytest.raises(ValueError, match="SyncBatchNorm expected input tensor to be on GPU"):
            nn.SyncBatchNorm(3).train()(torch.randn(4, 3, 2, 2))
    finally:
        dist.destroy_process_group()


@pytest.mark.gpu
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA devices")
def test_two_gpus_train_recnet_through_torchrun(tmp_path: Path) -> None:
    """NCCL, DDP and the SyncBatchNorm conversion (every BatchNorm, the CRC's per-step ones
    included) on real devices."""
    results = torchrun_train(2, tmp_path / "run", *RECNET, "trainer.device=cuda")
    assert results["device"].startswith("cuda") and results["train_loss"] > 0

"""The `fastnn train` command's edges: bad options get one argparse line and exit code 2, the
thread count is capped, --quiet still reports, the header counts what is trained on, the plots
say what they show, and Ctrl-C points to the checkpoint that resumes the run (exit code 130).
(The CI run of the command itself is in test_trainer.py.)"""
import io
import os
import shlex
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import fastnn
from fastnn import cli

OPTIONS = ("--model", "--epochs", "--batch-size", "--optimizer", "--lr", "--seed", "--data-dir",
           "--out", "--validation-split", "--train-subset", "--augment", "--resume", "--device",
           "--threads", "--quiet")


def _usage_error(capsys, argv):
    """Run `fastnn train argv`; it must exit with 2 after one `fastnn train: error:` line."""
    with pytest.raises(SystemExit) as info:
        cli.main(["train", *argv])
    err = capsys.readouterr().err
    assert info.value.code == 2, err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("fastnn train: error: ")]
    assert len(lines) == 1, err
    return lines[0][len("fastnn train: error: "):]


@pytest.mark.parametrize("argv,message", [
    (["--train-subset", "0"], "argument --train-subset: expected a positive int, got '0'"),
    (["--train-subset", "-5"], "argument --train-subset: expected a positive int, got '-5'"),
    (["--lr", "0"], "argument --lr: expected a positive number, got '0'"),
    (["--lr", "-0.1"], "argument --lr: expected a positive number, got '-0.1'"),
    (["--lr", "nan"], "argument --lr: expected a positive number, got 'nan'"),
    (["--validation-split", "1.5"], "argument --validation-split: expected a fraction in "
                                    "[0, 1), got '1.5'"),
    (["--validation-split", "-0.1"], "argument --validation-split: expected a fraction in "
                                     "[0, 1), got '-0.1'"),
    (["--epochs", "0"], "argument --epochs: expected a positive int, got '0'"),
    (["--seed", "-1"], "argument --seed: expected an int >= 0, got '-1'"),
    (["--threads", "0"], "argument --threads: expected a positive int, got '0'"),
    (["--resume", "missing.npz"], "argument --resume: no checkpoint file 'missing.npz'"),
])
def test_bad_options_are_one_argparse_line(capsys, argv, message):
    assert _usage_error(capsys, argv) == message


def test_bad_out_and_resume_files_are_one_argparse_line(capsys, tmp_path, mnist_root):
    a_file = tmp_path / "taken"
    a_file.write_text("")
    assert _usage_error(capsys, ["--out", str(a_file)]) == (
        f"argument --out: '{a_file}' is a file; expected a folder for the run's history, "
        "checkpoint, model and plots")
    # a checkpoint of another architecture
    mlp = fastnn.reference_models.get("mlp").compile("cross_entropy", "adam")
    ckpt = tmp_path / "mlp.npz"
    mlp.trainer.save_checkpoint(ckpt)
    message = _usage_error(capsys, ["--model", "simple-cnn", "--resume", str(ckpt),
                                    "--data-dir", str(mnist_root), "--out", str(tmp_path / "r"),
                                    "--quiet"])
    assert message.startswith(f"argument --resume: {ckpt} is not a checkpoint of this run's "
                              "--model simple-cnn --optimizer adam: load_state_dict: the names "
                              "differ"), message
    noise = tmp_path / "noise.npz"
    noise.write_bytes(os.urandom(64))
    assert "is not a fastnn file" in _usage_error(
        capsys, ["--resume", str(noise), "--data-dir", str(mnist_root), "--out",
                 str(tmp_path / "r"), "--quiet"])


def test_help_shows_a_default_for_every_option(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["train", "--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    for option in OPTIONS:
        assert option in text
    assert text.count("(default:") == len(OPTIONS), text


def test_threads_are_capped_at_the_cores(monkeypatch, capsys):
    class Stop(Exception):
        pass

    def no_data(*args, **kwargs):  # the threads are set by now: stop before training
        raise Stop
    monkeypatch.setattr(fastnn.datasets, "load_mnist", no_data)
    before = fastnn.get_num_threads()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    try:
        with pytest.raises(Stop):
            cli.train(cli.build_parser().parse_args(["train", "--threads", "1000"]))
        assert fastnn.get_num_threads() == cores
    finally:
        fastnn.set_num_threads(before)
    assert (f"fastnn train: warning: --threads 1000 is more than the {cores} cores here: "
            f"using {cores}") in capsys.readouterr().err


def test_quiet_still_reports_and_the_plots_say_what_they_show(tmp_path, mnist_root, figures):
    """--quiet prints the final line alone; curves computed on the test images say "test",
    a one-epoch run has whole-epoch ticks, the filter picture has a title."""
    args = cli.build_parser().parse_args(
        ["train", "--model", "simple-cnn", "--train-subset", "500", "--data-dir",
         str(mnist_root), "--out", str(tmp_path / "run"), "--quiet"])
    out = io.StringIO()
    result = cli.train(args, stream=out)
    lines = out.getvalue().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        f"test accuracy {100 * result['test_accuracy']:.2f}%"), lines
    curves, filters = figures
    for ax in curves.axes:
        assert [t.get_text() for t in ax.get_legend().get_texts()] == ["train", "test"]
        lo, hi = ax.get_xlim()
        assert [t for t in ax.get_xticks() if lo <= t <= hi] == [1.0]
    assert filters._suptitle.get_text() == "conv1 filters of simple-cnn after 1 epoch(s)"


def test_the_header_counts_the_images_trained_on(tmp_path, mnist_root, figures):
    args = cli.build_parser().parse_args(
        ["train", "--model", "mlp", "--train-subset", "1000", "--validation-split", "0.1",
         "--data-dir", str(mnist_root), "--out", str(tmp_path / "run")])
    out = io.StringIO()
    cli.train(args, stream=out)
    assert " training mlp on 900 MNIST images," in out.getvalue().splitlines()[0]
    labels = [t.get_text() for t in figures[0].axes[0].get_legend().get_texts()]
    assert labels == ["train", "validation"]


def test_ctrl_c_points_to_the_checkpoint_and_the_resume_command(tmp_path, mnist_root):
    out = tmp_path / "run"
    argv = ["train", "--model", "mlp", "--train-subset", "2000", "--epochs", "100000",
            "--data-dir", str(mnist_root), "--out", str(out), "--quiet"]
    proc = subprocess.Popen([sys.executable, "-m", "fastnn", *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (out / "checkpoint.npz").exists() and time.monotonic() < deadline \
                and proc.poll() is None:
            time.sleep(0.05)
        assert proc.poll() is None, proc.communicate()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    ckpt = str(out / "checkpoint.npz")
    assert f"fastnn train: interrupted; the last checkpoint is {ckpt} (" in err
    command = shlex.split(err.strip().splitlines()[-1])
    assert command[0] == "fastnn"
    resumed = cli.build_parser().parse_args(command[1:])
    assert resumed.resume == ckpt and resumed.epochs == 100000 and resumed.model == "mlp"
    assert fastnn.load(ckpt).predict(np.zeros((1, 1, 28, 28), np.float32)).shape == (1, 10)

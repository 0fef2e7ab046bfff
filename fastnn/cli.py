"""The `fastnn` command (also `python -m fastnn`).

    fastnn train                       # simple-cnn, one epoch, Adam lr 1e-3, batch 100
    fastnn train --model deep-cnn --epochs 20 --out runs/deep
    fastnn train --resume runs/deep/checkpoint.npz --epochs 25

`train` loads MNIST (fetching it if needed), trains with progress output, prints the test
accuracy, and writes into --out: history.json and history.csv, checkpoint.npz (the last epoch,
resumable with --resume), model.npz (for fastnn.load) and learning_curves.png / conv1_filters.png
when matplotlib is installed. Bad options get one line, `fastnn train: error: ...`, and exit
code 2; Ctrl-C names the last checkpoint and the command that resumes from it (exit code 130).
"""
import argparse
import json
import math
import os
import shlex
import sys
import time


OPTIMIZERS = ("sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam", "adamw")


class UsageError(Exception):
    """A bad option found once parsed (a checkpoint of another model, say): main reports it
    as argparse reports the others, `fastnn train: error: ...`, exit code 2."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C once training began; `last` is (checkpoint path, epochs in it), or None;
    `trained`: training had ended (the results were being written)."""

    def __init__(self, last, trained=False):
        super().__init__()
        self.last, self.trained = last, trained


def _number(kind, check, expected):
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or not check(value):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value
    return parse


positive_int = _number(int, lambda v: v >= 1, "a positive int")
seed_int = _number(int, lambda v: v >= 0, "an int >= 0")
learning_rate = _number(float, lambda v: v > 0 and math.isfinite(v), "a positive number")
fraction = _number(float, lambda v: 0 <= v < 1, "a fraction in [0, 1)")


def checkpoint_file(text):
    if not os.path.isfile(text):
        raise argparse.ArgumentTypeError(f"no checkpoint file {text!r}"
                                         + (" (a folder)" if os.path.isdir(text) else ""))
    return text


def out_folder(text):
    if os.path.exists(text) and not os.path.isdir(text):
        raise argparse.ArgumentTypeError(f"{text!r} is a file; expected a folder for the "
                                         "run's history, checkpoint, model and plots")
    return text


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Every option's help ends with its default; one whose help says it keeps its words."""

    def _get_help_string(self, action):
        if "(default:" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


def build_parser():
    from fastnn.reference_models import MODELS
    parser = argparse.ArgumentParser(prog="fastnn", description="fastnn: train networks on MNIST.")
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train a model on MNIST and report its test accuracy",
                       description="Train a model on MNIST, report its test accuracy and "
                                   "write the run's files into --out.",
                       formatter_class=_HelpFormatter)
    t.add_argument("--model", choices=sorted(MODELS), default="simple-cnn",
                   help="mlp: 784-100-100-10; simple-cnn: the course's SimpleConvNet; "
                        "deep-cnn: its DeepConvNet")
    t.add_argument("--epochs", type=positive_int, default=1,
                   help="epochs to train (with --resume: until this many in all)")
    t.add_argument("--batch-size", type=positive_int, default=100, help="minibatch size")
    t.add_argument("--optimizer", choices=OPTIMIZERS, default="adam", help="update rule")
    t.add_argument("--lr", type=learning_rate, default=1e-3, help="learning rate")
    t.add_argument("--seed", type=seed_int, default=0,
                   help="weights, shuffling, dropout and augmentation")
    t.add_argument("--data-dir", default=None,
                   help="folder holding mnist/ (default: $FASTNN_DATA, else ~/.cache/fastnn)")
    t.add_argument("--out", type=out_folder, default="fastnn-run",
                   help="folder for history, checkpoint, model and plots")
    t.add_argument("--validation-split", type=fraction, default=0.0,
                   help="validate on this held-out fraction of the training images instead "
                        "of on the test images after each epoch (0: on the test images)")
    t.add_argument("--train-subset", type=positive_int, default=None,
                   help="train on the first N training images only, for quick runs "
                        "(default: all 60,000)")
    t.add_argument("--augment", action="store_true",
                   help="random shifts (2 px) and rotations (10 deg) of the training images")
    t.add_argument("--resume", type=checkpoint_file, default=None,
                   help="a checkpoint.npz to continue from (default: none, a fresh run)")
    t.add_argument("--device", default="cpu", choices=("cpu", "cuda"),
                   help="cuda: the CUDA backend (needs a GPU and fastnn[cuda12] or [cuda13])")
    t.add_argument("--threads", type=positive_int, default=None,
                   help="threads of the compiled kernels, at most the cores here "
                        "(default: the number of cores)")
    t.add_argument("--quiet", action="store_true",
                   help="no progress output, only the final one-line result")
    parser.train_parser = t  # main reports UsageError through it
    return parser


def cores():
    """The cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def train(args, stream=None):
    """Run `fastnn train` with parsed arguments; returns a dict of the results."""
    import fastnn
    from fastnn import callbacks, optim, reference_models
    from fastnn.datasets import Compose, RandomRotation, RandomShift, load_mnist
    from fastnn.fit_inputs import split_validation
    out = stream or sys.stdout
    if args.device == "cuda":
        import fastnn.gpu
        try:
            fastnn.gpu.require()
        except (ImportError, RuntimeError) as exc:
            raise UsageError(f"--device cuda is not usable here: {exc}") from None
    if args.threads:
        threads = args.threads
        if threads > cores():
            threads = cores()
            print(f"fastnn train: warning: --threads {args.threads} is more than the "
                  f"{threads} cores here: using {threads} (more threads than cores only "
                  "wait for each other)", file=sys.stderr)
        fastnn.set_num_threads(threads)
    fastnn.seed(args.seed)
    (x_train, y_train), (x_test, y_test) = load_mnist(args.data_dir, verbose=not args.quiet)
    if args.train_subset:
        x_train, y_train = x_train[:args.train_subset], y_train[:args.train_subset]
    # the validation curve: the test images after each epoch (as the course plots train vs
    # test accuracy), or a held-out part of the training set
    validation = (x_test, y_test)
    if args.validation_split:
        try:
            x_train, y_train, validation = split_validation(x_train, y_train,
                                                            args.validation_split)
        except ValueError as exc:
            raise UsageError(f"argument --validation-split: {exc}") from None
    model = reference_models.get(args.model)
    opt = optim.get(args.optimizer, model, lr=args.lr)
    model.compile(loss="cross_entropy", optimizer=opt, seed=args.seed)
    model.to(args.device)
    if args.resume:
        try:
            model.trainer.load_checkpoint(args.resume)
        except (KeyError, ValueError) as exc:
            raise UsageError(f"argument --resume: {args.resume} is not a checkpoint of this "
                             f"run's --model {args.model} --optimizer {args.optimizer}: "
                             f"{exc.args[0] if exc.args else exc}") from None
        if model.trainer.epoch >= args.epochs:
            raise UsageError(f"argument --epochs: {args.resume} holds {model.trainer.epoch} "
                             f"epoch(s) already; give --epochs above that to train more")
    os.makedirs(args.out, exist_ok=True)
    ckpt = os.path.join(args.out, "checkpoint.npz")
    saver = callbacks.ModelCheckpoint(ckpt)
    cbs = [saver, callbacks.HistoryLogger(os.path.join(args.out, "history.json")),
           callbacks.HistoryLogger(os.path.join(args.out, "history.csv"))]
    verbose = 0 if args.quiet else 1
    if verbose:
        resumed = f", from epoch {model.trainer.epoch} of {args.resume}" if args.resume else ""
        out.write(f"fastnn {fastnn.__version__}: training {args.model} on {len(x_train):,} "
                  f"MNIST images, {args.optimizer} lr {args.lr:g}, batch {args.batch_size}, "
                  f"{args.epochs} epoch(s){resumed}, seed {args.seed}, "
                  f"{fastnn.get_num_threads()} threads\n")
    transform = Compose([RandomShift(2), RandomRotation(10)]) if args.augment else None
    start, trained = time.perf_counter(), False
    try:
        history = model.fit(x_train, y_train, epochs=args.epochs - model.trainer.epoch,
                            batch_size=args.batch_size, validation_data=validation,
                            callbacks=cbs, verbose=verbose, transform=transform, stream=out)
        trained = True
        return _results(args, model, history, time.perf_counter() - start, x_test, y_test, out)
    except KeyboardInterrupt:
        last = saver.last_saved or ((args.resume, model.trainer.epoch) if args.resume else None)
        raise Interrupted(last, trained) from None


def _results(args, model, history, train_time, x_test, y_test, out):
    """Evaluate on the test images; write model.npz, result.json and the plots; report."""
    result = model.evaluate(x_test, y_test)
    model.save(os.path.join(args.out, "model.npz"))
    epochs = model.trainer.epoch
    summary = {"model": args.model, "epochs": epochs, "test_loss": result["loss"],
               "test_accuracy": result["accuracy"], "train_seconds": train_time,
               "history": history.to_dict()}
    with open(os.path.join(args.out, "result.json"), "w") as f:
        json.dump(summary, f, indent=1)
    plots = []
    try:
        from fastnn import plots as plotting
        plots.append(plotting.learning_curves(
            history, os.path.join(args.out, "learning_curves.png"),
            title=f"{args.model} on MNIST", val_label="validation" if args.validation_split
            else "test"))
        if "W" in model[0].params and model[0].params["W"].ndim == 4:
            plots.append(plotting.conv_filters(
                model[0], os.path.join(args.out, "conv1_filters.png"),
                title=f"conv1 filters of {args.model} after {epochs} epoch(s)"))
    except ImportError:
        out.write("(no plots: pip install 'fastnn[plot]' for learning_curves.png)\n")
    out.write(f"test accuracy {100 * result['accuracy']:.2f}%  (test loss "
              f"{result['loss']:.4f}, {epochs} epoch(s), {train_time:.1f}s "
              f"training); files in {os.path.abspath(args.out)}\n")
    summary["plots"] = plots
    return summary


def resume_command(argv, checkpoint):
    """The command line that continues a run: its own options, --resume the checkpoint."""
    kept, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--resume":
            skip = True
        elif not arg.startswith("--resume="):
            kept.append(arg)
    return shlex.join(["fastnn", *kept, "--resume", checkpoint])


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "train":
        from fastnn.datasets import MNISTError
        try:
            train(args)
        except UsageError as exc:
            parser.train_parser.error(str(exc))  # prints usage and the line, exits with 2
        except Interrupted as stop:
            if stop.trained:
                print(f"\nfastnn train: interrupted after training, while writing the results;"
                      f" the trained model is in {stop.last[0]} ({stop.last[1]} epoch(s))",
                      file=sys.stderr)
            elif stop.last is None:
                print("\nfastnn train: interrupted before the first epoch ended: no "
                      "checkpoint to resume from", file=sys.stderr)
            else:
                path, epoch = stop.last
                print(f"\nfastnn train: interrupted; the last checkpoint is {path} "
                      f"({epoch} epoch(s)). Continue with:\n  {resume_command(argv, path)}",
                      file=sys.stderr)
            return 130
        except KeyboardInterrupt:
            print("\nfastnn train: interrupted before training began", file=sys.stderr)
            return 130
        except MNISTError as exc:
            print(f"fastnn train: {exc}", file=sys.stderr)
            return 2
        except FloatingPointError as exc:
            print(f"fastnn train: training diverged: {exc}", file=sys.stderr)
            return 3
    return 0


__all__ = ["build_parser", "main", "resume_command", "train"]

"""The `fastnn` command (also `python -m fastnn`).

    fastnn train                       # simple-cnn, one epoch, Adam lr 1e-3, batch 100
    fastnn train --model deep-cnn --epochs 20 --out runs/deep
    fastnn train --resume runs/deep/checkpoint.npz --epochs 25

`train` loads MNIST (fetching it if needed), trains with progress output, prints the test
accuracy, and writes into --out: history.json and history.csv, checkpoint.npz (the last epoch,
resumable with --resume), model.npz (for fastnn.load) and learning_curves.png / conv1_filters.png
when matplotlib is installed.
"""
import argparse
import json
import os
import sys
import time


OPTIMIZERS = ("sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam", "adamw")


def build_parser():
    from fastnn.models import MODELS
    parser = argparse.ArgumentParser(prog="fastnn", description="fastnn: train networks on MNIST.")
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train a model on MNIST and report its test accuracy",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    t.add_argument("--model", choices=sorted(MODELS), default="simple-cnn")
    t.add_argument("--epochs", type=int, default=1)
    t.add_argument("--batch-size", type=int, default=100)
    t.add_argument("--optimizer", choices=OPTIMIZERS, default="adam")
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--data-dir", default=None,
                   help="folder holding mnist/ (default: $FASTNN_DATA or ~/.cache/fastnn)")
    t.add_argument("--out", default="fastnn-run", help="folder for history, checkpoint, plots")
    t.add_argument("--validation-split", type=float, default=0.0,
                   help="validate on this held-out fraction of the training images instead "
                        "of on the test images after each epoch")
    t.add_argument("--train-subset", type=int, default=None,
                   help="train on the first N training images only (quick runs, CI)")
    t.add_argument("--augment", action="store_true",
                   help="random shifts (2 px) and rotations (10 deg) of the training images")
    t.add_argument("--resume", default=None, help="a checkpoint.npz to continue from")
    t.add_argument("--device", default="cpu", choices=("cpu", "cuda"),
                   help="cuda: the CUDA backend (needs a GPU and fastnn[cuda12] or [cuda13])")
    t.add_argument("--threads", type=int, default=None, help="compiled-kernel threads")
    t.add_argument("--quiet", action="store_true", help="no progress output")
    return parser


def train(args, stream=None):
    """Run `fastnn train` with parsed arguments; returns a dict of the results."""
    import fastnn
    from fastnn import callbacks, models, optim
    from fastnn.datasets import Compose, RandomRotation, RandomShift, load_mnist
    out = stream or sys.stdout
    if args.device not in ("cpu", "cuda"):
        raise SystemExit(f"fastnn train: unknown --device {args.device!r}: expected cpu or cuda")
    if args.device == "cuda":
        import fastnn.cuda
        try:
            fastnn.cuda.require()
        except (ImportError, RuntimeError) as exc:
            raise SystemExit(f"fastnn train: --device cuda is not usable here: {exc}") from None
    for name in ("epochs", "batch_size"):
        if getattr(args, name) < 1:
            raise SystemExit(f"fastnn train: --{name.replace('_', '-')} must be >= 1")
    if args.threads:
        fastnn.set_num_threads(args.threads)
    fastnn.seed(args.seed)
    (x_train, y_train), (x_test, y_test) = load_mnist(args.data_dir, verbose=not args.quiet)
    if args.train_subset:
        x_train, y_train = x_train[:args.train_subset], y_train[:args.train_subset]
    model = models.get(args.model)
    opt = optim.get(args.optimizer, model, lr=args.lr)
    model.compile(loss="cross_entropy", optimizer=opt, seed=args.seed)
    model.to(args.device)
    os.makedirs(args.out, exist_ok=True)
    ckpt = os.path.join(args.out, "checkpoint.npz")
    cbs = [callbacks.ModelCheckpoint(ckpt), callbacks.HistoryLogger(os.path.join(args.out, "history.json")),
           callbacks.HistoryLogger(os.path.join(args.out, "history.csv"))]
    verbose = 0 if args.quiet else 1
    if verbose:
        out.write(f"fastnn {fastnn.__version__}: training {args.model} on {len(x_train)} MNIST "
                  f"images, {args.optimizer} lr {args.lr:g}, batch {args.batch_size}, "
                  f"{args.epochs} epoch(s), seed {args.seed}, {fastnn.get_num_threads()} threads\n")
    transform = Compose([RandomShift(2), RandomRotation(10)]) if args.augment else None
    start = time.perf_counter()
    # the validation curve: the test images after each epoch (as the course plots train vs
    # test accuracy), or a held-out part of the training set
    validation = None if args.validation_split else (x_test, y_test)
    history = model.fit(x_train, y_train, epochs=args.epochs, batch_size=args.batch_size,
                        validation_data=validation,
                        validation_split=args.validation_split or None, callbacks=cbs,
                        verbose=verbose, transform=transform, resume_from=args.resume,
                        stream=out)
    train_time = time.perf_counter() - start
    result = model.evaluate(x_test, y_test)
    model.save(os.path.join(args.out, "model.npz"))
    summary = {"model": args.model, "epochs": model.trainer.epoch, "test_loss": result["loss"],
               "test_accuracy": result["accuracy"], "train_seconds": train_time,
               "history": history.to_dict()}
    with open(os.path.join(args.out, "result.json"), "w") as f:
        json.dump(summary, f, indent=1)
    plots = []
    try:
        from fastnn import plots as plotting
        plots.append(plotting.learning_curves(history, os.path.join(args.out, "learning_curves.png"),
                                              title=f"{args.model} on MNIST"))
        plots.append(plotting.conv_filters(model[0], os.path.join(args.out, "conv1_filters.png"))
                     if "W" in model[0].params and model[0].params["W"].ndim == 4 else None)
    except ImportError:
        out.write("(no plots: pip install 'fastnn[plot]' for learning_curves.png)\n")
    if verbose:
        out.write(f"test accuracy {100 * result['accuracy']:.2f}%  (test loss "
                  f"{result['loss']:.4f}, {model.trainer.epoch} epoch(s), {train_time:.1f}s "
                  f"training); files in {os.path.abspath(args.out)}\n")
    summary["plots"] = [p for p in plots if p]
    return summary


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.command == "train":
        from fastnn.datasets import MNISTError
        try:
            train(args)
        except MNISTError as exc:
            print(f"fastnn train: {exc}", file=sys.stderr)
            return 2
        except FloatingPointError as exc:
            print(f"fastnn train: training diverged: {exc}", file=sys.stderr)
            return 3
    return 0


__all__ = ["build_parser", "main", "train"]

"""Where a GPU training step's time goes, per reference model and batch size (issue 16's
targets are whole epochs: bench/test_bench_cuda_epoch.py; this says what to make faster).

    python bench/profile_step.py --impl fastnn [--models deep-cnn,simple-cnn] [--batches 100,1000]
    python bench/profile_step.py --impl torch  (the same steps in PyTorch, for comparison)

fastnn: model.fit for two epochs of `images` random MNIST-shaped images held on the GPU, the
second epoch (the steady state: the first compiles, makes buffers, captures) measured three
times over, twice in each mode (every kernel launched from Python, cuda_graphs off; then
replayed as a CUDA graph):
  1. the wall time per step, unprofiled;
  2. fastnn.gpu.profile: each launch's host time and event span, by name (each GEMM by shape;
     a replayed step is one "graph replay": the whole step's span);
  3. CUPTI, through torch.profiler where PyTorch is installed: the GPU time per step of each
     kernel (Numba's and cuBLAS's), what the spans cannot separate from the host's dispatch.
torch: the same model and batch, eager and as one torch.cuda.CUDAGraph of the whole step
(forward, backward, Adam capturable), wall time per step; and the GPU time per eager step as
torch.profiler sums its kernels.
Each implementation runs in its own process (run the two one after the other).
--json FILE writes the figures too.
"""
import argparse
import json
import sys
import time

import numpy as np

from fastnn.callbacks import Callback as callbacks_base

MODELS = ("mlp", "simple-cnn", "deep-cnn")


def _data(batch, steps, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.random((batch * steps, 1, 28, 28), dtype=np.float32),
            rng.integers(0, 10, batch * steps))


class _SecondEpoch(callbacks_base):
    """Runs open() as fit's second epoch begins and close() when training ends: the steady
    state alone (the first epoch compiles, makes the loader's buffers and captures)."""

    def __init__(self, open_, close):
        self.open_, self.close = open_, close
        self.begun = 0  # epochs begun in this fit (the trainer numbers them from its first)

    def on_epoch_begin(self, epoch):
        self.begun += 1
        if self.begun == 2:
            self.open_()

    def on_train_end(self):
        self.close()


class _Clock:
    """The wall time from open() to close(), the GPU drained at both ends."""

    def __init__(self, cuda):
        self.cuda, self.seconds = cuda, None

    def open(self):
        self.cuda.synchronize()
        self.start = time.perf_counter()

    def close(self):
        self.cuda.synchronize()
        self.seconds = time.perf_counter() - self.start


class _Block:
    """A context manager (make()) entered at open() and left at close(); value: what it gave."""

    def __init__(self, make):
        self.make, self.value = make, None

    def open(self):
        self.cm = self.make()
        self.value = self.cm.__enter__()

    def close(self):
        self.cm.__exit__(None, None, None)


def profile_fastnn(name, batch, steps):
    import fastnn
    from fastnn import reference_models
    cuda = fastnn.gpu.require()
    fastnn.seed(0)
    model = reference_models.get(name)
    model.compile("cross_entropy", fastnn.optim.Adam(model, lr=1e-3), seed=0).to("cuda")
    x, y = (fastnn.gpu.to_device(a) for a in _data(batch, steps))  # as PyTorch's, on the GPU
    result = {}
    for mode, graphs in (("launched", False), ("graph", True)):
        model.trainer.cuda_graphs = graphs

        def fit(open_, close):  # two epochs, the second one between open_() and close()
            model.fit(x, y, epochs=2, batch_size=batch, verbose=0,
                      callbacks=[_SecondEpoch(open_, close)])
        clock = _Clock(cuda)
        fit(clock.open, clock.close)
        block = _Block(fastnn.gpu.profile)
        fit(block.open, block.close)
        prof = block.value
        replays = prof.count("graph replay")
        replay = next((row for row in prof.rows() if row["name"] == "graph replay"), None)
        total = prof.total()
        result[mode] = {
            "steps": steps, "wall_us_per_step": 1e6 * clock.seconds / steps,
            "profiled_wall_us_per_step": 1e6 * total["wall_s"] / steps,
            "host_us_per_step": 1e6 * total["host_s"] / steps,
            "span_us_per_step": None if total["span_s"] is None
            else 1e6 * total["span_s"] / steps,
            "calls_per_step": total["calls"] / steps, "replays": replays,
            "span_us_per_replay": (1e6 * replay["span_s"] / replay["calls"]
                                   if replay and replay["span_s"] is not None else None),
            "rows": prof.rows()}
        failed = "" if graphs == model.trainer.cuda_graphs else ", capture FAILED"
        print(f"\n== fastnn {name} batch {batch}, {mode}: {steps} steps of epoch 2, "
              f"{replays} graph replays{failed}; unprofiled wall "
              f"{result[mode]['wall_us_per_step']:.1f} us per step")
        print(prof.table(per=steps))
        result[mode]["kernels_us_per_step"] = _kernel_times(
            lambda profiler: fit(profiler.start, profiler.stop), steps)
    return result


def _kernel_times(run, steps):
    """{kernel: GPU us per step} as CUPTI records them (torch.profiler: it sees Numba's and
    cuBLAS's kernels too) over what run(profiler) does between the profiler's start() and
    stop(), the largest printed after their total; None without PyTorch or a profiler."""
    try:
        import torch
        from torch.profiler import ProfilerActivity, profile
    except ImportError:
        return None
    try:
        profiler = profile(activities=[ProfilerActivity.CUDA])
        run(profiler)
        kernels = _device_us(torch, profiler, steps)
    except Exception as exc:  # noqa: BLE001 - a profiler that cannot run loses one table
        print(f"torch.profiler: {type(exc).__name__}: {exc}", file=sys.stderr)
        return None
    print(f"-- GPU time per step by kernel (CUPTI): {sum(kernels.values()):.1f} us in all")
    for name, us in sorted(kernels.items(), key=lambda kv: -kv[1])[:25]:
        print(f"{us:10.1f}  {name[:110]}")
    return kernels


def _device_us(torch, prof, steps):
    """{name: device us per step} of the profile's events that ran on the GPU."""
    cuda_type = torch.autograd.DeviceType.CUDA
    return {e.key: e.self_device_time_total / steps for e in prof.key_averages()
            if getattr(e, "device_type", None) == cuda_type and e.self_device_time_total}


def profile_torch(name, batch, steps):
    import test_bench_epoch
    import torch
    test_bench_epoch.torch = torch  # its torch_model reads the module's torch (set by pytest)
    dev = torch.device("cuda")
    x, y = _data(batch, steps)
    xt, yt = torch.from_numpy(x).to(dev), torch.from_numpy(y).to(dev)
    lossf = torch.nn.CrossEntropyLoss()
    result = {}
    for mode in ("eager", "graph"):
        torch.manual_seed(0)
        net = test_bench_epoch.torch_model(name).to(dev).train()
        opt = torch.optim.Adam(net.parameters(), lr=1e-3, capturable=mode == "graph")
        sx, sy = xt[:batch].clone(), yt[:batch].clone()

        def step():
            opt.zero_grad(set_to_none=True)
            lossf(net(sx), sy).backward()
            opt.step()
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(3):
                step()
        torch.cuda.current_stream().wait_stream(side)
        run = step
        if mode == "graph":
            graph = torch.cuda.CUDAGraph()
            opt.zero_grad(set_to_none=True)
            with torch.cuda.graph(graph):
                lossf(net(sx), sy).backward()
                opt.step()
            run = graph.replay

        def steps_run():
            for i in range(steps):
                sx.copy_(xt[i * batch:(i + 1) * batch])
                sy.copy_(yt[i * batch:(i + 1) * batch])
                run()
            torch.cuda.synchronize()
        steps_run()
        start = time.perf_counter()
        steps_run()
        wall = time.perf_counter() - start
        result[mode] = {"steps": steps, "wall_us_per_step": 1e6 * wall / steps}
        print(f"\n== torch {name} batch {batch}, {mode}: {1e6 * wall / steps:.1f} us per step")
        if mode == "eager":
            def profiled(profiler):
                profiler.start()
                steps_run()
                profiler.stop()
            kernels = _kernel_times(profiled, steps)
            result[mode]["kernels_us_per_step"] = kernels
            if kernels is not None:
                result[mode]["gpu_us_per_step"] = sum(kernels.values())
    return result


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--impl", choices=("fastnn", "torch"), required=True)
    ap.add_argument("--models", default="simple-cnn,deep-cnn")
    ap.add_argument("--batches", default="100,1000")
    ap.add_argument("--images", type=int, default=10000,
                    help="images per profiled pass (steps = images // batch, at least 2)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    models = args.models.split(",")
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        ap.error(f"--models: expected some of {', '.join(MODELS)}, got {', '.join(unknown)}")
    try:
        batches = [int(b) for b in args.batches.split(",")]
    except ValueError:
        ap.error(f"--batches: expected comma-separated ints, got {args.batches!r}")
    run = profile_fastnn if args.impl == "fastnn" else profile_torch
    results = {f"{m} batch {b}": run(m, b, max(2, args.images // b))
               for m in models for b in batches}
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"impl": args.impl, "results": results}, f, indent=1)


if __name__ == "__main__":
    main()

"""Where a GPU training step's time goes, per reference model and batch size (issue 16's
targets are whole epochs: bench/test_bench_cuda_epoch.py; this says what to make faster).

    python bench/profile_step.py --impl fastnn [--models deep-cnn,simple-cnn] [--batches 100,1000]
    python bench/profile_step.py --impl torch  (the same steps in PyTorch, for comparison)

fastnn: `steps` steps of model.fit on random MNIST-shaped data, profiled with
fastnn.gpu.profile twice: every kernel launched from Python (cuda_graphs off: each kernel's
host and GPU time, each GEMM by shape), then replayed as a CUDA graph (one "graph replay" per
step: the step's whole GPU time, and what the host spends around it). Per-step figures; the
wall time is the block's, the GPU's queue drained at its end.
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

MODELS = ("mlp", "simple-cnn", "deep-cnn")


def _data(batch, steps, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.random((batch * steps, 1, 28, 28), dtype=np.float32),
            rng.integers(0, 10, batch * steps))


def profile_fastnn(name, batch, steps):
    import fastnn
    from fastnn import reference_models
    fastnn.seed(0)
    model = reference_models.get(name)
    model.compile("cross_entropy", fastnn.optim.Adam(model, lr=1e-3), seed=0).to("cuda")
    x, y = (fastnn.gpu.to_device(a) for a in _data(batch, steps))  # as PyTorch's, on the GPU
    result = {}
    for mode, graphs in (("launched", False), ("graph", True)):
        model.trainer.cuda_graphs = graphs
        model.fit(x, y, epochs=1, batch_size=batch, verbose=0)  # compile; capture a graph
        with fastnn.gpu.profile() as prof:
            model.fit(x, y, epochs=1, batch_size=batch, verbose=0)
        replays = prof.count("graph replay")
        replay = next((row for row in prof.rows() if row["name"] == "graph replay"), None)
        total = prof.total()
        result[mode] = {
            "steps": steps, "wall_us_per_step": 1e6 * total["wall_s"] / steps,
            "host_us_per_step": 1e6 * total["host_s"] / steps,
            "gpu_us_per_step": None if total["gpu_s"] is None else 1e6 * total["gpu_s"] / steps,
            "calls_per_step": total["calls"] / steps, "replays": replays,
            "gpu_us_per_replay": (1e6 * replay["gpu_s"] / replay["calls"]
                                  if replay and replay["gpu_s"] is not None else None),
            "rows": prof.rows()}
        print(f"\n== fastnn {name} batch {batch}, {mode} ({steps} steps; {replays} graph "
              f"replays{'' if graphs == model.trainer.cuda_graphs else ', capture FAILED'})")
        print(prof.table(per=steps))
    return result


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
            opt.zero_grad(set_to_none=mode == "graph")
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
        if mode == "eager":
            result[mode]["gpu_us_per_step"] = _torch_gpu_us(steps_run, steps)
        print(f"== torch {name} batch {batch}, {mode}: {result[mode]}")
    return result


def _torch_gpu_us(steps_run, steps):
    """The GPU time of the steps' kernels as torch.profiler sums them (None if it cannot)."""
    try:
        from torch.profiler import ProfilerActivity, profile
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            steps_run()
        total = sum(getattr(e, "self_device_time_total", 0) for e in prof.key_averages())
        return total / steps
    except Exception as exc:  # noqa: BLE001 - a profiler that cannot run loses one figure
        print(f"torch.profiler: {type(exc).__name__}: {exc}", file=sys.stderr)
        return None


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--impl", choices=("fastnn", "torch"), required=True)
    ap.add_argument("--models", default="simple-cnn,deep-cnn")
    ap.add_argument("--batches", default="100,1000")
    ap.add_argument("--images", type=int, default=5000,
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

"""Training progress: a live bar on a terminal, one clean line per epoch otherwise.

    Epoch 1/3 [=============>................] 27900/60000  loss 0.2134  accuracy 0.9391  4210 samples/s  ETA 7s
verbose=0 prints nothing; verbose=1 draws the bar (on a terminal) and the epoch summary;
verbose=2 prints only the epoch summaries.
"""
import sys
import time


def format_logs(logs):
    parts = []
    for k, v in logs.items():
        if k in ("time", "lr"):
            continue
        parts.append(f"{k} {v:.4f}")
    return "  ".join(parts)


class Progress:
    def __init__(self, epoch, epochs, total, verbose=1, stream=None):
        self.epoch, self.epochs, self.total = epoch, epochs, total
        self.verbose = verbose
        self.stream = stream or sys.stdout
        self.live = verbose == 1 and getattr(self.stream, "isatty", lambda: False)()
        self.start = time.perf_counter()
        self._last_draw = 0.0

    def update(self, seen, logs):
        if not self.live:
            return
        now = time.perf_counter()
        if now - self._last_draw < 0.1 and seen < self.total:
            return  # redraw at most ten times a second
        self._last_draw = now
        elapsed = now - self.start
        rate = seen / max(elapsed, 1e-9)
        eta = (self.total - seen) / max(rate, 1e-9)
        width = 30
        done = int(width * seen / max(self.total, 1))
        bar = "=" * done + (">" if done < width else "") + "." * max(width - done - 1, 0)
        self.stream.write(f"\rEpoch {self.epoch}/{self.epochs} [{bar}] {seen}/{self.total}  "
                          f"{format_logs(logs)}  {rate:.0f} samples/s  ETA {eta:.0f}s ")
        self.stream.flush()

    def finish(self, logs):
        if self.verbose == 0:
            return
        elapsed = logs.get("time", time.perf_counter() - self.start)  # training, not validation
        rate = self.total / max(elapsed, 1e-9)
        prefix = "\r" if self.live else ""
        self.stream.write(f"{prefix}Epoch {self.epoch}/{self.epochs}  {format_logs(logs)}  "
                          f"lr {logs.get('lr', 0):.3g}  {elapsed:.1f}s  {rate:.0f} samples/s"
                          + " " * 10 + "\n")
        self.stream.flush()

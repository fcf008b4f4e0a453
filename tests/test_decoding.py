"""Safe decoding: every kind of odd file either converts correctly or fails with a clear reason (real files)."""

import io
import pickle
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from pros_hf.data.decoding import (
    IMAGE_EXTENSIONS,
    UnreadableImageError,
    decode_to_array,
    list_image_files,
    open_image_rgb,
    resize_center_crop,
)


def _noise(h=64, w=64, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _reason(source, **kwargs):
    with pytest.raises(UnreadableImageError) as info:
        open_image_rgb(source, **kwargs)
    return info.value


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _bomb_png(path, side=20000):
    """A real, valid 1-bit PNG of side x side pixels of one colour: about 50 kB on disk, 400 megapixels decoded."""
    row = b"\x00" + b"\x00" * ((side + 7) // 8)  # filter byte + packed bits
    comp = zlib.compressobj(9)
    body = b"".join(comp.compress(row) for _ in range(side)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    data = b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", body) + _png_chunk(b"IEND", b"")
    path.write_bytes(data)
    return path


# ---------------------------------------------------------------------------------------------- failures --------


def test_empty_file(tmp_path):
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    err = _reason(str(path))
    assert err.reason == "empty file" and str(path) in str(err)
    assert _reason(b"").reason == "empty file"


def test_truncated_jpeg(tmp_path):
    buf = io.BytesIO()
    Image.fromarray(_noise()).save(buf, "JPEG", quality=95)
    data = buf.getvalue()
    path = tmp_path / "cut.jpg"
    path.write_bytes(data[: len(data) // 2])
    err = _reason(path)
    assert err.reason == "truncated"
    assert err.source == str(path)


def test_text_file_with_image_extension(tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("this is not a picture\n" * 10)
    assert _reason(path).reason == "not an image"


def test_missing_file(tmp_path):
    assert _reason(tmp_path / "nope.png").reason == "missing file"


def test_decompression_bomb_declared_size(tmp_path):
    path = _bomb_png(tmp_path / "bomb.png")
    assert path.stat().st_size < 200_000  # tiny on disk
    limit_before = Image.MAX_IMAGE_PIXELS
    assert _reason(path).reason == "decompression bomb"
    # Pillow's own hard limit still protects when our limit is switched off
    assert _reason(path, max_pixels=None).reason == "decompression bomb"
    assert Image.MAX_IMAGE_PIXELS == limit_before  # no process-wide setting was changed


def test_decompression_bomb_small_max_pixels(tmp_path):
    path = tmp_path / "modest.png"
    Image.fromarray(_noise(64, 64)).save(path)
    err = _reason(path, max_pixels=1000)
    assert err.reason == "decompression bomb" and "4096" in str(err)
    assert open_image_rgb(path, max_pixels=64 * 64).size == (64, 64)  # the limit is inclusive
    with pytest.raises(ValueError, match="max_pixels"):
        open_image_rgb(path, max_pixels=0)


def test_error_pickles_for_worker_processes():
    err = pickle.loads(pickle.dumps(UnreadableImageError("truncated", "/data/a.jpg", "OSError")))
    assert (err.reason, err.source, err.detail) == ("truncated", "/data/a.jpg", "OSError")
    assert isinstance(err, ValueError)


def test_unsupported_source_type():
    assert _reason(12345).reason == "unsupported source"


def test_folder_is_an_unreadable_file_not_a_corrupt_image(tmp_path):
    """A folder named like an image was reported as 'corrupt' (IsADirectoryError from open())."""
    folder = tmp_path / "looks_like.jpg"
    folder.mkdir()
    err = _reason(str(folder))
    assert err.reason == "unreadable file" and str(folder) in str(err)
    assert _reason({"bytes": None, "path": str(folder)}).reason == "unreadable file"


# ---------------------------------------------------------------------------------------------- conversions -----


def test_grayscale(tmp_path):
    arr = np.arange(64 * 64, dtype=np.uint32).reshape(64, 64) % 256
    path = tmp_path / "gray.png"
    Image.fromarray(arr.astype(np.uint8), "L").save(path)
    out = np.asarray(open_image_rgb(path))
    assert out.shape == (64, 64, 3)
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], arr)


def test_rgba_is_composited_not_dropped(tmp_path):
    arr = np.zeros((4, 4, 4), dtype=np.uint8)
    arr[0, 0] = (255, 0, 0, 0)  # fully transparent red: must become the background, not red
    arr[0, 1] = (0, 0, 0, 128)  # half transparent black over white: mid grey
    arr[0, 2] = (0, 200, 0, 255)  # opaque green: kept
    path = tmp_path / "rgba.png"
    Image.fromarray(arr, "RGBA").save(path)
    out = np.asarray(open_image_rgb(path)).astype(int)
    assert tuple(out[0, 0]) == (255, 255, 255)
    assert np.all(np.abs(out[0, 1] - 127) <= 1)
    assert tuple(out[0, 2]) == (0, 200, 0)
    out_black = np.asarray(open_image_rgb(path, background=(0, 0, 0)))
    assert tuple(out_black[0, 0]) == (0, 0, 0)


def test_la_mode(tmp_path):
    img = Image.new("LA", (4, 4), (0, 0))  # black, fully transparent
    path = tmp_path / "la.png"
    img.save(path)
    assert tuple(np.asarray(open_image_rgb(path))[0, 0]) == (255, 255, 255)


def test_palette_with_transparency(tmp_path):
    img = Image.new("P", (4, 4), 0)
    img.putpalette([255, 0, 0, 0, 0, 255] + [0] * (256 * 3 - 6))  # index 0 red, index 1 blue
    img.putpixel((1, 1), 1)
    path = tmp_path / "pal.png"
    img.save(path, transparency=0)
    assert Image.open(path).mode == "P"
    out = np.asarray(open_image_rgb(path))
    assert tuple(out[0, 0]) == (255, 255, 255)  # transparent red -> background
    assert tuple(out[1, 1]) == (0, 0, 255)


def test_palette_without_transparency(tmp_path):
    img = Image.new("P", (4, 4), 0)
    img.putpalette([10, 20, 30] + [0] * 765)
    path = tmp_path / "pal.gif"
    img.save(path)
    assert tuple(np.asarray(open_image_rgb(path))[2, 2]) == (10, 20, 30)


def test_cmyk_jpeg(tmp_path):
    path = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (32, 32), (0, 255, 255, 0)).save(path, quality=100)  # pure red in CMYK
    assert Image.open(path).mode == "CMYK"
    out = np.asarray(open_image_rgb(path)).astype(int)
    assert out.shape == (32, 32, 3)
    assert np.all(np.abs(out[16, 16] - np.array([255, 0, 0])) <= 6)


def test_sixteen_bit_png_is_scaled_not_clipped(tmp_path):
    arr = np.array([[0, 65535], [32768, 257 * 100]], dtype=np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(arr).save(path)
    assert Image.open(path).mode in ("I;16", "I")
    out = np.asarray(open_image_rgb(path))
    assert out[0, 1].tolist() == [255, 255, 255]
    assert out[1, 0].tolist() == [128, 128, 128]  # 32768 / 257 = 127.5 -> 128 (clipping would give 255)
    assert out[1, 1].tolist() == [100, 100, 100]
    assert out[0, 0].tolist() == [0, 0, 0]


@pytest.mark.parametrize("background", [(255, 255, 255), (0, 0, 255)])
def test_colour_key_transparency_of_rgb_and_sixteen_bit_png(tmp_path, background):
    """A PNG tRNS colour key makes one colour transparent: RGB and 16-bit grey images kept it (black, not white)."""
    rgb = Image.new("RGB", (4, 4), (0, 0, 0))
    rgb.putpixel((1, 1), (10, 20, 30))
    rgb.save(tmp_path / "rgb.png", transparency=(0, 0, 0))
    assert Image.open(tmp_path / "rgb.png").mode == "RGB"
    out = np.asarray(open_image_rgb(tmp_path / "rgb.png", background=background))
    assert tuple(out[0, 0]) == background and tuple(out[1, 1]) == (10, 20, 30)

    Image.fromarray(np.array([[0, 65535, 32768]], np.uint16)).save(tmp_path / "deep.png", transparency=0)
    assert Image.open(tmp_path / "deep.png").mode in ("I;16", "I")
    out = np.asarray(open_image_rgb(tmp_path / "deep.png", background=background))
    assert out[0].tolist() == [list(background), [255, 255, 255], [128, 128, 128]]  # only the key value, 0

    bits = Image.new("1", (2, 1), 0)
    bits.putpixel((1, 0), 1)
    bits.save(tmp_path / "bits.png", transparency=0)
    out = np.asarray(open_image_rgb(tmp_path / "bits.png", background=background))
    assert out[0].tolist() == [list(background), [255, 255, 255]]


def _exif_jpeg(path, orientation):
    arr = np.full((20, 40, 3), 128, dtype=np.uint8)  # stored landscape, 40 wide x 20 high
    arr[:5, :5] = (255, 0, 0)  # red marker in the stored top-left corner
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(arr).save(path, quality=95, exif=exif.tobytes())
    return path


def test_exif_orientation_6_rotates_clockwise(tmp_path):
    out = np.asarray(open_image_rgb(_exif_jpeg(tmp_path / "o6.jpg", 6)))
    assert out.shape == (40, 20, 3)  # now portrait
    assert out[1, 18, 0] > 200 and out[1, 18, 1] < 60  # marker moved to the top-right corner
    assert out[1, 1, 0] < 170  # and left the top-left one


def test_exif_orientation_8_rotates_counterclockwise(tmp_path):
    out = np.asarray(open_image_rgb(_exif_jpeg(tmp_path / "o8.jpg", 8)))
    assert out.shape == (40, 20, 3)
    assert out[38, 1, 0] > 200 and out[38, 1, 1] < 60  # marker in the bottom-left corner
    assert not (out[1, 1, 0] > 200 and out[1, 1, 1] < 60)
    raw = np.asarray(open_image_rgb(tmp_path / "o8.jpg", exif_transpose=False))
    assert raw.shape == (20, 40, 3)


@pytest.mark.parametrize("kind", ["path", "str", "bytes", "file", "pil", "dict_bytes", "dict_path"])
def test_source_kinds(tmp_path, kind):
    arr = np.zeros((8, 12, 3), dtype=np.uint8)
    arr[..., 1] = 200
    path = tmp_path / "g.png"
    Image.fromarray(arr).save(path)
    data = path.read_bytes()
    source = {
        "path": path,
        "str": str(path),
        "bytes": data,
        "file": io.BytesIO(data),
        "pil": Image.open(path),
        "dict_bytes": {"bytes": data, "path": None},
        "dict_path": {"bytes": None, "path": str(path)},
    }[kind]
    out = open_image_rgb(source)
    assert out.mode == "RGB" and out.size == (12, 8)
    assert np.asarray(out)[4, 4].tolist() == [0, 200, 0]


# ---------------------------------------------------------------------------------------------- resize / crop ----


def test_resize_center_crop_keeps_the_center():
    arr = np.zeros((20, 60, 3), dtype=np.uint8)
    arr[:, :20] = (255, 0, 0)
    arr[:, 20:40] = (0, 255, 0)
    arr[:, 40:] = (0, 0, 255)
    out = resize_center_crop(Image.fromarray(arr), 10)
    assert out.dtype == np.uint8 and out.shape == (3, 10, 10)
    assert np.all(out[1, :, 2:8] == 255) and np.all(out[0, :, 2:8] == 0)  # only the green middle third
    tall = resize_center_crop(Image.fromarray(arr.transpose(1, 0, 2).copy()), 10, return_tensor=True)
    assert tall.shape == (3, 10, 10) and tall.dtype.is_floating_point is False
    assert int(tall[1, 5, 5]) == 255


def test_small_image_is_upscaled_or_skipped(tmp_path):
    path = tmp_path / "tiny.png"
    Image.new("RGB", (8, 6), (10, 100, 200)).save(path)
    out = decode_to_array(path, 32)
    assert out.shape == (3, 32, 32)
    assert out[:, 16, 16].tolist() == [10, 100, 200]
    with pytest.raises(UnreadableImageError) as info:
        decode_to_array(path, 32, min_size=16)
    assert info.value.reason == "too small" and str(path) in str(info.value)


def test_large_jpeg_draft_still_gives_exact_size(tmp_path):
    path = tmp_path / "big.jpg"
    Image.new("RGB", (800, 600), (50, 150, 250)).save(path, quality=95)
    out = decode_to_array(path, 64)
    assert out.shape == (3, 64, 64)
    assert np.all(np.abs(out[:, 32, 32].astype(int) - [50, 150, 250]) <= 4)


def test_resize_bad_arguments_name_valid_options():
    img = Image.new("RGB", (8, 8))
    with pytest.raises(ValueError, match="bicubic"):
        resize_center_crop(img, 4, resample="nearest-ish")
    with pytest.raises(ValueError, match="size"):
        resize_center_crop(img, 0)
    with pytest.raises(ValueError, match="min_size must be a non-negative int"):
        resize_center_crop(img, 4, min_size=2.5)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"background": "white"}, r"background must be an \(R, G, B\) tuple of 3 ints in \[0, 255\], got 'white'"),
        ({"background": (255, 255)}, "background must be"),
        ({"background": (1.5, 2.5, 3.5)}, "background must be"),
        ({"background": (0, 0, 256)}, "background must be"),
        ({"max_pixels": "big"}, "max_pixels must be a positive int or None"),
        ({"max_pixels": 0}, "max_pixels must be a positive int or None"),
    ],
)
def test_bad_settings_are_a_value_error_not_an_unreadable_image(tmp_path, kwargs, message):
    """A wrong setting is the caller's mistake: not UnreadableImageError('corrupt'), which a loader skips per image."""
    path = tmp_path / "rgba.png"
    Image.new("RGBA", (8, 8), (255, 0, 0, 0)).save(path)  # transparent: the background is used
    with pytest.raises(ValueError, match=message) as info:
        open_image_rgb(path, **kwargs)
    assert not isinstance(info.value, UnreadableImageError)


def test_background_may_be_any_sequence_of_three_ints(tmp_path):
    path = tmp_path / "rgba.png"
    Image.new("RGBA", (2, 2), (255, 0, 0, 0)).save(path)
    for background in ([0, 128, 255], np.array([0, 128, 255]), (np.uint8(0), 128, 255)):
        assert tuple(np.asarray(open_image_rgb(path, background=background))[0, 0]) == (0, 128, 255)


# ---------------------------------------------------------------------------------------------- listing ---------


def test_list_image_files(tmp_path):
    (tmp_path / "sub" / "deeper").mkdir(parents=True)
    (tmp_path / ".hidden_dir").mkdir()
    for name in [
        "a.JPG",
        "b.png",
        "sub/c.WebP",
        "sub/deeper/d.tiff",
        "sub/e.pgm",
        "notes.txt",
        ".hidden.jpg",
        ".hidden_dir/f.jpg",
        "g.jpeg",
    ]:
        (tmp_path / name).write_bytes(b"x")
    found = [p[len(str(tmp_path)) + 1 :] for p in list_image_files(tmp_path)]
    assert found == sorted(["a.JPG", "b.png", "g.jpeg", "sub/c.WebP", "sub/deeper/d.tiff", "sub/e.pgm"])
    flat = [p[len(str(tmp_path)) + 1 :] for p in list_image_files(tmp_path, recursive=False)]
    assert flat == ["a.JPG", "b.png", "g.jpeg"]
    assert {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"} <= IMAGE_EXTENSIONS
    with pytest.raises(FileNotFoundError, match="nope"):
        list_image_files(tmp_path / "nope")

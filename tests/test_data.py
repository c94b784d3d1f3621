"""Tests of fairens_core.data: every loader reads tiny files written in the real on-disk format.

Real data is used only when $FAIRENS_DATA points at a folder holding it; those tests skip otherwise.
Adult and Abalone are also embedded in the package; their tests always run.
"""

from __future__ import annotations

import io
import lzma
import os
import pickle
import random
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from fairens_core.data import DATASETS, Dataset, DatasetNotFoundError, cache_dir, data_root, load_dataset
from fairens_core.data import files as data_files
from fairens_core.data import generated, images, tabular

REAL_DATA = os.environ.get("FAIRENS_DATA")  # read before the fixture below hides it
# The development machines' copy of the UCI files the package embeds (absent on a user's machine).
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(autouse=True)
def isolated_env(tmp_path, monkeypatch):
    """Every test gets its own cache and no implicit data root."""
    monkeypatch.setenv("FAIRENS_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("FAIRENS_DATA", raising=False)


def real_file(relative: str) -> Path:
    """A file under $FAIRENS_DATA, or skip the test."""
    if not REAL_DATA or not (Path(REAL_DATA) / relative).exists():
        pytest.skip(f"real data {relative} not available (set FAIRENS_DATA)")
    return Path(REAL_DATA)


def save_image(path: Path, pixels: np.ndarray, **kwargs) -> None:
    """Write uint8 (H, W, 3) pixels; the format follows the suffix (PNG keeps pixels exact)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, **kwargs)


def solid(h: int, w: int, rgb) -> np.ndarray:
    return np.broadcast_to(np.array(rgb, dtype=np.uint8), (h, w, 3)).copy()


def assert_split_shapes(ds: Dataset, n_train: int, n_test: int, shape: tuple, dtype: torch.dtype) -> None:
    assert ds.x_train.shape == (n_train, *shape) and ds.x_test.shape == (n_test, *shape)
    assert ds.x_train.dtype == dtype and ds.x_test.dtype == dtype
    assert ds.y_train.shape == (n_train,) and ds.y_test.shape == (n_test,)
    assert ds.input_shape == shape


# --------------------------------------------------------------------------------------------
# Registry, options, locations


def test_registry_holds_every_dataset():
    expected = {
        "mnist1d", "digits", "synthetic", "cifar10", "cifar100", "svhn", "imagefolder", "cifar10_jpeg",
        "tinyimagenet", "celeba", "adult", "abalone", "diabetes", "csv",
    }  # fmt: skip
    assert set(DATASETS) == expected


def test_unknown_name_lists_the_allowed_names():
    with pytest.raises(ValueError, match="name='cifar11'") as error:
        load_dataset("cifar11")
    assert "cifar10" in str(error.value) and "mnist1d" in str(error.value)


def test_unknown_option_is_rejected_before_any_work():
    with pytest.raises(ValueError, match="n_sample") as error:
        load_dataset("mnist1d", n_sample=100)
    assert "n_samples" in str(error.value)
    assert not cache_dir().exists()  # nothing was generated
    with pytest.raises(ValueError, match="allowed options are \\[\\]"):
        load_dataset("adult", seed=1)


@pytest.mark.parametrize(
    "name, options, parameter",
    [
        ("cifar100", {"label": "medium"}, "label"),
        ("cifar10", {"download": "yes"}, "download"),
        ("mnist1d", {"test_fraction": 1.5}, "test_fraction"),
        ("mnist1d", {"n_samples": 0}, "n_samples"),
        ("synthetic", {"imbalance": 0.5}, "imbalance"),
        ("synthetic", {"minority_fraction": 0.0}, "minority_fraction"),
        ("celeba", {"target": "Blonde_Hair"}, "target"),
        ("celeba", {"group": "Gender"}, "group"),
        ("imagefolder", {}, "path"),
        ("imagefolder", {"path": "x.zip", "image_size": -3}, "image_size"),
        ("csv", {"path": "x.csv"}, "target"),
        ("csv", {"path": "x.csv", "target": 0, "task": "ranking"}, "task"),
        ("digits", {"seed": -1}, "seed"),
    ],
)
def test_invalid_option_values_name_the_parameter(tmp_path, name, options, parameter):
    # root is empty: the options must be checked before the loader looks for files
    with pytest.raises(ValueError, match=parameter):
        load_dataset(name, tmp_path, **options)


@pytest.mark.parametrize(
    "name, options, expected",
    [
        ("cifar10", {}, "cifar-10-batches-py"),
        ("cifar100", {}, "cifar-100-python"),
        ("svhn", {}, "train_32x32.mat"),
        ("tinyimagenet", {}, "tiny-imagenet-200"),
        ("celeba", {}, "celeba"),
        ("adult", {}, "adult.data"),
        ("abalone", {}, "abalone.data"),
        ("cifar10_jpeg", {}, "cifar10-jpeg.zip"),
        ("imagefolder", {"path": "pets.zip"}, "pets.zip"),
        ("csv", {"path": "table.csv", "target": 0}, "table.csv"),
    ],
)
def test_missing_files_raise_dataset_not_found_naming_the_path(tmp_path, monkeypatch, name, options, expected):
    monkeypatch.setattr(data_files, "EMBEDDED_DIR", tmp_path / "no-embedded-data")  # adult, abalone: not shipped
    with pytest.raises(DatasetNotFoundError) as error:
        load_dataset(name, tmp_path, **options)
    assert isinstance(error.value, FileNotFoundError)
    assert str(tmp_path) in str(error.value) and expected in str(error.value)


def test_data_root_and_cache_dir_follow_arguments_and_environment(tmp_path, monkeypatch):
    assert data_root(tmp_path) == tmp_path
    assert data_root() == Path.home() / ".cache" / "fairens" / "data"
    monkeypatch.setenv("FAIRENS_DATA", str(tmp_path / "d"))
    assert data_root() == tmp_path / "d"
    assert data_root("~/x") == Path.home() / "x"
    assert cache_dir() == tmp_path / "cache" / "data"
    monkeypatch.delenv("FAIRENS_CACHE")
    assert cache_dir() == Path.home() / ".cache" / "fairens" / "data-cache"


def test_dataset_properties_and_checks():
    image = Dataset(
        "toy", "classification",
        torch.zeros(4, 3, 5, 6, dtype=torch.uint8), torch.tensor([0, 1, 1, 2]),
        torch.zeros(2, 3, 5, 6, dtype=torch.uint8), torch.tensor([0, 2]),
        ["a", "b", "c"],
        groups_train={"g": torch.tensor([0, 0, 1, 1])}, groups_test={"g": torch.tensor([0, 1])},
        group_names={"g": ["x", "y"]},
    )  # fmt: skip
    assert image.input_shape == (3, 5, 6) and image.num_classes == 3 and image.is_image
    text = image.describe()
    assert "4 train / 2 test" in text and "3x5x6" in text and "a, b, c" in text and "x 2, y 2" in text
    table = Dataset("t", "regression", torch.zeros(3, 2), torch.zeros(3), torch.zeros(1, 2), torch.zeros(1), [])
    assert table.num_classes == 1 and not table.is_image and table.input_shape == (2,)
    with pytest.raises(ValueError, match="task"):
        Dataset("t", "ranking", torch.zeros(3, 2), torch.zeros(3), torch.zeros(1, 2), torch.zeros(1), [])
    with pytest.raises(ValueError, match="y_train"):
        Dataset("t", "regression", torch.zeros(3, 2), torch.zeros(2), torch.zeros(1, 2), torch.zeros(1), [])


# --------------------------------------------------------------------------------------------
# Generated and bundled data


def test_mnist1d_shapes_determinism_and_cache(monkeypatch):
    numpy_state = np.random.get_state()[1].copy()
    python_state = random.getstate()
    first = load_dataset("mnist1d", n_samples=200, seed=3)
    assert_split_shapes(first, 160, 40, (1, 40), torch.float32)
    assert first.y_train.dtype == torch.int64 and first.classes == [str(d) for d in range(10)]
    assert set(first.y_train.tolist()) <= set(range(10))
    # the package seeds the global generators; the loader must restore them
    assert np.array_equal(np.random.get_state()[1], numpy_state) and random.getstate() == python_state

    assert len(list(cache_dir().glob("mnist1d-*.npz"))) == 1
    fresh = generated._generate_mnist1d(200, 3, 0.2)
    monkeypatch.setattr(generated, "_generate_mnist1d", lambda *args: pytest.fail("cache not used"))
    cached = load_dataset("mnist1d", n_samples=200, seed=3)
    for split in ("x_train", "y_train", "x_test", "y_test"):
        assert torch.equal(getattr(cached, split), torch.from_numpy(fresh[split]))
        assert torch.equal(getattr(cached, split), getattr(first, split))


def test_mnist1d_seed_changes_the_data():
    a = load_dataset("mnist1d", n_samples=100, seed=0, test_fraction=0.5)
    b = load_dataset("mnist1d", n_samples=100, seed=1, test_fraction=0.5)
    assert len(a.y_train) == len(a.y_test) == 50
    assert not torch.equal(a.x_train, b.x_train)


def test_digits():
    ds = load_dataset("digits")
    assert_split_shapes(ds, 1437, 360, (1, 8, 8), torch.float32)
    assert ds.x_train.min() == 0 and ds.x_train.max() == 1
    counts = torch.bincount(ds.y_test, minlength=10)
    assert counts.min() >= 35 and counts.max() <= 37  # stratified: about 36 of each digit
    assert torch.equal(load_dataset("digits").x_test, ds.x_test)
    assert not torch.equal(load_dataset("digits", seed=1).x_test, ds.x_test)


def test_diabetes():
    ds = load_dataset("diabetes")
    assert ds.task == "regression" and ds.classes == [] and ds.num_classes == 1
    assert_split_shapes(ds, 353, 89, (10,), torch.float32)
    assert ds.y_train.dtype == torch.float32
    assert abs(ds.y_train.mean()) < 1e-5 and abs(ds.y_train.std(correction=0) - 1) < 1e-5
    assert 140 < ds.target_mean < 165 and 70 < ds.target_std < 85
    assert torch.allclose(ds.x_train.mean(0), torch.zeros(10), atol=1e-5)


def test_synthetic_defaults():
    ds = load_dataset("synthetic")
    assert_split_shapes(ds, 4200, 1800, (20,), torch.float32)
    assert ds.classes == ["0", "1", "2", "3"] and ds.group_names == {"group": ["majority", "minority"]}
    for groups in (ds.groups_train["group"], ds.groups_test["group"]):
        assert abs(groups.float().mean().item() - 0.1) < 0.005
    assert torch.allclose(ds.x_train.mean(0), torch.zeros(20), atol=1e-4)
    assert torch.allclose(ds.x_train.std(0, correction=0), torch.ones(20), atol=1e-4)


def test_synthetic_is_deterministic_given_seed():
    a, b, c = (load_dataset("synthetic", n_samples=600, seed=s) for s in (5, 5, 6))
    for split in ("x_train", "y_train", "x_test", "y_test"):
        assert torch.equal(getattr(a, split), getattr(b, split))
    assert torch.equal(a.groups_test["group"], b.groups_test["group"])
    assert not torch.equal(a.x_train, c.x_train)


def test_synthetic_imbalance_and_group_share():
    ds = load_dataset("synthetic", n_samples=3000, n_classes=5, imbalance=8.0, minority_fraction=0.2)
    y = torch.cat([ds.y_train, ds.y_test])
    group = torch.cat([ds.groups_train["group"], ds.groups_test["group"]])
    counts = torch.bincount(y).float()
    assert len(y) == 3000 and abs(counts[0] / counts[-1] - 8.0) < 0.2
    assert (counts[:-1] > counts[1:]).all()  # geometric: largest first
    ratios = counts[1:] / counts[:-1]
    assert torch.allclose(ratios, ratios.mean().expand(4), atol=0.02)
    for k in range(5):  # the minority share is the same in every class
        assert abs(group[y == k].float().mean().item() - 0.2) < 0.01


def test_synthetic_minority_is_harder_and_the_control_is_not():
    """The group is not the target, but a model fit to mostly-majority data does worse on the minority."""
    from sklearn.linear_model import LogisticRegression

    def group_accuracies(ds):
        model = LogisticRegression(max_iter=500).fit(ds.x_train.numpy(), ds.y_train.numpy())
        correct = model.predict(ds.x_test.numpy()) == ds.y_test.numpy()
        group = ds.groups_test["group"].numpy()
        return correct[group == 0].mean(), correct[group == 1].mean()

    majority, minority = group_accuracies(load_dataset("synthetic"))
    assert 0.7 < majority < 0.95  # hard enough to leave room for ensembles
    assert minority < majority - 0.1
    assert not torch.equal(load_dataset("synthetic").groups_train["group"], load_dataset("synthetic").y_train)
    majority, minority = group_accuracies(load_dataset("synthetic", minority_shift=0.0))
    assert abs(majority - minority) < 0.05


# --------------------------------------------------------------------------------------------
# torchvision formats: CIFAR, SVHN


def cifar_rows(n: int, first: int) -> np.ndarray:
    """n CIFAR rows of 3072 bytes: image i has R, G, B planes filled with first + i, +100, +200."""
    rows = np.zeros((n, 3, 1024), dtype=np.uint8)
    for i in range(n):
        rows[i] = np.array([first + i, first + i + 100, first + i + 200], dtype=np.uint8)[:, None]
    return rows.reshape(n, 3072)


def write_pickle(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(obj, protocol=2))


def test_cifar10_reads_the_python_batches(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    for b in range(1, 6):
        batch = {b"batch_label": b"x", b"data": cifar_rows(2, 10 * b), b"labels": [b, 9 - b]}
        write_pickle(folder / f"data_batch_{b}", batch)
    write_pickle(folder / "test_batch", {b"data": cifar_rows(3, 0), b"labels": [7, 8, 9]})
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]
    write_pickle(folder / "batches.meta", {b"label_names": names, b"num_vis": 3072})

    ds = load_dataset("cifar10", tmp_path)
    assert_split_shapes(ds, 10, 3, (3, 32, 32), torch.uint8)
    assert ds.is_image and ds.classes[0] == "airplane" and ds.classes[9] == "truck"
    assert ds.y_train.tolist() == [1, 8, 2, 7, 3, 6, 4, 5, 5, 4] and ds.y_test.tolist() == [7, 8, 9]
    assert ds.y_train.dtype == torch.int64
    assert ds.x_train[2, :, 5, 7].tolist() == [20, 120, 220]  # batch 2, image 0: channels in R, G, B order
    assert ds.x_test[1, :, 31, 0].tolist() == [1, 101, 201]
    assert ds.mean == images.CIFAR10_MEAN and ds.std == images.CIFAR10_STD


def test_cifar10_incomplete_folder_names_the_missing_file(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    write_pickle(folder / "data_batch_1", {b"data": cifar_rows(1, 0), b"labels": [0]})
    with pytest.raises(DatasetNotFoundError, match="data_batch_2"):
        load_dataset("cifar10", tmp_path)


@pytest.mark.parametrize("label, y_train, classes", [("fine", [4, 99], 100), ("coarse", [1, 19], 20)])
def test_cifar100_fine_and_coarse(tmp_path, label, y_train, classes):
    folder = tmp_path / "cifar-100-python"
    train = {b"data": cifar_rows(2, 0), b"fine_labels": [4, 99], b"coarse_labels": [1, 19]}
    write_pickle(folder / "train", train)
    write_pickle(folder / "test", {b"data": cifar_rows(1, 50), b"fine_labels": [0], b"coarse_labels": [0]})
    meta = {
        b"fine_label_names": [f"fine{i}".encode() for i in range(100)],
        b"coarse_label_names": [f"coarse{i}".encode() for i in range(20)],
    }
    write_pickle(folder / "meta", meta)

    ds = load_dataset("cifar100", tmp_path, label=label)
    assert_split_shapes(ds, 2, 1, (3, 32, 32), torch.uint8)
    assert ds.y_train.tolist() == y_train and ds.num_classes == classes
    assert ds.classes[-1] == f"{label}{classes - 1}"
    assert ds.x_test[0, :, 0, 0].tolist() == [50, 150, 250]
    assert ds.mean == images.CIFAR100_MEAN


def test_svhn_reads_mat_files_and_maps_label_10_to_0(tmp_path):
    from scipy.io import savemat

    rng = np.random.default_rng(0)
    train = rng.integers(0, 256, size=(32, 32, 3, 4), dtype=np.uint8)  # (H, W, C, N) as in the files
    test = rng.integers(0, 256, size=(32, 32, 3, 2), dtype=np.uint8)
    savemat(tmp_path / "train_32x32.mat", {"X": train, "y": np.array([[1], [10], [5], [10]], dtype=np.uint8)})
    savemat(tmp_path / "test_32x32.mat", {"X": test, "y": np.array([[10], [9]], dtype=np.uint8)})

    ds = load_dataset("svhn", tmp_path)
    assert_split_shapes(ds, 4, 2, (3, 32, 32), torch.uint8)
    assert ds.y_train.tolist() == [1, 0, 5, 0] and ds.y_test.tolist() == [0, 9]
    assert ds.classes == [str(d) for d in range(10)]
    assert ds.x_train[2, 1, 3, 7] == train[3, 7, 1, 2]  # x[n, c, h, w] = X[h, w, c, n]
    assert torch.equal(ds.x_test[1], torch.from_numpy(test[..., 1]).permute(2, 0, 1))


def test_svhn_in_a_subfolder(tmp_path):
    from scipy.io import savemat

    x = np.zeros((32, 32, 3, 1), dtype=np.uint8)
    for split in ("train", "test"):
        (tmp_path / "svhn").mkdir(exist_ok=True)
        savemat(tmp_path / "svhn" / f"{split}_32x32.mat", {"X": x, "y": np.array([[3]], dtype=np.uint8)})
    assert load_dataset("svhn", tmp_path).y_test.tolist() == [3]


# --------------------------------------------------------------------------------------------
# Folders of images


def pixel(split: str, cls: int, i: int) -> tuple[int, int, int]:
    """A distinct colour per image, to check that every image lands in the right place."""
    return (10 * cls + i, 100 + 10 * (split == "test") + i, 200 + cls)


def write_image_tree(base: Path, classes=("cat", "ant", "bee"), per_class=2, size=(4, 6)) -> None:
    """train/<class>/<i>.png and test/<class>/<i>.png, solid colours given by pixel()."""
    for split in ("train", "test"):
        for cls, name in enumerate(sorted(classes)):
            for i in range(per_class):
                save_image(base / split / name / f"{i}.png", solid(*size, pixel(split, cls, i)))


def zip_tree(folder: Path, path: Path, wrapper: str = "") -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for file in sorted(folder.rglob("*")):
            archive.write(file, wrapper + file.relative_to(folder).as_posix())
    return path


def check_image_tree(ds: Dataset) -> None:
    assert_split_shapes(ds, 6, 6, (3, 4, 6), torch.uint8)
    assert ds.classes == ["ant", "bee", "cat"]
    assert ds.y_train.tolist() == [0, 0, 1, 1, 2, 2] and ds.y_test.tolist() == [0, 0, 1, 1, 2, 2]
    for split in ("train", "test"):
        x = getattr(ds, f"x_{split}")
        for n, (cls, i) in enumerate([(c, i) for c in range(3) for i in range(2)]):
            expected = torch.tensor(pixel(split, cls, i), dtype=torch.uint8)[:, None, None].expand(3, 4, 6)
            assert torch.equal(x[n], expected)
    mean = ds.x_train.double().div(255).mean(dim=(0, 2, 3))  # mean / std are the train statistics
    std = ds.x_train.double().div(255).std(dim=(0, 2, 3), correction=0)
    assert ds.mean == pytest.approx(tuple(mean.tolist()), abs=1e-4)
    assert ds.std == pytest.approx(tuple(std.tolist()), abs=1e-4)


def test_imagefolder_directory(tmp_path):
    write_image_tree(tmp_path / "pets")
    (tmp_path / "pets" / "train" / "ant" / "notes.txt").write_text("not an image")
    check_image_tree(load_dataset("imagefolder", tmp_path, path="pets"))  # relative to root


@pytest.mark.parametrize("wrapper", ["", "pets/"])
def test_imagefolder_zip_read_in_place(tmp_path, wrapper):
    write_image_tree(tmp_path / "pets")
    archive = zip_tree(tmp_path / "pets", tmp_path / "pets.zip", wrapper)
    ds = load_dataset("imagefolder", path=archive)
    check_image_tree(ds)
    assert ds.name == "pets"


def test_imagefolder_resize_jpeg_and_grayscale(tmp_path):
    base = tmp_path / "imgs"
    save_image(base / "train" / "a" / "0.jpg", solid(20, 30, (200, 40, 90)), quality=95)
    (base / "train" / "b").mkdir(parents=True)
    Image.fromarray(np.full((10, 10), 77, dtype=np.uint8)).save(base / "train" / "b" / "gray.png")
    save_image(base / "test" / "a" / "1.jpg", solid(8, 8, (0, 0, 0)))
    ds = load_dataset("imagefolder", path=base, image_size=(6, 5))
    assert_split_shapes(ds, 2, 1, (3, 6, 5), torch.uint8)
    assert (ds.x_train[0].int() - torch.tensor([200, 40, 90])[:, None, None]).abs().max() <= 3
    assert ds.x_train[1].eq(77).all()  # grayscale becomes RGB
    with pytest.raises(ValueError, match="image_size"):  # different sizes need resizing
        load_dataset("imagefolder", path=base)


def test_imagefolder_caches_decoded_tensors_and_notices_changes(tmp_path, monkeypatch):
    write_image_tree(tmp_path / "pets")
    archive = zip_tree(tmp_path / "pets", tmp_path / "pets.zip")
    first = load_dataset("imagefolder", path=archive)
    assert len(list(cache_dir().glob("imagefolder-pets-*.pt"))) == 1

    decode = images._decode_images
    monkeypatch.setattr(images, "_decode_images", lambda *a, **k: pytest.fail("cache not used"))
    again = load_dataset("imagefolder", path=archive)
    assert torch.equal(again.x_train, first.x_train) and again.classes == first.classes

    monkeypatch.setattr(images, "_decode_images", decode)
    write_image_tree(tmp_path / "pets", per_class=3)
    zip_tree(tmp_path / "pets", archive)
    os.utime(archive, ns=(0, 10**18))  # a new mtime even on coarse clocks
    assert len(load_dataset("imagefolder", path=archive).y_train) == 9


def test_imagefolder_worker_pool_gives_the_same_tensors(tmp_path, monkeypatch):
    write_image_tree(tmp_path / "pets")
    archive = zip_tree(tmp_path / "pets", tmp_path / "pets.zip")
    monkeypatch.setattr(images, "_DECODE_CHUNK", 2)  # several chunks, so the pool is used
    members = [n for n in zipfile.ZipFile(archive).namelist() if n.endswith(".png")]
    pooled = images._decode_images(archive, members, num_workers=2)
    serial = images._decode_images(archive, members, num_workers=0)
    assert pooled.shape == (12, 3, 4, 6) and torch.equal(pooled, serial)


def test_imagefolder_rejects_a_zip_without_the_layout(tmp_path):
    archive = tmp_path / "flat.zip"
    with zipfile.ZipFile(archive, "w") as z:
        buffer = io.BytesIO()
        Image.fromarray(solid(2, 2, (1, 2, 3))).save(buffer, format="PNG")
        z.writestr("images/0.png", buffer.getvalue())
    with pytest.raises(DatasetNotFoundError, match="train/<class>"):
        load_dataset("imagefolder", path=archive)


def test_tinyimagenet(tmp_path):
    base = tmp_path / "tiny-imagenet-200"
    wnids = ["n02", "n01"]  # listed unsorted in wnids.txt; classes come out sorted
    colours = {"n01": (250, 10, 10), "n02": (10, 10, 250)}
    base.mkdir()
    (base / "wnids.txt").write_text("\n".join(wnids) + "\n")
    words = ["n00\tentity", "n01\tgoldfish, Carassius auratus", "n02\tbullfrog, Rana catesbeiana"]
    (base / "words.txt").write_text("\n".join(words) + "\n")
    for wnid in wnids:
        for i in range(2):
            path = base / "train" / wnid / "images" / f"{wnid}_{i}.JPEG"
            save_image(path, solid(64, 64, colours[wnid]), format="JPEG")
        (base / "train" / wnid / f"{wnid}_boxes.txt").write_text("")
    annotations = []
    for i, wnid in enumerate(["n02", "n01", "n02"]):
        save_image(base / "val" / "images" / f"val_{i}.JPEG", solid(64, 64, colours[wnid]), format="JPEG")
        annotations.append(f"val_{i}.JPEG\t{wnid}\t0\t0\t63\t63")
    (base / "val" / "val_annotations.txt").write_text("\n".join(annotations) + "\n")

    ds = load_dataset("tinyimagenet", tmp_path)
    assert_split_shapes(ds, 4, 3, (3, 64, 64), torch.uint8)
    assert ds.classes == ["goldfish", "bullfrog"]
    assert ds.y_train.tolist() == [0, 0, 1, 1] and sorted(ds.y_test.tolist()) == [0, 1, 1]
    for x, y in zip(ds.x_test, ds.y_test):  # each image carries its own class's colour
        expected = torch.tensor(colours[["n01", "n02"][y]])
        assert (x[:, 32, 32].int() - expected).abs().max() <= 3


CELEBA_FILES = ["000001.jpg", "000002.jpg", "000003.jpg", "000004.jpg", "000005.jpg"]


def write_celeba(root: Path) -> np.ndarray:
    """Five 218x178 faces, partitions 0 0 1 2 2; returns the 0/1 attribute matrix (5, 40)."""
    base = root / "celeba"
    rng = np.random.default_rng(0)
    values = rng.integers(0, 2, size=(len(CELEBA_FILES), 40))
    lines = [str(len(CELEBA_FILES)), " ".join(images.CELEBA_ATTRIBUTES) + " "]
    for file, row in zip(CELEBA_FILES, values):
        lines.append(file + " " + " ".join(f"{2 * v - 1:2d}" for v in row))
    base.mkdir(parents=True)
    (base / "list_attr_celeba.txt").write_text("\n".join(lines) + "\n")
    partitions = zip(CELEBA_FILES, "00122")
    (base / "list_eval_partition.txt").write_text("".join(f"{f} {p}\n" for f, p in partitions))
    for i, file in enumerate(CELEBA_FILES):
        face = solid(218, 178, (40 * i, 80, 160))
        face[:8] = 255  # a white band at the top, cut away by the centre crop to 178x178
        save_image(base / "img_align_celeba" / file, face, quality=95)
    return values


def test_celeba_target_and_group(tmp_path):
    values = write_celeba(tmp_path)
    smiling, young = images.CELEBA_ATTRIBUTES.index("Smiling"), images.CELEBA_ATTRIBUTES.index("Young")
    ds = load_dataset("celeba", tmp_path, target="Smiling", group="Young", image_size=16)
    assert_split_shapes(ds, 2, 2, (3, 16, 16), torch.uint8)
    assert ds.y_train.tolist() == values[[0, 1], smiling].tolist()
    assert ds.y_test.tolist() == values[[3, 4], smiling].tolist()
    assert ds.groups_train["Young"].tolist() == values[[0, 1], young].tolist()
    assert ds.groups_test["Young"].tolist() == values[[3, 4], young].tolist()
    assert ds.classes == ["not Smiling", "Smiling"] and ds.group_names == {"Young": ["not Young", "Young"]}
    assert (ds.x_test[1, :, 8, 8].int() - torch.tensor([160, 80, 160])).abs().max() <= 4
    assert ds.x_test[:, 1, 0, :].max() < 150  # the white band was cropped away

    default = load_dataset("celeba", tmp_path)
    assert default.input_shape == (3, 32, 32) and "Male" in default.groups_train
    assert default.y_train.tolist() == values[[0, 1], images.CELEBA_ATTRIBUTES.index("Blond_Hair")].tolist()


# --------------------------------------------------------------------------------------------
# Tables

ADULT_TRAIN = """\
39, State-gov, 77516, Bachelors, 13, Never-married, Adm-clerical, Not-in-family, White, Male, 2174, 0, 40, United-States, <=50K
50, Self-emp-not-inc, 83311, Bachelors, 13, Married-civ-spouse, Exec-managerial, Husband, White, Male, 0, 0, 13, United-States, >50K
38, Private, 215646, HS-grad, 9, Divorced, Handlers-cleaners, Not-in-family, Black, Female, 0, 0, 40, United-States, <=50K
54, ?, 180211, Some-college, 10, Married-civ-spouse, ?, Husband, Asian-Pac-Islander, Male, 0, 0, 60, South, >50K
31, Private, 45781, Masters, 14, Never-married, Prof-specialty, Not-in-family, White, Female, 14084, 0, 50, United-States, >50K

"""

ADULT_TEST = """\
|1x3 Cross validator
25, Private, 226802, 11th, 7, Never-married, Machine-op-inspct, Own-child, Black, Male, 0, 0, 40, United-States, <=50K.
44, Private, 160323, Some-college, 10, Married-civ-spouse, Machine-op-inspct, Husband, Black, Male, 7688, 0, 40, ?, >50K.
38, Private, 89814, HS-grad, 9, Married-civ-spouse, Farming-fishing, Husband, Amer-Indian-Eskimo, Male, 0, 0, 50, Peru, >50K.
"""


@pytest.mark.parametrize("folder", ["adult", ""])
def test_adult_format_quirks(tmp_path, folder):
    (tmp_path / folder).mkdir(exist_ok=True)
    (tmp_path / folder / "adult.data").write_text(ADULT_TRAIN)
    (tmp_path / folder / "adult.test").write_text(ADULT_TEST)
    ds = load_dataset("adult", tmp_path)

    assert len(ds.y_train) == 4 and len(ds.y_test) == 2  # rows with "?" dropped, junk line skipped
    assert ds.classes == ["<=50K", ">50K"]
    assert ds.y_train.tolist() == [0, 1, 0, 1] and ds.y_test.tolist() == [0, 1]  # "<=50K." is "<=50K"
    assert ds.x_train.dtype == torch.float32
    assert ds.x_train.shape[1] == ds.x_test.shape[1] == len(ds.feature_names)
    age = ds.feature_names.index("age")
    assert ds.x_train[:, age].mean().abs() < 1e-6 and (ds.x_train[:, age].std(correction=0) - 1).abs() < 1e-5
    train_ages = torch.tensor([39.0, 50, 38, 31])
    expected_test_age = (torch.tensor([25.0, 38]) - train_ages.mean()) / train_ages.std(correction=0)
    assert torch.allclose(ds.x_test[:, age], expected_test_age, atol=1e-5)  # train statistics

    country = [i for i, n in enumerate(ds.feature_names) if n.startswith("native_country=")]
    assert [ds.feature_names[i] for i in country] == ["native_country=United-States"]
    assert ds.x_test[:, country].tolist() == [[1.0], [0.0]]  # Peru never seen in train: all zeros
    assert ds.x_test[1, ds.feature_names.index("race=Black")] == 0  # unknown race: all zeros

    assert ds.group_names["sex"] == ["Female", "Male"]
    assert ds.groups_train["sex"].tolist() == [1, 1, 0, 0] and ds.groups_test["sex"].tolist() == [1, 1]
    assert ds.group_names["race"] == ["Amer-Indian-Eskimo", "Black", "White"]
    assert ds.groups_train["race"].tolist() == [2, 2, 1, 2] and ds.groups_test["race"].tolist() == [1, 0]
    assert ds.groups_train["race"].dtype == torch.int64


ABALONE_ROWS = """\
M,0.455,0.365,0.095,0.514,0.2245,0.101,0.15,15
M,0.35,0.265,0.09,0.2255,0.0995,0.0485,0.07,7
F,0.53,0.42,0.135,0.677,0.2565,0.1415,0.21,9
M,0.44,0.365,0.125,0.516,0.2155,0.114,0.155,10
I,0.33,0.255,0.08,0.205,0.0895,0.0395,0.055,7
I,0.425,0.3,0.095,0.3515,0.141,0.0775,0.12,8
F,0.53,0.415,0.15,0.7775,0.237,0.1415,0.33,20
F,0.545,0.425,0.125,0.768,0.294,0.1495,0.26,16
M,0.475,0.37,0.125,0.5095,0.2165,0.1125,0.165,9
F,0.55,0.44,0.15,0.8945,0.3145,0.151,0.32,19
"""


def test_abalone_with_and_without_header(tmp_path):
    (tmp_path / "uci").mkdir()
    header = "Sex,Length,Diameter,Height,Whole_weight,Shucked_weight,Viscera_weight,Shell_weight,Rings\n"
    (tmp_path / "uci" / "abalone.data").write_text(header + ABALONE_ROWS)
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "abalone.data").write_text(ABALONE_ROWS)  # the original UCI file has no header

    with_header = load_dataset("abalone", tmp_path)
    without = load_dataset("abalone", tmp_path / "plain")
    assert with_header.task == "regression" and with_header.classes == []
    assert_split_shapes(with_header, 8, 2, (10,), torch.float32)
    for split in ("x_train", "y_train", "x_test", "y_test"):
        assert torch.equal(getattr(with_header, split), getattr(without, split))
    assert with_header.feature_names[:3] == ["Sex=F", "Sex=I", "Sex=M"]
    assert with_header.x_train[:, :3].sum(1).eq(1).all()
    rings = torch.cat([with_header.y_train, with_header.y_test]) * with_header.target_std + with_header.target_mean
    assert sorted(rings.round().tolist()) == [7, 7, 8, 9, 9, 10, 15, 16, 19, 20]
    assert abs(with_header.y_train.mean()) < 1e-5
    assert not torch.equal(load_dataset("abalone", tmp_path, seed=1).y_test, with_header.y_test)


def test_csv_classification_with_header_and_semicolons(tmp_path):
    rows = ["colour;size;weight;label"]
    rows += [f"{'red' if i % 3 else 'blue'};{i};{i * 0.5};{'yes' if i % 2 else 'no'}" for i in range(20)]
    rows[5] = "red;?;2.0;yes"  # a missing value: the row is dropped
    (tmp_path / "table.csv").write_text("\n".join(rows) + "\n")
    ds = load_dataset("csv", tmp_path, path="table.csv", target="label", task="classification", test_fraction=0.25)
    assert ds.task == "classification" and ds.classes == ["no", "yes"]
    assert_split_shapes(ds, 14, 5, (4,), torch.float32)
    assert ds.feature_names == ["colour=blue", "colour=red", "size", "weight"]
    assert sorted(torch.bincount(ds.y_test).tolist()) == [2, 3]  # stratified


def test_csv_regression_whitespace_no_header_target_by_index(tmp_path):
    rng = np.random.default_rng(0)
    table = rng.normal(size=(30, 4)) * [1, 10, 100, 5] + [0, 0, 0, 50]
    path = tmp_path / "housing.data"
    path.write_text("".join("  ".join(f"{v:8.3f}" for v in row) + "\n" for row in table))
    ds = load_dataset("csv", path=path, target=-1, test_fraction=0.2, seed=3)
    assert ds.task == "regression" and ds.feature_names == ["0", "1", "2"]
    assert_split_shapes(ds, 24, 6, (3,), torch.float32)
    restored = torch.cat([ds.y_train, ds.y_test]) * ds.target_std + ds.target_mean
    assert np.allclose(sorted(restored.tolist()), sorted(table[:, 3].round(3)), atol=1e-3)
    with pytest.raises(ValueError, match=r"target: no column 'price' in the table; its columns are \['0', '1', '2', '3'\]"):
        load_dataset("csv", path=path, target="price")
    assert ds.name == "csv:housing.data"


def write_houses(path: Path, rows: int = 60) -> None:
    """A table with an identifier, a leaking column, a numeric code, a skewed column and the target."""
    rng = np.random.default_rng(1)
    lines = ["id,zone,area,price_per_m2,colour,price"]
    for i in range(rows):
        area = float(np.exp(rng.normal(4, 1)))
        price = area * 3 + rng.normal()
        lines.append(f"house{i},{i % 3 + 1},{area:.3f},{price / area:.4f},{'red' if i % 2 else 'blue'},{price:.3f}")
    lines[7] = "house6,2,?,3.0,red,10.0"
    path.write_text("\n".join(lines) + "\n")


def test_csv_drop_categorical_and_log_columns(tmp_path):
    write_houses(tmp_path / "houses.csv")
    options = {"path": "houses.csv", "target": "price", "drop": ["id", "price_per_m2"], "categorical": "zone",
               "log": ["area"]}
    ds = load_dataset("csv", tmp_path, **options)
    assert ds.name == "csv:houses.csv"
    assert ds.feature_names == ["zone=1", "zone=2", "zone=3", "area", "colour=blue", "colour=red"]
    assert_split_shapes(ds, 47, 12, (6,), torch.float32)  # the row with a missing area is dropped
    area = ds.feature_names.index("area")
    assert ds.x_train[:, area].mean().abs() < 1e-5 and (ds.x_train[:, area].std(correction=0) - 1).abs() < 1e-4

    # the log is taken before standardising with the train statistics
    table = pd.read_csv(tmp_path / "houses.csv", na_values="?").dropna().reset_index(drop=True)
    train_rows, test_rows = tabular.split_indices(len(table), 0.2, 0, None)
    log_area = np.log1p(table["area"].to_numpy())
    mean, std = log_area[train_rows].mean(), log_area[train_rows].std()
    assert np.allclose(ds.x_test[:, area].numpy(), (log_area[test_rows] - mean) / std, atol=1e-5)

    by_index = load_dataset("csv", tmp_path, **{**options, "target": -1, "drop": [0, 3], "categorical": [1], "log": 2})
    assert torch.equal(by_index.x_train, ds.x_train) and torch.equal(by_index.y_test, ds.y_test)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"drop": ["ID"]}, r"drop: no column 'ID' in the table; its columns are \['id', 'zone', 'area'"),
        ({"categorical": [9]}, r"categorical: no column 9 in the table; its columns are \['id'"),
        ({"log": "size"}, r"log: no column 'size'"),
        ({"drop": "price"}, r"drop: 'price' is the target column"),
        ({"drop": ["id"], "categorical": ["zone"], "log": ["zone"]}, r"categorical and log both name \['zone'\]"),
        ({"drop": ["id"], "log": ["colour"]}, r"log: column 'colour' must hold numbers > -1"),
        ({"drop": [["id"]]}, r"drop=\[\['id'\]\]: allowed values are column names or 0-based indices"),
        ({"categorical": True}, r"categorical=True: allowed values"),
        ({}, r"column 'id' holds text with 59 distinct values: drop it \(drop=\['id'\]\)"),
    ],
)
def test_csv_column_options_are_checked(tmp_path, options, message):
    write_houses(tmp_path / "houses.csv")
    with pytest.raises(ValueError, match=message):
        load_dataset("csv", tmp_path, path="houses.csv", target="price", **options)


def test_csv_reads_an_xz_compressed_table(tmp_path):
    write_houses(tmp_path / "houses.csv")
    with lzma.open(tmp_path / "houses.csv.xz", "wb") as f:
        f.write((tmp_path / "houses.csv").read_bytes())
    options = {"target": "price", "drop": ["id"]}
    plain = load_dataset("csv", tmp_path, path="houses.csv", **options)
    packed = load_dataset("csv", tmp_path, path="houses.csv.xz", **options)
    assert torch.equal(plain.x_train, packed.x_train) and torch.equal(plain.y_test, packed.y_test)


# --------------------------------------------------------------------------------------------
# Embedded data: Adult and Abalone ship with the package


def test_embedded_adult_standard_sizes(tmp_path):
    ds = load_dataset("adult", tmp_path)  # an empty data root: the embedded copy
    assert len(ds.y_train) == 30162 and len(ds.y_test) == 15060
    assert ds.x_train.shape[1] == 104
    assert abs(ds.y_train.float().mean().item() - 0.249) < 0.001  # 24.9% earn >50K
    assert ds.group_names["sex"] == ["Female", "Male"] and len(ds.group_names["race"]) == 5


def test_embedded_abalone(tmp_path):
    ds = load_dataset("abalone", tmp_path)
    assert len(ds.y_train) + len(ds.y_test) == 4177 and len(ds.y_test) == 836
    assert ds.input_shape == (10,) and 9.5 < ds.target_mean < 10.5


def test_embedded_data_is_package_data_with_its_licence(repo_root):
    pyproject = (repo_root / "pyproject.toml").read_text()
    assert '"datasets/*.xz"' in pyproject and '"datasets/LICENSE"' in pyproject
    names = sorted(p.name for p in data_files.EMBEDDED_DIR.iterdir())
    assert names == ["LICENSE", "README.md", "abalone.data.xz", "adult.data.xz", "adult.test.xz"]
    assert "CC BY 4.0" in (data_files.EMBEDDED_DIR / "README.md").read_text()


def test_data_root_copy_wins_over_the_embedded_one(tmp_path):
    (tmp_path / "uci").mkdir()
    (tmp_path / "uci" / "abalone.data").write_text(ABALONE_ROWS)
    assert len(load_dataset("abalone", tmp_path).y_test) == 2


@pytest.mark.parametrize("name, files", [
    ("adult", ["adult/adult.data", "adult/adult.test"]),
    ("abalone", ["uci/abalone.data"]),
])
def test_embedded_copy_equals_the_shared_files(tmp_path, name, files):
    if not all((SHARED_DATA / f).exists() for f in files):
        pytest.skip(f"{SHARED_DATA} does not hold {files}")
    for file in files:
        embedded = lzma.decompress((data_files.EMBEDDED_DIR / f"{Path(file).name}.xz").read_bytes())
        assert embedded == (SHARED_DATA / file).read_bytes()
    from_root, embedded = load_dataset(name, SHARED_DATA), load_dataset(name, tmp_path)
    for split in ("x_train", "y_train", "x_test", "y_test"):
        assert torch.equal(getattr(from_root, split), getattr(embedded, split))
    assert from_root.feature_names == embedded.feature_names and from_root.group_names == embedded.group_names
    for attribute, codes in from_root.groups_test.items():
        assert torch.equal(codes, embedded.groups_test[attribute])


# --------------------------------------------------------------------------------------------
# Real data, when $FAIRENS_DATA has it


def test_real_adult_standard_sizes():
    ds = load_dataset("adult", real_file("adult/adult.data"))
    assert len(ds.y_train) == 30162 and len(ds.y_test) == 15060
    assert ds.x_train.shape[1] == 104
    assert abs(ds.y_train.float().mean().item() - 0.249) < 0.001  # 24.9% earn >50K
    assert ds.group_names["sex"] == ["Female", "Male"] and len(ds.group_names["race"]) == 5


def test_real_abalone():
    ds = load_dataset("abalone", real_file("uci/abalone.data"))
    assert len(ds.y_train) + len(ds.y_test) == 4177 and len(ds.y_test) == 836
    assert ds.input_shape == (10,) and 9.5 < ds.target_mean < 10.5


@pytest.mark.slow
def test_real_cifar10_jpeg_zip():
    ds = load_dataset("cifar10_jpeg", real_file("cifar10-jpeg.zip"))
    assert_split_shapes(ds, 50000, 10000, (3, 32, 32), torch.uint8)
    assert ds.classes[:3] == ["airplane", "automobile", "bird"] and ds.num_classes == 10
    assert torch.bincount(ds.y_train).tolist() == [5000] * 10
    assert torch.bincount(ds.y_test).tolist() == [1000] * 10
    mean, _ = images._channel_stats(ds.x_train)
    assert mean == pytest.approx(images.CIFAR10_MEAN, abs=0.002)  # JPEG keeps the colour statistics

"""Images: CIFAR-10/100 and SVHN in torchvision's formats, folders and zips of image files
(ImageFolder, CIFAR-10 as JPEGs, Tiny ImageNet, CelebA), decoded in parallel and cached as uint8."""

from __future__ import annotations

import io
import multiprocessing
import os
import pickle
import sys
import zipfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch

from .checks import check_bool, check_choice, check_image_size, check_int
from .dataset import Dataset, DatasetNotFoundError
from .files import cached_tensors, locate


# Per-channel statistics of x/255 on the train split, as commonly published.
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
CIFAR100_MEAN = (0.5071, 0.4865, 0.4409)
CIFAR100_STD = (0.2673, 0.2564, 0.2762)
SVHN_MEAN = (0.4377, 0.4438, 0.4728)
SVHN_STD = (0.1980, 0.2010, 0.1970)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".ppm", ".tif", ".tiff", ".webp")


# ---------------------------------------------------------------------------------------------
# Decoding image files in parallel


def _channel_stats(x: torch.Tensor, chunk: int = 4096) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of ``x / 255`` for uint8 ``(N, C, H, W)``, in chunks to bound memory."""
    total = torch.zeros(x.shape[1], dtype=torch.float64)
    squares = torch.zeros(x.shape[1], dtype=torch.float64)
    for start in range(0, len(x), chunk):
        block = x[start : start + chunk].double().div_(255)
        total += block.sum(dim=(0, 2, 3))
        squares += block.square().sum(dim=(0, 2, 3))
    count = x.numel() / x.shape[1]
    mean = total / count
    std = (squares / count - mean.square()).clamp_min(0).sqrt()
    return tuple(round(v, 4) for v in mean.tolist()), tuple(round(v, 4) for v in std.tolist())


def _read_image(file, size: tuple[int, int] | None, crop_square: bool) -> np.ndarray:
    """One image as RGB uint8 ``(H, W, 3)``, optionally centre-cropped to a square, then resized to ``size``."""
    from PIL import Image

    with Image.open(file) as image:
        if size is not None:
            image.draft("RGB", (size[1], size[0]))  # JPEG: decode at a reduced scale >= size, much faster
        image = image.convert("RGB")
    if crop_square and image.width != image.height:
        side = min(image.size)
        left, top = (image.width - side) // 2, (image.height - side) // 2
        image = image.crop((left, top, left + side, top + side))
    if size is not None and image.size != (size[1], size[0]):
        image = image.resize((size[1], size[0]), Image.Resampling.BILINEAR)
    return np.asarray(image)


def _decode_members(source: str | zipfile.ZipFile, members: list[str], size, crop_square: bool) -> np.ndarray:
    """Decode ``members`` of an open zip, or of a directory ``source``, to uint8 ``(n, H, W, 3)``."""
    images = []
    for member in members:
        if isinstance(source, zipfile.ZipFile):
            file = io.BytesIO(source.read(member))
        else:
            file = os.path.join(source, member)
        images.append(_read_image(file, size, crop_square))
        if images[-1].shape != images[0].shape:
            raise ValueError(
                f"images differ in size: {members[0]} is {images[0].shape[1]}x{images[0].shape[0]}, "
                f"{member} is {images[-1].shape[1]}x{images[-1].shape[0]}; pass image_size to resize them"
            )
    return np.stack(images)


_DECODE_CHUNK = 1000  # images per task sent to a decoding worker

# The source a decoding worker process reads from: opening a zip parses its whole directory
# (about a second for 60k members), so each worker does it once, not once per chunk.
_worker_source: str | zipfile.ZipFile | None = None


def _start_worker(source: str) -> None:
    global _worker_source
    _worker_source = source if os.path.isdir(source) else zipfile.ZipFile(source)


def _decode_in_worker(members: list[str], size, crop_square: bool) -> np.ndarray:
    return _decode_members(_worker_source, members, size, crop_square)


def _decode_images(
    source: Path,
    members: list[str],
    size: tuple[int, int] | None = None,
    crop_square: bool = False,
    num_workers: int | None = None,
) -> torch.Tensor:
    """Decode image files to one uint8 tensor ``(N, 3, H, W)``, in order.

    ``source`` is a .zip (``members`` are names inside it) or a directory (``members`` are
    relative paths). Large sets are decoded by a pool of ``num_workers`` processes (default:
    all cores, up to 8); Pillow's Python overhead per small image makes threads no faster.
    """
    if not members:
        raise ValueError(f"no images to decode in {source}")
    workers = min(os.cpu_count() or 1, 8) if num_workers is None else num_workers
    chunks = [members[i : i + _DECODE_CHUNK] for i in range(0, len(members), _DECODE_CHUNK)]
    if workers <= 1 or len(chunks) == 1:
        if source.is_dir():
            parts = [_decode_members(str(source), c, size, crop_square) for c in chunks]
            return _stack_nchw(parts, len(members))
        with zipfile.ZipFile(source) as archive:
            return _stack_nchw([_decode_members(archive, c, size, crop_square) for c in chunks], len(members))
    # fork is cheap and safe here (workers use only zipfile, Pillow and numpy); spawn elsewhere
    context = multiprocessing.get_context("fork" if sys.platform == "linux" else "spawn")
    with ProcessPoolExecutor(workers, context, initializer=_start_worker, initargs=(str(source),)) as pool:
        parts = pool.map(_decode_in_worker, chunks, [size] * len(chunks), [crop_square] * len(chunks))
        return _stack_nchw(parts, len(members))


def _decode_splits(source: Path, splits: dict[str, list[str]], size, crop_square=False, num_workers=None):
    """Decode all splits in one pass: ``{"x_<split>": uint8 (N, 3, H, W), "mean": ..., "std": ...}``.

    ``mean`` and ``std`` are the per-channel statistics of the "train" split.
    """
    everything = _decode_images(source, [m for names in splits.values() for m in names], size, crop_square, num_workers)
    result, start = {}, 0
    for split, names in splits.items():
        result[f"x_{split}"] = everything[start : start + len(names)].clone()  # own storage, not a view
        start += len(names)
    result["mean"], result["std"] = _channel_stats(result["x_train"])
    return result


def _stack_nchw(parts, total: int) -> torch.Tensor:
    """Copy ``(n, H, W, 3)`` arrays into one preallocated ``(total, 3, H, W)`` tensor."""
    out, start = None, 0
    for part in parts:
        if out is None:
            out = torch.empty((total, part.shape[3], part.shape[1], part.shape[2]), dtype=torch.uint8)
        elif part.shape[1:3] != tuple(out.shape[2:]):
            raise ValueError(
                f"images differ in size: {out.shape[3]}x{out.shape[2]} and {part.shape[2]}x{part.shape[1]}; "
                "pass image_size to resize them"
            )
        out[start : start + len(part)] = torch.from_numpy(part).permute(0, 3, 1, 2)
        start += len(part)
    return out


def _tree_fingerprint(directory: Path) -> str:
    """Cheap identity of a directory tree for cache keys: file count, total size, newest mtime."""
    count = size = newest = 0
    for folder, _, files in os.walk(directory):
        for name in files:
            stat = os.stat(os.path.join(folder, name))
            count, size, newest = count + 1, size + stat.st_size, max(newest, stat.st_mtime_ns)
    return f"{count}:{size}:{newest}"



# ---------------------------------------------------------------------------------------------
# Images in torchvision's on-disk formats


def _unpickle(path: Path) -> dict:
    """A CIFAR batch file as a dict with str keys (the files are Python 2 pickles with bytes keys)."""
    with open(path, "rb") as f:
        batch = pickle.load(f, encoding="bytes")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in batch.items()}


def _strings(values) -> list[str]:
    return [v.decode() if isinstance(v, bytes) else str(v) for v in values]


def _cifar_images(batches: list[dict], label_key: str) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 ``(N, 3, 32, 32)`` and int64 ``(N,)`` from CIFAR batches (rows of 3072 = R, G, B planes)."""
    data = np.concatenate([np.asarray(b["data"], dtype=np.uint8).reshape(-1, 3, 32, 32) for b in batches])
    labels = np.concatenate([np.asarray(b[label_key], dtype=np.int64) for b in batches])
    return torch.from_numpy(data), torch.from_numpy(labels)


def _cifar_folder(dataset: str, root: Path, folder: str, download: bool, torchvision_class: str) -> Path:
    """The CIFAR folder under root, downloaded by torchvision first if asked to."""
    if download:
        import torchvision.datasets

        getattr(torchvision.datasets, torchvision_class)(str(root), train=True, download=True)
    return locate(
        dataset,
        [root / folder],
        f"Download it with load_dataset({dataset!r}, download=True) or "
        f"torchvision.datasets.{torchvision_class}(root, download=True).",
    )


def load_cifar10(root: Path, *, download: bool = False) -> Dataset:
    """CIFAR-10 from ``root/cifar-10-batches-py`` (torchvision's format): uint8 ``(N, 3, 32, 32)``, 50k/10k."""
    check_bool("download", download)
    folder = _cifar_folder("cifar10", root, "cifar-10-batches-py", download, "CIFAR10")
    train_files = [folder / f"data_batch_{i}" for i in range(1, 6)]
    for path in [*train_files, folder / "test_batch", folder / "batches.meta"]:
        locate("cifar10", [path], "The folder is incomplete; download it again with download=True.")
    x_train, y_train = _cifar_images([_unpickle(p) for p in train_files], "labels")
    x_test, y_test = _cifar_images([_unpickle(folder / "test_batch")], "labels")
    classes = _strings(_unpickle(folder / "batches.meta")["label_names"])
    return Dataset(
        "cifar10", "classification", x_train, y_train, x_test, y_test, classes, mean=CIFAR10_MEAN, std=CIFAR10_STD,
    )


def load_cifar100(root: Path, *, label: str = "fine", download: bool = False) -> Dataset:
    """CIFAR-100 from ``root/cifar-100-python``: uint8 ``(N, 3, 32, 32)``, 100 fine or 20 coarse classes."""
    check_choice("label", label, ("fine", "coarse"))
    check_bool("download", download)
    folder = _cifar_folder("cifar100", root, "cifar-100-python", download, "CIFAR100")
    for path in [folder / "train", folder / "test", folder / "meta"]:
        locate("cifar100", [path], "The folder is incomplete; download it again with download=True.")
    x_train, y_train = _cifar_images([_unpickle(folder / "train")], f"{label}_labels")
    x_test, y_test = _cifar_images([_unpickle(folder / "test")], f"{label}_labels")
    classes = _strings(_unpickle(folder / "meta")[f"{label}_label_names"])
    return Dataset(
        "cifar100", "classification", x_train, y_train, x_test, y_test, classes,
        mean=CIFAR100_MEAN, std=CIFAR100_STD,
    )


def load_svhn(root: Path, *, download: bool = False) -> Dataset:
    """SVHN (cropped digits) from ``train_32x32.mat`` / ``test_32x32.mat`` in root or root/svhn.

    uint8 ``(N, 3, 32, 32)``; the files label the digit 0 as 10, here it is 0. The ``extra``
    split is not loaded.
    """
    check_bool("download", download)
    from scipy.io import loadmat

    if download:
        import torchvision.datasets

        for split in ("train", "test"):
            torchvision.datasets.SVHN(str(root), split=split, download=True)
    how = (
        "Download it with load_dataset('svhn', download=True) "
        "or torchvision.datasets.SVHN(root, split, download=True)."
    )
    splits = []
    for split in ("train", "test"):
        mat = loadmat(locate("svhn", [root / f"{split}_32x32.mat", root / "svhn" / f"{split}_32x32.mat"], how))
        x = torch.from_numpy(np.ascontiguousarray(mat["X"].transpose(3, 2, 0, 1)))  # (32, 32, 3, N) -> NCHW
        y = torch.from_numpy(mat["y"].reshape(-1).astype(np.int64) % 10)
        splits += [x, y]
    return Dataset("svhn", "classification", *splits, [str(d) for d in range(10)], mean=SVHN_MEAN, std=SVHN_STD)


# ---------------------------------------------------------------------------------------------
# Folders of image files


def _image_members(path: Path) -> dict[str, list[tuple[str, str]]]:
    """``{"train": [(class, member), ...], "test": [...]}`` of an ImageFolder tree, sorted.

    ``path`` is a directory or a .zip holding ``train/<class>/...`` and ``test/<class>/...``,
    possibly inside one wrapping folder. Members are names inside the zip, or paths relative
    to ``path`` for a directory.
    """
    if path.is_dir():
        names = [
            os.path.relpath(os.path.join(folder, f), path).replace(os.sep, "/")
            for folder, _, files in os.walk(path)
            for f in files
        ]
    else:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    # ignore hidden files and the __MACOSX folder that macOS adds to zips
    names = [n for n in names if not any(part.startswith((".", "__MACOSX")) for part in n.split("/"))]
    prefix = ""
    if not any(n.startswith("train/") for n in names):
        tops = {n.split("/")[0] for n in names}
        if len(tops) == 1 and any(n.startswith(f"{next(iter(tops))}/train/") for n in names):
            prefix = f"{next(iter(tops))}/"
    members = {}
    for split in ("train", "test"):
        start = f"{prefix}{split}/"
        found = [
            (n[len(start) :].split("/")[0], n)  # (class folder, member)
            for n in names
            if n.startswith(start) and "/" in n[len(start) :] and n.lower().endswith(IMAGE_EXTENSIONS)
        ]
        if not found:
            raise DatasetNotFoundError(
                f"imagefolder: no images under {path}/{start}<class>/; expected the layout "
                "train/<class>/<image> and test/<class>/<image> (optionally inside one folder)"
            )
        members[split] = sorted(found)
    return members


def load_imagefolder(
    root: Path, *, path: str | Path | None = None, image_size=None, num_workers: int | None = None
) -> Dataset:
    """Images in ImageFolder layout, ``train/<class>/*`` and ``test/<class>/*``, from a directory or a .zip.

    ``path`` may be relative to ``root``. The zip is read in place; it may wrap train/ and test/
    in one top-level folder. Images are decoded by Pillow to RGB uint8 ``(N, 3, H, W)``, resized
    (bilinear) to ``image_size`` (int or (h, w)) if given; otherwise all must share one size.
    Classes are the train class folders sorted by name. ``mean`` / ``std`` are the per-channel
    statistics of the train images. Decoded tensors are cached under :func:`cache_dir`, keyed
    by the resolved path, its size and modification time, and ``image_size``; ``num_workers``
    processes decode (default: all cores, up to 8; 0 or 1 decodes in this process).
    """
    if path is None:
        raise ValueError("path=None: the imagefolder dataset needs path=<directory or .zip>")
    size = check_image_size(image_size)
    if num_workers is not None:
        check_int("num_workers", num_workers, minimum=0)
    path = Path(path).expanduser()
    path = path if path.is_absolute() else root / path
    how = "Give a directory or .zip holding train/<class>/<image> and test/<class>/<image>."
    path = locate("imagefolder", [path], how)
    return _imagefolder(path, path.stem, size, num_workers)


def _imagefolder(path: Path, name: str, size, num_workers) -> Dataset:
    path = path.resolve()
    stat = path.stat()
    fingerprint = _tree_fingerprint(path) if path.is_dir() else f"{stat.st_size}:{stat.st_mtime_ns}"
    key = f"{path}|{fingerprint}|size={size}"

    def build() -> dict:
        members = _image_members(path)
        classes = sorted({c for c, _ in members["train"]})
        unknown = sorted({c for c, _ in members["test"]} - set(classes))
        if unknown:
            raise ValueError(f"imagefolder {path}: test classes {unknown} have no train images")
        index = {c: i for i, c in enumerate(classes)}
        files = {split: [m for _, m in members[split]] for split in members}
        result = _decode_splits(path, files, size, num_workers=num_workers)
        for split in ("train", "test"):
            result[f"y_{split}"] = torch.tensor([index[c] for c, _ in members[split]], dtype=torch.int64)
        return {"classes": classes, **result}

    cached = cached_tensors(f"imagefolder-{path.stem}", key, build)
    return Dataset(
        name=name,
        task="classification",
        x_train=cached["x_train"],
        y_train=cached["y_train"],
        x_test=cached["x_test"],
        y_test=cached["y_test"],
        classes=list(cached["classes"]),
        mean=tuple(cached["mean"]),
        std=tuple(cached["std"]),
    )


def load_cifar10_jpeg(root: Path, *, image_size=None, num_workers: int | None = None) -> Dataset:
    """CIFAR-10 re-encoded as JPEG, ``root/cifar10-jpeg.zip`` in ImageFolder layout; the CIFAR-10 mean/std."""
    size = check_image_size(image_size)
    if num_workers is not None:
        check_int("num_workers", num_workers, minimum=0)
    path = locate(
        "cifar10_jpeg",
        [root / "cifar10-jpeg.zip"],
        "It is a zip of train/<class>/NNNN.jpg and test/<class>/NNNN.jpg; "
        "for the original CIFAR-10 use load_dataset('cifar10', download=True).",
    )
    dataset = _imagefolder(path, "cifar10_jpeg", size, num_workers)
    dataset.mean, dataset.std = CIFAR10_MEAN, CIFAR10_STD
    return dataset


def load_tinyimagenet(root: Path, *, num_workers: int | None = None) -> Dataset:
    """Tiny ImageNet from ``root/tiny-imagenet-200``: 200 classes, uint8 ``(N, 3, 64, 64)``, 100k/10k.

    The test split is the labelled ``val`` split (the official test labels are not public).
    Classes are the sorted wnids, named by the first synonym in ``words.txt``; ``mean`` /
    ``std`` are the train statistics. Decoded tensors are cached under :func:`cache_dir`.
    """
    if num_workers is not None:
        check_int("num_workers", num_workers, minimum=0)
    how = "Download http://cs231n.stanford.edu/tiny-imagenet-200.zip and unzip it into the data root."
    base = locate("tinyimagenet", [root / "tiny-imagenet-200"], how)
    for path in (base / "wnids.txt", base / "words.txt", base / "train", base / "val" / "val_annotations.txt"):
        locate("tinyimagenet", [path], how)
    key = f"{base.resolve()}|{_tree_fingerprint(base)}"

    def build() -> dict:
        wnids = sorted((base / "wnids.txt").read_text().split())
        index = {w: i for i, w in enumerate(wnids)}
        train = sorted(
            (w, f"train/{w}/images/{f.name}")
            for w in wnids
            for f in (base / "train" / w / "images").iterdir()
            if f.name.lower().endswith(IMAGE_EXTENSIONS)
        )
        annotations = (base / "val" / "val_annotations.txt").read_text().splitlines()
        rows = [line.split("\t") for line in annotations if line]
        test = sorted((wnid, f"val/images/{file}") for file, wnid, *_ in rows)
        members = {"train": train, "test": test}
        files = {split: [m for _, m in members[split]] for split in members}
        result = _decode_splits(base, files, (64, 64), num_workers=num_workers)
        for split in ("train", "test"):
            result[f"y_{split}"] = torch.tensor([index[w] for w, _ in members[split]], dtype=torch.int64)
        return result

    cached = cached_tensors("tinyimagenet", key, build)
    words = {}
    for line in (base / "words.txt").read_text().splitlines():
        wnid, _, description = line.partition("\t")
        words[wnid] = description.split(",")[0].strip()
    wnids = sorted((base / "wnids.txt").read_text().split())
    return Dataset(
        name="tinyimagenet",
        task="classification",
        x_train=cached["x_train"],
        y_train=cached["y_train"],
        x_test=cached["x_test"],
        y_test=cached["y_test"],
        classes=[words.get(w, w) for w in wnids],
        mean=tuple(cached["mean"]),
        std=tuple(cached["std"]),
    )


CELEBA_ATTRIBUTES = (
    "5_o_Clock_Shadow Arched_Eyebrows Attractive Bags_Under_Eyes Bald Bangs Big_Lips Big_Nose Black_Hair "
    "Blond_Hair Blurry Brown_Hair Bushy_Eyebrows Chubby Double_Chin Eyeglasses Goatee Gray_Hair Heavy_Makeup "
    "High_Cheekbones Male Mouth_Slightly_Open Mustache Narrow_Eyes No_Beard Oval_Face Pale_Skin Pointy_Nose "
    "Receding_Hairline Rosy_Cheeks Sideburns Smiling Straight_Hair Wavy_Hair Wearing_Earrings Wearing_Hat "
    "Wearing_Lipstick Wearing_Necklace Wearing_Necktie Young"
).split()


def load_celeba(
    root: Path,
    *,
    target: str = "Blond_Hair",
    group: str = "Male",
    image_size: int = 32,
    num_workers: int | None = None,
) -> Dataset:
    """CelebA (aligned faces) from ``root/celeba``: classify ``target``, with ``group`` as protected attribute.

    Binary attributes: class 1 / group code 1 is "has the attribute". Train is the official
    train partition (0), test the official test partition (2); the validation partition (1) is
    not used. Images are centre-cropped to a square and resized (bilinear) to ``image_size``:
    uint8 ``(N, 3, s, s)``; ``mean`` / ``std`` are the train statistics. Decoded images are
    cached under :func:`cache_dir` per ``image_size``.
    """
    check_choice("target", target, CELEBA_ATTRIBUTES)
    check_choice("group", group, CELEBA_ATTRIBUTES)
    size = check_image_size(image_size)
    if size is None:
        raise ValueError("image_size=None: allowed values are a positive int or a pair (height, width)")
    if num_workers is not None:
        check_int("num_workers", num_workers, minimum=0)
    how = "Download it with torchvision.datasets.CelebA(root, download=True) or from the CelebA website."
    base = locate("celeba", [root / "celeba"], how)
    files = {
        name: locate("celeba", [base / name], how)
        for name in ("img_align_celeba", "list_attr_celeba.txt", "list_eval_partition.txt")
    }
    names, attributes = _celeba_attributes(files["list_attr_celeba.txt"])
    lines = files["list_eval_partition.txt"].read_text().splitlines()
    partition = dict(line.split() for line in lines if line.strip())  # file -> "0" train, "1" val, "2" test
    splits = {
        "train": [f for f in attributes if partition.get(f) == "0"],
        "test": [f for f in attributes if partition.get(f) == "2"],
    }
    stat = files["list_eval_partition.txt"].stat()
    key = f"{base.resolve()}|{_tree_fingerprint(files['img_align_celeba'])}|{stat.st_mtime_ns}|size={size}"

    def build() -> dict:
        return _decode_splits(files["img_align_celeba"], splits, size, True, num_workers)

    images = cached_tensors("celeba", key, build)
    column = {"target": names.index(target), "group": names.index(group)}

    def codes(split: str, which: str) -> torch.Tensor:
        return torch.tensor([attributes[f][column[which]] for f in splits[split]], dtype=torch.int64)

    return Dataset(
        name="celeba",
        task="classification",
        x_train=images["x_train"],
        y_train=codes("train", "target"),
        x_test=images["x_test"],
        y_test=codes("test", "target"),
        classes=[f"not {target}", target],
        groups_train={group: codes("train", "group")},
        groups_test={group: codes("test", "group")},
        group_names={group: [f"not {group}", group]},
        mean=tuple(images["mean"]),
        std=tuple(images["std"]),
    )


def _celeba_attributes(path: Path) -> tuple[list[str], dict[str, list[int]]]:
    """Attribute names and ``{file: [0/1 per attribute]}`` from list_attr_celeba.txt (values are -1 / 1)."""
    lines = path.read_text().splitlines()
    names = lines[1].split()
    attributes = {}
    for line in lines[2:]:
        if line.strip():
            file, *values = line.split()
            attributes[file] = [int(v == "1") for v in values]
    missing = sorted(set(CELEBA_ATTRIBUTES) - set(names))
    if missing:
        raise ValueError(f"{path}: attributes {missing} missing from the header line")
    return names, attributes

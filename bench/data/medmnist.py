"""MedMNIST v2 / MedMNIST+ `.npz` files (2D sets, any of the 28/64/128/224 sizes).

The set is recognised from the file name (`pneumoniamnist.npz`, `pneumoniamnist_64.npz`)
so its task and class names come from MedMNIST's own INFO table, not from a guess; an
unknown name falls back to inferring the task from the label shape, and says so.
The archive's own train / val / test splits are kept.
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

import numpy as np

from bench.data import DataBundle
from bench.data.common import data_error, make_bundle
from bench.data.formats import FORMATS, Format, LoadRequest
from bench.data.images import files_digest, resize_array
from bench.inputs import damage
from bench.task_kinds import Task

OBTAIN = "https://zenodo.org/records/10519652 (MedMNIST v2/MedMNIST+, e.g. pathmnist.npz)"
EXPECTED = ("a MedMNIST .npz with train_images, train_labels, val_images, val_labels, "
            "test_images, test_labels")
KEYS = ("train_images", "train_labels", "val_images", "val_labels", "test_images", "test_labels")
_ORGANS = ("bladder", "femur-left", "femur-right", "heart", "kidney-left", "kidney-right",
           "liver", "lung-left", "lung-right", "pancreas", "spleen")

#: MedMNIST's INFO (medmnist/info.py, v3.0.2): task and class names, label index order.
#: retinamnist is ordinal regression in MedMNIST; here it is 5-class multiclass.
SETS: dict[str, tuple[str, tuple[str, ...]]] = {
    "pathmnist": ("multiclass", (
        "adipose", "background", "debris", "lymphocytes", "mucus", "smooth muscle",
        "normal colon mucosa", "cancer-associated stroma",
        "colorectal adenocarcinoma epithelium")),
    "chestmnist": ("multilabel", (
        "atelectasis", "cardiomegaly", "effusion", "infiltration", "mass", "nodule",
        "pneumonia", "pneumothorax", "consolidation", "edema", "emphysema", "fibrosis",
        "pleural", "hernia")),
    "dermamnist": ("multiclass", (
        "actinic keratoses and intraepithelial carcinoma", "basal cell carcinoma",
        "benign keratosis-like lesions", "dermatofibroma", "melanoma", "melanocytic nevi",
        "vascular lesions")),
    "octmnist": ("multiclass", (
        "choroidal neovascularization", "diabetic macular edema", "drusen", "normal")),
    "pneumoniamnist": ("binary", ("normal", "pneumonia")),
    "retinamnist": ("multiclass", ("0", "1", "2", "3", "4")),
    # MedMNIST labels 0 = malignant, 1 = normal/benign; flipped here so that the positive
    # class (second, whose probability is the binary score) is the finding.
    "breastmnist": ("binary", ("normal, benign", "malignant")),
    "bloodmnist": ("multiclass", (
        "basophil", "eosinophil", "erythroblast",
        "immature granulocytes(myelocytes, metamyelocytes and promyelocytes)", "lymphocyte",
        "monocyte", "neutrophil", "platelet")),
    "tissuemnist": ("multiclass", (
        "Collecting Duct, Connecting Tubule", "Distal Convoluted Tubule",
        "Glomerular endothelial cells", "Interstitial endothelial cells", "Leukocytes",
        "Podocytes", "Proximal Tubule Segments", "Thick Ascending Limb")),
    "organamnist": ("multiclass", _ORGANS),
    "organcmnist": ("multiclass", _ORGANS),
    "organsmnist": ("multiclass", _ORGANS),
}
FLIPPED = {"breastmnist"}  # binary sets whose MedMNIST label 1 is the normal class


def set_name(path: Path) -> str | None:
    """'pneumoniamnist_64.npz' -> 'pneumoniamnist'; None for a name MedMNIST does not use."""
    stem = re.sub(r"_(28|64|128|224)$", "", path.stem.lower())
    return stem if stem in SETS else None


@FORMATS.register
class MedMNIST(Format):
    """A MedMNIST archive: its own splits, task and classes; --labels does not apply."""

    name = "medmnist"
    spec = "medmnist:FILE.npz"
    expected = EXPECTED
    obtain = OBTAIN

    def load(self, path: Path, request: LoadRequest) -> DataBundle:
        return _load(Path(path).expanduser().resolve(), request.image_size, request.seed,
                     request.calibration, request.name)


def _load(path: Path, image_size: int, seed: int, calibration: int, name: str | None):
    if not path.is_file():
        raise data_error(path, "a folder, not a file" if path.is_dir() else "not found",
                         EXPECTED, OBTAIN)
    problem = damage(path)  # empty, an LFS pointer, a cut download: say so, not numpy's words
    if problem:
        raise data_error(path, problem, EXPECTED, OBTAIN)
    try:
        npz = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise data_error(path, f"not a readable .npz ({exc.__class__.__name__})", EXPECTED,
                         OBTAIN) from None
    if not isinstance(npz, np.lib.npyio.NpzFile):
        raise data_error(path, "a single .npy array, not an .npz archive", EXPECTED, OBTAIN)
    with npz:
        missing = [k for k in KEYS if k not in npz.files]
        if missing:
            raise data_error(path, f"missing keys {', '.join(missing)}", EXPECTED, OBTAIN)
        try:
            arrays = {k: npz[k] for k in KEYS}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
            raise data_error(path, f"unreadable arrays ({exc.__class__.__name__})", EXPECTED,
                             OBTAIN) from None

    known = set_name(path)
    labels = {s: _labels(path, arrays[f"{s}_labels"], s) for s in ("train", "val", "test")}
    if known:
        kind, classes = SETS[known]
        note = f"MedMNIST set {known!r} (task and classes from MedMNIST's INFO)"
    else:
        kind, classes = _infer(path, labels["train"])
        note = (f"unknown MedMNIST set {path.stem!r}: {kind} task inferred from the label "
                "shape and values, class names generic")
    width = len(classes) if kind == "multilabel" else 1
    parts = {}
    for split in ("train", "val", "test"):
        x = _images(path, arrays[f"{split}_images"], split)
        y = labels[split]
        if len(x) != len(y):
            raise data_error(path, f"{len(x)} {split}_images but {len(y)} {split}_labels",
                             EXPECTED, OBTAIN)
        if y.shape[1] != width:
            raise data_error(path, f"{split}_labels have {y.shape[1]} columns, {known or 'this set'} "
                             f"has {width}", EXPECTED, OBTAIN)
        if kind == "multilabel":
            if not np.isin(y, (0, 1)).all():
                raise data_error(path, f"{split}_labels hold values other than 0/1", EXPECTED,
                                 OBTAIN)
            y = y.astype(np.float32)
        else:
            y = y[:, 0].astype(np.int64)
            if y.min() < 0 or y.max() >= len(classes):
                raise data_error(path, f"{split}_labels outside 0..{len(classes) - 1}",
                                 EXPECTED, OBTAIN)
            if known in FLIPPED:
                y = 1 - y
        parts[split] = (resize_array(x, image_size), y)
    source = str(path)
    config = {"format": "medmnist", "source": source, "files": files_digest([path]),
              "set": known or path.stem}
    info = {"source": source, "format": "medmnist", "set": known or path.stem, "note": note,
            "split": "the archive's own train / val / test splits",
            "original_size": int(arrays["train_images"].shape[1])}
    if known in FLIPPED:
        info["labels_flipped"] = "MedMNIST's 0/1 swapped so the positive class is malignant"
    return make_bundle(name or f"medmnist:{known or path.stem}", Task(kind, classes), parts,
                       image_size, seed, calibration, config, info)


def _images(path: Path, x: np.ndarray, split: str) -> np.ndarray:
    if x.ndim == 4 and x.shape[3] == 1:
        x = x[..., 0]
    if not (x.ndim == 3 or (x.ndim == 4 and x.shape[3] == 3)):
        raise data_error(path, f"{split}_images has shape {x.shape}",
                         "(N, H, W) grayscale or (N, H, W, 3) RGB uint8 images (2D MedMNIST)",
                         OBTAIN)
    if x.dtype != np.uint8:
        raise data_error(path, f"{split}_images are {x.dtype}", "uint8 images as MedMNIST "
                         "ships them", OBTAIN)
    return x


def _labels(path: Path, y: np.ndarray, split: str) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim == 1:
        y = y[:, None]
    if y.ndim != 2 or not (np.issubdtype(y.dtype, np.integer) or np.issubdtype(y.dtype, np.floating)):
        raise data_error(path, f"{split}_labels has shape {y.shape} and dtype {y.dtype}",
                         "integer labels of shape (N, 1) or (N, L)", OBTAIN)
    if np.issubdtype(y.dtype, np.floating):
        if not np.isfinite(y).all() or (y != np.round(y)).any():
            raise data_error(path, f"{split}_labels are not whole numbers", "integer labels",
                             OBTAIN)
    return y.astype(np.int64)


def _infer(path: Path, y: np.ndarray) -> tuple[str, tuple[str, ...]]:
    if y.shape[1] > 1:
        if not np.isin(y, (0, 1)).all():
            raise data_error(path, "train_labels have several columns but are not 0/1",
                             "(N, 1) class indices or (N, L) 0/1 multilabel targets", OBTAIN)
        return "multilabel", tuple(f"label_{j}" for j in range(y.shape[1]))
    n = int(y.max()) + 1
    if y.min() < 0:
        raise data_error(path, "train_labels are negative", "class indices 0..K-1", OBTAIN)
    if n <= 2:
        return "binary", ("class_0", "class_1")
    return "multiclass", tuple(f"class_{k}" for k in range(n))

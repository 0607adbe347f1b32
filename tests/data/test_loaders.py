"""On-disk loaders and dataset cards, on tiny fixtures written in each real layout.

Each fixture image is one flat grey (or colour) level that encodes its CSV row, so a
test can tell which row every loaded image came from after resizing and standardising.
"""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sklearn.metrics import roc_auc_score

from bench.config.sections import DataConfig
from bench.data import (
    FORMATS,
    Format,
    LoadRequest,
    SyntheticSizes,
    chexpert,
    folder,
    ham10000,
    load_dataset,
    medmnist,
)
from bench.data.cards import CARDS_DIR, all_cards, load_card

SIZE = 16
CAL = 8
STEP = 7  # grey levels between rows: JPEG moves a flat level by at most 2


def level(row):
    return 3 + STEP * row


def save(path: Path, value: int, rgb=False, shape=(20, 24)):
    path.parent.mkdir(parents=True, exist_ok=True)
    a = np.full(shape + ((3,) if rgb else ()), value, np.uint8)
    if rgb:
        a[..., 1] = (value * 7) % 256
        a[..., 2] = 255 - value
    Image.fromarray(a).save(path, quality=95) if path.suffix == ".jpg" else Image.fromarray(a).save(path)


def rows_of(bundle, split):
    """The row encoded in each image of a split (channel 0's flat level)."""
    norm = bundle.info["normalization"]
    x = getattr(bundle, split).images[:, 0].mean(axis=(1, 2))
    pixel = (x * norm["std"][0] + norm["mean"][0]) * 255
    return np.rint((pixel - 3) / STEP).astype(int)


def load(fmt, path, seed=0, **options):
    """A format's loader, found in the registry and called as load_dataset calls it."""
    return FORMATS.get(fmt)().load(Path(path), LoadRequest(SIZE, seed, CAL, **options))


def dataset(spec, seed=0, **fields):
    """load_dataset as a run calls it: the data section of the config, and the seed."""
    return load_dataset(DataConfig(dataset=spec, image_size=SIZE, **fields), seed)


def one_line_error(excinfo, *needles):
    msg = str(excinfo.value)
    assert "\n" not in msg, msg
    for n in needles:
        assert str(n) in msg, msg
    return msg


def check_bundle(b, channels, task_kind):
    for split in ("train", "val", "test"):
        s = getattr(b, split)
        assert s.images.dtype == np.float32 and s.images.shape[1:] == (channels, SIZE, SIZE)
        assert len(s.images) == len(s.labels) > 0
        if task_kind == "multilabel":
            assert s.labels.dtype == np.float32 and s.labels.ndim == 2
        else:
            assert s.labels.dtype == np.int64 and s.labels.ndim == 1
    x = b.train.images
    assert np.allclose(x.mean(axis=(0, 2, 3)), 0, atol=1e-4)
    assert np.allclose(x.std(axis=(0, 2, 3)), 1, atol=1e-3)
    assert len(b.info["normalization"]["mean"]) == channels
    assert b.calibration.shape == (min(CAL, len(b.train)), channels, SIZE, SIZE)
    assert b.task.kind == task_kind and b.image_size == SIZE and len(b.fingerprint) == 16
    assert b.info["counts"] == {s: len(getattr(b, s)) for s in ("train", "val", "test")}


# ---------------------------------------------------------------- MedMNIST

def write_npz(path: Path, n=(40, 10, 12), size=28, rgb=False, labels="binary", seed=0, **drop):
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, k in zip(("train", "val", "test"), n, strict=True):
        shape = (k, size, size, 3) if rgb else (k, size, size)
        arrays[f"{split}_images"] = rng.integers(0, 256, shape, dtype=np.uint8)
        if labels == "binary":
            arrays[f"{split}_labels"] = (np.arange(k) % 2)[:, None].astype(np.uint8)
        elif labels == "multilabel":
            arrays[f"{split}_labels"] = rng.integers(0, 2, (k, 14)).astype(np.uint8)
        else:
            arrays[f"{split}_labels"] = (np.arange(k) % int(labels))[:, None].astype(np.uint8)
    for key in drop:
        arrays.pop(key)
    np.savez(path, **arrays)
    return path


def test_medmnist_known_set_keeps_its_splits_task_and_classes(tmp_path):
    f = write_npz(tmp_path / "pneumoniamnist_64.npz")
    b = load("medmnist", f)
    check_bundle(b, 1, "binary")
    assert b.task.class_names == ("normal", "pneumonia")
    assert (len(b.train), len(b.val), len(b.test)) == (40, 10, 12)
    assert b.info["set"] == "pneumoniamnist" and b.info["format"] == "medmnist"
    assert b.info["class_counts"]["train"] == {"normal": 20, "pneumonia": 20}


def test_medmnist_rgb_multiclass_and_breast_labels_flipped(tmp_path):
    b = load("medmnist", write_npz(tmp_path / "pathmnist.npz", rgb=True, labels=9))
    check_bundle(b, 3, "multiclass")
    assert b.task.class_names == medmnist.SETS["pathmnist"][1]
    f = write_npz(tmp_path / "breastmnist.npz")
    b = load("medmnist", f)
    raw = np.load(f)["train_labels"][:, 0]
    assert b.task.class_names == ("normal, benign", "malignant")
    assert np.array_equal(b.train.labels, 1 - raw)


def test_medmnist_multilabel_and_unknown_names_inferred(tmp_path):
    b = load("medmnist", write_npz(tmp_path / "chestmnist_128.npz", labels="multilabel"))
    check_bundle(b, 1, "multilabel")
    assert b.train.labels.shape == (40, 14) and b.task.class_names[2] == "effusion"
    b = load("medmnist", write_npz(tmp_path / "mine.npz", labels=4))
    assert b.task.kind == "multiclass" and b.task.class_names == tuple(f"class_{k}" for k in range(4))
    assert "inferred" in b.info["note"]
    assert load("medmnist", write_npz(tmp_path / "other.npz")).task.kind == "binary"
    b = load("medmnist", write_npz(tmp_path / "ml.npz", labels="multilabel"))
    assert b.task.kind == "multilabel" and b.task.num_outputs == 14


def test_medmnist_bad_files_are_one_line_errors_naming_the_path(tmp_path):
    with pytest.raises(ValueError) as e:
        load("medmnist", tmp_path / "nope.npz")
    one_line_error(e, tmp_path / "nope.npz", "not found", "zenodo")
    f = write_npz(tmp_path / "pathmnist.npz", test_labels=True)
    with pytest.raises(ValueError) as e:
        load("medmnist", f)
    one_line_error(e, f, "missing keys test_labels", "train_images")
    (tmp_path / "junk.npz").write_text("not a zip\n")
    with pytest.raises(ValueError) as e:
        load("medmnist", tmp_path / "junk.npz")
    one_line_error(e, tmp_path / "junk.npz", "not a readable .npz")
    f = write_npz(tmp_path / "pneumoniamnist.npz", labels=5)
    with pytest.raises(ValueError) as e:
        load("medmnist", f)
    one_line_error(e, f, "outside 0..1")


# ---------------------------------------------------------------- folders

def make_folder(root: Path, classes, per_class=8, rgb=False, sub="", ext=".png"):
    row = 0
    for c in classes:
        for i in range(per_class):
            save(root / c / sub / f"img{i}{ext}", level(row), rgb=rgb)
            row += 1
    return root


def test_folder_binary_stratified_split_normal_class_first(tmp_path):
    root = make_folder(tmp_path / "cell_images", ["Parasitized", "Uninfected"], 10, rgb=True)
    (root / "Parasitized" / "Thumbs.db").write_bytes(b"\0")
    b = load("folder", root)
    check_bundle(b, 3, "binary")
    assert b.task.class_names == ("Uninfected", "Parasitized")
    seen = [set(rows_of(b, s)) for s in ("train", "val", "test")]
    assert not (seen[0] & seen[1] or seen[0] & seen[2] or seen[1] & seen[2])
    assert set().union(*seen) == set(range(20))
    for s in ("train", "val", "test"):  # stratified: both classes everywhere
        assert set(getattr(b, s).labels) == {0, 1}
        # labels follow the folder: rows 0-9 Parasitized (1), 10-19 Uninfected (0)
        assert np.array_equal(getattr(b, s).labels, (rows_of(b, s) < 10).astype(np.int64))
    again = load("folder", root)
    assert again.fingerprint == b.fingerprint
    assert np.array_equal(again.test.images, b.test.images)
    assert load("folder", root, seed=1).fingerprint != b.fingerprint


def test_folder_unlabelled_images_are_for_distillation_only(tmp_path):
    root = make_folder(tmp_path / "cells", ["Normal", "Sick"], 10)
    for i in range(5):
        save(root / "unlabelled" / f"u{i}.png", level(20 + i))
    b = load("folder", root)
    assert b.task.class_names == ("Normal", "Sick")  # not a class
    assert b.transfer.shape == (5, 1, SIZE, SIZE) and b.info["counts"]["unlabelled"] == 5
    # standardised like the training split
    plain = load("folder", make_folder(tmp_path / "plain", ["Normal", "Sick"], 10))
    assert plain.transfer is None
    assert np.array_equal(plain.train.images, b.train.images)
    assert plain.fingerprint != b.fingerprint


def test_folder_reads_images_subfolders_not_masks_and_stays_grayscale(tmp_path):
    classes = ["COVID", "Lung_Opacity", "Normal", "Viral Pneumonia"]
    root = make_folder(tmp_path / "COVID-19_Radiography_Dataset", classes, 6, sub="images")
    for c in classes:
        save(root / c / "masks" / "m.png", 255)
    b = load("folder", root)
    check_bundle(b, 1, "multiclass")
    assert b.task.class_names == tuple(classes)
    assert sum(b.info["counts"].values()) == 24


def test_folder_keeps_train_val_test_layout_and_labels_select_classes(tmp_path):
    root = tmp_path / "xray"
    for split, n in (("train", 6), ("val", 3), ("test", 4)):
        make_folder(root / split, ["NORMAL", "PNEUMONIA", "TB"], n, ext=".jpg")
    b = load("folder", root)
    assert (len(b.train), len(b.val), len(b.test)) == (18, 9, 12)
    assert b.task.class_names == ("NORMAL", "PNEUMONIA", "TB")
    b = load("folder", root, labels=["PNEUMONIA", "NORMAL"])
    assert b.task.kind == "binary" and b.task.class_names == ("PNEUMONIA", "NORMAL")
    assert (len(b.train), len(b.val), len(b.test)) == (12, 6, 8)
    # no val/: it comes out of train, stratified
    import shutil

    shutil.rmtree(root / "val")
    b = load("folder", root)
    assert len(b.test) == 12 and len(b.train) + len(b.val) == 18 and set(b.val.labels) == {0, 1, 2}


def test_folder_errors_name_the_path(tmp_path):
    with pytest.raises(ValueError) as e:
        load("folder", tmp_path / "missing")
    one_line_error(e, tmp_path / "missing", "folder not found", "one sub-folder of images per class")
    root = make_folder(tmp_path / "one", ["only"], 5)
    with pytest.raises(ValueError) as e:
        load("folder", root)
    one_line_error(e, root, "1 class folder")
    root = make_folder(tmp_path / "two", ["a", "b"], 5)
    with pytest.raises(ValueError) as e:
        load("folder", root, labels=["a", "c"])
    one_line_error(e, root, "no class folder 'c'")
    (root / "b" / "img0.png").write_bytes(b"broken")
    with pytest.raises(ValueError) as e:
        load("folder", root)
    one_line_error(e, f"{root}: image b/img0.png: not an image PIL can read", "1 of 10 images")


# ---------------------------------------------------------------- CheXpert

HEADER = ["Path", "Sex", "Age", "Frontal/Lateral", "AP/PA", "No Finding", "Cardiomegaly",
          "Edema", "Consolidation", "Atelectasis", "Pleural Effusion", "Pneumothorax"]
CHOICES = ["1.0", "0.0", "-1.0", ""]


def make_chexpert(tmp_path: Path, n_train_patients=12, n_valid_patients=4):
    """CheXpert-v1.0-small/{train,valid}/patientNNNNN/study1/view{1_frontal,2_lateral}.jpg."""
    root = tmp_path / "CheXpert-v1.0-small"
    rng = np.random.default_rng(0)
    raw = {}  # row -> (patient, view, {finding: cell})
    row = 0
    for split, first, n in (("train", 1, n_train_patients), ("valid", 64541, n_valid_patients)):
        lines = [",".join(HEADER)]
        for p in range(first, first + n):
            for view, kind in (("view1_frontal", "Frontal"), ("view2_lateral", "Lateral")):
                rel = f"CheXpert-v1.0-small/{split}/patient{p:05d}/study1/{view}.jpg"
                save(tmp_path / rel, level(row))
                cells = [CHOICES[k] if split == "train" else CHOICES[k % 2]
                         for k in rng.integers(0, 4, len(HEADER) - 5)]
                cells[4] = ["1.0", "0.0", "-1.0", ""][row % 4] if split == "train" else cells[4]
                appa = "AP" if kind == "Frontal" else ""
                lines.append(",".join([rel, "Female", "60", kind, appa, *cells]))
                raw[row] = (f"patient{p:05d}", kind, dict(zip(HEADER[5:], cells, strict=True)))
                row += 1
        (root / f"{split}.csv").write_text("\n".join(lines) + "\n")
    return root, raw


def expected(raw, row, names, policy):
    cells = raw[row][2]
    out = []
    for n in names:
        v = cells[n]
        out.append(0.0 if v == "" else {"u-ones": 1.0, "u-zeros": 0.0, "u-ignore": np.nan}[policy]
                   if v == "-1.0" else float(v))
    return out


@pytest.mark.parametrize("policy", ["u-ones", "u-zeros", "u-ignore"])
def test_chexpert_uncertainty_policies_and_blanks(tmp_path, policy):
    root, raw = make_chexpert(tmp_path)
    b = load("chexpert", root / "train.csv", uncertainty=policy)
    check_bundle(b, 1, "multilabel")
    names = list(chexpert.COMPETITION)
    assert b.task.class_names == tuple(names)
    for split in ("train", "val", "test"):
        y = getattr(b, split).labels
        want = np.array([expected(raw, r, names, policy) for r in rows_of(b, split)])
        assert np.array_equal(np.isnan(y), np.isnan(want))  # NaN exactly where -1 was
        assert np.array_equal(np.nan_to_num(y, nan=-7), np.nan_to_num(want, nan=-7))
    if policy == "u-ignore":
        assert np.isnan(b.train.labels).any()
    else:
        assert not any(np.isnan(getattr(b, s).labels).any() for s in ("train", "val", "test"))
    assert b.info["uncertainty"] == policy


def test_chexpert_patient_split_valid_csv_is_test_and_frontal_only(tmp_path):
    root, raw = make_chexpert(tmp_path)
    b = load("chexpert", root / "train.csv")
    patients = {s: {raw[r][0] for r in rows_of(b, s)} for s in ("train", "val", "test")}
    assert not (patients["train"] & patients["val"] or patients["train"] & patients["test"]
                or patients["val"] & patients["test"])
    assert patients["test"] == {f"patient{p}" for p in range(64541, 64545)}
    for s in ("train", "val", "test"):  # the ids the patient-level bootstrap resamples
        assert set(getattr(b, s).groups) == patients[s]
    assert len(b.test) == 8 and len(b.train) + len(b.val) == 24
    assert "valid.csv" in b.info["split"]
    views = {raw[r][1] for s in ("train", "val", "test") for r in rows_of(b, s)}
    assert views == {"Frontal", "Lateral"}
    f = load("chexpert", root / "train.csv", frontal_only=True)
    assert {raw[r][1] for s in ("train", "val", "test") for r in rows_of(f, s)} == {"Frontal"}
    assert len(f.test) == 4 and len(f.train) + len(f.val) == 12
    assert f.fingerprint != b.fingerprint
    # AP/PA is the fallback view column
    csv = root / "train.csv"
    lines = csv.read_text().splitlines()
    cut = [",".join(c for i, c in enumerate(ln.split(",")) if i != 3) for ln in lines]
    (root / "nofl.csv").write_text("\n".join(cut) + "\n")
    g = load("chexpert", root / "nofl.csv", frontal_only=True)
    assert len(g.train) + len(g.val) + len(g.test) == 12


def test_chexpert_labels_select_findings_and_errors_name_the_csv(tmp_path):
    root, _ = make_chexpert(tmp_path)
    csv = root / "train.csv"
    b = load("chexpert", csv, labels=["Pneumothorax", "Edema"])
    assert b.task.class_names == ("Pneumothorax", "Edema") and b.train.labels.shape[1] == 2
    with pytest.raises(ValueError) as e:
        load("chexpert", csv, labels=["Fracture"])
    one_line_error(e, csv, "no finding column 'Fracture'", "stanfordmlgroup")
    (root / "nopath.csv").write_text("Image,Edema\na.jpg,1\n")
    with pytest.raises(ValueError) as e:
        load("chexpert", root / "nopath.csv")
    one_line_error(e, root / "nopath.csv", "no 'Path' column")
    with pytest.raises(ValueError) as e:
        load("chexpert", root / "absent.csv")
    one_line_error(e, root / "absent.csv", "file not found")
    gone = tmp_path / "CheXpert-v1.0-small/train/patient00003/study1/view2_lateral.jpg"
    gone.unlink()
    with pytest.raises(ValueError) as e:
        load("chexpert", csv)
    one_line_error(e, gone, "not found")
    with pytest.raises(ValueError) as e:
        load("chexpert", csv, uncertainty="u-maybe")
    one_line_error(e, "u-ones, u-zeros, u-ignore")


def test_chestxray14_csv_with_official_test_list(tmp_path):
    root = tmp_path / "nih"
    lines = ["Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,View Position"]
    findings = ["No Finding", "Effusion", "Cardiomegaly|Effusion", "Hernia", "Mass|Nodule"]
    test = []
    for row in range(30):
        patient = row // 2 + 1
        name = f"{patient:08d}_{row % 2:03d}.png"
        folder_ = root / ("images_001" if row < 15 else "images_002") / "images"
        save(folder_ / name, level(row))
        lines.append(f"{name},{findings[row % 5]},{row % 2},{patient},50,PA")
        if patient > 12:
            test.append(name)
    root.joinpath("Data_Entry_2017.csv").write_text("\n".join(lines) + "\n")
    root.joinpath("test_list.txt").write_text("\n".join(test) + "\n")
    b = load("chexpert", root / "Data_Entry_2017.csv")
    check_bundle(b, 1, "multilabel")
    assert b.task.class_names == chexpert.CXR14_FINDINGS
    assert sorted(rows_of(b, "test")) == list(range(24, 30))
    assert not set(r // 2 for r in rows_of(b, "train")) & set(r // 2 for r in rows_of(b, "val"))
    eff = b.task.class_names.index("Effusion")
    for s in ("train", "val", "test"):
        want = np.array([findings[r % 5] in ("Effusion", "Cardiomegaly|Effusion")
                         for r in rows_of(b, s)])
        assert np.array_equal(getattr(b, s).labels[:, eff] == 1, want)


# ---------------------------------------------------------------- HAM10000 / ISIC

def make_ham(tmp_path: Path):
    root = tmp_path / "ham"
    lines = ["lesion_id,image_id,dx,dx_type,age,sex,localization"]
    lesion_of = {}
    row = 0
    for k, dx in enumerate(ham10000.DX):
        for lesion in range(3):
            lid = f"HAM_{k}{lesion:06d}"
            for _ in range(1 + (lesion + k) % 2):
                iid = f"ISIC_{row:07d}"
                part = "HAM10000_images_part_1" if row % 2 else "HAM10000_images_part_2"
                save(root / part / f"{iid}.jpg", level(row), rgb=True)
                lines.append(f"{lid},{iid},{dx},histo,50.0,male,back")
                lesion_of[row] = lid
                row += 1
    (root / "HAM10000_metadata.csv").write_text("\n".join(lines) + "\n")
    return root, lesion_of


def test_ham10000_lesion_grouped_split(tmp_path):
    root, lesion_of = make_ham(tmp_path)
    b = load("ham10000", root / "HAM10000_metadata.csv")
    check_bundle(b, 3, "multiclass")
    assert b.task.class_names == ham10000.DX
    lesions = {s: {lesion_of[r] for r in rows_of(b, s)} for s in ("train", "val", "test")}
    assert not (lesions["train"] & lesions["val"] or lesions["train"] & lesions["test"]
                or lesions["val"] & lesions["test"])
    assert sum(len(getattr(b, s)) for s in ("train", "val", "test")) == len(lesion_of)
    assert set(b.test.groups) == lesions["test"]
    for s in ("train", "val", "test"):  # labels follow the dx of each row
        dx_index = [int(lesion_of[r][4]) for r in rows_of(b, s)]
        assert np.array_equal(getattr(b, s).labels, dx_index)
    b2 = load("ham10000", root / "HAM10000_metadata.csv", labels=["nv", "mel"])
    assert b2.task.kind == "binary" and b2.task.class_names == ("nv", "mel")
    os.remove(root / "HAM10000_images_part_2" / "ISIC_0000000.jpg")
    with pytest.raises(ValueError) as e:
        load("ham10000", root / "HAM10000_metadata.csv")
    one_line_error(e, "ISIC_0000000.jpg", "not found", "10.7910/DVN/DBW86T")


def test_isic2019_ground_truth_drops_empty_unk_and_groups_lesions(tmp_path):
    root = tmp_path / "isic"
    gt = ["image," + ",".join(ham10000.ISIC2019)]
    meta = ["image,age_approx,anatom_site_general,lesion_id,sex"]
    row = 0
    for k in range(8):
        for j in range(4):
            name = f"ISIC_{row:07d}"
            save(root / "ISIC_2019_Training_Input" / f"{name}.jpg", level(row), rgb=True)
            gt.append(name + "," + ",".join("1.0" if c == k else "0.0" for c in range(9)))
            meta.append(f"{name},50,back,{'' if j == 3 else f'L{k}_{j // 2}'},male")
            row += 1
    (root / "ISIC_2019_Training_GroundTruth.csv").write_text("\n".join(gt) + "\n")
    (root / "ISIC_2019_Training_Metadata.csv").write_text("\n".join(meta) + "\n")
    b = load("ham10000", root / "ISIC_2019_Training_GroundTruth.csv")
    assert b.task.class_names == ham10000.ISIC2019[:8] and b.info["format"] == "isic2019"
    splits = {s: set(rows_of(b, s)) for s in ("train", "val", "test")}
    for a, c in ((0, 1), (4, 5), (8, 9)):  # rows sharing a lesion id stay together
        assert any({a, c} <= v for v in splits.values())


# ---------------------------------------------------------------- metrics mask ignored labels

def test_u_ignore_nan_labels_are_masked_out_of_auc():
    from bench.stats.auc import auc_roc
    from bench.task_kinds import Task

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, (60, 3)).astype(np.float32)
    score = np.clip(y * 0.3 + rng.random((60, 3)), 0, 1)
    y[rng.random((60, 3)) < 0.3] = np.nan
    task = Task("multilabel", ("a", "b", "c"))
    auc, reasons = auc_roc(task, y, score)
    per = [roc_auc_score(y[~np.isnan(y[:, j]), j], score[~np.isnan(y[:, j]), j]) for j in range(3)]
    assert auc == pytest.approx(np.mean(per)) and not reasons


# ---------------------------------------------------------------- cards and dispatch

def test_every_card_loads_and_medmnist_cards_match_the_table():
    cards = all_cards()
    assert {"chexpert-v1.0-small", "chestx-ray14", "covid19-radiography", "malaria-cells",
            "ham10000", "isic2019"} <= set(cards)
    assert set(medmnist.SETS) <= set(cards)
    for name, card in cards.items():
        assert card.format in FORMATS and card.obtain and card.licence and card.citation
        if card.format == "medmnist":
            assert (card.task, card.classes) == medmnist.SETS[name]
    assert cards["chexpert-v1.0-small"].classes == chexpert.COMPETITION
    assert cards["chestx-ray14"].classes == chexpert.CXR14_FINDINGS
    assert cards["ham10000"].classes == ham10000.DX
    assert CARDS_DIR.name == "datasets"


@pytest.mark.parametrize("text,needle", [
    ('name = "x"\nformat = ', "invalid dataset card"),
    ('name = "bad"\n', "'title' must be a non-empty string"),
])
def test_malformed_card_is_a_one_line_error_naming_the_file(tmp_path, text, needle):
    f = tmp_path / "bad.toml"
    f.write_text(text)
    with pytest.raises(ValueError) as e:
        load_card(f)
    one_line_error(e, f, needle)
    good = (CARDS_DIR / "ham10000.toml").read_text()
    f.write_text(good.replace('task = "multiclass"', 'task = "regression"').replace(
        'name = "ham10000"', 'name = "bad"'))
    with pytest.raises(ValueError) as e:
        load_card(f)
    one_line_error(e, f, "task 'regression'")


def test_load_dataset_dispatches_every_spec_form(tmp_path):
    sizes = SyntheticSizes(train=16, val=8, test=8, calibration=CAL)
    mm = tmp_path / "mm"
    mm.mkdir()
    write_npz(mm / "pneumoniamnist.npz")
    cells = make_folder(tmp_path / "cell_images", ["Parasitized", "Uninfected"], 6, rgb=True)
    cx, _ = make_chexpert(tmp_path)
    ham, _ = make_ham(tmp_path)
    forms = {
        ("synthetic", None): "synthetic",
        (f"medmnist:{mm / 'pneumoniamnist.npz'}", None): "medmnist:pneumoniamnist",
        ("medmnist:pneumoniamnist.npz", str(mm)): "medmnist:pneumoniamnist",
        (f"folder:{cells}", None): "folder:cell_images",
        (f"chexpert:{cx / 'train.csv'}", None): "chexpert:CheXpert-v1.0-small",
        (f"chexpert:{cx}", None): "chexpert:CheXpert-v1.0-small",
        (f"ham10000:{ham / 'HAM10000_metadata.csv'}", None): "ham10000:ham",
        (f"ham10000:{ham}", None): "ham10000:ham",
        ("pneumoniamnist", str(mm)): "pneumoniamnist",
        ("malaria-cells", str(cells)): "malaria-cells",
        ("chexpert-v1.0-small", str(cx)): "chexpert-v1.0-small",
        ("ham10000", str(ham)): "ham10000",
    }
    for (spec, root), name in forms.items():
        b = dataset(spec, sizes=sizes, data_root=root)
        assert b.name == name, spec
        assert len(b.calibration) == CAL
    b = dataset("malaria-cells", sizes=sizes, data_root=str(cells))
    assert b.task.class_names == ("Uninfected", "Parasitized")
    assert b.info["card"] == "malaria-cells" and b.info["licence"]
    b = dataset("chexpert-v1.0-small", sizes=sizes, data_root=str(cx),
                     uncertainty="u-ignore", frontal_only=True, labels=["Edema"])
    assert b.task.class_names == ("Edema",) and b.info["frontal_only"]


def test_load_dataset_errors(tmp_path):
    with pytest.raises(ValueError) as e:
        dataset("bogus:/x")
    one_line_error(e, "unknown dataset", "folder:DIR", "medmnist:FILE.npz", "chexpert:CSV",
                   "ham10000:CSV", "pneumoniamnist", "chexpert-v1.0-small")
    with pytest.raises(ValueError) as e:
        dataset("pneumoniamnist")
    one_line_error(e, "needs --data-root", "zenodo")
    with pytest.raises(ValueError) as e:
        dataset("pneumoniamnist", data_root=str(tmp_path))
    one_line_error(e, tmp_path, "pneumoniamnist.npz", "zenodo")
    with pytest.raises(ValueError) as e:
        dataset(f"chexpert:{tmp_path}")
    one_line_error(e, tmp_path, "none of train.csv")
    write_npz(tmp_path / "pneumoniamnist.npz")
    with pytest.raises(ValueError, match="--frontal-only applies to chexpert"):
        dataset(f"medmnist:{tmp_path / 'pneumoniamnist.npz'}", frontal_only=True)
    with pytest.raises(ValueError) as e:
        dataset(f"medmnist:{tmp_path / 'pneumoniamnist.npz'}", labels=["a"])
    one_line_error(e, "--labels applies to folder, chexpert, ham10000 data, not to medmnist data")
    with pytest.raises(ValueError, match="--uncertainty applies to chexpert"):
        dataset("synthetic", uncertainty="u-zeros")


# ---------------------------------------------------------------- the format registry

def test_registry_lists_the_builtin_formats_and_their_spec_forms():
    from bench.data import spec_forms
    from bench.data.formats import ordered

    builtins = {"folder": folder.Folder, "medmnist": medmnist.MedMNIST,
                "chexpert": chexpert.CheXpert, "ham10000": ham10000.HAM10000}
    assert set(builtins) <= set(FORMATS.names()) and list(ordered())[:4] == list(builtins)
    for name, cls in builtins.items():
        assert FORMATS.get(name) is cls and issubclass(cls, Format) and cls.name == name
        assert cls.expected and cls.obtain and cls.options <= {"labels", "uncertainty",
                                                               "frontal_only"}
    assert chexpert.CheXpert.default_files[0] == "train.csv" and not folder.Folder.default_files
    assert spec_forms().startswith(
        "synthetic, folder:DIR, medmnist:FILE.npz, chexpert:CSV, ham10000:CSV")
    with pytest.raises(TypeError, match="unknown option"):
        type("Bad", (Format,), {"name": "bad", "options": {"colour"}})


class Toy(Format):
    """A format the way a third party writes one: a .npy of flat uint8 images."""

    name = "toy"
    spec = "toy:FILE.npy"
    expected = "a .npy of uint8 images (N, H, W)"
    obtain = "the test that wrote it"
    default_files = ("toy.npy",)
    options = frozenset({"labels"})
    requests: list = []

    def load(self, path, request):
        from bench.data.common import make_bundle
        from bench.task_kinds import Task

        self.requests.append(request)
        x = np.load(path)
        y = np.arange(len(x)) % 2
        parts = {"train": (x[:20], y[:20]), "val": (x[20:26], y[20:26]),
                 "test": (x[26:], y[26:])}
        classes = request.labels or ("neg", "pos")
        return make_bundle(request.name or f"{self.name}:{path.stem}", Task("binary", tuple(classes)),
                           parts, request.image_size, request.seed, request.calibration,
                           {"format": "toy", "source": str(path)}, {"format": "toy"})


def write_toy(folder_: Path) -> Path:
    folder_.mkdir(parents=True, exist_ok=True)
    np.save(folder_ / "toy.npy", np.stack([np.full((SIZE, SIZE), level(r), np.uint8)
                                           for r in range(32)]))
    return folder_


@pytest.fixture
def toy():
    FORMATS.register(Toy)
    Toy.requests.clear()
    try:
        yield Toy
    finally:
        FORMATS._items.pop("toy", None)


def test_a_format_registered_at_run_time_resolves_and_loads(tmp_path, toy):
    from bench.data import check, resolve, spec_forms

    where = write_toy(tmp_path / "mine")
    src = resolve(f"toy:{where}")
    assert (src.format, src.path) == ("toy", (where / "toy.npy").resolve())
    assert check(DataConfig(dataset=f"toy:{where}", image_size=SIZE)) == src
    assert spec_forms().endswith(", toy:FILE.npy")
    b = dataset(f"toy:{where}", seed=3, labels=["healthy", "ill"],
                sizes=SyntheticSizes(calibration=CAL))
    check_bundle(b, 1, "binary")
    assert b.name == "toy:toy" and b.task.class_names == ("healthy", "ill")
    (request,) = toy.requests
    assert request == LoadRequest(SIZE, 3, CAL, ("healthy", "ill"))
    with pytest.raises(ValueError) as e:
        dataset(f"toy:{where}", frontal_only=True)
    one_line_error(e, "--frontal-only applies to chexpert data, not to toy data")
    with pytest.raises(ValueError) as e:
        dataset(f"toy:{tmp_path}")
    one_line_error(e, tmp_path, "folder holds none of toy.npy", "the test that wrote it")
    with pytest.MonkeyPatch.context() as mp:  # every bundle must carry its task
        mp.setattr(Toy, "load", lambda self, path, request: "not a bundle")
        with pytest.raises(TypeError, match="'toy' returned str, not a DataBundle"):
            dataset(f"toy:{where}")


def test_the_format_leaves_the_registry_cleanly(tmp_path, toy):
    FORMATS._items.pop("toy")
    assert "toy" not in FORMATS and "toy" not in FORMATS.names()
    with pytest.raises(ValueError) as e:
        dataset(f"toy:{write_toy(tmp_path / 'mine')}")
    one_line_error(e, "unknown dataset")


def test_an_entry_point_plugin_adds_a_format_without_editing_the_project(tmp_path):
    """A distribution's `medbench.formats` entry point names its module, which registers."""
    from importlib import metadata

    (tmp_path / "medbench_toy_plugin.py").write_text(
        "from bench.data import FORMATS\n"
        "from bench.data.folder import Folder\n\n"
        "@FORMATS.register\n"
        "class Plugged(Folder):\n"
        "    name = 'plugged'\n")
    entry = metadata.EntryPoint("plugged", "medbench_toy_plugin", FORMATS.group)
    real = metadata.entry_points
    where = make_folder(tmp_path / "cells", ["Normal", "Sick"], 6)
    with pytest.MonkeyPatch.context() as mp:  # all undone before the last assert
        mp.syspath_prepend(str(tmp_path))
        mp.setattr(metadata, "entry_points", lambda **kw: (
            [entry] if kw.get("group") == FORMATS.group else real(**kw)))
        mp.setattr(FORMATS, "_items", dict(FORMATS.items()))  # a copy: builtins stay
        mp.setattr(FORMATS, "_loaded", False)  # so the entry points are read again
        try:
            b = dataset(f"plugged:{where}", labels=["Sick", "Normal"])
            assert b.name == "folder:cells" and b.task.class_names == ("Sick", "Normal")
            assert FORMATS.get("plugged").spec == "plugged:PATH"  # the default spec form
            assert FORMATS.get("plugged").options == {"labels"}  # inherited
        finally:
            sys.modules.pop("medbench_toy_plugin", None)
    assert "plugged" not in FORMATS and "folder" in FORMATS


def test_check_is_cheap_and_refuses_options_in_one_line(tmp_path):
    from bench.data import check

    csv = tmp_path / "train.csv"
    csv.write_text("not,read,yet\n")  # check reads no table and no image
    assert check(DataConfig(dataset=f"chexpert:{tmp_path}", frontal_only=True)).path == csv
    write_npz(tmp_path / "pneumoniamnist.npz")
    cases = [
        (dict(dataset="pneumoniamnist", data_root=str(tmp_path), uncertainty="u-zeros"),
         "--uncertainty applies to chexpert data, not to pneumoniamnist (medmnist) data"),
        (dict(dataset=f"chexpert:{csv}", uncertainty="u-maybe"),
         "--uncertainty 'u-maybe': expected one of u-ones, u-zeros, u-ignore"),
        (dict(dataset=f"chexpert:{csv}", labels=["Edema", "Edema"]),
         "--labels: 'Edema' given more than once"),
        (dict(image_size=8), "--image-size 8: the generator needs at least 16 pixels"),
        (dict(task="regression"), "--task regression"),
        (dict(dataset=f"folder:{tmp_path / 'nowhere'}"), "nowhere: not found"),
    ]
    for fields, message in cases:
        with pytest.raises(ValueError) as e:
            check(DataConfig(**fields))
        one_line_error(e, message)


def test_cli_missing_npz_exits_2_with_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "bench", "run", "--dataset",
                           "medmnist:/nonexistent.npz"], capture_output=True, text=True,
                          cwd=tmp_path, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])})
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: /nonexistent.npz: not found"), lines
    assert "zenodo" in lines[0]
    assert not any(tmp_path.iterdir())  # no run directory was made


def test_cli_rejects_synthetic_options_for_real_data(capsys):
    from bench.cli import main

    assert main(["run", "--dataset", "medmnist:/x.npz", "--task", "multiclass"]) == 2
    assert "--task and --num-classes shape the synthetic dataset" in capsys.readouterr().err


# ---------------------------------------------------------------- end to end (slow)

@pytest.mark.slow
def test_quick_run_on_a_medmnist_npz(tmp_path):
    import pandas as pd

    rng = np.random.default_rng(0)

    def split(n):
        y = np.arange(n) % 3
        x = rng.integers(0, 60, (n, 28, 28)).astype(np.uint8)
        for k in range(3):  # a class-dependent bright square: learnable in one epoch
            x[y == k, 4 + 7 * k:10 + 7 * k, 4:24] += 150
        return x, y[:, None].astype(np.uint8)

    arrays = {}
    for s, n in (("train", 210), ("val", 30), ("test", 60)):
        arrays[f"{s}_images"], arrays[f"{s}_labels"] = split(n)
    f = tmp_path / "toymnist.npz"
    np.savez(f, **arrays)
    from tests.helpers.probe import fresh_cache

    env = {**os.environ, "MEDBENCH_CACHE": str(fresh_cache(tmp_path / "cache")),
           "PYTHONPATH": str(Path(__file__).parents[2])}
    proc = subprocess.run([sys.executable, "-m", "bench", "run", "--quick", "--dataset",
                           f"medmnist:{f}", "--methods", "quant.dynamic", "--backends", "torch",
                           "--out", str(tmp_path / "run")], capture_output=True, text=True,
                          env=env, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    df = pd.read_csv(tmp_path / "run" / "results.csv", keep_default_na=False, na_values=[""])
    assert list(df["model"]) == ["teacher", "student", "quant.dynamic"]
    assert df["status"].str.startswith("ok;quick").all()  # ";unstable" may follow
    import json

    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["data"]["task"] == "multiclass" and manifest["data"]["channels"] == 1

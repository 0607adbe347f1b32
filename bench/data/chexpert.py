"""Chest X-ray CSVs: CheXpert (`train.csv`) and ChestX-ray14 (`Data_Entry_2017.csv`).

CheXpert: a `Path` column, as the archive ships it relative to the folder above the
dataset (`CheXpert-v1.0-small/train/patient00001/study1/view1_frontal.jpg`), and one
column per finding holding 1, 0, -1 (uncertain) or blank (not mentioned). Uncertain
labels follow the policy (Irvin et al. 2019): u-ones -> 1, u-zeros -> 0, u-ignore -> NaN,
which the loss and the metrics mask out. Blanks are negatives under every policy: the
labeller found no mention, which is how the CheXpert paper and its baselines read them.
Splits are by patient (`patientNNNNN` in the path), and the archive's `valid.csv` beside
`train.csv` (radiologist-labelled, no uncertain labels) is the test set.

ChestX-ray14: `Image Index`, pipe-separated `Finding Labels`, `Patient ID`; images in
`images/` or `images_*/images/` beside the CSV; the official `test_list.txt`, when present,
is the test set. It has no uncertain labels.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from bench.data import DataBundle
from bench.data.common import TEST_FRACTION, VAL_FRACTION, data_error, grouped_split, make_bundle
from bench.data.csv_tables import csv_rows, found_columns, numeric_column, read_csv
from bench.data.formats import FORMATS, UNCERTAINTY_POLICIES, Format, LoadRequest
from bench.data.images import files_digest, index_images, read_splits
from bench.inputs import plural
from bench.task_kinds import Task

POLICIES = UNCERTAINTY_POLICIES
COMPETITION = ("Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Pleural Effusion")
CXR14_FINDINGS = ("Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule",
                  "Pneumonia", "Pneumothorax", "Consolidation", "Edema", "Emphysema",
                  "Fibrosis", "Pleural_Thickening", "Hernia")
CHEXPERT_META = ("Path", "Sex", "Age", "Frontal/Lateral", "AP/PA")
OBTAIN = ("https://stanfordmlgroup.github.io/competitions/chexpert/ (CheXpert) or "
          "https://nihcc.app.box.com/v/ChestXray-NIHCC (ChestX-ray14)")
EXPECTED = ("a CheXpert train.csv (Path + finding columns of 1/0/-1/blank) or ChestX-ray14 "
            "Data_Entry_2017.csv (Image Index, Finding Labels, Patient ID)")
LABELS = "labels 1, 0, -1 or blank"
DEFAULT_FILES = ("train.csv", "Data_Entry_2017_v2020.csv", "Data_Entry_2017.csv")


@FORMATS.register
class CheXpert(Format):
    """Chest X-ray tables: their uncertain labels and frontal / lateral views are why
    --uncertainty and --frontal-only exist; --labels picks the findings."""

    name = "chexpert"
    spec = "chexpert:CSV"
    expected = EXPECTED
    obtain = OBTAIN
    default_files = DEFAULT_FILES
    options = frozenset({"labels", "uncertainty", "frontal_only"})

    def load(self, path: Path, request: LoadRequest) -> DataBundle:
        r = request
        if r.uncertainty not in POLICIES:
            raise ValueError(f"--uncertainty {r.uncertainty!r}: expected one of "
                             f"{', '.join(POLICIES)}")
        return _load(Path(path).expanduser().resolve(), r.image_size, r.seed, r.calibration,
                     r.uncertainty, r.frontal_only, r.labels, r.name)


def _load(csv: Path, image_size: int, seed: int, calibration: int, uncertainty: str,
          frontal_only: bool, labels, name):
    df = read_csv(csv, EXPECTED, OBTAIN)
    if {"Image Index", "Finding Labels"} <= set(df.columns):
        return _chestxray14(csv, df, image_size, seed, calibration, frontal_only, labels, name)
    if "Path" not in df.columns:
        raise data_error(csv, "no 'Path' column (nor ChestX-ray14's 'Image Index' and "
                         f"'Finding Labels'; found: {found_columns(df)})", EXPECTED, OBTAIN)
    findings = [c for c in df.columns if c not in CHEXPERT_META]
    names = list(labels) if labels else list(COMPETITION)
    missing = [c for c in names if c not in df.columns]
    if missing:
        raise data_error(csv, f"no finding column {', '.join(map(repr, missing))} (found: "
                         f"{', '.join(findings)})", EXPECTED, OBTAIN)

    train = _chexpert_rows(csv, df, names, uncertainty, frontal_only)
    valid_csv = csv.with_name("valid.csv")
    test = None
    if csv.name.lower() == "train.csv" and valid_csv.is_file():
        vdf = read_csv(valid_csv, EXPECTED, OBTAIN)
        missing = [c for c in ("Path", *names) if c not in vdf.columns]
        if missing:
            raise data_error(valid_csv, f"no column {', '.join(map(repr, missing))} (found: "
                             f"{found_columns(vdf)})", EXPECTED, OBTAIN)
        test = _chexpert_rows(valid_csv, vdf, names, uncertainty, frontal_only)
    parts, info = _split(csv, train, test, seed, "valid.csv beside train.csv")
    info["uncertain_labels_read"] = {csv.name: train["uncertain"],
                                     **({valid_csv.name: test["uncertain"]} if test else {})}
    info["blank_labels_read"] = {csv.name: train["blank"],
                                 **({valid_csv.name: test["blank"]} if test else {})}
    info.update(uncertainty=uncertainty, blanks="negative (0) under every policy",
                frontal_only=frontal_only,
                views=("frontal only" if frontal_only else "frontal and lateral"))
    return _bundle(csv, parts, names, image_size, seed, calibration, info,
                   {"uncertainty": uncertainty, "frontal_only": frontal_only},
                   name or f"chexpert:{csv.parent.name}", "chexpert")


def _chexpert_rows(csv: Path, df, names: list[str], uncertainty: str, frontal_only: bool) -> dict:
    if frontal_only:
        if "Frontal/Lateral" in df.columns:
            df = df[df["Frontal/Lateral"].astype(str).str.strip().str.lower() == "frontal"]
        elif "AP/PA" in df.columns:
            df = df[df["AP/PA"].notna() & (df["AP/PA"].astype(str).str.strip() != "")]
        else:
            raise data_error(csv, "--frontal-only needs a 'Frontal/Lateral' or 'AP/PA' column",
                             EXPECTED, OBTAIN)
    if len(df) == 0:
        raise data_error(csv, "no rows" + (" with a frontal view" if frontal_only else ""),
                         EXPECTED, OBTAIN)
    rows = csv_rows(df)
    rel = df["Path"].astype(str).tolist()
    paths = _resolve_paths(csv, rel, rows)
    patients = [_patient(r) for r in rel]
    raw = np.stack([numeric_column(csv, df[n], n, rows, LABELS, OBTAIN) for n in names], axis=1)
    bad = ~(np.isnan(raw) | np.isin(raw, (1, 0, -1)))
    if bad.any():
        i, j = np.argwhere(bad)[0]
        raise data_error(csv, f"row {rows[i]}: column {names[j]!r} holds {raw[i, j]:g} "
                         f"({plural(int(bad.sum()), 'such cell')})", LABELS, OBTAIN)
    y = np.nan_to_num(raw, nan=0.0)  # blank: not mentioned -> negative
    y[raw == -1] = {"u-ones": 1.0, "u-zeros": 0.0, "u-ignore": np.nan}[uncertainty]
    return {"paths": paths, "groups": patients, "y": y.astype(np.float32),
            "uncertain": int((raw == -1).sum()), "blank": int(np.isnan(raw).sum())}


def _outside(csv: Path, rel: list[str], rows: np.ndarray) -> None:
    """Refuse a Path that climbs out of the folder it is relative to ('..') or an absolute
    one outside the CSV's folder: a table must not make the bench read arbitrary files."""
    for i in [i for i, r in enumerate(rel) if ".." in r or os.path.isabs(r)]:
        r, row = rel[i], rows[i]
        p = Path(r)
        norm = os.path.normpath(r)
        if p.is_absolute():
            if not Path(norm).is_relative_to(os.path.normpath(csv.parent)):
                raise data_error(csv, f"row {row}: image path {r!r} is outside the dataset "
                                 f"folder {csv.parent}", "paths inside the dataset", OBTAIN)
        elif norm == ".." or norm.startswith(".." + os.sep):
            raise data_error(csv, f"row {row}: image path {r!r} leaves the dataset folder "
                             "('..')", "paths inside the dataset", OBTAIN)


def _resolve_paths(csv: Path, rel: list[str], rows: np.ndarray) -> list[Path]:
    """CheXpert paths are relative to the folder above the dataset; accept the CSV's own
    folder too, and a renamed dataset folder (first component dropped)."""
    _outside(csv, rel, rows)
    first = Path(rel[0])
    candidates = [lambda r: csv.parent.parent / r, lambda r: csv.parent / r,
                  lambda r: csv.parent / Path(*Path(r).parts[1:])]
    if first.is_absolute():
        candidates = [Path]
    for make in candidates:
        if make(rel[0]).is_file():
            paths = [make(r) for r in rel]
            missing = [i for i, p in enumerate(paths) if not p.is_file()]
            if missing:
                raise data_error(paths[missing[0]], f"image listed in {csv.name} row "
                                 f"{rows[missing[0]]} not found ({len(missing)} of "
                                 f"{len(paths)} missing)", "every Path in the CSV on disk",
                                 OBTAIN)
            return paths
    tried = " or ".join(str(make(rel[0])) for make in candidates)
    raise data_error(csv, f"row {rows[0]}: first image {rel[0]!r} not found (looked for "
                     f"{tried})", "Path relative to the folder holding the dataset folder",
                     OBTAIN)


def _patient(rel: str) -> str:
    m = re.search(r"(patient\d+)", rel)
    return m.group(1) if m else ""


def _split(csv: Path, train: dict, test: dict | None, seed: int, test_source: str):
    """Patient-level train / val (/ test) split; patients of the given test set leave train."""
    groups = np.asarray(train["groups"], dtype=object)
    info: dict = {}
    if (groups == "").any():
        # no patient id for some rows: each such image is its own group, and we say so
        groups = np.where(groups == "", np.array([f"row{i}" for i in range(len(groups))]), groups)
        info["split_warning"] = "some paths carry no patientNNNNN id: those split by image"
    if test is not None:
        overlap = set(test["groups"]) - {""}
        keep = np.array([g not in overlap for g in groups])
        if not keep.all():
            info["dropped_from_train"] = f"{int((~keep).sum())} images of test-set patients"
            train = _take(train, np.flatnonzero(keep))
            groups = groups[keep]
        idx = grouped_split(groups, seed, {"val": VAL_FRACTION})
        info["split"] = f"test = {test_source}; train / val by patient (seeded GroupShuffleSplit)"
        parts = {"train": _take(train, idx["train"]), "val": _take(train, idx["val"]),
                 "test": test}
    else:
        idx = grouped_split(groups, seed, {"test": TEST_FRACTION, "val": VAL_FRACTION})
        info["split"] = "train / val / test by patient (seeded GroupShuffleSplit)"
        parts = {s: _take(train, idx[s]) for s in ("train", "val", "test")}
    info["patients"] = {s: len(set(p["groups"])) for s, p in parts.items()}
    return parts, info


def _take(rows: dict, idx: np.ndarray) -> dict:
    return {"paths": [rows["paths"][i] for i in idx], "groups": [rows["groups"][i] for i in idx],
            "y": rows["y"][idx]}


def _bundle(csv, parts, names, image_size, seed, calibration, info, options, name, fmt):
    order = ("train", "val", "test")
    all_paths = [p for s in order for p in parts[s]["paths"]]
    images = read_splits({s: parts[s]["paths"] for s in order}, image_size, csv.parent)
    out = {s: (images[s], parts[s]["y"]) for s in order}
    config = {"format": fmt, "source": str(csv), "labels": list(names), **options,
              "files": files_digest([csv, *all_paths])}
    return make_bundle(name, Task("multilabel", tuple(names)), out, image_size, seed,
                       calibration, config, {"source": str(csv), "format": fmt, **info},
                       groups={s: parts[s]["groups"] for s in order})


def _chestxray14(csv: Path, df, image_size, seed, calibration, frontal_only, labels, name):
    if "Patient ID" not in df.columns:
        raise data_error(csv, f"no 'Patient ID' column (found: {found_columns(df)})", EXPECTED,
                         OBTAIN)
    findings = [set(s.split("|")) - {"No Finding", ""} for s in df["Finding Labels"].astype(str)]
    known = sorted(set().union(*findings) | set(CXR14_FINDINGS))
    names = list(labels) if labels else list(CXR14_FINDINGS)
    missing = [c for c in names if c not in known]
    if missing:
        raise data_error(csv, f"no finding {', '.join(map(repr, missing))} (found: "
                         f"{', '.join(known)})", EXPECTED, OBTAIN)
    if frontal_only and "View Position" in df.columns:
        keep = df["View Position"].astype(str).str.strip().str.upper().isin(("PA", "AP")).to_numpy()
        df = df[keep]
        findings = [f for f, k in zip(findings, keep, strict=True) if k]
    folders = [csv.parent / "images", *sorted(csv.parent.glob("images_*/images")),
               *sorted(csv.parent.glob("images_*")), csv.parent]
    index = index_images(folders)
    files = df["Image Index"].astype(str).tolist()
    paths = []
    for f, row in zip(files, csv_rows(df), strict=True):
        p = index.get(Path(f).stem)
        if p is None:
            raise data_error(csv.parent / "images" / f, f"image listed in {csv.name} row {row} "
                             "not found (looked in images/ and images_*/images/)", "the extracted "
                             "images_001..012 archives beside the CSV", OBTAIN)
        paths.append(p)
    y = np.array([[1.0 if n in f else 0.0 for n in names] for f in findings], np.float32)
    rows = {"paths": paths, "groups": [str(g) for g in df["Patient ID"]], "y": y}
    test_list = csv.with_name("test_list.txt")
    if test_list.is_file():
        listed = set(test_list.read_text().split())
        in_test = np.array([f in listed for f in files])
        test = _take(rows, np.flatnonzero(in_test))
        rest = _take(rows, np.flatnonzero(~in_test))
        parts, info = _split(csv, rest, test, seed, "the official test_list.txt")
    else:
        parts, info = _split(csv, rows, None, seed, "")
    info.update(uncertainty="not applicable (ChestX-ray14 has no uncertain labels)",
                frontal_only=frontal_only)
    return _bundle(csv, parts, names, image_size, seed, calibration, info,
                   {"frontal_only": frontal_only}, name or "chexpert:chestx-ray14", "chestxray14")

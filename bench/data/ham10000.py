"""Dermoscopy CSVs: HAM10000 metadata and the ISIC 2019 training ground truth.

HAM10000: `image_id`, `dx` (akiec, bcc, bkl, df, mel, nv, vasc) and `lesion_id`; several
images often show one lesion, so splits are grouped by lesion (none in two splits) and
stratified by class (StratifiedGroupKFold keeps the rare df and vasc in every split).
ISIC 2019: `image` plus one-hot class columns; lesion ids come from the sibling
`ISIC_2019_Training_Metadata.csv` when present. Images `<id>.jpg` lie beside the CSV or
in its sub-folders named like `*images*` / `*input*` (HAM10000_images_part_1/2,
ISIC_2019_Training_Input).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bench.data import DataBundle
from bench.data.common import TEST_FRACTION, VAL_FRACTION, data_error, grouped_split, make_bundle
from bench.data.csv_tables import csv_rows, found_columns, numeric_column, read_csv
from bench.data.formats import FORMATS, Format, LoadRequest
from bench.data.images import files_digest, index_images, read_splits
from bench.inputs import plural
from bench.task_kinds import Task

DX = ("akiec", "bcc", "bkl", "df", "mel", "nv", "vasc")
ISIC2019 = ("MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC", "UNK")
OBTAIN = ("https://doi.org/10.7910/DVN/DBW86T (HAM10000) or "
          "https://challenge.isic-archive.com/data/#2019 (ISIC 2019)")
EXPECTED = ("HAM10000_metadata.csv (image_id, dx, lesion_id) or ISIC_2019_Training_GroundTruth"
            ".csv (image + one-hot MEL..UNK), with the .jpg images beside it")
DEFAULT_FILES = ("HAM10000_metadata.csv", "HAM10000_metadata.tab", "HAM10000_metadata",
                 "metadata.csv",
                 "ISIC_2019_Training_GroundTruth.csv")


@FORMATS.register
class HAM10000(Format):
    """HAM10000 / ISIC 2019 tables: --labels (or a card) picks and orders the classes."""
    augment = "any-orientation"  # a skin lesion has no up or left: flips and rotations

    name = "ham10000"
    spec = "ham10000:CSV"
    expected = EXPECTED
    obtain = OBTAIN
    default_files = DEFAULT_FILES
    options = frozenset({"labels"})

    def load(self, path: Path, request: LoadRequest) -> DataBundle:
        return _load(Path(path).expanduser().resolve(), request.image_size, request.seed,
                     request.calibration, request.labels, request.name)


def _load(csv: Path, image_size: int, seed: int, calibration: int, labels, name):
    df = read_csv(csv, EXPECTED, OBTAIN)
    row_no = csv_rows(df)
    info: dict = {}
    if {"image_id", "dx"} <= set(df.columns):
        fmt = "ham10000"
        ids = df["image_id"].astype(str).str.strip().tolist()
        names = df["dx"].astype(str).str.strip().str.lower().tolist()
        unknown = [i for i, n in enumerate(names) if n not in DX]
        if unknown:
            i = unknown[0]
            raise data_error(csv, f"row {row_no[i]}: unknown dx {df['dx'].iloc[i]!r} "
                             f"({plural(len(unknown), 'row')} with an unknown dx)",
                             f"dx in {', '.join(DX)}", OBTAIN)
        present = DX
        if "lesion_id" in df.columns:
            lesions = df["lesion_id"].astype(str).str.strip().tolist()
        else:
            lesions, info["split_warning"] = ids, "no lesion_id column: split by image"
    elif "image" in df.columns and any(c in df.columns for c in ISIC2019):
        fmt = "isic2019"
        cols = [c for c in ISIC2019 if c in df.columns]
        onehot = np.stack([numeric_column(csv, df[c], c, row_no, "one-hot class columns of 0 "
                                          "and 1", OBTAIN) for c in cols], axis=1)
        bad = np.flatnonzero(~(np.isin(onehot, (0, 1)).all(1) & (onehot.sum(1) == 1)))
        if len(bad):
            cells = ", ".join(f"{c}={v:g}" for c, v in zip(cols, onehot[bad[0]], strict=True))
            raise data_error(csv, f"row {row_no[bad[0]]}: class columns are not one-hot ({cells};"
                             f" {plural(len(bad), 'such row')})", "exactly one 1 per row, the rest 0",
                             OBTAIN)
        ids = df["image"].astype(str).str.strip().tolist()
        names = [cols[k] for k in onehot.argmax(1)]
        # UNK never occurs in the training ground truth: classes without images are left out
        present = tuple(c for c in cols if c in set(names))
        lesions = _isic_lesions(csv, ids, info)
    else:
        raise data_error(csv, "no 'image_id' and 'dx' columns (nor ISIC 2019's 'image' + class "
                         f"columns; found: {found_columns(df)})", EXPECTED, OBTAIN)

    classes = list(labels) if labels else list(present)
    missing = [c for c in classes if c not in present]
    if missing:
        raise data_error(csv, f"no images of class {', '.join(map(repr, missing))} (found: "
                         f"{', '.join(present)})", EXPECTED, OBTAIN)
    if len(classes) < 2:
        raise ValueError(f"--labels {','.join(classes)}: at least two classes are needed")
    keep = np.array([n in classes for n in names])
    if not keep.all():
        info["dropped"] = f"{int((~keep).sum())} images of classes not selected"
    rows = np.flatnonzero(keep)
    y = np.array([classes.index(names[i]) for i in rows], np.int64)
    groups = np.asarray([lesions[i] for i in rows], dtype=object)

    folders = [csv.parent, *sorted(p for p in csv.parent.iterdir() if p.is_dir() and (
        "image" in p.name.lower() or "input" in p.name.lower()))]
    index = index_images(folders)
    paths = []
    for i in rows:
        p = index.get(ids[i])
        if p is None:
            raise data_error(csv.parent / f"{ids[i]}.jpg", f"image listed in {csv.name} row "
                             f"{row_no[i]} not found (looked in {', '.join(f.name for f in folders)})",
                             "the images beside the CSV or in its *images*/*input* folders",
                             OBTAIN)
        paths.append(p)

    idx = grouped_split(groups, seed, {"test": TEST_FRACTION, "val": VAL_FRACTION}, y=y)
    images = read_splits({s: [paths[i] for i in idx[s]] for s in ("train", "val", "test")},
                         image_size, csv.parent)
    parts = {s: (images[s], y[idx[s]]) for s in ("train", "val", "test")}
    info.update(source=str(csv), format=fmt,
                split="train / val / test grouped by lesion, stratified by class "
                      "(seeded StratifiedGroupKFold)",
                lesions={s: len(set(groups[idx[s]])) for s in idx})
    kind = "binary" if len(classes) == 2 else "multiclass"
    config = {"format": fmt, "source": str(csv), "classes": classes,
              "files": files_digest([csv, *paths])}
    return make_bundle(name or f"{fmt}:{csv.parent.name}", Task(kind, tuple(classes)), parts,
                       image_size, seed, calibration, config, info,
                       groups={s: groups[idx[s]] for s in idx})


def _isic_lesions(csv: Path, ids: list[str], info: dict) -> list[str]:
    meta = csv.with_name("ISIC_2019_Training_Metadata.csv")
    if not meta.is_file():
        info["split_warning"] = f"no {meta.name} beside the CSV: split by image, not by lesion"
        return ids
    mdf = read_csv(meta, "ISIC_2019_Training_Metadata.csv (image, lesion_id)", OBTAIN)
    if not {"image", "lesion_id"} <= set(mdf.columns):
        raise data_error(meta, f"no 'image' and 'lesion_id' columns (found: "
                         f"{found_columns(mdf)})", "ISIC 2019 metadata", OBTAIN)
    lesion = dict(zip(mdf["image"].astype(str), mdf["lesion_id"], strict=True))
    out = []
    for i in ids:
        v = lesion.get(i)
        out.append(str(v) if isinstance(v, str) and v.strip() else i)  # no lesion id: own group
    return out

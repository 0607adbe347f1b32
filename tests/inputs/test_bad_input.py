"""Bad input: every case answered in one line that names the file and what is wrong.

The exact shape of each message is pinned here: a user sees it after `error: `, with no
traceback, and most cases are caught before any image is decoded or any epoch trained.
"""

import errno
import io
import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from bench import cache
from bench.data import FORMATS, LoadRequest, SyntheticSizes
from bench.data.chexpert import EXPECTED as CXR_EXPECTED
from bench.data.chexpert import OBTAIN as CXR_OBTAIN
from bench.data.generated import synthetic_bundle
from bench.data.ham10000 import EXPECTED as HAM_EXPECTED
from bench.data.ham10000 import OBTAIN as HAM_OBTAIN
from bench.inputs import check_checkpoint_file
from bench.modelling.architectures import build, load_checkpoint

LFS = ("version https://git-lfs.github.com/spec/v1\n"
       "oid sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393\n"
       "size 12345\n")


def message(excinfo) -> str:
    msg = str(excinfo.value)
    assert "\n" not in msg and "Traceback" not in msg, msg
    return msg


def suffix(expected, obtain):
    """What `data_error` appends after the problem."""
    return f"; expected {expected}; obtain it from {obtain} (nothing is downloaded)"


# ---------------------------------------------------------------- checkpoints

@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A real resnet18 state_dict with 5 outputs, in torch's zip format and the legacy one."""
    d = tmp_path_factory.mktemp("ckpt")
    state = build("resnet18", 5).state_dict()
    torch.save(state, d / "r18.pt")
    torch.save(state, d / "legacy.pt", _use_new_zipfile_serialization=False)
    return d


def both_checks(path, expected: str):
    """The cheap configuration check and the loader answer the same one line."""
    with pytest.raises(ValueError) as e:
        check_checkpoint_file(path)
    assert message(e) == expected
    with pytest.raises(ValueError) as e:
        load_checkpoint("resnet18", 5, str(path))
    assert message(e) == expected


def test_checkpoint_empty_lfs_random_text_gzip_and_missing(tmp_path):
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    both_checks(empty, f"{empty}: empty file (0 bytes)")
    lfs = tmp_path / "lfs.pt"
    lfs.write_text(LFS)
    both_checks(lfs, f"{lfs}: a Git LFS pointer, not the file: run `git lfs pull`")
    noise = tmp_path / "noise.pt"
    noise.write_bytes(bytes([0x8F, 0x01, 0xFE, 0x33, 0, 7, 9, 200]) + os.urandom(500))
    both_checks(noise, f"{noise}: not a PyTorch checkpoint (it starts with bytes 8f 01 fe 33 00 "
                "07 09 c8; expected the zip archive torch.save writes, or a legacy pickle)")
    html = tmp_path / "page.pt"
    html.write_text("<!DOCTYPE html><html><body>Sign in</body></html>")
    both_checks(html, f"{html}: a text file, not a PyTorch checkpoint (it starts "
                "'<!DOCTYPE html><html><bo')")
    gz = tmp_path / "w.pt.gz"
    gz.write_bytes(b"\x1f\x8b\x08\x00" + bytes(20))
    both_checks(gz, f"{gz}: gzip-compressed: decompress it (gunzip) first")
    missing = tmp_path / "nowhere.pt"
    both_checks(missing, f"{missing}: teacher checkpoint not found")
    folder = tmp_path / "adir"
    folder.mkdir()
    both_checks(folder, f"{folder}: a folder, not a file")


def test_checkpoint_cut_in_half(tmp_path, saved):
    data = (saved / "r18.pt").read_bytes()
    cut = tmp_path / "cut.pt"
    cut.write_bytes(data[:len(data) // 2])
    both_checks(cut, f"{cut}: truncated: the zip archive has no end record "
                f"({len(data) // 2} bytes); copy it again")
    check_checkpoint_file(saved / "r18.pt")  # a whole file passes, legacy format too
    check_checkpoint_file(saved / "legacy.pt")
    legacy = (saved / "legacy.pt").read_bytes()
    lcut = tmp_path / "lcut.pt"
    lcut.write_bytes(legacy[:len(legacy) // 2])
    check_checkpoint_file(lcut)  # a legacy pickle has no end record to check cheaply
    with pytest.raises(ValueError) as e:
        load_checkpoint("resnet18", 5, str(lcut))
    assert re.fullmatch(rf"{re.escape(str(lcut))}: truncated or corrupt checkpoint "
                        r"\(legacy pickle; \w+: .*\)", message(e)), message(e)


def test_checkpoint_of_another_shape_names_the_first_tensor(saved):
    with pytest.raises(ValueError) as e:
        load_checkpoint("resnet18", 2, str(saved / "r18.pt"))
    assert message(e) == (f"{saved / 'r18.pt'}: does not fit resnet18 with 2 outputs: fc.weight: "
                          "checkpoint [5, 512], model [2, 512] (and 1 more tensor of another shape)")
    assert len(load_checkpoint("resnet18", 5, str(saved / "legacy.pt")).state_dict())


def test_checkpoint_of_another_architecture_counts_missing_and_unexpected_keys(tmp_path):
    path = tmp_path / "mnv3.pt"
    torch.save(build("mobilenet_v3_small", 2).state_dict(), path)
    with pytest.raises(ValueError) as e:
        load_checkpoint("resnet18", 2, str(path))
    assert message(e) == (
        f"{path}: does not fit resnet18 with 2 outputs: 122 missing keys (conv1.weight, "
        "bn1.weight, bn1.bias, ... 119 more); 244 unexpected keys (features.0.0.weight, "
        "features.0.1.weight, features.0.1.bias, ... 241 more); no key in common: a checkpoint "
        "of another architecture?")


def test_checkpoint_missing_and_extra_keys_and_dataparallel_prefix(tmp_path):
    state = build("resnet18", 2).state_dict()
    state.pop("layer4.1.bn2.running_var")
    state["head.weight"] = torch.zeros(3)
    path = tmp_path / "edited.pt"
    torch.save({"epoch": 3, "state_dict": state}, path)
    with pytest.raises(ValueError) as e:
        load_checkpoint("resnet18", 2, str(path))
    assert message(e) == (f"{path}: does not fit resnet18 with 2 outputs: 1 missing key "
                          "(layer4.1.bn2.running_var); 1 unexpected key (head.weight)")
    whole = build("resnet18", 2).state_dict()
    torch.save({f"module.{k}": v for k, v in whole.items()}, path)  # nn.DataParallel's names
    loaded = load_checkpoint("resnet18", 2, str(path))
    assert torch.equal(loaded.state_dict()["fc.weight"], whole["fc.weight"])


def test_checkpoint_without_tensors_at_the_top(tmp_path):
    path = tmp_path / "run.pt"
    torch.save({"epoch": 3, "net": build("resnet18", 2).state_dict()}, path)
    with pytest.raises(ValueError) as e:
        load_checkpoint("resnet18", 2, str(path))
    assert message(e) == (f"{path}: no tensors at its top level (keys: epoch, net); expected a "
                          "state_dict, or a training checkpoint holding one under 'state_dict' "
                          "or 'model'")


def test_checkpoint_holding_a_whole_model_says_to_save_the_state_dict(tmp_path):
    path = tmp_path / "model.pt"
    torch.save(torch.nn.Linear(2, 2), path)
    with pytest.raises(ValueError) as e:
        load_checkpoint("resnet18", 2, str(path))
    assert message(e) == (f"{path}: not a weights-only PyTorch checkpoint: it holds Python "
                          "objects, not only tensors (Unsupported global: GLOBAL "
                          "torch.nn.modules.linear.Linear); save model.state_dict() instead")


def test_cli_empty_checkpoint_is_one_error_line(tmp_path, capsys):
    from bench.cli import main

    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    code = main(["run", "--quick", "--teacher", "resnet18", "--teacher-checkpoint", str(empty),
                 "--methods", "quant.dynamic", "--backends", "torch", "--out",
                 str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err, err
    assert err.strip().splitlines()[-1] == f"error: {empty}: empty file (0 bytes)"


@pytest.mark.parametrize("where", ["file", "file/run"])
def test_cli_out_naming_a_file_is_one_error_line_before_anything_trains(tmp_path, capsys,
                                                                       monkeypatch, where):
    """--out FILE (or a folder under a file): not a 26-line FileExistsError traceback from
    the run directory's mkdir, but one line naming the file, exit 2, before the data is
    loaded or the teacher trained."""
    from bench.cli import main
    from bench.pipeline import runner

    def started(*args, **kwargs):
        raise AssertionError("the run started")

    monkeypatch.setattr(runner, "data_stage", started)
    (tmp_path / "file").write_text("not a folder\n")
    out = tmp_path / where
    for command in (["run", "--quick", "--methods", "quant.dynamic", "--backends", "torch"],
                    ["search", "--quick", "--trials", "1", "--backends", "onnxruntime"]):
        code = main([*command, "--out", str(out)])
        err = capsys.readouterr().err
        assert code == 2 and "Traceback" not in err, err
        assert err.strip().splitlines() == [f"error: --out {out}: {tmp_path / 'file'} is a "
                                            "file, not a folder"], err
    assert (tmp_path / "file").read_text() == "not a folder\n"


# ---------------------------------------------------------------- images

def png(path: Path, value: int):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((20, 24), value, np.uint8)).save(path)


def folder_dataset(root: Path, per_class=6) -> Path:
    for k, c in enumerate(("normal", "sick")):
        for i in range(per_class):
            png(root / c / f"img{i}.png", 10 + 40 * k + 3 * i)
    return root


def load(fmt, path, **options):
    if fmt == "chexpert":
        options.setdefault("labels", ["Edema", "Atelectasis"])
    return FORMATS.get(fmt)().load(Path(path), LoadRequest(16, 0, 8, **options))


def test_images_empty_truncated_and_lfs_name_the_first_file_and_the_count(tmp_path):
    root = folder_dataset(tmp_path / "xr")
    (root / "sick" / "img2.png").write_bytes(b"")
    with pytest.raises(ValueError) as e:
        load("folder", root)
    assert message(e) == f"{root}: image sick/img2.png: empty file (0 bytes); 1 of 12 images unreadable"
    noise = np.random.default_rng(0).integers(0, 256, (40, 40), dtype=np.uint8)
    Image.fromarray(noise).save(root / "normal" / "img1.png")  # noise: half is past the header
    whole = (root / "normal" / "img1.png").read_bytes()
    (root / "normal" / "img1.png").write_bytes(whole[:len(whole) // 2])
    (root / "sick" / "img4.png").write_text(LFS)
    with pytest.raises(ValueError) as e:
        load("folder", root)
    assert message(e) == (f"{root}: image normal/img1.png: truncated or damaged image "
                          f"({len(whole) // 2} bytes; OSError: image file is truncated); "
                          "3 of 12 images unreadable (first shown)")
    (root / "normal" / "img1.png").write_bytes(whole)
    (root / "sick" / "img2.png").write_bytes(whole)
    with pytest.raises(ValueError) as e:
        load("folder", root)
    assert message(e) == (f"{root}: image sick/img4.png: a Git LFS pointer, not the file: "
                          "run `git lfs pull`; 1 of 12 images unreadable")


def test_duplicate_images_across_splits_warn_with_the_count(tmp_path, capsys):
    root = tmp_path / "dup"
    for split, n in (("train", 6), ("val", 2), ("test", 3)):
        for k, c in enumerate(("normal", "sick")):
            for i in range(n):
                png(root / split / c / f"{split}{i}.png", 10 + 40 * k + 3 * i)
    b = load("folder", root)  # every val and test image repeats a train image
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"warning: {root}: 10 images have the same content as an image of another "
                   "split (4 in val also in train, 6 in test also in train; e.g. "
                   "val/normal/val0.png = train/normal/train0.png)"]
    assert len(b.test) == 6


def test_a_class_absent_from_a_split_still_loads(tmp_path, capsys):
    root = tmp_path / "gap"
    for n, (split, classes) in enumerate((("train", ("normal", "sick")),
                                          ("val", ("normal", "sick")), ("test", ("normal",)))):
        for k, c in enumerate(classes):
            for i in range(4):
                png(root / split / c / f"{split}{i}.png", 10 + 40 * k + 3 * i + 70 * n)
    b = load("folder", root)
    assert capsys.readouterr().err == ""  # no duplicates: no warning
    assert b.info["class_counts"]["test"] == {"normal": 4, "sick": 0}


# ---------------------------------------------------------------- CSVs

def chexpert(tmp_path, rows=None, valid_rows=None, header="Path,Sex,Frontal/Lateral,Edema,Atelectasis"):
    """CheXpert-v1.0-small/{train,valid}.csv; rows are (patient, edema, atelectasis)."""
    root = tmp_path / "CheXpert-v1.0-small"
    rows = rows or [(p, ("1.0", "0.0", "-1.0", "")[p % 4], "0.0" if p % 2 else "1.0")
                    for p in range(1, 13)]
    valid_rows = valid_rows or [(p, "1.0" if p % 2 else "0.0", "0.0") for p in range(90, 94)]
    for name, table in (("train", rows), ("valid", valid_rows)):
        lines = [header]
        for p, edema, atel in table:
            rel = f"CheXpert-v1.0-small/{name}/patient{p:05d}/study1/view1_frontal.png"
            png(tmp_path / rel, (7 * p) % 250)
            lines.append(f"{rel},Female,Frontal,{edema},{atel}")
        (root / f"{name}.csv").write_text("\n".join(lines) + "\n")
    return root


def test_csv_missing_columns_are_named_with_those_found(tmp_path):
    root = chexpert(tmp_path, header="Image,Sex,Frontal/Lateral,Edema,Atelectasis")
    with pytest.raises(ValueError) as e:
        load("chexpert", root / "train.csv")
    assert message(e) == (f"{root / 'train.csv'}: no 'Path' column (nor ChestX-ray14's 'Image "
                          "Index' and 'Finding Labels'; found: 'Image', 'Sex', 'Frontal/Lateral',"
                          " 'Edema', 'Atelectasis')" + suffix(CXR_EXPECTED, CXR_OBTAIN))
    ham = tmp_path / "ham" / "HAM10000_metadata.csv"
    ham.parent.mkdir()
    ham.write_text("lesion_id,image_id,diagnosis\nHAM_1,ISIC_1,nv\n")
    with pytest.raises(ValueError) as e:
        load("ham10000", ham)
    assert message(e) == (f"{ham}: no 'image_id' and 'dx' columns (nor ISIC 2019's 'image' + "
                          "class columns; found: 'lesion_id', 'image_id', 'diagnosis')"
                          + suffix(HAM_EXPECTED, HAM_OBTAIN))


def test_csv_unknown_and_non_numeric_labels_name_the_row(tmp_path):
    rows = [(p, "1.0", "0.0") for p in range(1, 13)]
    rows[4] = (5, "yes", "0.0")  # file row 6: the header is row 1
    root = chexpert(tmp_path, rows=rows)
    csv = root / "train.csv"
    with pytest.raises(ValueError) as e:
        load("chexpert", csv)
    assert message(e) == (f"{csv}: row 6: column 'Edema' holds 'yes', not a number (1 such "
                          "cell)" + suffix("labels 1, 0, -1 or blank", CXR_OBTAIN))
    rows[4] = (5, "1.0", "0.0")
    rows[7] = (8, "1.0", "2")
    root = chexpert(tmp_path, rows=rows)
    with pytest.raises(ValueError) as e:
        load("chexpert", csv)
    assert message(e) == (f"{csv}: row 9: column 'Atelectasis' holds 2 (1 such cell)"
                          + suffix("labels 1, 0, -1 or blank", CXR_OBTAIN))
    ham = tmp_path / "ham" / "HAM10000_metadata.csv"
    ham.parent.mkdir()
    ham.write_text("lesion_id,image_id,dx\nHAM_1,ISIC_1,nv\nHAM_2,ISIC_2,melanoma\n"
                   "HAM_3,ISIC_3,Mel?\n")
    with pytest.raises(ValueError) as e:
        load("ham10000", ham)
    assert message(e) == (f"{ham}: row 3: unknown dx 'melanoma' (2 rows with an unknown dx)"
                          + suffix("dx in akiec, bcc, bkl, df, mel, nv, vasc", HAM_OBTAIN))
    isic = tmp_path / "isic" / "ISIC_2019_Training_GroundTruth.csv"
    isic.parent.mkdir()
    isic.write_text("image,MEL,NV\nISIC_1,1.0,0.0\nISIC_2,1.0,1.0\n")
    with pytest.raises(ValueError) as e:
        load("ham10000", isic)
    assert message(e) == (f"{isic}: row 3: class columns are not one-hot (MEL=1, NV=1; 1 such "
                          "row)" + suffix("exactly one 1 per row, the rest 0", HAM_OBTAIN))
    isic.write_text("image,MEL,NV\nISIC_1,1.0,0.0\nISIC_2,0.0,1.0\nISIC_3,x,0.0\n")
    with pytest.raises(ValueError) as e:
        load("ham10000", isic)
    assert message(e) == (f"{isic}: row 4: column 'MEL' holds 'x', not a number (1 such cell)"
                          + suffix("one-hot class columns of 0 and 1", HAM_OBTAIN))


def test_csv_paths_escaping_the_dataset_are_refused_with_the_row(tmp_path):
    root = chexpert(tmp_path)
    csv = root / "train.csv"
    lines = csv.read_text().splitlines()
    outside = tmp_path / "secret.png"
    png(outside, 5)
    for bad, problem in (("../secret.png", "leaves the dataset folder ('..')"),
                         ("CheXpert-v1.0-small/../../secret.png", "leaves the dataset folder ('..')"),
                         (str(outside), f"is outside the dataset folder {root}")):
        edited = list(lines)
        edited[3] = ",".join([bad, *edited[3].split(",")[1:]])
        csv.write_text("\n".join(edited) + "\n")
        with pytest.raises(ValueError) as e:
            load("chexpert", csv)
        assert message(e) == (f"{csv}: row 4: image path {bad!r} {problem}"
                              + suffix("paths inside the dataset", CXR_OBTAIN))


def test_csv_image_damage_is_named_relative_to_the_dataset(tmp_path):
    root = chexpert(tmp_path)
    (root / "train" / "patient00003" / "study1" / "view1_frontal.png").write_text(LFS)
    with pytest.raises(ValueError) as e:
        load("chexpert", root / "train.csv")
    assert message(e) == (f"{root}: image train/patient00003/study1/view1_frontal.png: a Git "
                          "LFS pointer, not the file: run `git lfs pull`; 1 of 16 images unreadable")
    (root / "valid.csv").write_text(LFS)
    with pytest.raises(ValueError) as e:
        load("chexpert", root / "valid.csv")
    assert message(e) == (f"{root / 'valid.csv'}: a Git LFS pointer, not the file: run "
                          "`git lfs pull`" + suffix(CXR_EXPECTED, CXR_OBTAIN))


def test_a_label_without_positives_in_the_test_split_still_loads(tmp_path):
    root = chexpert(tmp_path, valid_rows=[(p, "0.0", "1.0" if p % 2 else "0.0")
                                          for p in range(90, 94)])
    b = load("chexpert", root / "train.csv", labels=["Edema", "Atelectasis"])
    assert b.info["class_counts"]["test"]["Edema"]["positive"] == 0
    assert b.test.labels[:, 0].sum() == 0


def test_npz_and_card_files_that_are_not_data(tmp_path):
    from bench.data.cards import load_card
    from bench.data.medmnist import EXPECTED, OBTAIN

    npz = tmp_path / "pneumoniamnist.npz"
    npz.write_text(LFS)
    with pytest.raises(ValueError) as e:
        load("medmnist", npz)
    assert message(e) == (f"{npz}: a Git LFS pointer, not the file: run `git lfs pull`"
                          + suffix(EXPECTED, OBTAIN))
    buf = io.BytesIO()
    np.savez(buf, train_images=np.zeros((50, 28, 28), np.uint8))
    npz.write_bytes(buf.getvalue()[:3000])
    with pytest.raises(ValueError) as e:
        load("medmnist", npz)
    assert message(e) == (f"{npz}: truncated: the zip archive has no end record (3000 bytes)"
                          + suffix(EXPECTED, OBTAIN))
    card = tmp_path / "mine.toml"
    card.write_bytes(b"")
    with pytest.raises(ValueError) as e:
        load_card(card)
    assert message(e) == f"{card}: invalid dataset card: empty file (0 bytes)"


# ---------------------------------------------------------------- caches

def test_read_or_rebuild_warns_deletes_and_returns_none(tmp_path, capsys):
    path = tmp_path / "probe.json"
    assert cache.read_or_rebuild(path, lambda p: p.read_text(), "machine probe") is None
    path.write_text('{"ok": 1}')
    import json

    assert cache.read_or_rebuild(path, lambda p: json.loads(p.read_text()), "probe") == {"ok": 1}
    path.write_text('{"ok": ')
    assert cache.read_or_rebuild(path, lambda p: json.loads(p.read_text()), "machine probe") is None
    assert capsys.readouterr().err == (f"warning: {path}: corrupt machine probe cache "
                                       "(JSONDecodeError: Expecting value: line 1 column 8 (char 7))"
                                       "; rebuilding\n")
    assert not path.exists()
    path.write_bytes(b"")
    assert cache.read_or_rebuild(path, lambda p: np.load(p), "data") is None
    assert capsys.readouterr().err == f"warning: {path}: corrupt data cache (empty file (0 bytes)); rebuilding\n"


def test_corrupt_teacher_cache_is_retrained_not_a_crash(tmp_path, monkeypatch, capsys):
    from bench.modelling.teacher import get_teacher

    monkeypatch.setenv("MEDBENCH_CACHE", str(tmp_path / "cache"))
    data = synthetic_bundle(16, 0, "binary", 2, SyntheticSizes(train=32, val=8, test=8,
                                                               calibration=8, transfer=0))
    first = get_teacher("mobilenet_v3_small", data, 0.5, 0)
    path = Path(first.info["path"])
    assert first.source == "trained" and path.is_file()
    whole = path.read_bytes()
    path.write_bytes(whole[:len(whole) // 3])
    capsys.readouterr()
    again = get_teacher("mobilenet_v3_small", data, 0.5, 0)
    warning = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("warning")]
    assert again.source == "trained" and len(warning) == 1
    assert warning[0] == (f"warning: {path}: corrupt teacher cache (truncated: the zip archive "
                          f"has no end record ({len(whole) // 3} bytes)); rebuilding")
    assert get_teacher("mobilenet_v3_small", data, 0.5, 0).source == "cache"


def test_atomic_write_leaves_nothing_half_written(tmp_path, monkeypatch):
    path = tmp_path / "blob.bin"
    cache.atomic_write_bytes(path, b"old")
    assert path.read_bytes() == b"old" and os.listdir(tmp_path) == ["blob.bin"]

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError) as e:
        cache.atomic_write_bytes(path, b"new!")
    assert e.value.errno == errno.ENOSPC
    assert str(e.value) == (f"[Errno 28] {path}: disk full, could not write 4 bytes "
                            "(no space left on device)")
    assert path.read_bytes() == b"old" and os.listdir(tmp_path) == ["blob.bin"]

    def refuse(src, dst):
        raise PermissionError(errno.EACCES, "denied")

    monkeypatch.undo()
    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(PermissionError):
        cache.atomic_write_bytes(path, io.BytesIO(b"x").getvalue())
    assert os.listdir(tmp_path) == ["blob.bin"]

"""The one fixed split of the Sketchy photos that every backend uses.

Whole photos go to a split, and every sketch of a photo follows it, so no test sketch's photo is
ever seen in training. Per class (sorted by a hash of the photo id, so the choice is fixed but not
by name order): 5 of 25 photos to `test`, 2 to `val`, the rest `train`. Photos that are also in the
10-class set take the split of its `split.tsv` (its `train` photos may become `val` by the same
rule), so the two sets never disagree. `python -m sbir_core.data.splits` rewrites the table.
"""
from __future__ import annotations

import hashlib
from collections import defaultdict
from functools import lru_cache
from pathlib import Path

from ..config import SPLITS_DIR, data_dir
from . import readers

SPLIT_FILE = SPLITS_DIR / "sketchy.tsv"
TEST_PER_CLASS, VAL_PER_CLASS = 5, 2

# Quick, Draw! rows per class file. The simplified strokes here are each class's first 25 drawings
# (bitmap row i is stroke line i for i < 25): lines 0-9 are held out for evaluation (the benchmark's
# doodles -> demo gallery set), lines 10-24 train; bitmap rows 10-579 train, 580-599 validate.
QUICKDRAW_EVAL_ROWS = range(0, 10)
QUICKDRAW_STROKE_TRAIN_ROWS = range(10, 25)
QUICKDRAW_BITMAP_TRAIN_ROWS = range(10, 580)
QUICKDRAW_BITMAP_VAL_ROWS = range(580, 600)

# TU-Berlin: per class, by a hash of the file name (fixed, not by id order), 10 sketches to `test`,
# 5 to `val`, the rest (35 of 50 here) `train`.
TUBERLIN_TEST, TUBERLIN_VAL = 10, 5


def _key(photo_id: str) -> str:
    return hashlib.sha1(photo_id.encode()).hexdigest()


def make_split(root: Path | None = None) -> dict[str, str]:
    """Compute {photo_id: split} from the data (see module docstring)."""
    root = root or data_dir()
    photos, _ = readers.sketchy(root / "sketchy")
    ten = readers.read_split(root / "sketchy_10class" / "split.tsv")
    ten_photos, _ = readers.sketchy(root / "sketchy_10class")
    by_class: dict[str, list[str]] = defaultdict(list)
    for it in photos + ten_photos:
        if it.photo_id not in by_class[it.label]:
            by_class[it.label].append(it.photo_id)
    out: dict[str, str] = {}
    for label, ids in by_class.items():
        ids = sorted(ids, key=_key)
        if any(i in ten for i in ids):
            train = [i for i in ids if ten.get(i) != "test"]
            out.update({i: "test" for i in ids if ten.get(i) == "test"})
            n_val = max(VAL_PER_CLASS, len(ids) // 12)
            out.update({i: "val" for i in train[:n_val]})
            out.update({i: "train" for i in train[n_val:]})
        else:
            out.update({i: "test" for i in ids[:TEST_PER_CLASS]})
            out.update({i: "val" for i in ids[TEST_PER_CLASS:TEST_PER_CLASS + VAL_PER_CLASS]})
            out.update({i: "train" for i in ids[TEST_PER_CLASS + VAL_PER_CLASS:]})
    return out


@lru_cache(maxsize=1)
def sketchy_split() -> dict[str, str]:
    """{photo_id: 'train' | 'val' | 'test'} from the committed table."""
    out = {}
    for line in SPLIT_FILE.read_text().splitlines()[1:]:
        pid, split = line.split("\t")
        out[pid] = split
    return out


def tuberlin_splits(items: "list[readers.Item]") -> list[str]:
    """The split of each TU-Berlin item (see TUBERLIN_TEST): whole sketches, fixed by hash per class."""
    by_class: dict[str, list[int]] = defaultdict(list)
    for n, it in enumerate(items):
        by_class[it.raw_label].append(n)
    out = ["train"] * len(items)
    for rows in by_class.values():
        rows = sorted(rows, key=lambda n: _key(f"tuberlin/{items[n].raw_label}/{items[n].path.stem}"))
        for n in rows[:TUBERLIN_TEST]:
            out[n] = "test"
        for n in rows[TUBERLIN_TEST:TUBERLIN_TEST + TUBERLIN_VAL]:
            out[n] = "val"
    return out


# Shoe set (instance level): of the shoes that have sketches, by a hash of the shoe id (fixed, not by
# id order), 20 % go to `test` and 10 % to `val` with all their sketches; the rest, and every shoe
# without a sketch (gallery only), are `train`. Evaluation ranks the test sketches against all 304 photos.
SHOE_TEST, SHOE_VAL = 0.2, 0.1


def shoe_splits(photo_ids: "list[str]", sketched: "set[str]") -> dict[str, str]:
    """{shoe id: 'train' | 'val' | 'test'} for the shoe set (see SHOE_TEST)."""
    ids = sorted((i for i in set(photo_ids) if i in sketched), key=lambda i: _key(f"shoes/{i}"))
    n_test, n_val = round(SHOE_TEST * len(ids)), round(SHOE_VAL * len(ids))
    out = {i: "train" for i in photo_ids}
    out.update({i: "test" for i in ids[:n_test]})
    out.update({i: "val" for i in ids[n_test:n_test + n_val]})
    return out


def split_of(photo_id: str) -> str | None:
    """The split of a Sketchy photo id (and of its sketches), or None when it is not in the table."""
    return sketchy_split().get(photo_id)


if __name__ == "__main__":
    table = make_split()
    SPLIT_FILE.parent.mkdir(parents=True, exist_ok=True)
    SPLIT_FILE.write_text("photo_id\tsplit\n" + "".join(f"{k}\t{v}\n" for k, v in sorted(table.items())))
    from collections import Counter
    print(SPLIT_FILE, Counter(table.values()))

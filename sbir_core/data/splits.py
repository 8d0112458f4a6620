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


def split_of(photo_id: str) -> str | None:
    """The split of a Sketchy photo id (and of its sketches), or None when it is not in the table."""
    return sketchy_split().get(photo_id)


if __name__ == "__main__":
    table = make_split()
    SPLIT_FILE.parent.mkdir(parents=True, exist_ok=True)
    SPLIT_FILE.write_text("photo_id\tsplit\n" + "".join(f"{k}\t{v}\n" for k, v in sorted(table.items())))
    from collections import Counter
    print(SPLIT_FILE, Counter(table.values()))

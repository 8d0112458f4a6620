"""Milvus through `pymilvus`: Milvus Lite on one machine (a local `.db` path, embedded in this
process), a Milvus standalone server or cluster beyond it (`http://host:19530`). Same code for both.

One collection per feature key, named `<gallery>_k<the key in hex>` (Milvus names allow letters,
digits and `_` only). Fields: `id` (the photo id,
primary key), `vector`, `label`, `file`, `stamp`. Vectors are compared by inner product (IP): the
backends store unit vectors, so IP is cosine similarity. Index: HNSW by default (M, efConstruction
at build, ef at search, as in BENCHMARKS.md), FLAT for exact search, or IVF_FLAT.
"""
from __future__ import annotations

import logging
import os
import re
import threading
from collections import Counter
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from .base import PhotoRecord, StoreError, VectorStore, check_vectors

log = logging.getLogger(__name__)

MAX_K = 16_384                 # Milvus's limit on top-k (and on a range search's results)
ID_LEN, LABEL_LEN, FILE_LEN, STAMP_LEN = 1024, 512, 4096, 64
INSERT_ROWS = 2_000            # rows per insert call: gRPC messages stay far below Milvus's 64 MB limit
GET_ROWS = 1_000               # ids per get/delete call
INDEX_TYPES = ("HNSW", "FLAT", "IVF_FLAT")
_lite_users: Counter = Counter()    # open MilvusStores per Lite file: its server stops with the last
_lite_guard = threading.Lock()
INSTALL_HINT = "pip install -r requirements-milvus.txt (pymilvus; milvus-lite for a local .db file)"


def _pymilvus():
    try:
        import pymilvus
    except ImportError:
        raise StoreError(f"a Milvus store needs the pymilvus package, which is not installed: {INSTALL_HINT}") from None
    # Milvus Lite reports no read timestamp: pymilvus then warns on every listing and uses its own
    # clock, which is right for a store that nobody writes to while it is listed
    logging.getLogger("pymilvus.client.iterator.query_iterator").setLevel(logging.ERROR)
    logging.getLogger("grpc._server").addFilter(_quiet_alloc_timestamp)
    return pymilvus


def _quiet_alloc_timestamp(record: logging.LogRecord) -> bool:
    """Drop the in-process Milvus Lite server's traceback for AllocTimestamp, a call it does not
    implement and pymilvus's listing asks for first (then falls back, see above)."""
    exc = record.exc_info[1] if record.exc_info else None
    return not (isinstance(exc, NotImplementedError) and "AllocTimestamp" in "".join(
        __import__("traceback").format_tb(record.exc_info[2])))


class MilvusStore(VectorStore):
    """Vectors in Milvus (Lite or a server), one collection per feature key.

    `index` HNSW (`m`, `ef_construction`; searched with ef = max(`ef`, k)), FLAT (exact), or
    IVF_FLAT (`nlist`; searched with `nprobe`). `gallery` prefixes the collection names, so one
    server can hold several galleries."""

    def __init__(self, uri: str, gallery: str = "sbir", index: str = "HNSW", m: int = 16,
                 ef_construction: int = 200, ef: int = 128, nlist: int = 1024, nprobe: int = 32,
                 timeout: float = 10.0, token: str = "", consistency: str = "strong"):
        index = index.upper()
        if index not in INDEX_TYPES:
            raise StoreError(f"unknown index {index!r}; one of {', '.join(INDEX_TYPES)}")
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,63}", gallery):
            raise StoreError(f"gallery name {gallery!r}: letters, digits and _ only, not starting with a digit")
        self.uri, self.gallery, self.index = uri, gallery, index
        self.m, self.ef_construction, self.ef, self.nlist, self.nprobe = m, ef_construction, ef, nlist, nprobe
        self.timeout, self._token = timeout, token
        self.consistency = consistency.capitalize()         # of searches; counts and builds stay Strong
        self.lite = uri.endswith(".db")
        self._names: dict[str, str] = {}           # feature key -> collection name, once seen
        self._dims: dict[str, int] = {}
        self._closed = False
        self.client = self._connect()
        if self.lite:
            with _lite_guard:
                _lite_users[os.path.abspath(os.path.expanduser(self.uri))] += 1

    # -- connection ------------------------------------------------------------------------
    def _connect(self) -> Any:
        pm = _pymilvus()
        if self.lite:
            parent = Path(self.uri).expanduser().resolve().parent
            if not parent.is_dir():
                raise StoreError(f"cannot create the Milvus Lite store {self.uri}: the folder {parent} does not exist")
            try:
                import milvus_lite  # noqa: F401
            except ImportError:
                raise StoreError(f"a local .db store needs the milvus-lite package, which is not installed: "
                                 f"{INSTALL_HINT}") from None
        try:
            extra: dict[str, Any] = {"token": self._token} if self._token else {}
            if self.lite:        # its in-process server allows a ping every 5 min, not pymilvus's 10 s
                extra["grpc_options"] = {"grpc.keepalive_time_ms": 600_000, "grpc.keepalive_permit_without_calls": 0}
            client = pm.MilvusClient(uri=self.uri, timeout=self.timeout, **extra)
            client.list_collections()                          # fails here when nothing answers
            client = _Guarded(client, self.uri)
        except Exception as e:
            if self.lite:
                raise StoreError(f"cannot open the Milvus Lite store {self.uri}: {_lite_failure(self.uri) or e}") from None
            raise StoreError(f"cannot reach a Milvus server at {self.uri} ({_short(e)}); is it running, and is "
                             f"this its address (default port 19530)?") from None
        return client

    def close(self) -> None:
        try:
            self.client.close()
        except Exception:       # closing twice, or a server already gone: nothing left to release
            pass
        if self.lite and not self._closed:
            self._closed = True
            path = os.path.abspath(os.path.expanduser(self.uri))
            with _lite_guard:
                _lite_users[path] -= 1
                last = _lite_users[path] == 0
            if last:              # the in-process server holds the file's lock: free it for other processes
                try:
                    from milvus_lite.server_manager import server_manager_instance
                    server_manager_instance.release_server(path)
                except Exception:
                    pass

    # -- collections -----------------------------------------------------------------------
    def _name(self, key: str) -> str:
        """The collection name of a feature key (any text) within this gallery: the key in hex, so
        `keys()` can read it back (Milvus names allow letters, digits and _ only)."""
        name = f"{self.gallery}_k{key.encode().hex()}"
        if len(name) > 255:
            raise StoreError(f"feature key {key[:60]!r}... is too long for a Milvus collection name")
        return name

    def _existing(self, key: str) -> str | None:
        """The collection of `key` when it exists (loaded), else None."""
        name = self._names.get(key)
        if name is not None:
            return name
        name = self._name(key)
        if not self.client.has_collection(name):
            return None
        self.client.load_collection(name)
        self._names[key] = name
        return name

    def _collection(self, key: str, dim: int) -> str:
        """The collection of `key`, created (with its index) for `dim`-dimensional vectors if new."""
        name = self._existing(key)
        if name is not None:
            d = self.dim(key)
            if d is not None and d != dim:
                raise StoreError(f"{key!r} holds {d}-dimensional vectors, got {dim}")
            return name
        pm = _pymilvus()
        name = self._name(key)
        schema = pm.MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False, description=key)
        schema.add_field("id", pm.DataType.VARCHAR, is_primary=True, max_length=ID_LEN)
        schema.add_field("vector", pm.DataType.FLOAT_VECTOR, dim=dim)
        schema.add_field("label", pm.DataType.VARCHAR, max_length=LABEL_LEN)
        schema.add_field("file", pm.DataType.VARCHAR, max_length=FILE_LEN)
        schema.add_field("stamp", pm.DataType.VARCHAR, max_length=STAMP_LEN)
        params = self.client.prepare_index_params()
        build = {"HNSW": {"M": self.m, "efConstruction": self.ef_construction}, "FLAT": {},
                 "IVF_FLAT": {"nlist": self.nlist}}[self.index]
        # pymilvus 3 sends build parameters as separate key-value pairs, Milvus Lite 3.2 reads them from a
        # JSON "params" pair (and ignores the rest, keeping its defaults): send both; servers read either
        params.add_index(field_name="vector", index_type=self.index, metric_type="IP",
                         params=build | ({"params": build} if build else {}))
        self.client.create_collection(name, schema=schema, index_params=params, description=key,
                                      consistency_level="Strong")
        self.client.load_collection(name)
        self._names[key], self._dims[key] = name, dim
        return name

    def _need(self, key: str) -> str:
        name = self._existing(key)
        if name is None:
            raise StoreError(f"the store {self.uri} holds no vectors for {key!r} (holds: {', '.join(self.keys()) or 'none'})")
        return name

    def keys(self) -> list[str]:
        out = []
        for name in self.client.list_collections():
            prefix = f"{self.gallery}_k"
            if name.startswith(prefix):
                try:
                    key = bytes.fromhex(name[len(prefix):]).decode()
                except ValueError:
                    continue                    # not one of ours
                out.append(key)
        return sorted(out)

    def dim(self, key: str) -> int | None:
        if key in self._dims:
            return self._dims[key]
        name = self._existing(key)
        if name is None:
            return None
        for f in self.client.describe_collection(name).get("fields", []):
            if f.get("name") == "vector":
                self._dims[key] = int(f.get("params", {}).get("dim"))
                return self._dims[key]
        return None

    # -- data ------------------------------------------------------------------------------
    def add(self, key: str, vectors: np.ndarray, photos: Sequence[PhotoRecord]) -> None:
        v = check_vectors(vectors, photos)
        if not len(v):
            return
        for p in photos:
            if len(p.id.encode()) > ID_LEN or len(p.file.encode()) > FILE_LEN or len(p.label.encode()) > LABEL_LEN:
                raise StoreError(f"photo {p.id[:80]!r}: id, file or label too long for the store")
        name = self._collection(key, v.shape[1])
        for i in range(0, len(v), INSERT_ROWS):
            rows = [{"id": p.id, "vector": v[i + j], "label": p.label, "file": p.file, "stamp": p.stamp}
                    for j, p in enumerate(photos[i:i + INSERT_ROWS])]
            self.client.upsert(name, rows)                    # replaces a photo id already stored

    def search(self, key: str, query: np.ndarray, k: int) -> tuple[list[str], np.ndarray]:
        name = self._need(key)
        k = max(1, min(int(k), MAX_K))
        hits = self.client.search(name, data=[self._query(key, query)], limit=k, output_fields=["id"],
                                  search_params={"metric_type": "IP", "params": self._search_params(k)},
                                  consistency_level=self.consistency)[0]
        return [h["id"] for h in hits], np.asarray([h["distance"] for h in hits], np.float32)

    def within(self, key: str, query: np.ndarray, threshold: float, limit: int) -> tuple[list[str], np.ndarray]:
        name = self._need(key)
        limit = max(1, min(int(limit), MAX_K))
        params = self._search_params(limit) | {"radius": float(np.nextafter(np.float32(threshold), np.float32(-np.inf))),
                                               "range_filter": 3.0e38}
        hits = self.client.search(name, data=[self._query(key, query)], limit=limit, output_fields=["id"],
                                  search_params={"metric_type": "IP", "params": params},
                                  consistency_level=self.consistency)[0]
        hits = [h for h in hits if h["distance"] >= threshold]
        hits.sort(key=lambda h: -h["distance"])
        return [h["id"] for h in hits], np.asarray([h["distance"] for h in hits], np.float32)

    def _search_params(self, k: int) -> dict[str, Any]:
        if self.index == "HNSW":
            return {"ef": max(self.ef, k)}
        if self.index == "IVF_FLAT":
            return {"nprobe": self.nprobe}
        return {}

    def _query(self, key: str, query: np.ndarray) -> np.ndarray:
        q = np.asarray(query, dtype=np.float32).reshape(-1)
        d = self.dim(key)
        if d is not None and len(q) != d:
            raise StoreError(f"the query has {len(q)} dimensions, the stored vectors {d}")
        return q

    def count(self, key: str) -> int:
        name = self._existing(key)
        if name is None:
            return 0
        res = self.client.query(name, filter="", output_fields=["count(*)"], consistency_level="Strong")
        return int(res[0]["count(*)"])

    def delete(self, key: str, ids: Sequence[str]) -> None:
        name = self._existing(key)
        if name is None:
            return
        ids = list(ids)
        for i in range(0, len(ids), GET_ROWS):
            self.client.delete(name, ids=ids[i:i + GET_ROWS])

    def stamps(self, key: str, ids: Sequence[str]) -> dict[str, str]:
        name = self._existing(key)
        if name is None:
            return {}
        ids, out = list(ids), {}
        for i in range(0, len(ids), GET_ROWS):
            for r in self.client.get(name, ids=ids[i:i + GET_ROWS], output_fields=["id", "stamp"]):
                out[r["id"]] = r["stamp"]
        return out

    def get(self, key: str, ids: Sequence[str]) -> np.ndarray:
        name = self._need(key)
        ids, found = list(ids), {}
        for i in range(0, len(ids), GET_ROWS):
            for r in self.client.get(name, ids=ids[i:i + GET_ROWS], output_fields=["id", "vector"]):
                found[r["id"]] = r["vector"]
        missing = [i for i in ids if i not in found]
        if missing:
            raise StoreError(f"{key!r} holds no vector for photo {missing[0]!r}")
        return np.asarray([found[i] for i in ids], np.float32).reshape(len(ids), -1)

    def photos(self, key: str, batch: int = 10_000) -> Iterator[list[PhotoRecord]]:
        name = self._need(key)
        it = self.client.query_iterator(name, batch_size=min(batch, MAX_K), filter="",
                                        output_fields=["id", "file", "label", "stamp"])
        try:
            while True:
                try:
                    rows = it.next()
                except Exception as e:
                    raise _as_store_error(e, self.uri, "reading photos") from None
                if not rows:
                    return
                yield [PhotoRecord(r["id"], r["file"], r["label"], r["stamp"]) for r in rows]
        finally:
            it.close()


def start_local_server(data_dir: str | Path) -> tuple[Any, str]:
    """A Milvus standalone server on this machine (the `milvus` package: the server binary inside the
    wheel, for tests and the store benchmark) on free 127.0.0.1 ports, its data in `data_dir`; returns
    (server, its http:// URI). Stop it with `.stop()`. One at a time: the package's health port is fixed."""
    import socket

    from milvus import MilvusServer

    def free_port() -> int:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            return sock.getsockname()[1]
    ports = {k: free_port() for k in ("etcd_port", "root_coord_port", "proxy_port", "proxy_internal_port",
                                      "query_coord_port", "query_node_port", "index_coord_port", "index_node_port",
                                      "data_coord_port", "data_node_port")}
    server = MilvusServer(**ports)
    server.set_base_dir(str(data_dir))
    server.start()
    return server, f"http://127.0.0.1:{ports['proxy_port']}"


class _Guarded:
    """The pymilvus client with its failures turned into StoreError: a server that stops or restarts
    in the middle of a build or a search is one clear message (and the build resumes when run again),
    not a traceback from inside the client. Mistakes of ours (TypeError, ...) pass unchanged."""

    def __init__(self, client: Any, uri: str):
        self._client, self._uri = client, uri

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            try:
                return attr(*args, **kwargs)
            except Exception as e:
                raise _as_store_error(e, self._uri, name) from None
        return call


def _as_store_error(e: Exception, uri: str, doing: str) -> Exception:
    """A pymilvus or gRPC failure as a StoreError naming the store; any other exception as it is."""
    if isinstance(e, StoreError) or not type(e).__module__.startswith(("pymilvus", "grpc")):
        return e
    return StoreError(f"the Milvus store {uri} failed while {doing.replace('_', ' ')} ({_short(e)}); is the server "
                      "still running? Run the same command again to resume")


def _short(e: BaseException) -> str:
    """An exception as one short line (pymilvus's messages can run over several)."""
    text = " ".join(str(getattr(e, "message", "") or e).split())
    return text[:200] or type(e).__name__


def _lite_failure(uri: str) -> str | None:
    """Why Milvus Lite cannot open `uri` (pymilvus only says that it failed): in use, damaged, ..."""
    try:
        from milvus_lite import MilvusLite
        from milvus_lite.exceptions import DataDirLockedError
    except ImportError:
        return None
    try:
        MilvusLite(str(Path(uri).expanduser())).close()
    except DataDirLockedError:
        return "it is in use by another process (a Milvus Lite file serves one process; use a Milvus server to share)"
    except Exception as e:
        return _short(e)
    return None

"""Where gallery features live, behind one interface (`VectorStore`), chosen by one setting:
`--store URI` on the command line, or the environment variable `SBIR_STORE`:

    memory                  in this process (numpy/FAISS): today's behaviour and the default
    ./photos.db             Milvus Lite: embedded, one local file (folder) on one machine
    http://host:19530       a Milvus standalone server or cluster (https:// and tcp:// too)

A Milvus URI may end in options: `?gallery=NAME` (collection prefix, so one server holds several
galleries), `index=HNSW|FLAT|IVF_FLAT`, `m=16`, `ef_construction=200`, `ef=128`, `nlist`, `nprobe`,
`token=user:password`, `consistency=strong|bounded` (searches: strong, the default, sees every photo
stored so far but waits for the server's time tick, ~200-400 ms a query on a Milvus server; bounded
answers at once and may miss photos stored in the last few seconds: for serving a gallery built
beforehand), e.g. `http://milvus:19530?gallery=stock&ef=256&consistency=bounded`.
"""
from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

from .base import PhotoRecord, StoreError, VectorStore
from .memory import MemoryStore

ENV = "SBIR_STORE"
FORMS = "'memory', a local Milvus Lite file ending in .db (./photos.db), or a Milvus server (http://host:19530)"
_INT_OPTIONS = ("m", "ef_construction", "ef", "nlist", "nprobe")
CONSISTENCY = ("strong", "bounded")


def store_uri(uri: str | None = None) -> str:
    """The store setting: `uri` when given, else $SBIR_STORE, else 'memory'."""
    return (uri if uri is not None else os.environ.get(ENV, "")).strip() or "memory"


def is_memory(uri: str | None = None) -> bool:
    return store_uri(uri).lower() == "memory"


def is_store_uri(text: str) -> bool:
    """Whether `text` names a store rather than a folder of photos: 'memory', a path ending in .db,
    or a Milvus server URL."""
    t = text.strip()
    return t.lower() == "memory" or _server(t) or t.split("?", 1)[0].rstrip("/").endswith(".db")


def open_store(uri: str | None = None) -> VectorStore:
    """The store a URI names (see the module docstring); StoreError with a message for anything else."""
    uri = store_uri(uri)
    if uri.lower() == "memory":
        return MemoryStore()
    base, _, query = uri.partition("?")
    try:
        options = dict(parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query)))
    except ValueError:
        raise StoreError(f"store {uri!r}: cannot read the options after '?' (expected name=value&...)") from None
    kwargs: dict = {}
    for name, value in options.items():
        if name in _INT_OPTIONS:
            if not value.isdigit() or int(value) < 1:
                raise StoreError(f"store {uri!r}: option {name} must be a positive whole number, got {value!r}")
            kwargs[name] = int(value)
        elif name in ("gallery", "index"):
            kwargs[name] = value
        elif name == "consistency":
            if value.lower() not in CONSISTENCY:
                raise StoreError(f"store {uri!r}: option consistency must be one of {', '.join(CONSISTENCY)}, got {value!r}")
            kwargs[name] = value.lower()
        elif name == "token":
            pass                                # read by the connection below, never printed
        else:
            raise StoreError(f"store {uri!r}: unknown option {name!r} (known: gallery, index, token, consistency, "
                             f"{', '.join(_INT_OPTIONS)})")
    if _server(base):
        parts = urlsplit(base)
        try:
            parts.port                          # a port that is not a number (or out of range) raises here
        except ValueError:
            raise StoreError(f"store {base!r}: the port must be a number from 1 to 65535") from None
        if not parts.hostname:
            raise StoreError(f"store {base!r}: no host name (expected http://host:19530)")
        if parts.path not in ("", "/"):
            raise StoreError(f"store {base!r}: unexpected path {parts.path!r} (expected http://host:19530)")
    elif base.rstrip("/").endswith(".db"):
        base = str(Path(base.rstrip("/")).expanduser())
    elif "://" in base:
        raise StoreError(f"store {uri!r}: unknown scheme {base.split('://', 1)[0]!r}; use {FORMS}")
    else:
        raise StoreError(f"store {uri!r} is not one of: {FORMS}")
    from .milvus import MilvusStore
    return MilvusStore(base, token=options.get("token", ""), **kwargs)


def _server(text: str) -> bool:
    return text.lower().startswith(("http://", "https://", "tcp://"))


__all__ = ["VectorStore", "MemoryStore", "PhotoRecord", "StoreError", "open_store", "store_uri", "is_memory",
           "is_store_uri", "ENV"]

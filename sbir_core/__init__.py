"""SketchSearch: sketch-based image retrieval. Public surface:

    from sbir_core import available_backends, load_backend, Gallery
    result = load_backend("triplet").search(sketch_image, Gallery.bundled(), k=20)
"""
from .backends import Backend, SearchResult, available_backends, load_backend
from .gallery import Gallery

__all__ = ["available_backends", "load_backend", "Gallery", "Backend", "SearchResult"]

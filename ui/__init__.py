"""The Streamlit app's parts, one module per concern (`app.py` and `pages/` use them; the library,
`sbir_core`, never imports this package).

No Streamlit: catalogue (what backends and galleries there are), reports (evaluation and benchmark
figures), drawing (canvas drawing -> sketch), reading (one search and what it reads), cards (what
result cards say), map_view (the embedding map's colours). With Streamlit: session (caches and the
visitor's state), canvas (the sketch input), results (the reading panel and result grid), style,
teach (the Teach panel).
"""

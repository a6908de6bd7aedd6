"""The Streamlit front end's shared helpers: paths, cached loaders, the sidebar. Pages stay thin.

Importing this package first imports, in one fixed order, the libraries that others import lazily
on first use (plotly asks for pandas when it validates arrays, Streamlit for PIL and pandas in some
elements). Every page imports `explorer` first, and Python lets one thread at a time initialise a
package, so when a class opens the app at once the sessions wait here instead of importing those
libraries concurrently in different orders: that raced to "partially initialized module 'pandas'"
errors under load (bench/bench_load.py).
"""
import numpy  # noqa: F401
import pandas  # noqa: F401
import PIL.Image  # noqa: F401
import PIL.PngImagePlugin  # noqa: F401
import plotly.graph_objects  # noqa: F401
import plotly.io  # noqa: F401
import torch  # noqa: F401

"""The Streamlit front end's shared helpers: paths, cached loaders, the sidebar. Pages stay thin."""

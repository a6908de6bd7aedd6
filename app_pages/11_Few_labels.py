"""Few labels (being built this session)."""
import streamlit as st

st.title("Few labels")

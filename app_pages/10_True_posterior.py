"""True posterior (being built this session)."""
import streamlit as st

st.title("True posterior")

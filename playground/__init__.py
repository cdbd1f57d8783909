"""CIFAR-10 CNN Playground: specs, models, analysis, data, augmentation and training.

The core modules never import streamlit; the app (playground/app.py, pages/)
and the CLI (``python -m playground``) are thin layers over them.
"""
__version__ = "0.1.0"

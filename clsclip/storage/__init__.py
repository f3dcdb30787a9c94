"""Storage: model folders, the Hugging Face Hub, weights with checksums, atomic writes.

The bottom of the stack: it knows files and formats, and never builds a model.
"""

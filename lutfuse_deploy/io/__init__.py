"""Reading and writing: image pairs, checkpoints, atomic files."""

"""Training and evaluation data: synthetic faces, image folders."""

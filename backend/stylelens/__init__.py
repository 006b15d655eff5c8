"""StyleLens: self-hostable StyleGAN2 face editing."""

__version__ = "0.1.0"

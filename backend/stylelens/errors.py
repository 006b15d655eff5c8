"""Domain errors. Each says what was wrong and what to do about it."""


class StyleLensError(Exception):
    """Base class of every error StyleLens raises on purpose."""


class CheckpointError(StyleLensError):
    """A checkpoint or model directory is unreadable, unsafe, or not a supported StyleGAN2."""


class ModelNotFound(StyleLensError):
    """No model directory with the requested id."""

"""Domain errors. Each says what was wrong and what to do about it."""


class StyleLensError(Exception):
    """Base class of every error StyleLens raises on purpose."""


class CheckpointError(StyleLensError):
    """A checkpoint or model directory is unreadable, unsafe, or not a supported StyleGAN2."""


class ModelNotFound(StyleLensError):
    """No model directory with the requested id."""


class DatasetError(StyleLensError):
    """Training images cannot be found or read, or do not fit the requested resolution."""


class TrainingError(StyleLensError):
    """A training run cannot start, resume or be exported as asked."""


class LocalEditError(StyleLensError):
    """A local edit cannot run as asked (blend resolution, mask shape, preset)."""


class JobError(StyleLensError):
    """A job of the web app cannot run as asked; ``code`` is the protocol's error code
    (``sessions.protocol.ErrorCode``: no_latent, no_target, bad_request...)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code

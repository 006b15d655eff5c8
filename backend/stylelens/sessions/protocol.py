"""Websocket protocol v1: every message the browser and the server exchange (``docs/protocol.md``).

Text frames are JSON objects with a ``type`` field (pydantic discriminated unions below);
binary frames are images: a fixed 32-byte big-endian header (:data:`FRAME_HEADER`) followed
by the encoded image. Nothing outside this module builds or parses wire messages.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    model_validator,
)

PROTOCOL_VERSION = 1

# ---------------------------------------------------------------------------------------------
# Binary image frames

# magic "SL", version, kind, job id (16 ASCII bytes), step, width, height, mime, 3 reserved.
FRAME_HEADER = struct.Struct(">2sBB16sIHHB3x")
FRAME_MAGIC = b"SL"
FRAME_KINDS = {"inversion": 1, "edit": 2}
MIMES = {"image/jpeg": 1, "image/png": 2}
JOB_ID_LEN = 16  # secrets.token_hex(8)


@dataclass(frozen=True)
class Frame:
    """One image for the browser: what it shows (kind), of which job and step, and its bytes."""

    kind: str  # "inversion" (a step's preview), "edit" (a slider render or a random face)
    job: str
    step: int
    width: int
    height: int
    mime: str
    data: bytes

    def encode(self) -> bytes:
        job = self.job.encode("ascii")[:JOB_ID_LEN].ljust(JOB_ID_LEN, b"\0")
        header = FRAME_HEADER.pack(
            FRAME_MAGIC,
            PROTOCOL_VERSION,
            FRAME_KINDS[self.kind],
            job,
            self.step,
            self.width,
            self.height,
            MIMES[self.mime],
        )
        return header + self.data

    @classmethod
    def decode(cls, buf: bytes) -> Frame:
        """Parse a binary frame (tests and tools; the browser has its own decoder).

        Raises:
            ValueError: not a v1 StyleLens frame.
        """
        if len(buf) < FRAME_HEADER.size:
            raise ValueError(f"frame of {len(buf)} bytes is shorter than its header")
        magic, version, kind, job, step, w, h, mime = FRAME_HEADER.unpack_from(buf)
        if magic != FRAME_MAGIC or version != PROTOCOL_VERSION:
            raise ValueError("not a StyleLens v1 image frame")
        kinds = {v: k for k, v in FRAME_KINDS.items()}
        mimes = {v: k for k, v in MIMES.items()}
        if kind not in kinds or mime not in mimes:
            raise ValueError(f"unknown frame kind {kind} or mime {mime}")
        return cls(
            kind=kinds[kind],
            job=job.rstrip(b"\0").decode("ascii"),
            step=step,
            width=w,
            height=h,
            mime=mimes[mime],
            data=bytes(buf[FRAME_HEADER.size :]),
        )


# ---------------------------------------------------------------------------------------------
# Client -> server


class _Msg(BaseModel):
    # allow_inf_nan=False: Python's JSON parser reads NaN and Infinity, and a non-finite slider
    # value would render a black frame and store a latent full of NaN.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


JobKind = Literal["render", "inversion", "commit", "random", "use_latent", "region"]
InitKind = Literal["encoder", "average", "latent"]  # where an inversion starts
# Ids the server made: a job's is secrets.token_hex(8), an item's secrets.token_urlsafe(16).
# Checked, so that no id a client sends is echoed back (or looked up) unless it could be real.
JobId = Annotated[str, Field(pattern=r"^[0-9a-f]{16}$")]
ItemId = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{16,64}$")]
LayerRange = Literal["coarse", "middle", "fine", "coarse+middle", "middle+fine", "all"]
RegionPresetName = Literal["eyes", "mouth", "nose", "face", "hair", "background"]


class Mixing(_Msg):
    """Style mixing: take ``layers`` from a second face (a seed of the model)."""

    seed: int = Field(ge=0, lt=2**32)
    layers: LayerRange = "coarse"


class Region(_Msg):
    """Edit only inside a region (docs/local-editing.md): outside it the image stays the
    current latent's. ``mask`` is a mask of this session (POST .../masks, or a
    ``region_preset``'s); ``blend_res`` the resolution from which the original and the edit are
    blended (None: the model's default, 1/8 of its resolution)."""

    mask: ItemId
    blend_res: int | None = Field(default=None, ge=8, le=1024)


class EditParams(_Msg):
    """An edit of the session's current latent: slider amounts, mixing, truncation, and
    optionally the region it is confined to."""

    scales: dict[str, float] = Field(default_factory=dict)  # direction name -> slider units
    mixing: Mixing | None = None
    truncation: float = Field(default=1.0, ge=0.0, le=1.5)  # psi toward the average face
    region: Region | None = None

    def check_scales(self, sliders: dict[str, tuple[float, float]]) -> None:
        """Refuse unknown directions and amounts outside a direction's slider range.

        Out-of-range amounts are refused, not clamped: a client that sends them has a bug or
        is not the page, and a silently different edit than the one asked for would hide it.

        Raises:
            ProtocolError: ``invalid``, naming the direction and its range.
        """
        unknown = sorted(set(self.scales) - set(sliders))
        if unknown:
            raise ProtocolError(
                "invalid", f"scales: unknown directions {unknown}; see hello.directions"
            )
        for name, amount in self.scales.items():
            lo, hi = sliders[name]
            slack = 1e-6 * max(1.0, abs(lo), abs(hi))  # the page's float steps
            if not lo - slack <= amount <= hi + slack:
                raise ProtocolError(
                    "invalid",
                    f"scales.{name}: {amount:g} is outside its slider range [{lo:g}, {hi:g}]",
                )


RestoreTask = Literal["colorize", "superres", "inpaint"]


class RestoreParams(_Msg):
    """Restore the upload with the multi-code GAN prior (seed 004) instead of inverting it:
    ``steps`` are mGANprior's, then ``handoff_steps`` of ``engine`` invert the restored face
    to one W+ latent that the sliders edit (0: no hand-off; the sliders then edit mGANprior's
    dominant code, an approximation)."""

    task: RestoreTask
    scale: Literal[2, 4, 8, 16] = 8  # super-resolution: the upload is seen at R / scale
    mask: ItemId | None = None  # inpaint: a mask of this session (POST .../masks)
    codes: int | None = Field(default=None, ge=1, le=64)  # None: the task's default
    layer: int | None = Field(default=None, ge=2, le=18)  # None: the task's default
    handoff_steps: int = Field(default=60, ge=0)

    @model_validator(mode="after")
    def _mask_for_inpainting(self) -> RestoreParams:
        if self.task == "inpaint" and self.mask is None:
            raise ValueError("inpainting needs a mask: POST it to /api/sessions/{id}/masks")
        if self.task != "inpaint" and self.mask is not None:
            raise ValueError(f"a mask is for inpainting, not {self.task}")
        return self


class StartInversion(_Msg):
    type: Literal["start_inversion"]
    engine: str = "progressive"
    steps: int = Field(default=200, ge=1)
    upload: ItemId | None = None  # upload id; None: the session's latest upload
    # A latent id of this session to start from (e.g. an interrupted inversion's checkpoint);
    # None: the model's average latent.
    init_latent: ItemId | None = None
    restore: RestoreParams | None = None  # a restoration instead of a plain inversion


class Cancel(_Msg):
    type: Literal["cancel"]
    job: JobId


class Accept(_Msg):
    """Stop an inversion now and keep the latent it has reached."""

    type: Literal["accept"]
    job: JobId


class RenderEdit(EditParams):
    type: Literal["render_edit"]


class Commit(EditParams):
    type: Literal["commit"]


class UseLatent(_Msg):
    """Make a latent of this session the one edits apply to (an interrupted inversion's)."""

    type: Literal["use_latent"]
    latent: ItemId


class RandomFace(_Msg):
    """Start from the model's face for ``seed`` instead of an upload."""

    type: Literal["random_face"]
    seed: int = Field(ge=0, lt=2**32)


class RegionPreset(_Msg):
    """Find a region on the current face (its landmarks) and store it as a mask of the session;
    answered by ``done`` with ``kind: region``, ``mask`` and ``mask_url``."""

    type: Literal["region_preset"]
    preset: RegionPresetName


ClientMessage = Annotated[
    StartInversion | Cancel | Accept | RenderEdit | Commit | RandomFace | UseLatent | RegionPreset,
    Field(discriminator="type"),
]
_client_adapter: TypeAdapter[ClientMessage] = TypeAdapter(ClientMessage)


class ProtocolError(ValueError):
    """A client message that is not valid v1; ``code`` and ``message`` go into an error event."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def parse_client_message(text: str) -> ClientMessage:
    """Parse one text frame from the browser.

    Raises:
        ProtocolError: not JSON, not an object, unknown ``type``, or invalid fields.
    """
    try:
        raw = json.loads(text)
    except ValueError:
        raise ProtocolError("malformed", "message is not JSON") from None
    except RecursionError:  # nested deeper than Python's stack: no v1 message is
        raise ProtocolError("malformed", "message is nested too deeply") from None
    if not isinstance(raw, dict):
        raise ProtocolError("malformed", "message must be a JSON object with a 'type'")
    kind = raw.get("type")
    known = (
        "start_inversion",
        "cancel",
        "accept",
        "render_edit",
        "commit",
        "random_face",
        "use_latent",
        "region_preset",
    )
    if kind not in known:
        raise ProtocolError("unknown_message", f"unknown message type {kind!r}; v1 knows {known}")
    try:
        return _client_adapter.validate_python(raw)
    except RecursionError:
        raise ProtocolError("malformed", "message is nested too deeply") from None
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"][1:]) or "message"
        raise ProtocolError("invalid", f"{kind}: {where}: {first['msg']}") from None


# ---------------------------------------------------------------------------------------------
# Server -> client


class Limits(_Msg):
    max_upload_bytes: int
    max_pixels: int
    max_steps: int
    preview_interval_ms: int
    preview_size: int
    default_engine: str
    default_steps: int


class ModelInfo(_Msg):
    id: str
    name: str
    resolution: int
    num_ws: int
    w_dim: int
    device: str
    engines: list[str]
    preview_heads: bool
    encoder: bool = False  # inversions start from its one-pass guess
    restore: list[str] = Field(default_factory=list)  # restoration tasks the model can run


class ModelChoice(_Msg):
    """A model the server offers (a new session is needed to switch to it)."""

    id: str
    name: str
    resolution: int


class DirectionInfo(_Msg):
    name: str
    method: str
    layers: str
    slider: tuple[float, float]
    step: float


class SessionInfo(_Msg):
    id: str
    upload: str | None = None  # latest upload id
    upload_url: str | None = None  # its aligned crop
    latent: str | None = None  # the latent edits apply to
    results: list[dict[str, str]] = Field(default_factory=list)  # committed results


class RunningInversion(_Msg):
    """The session's inversion that is running now (its stream goes on to this socket)."""

    job: str
    engine: str
    step: int
    total: int


class Interrupted(_Msg):
    """The session's inversion that stopped before it finished, and its last saved latent:
    the server stopped or crashed (``restart``), or the page went away and did not come back
    in time (``disconnected``). Offered as a result (``use_latent``) or a restart point
    (``start_inversion`` with ``init_latent``)."""

    job: str
    engine: str
    step: int
    total: int
    upload: str
    latent: str
    latent_url: str
    reason: Literal["restart", "disconnected"]


class Hello(_Msg):
    type: Literal["hello"] = "hello"
    protocol: int = PROTOCOL_VERSION
    session: SessionInfo
    limits: Limits
    model: ModelInfo  # the session's model
    models: list[ModelChoice]  # every model served
    directions: list[DirectionInfo]
    running: RunningInversion | None = None
    interrupted: Interrupted | None = None


class Queued(_Msg):
    type: Literal["queued"] = "queued"
    job: str
    kind: JobKind
    position: int  # this session's jobs waiting ahead of this one (its slider render aside)


class Started(_Msg):
    type: Literal["started"] = "started"
    job: str
    kind: JobKind
    total: int
    # An inversion's starting point: the model's encoder (its reconstruction is the job's
    # first frame, step 0), the average latent, or the latent the client named.
    init: InitKind | None = None
    note: str | None = None  # what was done to the input (a restoration's gray conversion...)


class Progress(_Msg):
    type: Literal["progress"] = "progress"
    job: str
    step: int
    total: int
    losses: dict[str, float]
    resolution: int
    elapsed: float


class Done(_Msg):
    type: Literal["done"] = "done"
    job: str
    kind: JobKind
    latent: str | None = None  # latent id (inversion, random face, commit)
    latent_url: str | None = None
    result_url: str | None = None  # full-resolution PNG (commit)
    mask: str | None = None  # mask id (region preset)
    mask_url: str | None = None
    metrics: dict[str, float] = Field(default_factory=dict)


class Cancelled(_Msg):
    type: Literal["cancelled"] = "cancelled"
    job: str
    step: int = 0


ErrorCode = Literal[
    "malformed",
    "unknown_message",
    "invalid",
    "busy",
    "no_target",
    "no_latent",
    "unknown_job",
    "bad_request",
    "oom",
    "replica_lost",
    "internal",
]


class Error(_Msg):
    type: Literal["error"] = "error"
    code: ErrorCode
    message: str
    job: str | None = None


# ---------------------------------------------------------------------------------------------
# Installs (the Models dialog): sent to every socket of the server, whichever page started them

InstallSource = Literal["registry", "file"]
# upload: a checkpoint arriving from a page, download: the registry's files arriving (both
# ``bytes`` of ``total``); convert: converting, SeFa, directions; load: the new model is being
# loaded into this server (on the worker thread).
InstallStage = Literal["upload", "download", "convert", "load"]


class InstalledModel(_Msg):
    """A generator model of the models directory (from its card), as the Models dialog lists it."""

    id: str
    name: str
    resolution: int
    license: str = ""
    purpose: str  # one line: what it is good for ("photographs (FFHQ)", "SynthFaces drawings")
    description: str = ""
    served: bool  # loaded by this server: in ``hello.models``, a new session can use it
    directions: int = 0


class InstallProgress(_Msg):
    type: Literal["install_progress"] = "install_progress"
    name: str  # the registry entry, or the id a checkpoint upload is installed as
    source: InstallSource
    stage: InstallStage
    bytes: int = 0  # downloaded so far (all of the entry's files)
    total: int | None = None  # bytes to download; None when unknown
    message: str = ""  # what is happening, for people


class InstallDone(_Msg):
    type: Literal["install_done"] = "install_done"
    name: str
    model: InstalledModel | None = None  # None: not a generator (LPIPS weights, directions)
    loaded: bool = False  # this server serves it now (pick it in the model list)
    models: list[ModelChoice]  # every model served now (hello.models as it would be)
    message: str  # what was installed and what to do next (a restart, when it is needed)


class InstallFailed(_Msg):
    type: Literal["install_failed"] = "install_failed"
    name: str
    message: str  # why, and what to do
    cancelled: bool = False  # stopped by a ``DELETE /api/models/install``
    kept_bytes: int = 0  # downloaded bytes kept on disk: installing it again resumes there


ServerEvent = (
    Hello
    | Queued
    | Started
    | Progress
    | Done
    | Cancelled
    | Error
    | InstallProgress
    | InstallDone
    | InstallFailed
)
TERMINAL = (Done, Cancelled, Error)


def event_json(event: ServerEvent) -> str:
    return event.model_dump_json()


def json_schema() -> dict[str, Any]:
    """JSON Schema of the client messages (for docs and other clients)."""
    return _client_adapter.json_schema()

"""What the server tells a page about its session and the models: the session's files and
results, the photo notice of a model that cannot represent photographs, the models served,
and an inversion interrupted before it finished."""

from __future__ import annotations

from stylelens.checkpoints.native import ModelCard, training_source
from stylelens.sessions import protocol as p
from stylelens.sessions.backend import ServedModels
from stylelens.sessions.storage import Storage
from stylelens.sessions.urls import file_url


def session_info(storage: Storage, sid: str) -> p.SessionInfo:
    upload, latent = storage.session_state(sid)
    results = [
        {
            "id": it.id,
            "url": file_url(sid, it.id),
            "latent_url": file_url(sid, it.meta.get("latent", "")),
        }
        for it in storage.items(sid, "result")
    ]
    return p.SessionInfo(
        id=sid,
        upload=upload,
        upload_url=file_url(sid, upload) if upload else None,
        latent=latent,
        results=results,
    )


def photo_notice(card: ModelCard) -> str | None:
    """What an upload to a model that cannot represent photographs is told, or None.

    The card decides, not the image: a model trained on SynthFaces (its card's training data)
    has never seen a photograph, and nothing here tells a photo from a drawn face reliably, so
    every upload to it gets the notice, worded to be true whatever was uploaded.
    """
    if training_source(card) != "synthfaces":
        return None
    return (
        f"{card.name or card.id} knows only SynthFaces, procedurally drawn faces: it cannot "
        "represent photographs, so a photo comes back as a drawn face that merely resembles "
        "it. For photos, install ffhq-256 with the Models button at the top of the page and "
        "choose it in the model list, or run `stylelens fetch ffhq-256` on the server (all "
        "choices: `stylelens fetch --list`) and restart it with "
        "STYLELENS_DEFAULT_MODEL=ffhq-256."
    )


def model_choices(runtimes: ServedModels) -> list[p.ModelChoice]:
    return [
        p.ModelChoice(id=rt.model_id, name=rt.model_name, resolution=rt.resolution)
        for rt in runtimes.by_id.values()
    ]


def interrupted_inversion(storage: Storage, sid: str) -> p.Interrupted | None:
    """The session's inversion that stopped unfinished (its checkpoint), if any."""
    c = storage.checkpoint(sid)
    if c is None or c.status == "running" or storage.get(sid, c.latent, "latent") is None:
        return None
    return p.Interrupted(
        job=c.job,
        engine=c.engine,
        step=c.step,
        total=c.total,
        upload=c.upload,
        latent=c.latent,
        latent_url=file_url(sid, c.latent),
        reason="restart" if c.status == "restart" else "disconnected",
    )

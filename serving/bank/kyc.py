"""The bank's KYC services: the ``ocr`` and ``faces`` model deployments, behind the KYC saga's steps.

:func:`kyc_policy` reads the saga's policy from ``EVENTRAY_KYC_*`` variables
(:class:`KycSettings`); :func:`kyc_services` builds its two services, each
``async (list[DocumentImage]) -> answers``, one answer per document, in order:

* ``ocr`` (:class:`ModelTextReader`): the ``ocr`` model's text lines, as :class:`TextRead`;
* ``faces`` (:class:`ModelFaceCounter`): the number of ``faces`` detections, as :class:`FacesFound`.

A document the model refuses (``InvalidModelInput``: not an image, too many bytes or pixels)
is answered :class:`Unreadable`, and the saga rejects it. Any other failure raises
:class:`ServiceUnavailable` for the whole batch, and the saga retries the step.

The client connects on first use, not when the coordinator starts: a bank deployed without
the model application still runs its other sagas; its KYC steps then fail, are retried, and
the submissions end rejected ``timed_out`` (the user may submit again once the models run).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from eventray.platform.errors import InvalidModelInput, ServiceUnavailable
from eventray.sagas.kyc import DocumentImage, FacesFound, KycPolicy, TextRead, Unreadable

__all__ = ["KycSettings", "ModelFaceCounter", "ModelTextReader", "kyc_policy", "kyc_services"]

log = logging.getLogger("eventray.bank.kyc")


class KycSettings(BaseSettings):
    """The KYC saga's policy, from ``EVENTRAY_KYC_<FIELD>`` variables."""

    model_config = SettingsConfigDict(env_prefix="EVENTRAY_KYC_", extra="ignore", frozen=True)

    step_timeout_ms: int = Field(default=10_000, ge=1, description="how long one OCR, face or record step may take")
    max_attempts: int = Field(default=4, ge=1, description="attempts per step before the saga gives up")
    backoff_base_ms: int = Field(default=200, ge=0)
    backoff_max_ms: int = Field(default=5_000, ge=0)


def kyc_policy(**overrides: Any) -> KycPolicy:
    """The KYC saga's policy from the environment (:class:`KycSettings`), with ``overrides``."""
    return KycPolicy(**{**KycSettings().model_dump(), **overrides})


def kyc_services(settings: Any, policy: KycPolicy) -> dict[str, Callable[..., Any]]:
    """``{"ocr": ..., "faces": ...}`` on the model deployments (one client, connected on first use)."""
    models = _Models(settings)
    return {"ocr": ModelTextReader(client=models).read, "faces": ModelFaceCounter(client=models).count}


class _Models:
    """An :class:`~eventray.serving.models.client.MLClient` of ``ocr`` and ``faces``, connected on first use."""

    def __init__(self, settings: Any) -> None:
        self._settings = settings
        self._client: Any = None

    async def predict(self, model: str, payload: Any) -> dict[str, Any]:
        if self._client is None:
            from eventray.serving.models.client import MLClient

            try:
                self._client = MLClient.connect(self._settings, models=("ocr", "faces"))
            except Exception as e:  # no Serve, or no model application: the saga retries
                raise ServiceUnavailable(f"the KYC models are not served ({type(e).__name__}: {e}); train and "
                                         "deploy them: eventray models train, eventray models deploy") from e
        return await self._client.predict(model, payload)


async def _each(client: Any, model: str, documents: list[DocumentImage],
                answer: Callable[[dict[str, Any]], Any]) -> list[Any]:
    async def one(doc: DocumentImage) -> Any:
        try:
            return answer(await client.predict(model, doc.image))
        except InvalidModelInput as e:  # the document, not the service: no retry helps
            return Unreadable(detail=f"{e.code}: {e}")

    try:
        return list(await asyncio.gather(*(one(d) for d in documents)))
    except ServiceUnavailable:
        raise
    except Exception as e:  # the deployment is down or overloaded: the saga retries the step
        log.warning("KYC model %s failed for %d documents: %s: %s", model, len(documents), type(e).__name__, e)
        raise ServiceUnavailable(f"{model} model unavailable: {type(e).__name__}: {e}") from e


class ModelTextReader:
    """The ``ocr`` service: each document's text lines (top to bottom, as the model orders them).

    Args:
        client: anything with ``async predict(model, payload) -> dict`` (an ``MLClient``).
        model: the registry model name.
    """

    def __init__(self, *, client: Any, model: str = "ocr") -> None:
        self._client, self._model = client, model

    async def read(self, documents: list[DocumentImage]) -> list[TextRead | Unreadable]:
        return await _each(self._client, self._model, documents,
                           lambda r: TextRead(lines=tuple(str(line["text"]) for line in r["lines"])))


class ModelFaceCounter:
    """The ``faces`` service: how many faces each document shows.

    Args:
        client: anything with ``async predict(model, payload) -> dict`` (an ``MLClient``).
        model: the registry model name.
    """

    def __init__(self, *, client: Any, model: str = "faces") -> None:
        self._client, self._model = client, model

    async def count(self, documents: list[DocumentImage]) -> list[FacesFound | Unreadable]:
        return await _each(self._client, self._model, documents,
                           lambda r: FacesFound(count=len(r["detections"])))

"""Resolvers of the ML fields: short delegations to :mod:`eventray.serving.models.resolvers`.

The :class:`~eventray.serving.models.MLClient` comes from the request context (``ml``), built
per replica from the model handles bound into the ingress. Bad model input raises the typed
``MODEL_INPUT_*`` / ``UNKNOWN_MODEL*`` errors, which the one error formatter turns into
``VALIDATION`` / ``NOT_FOUND`` errors with the specific code in ``extensions.reason``.
"""

from __future__ import annotations

from typing import Any

from ariadne import QueryType
from graphql import GraphQLResolveInfo

from eventray.platform.errors import InvalidCommand, ServiceUnavailable
from eventray.serving.models import resolvers

ml_query = QueryType()

#: most items ``recommend`` returns
MAX_RECOMMENDATIONS = 100


def _ml(info: GraphQLResolveInfo) -> Any:
    ml = info.context.get("ml")
    if ml is None:
        raise ServiceUnavailable("no model deployments are bound to this app; deploy it with trained models "
                                 "(`eventray models train`)")
    return ml


@ml_query.field("scoreMovement")
async def resolve_score_movement(_: Any, info: GraphQLResolveInfo, **kw: Any) -> dict[str, Any]:
    return await resolvers.score_movement(_ml(info), **kw)


@ml_query.field("classifyText")
async def resolve_classify_text(_: Any, info: GraphQLResolveInfo, **kw: Any) -> dict[str, Any]:
    return await resolvers.classify_text(_ml(info), **kw)


@ml_query.field("classifyDigit")
async def resolve_classify_digit(_: Any, info: GraphQLResolveInfo, **kw: Any) -> dict[str, Any]:
    return await resolvers.classify_digit(_ml(info), **kw)


@ml_query.field("recommend")
async def resolve_recommend(_: Any, info: GraphQLResolveInfo, userId: str, first: int = 10,
                            strategy: str = "HYBRID", version: str | None = None) -> list[dict[str, Any]]:
    if not 1 <= first <= MAX_RECOMMENDATIONS:
        raise InvalidCommand(f"first must be between 1 and {MAX_RECOMMENDATIONS}", field="first")
    return await resolvers.recommend(_ml(info), userId=userId, first=first, strategy=strategy, version=version)


@ml_query.field("analyzeText")
async def resolve_analyze_text(_: Any, info: GraphQLResolveInfo, **kw: Any) -> dict[str, Any]:
    return await resolvers.analyze_text(_ml(info), **kw)


@ml_query.field("analyzeImage")
async def resolve_analyze_image(_: Any, info: GraphQLResolveInfo, imageBase64: str) -> dict[str, Any]:
    return await resolvers.analyze_image(_ml(info), imageBase64=imageBase64)


@ml_query.field("analyzeImageUpload")
async def resolve_analyze_image_upload(_: Any, info: GraphQLResolveInfo, image: Any) -> dict[str, Any]:
    return await resolvers.analyze_image_upload(_ml(info), image=image)


@ml_query.field("models")
async def resolve_models(_: Any, info: GraphQLResolveInfo) -> list[dict[str, Any]]:
    return await resolvers.models(_ml(info))

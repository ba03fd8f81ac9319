"""The console's screens: each handler asks :mod:`eventray.serving.console.data` a bounded
question and renders the answer, a whole page on navigation or a fragment for htmx.

Events, Projections (with replay), Sagas, Live, Models (with promote) and Cluster. Nothing
here knows an app's domain: aggregate types, projections and sagas come from the app.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response

from eventray.serving.console import data
from eventray.serving.console.auth import console_base
from eventray.serving.console.routes import Console, QueryFailed, read_form
from eventray.serving.middleware._asgi import PRINCIPAL

#: rows per page of an aggregate's timeline, and the bounds of the other lists
EVENTS_PAGE = 50
CHAIN_LIMIT = 200
DEAD_LETTERS = 50
SAGAS = 100
#: the longest aggregate or correlation id the console looks up
MAX_ID = 256
#: replay phases after which the progress bar stops polling
DONE_PHASES = frozenset({"live", "done", "failed", "error", "cancelled"})


def _names(types: Any) -> list[str]:
    """Aggregate type names from :func:`data.aggregate_types` (names, or mappings with a name)."""
    out = []
    for t in types or ():
        out.append(str(t.get("name") if isinstance(t, dict) else t))
    return out


class Screens:
    """The handlers of one :class:`~eventray.serving.console.routes.Console`."""

    def __init__(self, console: Console) -> None:
        self.c = console

    # --- events ---

    async def events(self, request: Request) -> Response:
        q = request.query_params
        kind, agg_id, correlation = q.get("type") or "", (q.get("id") or "").strip(), (q.get("correlation") or "").strip()
        context: dict[str, Any] = {"kind": kind, "agg_id": agg_id, "correlation": correlation, "types": [],
                                   "error": None, "timeline": None, "chain": None}
        try:
            context["types"] = _names(await self.c.query(data.aggregate_types, self.c.rt))
            if kind and agg_id:
                context["timeline"] = await self._timeline(kind, agg_id, None)
            if correlation:
                context["chain"] = await self._chain(correlation)
        except QueryFailed as e:
            context["error"] = str(e)
        return self.c.render(request, "events.html", title="Events", nav="events", **context)

    async def _timeline(self, kind: str, agg_id: str, before: int | None) -> dict[str, Any]:
        if len(agg_id) > MAX_ID:
            raise QueryFailed(f"an aggregate id has at most {MAX_ID} characters")
        page = await self.c.query(data.events_of, self.c.api(), kind, agg_id, before_version=before,
                                  limit=EVENTS_PAGE)
        return {"kind": kind, "agg_id": agg_id, "items": page.get("items") or [],
                "next_before_version": page.get("next_before_version"), "limit": EVENTS_PAGE}

    async def timeline(self, request: Request) -> Response:
        q = request.query_params
        kind, agg_id = q.get("type") or "", (q.get("id") or "").strip()
        more = q.get("before") not in (None, "")
        try:
            before = int(q["before"]) if more else None
        except ValueError:
            return self.c.render(request, "_error.html", status=400, error="before must be a version number")
        if not kind or not agg_id:
            return self.c.render(request, "_error.html", status=400, error="pick an aggregate type and enter an id")
        try:
            timeline = await self._timeline(kind, agg_id, before)
        except QueryFailed as e:
            return self.c.render(request, "_error.html", error=str(e))
        base = console_base(request.scope)
        headers = {} if more else {"hx-push-url": f"{base}/events?{urlencode({'type': kind, 'id': agg_id})}"}
        return self.c.render(request, "_event_items.html" if more else "_timeline.html", headers=headers,
                             timeline=timeline)

    async def _chain(self, correlation: str) -> dict[str, Any]:
        if len(correlation) > MAX_ID:
            raise QueryFailed(f"a correlation id has at most {MAX_ID} characters")
        chain = await self.c.query(data.correlation_chain, self.c.api(), correlation, limit=CHAIN_LIMIT)
        return {"correlation": correlation, "limit": CHAIN_LIMIT, **chain}

    async def chain(self, request: Request) -> Response:
        correlation = (request.query_params.get("correlation") or "").strip()
        if not correlation:
            return self.c.render(request, "_error.html", status=400, error="enter a correlation id")
        try:
            chain = await self._chain(correlation)
        except QueryFailed as e:
            return self.c.render(request, "_error.html", error=str(e))
        return self.c.render(request, "_chain.html", chain=chain)

    # --- projections ---

    async def _projection_rows(self) -> list[dict[str, Any]]:
        return list(await self.c.query(data.projections, self.c.api()))

    async def projections(self, request: Request) -> Response:
        rows, error = [], None
        try:
            rows = await self._projection_rows()
        except QueryFailed as e:
            error = str(e)
        return self.c.render(request, "projections.html", title="Projections", nav="projections", rows=rows,
                             error=error, audit=self.c.audit.of("replay"))

    async def projection_table(self, request: Request) -> Response:
        try:
            rows = await self._projection_rows()
        except QueryFailed as e:
            return self.c.render(request, "_error.html", error=str(e))
        return self.c.render(request, "_projection_table.html", rows=rows)

    async def dead_letters(self, request: Request) -> Response:
        name, version = request.path_params["name"], request.path_params["version"]
        try:
            letters = await self.c.query(data.dead_letters, self.c.api(), name, version, limit=DEAD_LETTERS)
        except QueryFailed as e:
            return self.c.render(request, "_error.html", error=str(e))
        return self.c.render(request, "_dead_letters.html", name=name, version=version, letters=letters,
                             limit=DEAD_LETTERS)

    def _known_projection(self, name: str) -> bool:
        return name in self.c.rt.app.projections

    async def replay_confirm(self, request: Request) -> Response:
        name = request.path_params["name"]
        if not self._known_projection(name):
            return self.c.render(request, "_error.html", status=404, error=f"this app has no projection {name!r}")
        return self.c.render(request, "_replay_confirm.html", name=name)

    async def replay(self, request: Request) -> Response:
        name = request.path_params["name"]
        if not self._known_projection(name):
            return self.c.render(request, "_error.html", status=404, error=f"this app has no projection {name!r}")
        subject = request.scope[PRINCIPAL].subject
        try:
            replay_id = await self.c.query(data.start_replay, self.c.api(), name, subject=subject)
        except QueryFailed as e:
            self.c.audit.record("replay", subject, name, f"refused: {e}")
            return self.c.render(request, "_error.html", status=409, error=str(e))
        entry = self.c.audit.record("replay", subject, name, f"replay {replay_id}", logged=True)
        progress = await self._progress(str(replay_id))
        return self.c.render(request, "_replay.html", replay_id=replay_id, name=name, progress=progress, entry=entry,
                             done=self._done(progress))

    async def _progress(self, replay_id: str) -> dict[str, Any]:
        try:
            return dict(await self.c.query(data.replay_progress, replay_id))
        except QueryFailed as e:
            return {"phase": "unknown", "error": str(e)}

    @staticmethod
    def _done(progress: dict[str, Any]) -> bool:
        return str(progress.get("phase")) in DONE_PHASES or bool(progress.get("error"))

    async def replay_progress(self, request: Request) -> Response:
        replay_id = request.path_params["replay_id"]
        progress = await self._progress(replay_id)
        return self.c.render(request, "_replay.html", replay_id=replay_id, name=request.query_params.get("name", ""),
                             progress=progress, entry=None, done=self._done(progress))

    # --- sagas ---

    async def sagas(self, request: Request) -> Response:
        status = (request.query_params.get("status") or "").strip() or None
        listing: dict[str, Any] = {"items": [], "unavailable": {}}
        error = None
        try:
            listing = await self.c.query(data.sagas, self.c.api(), status=status, limit=SAGAS)
        except QueryFailed as e:
            error = str(e)
        rows = listing.get("items") or []
        detail, detail_error = None, None
        saga, _, saga_id = (request.query_params.get("open") or "").partition("/")
        if saga in self.c.rt.app.sagas and saga_id:
            try:
                detail = await self.c.query(data.saga_detail, self.c.api(), saga, saga_id)
            except QueryFailed as e:
                detail_error = str(e)
        statuses = sorted({str(r["status"]) for r in rows if r.get("status")} | ({status} if status else set()))
        return self.c.render(request, "sagas.html", title="Sagas", nav="sagas", rows=rows, status_filter=status or "",
                             statuses=statuses, names=sorted(self.c.rt.app.sagas), error=error, limit=SAGAS,
                             unavailable=listing.get("unavailable") or {}, detail=detail,
                             detail_error=detail_error)

    async def saga_detail(self, request: Request) -> Response:
        saga, saga_id = request.path_params["saga"], request.path_params["saga_id"]
        if saga not in self.c.rt.app.sagas:
            return self.c.render(request, "_error.html", status=404, error=f"this app has no saga {saga!r}")
        try:
            detail = await self.c.query(data.saga_detail, self.c.api(), saga, saga_id)
        except QueryFailed as e:
            return self.c.render(request, "_error.html", error=str(e))
        return self.c.render(request, "_saga.html", saga=saga, saga_id=saga_id, detail=detail)

    # --- live ---

    async def live(self, request: Request) -> Response:
        return self.c.render(request, "live.html", title="Live", nav="live", interval_s=self.c.live.interval_s)

    async def live_stream(self, request: Request) -> Response:
        from sse_starlette import EventSourceResponse, ServerSentEvent

        feed = self.c.live

        async def events() -> Any:
            async for kind, payload in feed.subscribe():
                yield ServerSentEvent(data=json.dumps(payload, separators=(",", ":")), event=kind)

        return EventSourceResponse(events(), ping=15, headers={"cache-control": "no-store",
                                                               "x-accel-buffering": "no"})

    # --- models ---

    async def _model_view(self) -> dict[str, Any]:
        from eventray.serving.console import models

        return await models.overview(self.c.ml, self.c.model_app, timeout_s=self.c.settings.query_timeout_s)

    async def models(self, request: Request) -> Response:
        view = await self._model_view()
        return self.c.render(request, "models.html", title="Models", nav="models", view=view,
                             audit=self.c.audit.of("promote"))

    async def promote(self, request: Request) -> Response:
        from eventray.serving.console import models

        name = request.path_params["name"]
        version = (await read_form(request)).get("version") or ""
        subject = request.scope[PRINCIPAL].subject
        try:
            await self.c.query(models.promote, self.c.ml, name, version)
        except QueryFailed as e:
            self.c.audit.record("promote", subject, f"{name} {version}", f"refused: {e}")
            view = await self._model_view()
            return self.c.render(request, "_models.html", status=409, view=view, error=str(e),
                                 audit=self.c.audit.of("promote"))
        self.c.audit.record("promote", subject, f"{name} {version}", "now the default version")
        view = await self._model_view()
        return self.c.render(request, "_models.html", view=view, error=None, audit=self.c.audit.of("promote"))

    # --- cluster ---

    async def cluster(self, request: Request) -> Response:
        view, error = None, None
        try:
            view = await self.c.query(data.cluster, self.c.api())
        except QueryFailed as e:
            error = str(e)
        return self.c.render(request, "cluster.html", title="Cluster", nav="cluster", view=view, error=error)

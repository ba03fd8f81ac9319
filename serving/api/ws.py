"""graphql-transport-ws with a cap on live subscriptions per caller (per replica).

Each subscription holds a queue and a task on the replica; one caller opening thousands would
starve everyone else. Past ``max_per_subject`` a ``subscribe`` gets an error message with
``TOO_MANY_SUBSCRIPTIONS`` and the connection stays open for the ones it has.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from ariadne.asgi.handlers import GraphQLTransportWSHandler

from eventray.serving.middleware._asgi import PRINCIPAL


def _who(websocket: Any) -> str:
    principal = websocket.scope.get(PRINCIPAL)
    if principal is not None and principal.subject:
        return str(principal.rate_key)
    return f"addr:{(websocket.scope.get('client') or ('?', 0))[0]}"


class CappedTransportWSHandler(GraphQLTransportWSHandler):
    """``GraphQLTransportWSHandler`` refusing a caller's subscription past ``max_per_subject``."""

    def __init__(self, *, max_per_subject: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.max_per_subject = max_per_subject
        self.active: Counter[str] = Counter()
        self._owner: dict[int, str] = {}

    async def handle_websocket_subscribe(self, websocket: Any, data: Any, operation_id: str,
                                         client_context: Any) -> None:
        who = _who(websocket)
        if client_context.connection_acknowledged and self.active[who] >= self.max_per_subject:
            await websocket.send_json({"type": self.GQL_ERROR, "id": operation_id, "payload": [{
                "message": f"at most {self.max_per_subject} live subscriptions per caller; complete one first",
                "extensions": {"code": "TOO_MANY_SUBSCRIPTIONS", "limit": self.max_per_subject}}]})
            return
        await super().handle_websocket_subscribe(websocket, data, operation_id, client_context)
        operation = client_context.operations.get(operation_id)
        if operation is not None and id(operation) not in self._owner:
            self._owner[id(operation)] = who
            self.active[who] += 1

    async def handle_on_complete(self, websocket: Any, operation: Any) -> None:
        who = self._owner.pop(id(operation), None)
        if who is not None:
            self.active[who] -= 1
            if self.active[who] <= 0:
                del self.active[who]
        await super().handle_on_complete(websocket, operation)

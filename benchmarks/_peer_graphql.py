"""The peer behind GraphQL: the `eventsourcing` library on PostgreSQL, under eventray's own schema.

    python -m benchmarks._peer_graphql --port P --dsn DSN --schema S --accounts N

One uvicorn process (uvloop, httptools, as ``eventray.serving.plain``) serves an Ariadne app
built from the bank's printed schema (``eventray schema``), with ``deposit`` and ``account``
bound to an eventsourcing Application (repository get, save, snapshots every 100 events), so
a client sends the peer the very same mutation it sends eventray. The resolvers run the
library's blocking calls on a thread pool as large as its connection pool. There is no
authentication: the peer pays nothing for what eventray checks on every request.

It opens ``bench-peer-<i>`` accounts at start, then prints ``READY`` on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

POOL = 64


def build(bank: Any, ids: dict[str, uuid.UUID]) -> Any:
    from ariadne import MutationType, QueryType, UnionType, make_executable_schema
    from ariadne.asgi import GraphQL
    from eventsourcing.persistence import IntegrityError
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    from eventray.platform.composition import Runtime
    from eventray.platform.settings import Settings
    from eventray.serving.api.schema import printed_sdl

    mutation, query, result = MutationType(), QueryType(), UnionType("CommandResult")

    def deposit_sync(account_id: uuid.UUID, amount: int) -> int:
        while True:  # a concurrent save of the same account conflicts: read again and retry
            account = bank.repository.get(account_id)
            account.deposit(amount)
            try:
                bank.save(account)
                return int(account.version)
            except IntegrityError:
                continue

    @mutation.field("deposit")
    async def deposit(_: Any, info: Any, input: dict[str, Any]) -> dict[str, Any]:
        account_id = ids.get(input["accountId"])
        if account_id is None:
            return {"__typename": "NotFoundError", "code": "NOT_FOUND", "message": f"no account {input['accountId']}"}
        version = await asyncio.get_running_loop().run_in_executor(None, deposit_sync, account_id, int(input["amount"]))
        return {"__typename": "CommandSuccess", "commandId": input.get("commandId") or uuid.uuid4().hex,
                "aggregateId": input["accountId"], "version": version, "duplicate": False, "events": []}

    @query.field("account")
    async def account(_: Any, info: Any, id: str, consistent: bool = False) -> dict[str, Any] | None:
        account_id = ids.get(id)
        if account_id is None:
            return None
        got = await asyncio.get_running_loop().run_in_executor(None, bank.repository.get, account_id)
        return {"id": id, "balance": got.balance, "version": got.version, "currency": got.currency,
                "ownerId": got.owner_id}

    @result.type_resolver
    def resolve_type(obj: dict[str, Any], *_: Any) -> str:
        return obj["__typename"]

    sdl = printed_sdl(Runtime.load(Settings()))
    schema = make_executable_schema(sdl, mutation, query, result)

    async def healthz(_: Any) -> PlainTextResponse:
        return PlainTextResponse("ok")

    return Starlette(routes=[Route("/healthz", healthz), Route("/graphql", GraphQL(schema), methods=["GET", "POST"])])


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    from benchmarks._peer_eventsourcing import make_bank

    ap = argparse.ArgumentParser(prog="python -m benchmarks._peer_graphql")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--dsn", required=True)
    ap.add_argument("--schema", required=True)
    ap.add_argument("--accounts", type=int, default=1024)
    args = ap.parse_args(argv)
    bank = make_bank(args.dsn, args.schema, pool_size=POOL)
    ids = {f"bench-peer-{i}": bank.open_account("bench", "EUR") for i in range(args.accounts)}
    app = build(bank, ids)

    class Server(uvicorn.Server):
        async def startup(self, sockets: Any = None) -> None:
            asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(POOL))
            await super().startup(sockets)
            print("READY", flush=True)

    config = uvicorn.Config(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False,
                            loop="uvloop", http="httptools", lifespan="off")
    Server(config).run()
    sys.exit(0)


if __name__ == "__main__":
    main()

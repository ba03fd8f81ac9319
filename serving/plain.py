"""The same ingress app under plain uvicorn in one process, without Ray Serve.

The benchmark's baseline, and a quick way to debug the app: ``python -m
eventray.serving.plain --port 8001``. It talks to the same shard actors and read models.
With ``EVENTRAY_HTTPS`` on it serves HTTPS only, with the ingress certificate (see
``ServingSettings.ingress_tls``), as the Serve ingress does.
"""

from __future__ import annotations

import argparse


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    from eventray.platform.composition import Runtime
    from eventray.platform.devstack.state import effective_settings
    from eventray.serving.app import build_app
    from eventray.serving.settings import ServingSettings

    parser = argparse.ArgumentParser(prog="python -m eventray.serving.plain")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--app", default=None, help="the eventray.App (default: EVENTRAY_APP, else the bank)")
    args = parser.parse_args(argv)
    settings, serving = effective_settings(), ServingSettings()
    tls = serving.ingress_tls(settings)
    ssl = {} if tls is None else {"ssl_certfile": str(tls[0]), "ssl_keyfile": str(tls[1])}
    app = build_app(Runtime.load(settings, app=args.app), serving)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False,
                loop="uvloop", http="httptools", ws="websockets", lifespan="on", **ssl)


if __name__ == "__main__":
    main()

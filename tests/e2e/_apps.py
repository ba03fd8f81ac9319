"""Removing an app a test deployed on the shared dev stack (its data stays): its actors idle
otherwise, and the rest of the suite shares the machine's two cores with them."""

from __future__ import annotations


def remove_app(path: str, serve_app: str) -> None:
    """Release and remove every shard, runner and coordinator of the app at ``path``, and its Serve app."""
    from ray import serve

    from eventray.platform.composition import Runtime
    from eventray.platform.devstack.state import effective_settings
    from eventray.platform.projections.actor import stop_topic_runners
    from eventray.platform.runtime.shards import stop_shards
    from eventray.platform.sagas.composition import stop_coordinators

    rt = Runtime.load(effective_settings(), app=path)
    rt.connect_ray()
    for saga in rt.app.sagas:
        stop_coordinators(rt, saga)
    stop_topic_runners(rt)
    stop_shards(rt)
    try:
        serve.delete(serve_app)
    except Exception:  # noqa: BLE001 - Serve not running: nothing to delete
        pass

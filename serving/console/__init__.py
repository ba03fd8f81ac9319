"""The web console at ``/console``: server-rendered screens over the platform of any app.

:mod:`.data` holds the bounded, read-mostly queries the screens render (events by aggregate
and correlation id, projections with lag and replay, sagas, the cluster); the routes and
templates render them for a person with the admin role.
"""

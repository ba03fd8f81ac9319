"""The bundled example app: a bank, declared in :mod:`eventray.serving.bank.app`.

Its domain lives in the top-level folders ``aggregates/`` (User, Account), ``sagas/``
(TransferMoney) and ``projections/`` (the read models); this package holds what serves it:
the App declaration, its GraphQL extension (SDL, resolvers, authorisation rules) and its fraud
scoring. The platform never imports any of it; it is found by ``EVENTRAY_APP``.
"""

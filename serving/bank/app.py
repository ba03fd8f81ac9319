"""The bank, declared for eventray: ``EVENTRAY_APP=eventray.serving.bank.app:app`` (the default)."""

from __future__ import annotations

import eventray
from eventray.aggregates import ACCOUNT, USER
from eventray.projections import AccountActivity, AccountBalances, Alerts, SupportInbox, UserDirectory
from eventray.sagas.kyc import Kyc
from eventray.sagas.transfer_money import TransferMoney
from eventray.serving.bank.fraud import fraud_services, transfer_policy
from eventray.serving.bank.kyc import kyc_policy, kyc_services

app = eventray.App(
    "bank",
    topic="eventray.events",
    aggregates=[USER, ACCOUNT],
    projections=[UserDirectory, AccountBalances, AccountActivity, Alerts, SupportInbox],
    sagas=[eventray.Saga(TransferMoney, policy=transfer_policy, services=fraud_services),
           eventray.Saga(Kyc, policy=kyc_policy, services=kyc_services)],
    # imported on the GraphQL replicas only: shards and runners never load Ariadne
    graphql="eventray.serving.bank.graphql:extension",
    models=("anomaly", "sentiment", "digits", "recommend", "topics", "recommend_hybrid",
            "entities", "faces", "objects", "ocr"),
    chaos="eventray.serving.bank.chaos:workload",
)

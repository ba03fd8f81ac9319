"""Saga definitions: pure state machines (see :mod:`eventray.platform.sagas.definition`).

``SAGAS`` maps each saga's name to its definition class; coordinators host them.
"""

from __future__ import annotations

from .kyc import Kyc
from .transfer_money import TransferMoney

__all__ = ["SAGAS", "Kyc", "TransferMoney"]

SAGAS = {TransferMoney.name: TransferMoney, Kyc.name: Kyc}

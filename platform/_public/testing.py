"""Given/when/then for a domain's pure parts, with no Kafka, PostgreSQL or Ray running.

    scenario(ORDER).given(OrderPlaced(...)).when(CancelOrder(...)).then(OrderCancelled(...))
    scenario(ORDER).given().when(CancelOrder(...)).raises(eventray.NotFound)
    saga_scenario(Fulfilment()).given(request).when(LogEvent(...)).then(status="reserving")

A failing ``then`` names the first event (or saga field) that differed.
"""

from __future__ import annotations

from eventray.platform.sagas.testing import SagaScenario, saga_scenario
from eventray.platform.testing import Scenario, ScenarioFailed, scenario

__all__ = ["SagaScenario", "Scenario", "ScenarioFailed", "saga_scenario", "scenario"]

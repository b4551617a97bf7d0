"""Each service's declared subscriptions are the consumers its process starts and the receive operations of
its published AsyncAPI document: one declaration, the three of them equal."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import FastAPI

from services.inquiry.app import create_app as create_inquiry
from services.notify.app import create_app as create_notify
from services.tracking.app import create_app as create_tracking
from services.tracking.consumers import ProjectionConsumer
from shared.keyed_consumer import KeyOrderedConsumer
from shared.subscriptions import Kind, Subscription, receive_operations
from tools.apidocs import asyncapi_of

FACTORIES: dict[str, Any] = {"inquiry": create_inquiry, "notify": create_notify, "tracking": create_tracking}
KINDS = {KeyOrderedConsumer: Kind.KEY_ORDERED, ProjectionConsumer: Kind.PROJECTION}


@pytest.fixture(scope="module", params=sorted(FACTORIES))
def service(request: pytest.FixtureRequest) -> tuple[str, FastAPI]:
    return request.param, FACTORIES[request.param]()


def test_the_process_starts_exactly_the_declared_consumers(service: tuple[str, FastAPI]) -> None:
    _, app = service
    declared: list[Subscription] = app.state.subscriptions
    consumers = app.state.bus.consumers
    assert [(c.topic, c.group_id, KINDS[type(c)]) for c in consumers] == [(s.topic, s.group, s.kind) for s in declared]
    assert not app.state.bus.broker.subscribers, "no consumer besides the declared ones"


def test_the_asyncapi_document_receives_exactly_the_declared_subscriptions(service: tuple[str, FastAPI]) -> None:
    name, app = service
    declared = {(s.topic, s.group) for s in app.state.subscriptions}
    assert receive_operations(asyncapi_of(name, app)) == declared
    assert len(declared) == len(app.state.subscriptions), "one declaration per topic and group"


def test_the_asyncapi_document_sends_exactly_the_declared_publications(service: tuple[str, FastAPI]) -> None:
    name, app = service
    document = asyncapi_of(name, app)
    sent = {
        (document["channels"][op["channel"]["$ref"].rsplit("/", 1)[-1]]["address"], op["channel"]["$ref"])
        for op in document["operations"].values()
        if op["action"] == "send"
    }
    declared = {
        (p.topic, f"#/channels/{p.topic}:{event.__name__}") for p in app.state.publications for event in p.events
    }
    assert sent == declared

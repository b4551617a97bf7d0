"""`python -m shared.urls --wait`: the one `desk ready:` line of `make run`, or a line naming what is not."""

from __future__ import annotations

import time

from shared.urls import LOCAL_PROBES, Probe, answers, not_ready_line, ready_line, wait_until_ready


def test_it_waits_until_every_probe_answers() -> None:
    started = time.monotonic()
    ready_from = {"a": started + 0.3, "b": started}
    checked: list[str] = []

    def check(probe: Probe) -> bool:
        checked.append(probe.name)
        return time.monotonic() >= ready_from[probe.name]

    pending = wait_until_ready(
        [Probe("a", "tcp://x:1"), Probe("b", "tcp://x:2")], timeout_s=5, interval_s=0.05, check=check
    )
    assert pending == []
    assert time.monotonic() - started >= 0.3
    assert checked.count("b") == 1  # a probe that answered is not asked again


def test_past_the_deadline_it_names_what_never_answered() -> None:
    never = Probe("notify", "http://127.0.0.1:1/readyz")
    pending = wait_until_ready(
        [never, Probe("kafka", "tcp://x:1")], timeout_s=0.2, interval_s=0.05, check=lambda probe: probe.name == "kafka"
    )
    assert pending == [never]
    line = not_ready_line(pending, 180)
    assert line.startswith("desk NOT ready after 180s") and "notify (http://127.0.0.1:1/readyz)" in line


def test_a_closed_port_does_not_answer() -> None:
    assert not answers(Probe("nothing", "tcp://127.0.0.1:1"), timeout_s=0.5)
    assert not answers(Probe("nothing", "http://127.0.0.1:1/readyz"), timeout_s=0.5)


def test_the_ready_line_and_the_probes_cover_the_desk() -> None:
    assert ready_line().startswith("desk ready: intake http://127.0.0.1:8081/docs")
    names = {probe.name for probe in LOCAL_PROBES}
    assert {"kafka", "redis", "postgresql", "intake", "inquiry", "tracking", "notify"} <= names
    assert all(probe.url.startswith(("http://127.0.0.1:", "tcp://127.0.0.1:")) for probe in LOCAL_PROBES)

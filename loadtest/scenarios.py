"""The scenarios: name -> Locust user class and the request it sends.

The compare and capacity commands use these names; the locustfile defines the classes.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Scenario:
    name: str  # CLI name and Locust tag
    user_class: str  # class in loadtest/locustfile.py
    path: str  # request path; {delay_ms} and {work} are filled from the custom arguments
    method: str = "GET"


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario("items", "ItemsUser", "/items/{item_id}"),
        Scenario("db", "DbUser", "/io/db?delay_ms={delay_ms}"),
        Scenario("upstream", "UpstreamUser", "/io/upstream?delay_ms={delay_ms}"),
        Scenario("cpu-python", "CpuPythonUser", "/cpu?work={work}&kind=python"),
        Scenario("cpu-native", "CpuNativeUser", "/cpu?work={work}&kind=native"),
        Scenario("mixed", "MixedUser", "/mixed"),
        Scenario("write", "WriteUser", "/orders", method="POST"),
    )
}

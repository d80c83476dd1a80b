"""Locust scenarios for the lab (the full set arrives with the compare tooling).

locust -f loadtest/locustfile.py --headless -u 200 -r 200 -t 10s -H http://127.0.0.1:8001
"""

from locust import FastHttpUser, constant, events, task
from locust.argument_parser import LocustArgumentParser


@events.init_command_line_parser.add_listener
def _arguments(parser: LocustArgumentParser) -> None:
    parser.add_argument("--delay-ms", type=int, default=200, help="delay of each slow call")


class UpstreamUser(FastHttpUser):
    """One slow upstream call after another, no think time: a closed loop of N users."""

    wait_time = constant(0)

    @task
    def upstream(self) -> None:
        delay = self.environment.parsed_options.delay_ms
        self.client.get(f"/io/upstream?delay_ms={delay}", name="/io/upstream")

"""What `locust -f loadtest/locustfile.py,loadtest/shapes.py` adds: the load shapes StepRamp
and Spike (loadtest/generator/shapes.py), kept at this path because launchers name it."""

from loadtest.generator.shapes import Spike, StepRamp

__all__ = ["Spike", "StepRamp"]

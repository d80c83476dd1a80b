"""What `locust -f loadtest/locustfile.py` loads: the lab's users (loadtest/generator/users.py).

Kept at this path because launchers name it (locust.conf, `make lab`, compose, the locust image).
Locust picks user classes from this module's names, so the generated classes are added here:
one per scenario of loadtest/generator/scenarios.py, named there (ItemsUser, UpstreamUser, ...).
"""

from loadtest.generator.users import USER_CLASSES

globals().update(USER_CLASSES)

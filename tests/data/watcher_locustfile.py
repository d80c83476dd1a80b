"""loadtest/locustfile.py plus the test stand-in for the Locust watcher (tests/fake_watcher.py):
compare run with this locustfile gets the _server.csv and _bystander.csv the real one will write."""

from loadtest.generator.users import USER_CLASSES
from tests.fake_watcher import install

globals().update(USER_CLASSES)
install()

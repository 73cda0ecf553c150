import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from harness import BINARY, DemoBackend, Proxy, RecordingBackend  # noqa: E402


def pytest_configure(config):
    if not os.path.exists(BINARY):
        raise pytest.UsageError(f"{BINARY} not found: run `swift build` first or set SWITCHYARD_BIN")


@pytest.fixture
def started():
    """Collects what a test starts and stops it afterwards, whatever happens."""
    things = []
    yield things
    for thing in reversed(things):
        thing.stop()


@pytest.fixture
def demo(started):
    def make(name):
        backend = DemoBackend(name)
        started.append(backend)
        return backend
    return make


@pytest.fixture
def recorder(started):
    def make(name="rec"):
        backend = RecordingBackend(name)
        started.append(backend)
        return backend
    return make


@pytest.fixture
def proxy(started, tmp_path):
    def make(versions, **options):
        server = Proxy(str(tmp_path), versions, **options)
        started.append(server)
        return server
    return make

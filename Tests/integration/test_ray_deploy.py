"""`switchyard deploy -f` against a real Ray cluster: the version's Ray Serve application is
deployed through Ray's REST API and the weights move only once it is RUNNING; a deploy Ray
fails leaves the weights as they were."""
import json
import os

import pytest

from harness import auth, http_get
from ray_cluster import RayHead
from test_deploy import SERVICE, Service, versions_arg, write_yaml

APP = '''
from ray import serve


@serve.deployment
class Hello:
    async def __call__(self, request):
        return {"version": "v3", "path": request.url.path}


app = Hello.bind()
'''


@pytest.fixture
def ray_head(tmp_path_factory, started):
    code = tmp_path_factory.mktemp("serve_app")
    with open(code / "hello_app.py", "w") as f:
        f.write(APP)
    head = RayHead(str(code))
    started.append(head)
    return head


def serve_config(ray_head, import_path, token_file=None):
    dashboard = {"address": f"http://{ray_head.dashboard}"}
    if token_file:
        dashboard["token_file"] = token_file
    return {
        "name": SERVICE, "version_name": "v3", "image_uri": "anyscale/ray:2.40.0",
        "applications": [{"name": "hello", "route_prefix": "/", "import_path": import_path}],
        "http_options": {"host": "127.0.0.1", "port": ray_head.serve_port},
        "endpoints": [f"127.0.0.1:{ray_head.serve_port}"],
        "ray_dashboard": dashboard,
    }


def test_a_ray_serve_app_is_deployed_before_traffic_moves(ray_head, demo, started, tmp_path):
    backends = {name: demo(name) for name in ("v1", "v2")}
    svc = Service(tmp_path, backends)
    started.append(svc)
    with open(os.path.join(svc.workdir, "ray-token"), "w") as f:
        f.write("cluster-token\n")
    config = write_yaml(svc.workdir, "config_v3.yaml", serve_config(ray_head, "hello_app:app", token_file="ray-token"))
    result = svc.deploy("--versions", versions_arg(("v1", 50), ("v2", 30), ("v3", 20)), "-f", config)
    assert "v3: hello RUNNING" in result.stderr, result.stderr
    assert "v3: added at 20%" in result.stdout
    svc.wait_for_generation(1)
    status, headers, body = http_get(svc.proxy.port, "/ask", auth({"X-ANYSCALE-VERSION": "v3"}))
    assert status == 200, body
    assert json.loads(body) == {"version": "v3", "path": "/ask"}

    # A broken import path: Ray reports DEPLOY_FAILED, the command exits 1 with Ray's
    # message, and the versions file keeps its bytes.
    before = svc.file_bytes()
    broken = write_yaml(svc.workdir, "config_v3_broken.yaml", serve_config(ray_head, "no_such_module:app"))
    failed = svc.deploy("--versions", versions_arg(("v1", 20), ("v2", 30), ("v3", 50)), "-f", broken, "--ray-timeout", "120", check=1)
    assert 'application "hello" failed to deploy' in failed.stderr, failed.stderr
    assert "no_such_module" in failed.stderr, failed.stderr
    assert "no traffic was changed" in failed.stderr
    assert svc.file_bytes() == before

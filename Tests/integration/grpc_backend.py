"""A real gRPC server (grpcio) for the tests, with raw-bytes methods (no generated stubs), the
way a Ray Serve gRPC proxy would serve a deployment. Every answer says which backend gave it
(`served-by` in the initial and trailing metadata)."""
import json
import threading
import time
from concurrent import futures

import grpc

SERVICE = "test.Echo"
MAX_MESSAGE = 16 * 1024 * 1024
OPTIONS = [("grpc.max_receive_message_length", MAX_MESSAGE), ("grpc.max_send_message_length", MAX_MESSAGE)]


class GrpcBackend:
    """`healthz`: how Ray Serve's `ray.serve.RayServeAPIService/Healthz` answers: "ok",
    "unavailable" (as Ray's HAProxy mode does for an unhealthy node), "draining", or None
    (not served: UNIMPLEMENTED)."""

    def __init__(self, name="backend", healthz="ok"):
        self.name = name
        self.healthz = healthz
        self.health_checks = 0
        self.cancelled = []  # methods whose call the server saw cancelled
        self.metadata = []  # the invocation metadata of each call
        self.lock = threading.Lock()
        handlers = {
            "Unary": grpc.unary_unary_rpc_method_handler(self.unary),
            "Metadata": grpc.unary_unary_rpc_method_handler(self.echo_metadata),
            "MetadataPairs": grpc.unary_unary_rpc_method_handler(self.echo_metadata_pairs),
            "Fail": grpc.unary_unary_rpc_method_handler(self.fail),
            "Slow": grpc.unary_unary_rpc_method_handler(self.slow),
            "Count": grpc.unary_stream_rpc_method_handler(self.count),
            "Sum": grpc.stream_unary_rpc_method_handler(self.sum),
            "Chat": grpc.stream_stream_rpc_method_handler(self.chat),
        }
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=32), options=OPTIONS)
        generic = [grpc.method_handlers_generic_handler(SERVICE, handlers)]
        if healthz:
            health = {"Healthz": grpc.unary_unary_rpc_method_handler(self.check_health)}
            generic.append(grpc.method_handlers_generic_handler("ray.serve.RayServeAPIService", health))
        self.server.add_generic_rpc_handlers(generic)
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.address = f"127.0.0.1:{self.port}"
        self.server.start()

    def stop(self):
        self.server.stop(0).wait()

    def check_health(self, request, context):
        with self.lock:
            self.health_checks += 1
        if self.healthz == "unavailable":
            context.abort(grpc.StatusCode.UNAVAILABLE, "no healthy replica")
        if self.healthz == "draining":
            context.abort(grpc.StatusCode.UNAVAILABLE, "This node is being drained.")
        return b"\n\x07success"  # HealthzResponse(message="success")

    def _begin(self, context):
        with self.lock:
            self.metadata.append(dict(context.invocation_metadata()))
        context.send_initial_metadata([("served-by", self.name)])
        context.set_trailing_metadata([("served-by", self.name), ("x-trailer", "kept")])

    def unary(self, request, context):
        self._begin(context)
        return request

    def echo_metadata(self, request, context):
        self._begin(context)
        return json.dumps(dict(context.invocation_metadata())).encode()

    def echo_metadata_pairs(self, request, context):
        """Every metadata entry in order, repeated keys included."""
        self._begin(context)
        return json.dumps(list(context.invocation_metadata())).encode()

    def fail(self, request, context):
        self._begin(context)
        context.abort(grpc.StatusCode.NOT_FOUND, "no such model: ünïcode 100%")

    def slow(self, request, context):
        self._begin(context)
        cancelled = threading.Event()
        context.add_callback(cancelled.set)
        cancelled.wait(30)
        with self.lock:
            self.cancelled.append("Slow")
        return b""

    def count(self, request, context):
        """`request` is "<n> <gap seconds>": n messages, the gap between them."""
        self._begin(context)
        n, gap = request.decode().split()
        for index in range(int(n)):
            if not context.is_active():
                with self.lock:
                    self.cancelled.append("Count")
                return
            yield f"message {index}".encode()
            time.sleep(float(gap))

    def sum(self, requests, context):
        self._begin(context)
        total = sum(len(message) for message in requests)
        return str(total).encode()

    def chat(self, requests, context):
        self._begin(context)
        for message in requests:
            yield b"echo " + message


def channel(port):
    return grpc.insecure_channel(f"127.0.0.1:{port}", options=OPTIONS)


def method(ch, name, kind="unary_unary"):
    return getattr(ch, kind)(f"/{SERVICE}/{name}")

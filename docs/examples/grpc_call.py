"""One gRPC call through Switchyard, with grpcio and no generated stubs (the message is sent
as raw bytes). With the demo (`make run`) the backends echo the message back.

    python3 docs/examples/grpc_call.py                     # routed by the weights
    python3 docs/examples/grpc_call.py --version v2        # pinned by metadata
    python3 docs/examples/grpc_call.py --target 127.0.0.1:8080 --token demo-token-change-me

With a Ray Serve application, use its generated stubs instead and pass the same metadata:
`authorization`, optionally `x-anyscale-version`, and Ray's own (`application`, ...)."""
import argparse

import grpc

parser = argparse.ArgumentParser()
parser.add_argument("--target", default="127.0.0.1:8080")
parser.add_argument("--token", default="demo-token-change-me")
parser.add_argument("--version", help="pin the call to this version (x-anyscale-version)")
parser.add_argument("--method", default="/ray.serve.UserDefinedService/__call__")
args = parser.parse_args()

metadata = [("authorization", f"Bearer {args.token}"), ("application", "default")]
if args.version:
    metadata.append(("x-anyscale-version", args.version))
with grpc.insecure_channel(args.target) as channel:
    call = channel.unary_unary(args.method)
    try:
        reply, outcome = call.with_call(b"\x0a\x05hello", metadata=metadata, timeout=5)
    except grpc.RpcError as error:
        print(f"{error.code().name}: {error.details()}")
        raise SystemExit(1)
    served = dict(outcome.initial_metadata())
    print(f"{outcome.code().name} from version {served.get('x-anyscale-version')}: {reply!r}")

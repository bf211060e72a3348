#!/usr/bin/env python3
"""Waits until a gRPC server answers SERVING for each health service name.

    wait_serving.py 127.0.0.1:8884 "" roster.v1.UserRegistry ... [--timeout 30]

The empty name is the whole server (what a liveness probe asks).
"""

import argparse
import sys
import time

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("address")
    parser.add_argument("services", nargs="+")
    parser.add_argument("--timeout", type=float, default=30)
    args = parser.parse_args()
    deadline = time.monotonic() + args.timeout
    with grpc.insecure_channel(args.address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for service in args.services:
            last = None
            while True:
                try:
                    status = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=2).status
                    last = health_pb2.HealthCheckResponse.ServingStatus.Name(status)
                    if status == health_pb2.HealthCheckResponse.SERVING:
                        break
                except grpc.RpcError as e:
                    last = f"{e.code().name}: {e.details()}"
                if time.monotonic() > deadline:
                    print(f"{args.address} {service or '(server)'}: {last}", file=sys.stderr)
                    return 1
                time.sleep(0.2)
            print(f"{args.address} {service or '(server)'}: SERVING")
    return 0


if __name__ == "__main__":
    sys.exit(main())

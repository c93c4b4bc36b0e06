"""The `aws` of the rehearsal: the real AWS CLI against the emulator (moto in
server mode, AWS_ENDPOINT_URL), except the few calls the emulator lacks or
answers incompletely, which are answered here from a canned response run
through the command's own --query and --output. Every call is counted.

Run by the `aws` shim on PATH: python awscli.py <aws arguments>.
"""

import json
import os
import subprocess
import sys

import jmespath

REAL_AWS = os.environ["REHEARSAL_REAL_AWS"]
STATE = os.environ["REHEARSAL_STATE"]


def option(args, name):
    for index, arg in enumerate(args):
        if arg == name and index + 1 < len(args):
            return args[index + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def without(args, *names):
    """The arguments without the given options and their values."""
    kept, skip = [], False
    for arg in args:
        if skip:
            skip = False
            continue
        if arg in names:
            skip = True
            continue
        if any(arg.startswith(name + "=") for name in names):
            continue
        kept.append(arg)
    return kept


def text(value):
    """The AWS CLI's text output, for the shapes the guide's queries give."""
    if value is None:
        return "None"
    if isinstance(value, list):
        if value and all(isinstance(item, list) for item in value):
            return "\n".join(text(item) for item in value)
        return "\t".join(text(item) for item in value)
    if isinstance(value, dict):
        return "\t".join(text(item) for item in value.values())
    return str(value)


def answer(response, args):
    query = option(args, "--query")
    if query:
        response = jmespath.search(query, response)
    if option(args, "--output") == "text":
        print(text(response))
    else:
        print(json.dumps(response, indent=4, default=str))


def record(kind, service, operation):
    with open(os.path.join(STATE, kind), "a") as handle:
        handle.write(f"{service} {operation}\n")


def note(service, operation, why):
    print(f"[rehearsal] aws {service} {operation}: stubbed ({why})", file=sys.stderr)


def engine_versions(args):
    # A sample of what RDS lists, in its order: older majors, a Limitless
    # Database version, and minor versions whose text order is not their
    # numeric order (16.10 after 16.9).
    versions = ["15.10", "16.1", "16.4-limitless", "16.6", "16.9", "16.10", "17.4"]
    return {"DBEngineVersions": [{"Engine": "aurora-postgresql", "EngineVersion": v} for v in versions]}


def eks_cluster(args):
    # moto's EKS cluster has neither the VPC id nor the cluster security
    # group EKS reports; the eksctl stand-in recorded the ones it created.
    plain = subprocess.run(
        [REAL_AWS, *without(args, "--query", "--output"), "--output", "json"],
        check=True, capture_output=True, text=True,
    )
    response = json.loads(plain.stdout)
    with open(os.path.join(STATE, "cluster.json")) as handle:
        created = json.load(handle)
    config = response["cluster"].setdefault("resourcesVpcConfig", {})
    config.setdefault("vpcId", created["vpcId"])
    config.setdefault("clusterSecurityGroupId", created["clusterSecurityGroupId"])
    return response


STUBS = {
    ("rds", "describe-db-engine-versions"): (engine_versions, "moto answers it with a server error"),
    ("eks", "describe-cluster"): (eks_cluster, "moto leaves out vpcId and clusterSecurityGroupId; its answer is completed"),
}


def main():
    args = sys.argv[1:]
    service = args[0] if args else ""
    operation = args[1] if len(args) > 1 else ""
    stub = STUBS.get((service, operation))
    if stub:
        handler, why = stub
        note(service, operation, why)
        record("stubbed", service, operation)
        answer(handler(args), args)
        return 0
    record("emulated", service, operation)
    # exec, not a child: a file://<(...) argument names a descriptor of this process.
    os.execv(REAL_AWS, [REAL_AWS, *args])


sys.exit(main())

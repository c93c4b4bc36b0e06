"""Stand-ins for the tools of docs/deploy-eks.md that need a cluster, a
registry or the internet: kubectl (against a cluster), eksctl, helm, docker
and curl. Each prints what it was asked and answers plausibly; where it can,
it checks the request for real: manifests are rendered with the real
`kubectl kustomize`, Secrets and ConfigMaps built with the real
`kubectl create --dry-run=client`, deploy/eks/cluster.yaml checked against
what the guide relies on, and the AWS side effects (the cluster's VPC and
Fargate profiles, IRSA roles, pushed images) created in the emulator, so the
guide's own aws commands find them.

Run by the shims on PATH: python tools.py <tool> <arguments>.
"""

import hashlib
import json
import os
import re
import shlex
import subprocess
import sys
import time

import yaml

REAL_AWS = os.environ["REHEARSAL_REAL_AWS"]
REAL_KUBECTL = os.environ["REHEARSAL_REAL_KUBECTL"]
STATE = os.environ["REHEARSAL_STATE"]


def say(tool, args, what=""):
    line = f"[rehearsal] {tool} {shlex.join(args)}"
    if len(line) > 200:
        line = line[:197] + "..."
    print(line + (f": {what}" if what else ""), file=sys.stderr)


def fail(message):
    print(f"[rehearsal] FAILED: {message}", file=sys.stderr)
    sys.exit(1)


def option(args, *names):
    for index, arg in enumerate(args):
        for name in names:
            if arg == name and index + 1 < len(args):
                return args[index + 1]
            if arg.startswith(name + "="):
                return arg.split("=", 1)[1]
    return None


def options(args, name):
    found = []
    for index, arg in enumerate(args):
        if arg == name and index + 1 < len(args):
            found.append(args[index + 1])
        elif arg.startswith(name + "="):
            found.append(arg.split("=", 1)[1])
    return found


def aws(*args, check=True):
    """The real AWS CLI against the emulator (not counted: a tool's side effect)."""
    done = subprocess.run([REAL_AWS, *args, "--output", "json"], capture_output=True, text=True)
    if check and done.returncode != 0:
        fail(f"aws {' '.join(args)}: {done.stderr.strip()}")
    return json.loads(done.stdout) if done.stdout.strip() else {}


def render(directory):
    done = subprocess.run([REAL_KUBECTL, "kustomize", directory], capture_output=True, text=True)
    if done.returncode != 0:
        fail(f"kubectl kustomize {directory}: {done.stderr.strip()}")
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def duration(value):
    match = re.fullmatch(r"(\d+)(s|m|h)", value or "")
    if not match:
        return 0
    return int(match.group(1)) * {"s": 1, "m": 60, "h": 3600}[match.group(2)]


def has_registry_host(image):
    host = image.split("/")[0]
    return "/" in image and ("." in host or ":" in host)


# kubectl ------------------------------------------------------------------

def selected_by_security_group_policy():
    with open("k8s/overlays/eks/securitygrouppolicy.yaml") as handle:
        policy = yaml.safe_load(handle)
    values = set()
    for expression in policy["spec"]["podSelector"].get("matchExpressions", []):
        if expression["key"] == "app" and expression["operator"] == "In":
            values.update(expression["values"])
    return values


def kubectl_run(args):
    name = args[1]
    labels = dict(pair.split("=", 1) for label in options(args, "--labels") for pair in label.split(","))
    if labels.get("app") not in selected_by_security_group_policy():
        fail(f"kubectl run {name}: its labels {labels} are not selected by the SecurityGroupPolicy, "
             "so the pod gets no route to the database")
    timeout = duration(option(args, "--pod-running-timeout"))
    if timeout < 120:
        fail(f"kubectl run {name}: --pod-running-timeout {timeout}s is too short for a Fargate pod")
    image = option(args, "--image") or ""
    if not has_registry_host(image):
        fail(f"kubectl run {name}: the image {image} names no registry host")
    overrides = json.loads(option(args, "--overrides") or "{}")
    for container in overrides.get("spec", {}).get("containers", []):
        if container.get("image") != image:
            fail(f"kubectl run {name}: --overrides runs {container.get('image')}, not {image}")
        for variable in container.get("env", []):
            if not variable.get("value"):
                fail(f"kubectl run {name}: {variable['name']} is empty")
    stdin = sys.stdin.read() if "-i" in args or "--stdin" in args else ""
    if re.search(r"PASSWORD ''", stdin):
        fail(f"kubectl run {name}: an empty password in the SQL")
    say("kubectl", args[:2], f"pod with app={labels['app']}, {len(stdin.splitlines())} lines of SQL on stdin")
    print(f'pod "{name}" deleted from orders-service namespace')


def kubectl_create(args):
    # The real kubectl builds the object offline; nothing is sent anywhere.
    dry = any(arg.startswith("--dry-run") for arg in args)
    command = [REAL_KUBECTL, *args] if dry else [REAL_KUBECTL, *args, "--dry-run=client", "-o", "yaml"]
    done = subprocess.run(command, stdin=sys.stdin, capture_output=True, text=True,
                          env={**os.environ, "KUBECONFIG": "/nonexistent"})
    if done.returncode != 0:
        fail(f"kubectl {shlex.join(args)}: {done.stderr.strip()}")
    built = yaml.safe_load(done.stdout)
    for key, value in (built.get("data") or {}).items():
        if not value:
            fail(f"kubectl create {built['kind']} {built['metadata']['name']}: {key} is empty")
    if dry:
        print(done.stdout, end="")
    else:
        say("kubectl", args[:4], f"{built['kind']} with keys {sorted((built.get('data') or {}))}")
        print(f"{built['kind'].lower()}/{built['metadata']['name']} created")


def kubectl_apply(args):
    directory = option(args, "-k")
    if directory:
        objects = render(directory)
        say("kubectl", args, f"{len(objects)} objects rendered")
        if directory.rstrip("/").endswith("k8s/aws-observability"):
            # Fargate's log router creates its log group (auto_create_group).
            aws("logs", "create-log-group", "--log-group-name", "/coffeemesh/fargate", check=False)
        return
    path = option(args, "-f")
    source = sys.stdin.read() if path == "-" else open(path).read()
    objects = [doc for doc in yaml.safe_load_all(source) if doc]
    if not objects:
        fail(f"kubectl apply -f {path}: nothing to apply")
    say("kubectl", args, ", ".join(f"{o['kind']}/{o['metadata']['name']}" for o in objects))


def deployment_image(namespace, name):
    overlay = "k8s/overlays/eks" if namespace == "orders-service" else "k8s/opentelemetry-collector"
    for item in render(overlay):
        if item["kind"] == "Deployment" and item["metadata"]["name"] == name:
            return item["spec"]["template"]["spec"]["containers"][0]["image"]
    fail(f"no Deployment {name}")


def kubectl_get(args):
    target = args[1] if len(args) > 1 else ""
    output = option(args, "-o") or ""
    if target.startswith("job/") and "conditions" in output:
        print("SuccessCriteriaMet Complete")
    elif target.startswith("deployment/") and "image" in output:
        print(deployment_image(option(args, "-n"), target.split("/", 1)[1]))
    elif target == "ingress" and "hostname" in output:
        print("k8s-ordersse-ordersse-0123456789.eu-west-1.elb.amazonaws.com", end="")
    else:
        say("kubectl", args)
        print("NAME    READY   STATUS    AGE")


def kubectl(args):
    verb = args[0] if args else ""
    if verb == "kustomize":
        os.execv(REAL_KUBECTL, [REAL_KUBECTL, *args])
    if verb == "run":
        return kubectl_run(args)
    if verb == "create":
        return kubectl_create(args)
    if verb == "apply":
        return kubectl_apply(args)
    if verb == "get":
        return kubectl_get(args)
    if verb == "delete" and option(args, "-k"):
        render(option(args, "-k"))
    if verb == "wait" and not option(args, "--for"):
        fail("kubectl wait without --for")
    say("kubectl", args)
    if verb == "logs":
        print('{"level":"INFO","fields":{"message":"migrate: schema already at version 4"}}')


# eksctl -------------------------------------------------------------------

CLUSTER_KEYS = {"apiVersion", "kind", "metadata", "availabilityZones", "vpc", "iam", "addons",
                "fargateProfiles", "cloudWatch", "autoModeConfig"}


def check_cluster_config(path):
    with open(path) as handle:
        config = yaml.safe_load(handle)
    problems = []
    if config.get("apiVersion") != "eksctl.io/v1alpha5" or config.get("kind") != "ClusterConfig":
        problems.append("not an eksctl.io/v1alpha5 ClusterConfig")
    unknown = set(config) - CLUSTER_KEYS
    if unknown:
        problems.append(f"fields this guide does not expect: {sorted(unknown)}")
    metadata = config.get("metadata", {})
    region = os.environ["AWS_REGION"]
    if metadata.get("name") != os.environ["CLUSTER"]:
        problems.append(f"metadata.name {metadata.get('name')}, the guide's CLUSTER is {os.environ['CLUSTER']}")
    if metadata.get("region") != region:
        problems.append(f"metadata.region {metadata.get('region')}, not {region}")
    if not re.fullmatch(r"1\.\d+", str(metadata.get("version", ""))):
        problems.append(f"metadata.version {metadata.get('version')!r} is not a quoted minor version")
    zones = config.get("availabilityZones", [])
    if len(zones) < 2 or any(not zone.startswith(region) for zone in zones):
        problems.append(f"availabilityZones {zones} are not zones of {region}")
    if config.get("autoModeConfig", {}).get("enabled") is not False:
        problems.append("autoModeConfig.enabled is not false")
    if not config.get("iam", {}).get("withOIDC"):
        problems.append("no OIDC provider (IRSA)")
    endpoints = config.get("vpc", {}).get("clusterEndpoints", {})
    if not endpoints.get("privateAccess"):
        problems.append("the API endpoint has no private access")
    if not config.get("vpc", {}).get("publicAccessCIDRs"):
        problems.append("no publicAccessCIDRs: the endpoint would be open to the internet")
    profiles = config.get("fargateProfiles", [])
    namespaces = {s.get("namespace") for p in profiles for s in p.get("selectors", [])}
    for needed in ["kube-system", "orders-service", "external-secrets", "opentelemetry"]:
        if needed not in namespaces:
            problems.append(f"no Fargate profile selects {needed}")
    addons = {addon.get("name"): addon for addon in config.get("addons", [])}
    coredns = json.loads(addons.get("coredns", {}).get("configurationValues", "{}"))
    if coredns.get("computeType") != "Fargate":
        problems.append("CoreDNS is not configured for Fargate")
    if problems:
        fail(f"{path}: " + "; ".join(problems))
    return config


def eksctl_create_cluster(args):
    path = option(args, "-f", "--config-file")
    config = check_cluster_config(path)
    region = config["metadata"]["region"]
    vpc = aws("ec2", "create-vpc", "--cidr-block", "192.168.0.0/16")["Vpc"]["VpcId"]
    subnets = []
    for index, zone in enumerate(config["availabilityZones"]):
        for kind, offset, tag in [("public", 0, "kubernetes.io/role/elb"),
                                  ("private", 3, "kubernetes.io/role/internal-elb")]:
            cidr = f"192.168.{(index + offset) * 32}.0/19"
            subnet = aws("ec2", "create-subnet", "--vpc-id", vpc, "--cidr-block", cidr,
                         "--availability-zone", zone)["Subnet"]["SubnetId"]
            aws("ec2", "create-tags", "--resources", subnet, "--tags", f"Key={tag},Value=1")
            if kind == "private":
                subnets.append(subnet)
    cluster_sg = aws("ec2", "create-security-group", "--group-name", f"eks-cluster-sg-{config['metadata']['name']}",
                     "--description", "EKS cluster security group", "--vpc-id", vpc)["GroupId"]
    trust = json.dumps({"Version": "2012-10-17", "Statement": []})
    service_role = aws("iam", "create-role", "--role-name", "eksctl-coffeemesh-cluster-ServiceRole",
                       "--assume-role-policy-document", trust)["Role"]["Arn"]
    pod_role = aws("iam", "create-role", "--role-name", "eksctl-coffeemesh-cluster-FargatePodExecutionRole",
                   "--assume-role-policy-document", trust)["Role"]["Arn"]
    name = config["metadata"]["name"]
    aws("eks", "create-cluster", "--name", name, "--role-arn", service_role, "--kubernetes-version",
        str(config["metadata"]["version"]), "--resources-vpc-config",
        f"subnetIds={','.join(subnets)},securityGroupIds={cluster_sg}")
    for profile in config["fargateProfiles"]:
        selectors = [f"namespace={s['namespace']}" for s in profile["selectors"]]
        aws("eks", "create-fargate-profile", "--cluster-name", name, "--fargate-profile-name", profile["name"],
            "--pod-execution-role-arn", pod_role, "--subnets", *subnets, "--selectors", *selectors)
    with open(os.path.join(STATE, "cluster.json"), "w") as handle:
        json.dump({"vpcId": vpc, "clusterSecurityGroupId": cluster_sg, "region": region}, handle)
    say("eksctl", args, f"{path} checked; VPC {vpc}, {len(subnets)} private subnets, "
        f"{len(config['fargateProfiles'])} Fargate profiles created in the emulator")


def eksctl_iamserviceaccount(args):
    role = option(args, "--role-name")
    if not role:
        fail("eksctl create iamserviceaccount without --role-name")
    for needed in ["--cluster", "--namespace", "--name"]:
        if not option(args, needed):
            fail(f"eksctl create iamserviceaccount without {needed}")
    trust = json.dumps({"Version": "2012-10-17", "Statement": []})
    aws("iam", "create-role", "--role-name", role, "--assume-role-policy-document", trust)
    for policy in options(args, "--attach-policy-arn"):
        aws("iam", "attach-role-policy", "--role-name", role, "--policy-arn", policy)
    with open(os.path.join(STATE, "irsa-roles"), "a") as handle:
        handle.write(role + "\n")
    say("eksctl", args, f"role {role} created in the emulator")


def eksctl_delete_cluster(args):
    config = check_cluster_config(option(args, "-f", "--config-file"))
    name = config["metadata"]["name"]
    for profile in config["fargateProfiles"]:
        aws("eks", "delete-fargate-profile", "--cluster-name", name, "--fargate-profile-name", profile["name"])
    aws("eks", "delete-cluster", "--name", name)
    roles_file = os.path.join(STATE, "irsa-roles")
    roles = open(roles_file).read().split() if os.path.exists(roles_file) else []
    for role in roles:
        attached = aws("iam", "list-attached-role-policies", "--role-name", role)["AttachedPolicies"]
        for policy in attached:
            aws("iam", "detach-role-policy", "--role-name", role, "--policy-arn", policy["PolicyArn"])
        aws("iam", "delete-role", "--role-name", role)
    say("eksctl", args, f"cluster and {len(roles)} IRSA roles deleted in the emulator")


def eksctl(args):
    if args[:2] == ["create", "cluster"]:
        return eksctl_create_cluster(args)
    if args[:2] == ["create", "iamserviceaccount"]:
        return eksctl_iamserviceaccount(args)
    if args[:2] == ["delete", "cluster"]:
        return eksctl_delete_cluster(args)
    fail(f"eksctl {shlex.join(args)}: not a command the guide is known to use")


# helm, docker, curl -------------------------------------------------------

def helm(args):
    if args[:2] == ["upgrade", "--install"] and not re.fullmatch(r"[0-9.]+", option(args, "--version") or ""):
        fail("helm upgrade --install without an exact --version")
    say("helm", args)


def docker(args):
    if args[:1] == ["login"]:
        if not sys.stdin.read().strip():
            fail("docker login: no password on stdin")
        say("docker", args)
        print("Login Succeeded")
        return
    if args[:2] == ["buildx", "build"]:
        dockerfile = option(args, "-f") or "Dockerfile"
        if not os.path.exists(dockerfile):
            fail(f"docker buildx build: no {dockerfile}")
        if option(args, "--platform") != "linux/amd64":
            fail("docker buildx build: Fargate runs linux/amd64")
        image = option(args, "-t")
        registry, _, rest = image.partition("/")
        repository, _, tag = rest.partition(":")
        expected = f"{os.environ['AWS_ACCOUNT_ID']}.dkr.ecr.{os.environ['AWS_REGION']}.amazonaws.com"
        if registry != expected:
            fail(f"docker buildx build: pushes to {registry}, not the account's registry {expected}")
        # The push: an image manifest in the emulator's ECR repository.
        config_digest = "sha256:" + hashlib.sha256(image.encode()).hexdigest()
        manifest = json.dumps({
            "schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": 1,
                       "digest": config_digest},
            "layers": []})
        aws("ecr", "put-image", "--repository-name", repository, "--image-tag", tag,
            "--image-manifest", manifest)
        say("docker", args, f"pushed {repository}:{tag} to the emulator's ECR")
        return
    if args[:3] == ["buildx", "imagetools", "inspect"]:
        say("docker", args)
        print(json.dumps("sha256:" + hashlib.sha256(args[3].encode()).hexdigest()))
        return
    fail(f"docker {shlex.join(args)}: not a command the guide is known to use")


def fake_jwt():
    def part(value):
        import base64
        return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")
    claims = {"sub": "client", "client_id": "client", "exp": int(time.time()) + 3600,
              "scope": "orders-api/orders", "token_use": "access"}
    return f"{part({'alg': 'RS256', 'kid': 'rehearsal'})}.{part(claims)}.c2lnbmF0dXJl"


def curl(args):
    url = next((arg for arg in args if arg.startswith("https://")), "")
    output = option(args, "-o")
    for index, arg in enumerate(args[:-1]):
        if re.fullmatch(r"-[a-zA-Z]*o", arg):   # -fsSLo FILE
            output = args[index + 1]
    if not url:
        fail(f"curl {shlex.join(args)}: no https URL")
    say("curl", args)
    if url.endswith("/docs/install/iam_policy.json"):
        body = json.dumps({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": ["elasticloadbalancing:*", "wafv2:AssociateWebACL"], "Resource": "*"}]})
    elif url.endswith("global-bundle.pem"):
        body = "-----BEGIN CERTIFICATE-----\nrehearsal\n-----END CERTIFICATE-----\n"
    elif url.endswith("/oauth2/token"):
        body = json.dumps({"access_token": fake_jwt(), "token_type": "Bearer", "expires_in": 3600})
    else:
        body = ""
    if output:
        with open(output, "w") as handle:
            handle.write(body)
    else:
        print(body)


TOOLS = {"kubectl": kubectl, "eksctl": eksctl, "helm": helm, "docker": docker, "curl": curl}

if __name__ == "__main__":
    tool, arguments = sys.argv[1], sys.argv[2:]
    result = TOOLS[tool](arguments)
    sys.exit(result or 0)

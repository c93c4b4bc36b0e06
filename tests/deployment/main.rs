//! The deployment agrees with the code: the manifests rendered from `k8s/`
//! by `kubectl kustomize`, and the two Dockerfiles, name the port, the probe
//! paths, the environment variables and the binaries that the crate really
//! has. Needs `kubectl` on the PATH, so it runs in its own nextest profile:
//! `cargo nextest run --profile deployment` (CI runs it with everything else).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;

use orders_service::config::{DEFAULT_PORT, VARIABLES};
use orders_service::http::health::{HEALTHZ_PATH, METRICS_PATH, READYZ_PATH};
use serde::Deserialize;
use serde_json::Value;

mod eks;
mod events;
mod images;
mod workloads;

const SERVER_IMAGE: &str = "coffeemesh-orders";
const MIGRATIONS_IMAGE: &str = "coffeemesh-orders-migrations";
/// The server's Secret: a database user that reads and writes rows.
const SECRET_NAME: &str = "db-credentials";
/// The migrations Job's Secret: the schema's owner.
const MIGRATIONS_SECRET_NAME: &str = "db-migrations-credentials";
const SECRET_KEY: &str = "DB_URL";
/// The event broker's URL, from the Secret of the same name on EKS
/// (docs/deploy-eks.md, steps 5 and 7) and from a generated one locally.
const EVENTS_SECRET_NAME: &str = "events-credentials";
const EVENTS_KEY: &str = "EVENTS_URL";
const NAMESPACE: &str = "orders-service";

/// Each application overlay with the kustomization of its migrations Job.
const OVERLAYS: [(&str, &str); 4] = [
    ("k8s/overlays/local", "k8s/overlays/local/migrations"),
    ("k8s/overlays/eks", "k8s/overlays/eks/migrations"),
    (
        "k8s/overlays/eks-external-secrets",
        "k8s/overlays/eks/migrations",
    ),
    (
        "k8s/overlays/eks-opentelemetry",
        "k8s/overlays/eks/migrations",
    ),
];

/// The base, rendered for its defaults, the Fargate log router's
/// configuration and the trace collector, which run none of our images.
const OTHER_RENDERS: [&str; 3] = ["k8s/base", "k8s/aws-observability", COLLECTOR];

/// The OpenTelemetry Collector that the opentelemetry component sends to.
const COLLECTOR: &str = "k8s/opentelemetry-collector";

/// The overlays that run on EKS, on Fargate.
const EKS_OVERLAYS: [&str; 3] = [
    "k8s/overlays/eks",
    "k8s/overlays/eks-external-secrets",
    "k8s/overlays/eks-opentelemetry",
];

/// The ingress exposes these and nothing else: the operational endpoints
/// stay inside the cluster.
const PUBLIC_PATHS: [(&str, &str); 3] = [
    ("/orders", "Prefix"),
    ("/docs/orders", "Prefix"),
    ("/openapi/orders.json", "Exact"),
];

fn repository() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Applied on its own, before the migrations Job, in the External Secrets
/// way of the EKS guide (docs/deploy-eks.md).
const EXTERNAL_SECRETS_FIRST: &str = "k8s/overlays/eks-external-secrets/secrets";

fn kustomizations() -> BTreeSet<&'static str> {
    OVERLAYS
        .iter()
        .flat_map(|(app, migrations)| [*app, *migrations])
        .collect()
}

/// Every kustomization a test renders.
fn rendered_kustomizations() -> BTreeSet<&'static str> {
    let mut all = kustomizations();
    all.insert(EXTERNAL_SECRETS_FIRST);
    all
}

/// Every kustomization rendered once for all the tests of this file.
fn rendered(kustomization: &str) -> &'static [Value] {
    static RENDERS: OnceLock<BTreeMap<&'static str, Vec<Value>>> = OnceLock::new();
    RENDERS
        .get_or_init(|| {
            rendered_kustomizations()
                .into_iter()
                .chain(OTHER_RENDERS)
                .map(|directory| (directory, render(directory)))
                .collect()
        })
        .get(kustomization)
        .unwrap_or_else(|| panic!("{kustomization} is not rendered by this test"))
}

fn render(kustomization: &str) -> Vec<Value> {
    let output = Command::new("kubectl")
        .args(["kustomize", kustomization])
        .current_dir(repository())
        .output()
        .expect("kubectl must be on the PATH to render the manifests");
    assert!(
        output.status.success(),
        "kubectl kustomize {kustomization} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).expect("kustomize prints UTF-8");
    yaml_serde::Deserializer::from_str(&text)
        .map(|document| {
            Value::deserialize(document)
                .unwrap_or_else(|error| panic!("{kustomization} renders bad YAML: {error}"))
        })
        .filter(|object| !object.is_null())
        .collect()
}

fn objects<'a>(kustomization: &str, kind: &'a str) -> impl Iterator<Item = &'static Value> + 'a {
    rendered(kustomization)
        .iter()
        .filter(move |object| object["kind"] == kind)
}

fn object(kustomization: &str, kind: &str, name: &str) -> &'static Value {
    objects(kustomization, kind)
        .find(|object| object["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("{kustomization} renders no {kind} {name}"))
}

fn deployment(overlay: &str) -> &'static Value {
    object(overlay, "Deployment", "orders-service")
}

fn migrations_job(kustomization: &str) -> &'static Value {
    object(kustomization, "Job", "orders-service-migrations")
}

fn array(value: &Value) -> &[Value] {
    value.as_array().map(Vec::as_slice).unwrap_or_default()
}

fn text(value: &Value) -> &str {
    value.as_str().unwrap_or_default()
}

/// The pod spec of a workload (Deployment, StatefulSet, Job).
fn pod_spec(workload: &Value) -> &Value {
    &workload["spec"]["template"]["spec"]
}

fn containers(workload: &Value) -> impl Iterator<Item = &Value> {
    let spec = pod_spec(workload);
    array(&spec["initContainers"])
        .iter()
        .chain(array(&spec["containers"]))
}

fn container<'a>(workload: &'a Value, name: &str) -> &'a Value {
    containers(workload)
        .find(|container| container["name"] == name)
        .unwrap_or_else(|| panic!("no container {name} in {}", workload["metadata"]["name"]))
}

/// `registry/path/name:tag` split into the last path segment and the tag.
fn image_name_and_tag(image: &str) -> (&str, &str) {
    let without_digest = image.split('@').next().unwrap_or(image);
    let last_segment_start = without_digest.rfind('/').map_or(0, |slash| slash + 1);
    let last_segment = &without_digest[last_segment_start..];
    match last_segment.split_once(':') {
        Some((name, tag)) => (name, tag),
        None => (last_segment, ""),
    }
}

/// The containers that run this crate's binaries, in every workload rendered.
fn service_containers(kustomization: &str) -> Vec<&'static Value> {
    rendered(kustomization)
        .iter()
        .flat_map(containers)
        .filter(|container| {
            let (name, _) = image_name_and_tag(text(&container["image"]));
            name == SERVER_IMAGE || name == MIGRATIONS_IMAGE
        })
        .collect()
}

fn env_value<'a>(container: &'a Value, variable: &str) -> Option<&'a str> {
    array(&container["env"])
        .iter()
        .find(|entry| entry["name"] == variable)
        .map(|entry| text(&entry["value"]))
}

fn secret_refs(container: &Value) -> Vec<&str> {
    array(&container["envFrom"])
        .iter()
        .filter_map(|source| source["secretRef"]["name"].as_str())
        .collect()
}

fn keys(map: &Value) -> BTreeSet<String> {
    map.as_object()
        .map(|entries| entries.keys().cloned().collect())
        .unwrap_or_default()
}

/// The keys a Secret named `name` will hold, as far as the render tells:
/// a Secret's data, or the secretKeys of an ExternalSecret creating it.
fn secret_keys(kustomization: &str, name: &str) -> Option<BTreeSet<String>> {
    let from_secrets = objects(kustomization, "Secret")
        .filter(|secret| secret["metadata"]["name"] == name)
        .map(|secret| {
            let mut names = keys(&secret["data"]);
            names.extend(keys(&secret["stringData"]));
            names
        });
    let from_external_secrets = objects(kustomization, "ExternalSecret")
        .filter(|external| external["spec"]["target"]["name"] == name)
        .map(|external| {
            array(&external["spec"]["data"])
                .iter()
                .map(|entry| text(&entry["secretKey"]).to_owned())
                .collect()
        });
    from_secrets
        .chain(from_external_secrets)
        .reduce(|mut all, more| {
            all.extend(more);
            all
        })
}

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

const SERVER_IMAGE: &str = "coffeemesh-orders";
const MIGRATIONS_IMAGE: &str = "coffeemesh-orders-migrations";
/// The server's Secret: a database user that reads and writes rows.
const SECRET_NAME: &str = "db-credentials";
/// The migrations Job's Secret: the schema's owner.
const MIGRATIONS_SECRET_NAME: &str = "db-migrations-credentials";
const SECRET_KEY: &str = "DB_URL";
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

#[test]
fn the_server_container_listens_on_the_default_port_named_http() {
    for (overlay, _) in OVERLAYS {
        let server = container(deployment(overlay), "orders-service");
        let ports = array(&server["ports"]);
        assert_eq!(ports.len(), 1, "{overlay}: the server opens one port");
        assert_eq!(ports[0]["name"], "http", "{overlay}");
        assert_eq!(ports[0]["containerPort"], DEFAULT_PORT, "{overlay}");
        assert_eq!(ports[0]["protocol"], "TCP", "{overlay}");
        if let Some(port) = env_value(server, "PORT") {
            assert_eq!(port, DEFAULT_PORT.to_string(), "{overlay}: PORT");
        }
    }
}

#[test]
fn the_probes_call_the_health_endpoints_of_the_router() {
    for (overlay, _) in OVERLAYS {
        let server = container(deployment(overlay), "orders-service");
        for (probe, path) in [
            ("startupProbe", HEALTHZ_PATH),
            ("livenessProbe", HEALTHZ_PATH),
            ("readinessProbe", READYZ_PATH),
        ] {
            let check = &server[probe]["httpGet"];
            assert_eq!(check["path"], path, "{overlay}: {probe}");
            assert_eq!(check["port"], "http", "{overlay}: {probe}");
        }
    }
}

#[test]
fn every_environment_variable_a_manifest_sets_is_one_the_configuration_reads() {
    let known: BTreeSet<&str> = VARIABLES.iter().map(|variable| variable.name).collect();
    for kustomization in kustomizations() {
        let service = service_containers(kustomization);
        assert!(
            !service.is_empty(),
            "{kustomization} runs none of our images"
        );
        for container in service {
            let name = text(&container["name"]);
            for entry in array(&container["env"]) {
                let variable = text(&entry["name"]);
                assert!(
                    known.contains(variable),
                    "{kustomization}: container {name} sets {variable}, which the configuration does not read"
                );
            }
            for source in array(&container["envFrom"]) {
                assert!(
                    source["prefix"].is_null(),
                    "{kustomization}: container {name} renames variables with a prefix"
                );
                let config_map = source["configMapRef"]["name"].as_str();
                let from_config_map = config_map.map(|map| {
                    let data = &object(kustomization, "ConfigMap", map)["data"];
                    keys(data)
                });
                let secret = source["secretRef"]["name"].as_str();
                let from_secret = secret.and_then(|secret| secret_keys(kustomization, secret));
                for variable in from_config_map.into_iter().chain(from_secret).flatten() {
                    assert!(
                        known.contains(variable.as_str()),
                        "{kustomization}: container {name} gets {variable}, which the configuration does not read"
                    );
                }
            }
        }
    }
}

/// The Secret a container of ours reads: the Job's is the schema owner's.
fn expected_secret(container: &Value) -> &'static str {
    let (image, _) = image_name_and_tag(text(&container["image"]));
    if image == MIGRATIONS_IMAGE {
        MIGRATIONS_SECRET_NAME
    } else {
        SECRET_NAME
    }
}

#[test]
fn the_database_url_comes_from_the_key_db_url_of_the_db_credentials_secret() {
    assert!(VARIABLES.iter().any(|variable| variable.name == SECRET_KEY));
    for kustomization in kustomizations() {
        for container in service_containers(kustomization) {
            let name = text(&container["name"]);
            assert_eq!(
                secret_refs(container),
                [expected_secret(container)],
                "{kustomization}: container {name} reads its Secret with envFrom"
            );
            assert_eq!(
                env_value(container, SECRET_KEY),
                None,
                "{kustomization}: container {name} must not set {SECRET_KEY} in plain text"
            );
        }
        for secret in [SECRET_NAME, MIGRATIONS_SECRET_NAME] {
            if let Some(secret_keys) = secret_keys(kustomization, secret) {
                assert_eq!(
                    secret_keys,
                    BTreeSet::from([SECRET_KEY.to_owned()]),
                    "{kustomization}: the keys of {secret}"
                );
            }
        }
    }
    // Production's secrets are never committed: created by hand or synced.
    for secret in [SECRET_NAME, MIGRATIONS_SECRET_NAME] {
        assert_eq!(secret_keys("k8s/overlays/eks", secret), None);
        assert!(secret_keys("k8s/overlays/eks-external-secrets", secret).is_some());
        assert!(
            secret_keys("k8s/overlays/eks-external-secrets/secrets", secret).is_some(),
            "the ExternalSecrets can be applied before the migrations Job"
        );
    }
    // The local overlay generates both, and the Job's kustomization reads its
    // Secret from there.
    assert!(secret_keys("k8s/overlays/local", MIGRATIONS_SECRET_NAME).is_some());
    assert_eq!(
        objects("k8s/overlays/eks-external-secrets", "Secret").count(),
        0
    );
}

#[test]
fn the_service_sends_port_80_to_the_named_port_http() {
    for (overlay, _) in OVERLAYS {
        let service = object(overlay, "Service", "orders-service");
        assert_eq!(service["spec"]["type"], "ClusterIP", "{overlay}");
        assert_eq!(
            service["spec"]["selector"],
            serde_json::json!({ "app": "orders-service" }),
            "{overlay}"
        );
        assert_eq!(
            service["spec"]["ports"],
            serde_json::json!([
                { "name": "http", "port": 80, "targetPort": "http", "protocol": "TCP" }
            ]),
            "{overlay}"
        );
        assert_eq!(
            deployment(overlay)["spec"]["template"]["metadata"]["labels"]["app"],
            "orders-service",
            "{overlay}: the Service selects the Deployment's pods"
        );
    }
}

#[test]
fn the_ingress_exposes_exactly_the_three_public_paths() {
    let expected: BTreeSet<(String, String)> = PUBLIC_PATHS
        .iter()
        .map(|(path, kind)| ((*path).to_owned(), (*kind).to_owned()))
        .collect();
    for (overlay, _) in OVERLAYS {
        let ingress = object(overlay, "Ingress", "orders-service");
        let rules = array(&ingress["spec"]["rules"]);
        let paths: Vec<&Value> = rules
            .iter()
            .flat_map(|rule| array(&rule["http"]["paths"]))
            .collect();
        let exposed: BTreeSet<(String, String)> = paths
            .iter()
            .map(|path| {
                (
                    text(&path["path"]).to_owned(),
                    text(&path["pathType"]).to_owned(),
                )
            })
            .collect();
        assert_eq!(paths.len(), PUBLIC_PATHS.len(), "{overlay}: no path twice");
        assert_eq!(exposed, expected, "{overlay}");
        for path in paths {
            assert_eq!(
                path["backend"]["service"],
                serde_json::json!({ "name": "orders-service", "port": { "name": "http" } }),
                "{overlay}: {}",
                path["path"]
            );
        }
        assert!(ingress["spec"]["defaultBackend"].is_null(), "{overlay}");
    }
    for internal in [HEALTHZ_PATH, READYZ_PATH, METRICS_PATH] {
        assert!(
            !expected
                .iter()
                .any(|(path, _)| internal.starts_with(path.as_str())),
            "{internal} must stay inside the cluster"
        );
    }
}

#[test]
fn the_eks_ingress_is_an_internet_facing_alb_that_checks_readiness() {
    for overlay in ["k8s/overlays/eks", "k8s/overlays/eks-external-secrets"] {
        let ingress = object(overlay, "Ingress", "orders-service");
        assert_eq!(ingress["spec"]["ingressClassName"], "alb", "{overlay}");
        let annotations = &ingress["metadata"]["annotations"];
        assert!(
            annotations["kubernetes.io/ingress.class"].is_null(),
            "{overlay}: the class annotation is deprecated"
        );
        let annotation =
            |name: &str| text(&annotations[format!("alb.ingress.kubernetes.io/{name}")]);
        assert_eq!(
            annotation("target-type"),
            "ip",
            "{overlay}: Fargate needs IP targets"
        );
        assert_eq!(annotation("scheme"), "internet-facing", "{overlay}");
        assert_eq!(annotation("healthcheck-path"), READYZ_PATH, "{overlay}");
        assert!(
            annotation("target-group-attributes").contains("deregistration_delay.timeout_seconds="),
            "{overlay}: a short deregistration delay"
        );
    }
}

#[test]
fn a_stopping_pod_outlives_its_prestop_sleep_and_the_drain() {
    for (overlay, _) in OVERLAYS {
        let deployment = deployment(overlay);
        let server = container(deployment, "orders-service");
        let sleep = server["lifecycle"]["preStop"]["sleep"]["seconds"]
            .as_u64()
            .unwrap_or_else(|| panic!("{overlay}: a preStop sleep action"));
        let drain_ms: u64 = env_value(server, "SHUTDOWN_TIMEOUT_MS")
            .unwrap_or_else(|| {
                panic!("{overlay}: SHUTDOWN_TIMEOUT_MS is set next to the grace period")
            })
            .parse()
            .expect("SHUTDOWN_TIMEOUT_MS is a number");
        let grace = pod_spec(deployment)["terminationGracePeriodSeconds"]
            .as_u64()
            .unwrap_or_else(|| panic!("{overlay}: terminationGracePeriodSeconds"));
        assert!(
            grace * 1000 > sleep * 1000 + drain_ms,
            "{overlay}: {grace} s of grace for a {sleep} s sleep and a {drain_ms} ms drain"
        );
    }
}

#[test]
fn every_container_requests_what_it_is_limited_to() {
    for kustomization in kustomizations() {
        for workload in rendered(kustomization) {
            for container in containers(workload) {
                let resources = &container["resources"];
                let name = text(&container["name"]);
                assert!(
                    !resources["requests"]["cpu"].is_null()
                        && !resources["requests"]["memory"].is_null(),
                    "{kustomization}: container {name} requests CPU and memory"
                );
                let (image, _) = image_name_and_tag(text(&container["image"]));
                if image == SERVER_IMAGE || image == MIGRATIONS_IMAGE {
                    // Fargate sizes the pod from requests; limits above them
                    // would promise what the pod does not have.
                    assert_eq!(
                        resources["requests"], resources["limits"],
                        "{kustomization}: container {name}"
                    );
                }
            }
        }
    }
}

#[test]
fn every_pod_meets_the_restricted_profile_with_a_read_only_root() {
    for kustomization in kustomizations() {
        for workload in rendered(kustomization) {
            let pod = pod_spec(workload);
            if pod.is_null() {
                continue;
            }
            let workload_name = text(&workload["metadata"]["name"]);
            assert_eq!(
                pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault",
                "{kustomization}: {workload_name}"
            );
            assert_eq!(
                pod["automountServiceAccountToken"], false,
                "{kustomization}: {workload_name} never calls the Kubernetes API"
            );
            for container in containers(workload) {
                let context = &container["securityContext"];
                let name = format!("{workload_name}/{}", text(&container["name"]));
                let non_root = context["runAsNonRoot"]
                    .as_bool()
                    .or(pod["securityContext"]["runAsNonRoot"].as_bool());
                assert_eq!(non_root, Some(true), "{kustomization}: {name} runAsNonRoot");
                assert_eq!(
                    context["allowPrivilegeEscalation"], false,
                    "{kustomization}: {name}"
                );
                assert_eq!(
                    context["readOnlyRootFilesystem"], true,
                    "{kustomization}: {name}"
                );
                assert_eq!(
                    context["capabilities"]["drop"],
                    serde_json::json!(["ALL"]),
                    "{kustomization}: {name}"
                );
                assert!(
                    context["capabilities"]["add"].is_null(),
                    "{kustomization}: {name}"
                );
            }
        }
    }
}

#[test]
fn the_namespace_enforces_the_restricted_profile_and_injects_readiness_gates() {
    for (overlay, _) in OVERLAYS {
        let labels = &object(overlay, "Namespace", NAMESPACE)["metadata"]["labels"];
        assert_eq!(
            labels["pod-security.kubernetes.io/enforce"], "restricted",
            "{overlay}"
        );
        assert_eq!(
            labels["elbv2.k8s.aws/pod-readiness-gate-inject"], "enabled",
            "{overlay}"
        );
        for object in rendered(overlay) {
            if object["kind"] != "Namespace" {
                assert_eq!(
                    object["metadata"]["namespace"], NAMESPACE,
                    "{overlay}: {} {}",
                    object["kind"], object["metadata"]["name"]
                );
            }
        }
    }
}

#[test]
fn the_eks_overlay_keeps_two_replicas() {
    let overlay = "k8s/overlays/eks";
    let deployment = deployment(overlay);
    let replicas = deployment["spec"]["replicas"].as_u64();
    assert!(
        replicas.is_none_or(|count| count >= 2),
        "{overlay}: replicas"
    );
    let autoscaler = object(overlay, "HorizontalPodAutoscaler", "orders-service");
    assert_eq!(autoscaler["apiVersion"], "autoscaling/v2");
    assert!(autoscaler["spec"]["minReplicas"].as_u64() >= Some(2));
    assert_eq!(
        autoscaler["spec"]["scaleTargetRef"]["name"],
        "orders-service"
    );
    let budget = object(overlay, "PodDisruptionBudget", "orders-service");
    assert_eq!(
        budget["spec"]["selector"]["matchLabels"]["app"],
        "orders-service"
    );
    let labels = &deployment["spec"]["template"]["metadata"]["labels"];
    assert_eq!(labels["app.kubernetes.io/name"], "orders-service");
}

/// Fargate ignores them (one pod per node); it spreads pods over the subnets
/// of the Fargate profile instead (docs/deploy-eks.md, step 11).
#[test]
fn no_workload_has_topology_spread_constraints() {
    for kustomization in kustomizations().into_iter().chain(OTHER_RENDERS) {
        for workload in rendered(kustomization) {
            assert!(
                pod_spec(workload)["topologySpreadConstraints"].is_null(),
                "{kustomization}: {} {}",
                workload["kind"],
                workload["metadata"]["name"]
            );
        }
    }
}

#[test]
fn authentication_is_on_in_the_base_and_on_eks_and_off_only_locally() {
    let auth_on = |kustomization: &str| {
        env_value(
            container(deployment(kustomization), "orders-service"),
            "AUTH_ON",
        )
        .map(str::to_owned)
    };
    assert_eq!(auth_on("k8s/base").as_deref(), Some("true"));
    assert_eq!(auth_on("k8s/overlays/local").as_deref(), Some("false"));
    for overlay in EKS_OVERLAYS {
        assert_eq!(auth_on(overlay).as_deref(), Some("true"), "{overlay}");
        let server = container(deployment(overlay), "orders-service");
        for variable in ["JWT_JWKS_URL", "JWT_ISSUER"] {
            let value = env_value(server, variable).unwrap_or_default();
            assert!(
                value.starts_with("https://"),
                "{overlay}: {variable}={value}"
            );
        }
        assert!(
            !env_value(server, "JWT_AUDIENCE")
                .unwrap_or_default()
                .is_empty(),
            "{overlay}: JWT_AUDIENCE"
        );
    }
    for (overlay, _) in OVERLAYS {
        if !EKS_OVERLAYS.contains(&overlay) {
            assert_eq!(overlay, "k8s/overlays/local", "only local turns it off");
        }
    }
}

#[test]
fn the_eks_ingress_serves_https_with_a_certificate_and_redirects_http() {
    for overlay in EKS_OVERLAYS {
        let annotations = &object(overlay, "Ingress", "orders-service")["metadata"]["annotations"];
        let annotation =
            |name: &str| text(&annotations[format!("alb.ingress.kubernetes.io/{name}")]);
        // TLS 1.0 and 1.1 are what the controller's default policy adds.
        assert!(
            annotation("ssl-policy").starts_with("ELBSecurityPolicy-TLS13-1-2"),
            "{overlay}: ssl-policy {}",
            annotation("ssl-policy")
        );
        let ports: Vec<Value> = serde_json::from_str(annotation("listen-ports"))
            .unwrap_or_else(|error| panic!("{overlay}: listen-ports: {error}"));
        assert!(
            ports.contains(&serde_json::json!({"HTTPS": 443})),
            "{overlay}: {ports:?}"
        );
        for port in &ports {
            assert!(
                port.get("HTTPS").is_some() || *port == serde_json::json!({"HTTP": 80}),
                "{overlay}: plain HTTP on {port}"
            );
        }
        if ports.contains(&serde_json::json!({"HTTP": 80})) {
            assert_eq!(annotation("ssl-redirect"), "443", "{overlay}");
        }
        assert!(
            annotation("certificate-arn").starts_with("arn:aws:acm:"),
            "{overlay}: an ACM certificate"
        );
    }
}

#[test]
fn a_security_group_policy_gives_the_eks_pods_their_own_group() {
    for overlay in EKS_OVERLAYS {
        let policy = object(overlay, "SecurityGroupPolicy", "orders-service");
        assert_eq!(policy["apiVersion"], "vpcresources.k8s.aws/v1beta1");
        assert_eq!(policy["metadata"]["namespace"], NAMESPACE);
        let selected: BTreeSet<&str> = array(&policy["spec"]["podSelector"]["matchExpressions"])
            .iter()
            .filter(|expression| expression["key"] == "app" && expression["operator"] == "In")
            .flat_map(|expression| array(&expression["values"]).iter().map(text))
            .collect();
        let server_app =
            text(&deployment(overlay)["spec"]["template"]["metadata"]["labels"]["app"]);
        let job = migrations_job("k8s/overlays/eks/migrations");
        let job_app = text(&job["spec"]["template"]["metadata"]["labels"]["app"]);
        assert!(
            selected.contains(server_app) && selected.contains(job_app),
            "{overlay}: selects {selected:?}"
        );
        let groups = array(&policy["spec"]["securityGroups"]["groupIds"]);
        assert_eq!(
            groups.len(),
            2,
            "{overlay}: the pods' group and the cluster group"
        );
        assert!(groups.iter().all(|group| text(group).starts_with("sg-")));
    }
}

/// Fargate's vCPU and memory combinations (GB), smallest first.
const FARGATE_SIZES: [(f64, &[f64]); 5] = [
    (0.25, &[0.5, 1.0, 2.0]),
    (0.5, &[1.0, 2.0, 3.0, 4.0]),
    (1.0, &[2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]),
    (
        2.0,
        &[
            4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0, 12.0, 13.0, 14.0, 15.0, 16.0,
        ],
    ),
    (
        4.0,
        &[
            8.0, 9.0, 10.0, 11.0, 12.0, 13.0, 14.0, 15.0, 16.0, 17.0, 18.0, 19.0, 20.0, 21.0, 22.0,
            23.0, 24.0, 25.0, 26.0, 27.0, 28.0, 29.0, 30.0,
        ],
    ),
];

fn cpu_cores(quantity: &str) -> f64 {
    match quantity.strip_suffix('m') {
        Some(millis) => millis.parse::<f64>().expect("millicores") / 1000.0,
        None => quantity.parse().expect("cores"),
    }
}

fn memory_mib(quantity: &str) -> f64 {
    for (unit, mib) in [("Gi", 1024.0), ("Mi", 1.0), ("Ki", 1.0 / 1024.0)] {
        if let Some(number) = quantity.strip_suffix(unit) {
            return number.parse::<f64>().expect("memory") * mib;
        }
    }
    panic!("memory {quantity} in a unit this test does not read")
}

/// The Fargate size a pod bills as: its requests plus the 256 MB Fargate adds
/// for its own components, rounded up to the next supported combination.
fn fargate_size(workload: &Value) -> (f64, f64) {
    let (cpu, memory) = containers(workload).fold((0.0, 256.0), |(cpu, memory), container| {
        let requests = &container["resources"]["requests"];
        (
            cpu + cpu_cores(text(&requests["cpu"])),
            memory + memory_mib(text(&requests["memory"])),
        )
    });
    FARGATE_SIZES
        .iter()
        .filter(|(vcpu, _)| *vcpu >= cpu)
        .flat_map(|(vcpu, gbs)| gbs.iter().map(move |gb| (*vcpu, *gb)))
        .find(|(_, gb)| gb * 1024.0 >= memory)
        .expect("a Fargate size")
}

#[test]
fn every_eks_pod_bills_as_the_fargate_size_the_readme_states() {
    let readme = std::fs::read_to_string(repository().join("docs/deploy-eks.md"))
        .expect("docs/deploy-eks.md")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    let workloads = EKS_OVERLAYS
        .iter()
        .map(|overlay| deployment(overlay))
        .chain([migrations_job("k8s/overlays/eks/migrations")]);
    for workload in workloads {
        for container in containers(workload) {
            let resources = &container["resources"];
            assert_eq!(
                resources["requests"], resources["limits"],
                "Fargate needs requests = limits"
            );
        }
        let (vcpu, gb) = fargate_size(workload);
        let stated = format!("billed as {vcpu} vCPU and {gb} GB");
        assert!(
            readme.contains(&stated),
            "{}: docs/deploy-eks.md must say it is {stated}",
            workload["metadata"]["name"]
        );
    }
}

#[test]
fn the_fargate_log_router_sends_to_cloudwatch_with_a_retention() {
    let kustomization = "k8s/aws-observability";
    let namespace = object(kustomization, "Namespace", "aws-observability");
    assert_eq!(
        namespace["metadata"]["labels"]["aws-observability"],
        "enabled"
    );
    let logging = object(kustomization, "ConfigMap", "aws-logging");
    assert_eq!(logging["metadata"]["namespace"], "aws-observability");
    let output = text(&logging["data"]["output.conf"]);
    assert!(output.contains("Name cloudwatch_logs"), "{output}");
    let retention = output
        .lines()
        .find_map(|line| line.trim().strip_prefix("log_retention_days"))
        .map(|days| days.trim().parse::<u32>().expect("days"));
    assert!(retention.is_some_and(|days| days > 0), "{output}");
    let size: usize = logging["data"]
        .as_object()
        .expect("data")
        .iter()
        .map(|(key, value)| key.len() + text(value).len())
        .sum();
    assert!(
        size <= 5300,
        "Fargate rejects an aws-logging of {size} characters"
    );
}

#[test]
fn the_local_overlay_runs_one_replica_of_images_loaded_into_the_cluster() {
    let overlay = "k8s/overlays/local";
    assert_eq!(deployment(overlay)["spec"]["replicas"], 1);
    assert_eq!(objects(overlay, "HorizontalPodAutoscaler").count(), 0);
    for kustomization in [overlay, "k8s/overlays/local/migrations"] {
        for container in service_containers(kustomization) {
            assert_eq!(
                container["imagePullPolicy"], "IfNotPresent",
                "{kustomization}"
            );
        }
    }
}

#[test]
fn the_migrations_job_runs_migrate_at_the_release_of_the_server() {
    for (overlay, migrations) in OVERLAYS {
        let job = migrations_job(migrations);
        assert!(
            job["spec"]["backoffLimit"].is_u64(),
            "{migrations}: backoffLimit"
        );
        // A finished pod keeps its Fargate node, billed until the pod goes.
        let ttl = job["spec"]["ttlSecondsAfterFinished"].as_u64();
        assert!(
            ttl.is_some_and(|seconds| seconds <= 600),
            "{migrations}: ttlSecondsAfterFinished at most 600 s, not {ttl:?}"
        );
        assert_eq!(pod_spec(job)["restartPolicy"], "Never", "{migrations}");
        let migrate = container(job, "migrate");
        let (job_image, job_tag) = image_name_and_tag(text(&migrate["image"]));
        assert_eq!(job_image, MIGRATIONS_IMAGE, "{migrations}");
        let server = container(deployment(overlay), "orders-service");
        let (server_image, server_tag) = image_name_and_tag(text(&server["image"]));
        assert_eq!(server_image, SERVER_IMAGE, "{overlay}");
        assert!(
            !server_tag.is_empty() && server_tag != "latest",
            "{overlay}: a release tag"
        );
        assert_eq!(
            job_tag, server_tag,
            "{migrations} and {overlay} release together"
        );
        let registry = |image: &str| {
            image
                .rsplit_once('/')
                .map(|(registry, _)| registry.to_owned())
        };
        assert_eq!(
            registry(text(&migrate["image"])),
            registry(text(&server["image"])),
            "{migrations} and {overlay} pull from one registry"
        );
        // The Job's kustomization must not own what `kubectl apply -k` of
        // the application owns (deleting one must not delete the other).
        for object in rendered(migrations) {
            let kind = text(&object["kind"]);
            assert!(
                ["Job", "ServiceAccount", "NetworkPolicy"].contains(&kind),
                "{migrations} renders a {kind}"
            );
        }
    }
}

#[test]
fn the_migrations_job_and_the_server_use_different_database_users() {
    for (overlay, migrations) in OVERLAYS {
        let server = container(deployment(overlay), "orders-service");
        let migrate = container(migrations_job(migrations), "migrate");
        assert_eq!(secret_refs(server), [SECRET_NAME], "{overlay}");
        assert_eq!(
            secret_refs(migrate),
            [MIGRATIONS_SECRET_NAME],
            "{migrations}"
        );
        assert_ne!(
            secret_refs(server),
            secret_refs(migrate),
            "{overlay}: the server must not hold the schema owner's credentials"
        );
    }
    // The ExternalSecrets applied before the Job are the overlay's own.
    let names = |kustomization: &str| -> BTreeSet<String> {
        objects(kustomization, "ExternalSecret")
            .map(|external| text(&external["spec"]["target"]["name"]).to_owned())
            .collect()
    };
    assert_eq!(
        names(EXTERNAL_SECRETS_FIRST),
        names("k8s/overlays/eks-external-secrets")
    );
    for object in rendered(EXTERNAL_SECRETS_FIRST) {
        let kind = text(&object["kind"]);
        assert!(
            ["ExternalSecret", "SecretStore", "ServiceAccount"].contains(&kind),
            "{EXTERNAL_SECRETS_FIRST} renders a {kind}"
        );
    }
}

/// The RDS certificate bundle that DB_URL's `sslrootcert` names on EKS.
const RDS_CA_CONFIG_MAP: &str = "rds-ca-bundle";
const RDS_CA_DIRECTORY: &str = "/etc/rds-ca";

#[test]
fn on_eks_both_workloads_mount_the_rds_certificate_bundle_read_only() {
    for (overlay, migrations) in OVERLAYS {
        if overlay == "k8s/overlays/local" {
            continue;
        }
        for (workload, name) in [
            (deployment(overlay), "orders-service"),
            (migrations_job(migrations), "migrate"),
        ] {
            let volume = array(&pod_spec(workload)["volumes"])
                .iter()
                .find(|volume| volume["configMap"]["name"] == RDS_CA_CONFIG_MAP)
                .unwrap_or_else(|| panic!("{overlay}: {name} has no {RDS_CA_CONFIG_MAP} volume"));
            let mount = array(&container(workload, name)["volumeMounts"])
                .iter()
                .find(|mount| mount["name"] == volume["name"])
                .unwrap_or_else(|| panic!("{overlay}: {name} does not mount it"));
            assert_eq!(mount["mountPath"], RDS_CA_DIRECTORY, "{overlay}: {name}");
            assert_eq!(mount["readOnly"], true, "{overlay}: {name}");
        }
    }
    // The guide's URLs name the mounted file and verify the host name.
    let readme = std::fs::read_to_string(repository().join("docs/deploy-eks.md")).unwrap();
    assert!(
        readme.contains(&format!(
            "sslmode=verify-full&sslrootcert={RDS_CA_DIRECTORY}/global-bundle.pem"
        )),
        "docs/deploy-eks.md's DB_URL verifies Aurora's certificate against the mounted bundle"
    );
    assert!(
        !readme.contains("sslmode=require"),
        "docs/deploy-eks.md must not leave Aurora's certificate unchecked"
    );
}

/// One Dockerfile instruction per entry, continuation lines joined.
fn instructions(dockerfile: &str) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(repository().join(dockerfile))
        .unwrap_or_else(|error| panic!("{dockerfile}: {error}"));
    let mut joined = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || (line.is_empty() && current.is_empty()) {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(start) => {
                current.push_str(start);
                current.push(' ');
            }
            None => {
                current.push_str(line);
                joined.push(std::mem::take(&mut current));
            }
        }
    }
    joined
        .into_iter()
        .filter(|instruction| !instruction.trim().is_empty())
        .map(|instruction| {
            let trimmed = instruction.trim();
            let (keyword, arguments) = trimmed
                .split_once(char::is_whitespace)
                .unwrap_or((trimmed, ""));
            (keyword.to_uppercase(), arguments.trim().to_owned())
        })
        .collect()
}

/// The defaults of the `ARG`s declared before the first `FROM`, which a
/// `FROM` may name as `${NAME}`.
fn argument_defaults(instructions: &[(String, String)]) -> BTreeMap<String, String> {
    instructions
        .iter()
        .take_while(|(keyword, _)| keyword != "FROM")
        .filter(|(keyword, _)| keyword == "ARG")
        .filter_map(|(_, arguments)| arguments.split_once('='))
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect()
}

/// The `[[bin]]` names of Cargo.toml.
/// The lines of Cargo.toml under every `header` (a header may repeat, like
/// `[[bin]]`).
fn manifest_lines(header: &str) -> Vec<String> {
    let manifest = std::fs::read_to_string(repository().join("Cargo.toml")).expect("Cargo.toml");
    let mut lines = Vec::new();
    let mut inside = false;
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            inside = line == header;
        } else if inside {
            lines.push(line.to_owned());
        }
    }
    lines
}

fn cargo_binaries() -> BTreeSet<String> {
    manifest_lines("[[bin]]")
        .iter()
        .filter_map(|line| {
            let value = line.strip_prefix("name")?.trim_start().strip_prefix('=')?;
            Some(value.trim().trim_matches('"').to_owned())
        })
        .collect()
}

/// The stages after the last FROM: what the image holds.
fn runtime_stage(instructions: &[(String, String)]) -> &[(String, String)] {
    let last_from = instructions
        .iter()
        .rposition(|(keyword, _)| keyword == "FROM")
        .expect("a FROM");
    &instructions[last_from..]
}

#[test]
fn both_images_build_and_run_binaries_that_cargo_builds() {
    let binaries = cargo_binaries();
    assert!(
        binaries.contains("orders-service") && binaries.contains("migrate"),
        "{binaries:?}"
    );
    for (dockerfile, binary) in [
        ("Dockerfile", "orders-service"),
        ("migrations.dockerfile", "migrate"),
    ] {
        let instructions = instructions(dockerfile);
        let builds: Vec<&str> = instructions
            .iter()
            .filter(|(keyword, arguments)| keyword == "RUN" && arguments.contains("cargo build"))
            .flat_map(|(_, arguments)| {
                let words: Vec<&str> = arguments.split_whitespace().collect();
                words
                    .windows(2)
                    .filter(|pair| pair[0] == "--bin")
                    .map(|pair| pair[1])
                    .collect::<Vec<_>>()
            })
            .collect();
        assert!(
            builds.contains(&binary),
            "{dockerfile} builds {binary}: {builds:?}"
        );
        for built in &builds {
            assert!(
                binaries.contains(*built),
                "{dockerfile} builds {built}, not a [[bin]] of Cargo.toml"
            );
        }
        assert!(
            instructions
                .iter()
                .any(|(keyword, arguments)| keyword == "RUN"
                    && arguments.contains("cargo build --release --locked")),
            "{dockerfile}: a locked release build"
        );
        let runtime = runtime_stage(&instructions);
        let copied: Vec<&str> = runtime
            .iter()
            .filter(|(keyword, _)| keyword == "COPY")
            .map(|(_, arguments)| arguments.as_str())
            .collect();
        assert_eq!(
            copied,
            [format!(
                "--from=binaries /app/target/release/{binary} /usr/local/bin/{binary}"
            )],
            "{dockerfile}: the runtime image holds only {binary}"
        );
        // `binaries` is the builder unless CI hands in what it built once.
        assert_eq!(
            argument_defaults(&instructions)
                .get("BINARIES")
                .map(String::as_str),
            Some("builder"),
            "{dockerfile}: ARG BINARIES=builder"
        );
        assert!(
            instructions
                .iter()
                .any(|(keyword, arguments)| keyword == "FROM"
                    && arguments == "${BINARIES} AS binaries"),
            "{dockerfile}: FROM ${{BINARIES}} AS binaries"
        );
        assert!(
            instructions
                .iter()
                .any(|(keyword, arguments)| keyword == "COPY"
                    && arguments.contains(&format!("target/release/{binary} "))
                    && arguments.ends_with(" /app/target/release/")),
            "{dockerfile}: the prebuilt stage takes {binary} from target/release"
        );
        let entrypoint = runtime
            .iter()
            .find(|(keyword, _)| keyword == "ENTRYPOINT")
            .map(|(_, arguments)| arguments.as_str());
        assert_eq!(
            entrypoint,
            Some(format!("[\"/usr/local/bin/{binary}\"]").as_str()),
            "{dockerfile}"
        );
        let user = runtime
            .iter()
            .rfind(|(keyword, _)| keyword == "USER")
            .map(|(_, arguments)| arguments.split(':').next().unwrap_or_default().to_owned());
        let uid: u32 = user
            .unwrap_or_else(|| panic!("{dockerfile}: a USER"))
            .parse()
            .unwrap_or_else(|_| panic!("{dockerfile}: a numeric USER, for runAsNonRoot"));
        assert_ne!(uid, 0, "{dockerfile}");
        for (keyword, arguments) in &instructions {
            if keyword == "ENV" {
                let variable = arguments.split(['=', ' ']).next().unwrap_or_default();
                assert!(
                    VARIABLES.iter().any(|known| known.name == variable),
                    "{dockerfile} sets {variable}"
                );
            }
        }
    }
}

#[test]
fn the_server_image_exposes_the_default_port() {
    let server = instructions("Dockerfile");
    let exposed: Vec<&str> = runtime_stage(&server)
        .iter()
        .filter(|(keyword, _)| keyword == "EXPOSE")
        .map(|(_, arguments)| arguments.as_str())
        .collect();
    assert_eq!(exposed, [DEFAULT_PORT.to_string()]);
    let port = runtime_stage(&server)
        .iter()
        .find(|(keyword, arguments)| keyword == "ENV" && arguments.starts_with("PORT="))
        .map(|(_, arguments)| arguments.trim_start_matches("PORT=").to_owned());
    if let Some(port) = port {
        assert_eq!(port, DEFAULT_PORT.to_string(), "ENV PORT");
    }
    let migrations = instructions("migrations.dockerfile");
    assert!(
        runtime_stage(&migrations)
            .iter()
            .all(|(keyword, _)| keyword != "EXPOSE"),
        "migrate listens on no port"
    );
}

/// The folders `[patch.crates-io]` takes crates from.
fn patched_paths() -> Vec<String> {
    manifest_lines("[patch.crates-io]")
        .iter()
        .filter_map(|line| {
            let (_, rest) = line.split_once("path = \"")?;
            Some(rest.split('"').next().unwrap_or_default().to_owned())
        })
        .collect()
}

/// cargo-chef's recipe names a patched crate by its path but does not carry
/// it: without the folder, `cargo chef cook` fails to load the manifest.
#[test]
fn patched_crates_reach_the_dependency_build_of_both_images() {
    let paths = patched_paths();
    let manifest = std::fs::read_to_string(repository().join("Cargo.toml")).expect("Cargo.toml");
    assert_eq!(
        paths.is_empty(),
        !manifest.contains("[patch.crates-io]"),
        "every [patch.crates-io] section names a path: {paths:?}"
    );
    for path in &paths {
        assert!(
            repository().join(path).join("Cargo.toml").is_file(),
            "{path}/Cargo.toml"
        );
    }
    let ignored =
        std::fs::read_to_string(repository().join(".dockerignore")).expect(".dockerignore");
    for dockerfile in ["Dockerfile", "migrations.dockerfile"] {
        let instructions = instructions(dockerfile);
        let cook = instructions
            .iter()
            .position(|(keyword, arguments)| {
                keyword == "RUN" && arguments.contains("cargo chef cook")
            })
            .unwrap_or_else(|| panic!("{dockerfile}: cargo chef cook"));
        let stage_start = instructions[..cook]
            .iter()
            .rposition(|(keyword, _)| keyword == "FROM")
            .expect("a FROM");
        for path in &paths {
            let top = path.split('/').next().unwrap_or_default();
            assert!(
                instructions[stage_start..cook]
                    .iter()
                    .any(|(keyword, arguments)| {
                        keyword == "COPY" && arguments.split_whitespace().next() == Some(top)
                    }),
                "{dockerfile}: copies {top} before cargo chef cook"
            );
            assert!(
                !ignored
                    .lines()
                    .map(|line| line.trim().trim_matches('/'))
                    .any(|line| line == top || line == format!("{top}/**")),
                ".dockerignore leaves out {top}"
            );
        }
    }
}

fn version_numbers(version: &str) -> Vec<u32> {
    version
        .split('.')
        .map(|part| part.parse().expect("a numeric version"))
        .collect()
}

/// Builder and runtime on Debian 13, so the binary runs against the glibc it
/// was linked with, and a builder no older than the crate's rust-version.
#[test]
fn both_images_build_and_run_on_debian_13() {
    let rust_version = manifest_lines("[package]")
        .iter()
        .find_map(|line| {
            let value = line
                .strip_prefix("rust-version")?
                .trim_start()
                .strip_prefix('=')?;
            Some(value.trim().trim_matches('"').to_owned())
        })
        .expect("rust-version in Cargo.toml");
    for dockerfile in ["Dockerfile", "migrations.dockerfile"] {
        let instructions = instructions(dockerfile);
        let defaults = argument_defaults(&instructions);
        let images: Vec<String> = instructions
            .iter()
            .filter(|(keyword, _)| keyword == "FROM")
            .filter_map(|(_, arguments)| arguments.split_whitespace().next())
            .map(|image| {
                image
                    .strip_prefix("${")
                    .and_then(|name| name.strip_suffix('}'))
                    .map_or(image, |name| &defaults[name])
                    .to_owned()
            })
            .collect();
        // Pinned by digest, with the registry named: a tag can be moved, and
        // a name without a host depends on the client's default registry.
        for image in [&images[0], images.last().expect("a FROM")] {
            let (_, digest) = image
                .split_once("@sha256:")
                .unwrap_or_else(|| panic!("{dockerfile}: {image} is not pinned by digest"));
            assert!(
                digest.len() == 64 && digest.chars().all(|c| c.is_ascii_hexdigit()),
                "{dockerfile}: {image}"
            );
            assert!(
                image
                    .split('/')
                    .next()
                    .is_some_and(|host| host.contains('.')),
                "{dockerfile}: {image} names no registry"
            );
        }
        let builder = images[0]
            .strip_prefix("docker.io/library/rust:")
            .and_then(|tag| tag.split_once("-slim-trixie@"))
            .map(|(version, _)| version)
            .unwrap_or_else(|| panic!("{dockerfile}: builder {}", images[0]));
        assert_eq!(
            builder.split('.').count(),
            3,
            "{dockerfile}: a full rust version, not a moving tag"
        );
        assert!(
            version_numbers(builder) >= version_numbers(&rust_version),
            "{dockerfile}: rust {builder} < rust-version {rust_version}"
        );
        assert!(
            images
                .last()
                .is_some_and(|image| image.starts_with("gcr.io/distroless/cc-debian13:nonroot@")),
            "{dockerfile}: {images:?}"
        );
    }
}

/// Every `helm install` or `helm upgrade --install` of the EKS guide names the
/// chart version it was written against.
#[test]
fn every_helm_install_in_the_readme_pins_a_chart_version() {
    let readme = std::fs::read_to_string(repository().join("docs/deploy-eks.md"))
        .expect("docs/deploy-eks.md");
    let joined = readme.replace("\\\n", " ");
    let installs: Vec<&str> = joined
        .lines()
        .filter(|line| {
            let line = line.trim_start();
            line.starts_with("helm install") || line.starts_with("helm upgrade --install")
        })
        .collect();
    assert!(
        !installs.is_empty(),
        "the EKS guide installs charts with helm"
    );
    for install in installs {
        let words: Vec<&str> = install.split_whitespace().collect();
        let version = words
            .windows(2)
            .find(|pair| pair[0] == "--version")
            .map(|pair| pair[1]);
        assert!(
            version.is_some_and(|version| version.chars().all(|c| c.is_ascii_digit() || c == '.')),
            "a chart without an exact --version: {install}"
        );
    }
}

/// CI proves both images by building them from the committed Dockerfiles
/// with buildah, never pulling (no base image can be pulled there), from the
/// release binaries it built once, and running what they hold; a step left
/// out of `.ci/run` proves nothing.
#[test]
fn ci_builds_both_images_without_pulling_and_runs_them() {
    let read = |path: &str| std::fs::read_to_string(repository().join(path)).expect(path);
    let run = read(".ci/run");
    assert!(
        run.lines()
            .any(|line| !line.trim_start().starts_with('#')
                && line.trim().ends_with(" .ci/images.sh")),
        ".ci/run runs .ci/images.sh"
    );
    let images = read(".ci/images.sh");
    for needed in [
        "BUILDAH_ISOLATION=chroot",
        "BINARIES=prebuilt",
        "RUNTIME_IMAGE=",
        "cargo build --release --locked",
        "-f Dockerfile",
        "-f migrations.dockerfile",
        "--userspec=65532:65532",
        "remount,bind,ro",
        "/usr/local/bin/migrate",
        "/readyz",
    ] {
        assert!(images.contains(needed), ".ci/images.sh lacks {needed}");
    }
    let builds: Vec<&str> = images
        .lines()
        .filter(|line| line.trim_start().starts_with("buildah build"))
        .collect();
    assert_eq!(builds.len(), 2, "one build per Dockerfile");
    for build in builds {
        assert!(
            build.contains("--pull=never"),
            "a build that may pull: {build}"
        );
    }
}

/// Traces are off unless the OpenTelemetry component is applied; with it the
/// server sends OTLP/HTTP to the collector's Service, in a protocol and
/// with a sampler the configuration accepts, and nothing else changes.
#[test]
fn only_the_opentelemetry_component_turns_traces_on() {
    let traced = "k8s/overlays/eks-opentelemetry";
    for (overlay, _) in OVERLAYS {
        let server = container(deployment(overlay), "orders-service");
        let endpoint = env_value(server, "OTEL_EXPORTER_OTLP_ENDPOINT");
        if overlay != traced {
            assert_eq!(endpoint, None, "{overlay} sends traces");
            continue;
        }
        let endpoint = endpoint.expect("the component names a collector");
        assert!(
            endpoint.starts_with("http://") && endpoint.ends_with(":4318"),
            "OTLP/HTTP's port: {endpoint}"
        );
        let variables: Vec<(String, String)> = array(&server["env"])
            .iter()
            .map(|entry| {
                (
                    text(&entry["name"]).to_owned(),
                    text(&entry["value"]).to_owned(),
                )
            })
            .collect();
        let settings = orders_service::config::Settings::from_vars(
            variables
                .into_iter()
                .chain([("DB_URL".to_owned(), "postgresql://db/orders".to_owned())]),
        );
        let traces = match settings {
            Ok(settings) => settings.traces,
            Err(err) => panic!("{traced}: {err}"),
        };
        assert_eq!(
            traces.endpoint.as_deref(),
            Some(format!("{endpoint}/v1/traces").as_str())
        );
    }
    let mut without = rendered(traced).to_vec();
    let mut eks = rendered("k8s/overlays/eks").to_vec();
    for objects in [&mut without, &mut eks] {
        for object in objects.iter_mut() {
            if object["kind"] == "Deployment" {
                let env = &mut object["spec"]["template"]["spec"]["containers"][0]["env"];
                if let Some(entries) = env.as_array_mut() {
                    entries.retain(|entry| !text(&entry["name"]).starts_with("OTEL_"));
                }
            }
        }
    }
    assert_eq!(
        without, eks,
        "the component changes nothing but the OTEL_ variables"
    );
}

/// The trace collector runs on a Fargate-only cluster: its namespace has a
/// Fargate profile, it needs no operator or webhook, it answers on the
/// address the component gives the server, and it sends to X-Ray in the
/// region of its environment with an IAM role of its own.
#[test]
fn the_trace_collector_runs_on_fargate_and_exports_to_xray_in_its_region() {
    let cluster: Value = yaml_serde::from_str(
        &std::fs::read_to_string(repository().join("deploy/eks/cluster.yaml"))
            .expect("deploy/eks/cluster.yaml"),
    )
    .expect("cluster.yaml is YAML");
    let profiled: BTreeSet<&str> = array(&cluster["fargateProfiles"])
        .iter()
        .flat_map(|profile| array(&profile["selectors"]))
        .map(|selector| text(&selector["namespace"]))
        .collect();
    let namespace = text(&object(COLLECTOR, "Namespace", "opentelemetry")["metadata"]["name"]);
    assert!(
        profiled.contains(namespace),
        "no Fargate profile selects {namespace}: {profiled:?}"
    );
    for item in rendered(COLLECTOR) {
        let kind = text(&item["kind"]);
        assert!(
            [
                "Namespace",
                "ServiceAccount",
                "ConfigMap",
                "Deployment",
                "Service",
                "NetworkPolicy"
            ]
            .contains(&kind),
            "{COLLECTOR} renders a {kind}: only plain objects, no operator's"
        );
        if kind != "Namespace" {
            assert_eq!(item["metadata"]["namespace"], namespace, "{kind}");
        }
    }

    let service = object(COLLECTOR, "Service", "otel-collector");
    let port = array(&service["spec"]["ports"])
        .iter()
        .find(|port| port["name"] == "otlp-http")
        .expect("an otlp-http port");
    let server = container(
        deployment("k8s/overlays/eks-opentelemetry"),
        "orders-service",
    );
    let endpoint = env_value(server, "OTEL_EXPORTER_OTLP_ENDPOINT").expect("an endpoint");
    assert_eq!(
        endpoint,
        format!(
            "http://otel-collector.{namespace}.svc.cluster.local:{}",
            port["port"]
        ),
        "the component names the collector's Service"
    );

    let config: Value = yaml_serde::from_str(text(
        &object(COLLECTOR, "ConfigMap", "otel-collector")["data"]["config.yaml"],
    ))
    .expect("the collector's configuration is YAML");
    assert_eq!(
        config["exporters"]["awsxray"]["region"], "${env:AWS_REGION}",
        "the X-Ray region comes from the environment"
    );
    assert!(text(&config["receivers"]["otlp"]["protocols"]["http"]["endpoint"]).ends_with(":4318"));
    assert_eq!(
        config["service"]["pipelines"]["traces"]["exporters"],
        serde_json::json!(["awsxray"])
    );

    let collector = object(COLLECTOR, "Deployment", "otel-collector");
    let pod = pod_spec(collector);
    assert_eq!(pod["serviceAccountName"], "otel-collector");
    let account = object(COLLECTOR, "ServiceAccount", "otel-collector");
    assert!(
        text(&account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"])
            .starts_with("arn:aws:iam::"),
        "an IAM role for the service account"
    );
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    let main = container(collector, "otel-collector");
    assert!(
        array(&main["envFrom"])
            .iter()
            .any(|source| source["configMapRef"]["name"] == "otel-collector-env"),
        "AWS_REGION from the ConfigMap the guide creates"
    );
    assert!(
        pinned_by_digest(text(&main["image"])),
        "{}: pinned by digest",
        main["image"]
    );
    assert_eq!(main["resources"]["requests"], main["resources"]["limits"]);
    let context = &main["securityContext"];
    assert_eq!(context["runAsNonRoot"], true);
    assert_eq!(context["allowPrivilegeEscalation"], false);
    assert_eq!(context["readOnlyRootFilesystem"], true);
    assert_eq!(context["capabilities"]["drop"], serde_json::json!(["ALL"]));
}

/// `registry/name:tag@sha256:<64 hex digits>`, with a registry host.
fn pinned_by_digest(image: &str) -> bool {
    let Some((name, digest)) = image.split_once("@sha256:") else {
        return false;
    };
    let host = name.split('/').next().unwrap_or_default();
    digest.len() == 64
        && digest.chars().all(|c| c.is_ascii_hexdigit())
        && name.contains('/')
        && (host.contains('.') || host.contains(':'))
}

/// On EKS every image is pinned by the digest its registry returned at push,
/// so a pod runs exactly what was built and scanned; and no manifest takes an
/// image by a short name (a Docker Hub name without its registry host),
/// except this crate's own images that a local cluster loads by hand.
#[test]
fn eks_images_are_pinned_by_digest_and_every_image_names_its_registry() {
    let eks: BTreeSet<&str> = EKS_OVERLAYS
        .iter()
        .copied()
        .chain(["k8s/overlays/eks/migrations", COLLECTOR])
        .collect();
    for kustomization in rendered_kustomizations().into_iter().chain(OTHER_RENDERS) {
        for workload in rendered(kustomization) {
            for container in containers(workload) {
                let image = text(&container["image"]);
                let (name, _) = image_name_and_tag(image);
                if eks.contains(kustomization) {
                    assert!(
                        pinned_by_digest(image),
                        "{kustomization}: {image} is not pinned by digest"
                    );
                } else if name != SERVER_IMAGE && name != MIGRATIONS_IMAGE {
                    let host = image.split('/').next().unwrap_or_default();
                    assert!(
                        image.contains('/') && (host.contains('.') || host.contains(':')),
                        "{kustomization}: {image} names no registry host"
                    );
                }
            }
        }
    }
}

/// The EKS load balancer refuses invalid header fields, logs every request
/// to S3 and sits behind an AWS WAF web ACL.
#[test]
fn the_eks_alb_drops_invalid_headers_logs_to_s3_and_has_a_web_acl() {
    for overlay in EKS_OVERLAYS {
        let notes = &object(overlay, "Ingress", "orders-service")["metadata"]["annotations"];
        let attributes: BTreeMap<&str, &str> =
            text(&notes["alb.ingress.kubernetes.io/load-balancer-attributes"])
                .split(',')
                .filter_map(|pair| pair.split_once('='))
                .collect();
        assert_eq!(
            attributes.get("routing.http.drop_invalid_header_fields.enabled"),
            Some(&"true"),
            "{overlay}: {attributes:?}"
        );
        assert_eq!(
            attributes.get("access_logs.s3.enabled"),
            Some(&"true"),
            "{overlay}"
        );
        assert!(
            attributes
                .get("access_logs.s3.bucket")
                .is_some_and(|bucket| !bucket.is_empty()),
            "{overlay}: an access log bucket"
        );
        assert!(
            text(&notes["alb.ingress.kubernetes.io/wafv2-acl-arn"]).starts_with("arn:aws:wafv2:"),
            "{overlay}: a WAF web ACL"
        );
    }
}

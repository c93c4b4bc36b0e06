//! What only the EKS overlays promise: the ALB and its hardening, security
//! groups for pods, Fargate sizes and logs, the RDS CA bundle, traces to
//! X-Ray, and images pinned by digest.

use super::*;

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
        // Plain values only: EVENTS_URL comes from a Secret.
        let variables: Vec<(String, String)> = array(&server["env"])
            .iter()
            .filter(|entry| entry["value"].is_string())
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
pub(super) fn pinned_by_digest(image: &str) -> bool {
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

//! What every overlay's workloads must be: ports, probes, variables,
//! Secrets, the Service and Ingress, the pod security profile, and the
//! migrations Job beside the server.

use super::*;

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

/// Fargate ignores them (one pod per node); it spreads pods over the subnets
/// of the Fargate profile instead (docs/deploy-eks.md, step 12).
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

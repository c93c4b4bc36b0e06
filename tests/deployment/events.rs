//! The order events' broker: on EKS the server reads `EVENTS_URL` from a
//! Secret that is never committed (made by hand or synced from AWS Secrets
//! Manager), the guide's Amazon MQ broker is private and admits amqps from
//! the pods' security group; locally the overlay runs RabbitMQ and points
//! `EVENTS_URL` at it; and no network policy keeps the server from it.

use super::*;

/// amqps, Amazon MQ's only AMQP listener.
const AMQPS_PORT: u64 = 5671;

/// The `secretKeyRef` an `env` entry of `container` takes `variable` from.
fn secret_key_ref<'a>(container: &'a Value, variable: &str) -> Option<&'a Value> {
    array(&container["env"])
        .iter()
        .find(|entry| entry["name"] == variable)
        .map(|entry| &entry["valueFrom"]["secretKeyRef"])
        .filter(|reference| reference.is_object())
}

fn decode_base64(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut bytes = Vec::new();
    let (mut buffer, mut bits) = (0u32, 0u32);
    for character in text
        .bytes()
        .filter(|&c| c != b'=' && !c.is_ascii_whitespace())
    {
        let value = ALPHABET
            .iter()
            .position(|&a| a == character)
            .unwrap_or_else(|| panic!("{text:?} is not base64")) as u32;
        buffer = (buffer << 6) | value;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            bytes.push((buffer >> bits) as u8);
            buffer &= (1 << bits) - 1;
        }
    }
    bytes
}

/// The value of `key` in the Secret `name` that `kustomization` renders
/// (generated Secrets keep their name through kustomize's name reference, so
/// the name is looked up as a prefix followed by the hash suffix, if any).
fn secret_value(kustomization: &str, name: &str, key: &str) -> Option<String> {
    objects(kustomization, "Secret")
        .find(|secret| {
            let rendered = text(&secret["metadata"]["name"]);
            rendered == name
                || rendered
                    .strip_prefix(name)
                    .is_some_and(|suffix| suffix.starts_with('-'))
        })
        .and_then(|secret| {
            secret["stringData"][key]
                .as_str()
                .map(str::to_owned)
                .or_else(|| {
                    secret["data"][key].as_str().map(|encoded| {
                        String::from_utf8(decode_base64(encoded)).expect("UTF-8 secret")
                    })
                })
        })
}

/// `scheme://user:password@host:port/path`, as the URL is written in the
/// manifests (no query, no IPv6 host).
#[derive(Debug)]
struct AmqpUrl {
    scheme: String,
    user: String,
    password: String,
    host: String,
    port: u64,
    vhost: String,
}

fn parse_amqp_url(url: &str) -> AmqpUrl {
    let (scheme, rest) = url.split_once("://").expect("scheme://");
    let (credentials, rest) = rest.split_once('@').expect("user:password@");
    let (user, password) = credentials.split_once(':').expect("user:password");
    let (authority, vhost) = rest.split_once('/').expect("a /vhost path");
    let (host, port) = authority.split_once(':').expect("host:port");
    AmqpUrl {
        scheme: scheme.to_owned(),
        user: user.to_owned(),
        password: password.to_owned(),
        host: host.to_owned(),
        port: port.parse().expect("a numeric port"),
        vhost: vhost.to_owned(),
    }
}

#[test]
fn on_eks_the_server_reads_events_url_from_the_events_credentials_secret() {
    for overlay in EKS_OVERLAYS {
        let server = container(deployment(overlay), "orders-service");
        let entries: Vec<&Value> = array(&server["env"])
            .iter()
            .filter(|entry| entry["name"] == EVENTS_KEY)
            .collect();
        assert_eq!(entries.len(), 1, "{overlay}: {EVENTS_KEY} set once");
        assert!(
            entries[0]["value"].is_null(),
            "{overlay}: {EVENTS_KEY} holds a password: never a plain value"
        );
        let reference = secret_key_ref(server, EVENTS_KEY)
            .unwrap_or_else(|| panic!("{overlay}: {EVENTS_KEY} comes from no secretKeyRef"));
        assert_eq!(reference["name"], EVENTS_SECRET_NAME, "{overlay}");
        assert_eq!(reference["key"], EVENTS_KEY, "{overlay}");
        assert_ne!(
            reference["optional"], true,
            "{overlay}: the guide always creates the Secret; a pod without it must not start"
        );
    }
    // The migrations Job publishes nothing.
    let migrate = container(migrations_job("k8s/overlays/eks/migrations"), "migrate");
    assert!(secret_key_ref(migrate, EVENTS_KEY).is_none());
    assert_eq!(env_value(migrate, EVENTS_KEY), None);
}

#[test]
fn the_events_secret_is_never_committed_and_external_secrets_syncs_it_like_db_url() {
    assert_eq!(secret_keys("k8s/overlays/eks", EVENTS_SECRET_NAME), None);
    let guide = std::fs::read_to_string(repository().join("docs/deploy-eks.md"))
        .expect("docs/deploy-eks.md");
    for kustomization in ["k8s/overlays/eks-external-secrets", EXTERNAL_SECRETS_FIRST] {
        assert_eq!(
            objects(kustomization, "Secret").count(),
            0,
            "{kustomization}"
        );
        assert_eq!(
            secret_keys(kustomization, EVENTS_SECRET_NAME),
            Some(BTreeSet::from([EVENTS_KEY.to_owned()])),
            "{kustomization}"
        );
        let external = |target: &str| {
            objects(kustomization, "ExternalSecret")
                .find(|external| external["spec"]["target"]["name"] == target)
                .unwrap_or_else(|| panic!("{kustomization}: no ExternalSecret makes {target}"))
        };
        let events = external(EVENTS_SECRET_NAME);
        let database = external(SECRET_NAME);
        assert_eq!(
            events["spec"]["secretStoreRef"], database["spec"]["secretStoreRef"],
            "{kustomization}: the same SecretStore as DB_URL"
        );
        assert_eq!(
            events["spec"]["target"]["creationPolicy"],
            database["spec"]["target"]["creationPolicy"]
        );
        let remote = text(&events["spec"]["data"][0]["remoteRef"]["key"]);
        assert!(
            guide.contains(&format!("--name {remote} ")),
            "{kustomization}: docs/deploy-eks.md creates no Secrets Manager secret {remote}"
        );
    }
}

/// The guide's commands joined across their line continuations.
fn guide_commands() -> String {
    std::fs::read_to_string(repository().join("docs/deploy-eks.md"))
        .expect("docs/deploy-eks.md")
        .replace("\\\n", " ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn the_guides_broker_is_private_and_admits_amqps_from_the_pods_group_only() {
    let guide = guide_commands();
    let create = guide
        .split("aws mq create-broker ")
        .nth(1)
        .expect("docs/deploy-eks.md creates an Amazon MQ broker")
        .split(" --query ")
        .next()
        .unwrap_or_default();
    for option in [
        "--engine-type RABBITMQ",
        "--no-publicly-accessible",
        "--auto-minor-version-upgrade",
        "--security-groups \"$EVENTS_SG\"",
    ] {
        assert!(
            create.contains(option),
            "create-broker without {option}: {create}"
        );
    }
    assert!(
        !create.contains("--publicly-accessible "),
        "the broker must not be public"
    );
    let ingress: Vec<&str> = guide
        .split("aws ec2 authorize-security-group-ingress ")
        .skip(1)
        .filter(|rule| rule.starts_with("--group-id \"$EVENTS_SG\""))
        .collect();
    assert_eq!(ingress.len(), 1, "one rule opens the broker's group");
    assert!(
        ingress[0].starts_with(&format!(
            "--group-id \"$EVENTS_SG\" --protocol tcp --port {AMQPS_PORT} --source-group \"$PODS_SG\""
        )),
        "the broker admits amqps from the pods' security group only: {}",
        ingress[0]
    );
    // The URL of step 5: amqps on 5671 and the default vhost "/", encoded.
    let url = guide
        .split("EVENTS_URL=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("docs/deploy-eks.md sets EVENTS_URL");
    assert!(url.starts_with("amqps://"), "{url}");
    assert!(url.ends_with("/%2f"), "{url}: the default vhost is %2f");
}

#[test]
fn the_local_overlay_runs_a_broker_and_points_events_url_at_it() {
    let overlay = "k8s/overlays/local";
    let server = container(deployment(overlay), "orders-service");
    let reference = secret_key_ref(server, EVENTS_KEY)
        .unwrap_or_else(|| panic!("{overlay}: {EVENTS_KEY} comes from no secretKeyRef"));
    let url = secret_value(overlay, text(&reference["name"]), text(&reference["key"]))
        .unwrap_or_else(|| panic!("{overlay}: no Secret holds {EVENTS_KEY}"));
    let url = parse_amqp_url(&url);
    assert_eq!(url.scheme, "amqp", "{url:?}");
    assert_eq!(url.vhost, "%2f", "{url:?}: the default vhost, encoded");
    assert_ne!(url.user, "guest", "guest is admitted from localhost only");

    // The host is a Service of the overlay, on the URL's port ...
    let service = object(overlay, "Service", &url.host);
    let port = array(&service["spec"]["ports"])
        .iter()
        .find(|port| port["port"] == url.port)
        .unwrap_or_else(|| panic!("Service {} has no port {}", url.host, url.port));
    // ... whose selector picks a broker's pods, and whose target port is the
    // broker's AMQP port.
    let selector = &service["spec"]["selector"];
    let broker = ["StatefulSet", "Deployment"]
        .into_iter()
        .flat_map(|kind| objects(overlay, kind))
        .find(|workload| {
            let labels = &workload["spec"]["template"]["metadata"]["labels"];
            !keys(selector).is_empty()
                && keys(selector)
                    .iter()
                    .all(|label| labels[label] == selector[label])
        })
        .unwrap_or_else(|| panic!("Service {} selects no workload", url.host));
    let rabbitmq = containers(broker)
        .find(|container| image_name_and_tag(text(&container["image"])).0 == "rabbitmq")
        .unwrap_or_else(|| panic!("{} runs no rabbitmq image", broker["metadata"]["name"]));
    let target = &port["targetPort"];
    let amqp = array(&rabbitmq["ports"])
        .iter()
        .find(|declared| declared["name"] == *target || declared["containerPort"] == *target)
        .unwrap_or_else(|| panic!("the broker declares no port {target}"));
    assert_eq!(amqp["containerPort"], 5672, "RabbitMQ's AMQP port");

    // The URL's user is the one the broker creates on its first start.
    let setting = |variable: &str| {
        env_value(rabbitmq, variable)
            .map(str::to_owned)
            .or_else(|| {
                array(&rabbitmq["envFrom"])
                    .iter()
                    .filter_map(|source| source["secretRef"]["name"].as_str())
                    .find_map(|secret| secret_value(overlay, secret, variable))
            })
            .unwrap_or_else(|| panic!("the broker has no {variable}"))
    };
    assert_eq!(setting("RABBITMQ_DEFAULT_USER"), url.user);
    assert_eq!(setting("RABBITMQ_DEFAULT_PASS"), url.password);

    // Docker Hub's official image, by tag and digest.
    let image = text(&rabbitmq["image"]);
    let (name, tag) = image_name_and_tag(image);
    assert!(
        image.starts_with("docker.io/library/rabbitmq:")
            && name == "rabbitmq"
            && tag.starts_with("4.")
            && eks::pinned_by_digest(image),
        "{image}: the official image, pinned by tag and digest"
    );
}

/// Whether `pod_labels` are selected by a NetworkPolicy's `podSelector`
/// (matchLabels; an empty selector selects every pod of the namespace).
fn selects(policy: &Value, pod_labels: &Value) -> bool {
    let wanted = &policy["spec"]["podSelector"]["matchLabels"];
    keys(wanted)
        .iter()
        .all(|label| pod_labels[label] == wanted[label])
}

/// Whether `policies` let the pods labelled `pod_labels` open (direction
/// "Egress") or accept (direction "Ingress") a TCP connection on `port`
/// (number, name), by the ports of their rules (peers are not looked at):
/// when no policy selecting the pods names the direction, nothing is
/// restricted.
fn policies_allow<'a>(
    policies: impl IntoIterator<Item = &'a Value>,
    pod_labels: &Value,
    direction: &str,
    port: (u64, &str),
) -> bool {
    let rules_key = direction.to_lowercase();
    let restricting: Vec<&Value> = policies
        .into_iter()
        .filter(|policy| selects(policy, pod_labels))
        .filter(|policy| {
            array(&policy["spec"]["policyTypes"])
                .iter()
                .any(|kind| kind == direction)
        })
        .collect();
    restricting.is_empty()
        || restricting.iter().any(|policy| {
            array(&policy["spec"][&rules_key]).iter().any(|rule| {
                let ports = array(&rule["ports"]);
                ports.is_empty()
                    || ports.iter().any(|allowed| {
                        allowed["protocol"].as_str().unwrap_or("TCP") == "TCP"
                            && (allowed["port"].is_null()
                                || allowed["port"] == port.0
                                || allowed["port"] == port.1)
                    })
            })
        })
}

#[test]
fn no_network_policy_keeps_the_server_from_its_broker() {
    for (overlay, _) in OVERLAYS {
        let server = deployment(overlay);
        let labels = &server["spec"]["template"]["metadata"]["labels"];
        let port = if overlay == "k8s/overlays/local" {
            5672
        } else {
            AMQPS_PORT
        };
        assert!(
            policies_allow(
                objects(overlay, "NetworkPolicy"),
                labels,
                "Egress",
                (port, "amqp")
            ),
            "{overlay}: a NetworkPolicy keeps the server from the broker's port {port}"
        );
    }
    // Locally, the broker accepts the server's connections.
    let overlay = "k8s/overlays/local";
    let broker = object(overlay, "StatefulSet", "rabbitmq");
    assert!(
        policies_allow(
            objects(overlay, "NetworkPolicy"),
            &broker["spec"]["template"]["metadata"]["labels"],
            "Ingress",
            (5672, "amqp")
        ),
        "{overlay}: a NetworkPolicy keeps the broker from accepting AMQP"
    );
}

#[test]
fn the_policy_check_sees_a_restricted_egress() {
    // The check above is only worth something if it can fail: an egress
    // policy that names the database's port alone keeps the server from the
    // broker, and one without ports, or no egress policy, does not.
    let labels = serde_json::json!({"app": "orders-service", "tier": "api"});
    let policy = |egress: Value| {
        serde_json::json!({
            "kind": "NetworkPolicy",
            "spec": {
                "podSelector": {"matchLabels": {"app": "orders-service"}},
                "policyTypes": ["Ingress", "Egress"],
                "egress": egress
            }
        })
    };
    let database_only = policy(serde_json::json!([{"ports": [{"port": 5432, "protocol": "TCP"}]}]));
    let broker_too = policy(serde_json::json!([
        {"ports": [{"port": 5432, "protocol": "TCP"}]},
        {"ports": [{"port": AMQPS_PORT, "protocol": "TCP"}]}
    ]));
    let anywhere = policy(serde_json::json!([{}]));
    let other_pods = serde_json::json!({"app": "postgres"});
    let amqps = (AMQPS_PORT, "amqps");
    assert!(!policies_allow([&database_only], &labels, "Egress", amqps));
    assert!(policies_allow(
        [&database_only],
        &labels,
        "Egress",
        (5432, "postgres")
    ));
    // Ingress is listed with no rule: nothing comes in.
    assert!(!policies_allow([&database_only], &labels, "Ingress", amqps));
    assert!(policies_allow(
        [&database_only],
        &other_pods,
        "Egress",
        amqps
    ));
    assert!(policies_allow([&broker_too], &labels, "Egress", amqps));
    assert!(policies_allow([&anywhere], &labels, "Egress", amqps));
    assert!(policies_allow([], &labels, "Egress", amqps));
}

//! `AUTH_ON=true`: bearer JWTs, key sources, and per-user visibility.

use std::path::PathBuf;

use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::{Backend, TestApp, latte_order, spawn_app_with};

const AUDIENCE: &str = "orders-api";
const ISSUER: &str = "https://issuer.test/";

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/jwt")
        .join(name)
}

fn encoding_key(private: &str, alg: Algorithm) -> EncodingKey {
    let pem = std::fs::read(fixture(private)).unwrap();
    match alg {
        Algorithm::ES256 | Algorithm::ES384 => EncodingKey::from_ec_pem(&pem).unwrap(),
        _ => EncodingKey::from_rsa_pem(&pem).unwrap(),
    }
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn claims(sub: &str) -> Value {
    json!({"sub": sub, "aud": [AUDIENCE, "other"], "iss": ISSUER, "iat": now(), "exp": now() + 600})
}

fn sign(private: &str, alg: Algorithm, kid: Option<&str>, claims: &Value) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    encode(&header, claims, &encoding_key(private, alg)).unwrap()
}

fn rsa_a(sub: &str) -> String {
    sign(
        "test-only-rsa-a-private.pem",
        Algorithm::RS256,
        None,
        &claims(sub),
    )
}

fn b64(bytes: &[u8]) -> String {
    use std::fmt::Write;
    // base64url without padding, enough for hand-made tokens.
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            let _ = out.write_char(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

async fn spawn_with_key_file(backend: Backend, key_file: &str) -> TestApp {
    let path = fixture(key_file).display().to_string();
    spawn_app_with(
        backend,
        &[
            ("AUTH_ON", "true"),
            ("JWT_PUBLIC_KEY_FILE", &path),
            ("JWT_AUDIENCE", AUDIENCE),
            ("JWT_ISSUER", ISSUER),
        ],
    )
    .await
}

async fn get_orders(app: &TestApp, authorization: Option<&str>) -> reqwest::Response {
    let mut request = app.client.get(app.url("/orders"));
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    request.send().await.unwrap()
}

async fn assert_unauthorized(response: reqwest::Response, case: &str) {
    assert_eq!(response.status(), 401, "{case}");
    assert_eq!(
        response.headers()["www-authenticate"],
        r#"Bearer error="invalid_token""#,
        "{case}"
    );
    let body: Value = response.json().await.unwrap();
    assert!(body["detail"].is_string(), "{case}: {body}");
}

async fn every_kind_of_bad_token_is_refused_with_401(backend: Backend) {
    let app = spawn_with_key_file(backend, "test-only-rsa-a-public.pem").await;
    let public_pem = std::fs::read(fixture("test-only-rsa-a-public.pem")).unwrap();
    let mut expired = claims("alice");
    expired["exp"] = json!(now() - 3600);
    let mut early = claims("alice");
    early["nbf"] = json!(now() + 3600);
    let mut wrong_aud = claims("alice");
    wrong_aud["aud"] = json!("someone-else");
    let mut wrong_iss = claims("alice");
    wrong_iss["iss"] = json!("https://evil.test/");
    let mut no_sub = claims("alice");
    no_sub.as_object_mut().unwrap().remove("sub");
    let mut no_exp = claims("alice");
    no_exp.as_object_mut().unwrap().remove("exp");
    let mut no_aud = claims("alice");
    no_aud.as_object_mut().unwrap().remove("aud");
    let a = "test-only-rsa-a-private.pem";
    let confused = encode(
        &Header::new(Algorithm::HS256),
        &claims("alice"),
        &EncodingKey::from_secret(&public_pem),
    )
    .unwrap();
    let none = format!(
        "{}.{}.",
        b64(br#"{"alg":"none","typ":"JWT"}"#),
        b64(claims("alice").to_string().as_bytes())
    );
    // An `Authorization` value carrying these claims, validly signed.
    let a_signed = |claims: &Value| {
        Some(format!(
            "Bearer {}",
            sign(a, Algorithm::RS256, None, claims)
        ))
    };
    let cases: Vec<(&str, Option<String>)> = vec![
        ("no header", None),
        ("wrong scheme", Some(format!("Basic {}", rsa_a("alice")))),
        ("empty bearer", Some("Bearer ".into())),
        ("malformed", Some("Bearer not.a.jwt".into())),
        (
            "bad signature",
            Some(format!(
                "Bearer {}",
                sign(
                    "test-only-rsa-b-private.pem",
                    Algorithm::RS256,
                    None,
                    &claims("alice")
                )
            )),
        ),
        (
            "algorithm confusion (HS256 with the public key)",
            Some(format!("Bearer {confused}")),
        ),
        ("alg none", Some(format!("Bearer {none}"))),
        (
            "ES256 against an RSA key",
            Some(format!(
                "Bearer {}",
                sign(
                    "test-only-ec-private.pem",
                    Algorithm::ES256,
                    None,
                    &claims("alice")
                )
            )),
        ),
        ("expired", a_signed(&expired)),
        ("not yet valid", a_signed(&early)),
        ("wrong audience", a_signed(&wrong_aud)),
        ("wrong issuer", a_signed(&wrong_iss)),
        ("no sub", a_signed(&no_sub)),
        ("no exp", a_signed(&no_exp)),
        ("no aud", a_signed(&no_aud)),
    ];
    for (case, header) in cases {
        assert_unauthorized(get_orders(&app, header.as_deref()).await, case).await;
    }
    // The same key signs valid tokens, with RS256 and PS256, any scheme case.
    for token in [
        rsa_a("alice"),
        sign(a, Algorithm::PS256, None, &claims("alice")),
    ] {
        assert_eq!(
            get_orders(&app, Some(&format!("bearer {token}")))
                .await
                .status(),
            200
        );
    }
}

async fn open_endpoints_need_no_token(backend: Backend) {
    let app = spawn_with_key_file(backend, "test-only-rsa-a-public.pem").await;
    for open in [
        "/healthz",
        "/readyz",
        "/metrics",
        "/openapi/orders.json",
        "/docs/orders/",
    ] {
        assert_eq!(app.get(open).await.status(), 200, "{open}");
    }
    let preflight = app
        .client
        .request(reqwest::Method::OPTIONS, app.url("/orders"))
        .header("origin", "https://shop.example")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization,content-type",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status(), 200);
    assert_unauthorized(app.post_json("/orders", &latte_order()).await, "create").await;
}

async fn two_users_each_see_only_their_own_orders(backend: Backend) {
    let app = spawn_with_key_file(backend, "test-only-rsa-a-public.pem").await;
    let (alice, bob) = (rsa_a("alice"), rsa_a("bob"));
    let created: Value = app
        .client
        .post(app.url("/orders"))
        .bearer_auth(&alice)
        .json(&latte_order())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let path = format!("/orders/{}", created["id"].as_str().unwrap());
    let as_user = |token: &str, method: reqwest::Method, path: &str| {
        let request = app
            .client
            .request(method.clone(), app.url(path))
            .bearer_auth(token);
        if method == reqwest::Method::PUT {
            request.json(&latte_order())
        } else {
            request
        }
    };
    use reqwest::Method;
    for (method, target) in [
        (Method::GET, path.clone()),
        (Method::PUT, path.clone()),
        (Method::DELETE, path.clone()),
        (Method::POST, format!("{path}/pay")),
        (Method::POST, format!("{path}/cancel")),
    ] {
        let response = as_user(&bob, method.clone(), &target).send().await.unwrap();
        assert_eq!(response.status(), 404, "bob {method} {target}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(
            body,
            json!({"detail": "order not found"}),
            "same as an unknown id"
        );
    }
    let bobs: Value = as_user(&bob, Method::GET, "/orders")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(bobs, json!({"orders": []}));
    let alices: Value = as_user(&alice, Method::GET, "/orders")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(alices["orders"][0]["id"], created["id"]);
    // Alice's own order is untouched by Bob's attempts and hers to change.
    assert_eq!(
        as_user(&alice, Method::PUT, &path)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let cancel = format!("{path}/cancel");
    assert_eq!(
        as_user(&alice, Method::POST, &cancel)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        as_user(&alice, Method::DELETE, &path)
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
}

both_backends!(
    every_kind_of_bad_token_is_refused_with_401,
    open_endpoints_need_no_token,
    two_users_each_see_only_their_own_orders,
);

#[tokio::test]
async fn a_certificate_or_an_ec_key_can_be_the_key_file() {
    let app = spawn_with_key_file(Backend::Sqlite, "test-only-rsa-a-cert.pem").await;
    let token = rsa_a("alice");
    assert_eq!(
        get_orders(&app, Some(&format!("Bearer {token}")))
            .await
            .status(),
        200
    );

    let app = spawn_with_key_file(Backend::Sqlite, "test-only-ec-public.pem").await;
    let token = sign(
        "test-only-ec-private.pem",
        Algorithm::ES256,
        None,
        &claims("alice"),
    );
    assert_eq!(
        get_orders(&app, Some(&format!("Bearer {token}")))
            .await
            .status(),
        200
    );
    assert_unauthorized(
        get_orders(&app, Some(&format!("Bearer {}", rsa_a("alice")))).await,
        "RSA token",
    )
    .await;
}

fn jwk(private: &str, alg: Algorithm, kid: &str) -> Jwk {
    let mut jwk = Jwk::from_encoding_key(&encoding_key(private, alg), alg).unwrap();
    jwk.common.key_id = Some(kid.to_owned());
    jwk
}

/// A service taking its keys from `provider`, with no refresh floor.
async fn spawn_with_jwks(provider: &MockServer) -> TestApp {
    let url = format!("{}/.well-known/jwks.json", provider.uri());
    spawn_app_with(
        Backend::Sqlite,
        &[
            ("AUTH_ON", "true"),
            ("JWT_JWKS_URL", &url),
            ("JWT_AUDIENCE", AUDIENCE),
            ("JWT_JWKS_MIN_REFRESH_SECS", "0"),
        ],
    )
    .await
}

async fn serve_jwks(server: &MockServer, keys: Vec<Jwk>) {
    server.reset().await;
    Mock::given(method("GET"))
        .and(path("/.well-known/jwks.json"))
        .respond_with(ResponseTemplate::new(200).set_body_json(JwkSet { keys }))
        .mount(server)
        .await;
}

#[tokio::test]
async fn jwks_keys_rotate_and_survive_a_provider_outage() {
    let provider = MockServer::start().await;
    let key_a = jwk("test-only-rsa-a-private.pem", Algorithm::RS256, "a");
    let key_b = jwk("test-only-rsa-b-private.pem", Algorithm::RS256, "b");
    serve_jwks(&provider, vec![key_a.clone()]).await;
    let app = spawn_with_jwks(&provider).await;
    let token = |private: &str, kid: &str| {
        format!(
            "Bearer {}",
            sign(private, Algorithm::RS256, Some(kid), &claims("alice"))
        )
    };
    let (with_a, with_b) = (
        token("test-only-rsa-a-private.pem", "a"),
        token("test-only-rsa-b-private.pem", "b"),
    );
    assert_eq!(get_orders(&app, Some(&with_a)).await.status(), 200);
    assert_unauthorized(
        get_orders(&app, Some(&with_b)).await,
        "kid b before rotation",
    )
    .await;
    let mismatched = token("test-only-rsa-b-private.pem", "a");
    assert_unauthorized(get_orders(&app, Some(&mismatched)).await, "kid a, key b").await;

    // Rotation: the provider adds b; an unknown kid triggers a refresh.
    serve_jwks(&provider, vec![key_a, key_b.clone()]).await;
    assert_eq!(get_orders(&app, Some(&with_b)).await.status(), 200);
    // Then removes a: the next refresh drops it.
    serve_jwks(&provider, vec![key_b]).await;
    let unknown = token("test-only-rsa-a-private.pem", "c");
    assert_unauthorized(get_orders(&app, Some(&unknown)).await, "kid c").await;
    assert_unauthorized(get_orders(&app, Some(&with_a)).await, "kid a after removal").await;

    // Outage: cached keys still verify; unknown ones get 401, never 500.
    provider.reset().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(500))
        .mount(&provider)
        .await;
    assert_eq!(get_orders(&app, Some(&with_b)).await.status(), 200);
    assert_unauthorized(get_orders(&app, Some(&unknown)).await, "kid c in outage").await;
}

#[tokio::test]
async fn a_slow_jwks_fetch_does_not_hold_up_tokens_with_known_keys() {
    let provider = MockServer::start().await;
    let key_a = jwk("test-only-rsa-a-private.pem", Algorithm::RS256, "a");
    serve_jwks(&provider, vec![key_a.clone()]).await;
    let app = spawn_with_jwks(&provider).await;
    provider.reset().await;
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(JwkSet { keys: vec![key_a] })
                .set_delay(std::time::Duration::from_secs(2)),
        )
        .mount(&provider)
        .await;
    let unknown = format!(
        "Bearer {}",
        sign(
            "test-only-rsa-b-private.pem",
            Algorithm::RS256,
            Some("zzz"),
            &claims("mallory")
        )
    );
    let (client, orders) = (app.client.clone(), app.url("/orders"));
    let slow = tokio::spawn(async move {
        client
            .get(orders)
            .header("authorization", unknown)
            .send()
            .await
            .unwrap()
            .status()
    });
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let known = format!(
        "Bearer {}",
        sign(
            "test-only-rsa-a-private.pem",
            Algorithm::RS256,
            Some("a"),
            &claims("alice")
        )
    );
    let started = std::time::Instant::now();
    assert_eq!(get_orders(&app, Some(&known)).await.status(), 200);
    assert!(
        started.elapsed() < std::time::Duration::from_millis(1_000),
        "waited {:?} behind a JWKS fetch",
        started.elapsed()
    );
    assert_eq!(slow.await.unwrap(), 401);
}

/// Amazon Cognito's access tokens carry no `aud`; they name their app
/// client in `client_id`, which `JWT_AUDIENCE_CLAIM=client_id` checks.
#[tokio::test]
async fn the_audience_can_be_checked_in_client_id() {
    let path = fixture("test-only-rsa-a-public.pem").display().to_string();
    let app = spawn_app_with(
        Backend::Sqlite,
        &[
            ("AUTH_ON", "true"),
            ("JWT_PUBLIC_KEY_FILE", &path),
            ("JWT_AUDIENCE", "orders-client"),
            ("JWT_AUDIENCE_CLAIM", "client_id"),
            ("JWT_ISSUER", ISSUER),
        ],
    )
    .await;
    let token = |client_id: Option<&str>| {
        let mut claims = json!({"sub": "machine", "iss": ISSUER, "iat": now(), "exp": now() + 600,
            "token_use": "access", "scope": "orders-api/orders"});
        if let Some(client_id) = client_id {
            claims["client_id"] = json!(client_id);
        }
        let token = sign(
            "test-only-rsa-a-private.pem",
            Algorithm::RS256,
            None,
            &claims,
        );
        format!("Bearer {token}")
    };
    let accepted = get_orders(&app, Some(&token(Some("orders-client")))).await;
    assert_eq!(accepted.status(), 200);
    assert_unauthorized(
        get_orders(&app, Some(&token(Some("another-client")))).await,
        "another client",
    )
    .await;
    assert_unauthorized(get_orders(&app, Some(&token(None))).await, "no client_id").await;
}

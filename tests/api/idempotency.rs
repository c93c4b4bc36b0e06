//! `Idempotency-Key` on `POST /orders`.

use std::time::Duration;

use orders_service::config::{DatabaseSettings, DatabaseUrl};
use orders_service::db::Database;
use orders_service::repository::{IdempotencyKey, KeyedCreate, OrdersRepository};
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, assert_validation, latte_order, spawn_app, spawn_app_with};

async fn create_with_key(app: &TestApp, key: &str, body: &Value) -> reqwest::Response {
    app.client
        .post(app.url("/orders"))
        .header("idempotency-key", key)
        .json(body)
        .send()
        .await
        .unwrap()
}

async fn orders_stored(app: &TestApp) -> usize {
    let list: Value = app.get("/orders?limit=200").await.json().await.unwrap();
    list["orders"].as_array().unwrap().len()
}

async fn a_repeated_key_returns_the_first_order(backend: Backend) {
    let app = spawn_app(backend).await;
    let first = create_with_key(&app, "key-1", &latte_order()).await;
    assert_eq!(first.status(), 201);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let location = first.headers()["location"].clone();
    let first: Value = first.json().await.unwrap();

    // The same order, spelled differently (default quantity written out).
    let same = json!({"order": [{"size": "small", "quantity": 2, "product": "latte"}]});
    let again = create_with_key(&app, "\"key-1\"", &same).await;
    assert_eq!(again.status(), 201);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.headers()["location"], location);
    let again: Value = again.json().await.unwrap();
    assert_eq!(again, first);
    assert_eq!(orders_stored(&app).await, 1);

    // Without a key, or with another key, orders are new.
    app.create_order(&latte_order()).await;
    assert_eq!(
        create_with_key(&app, "key-2", &latte_order())
            .await
            .status(),
        201
    );
    assert_eq!(orders_stored(&app).await, 3);
}

async fn a_key_reused_for_a_different_order_is_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    assert_eq!(
        create_with_key(&app, "k", &latte_order()).await.status(),
        201
    );
    let other = json!({"order": [{"product": "mocha", "size": "big"}]});
    let errors = assert_validation(create_with_key(&app, "k", &other).await).await;
    assert_eq!(
        errors,
        vec![(
            json!(["header", "idempotency-key"]),
            "idempotency_key_reused".to_owned()
        )]
    );
    assert_eq!(orders_stored(&app).await, 1);
    for bad in ["", "with space", &"x".repeat(256)] {
        let errors = assert_validation(create_with_key(&app, bad, &latte_order()).await).await;
        assert_eq!(errors[0].0, json!(["header", "idempotency-key"]), "{bad:?}");
    }
}

async fn a_key_expires_after_its_ttl(backend: Backend) {
    let app = spawn_app_with(backend, &[("IDEMPOTENCY_KEY_TTL_SECS", "1")]).await;
    let first: Value = create_with_key(&app, "k", &latte_order())
        .await
        .json()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let other = json!({"order": [{"product": "mocha", "size": "big"}]});
    let second = create_with_key(&app, "k", &other).await;
    assert_eq!(second.status(), 201, "an expired key is free again");
    let second: Value = second.json().await.unwrap();
    assert_ne!(second["id"], first["id"]);
}

async fn concurrent_requests_with_one_key_create_one_order(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut requests = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let (client, url) = (app.client.clone(), app.url("/orders"));
        requests.spawn(async move {
            let response = client
                .post(url)
                .header("idempotency-key", "same")
                .json(&latte_order())
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 201);
            response.json::<Value>().await.unwrap()["id"].clone()
        });
    }
    let ids = requests.join_all().await;
    assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
    assert_eq!(orders_stored(&app).await, 1);
}

async fn keys_of_two_users_do_not_collide(backend: Backend) {
    let app = spawn_app(backend).await;
    let database = DatabaseSettings {
        url: DatabaseUrl::parse(&app.db.url).unwrap(),
        pool_max: 2,
        acquire_timeout: Duration::from_secs(5),
    };
    let repo = OrdersRepository::new(Database::connect_lazy(&database));
    let order = orders_service::http::validation::new_order(&latte_order()).unwrap();
    let key = IdempotencyKey {
        key: "shared",
        request: "[]",
        expires_at: time::OffsetDateTime::now_utc() + time::Duration::hours(1),
    };
    let alice = repo.create_with_key("alice", &order, key).await.unwrap();
    let bob = repo.create_with_key("bob", &order, key).await.unwrap();
    let (KeyedCreate::Created(alice), KeyedCreate::Created(bob)) = (alice, bob) else {
        panic!("each user's first use of a key creates an order");
    };
    assert_ne!(alice.id, bob.id);
    let replay = repo.create_with_key("alice", &order, key).await.unwrap();
    assert_eq!(replay, KeyedCreate::Replayed(alice.id));
}

both_backends!(
    a_repeated_key_returns_the_first_order,
    a_key_reused_for_a_different_order_is_refused,
    a_key_expires_after_its_ttl,
    concurrent_requests_with_one_key_create_one_order,
    keys_of_two_users_do_not_collide,
);

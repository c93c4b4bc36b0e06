const REGENERATE: &str = "UPDATE_OAS=1 cargo test --test api oas_yaml";

#[test]
fn oas_yaml_is_the_generated_document() {
    let generated = orders_service::http::docs::openapi()
        .to_yaml()
        .expect("document serialises");
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("oas.yaml");
    if std::env::var_os("UPDATE_OAS").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "oas.yaml differs from the document the code generates; regenerate it with `{REGENERATE}`"
    );
}

#[test]
fn every_operation_documents_its_errors_with_the_error_schema() {
    let document = serde_json::to_value(orders_service::http::docs::openapi()).unwrap();
    let paths = document["paths"].as_object().unwrap();
    let mut operations = 0;
    for (path, item) in paths {
        for (method, operation) in item.as_object().unwrap() {
            operations += 1;
            let responses = operation["responses"].as_object().unwrap();
            assert!(
                responses.contains_key("422"),
                "{method} {path} documents 422"
            );
            for (status, response) in responses {
                if status.starts_with('4') || status.starts_with('5') {
                    let schema = &response["content"]["application/json"]["schema"]["$ref"];
                    assert_eq!(
                        schema, "#/components/schemas/ErrorBody",
                        "{method} {path} {status}"
                    );
                }
            }
        }
    }
    assert_eq!(operations, 7);
}

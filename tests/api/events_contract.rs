//! Placeholder until the contract check lands: parses and checks the type.

pub fn validate_event(
    routing_key: &str,
    content_type: Option<&str>,
    body: &[u8],
) -> Result<serde_json::Value, String> {
    if content_type != Some("application/cloudevents+json") {
        return Err(format!("{routing_key}: content type {content_type:?}"));
    }
    let event: serde_json::Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    if event["type"] != format!("coffeemesh.{routing_key}") {
        return Err(format!("{routing_key}: type {}", event["type"]));
    }
    Ok(event)
}

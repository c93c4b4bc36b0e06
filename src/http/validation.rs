//! Turns a JSON body into a [`NewOrder`], reporting every problem at once in
//! FastAPI's shape, so clients written against the reference service parse
//! our errors unchanged.

use serde_json::{Map, Value};

use super::error::{FieldError, Loc};
use crate::domain::{NewOrder, OrderItem, OrderItems, Product, Quantity, Size};

/// Collects errors while walking the body.
#[derive(Default)]
struct Errors(Vec<FieldError>);

impl Errors {
    fn push(&mut self, loc: &[Loc], kind: &'static str, msg: impl Into<String>) {
        self.0.push(FieldError::new(loc.to_vec(), kind, msg));
    }
}

fn at(loc: &[Loc], key: impl Into<Loc>) -> Vec<Loc> {
    let mut loc = loc.to_vec();
    loc.push(key.into());
    loc
}

/// Reports fields that are not in `known`.
fn refuse_unknown(object: &Map<String, Value>, known: &[&str], loc: &[Loc], errors: &mut Errors) {
    for key in object.keys().filter(|k| !known.contains(&k.as_str())) {
        errors.push(
            &at(loc, key.as_str()),
            "extra_forbidden",
            "Extra inputs are not permitted",
        );
    }
}

fn object<'v>(
    value: &'v Value,
    loc: &[Loc],
    errors: &mut Errors,
) -> Option<&'v Map<String, Value>> {
    let object = value.as_object();
    if object.is_none() {
        errors.push(
            loc,
            "model_attributes_type",
            "Input should be a valid dictionary or object to extract fields from",
        );
    }
    object
}

/// `{"order": [OrderItem, ...]}` with nothing else.
pub fn new_order(body: &Value) -> Result<NewOrder, Vec<FieldError>> {
    let mut errors = Errors::default();
    let loc = [Loc::from("body")];
    let items = object(body, &loc, &mut errors).and_then(|body| {
        refuse_unknown(body, &["order"], &loc, &mut errors);
        match body.get("order") {
            None => {
                errors.push(&at(&loc, "order"), "missing", "Field required");
                None
            }
            Some(order) => items(order, &at(&loc, "order"), &mut errors),
        }
    });
    match items {
        Some(items) if errors.0.is_empty() => Ok(NewOrder { items }),
        _ => Err(errors.0),
    }
}

/// The order in a JSON body. A body valid as it stands is read straight
/// into typed fields; any other (a wrong type, a missing or unknown field, a
/// value the domain refuses, a repeated key) is parsed as JSON and checked
/// by [`new_order`], which names every problem. `Err`: not JSON at all.
pub fn new_order_from_json(
    bytes: &[u8],
) -> Result<Result<NewOrder, Vec<FieldError>>, serde_json::Error> {
    if let Some(order) = typed_order(bytes) {
        return Ok(Ok(order));
    }
    let value: Value = serde_json::from_slice(bytes)?;
    Ok(new_order(&value))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct TypedOrder<'a> {
    #[serde(borrow)]
    order: Vec<TypedItem<'a>>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct TypedItem<'a> {
    #[serde(borrow)]
    product: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    size: std::borrow::Cow<'a, str>,
    /// A JSON integer only, like [`quantity`]: `null` is refused here,
    /// not taken for absent.
    #[serde(default, deserialize_with = "integer")]
    quantity: Option<i64>,
}

fn integer<'de, D: serde::Deserializer<'de>>(value: D) -> Result<Option<i64>, D::Error> {
    <i64 as serde::Deserialize>::deserialize(value).map(Some)
}

fn typed_order(bytes: &[u8]) -> Option<NewOrder> {
    let body: TypedOrder<'_> = serde_json::from_slice(bytes).ok()?;
    let mut items = Vec::with_capacity(body.order.len());
    for item in body.order {
        items.push(OrderItem {
            product: Product::parse(item.product.into_owned()).ok()?,
            size: item.size.parse::<Size>().ok()?,
            quantity: match item.quantity {
                Some(number) => Quantity::parse(i128::from(number)).ok()?,
                None => Quantity::default(),
            },
        });
    }
    OrderItems::parse(items)
        .ok()
        .map(|items| NewOrder { items })
}

fn items(value: &Value, loc: &[Loc], errors: &mut Errors) -> Option<OrderItems> {
    let Some(array) = value.as_array() else {
        errors.push(loc, "list_type", "Input should be a valid list");
        return None;
    };
    let parsed: Vec<Option<OrderItem>> = array
        .iter()
        .enumerate()
        .map(|(index, item)| order_item(item, &at(loc, index), errors))
        .collect();
    let parsed: Option<Vec<OrderItem>> = parsed.into_iter().collect();
    match OrderItems::parse(parsed?) {
        Ok(items) => Some(items),
        Err(err) => {
            let kind = match err {
                crate::domain::order::OrderItemsError::Empty => "too_short",
                crate::domain::order::OrderItemsError::TooMany(_) => "too_long",
            };
            errors.push(loc, kind, err.to_string());
            None
        }
    }
}

fn order_item(value: &Value, loc: &[Loc], errors: &mut Errors) -> Option<OrderItem> {
    let item = object(value, loc, errors)?;
    refuse_unknown(item, &["product", "size", "quantity"], loc, errors);
    let product = match item.get("product") {
        None => missing(&at(loc, "product"), errors),
        Some(Value::String(name)) => Product::parse(name.clone())
            .map_err(|err| {
                let kind = match err {
                    crate::domain::product::ProductError::Empty => "string_too_short",
                    crate::domain::product::ProductError::TooLong => "string_too_long",
                    crate::domain::product::ProductError::ContainsNul => "string_pattern_mismatch",
                };
                errors.push(&at(loc, "product"), kind, err.to_string());
            })
            .ok(),
        Some(_) => {
            errors.push(
                &at(loc, "product"),
                "string_type",
                "Input should be a valid string",
            );
            None
        }
    };
    let size = match item.get("size") {
        None => missing(&at(loc, "size"), errors),
        Some(Value::String(name)) => name
            .parse::<Size>()
            .map_err(|err| errors.push(&at(loc, "size"), "enum", err.to_string()))
            .ok(),
        Some(_) => {
            errors.push(
                &at(loc, "size"),
                "enum",
                crate::domain::size::UnknownSize.to_string(),
            );
            None
        }
    };
    let quantity = match item.get("quantity") {
        None => Some(Quantity::default()),
        Some(value) => quantity(value, &at(loc, "quantity"), errors),
    };
    Some(OrderItem {
        product: product?,
        size: size?,
        quantity: quantity?,
    })
}

fn missing<T>(loc: &[Loc], errors: &mut Errors) -> Option<T> {
    errors.push(loc, "missing", "Field required");
    None
}

/// Strict: a JSON integer only (no `1.0`, `"1"`, `true` or `null`).
fn quantity(value: &Value, loc: &[Loc], errors: &mut Errors) -> Option<Quantity> {
    let number = match value {
        Value::Number(n) if n.is_i64() => n.as_i64().map(i128::from),
        Value::Number(n) if n.is_u64() => n.as_u64().map(i128::from),
        _ => None,
    };
    let Some(number) = number else {
        errors.push(loc, "int_type", "Input should be a valid integer");
        return None;
    };
    match Quantity::parse(number) {
        Ok(quantity) => Some(quantity),
        Err(err) => {
            let kind = match err {
                crate::domain::quantity::QuantityError::TooSmall => "greater_than_equal",
                crate::domain::quantity::QuantityError::TooLarge => "less_than_equal",
            };
            errors.push(loc, kind, err.to_string());
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn kinds(body: Value) -> Vec<(String, &'static str)> {
        new_order(&body)
            .unwrap_err()
            .into_iter()
            .map(|e| (serde_json::to_string(&e.loc).unwrap(), e.kind))
            .collect()
    }

    #[test]
    fn accepts_a_valid_order_and_defaults_quantity() {
        let order = new_order(&json!({"order": [
            {"product": "latte", "size": "small"},
            {"product": "mocha", "size": "big", "quantity": 3},
        ]}))
        .unwrap();
        let items = order.items.as_slice();
        assert_eq!(items[0].quantity.get(), 1);
        assert_eq!(items[1].quantity.get(), 3);
        assert_eq!(items[1].product.as_str(), "mocha");
    }

    #[test]
    fn quantity_must_be_a_strict_integer_in_range() {
        for (bad, kind) in [
            (json!(null), "int_type"),
            (json!("2"), "int_type"),
            (json!(1.0), "int_type"),
            (json!(1.5), "int_type"),
            (json!(true), "int_type"),
            (json!(0), "greater_than_equal"),
            (json!(-3), "greater_than_equal"),
            (json!(1_000_001), "less_than_equal"),
            (json!(u64::MAX), "less_than_equal"),
        ] {
            let body = json!({"order": [{"product": "latte", "size": "small", "quantity": bad}]});
            assert_eq!(
                kinds(body),
                vec![(r#"["body","order",0,"quantity"]"#.to_owned(), kind)],
                "{bad}"
            );
        }
    }

    #[test]
    fn reports_every_problem_with_its_location() {
        let body = json!({"order": [{"size": "huge", "colour": "red"}], "extra": 1});
        let mut found = kinds(body);
        found.sort();
        assert_eq!(
            found,
            vec![
                (r#"["body","extra"]"#.to_owned(), "extra_forbidden"),
                (
                    r#"["body","order",0,"colour"]"#.to_owned(),
                    "extra_forbidden"
                ),
                (r#"["body","order",0,"product"]"#.to_owned(), "missing"),
                (r#"["body","order",0,"size"]"#.to_owned(), "enum"),
            ]
        );
    }

    #[test]
    fn the_typed_reading_agrees_with_the_general_one() {
        for body in [
            r#"{"order": [{"product": "latte", "size": "small"}]}"#,
            r#"{"order": [{"product": "mocha", "size": "big", "quantity": 3}, {"size": "medium", "product": "flat \u0077hite"}]}"#,
            r#"{"order": [{"product": "latte", "size": "small", "quantity": null}]}"#,
            r#"{"order": [{"product": "latte", "size": "small", "quantity": 1.0}]}"#,
            r#"{"order": [{"product": "latte", "size": "small", "quantity": 0}]}"#,
            r#"{"order": [{"product": "latte", "size": "small", "quantity": 18446744073709551615}]}"#,
            r#"{"order": [{"product": "latte", "size": "huge"}]}"#,
            r#"{"order": [{"product": "", "size": "small"}]}"#,
            r#"{"order": [{"product": "latte", "product": "mocha", "size": "small"}]}"#,
            r#"{"order": [{"product": "latte", "size": "small", "colour": "red"}]}"#,
            r#"{"order": [], "extra": 1}"#,
            r#"{"order": []}"#,
        ] {
            let general = new_order(&serde_json::from_str(body).unwrap());
            let either = new_order_from_json(body.as_bytes()).unwrap();
            assert_eq!(format!("{either:?}"), format!("{general:?}"), "{body}");
        }
        assert!(new_order_from_json(b"{").is_err());
    }

    #[test]
    fn refuses_wrong_shapes() {
        assert_eq!(
            kinds(json!([])),
            vec![(r#"["body"]"#.to_owned(), "model_attributes_type")]
        );
        assert_eq!(
            kinds(json!({})),
            vec![(r#"["body","order"]"#.to_owned(), "missing")]
        );
        assert_eq!(
            kinds(json!({"order": []})),
            vec![(r#"["body","order"]"#.to_owned(), "too_short")]
        );
        assert_eq!(
            kinds(json!({"order": {}})),
            vec![(r#"["body","order"]"#.to_owned(), "list_type")]
        );
        assert_eq!(
            kinds(json!({"order": [1]})),
            vec![(r#"["body","order",0]"#.to_owned(), "model_attributes_type")]
        );
        assert_eq!(
            kinds(json!({"order": [{"product": 1, "size": null}]})),
            vec![
                (r#"["body","order",0,"product"]"#.to_owned(), "string_type"),
                (r#"["body","order",0,"size"]"#.to_owned(), "enum"),
            ]
        );
    }
}

//! The OpenAPI document, generated from the handlers, and Swagger UI.

use axum::Router;
use utoipa::OpenApi;
use utoipa_swagger_ui::SwaggerUi;

use super::state::AppState;

pub const OPENAPI_PATH: &str = "/openapi/orders.json";
pub const DOCS_PATH: &str = "/docs/orders";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Orders API",
        description = "Place, change, pay for and cancel CoffeeMesh coffee orders.\n\n\
            Every error answers `{\"detail\": ...}`: a sentence, or for validation \
            errors a list of `{loc, msg, type}`.",
        version = "1.0.0",
        license(name = "MIT", identifier = "MIT"),
    ),
    paths(
        super::orders::list_orders,
        super::orders::create_order,
        super::orders::get_order,
        super::orders::replace_order,
        super::orders::delete_order,
        super::orders::pay_order,
        super::orders::cancel_order,
    ),
    components(schemas(
        super::dto::OrderItem,
        super::dto::CreateOrder,
        super::dto::OrderItemResponse,
        super::dto::OrderResponse,
        super::dto::OrdersPage,
        super::dto::PaymentResponse,
        super::error::ErrorBody,
        super::error::ErrorDetail,
        super::error::FieldError,
        crate::domain::Size,
        crate::domain::OrderStatus,
        crate::domain::PaymentStatus,
    )),
    tags((name = "orders", description = "Coffee orders of the calling user")),
    modifiers(&BearerScheme),
)]
pub struct ApiDoc;

/// Declares the bearer JWT scheme the `/orders` operations name, so that
/// Swagger UI's Authorize button takes a pasted token.
struct BearerScheme;

impl utoipa::Modify for BearerScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "A JWT from the identity provider; required when the service runs with AUTH_ON=true.",
                    ))
                    .build(),
            ),
        );
    }
}

/// The document as served, for tests and for regenerating `oas.yaml`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

pub fn routes() -> Router<AppState> {
    Router::new().merge(SwaggerUi::new(DOCS_PATH).url(OPENAPI_PATH, openapi()))
}

//! Who is calling. Handlers that take a [`Caller`] cannot forget to scope
//! their queries to that user.

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;

use crate::auth::AuthError;

use super::error::ApiError;
use super::state::AppState;

/// The user every operation is scoped to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller(pub String);

impl Caller {
    /// With authentication off, every caller is this user.
    pub const ANONYMOUS: &'static str = "test";

    pub fn id(&self) -> &str {
        &self.0
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let Some(authenticator) = &state.authenticator else {
            return Ok(Caller(Self::ANONYMOUS.to_owned()));
        };
        let header = parts
            .headers
            .get(header::AUTHORIZATION)
            .map(|value| value.to_str().map_err(|_| AuthError::Malformed))
            .transpose()?;
        match authenticator.authenticate(header).await {
            Ok(user) => Ok(Caller(user)),
            Err(reason) => {
                tracing::debug!(%reason, "token refused");
                Err(reason.into())
            }
        }
    }
}

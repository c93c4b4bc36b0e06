//! Who is calling. Handlers that take a [`Caller`] cannot forget to scope
//! their queries to that user.

use std::borrow::Cow;

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;

use crate::auth::AuthError;

use super::error::ApiError;
use super::state::AppState;

/// The user every operation is scoped to. Borrowed when it is the
/// anonymous user, so that a request with authentication off allocates
/// nothing for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller(pub Cow<'static, str>);

impl Caller {
    /// With authentication off, every caller is this user.
    pub const ANONYMOUS: &'static str = "test";

    pub fn id(&self) -> &str {
        &self.0
    }

    pub fn into_id(self) -> String {
        self.0.into_owned()
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let Some(authenticator) = &state.authenticator else {
            return Ok(Caller(Cow::Borrowed(Self::ANONYMOUS)));
        };
        let header = parts
            .headers
            .get(header::AUTHORIZATION)
            .map(|value| value.to_str().map_err(|_| AuthError::Malformed))
            .transpose()?;
        match authenticator.authenticate(header).await {
            Ok(user) => Ok(Caller(Cow::Owned(user))),
            Err(reason) => {
                tracing::debug!(%reason, "token refused");
                Err(reason.into())
            }
        }
    }
}

//! Whether this pod should receive traffic.
//!
//! Ready once the database was reached with its schema at (or past) the
//! version this build embeds; from then on a database outage does not make
//! the pod unready (every replica would drop out of the load balancer at
//! once): requests answer a fast 503 instead. Unready again from SIGTERM on.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::repository::OrdersRepository;

#[derive(Debug)]
pub struct Readiness {
    expected_version: i64,
    schema_ok: AtomicBool,
    draining: AtomicBool,
}

/// Longer than this and the probe itself would time out.
const CHECK_TIMEOUT: Duration = Duration::from_millis(1_500);

impl Readiness {
    pub fn new(expected_version: i64) -> Self {
        Self {
            expected_version,
            schema_ok: AtomicBool::new(false),
            draining: AtomicBool::new(false),
        }
    }

    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// `Ok` when ready; otherwise a reason fit for the probe's response.
    pub async fn check(&self, repo: &OrdersRepository) -> Result<(), String> {
        if self.is_draining() {
            return Err("shutting down".into());
        }
        if self.schema_ok.load(Ordering::SeqCst) {
            return Ok(());
        }
        let expected = self.expected_version;
        match tokio::time::timeout(CHECK_TIMEOUT, repo.schema_version()).await {
            Ok(Ok(Some(version))) if version >= expected => {
                self.schema_ok.store(true, Ordering::SeqCst);
                tracing::info!(schema_version = version, "ready");
                Ok(())
            }
            Ok(Ok(Some(version))) => Err(format!(
                "database schema is at version {version}, this build needs {expected}: run migrate"
            )),
            Ok(Ok(None)) => Err(format!(
                "database schema is not migrated, this build needs version {expected}: run migrate"
            )),
            Ok(Err(err)) => {
                tracing::warn!(error = %err, "readiness check cannot reach the database");
                Err("database unreachable".into())
            }
            Err(_) => Err("database did not answer in time".into()),
        }
    }
}

//! Prints, as JSON, the PostgreSQL statements of a get and of the first page
//! of the lists exactly as the service prepares them (they are put together
//! by macros, so the source does not hold them whole). `bench/bench.py`
//! runs them in pgbench beside the service.
//!
//!     cargo run --release --example statements

use orders_service::repository::{ListFilter, sql};

fn main() {
    let statements = serde_json::json!({
        "GET": sql::get(true),
        "LIST": sql::list(true, ListFilter::All, false),
        "LIST_NC": sql::list(true, ListFilter::ExceptCancelled, false),
    });
    println!("{statements}");
}

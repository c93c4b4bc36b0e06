//! Fake payments and kitchen services that behave like real ones where money
//! is concerned: the same `Idempotency-Key` always gets the same payment,
//! refund or schedule, and they count what they did by key, so a test can
//! tell "charged once" from "charged twice".
//!
//! They are plain HTTP/1.1 servers on a raw socket (one request per
//! connection), so that a fault can strike after the work was done: the
//! answer delayed past the client's timeout, the connection reset, a 500,
//! or a 201 whose body cannot be read.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use uuid::Uuid;

/// What goes wrong with the next call to a route. All but `Unavailable`
/// strike after the work was done: the charge, refund, schedule or cancel
/// happened, only its answer is lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The answer comes too late for the client.
    Slow,
    /// The connection is reset without an answer.
    Reset,
    /// The server answers 500.
    ServerError,
    /// A 201 whose body is not JSON.
    Garbage,
    /// The answer is held until the test releases it with
    /// [`Fake::release_held`] (or forever): the call is in flight.
    Held,
    /// Nothing is done: the server answers 503.
    Unavailable,
    /// A proxy in front of the service answers 503 after forwarding the
    /// request: the work was done.
    UnavailableAfterWork,
    /// Nothing is done, for good: the service answers 422 with a reason.
    Refused,
    /// The answer comes after [`DELAYED`]: slow, but within the tests'
    /// upstream timeout.
    Delayed,
}

/// The reason a refusal gives.
pub const REFUSAL: &str = "out of oat milk";

/// How long a delayed answer takes.
pub const DELAYED: Duration = Duration::from_millis(600);

/// An answer, or the decision not to give one.
enum Reply {
    Json(u16, Value),
    Raw(u16, &'static str),
    Reset,
    Slow,
    /// This answer, once the test releases it.
    Held(Box<Reply>),
    /// This answer, after [`DELAYED`].
    Delayed(Box<Reply>),
}

/// How long a slow answer takes: past the tests' `UPSTREAM_TIMEOUT_MS`.
const SLOW: Duration = Duration::from_millis(1_500);

#[derive(Debug, Clone)]
pub struct Charge {
    pub order_id: Uuid,
    pub payment_id: Uuid,
    pub status: &'static str,
    /// How often this key was asked while pending.
    asks: u32,
}

/// Refunds go through at once (with any fault queued for the call).
#[derive(Debug, Clone)]
pub struct Refund {
    pub payment_id: Uuid,
    pub refund_id: Uuid,
    pub status: &'static str,
}

#[derive(Debug, Clone)]
pub struct Schedule {
    pub id: Uuid,
    pub status: &'static str,
}

#[derive(Default)]
struct PaymentsState {
    /// By idempotency key.
    charges: HashMap<String, Charge>,
    /// Answers for new keys, in turn; `paid` when empty.
    verdicts: VecDeque<&'static str>,
    /// The payment id of every new charge, when set (a payments service
    /// that reuses ids); a fresh one each otherwise.
    payment_id: Option<Uuid>,
    /// How many asks a pending charge needs before it settles.
    pending_asks: u32,
    /// What a pending charge settles to.
    settles_to: &'static str,
    refunds: HashMap<String, Refund>,
    charge_faults: VecDeque<Fault>,
    refund_faults: VecDeque<Fault>,
    charge_calls: usize,
    refund_calls: usize,
    /// When each charge key was asked, to tell calls in flight together.
    charge_arrivals: HashMap<String, Vec<std::time::Instant>>,
}

#[derive(Default)]
struct KitchenState {
    /// By idempotency key (the order id).
    schedules: HashMap<String, Schedule>,
    schedule_calls: usize,
    schedule_faults: VecDeque<Fault>,
    cancel_faults: VecDeque<Fault>,
    status_faults: VecDeque<Fault>,
    /// The kitchen no longer cancels (409): it is too late.
    refuse_cancels: bool,
}

#[derive(Default)]
struct State {
    payments: PaymentsState,
    kitchen: KitchenState,
    /// Requests whose answer is held, released together.
    held: Vec<tokio::sync::oneshot::Sender<()>>,
    /// `METHOD path` and the `traceparent` it came with (if any), in turn.
    traceparents: Vec<(String, Option<String>)>,
}

/// Both fakes on one server (distinct paths), as tests wire them to
/// `PAYMENTS_URL` and `KITCHEN_URL`.
#[derive(Clone)]
pub struct Fake {
    pub url: String,
    state: Arc<Mutex<State>>,
}

impl Fake {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(State::default()));
        state.lock().unwrap().payments.settles_to = "paid";
        let serving = state.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                tokio::spawn(serve(socket, serving.clone()));
            }
        });
        Self { url, state }
    }

    /// The `traceparent` of every call so far, by `METHOD path`.
    pub fn traceparents(&self) -> Vec<(String, Option<String>)> {
        self.with(|state| state.traceparents.clone())
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        f(&mut self.state.lock().unwrap())
    }

    /// The next new charge keys get these answers, in turn (`paid`,
    /// `invalid` or `pending`).
    pub fn verdicts(&self, verdicts: &[&'static str]) {
        self.with(|s| s.payments.verdicts.extend(verdicts));
    }

    /// Every new charge is answered with this payment id.
    pub fn payment_ids(&self, id: Uuid) {
        self.with(|s| s.payments.payment_id = Some(id));
    }

    /// A pending charge settles to `to` once asked `asks` more times.
    pub fn pending_settles(&self, asks: u32, to: &'static str) {
        self.with(|s| {
            s.payments.pending_asks = asks;
            s.payments.settles_to = to;
        });
    }

    pub fn fail_charges(&self, faults: &[Fault]) {
        self.with(|s| s.payments.charge_faults.extend(faults));
    }

    pub fn fail_refunds(&self, faults: &[Fault]) {
        self.with(|s| s.payments.refund_faults.extend(faults));
    }

    pub fn fail_schedules(&self, faults: &[Fault]) {
        self.with(|s| s.kitchen.schedule_faults.extend(faults));
    }

    pub fn fail_cancels(&self, faults: &[Fault]) {
        self.with(|s| s.kitchen.cancel_faults.extend(faults));
    }

    pub fn fail_status(&self, faults: &[Fault]) {
        self.with(|s| s.kitchen.status_faults.extend(faults));
    }

    /// Every fault still queued is dropped: the services answer again.
    pub fn heal(&self) {
        self.with(|s| {
            s.payments.charge_faults.clear();
            s.payments.refund_faults.clear();
            s.kitchen.schedule_faults.clear();
            s.kitchen.cancel_faults.clear();
            s.kitchen.status_faults.clear();
        });
    }

    pub fn refuse_cancels(&self) {
        self.with(|s| s.kitchen.refuse_cancels = true);
    }

    /// Answers every held request now.
    pub fn release_held(&self) {
        for release in self.with(|s| std::mem::take(&mut s.held)) {
            let _ = release.send(());
        }
    }

    /// Charges that went through for this order: one per key that is `paid`.
    pub fn charges_of(&self, order_id: Uuid) -> usize {
        self.with(|s| {
            s.payments
                .charges
                .values()
                .filter(|c| c.order_id == order_id && c.status == "paid")
                .count()
        })
    }

    /// Distinct keys payments ever saw for this order.
    pub fn charge_keys_of(&self, order_id: Uuid) -> usize {
        self.with(|s| {
            s.payments
                .charges
                .values()
                .filter(|c| c.order_id == order_id)
                .count()
        })
    }

    /// Refunds made of this order's charges (each refund key counted once).
    pub fn refunds_of(&self, order_id: Uuid) -> usize {
        self.refunds_where(order_id, |refund| refund.status == "refunded")
    }

    /// Refund keys this order's charges were ever asked with.
    pub fn refund_keys_of(&self, order_id: Uuid) -> usize {
        self.refunds_where(order_id, |_| true)
    }

    fn refunds_where(&self, order_id: Uuid, counted: impl Fn(&Refund) -> bool) -> usize {
        self.with(|s| {
            let payments: Vec<Uuid> = s
                .payments
                .charges
                .values()
                .filter(|c| c.order_id == order_id)
                .map(|c| c.payment_id)
                .collect();
            s.payments
                .refunds
                .values()
                .filter(|r| payments.contains(&r.payment_id) && counted(r))
                .count()
        })
    }

    /// Pairs of calls with one charge key, made from `since` on, that were in
    /// flight together (the second came before the first could be answered).
    pub fn overlapping_charge_calls(
        &self,
        since: std::time::Instant,
        answer_takes: Duration,
    ) -> usize {
        self.with(|s| {
            s.payments
                .charge_arrivals
                .values()
                .map(|times| {
                    let later: Vec<_> = times.iter().filter(|at| **at >= since).collect();
                    later
                        .windows(2)
                        .filter(|pair| pair[1].duration_since(*pair[0]) < answer_takes)
                        .count()
                })
                .sum()
        })
    }

    pub fn charge_calls(&self) -> usize {
        self.with(|s| s.payments.charge_calls)
    }

    pub fn refund_calls(&self) -> usize {
        self.with(|s| s.payments.refund_calls)
    }

    pub fn schedule_calls(&self) -> usize {
        self.with(|s| s.kitchen.schedule_calls)
    }

    /// Schedules the kitchen made for this order (one per key).
    pub fn schedule_of(&self, order_id: Uuid) -> Option<Schedule> {
        self.with(|s| s.kitchen.schedules.get(&order_id.to_string()).cloned())
    }

    /// The kitchen moves a schedule on by itself (`progress`, `finished`,
    /// `cancelled`).
    pub fn kitchen_sets(&self, order_id: Uuid, status: &'static str) {
        self.with(|s| {
            if let Some(schedule) = s.kitchen.schedules.get_mut(&order_id.to_string()) {
                schedule.status = status;
            }
        });
    }
}

struct Request {
    method: String,
    path: String,
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

async fn read_request(socket: &mut TcpStream) -> Option<Request> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break end;
        }
        let read = socket.read(&mut chunk).await.ok()?;
        if read == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..read]);
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).to_string();
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next()?.split(' ');
    let (method, path) = (
        request_line.next()?.to_owned(),
        request_line.next()?.to_owned(),
    );
    let headers: HashMap<String, String> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let length: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = buffer[head_end + 4..].to_vec();
    while body.len() < length {
        let read = socket.read(&mut chunk).await.ok()?;
        if read == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..read]);
    }
    Some(Request {
        method,
        path,
        headers,
        body,
    })
}

async fn serve(mut socket: TcpStream, state: Arc<Mutex<State>>) {
    let Some(request) = read_request(&mut socket).await else {
        return;
    };
    let mut reply = {
        let mut state = state.lock().unwrap();
        let call = format!("{} {}", request.method, request.path);
        let traceparent = request.headers.get("traceparent").cloned();
        state.traceparents.push((call, traceparent));
        route(&mut state, &request)
    };
    if let Reply::Delayed(answer) = reply {
        tokio::time::sleep(DELAYED).await;
        reply = *answer;
    }
    if let Reply::Held(answer) = reply {
        let (release, held) = tokio::sync::oneshot::channel();
        state.lock().unwrap().held.push(release);
        let _ = held.await;
        reply = *answer;
    }
    let (status, body) = match reply {
        Reply::Json(status, body) => (status, body.to_string()),
        Reply::Raw(status, body) => (status, body.to_owned()),
        Reply::Reset => {
            let _ = socket.set_zero_linger();
            return;
        }
        Reply::Slow => {
            tokio::time::sleep(SLOW).await;
            return;
        }
        Reply::Held(_) | Reply::Delayed(_) => unreachable!("answered above"),
    };
    let response = format!(
        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = socket.write_all(response.as_bytes()).await;
    let _ = socket.shutdown().await;
}

/// The answer for a fault that struck after the work produced `done`.
fn after_work(fault: Option<Fault>, done: Reply) -> Reply {
    match fault {
        None | Some(Fault::Unavailable | Fault::Refused) => done,
        Some(Fault::Slow) => Reply::Slow,
        Some(Fault::Reset) => Reply::Reset,
        Some(Fault::ServerError) => Reply::Json(500, json!({"detail": "boom"})),
        Some(Fault::UnavailableAfterWork) => Reply::Json(503, json!({"detail": "upstream gone"})),
        Some(Fault::Garbage) => Reply::Raw(201, "{\"payment_id\": <truncated"),
        Some(Fault::Held) => Reply::Held(Box::new(done)),
        Some(Fault::Delayed) => Reply::Delayed(Box::new(done)),
    }
}

/// A fault that strikes before any work.
fn before_work(fault: Option<Fault>) -> Option<Reply> {
    match fault {
        Some(Fault::Unavailable) => Some(Reply::Json(503, json!({"detail": "busy"}))),
        Some(Fault::Refused) => Some(Reply::Json(422, json!({"detail": REFUSAL}))),
        _ => None,
    }
}

fn route(state: &mut State, request: &Request) -> Reply {
    let key = request.headers.get("idempotency-key").cloned();
    let segments: Vec<&str> = request.path.trim_matches('/').split('/').collect();
    let body: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
    match (request.method.as_str(), segments.as_slice()) {
        ("POST", ["payments"]) => {
            let Some(key) = key else {
                return Reply::Json(400, json!({"detail": "Idempotency-Key required"}));
            };
            charge(&mut state.payments, key, &body)
        }
        ("POST", ["payments", payment_id, "refunds"]) => {
            let Some(key) = key else {
                return Reply::Json(400, json!({"detail": "Idempotency-Key required"}));
            };
            refund(&mut state.payments, key, payment_id)
        }
        ("POST", ["kitchen", "schedules"]) => {
            let Some(key) = key else {
                return Reply::Json(400, json!({"detail": "Idempotency-Key required"}));
            };
            schedule(&mut state.kitchen, key)
        }
        ("POST", ["kitchen", "schedules", id, "cancel"]) => cancel(&mut state.kitchen, id),
        ("GET", ["kitchen", "schedules", id, "status"]) => status(&mut state.kitchen, id),
        _ => Reply::Json(404, json!({"detail": "no such route"})),
    }
}

fn charge(payments: &mut PaymentsState, key: String, body: &Value) -> Reply {
    payments.charge_calls += 1;
    payments
        .charge_arrivals
        .entry(key.clone())
        .or_default()
        .push(std::time::Instant::now());
    let fault = payments.charge_faults.pop_front();
    if let Some(reply) = before_work(fault) {
        return reply;
    }
    let order_id = body["order_id"]
        .as_str()
        .and_then(|id| id.parse().ok())
        .unwrap_or_default();
    let (pending_asks, settles_to) = (payments.pending_asks, payments.settles_to);
    let verdict = payments.verdicts.pop_front().unwrap_or("paid");
    let payment_id = payments.payment_id.unwrap_or_else(Uuid::new_v4);
    let charge = payments.charges.entry(key).or_insert_with(|| Charge {
        order_id,
        payment_id,
        status: verdict,
        asks: 0,
    });
    if charge.status == "pending" {
        if charge.asks >= pending_asks {
            charge.status = settles_to;
        }
        charge.asks += 1;
    }
    let done = Reply::Json(
        201,
        json!({"payment_id": charge.payment_id, "status": charge.status}),
    );
    after_work(fault, done)
}

fn refund(payments: &mut PaymentsState, key: String, payment_id: &str) -> Reply {
    payments.refund_calls += 1;
    let fault = payments.refund_faults.pop_front();
    if let Some(reply) = before_work(fault) {
        return reply;
    }
    let Ok(payment_id) = payment_id.parse::<Uuid>() else {
        return Reply::Json(404, json!({"detail": "no such payment"}));
    };
    if !payments
        .charges
        .values()
        .any(|c| c.payment_id == payment_id && c.status == "paid")
    {
        return Reply::Json(404, json!({"detail": "no such payment"}));
    }
    let refund = payments.refunds.entry(key).or_insert_with(|| Refund {
        payment_id,
        refund_id: Uuid::new_v4(),
        status: "refunded",
    });
    let done = Reply::Json(
        201,
        json!({"refund_id": refund.refund_id, "status": refund.status}),
    );
    after_work(fault, done)
}

fn schedule(kitchen: &mut KitchenState, key: String) -> Reply {
    kitchen.schedule_calls += 1;
    let fault = kitchen.schedule_faults.pop_front();
    if let Some(reply) = before_work(fault) {
        return reply;
    }
    let schedule = kitchen.schedules.entry(key).or_insert_with(|| Schedule {
        id: Uuid::new_v4(),
        status: "pending",
    });
    let done = Reply::Json(
        201,
        json!({
            "id": schedule.id,
            "scheduled": "2026-12-01T10:00:00Z",
            "status": schedule.status,
            "order": [],
        }),
    );
    after_work(fault, done)
}

fn find<'a>(kitchen: &'a mut KitchenState, id: &str) -> Option<&'a mut Schedule> {
    let id: Uuid = id.parse().ok()?;
    kitchen.schedules.values_mut().find(|s| s.id == id)
}

fn cancel(kitchen: &mut KitchenState, id: &str) -> Reply {
    let fault = kitchen.cancel_faults.pop_front();
    if let Some(reply) = before_work(fault) {
        return reply;
    }
    let refuse = kitchen.refuse_cancels;
    let done = match find(kitchen, id) {
        // A real kitchen forgets a schedule once cancelled.
        None => Reply::Json(404, json!({"detail": "no such schedule"})),
        Some(schedule) if schedule.status == "cancelled" => {
            Reply::Json(404, json!({"detail": "no such schedule"}))
        }
        Some(schedule) if refuse || schedule.status == "finished" => {
            Reply::Json(409, json!({"detail": "too late to cancel"}))
        }
        Some(schedule) => {
            schedule.status = "cancelled";
            Reply::Json(200, json!({"id": schedule.id, "status": "cancelled"}))
        }
    };
    after_work(fault, done)
}

fn status(kitchen: &mut KitchenState, id: &str) -> Reply {
    let fault = kitchen.status_faults.pop_front();
    if let Some(reply) = before_work(fault) {
        return reply;
    }
    let done = match find(kitchen, id) {
        None => Reply::Json(404, json!({"detail": "no such schedule"})),
        Some(schedule) => Reply::Json(200, json!({"status": schedule.status})),
    };
    after_work(fault, done)
}

//! The AMQP side of the relay: one connection and one channel in publisher
//! confirm mode, on which the exchange is declared before anything is
//! published to it.

use std::time::Duration;

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::uri::AMQPUri;
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties};

/// A message to publish: its routing key, its body and what the broker
/// keeps beside it.
pub struct Message<'a> {
    pub routing_key: &'a str,
    pub body: Vec<u8>,
    pub message_id: String,
    /// Seconds since the epoch, the AMQP `timestamp`.
    pub timestamp: u64,
    pub traceparent: Option<String>,
}

/// What became of one published message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The broker took it (stored it, for a durable queue bound to it).
    Confirmed,
    /// The broker refused it (a nack).
    Refused,
}

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("{0}")]
    Amqp(#[from] lapin::Error),
    /// No answer in time: the connection is as good as lost.
    #[error("the broker did not answer within {0:?}")]
    TimedOut(Duration),
}

/// The longest wait for the connection, or for the confirms of a batch:
/// past it the connection is dropped and made again, and the batch is
/// published again (at least once).
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Broker {
    connection: Connection,
    channel: Channel,
    exchange: String,
}

impl Broker {
    /// Connects, turns on publisher confirms and declares `exchange`, a
    /// durable topic exchange (declaring is idempotent: an existing one
    /// with the same settings stays as it is).
    pub async fn connect(url: &AMQPUri, exchange: &str) -> Result<Self, BrokerError> {
        let connect = async {
            let properties =
                ConnectionProperties::default().with_connection_name(env!("CARGO_PKG_NAME").into());
            let connection = Connection::connect_uri(url.clone(), properties).await?;
            let channel = connection.create_channel().await?;
            channel
                .confirm_select(ConfirmSelectOptions::default())
                .await?;
            channel
                .exchange_declare(
                    exchange.into(),
                    lapin::ExchangeKind::Topic,
                    ExchangeDeclareOptions {
                        durable: true,
                        ..ExchangeDeclareOptions::default()
                    },
                    FieldTable::default(),
                )
                .await?;
            Ok::<_, BrokerError>(Self {
                connection,
                channel,
                exchange: exchange.to_owned(),
            })
        };
        tokio::time::timeout(ANSWER_TIMEOUT, connect)
            .await
            .map_err(|_| BrokerError::TimedOut(ANSWER_TIMEOUT))?
    }

    pub fn is_open(&self) -> bool {
        self.connection.status().connected() && self.channel.status().connected()
    }

    /// Publishes `messages` (persistent, CloudEvents JSON) and waits for the
    /// broker's confirm of each, in their order.
    pub async fn publish(&self, messages: Vec<Message<'_>>) -> Result<Vec<Outcome>, BrokerError> {
        let publish = async {
            let mut confirms = Vec::with_capacity(messages.len());
            for message in messages {
                let mut headers = FieldTable::default();
                if let Some(traceparent) = message.traceparent {
                    headers.insert(
                        "traceparent".into(),
                        AMQPValue::LongString(traceparent.into()),
                    );
                }
                let properties = BasicProperties::default()
                    .with_content_type("application/cloudevents+json".into())
                    .with_delivery_mode(2)
                    .with_message_id(message.message_id.into())
                    .with_timestamp(message.timestamp)
                    .with_app_id(env!("CARGO_PKG_NAME").into())
                    .with_headers(headers);
                let confirm = self
                    .channel
                    .basic_publish(
                        self.exchange.as_str().into(),
                        message.routing_key.into(),
                        BasicPublishOptions::default(),
                        &message.body,
                        properties,
                    )
                    .await?;
                confirms.push(confirm);
            }
            let mut outcomes = Vec::with_capacity(confirms.len());
            for confirm in confirms {
                outcomes.push(match confirm.await? {
                    Confirmation::Ack(_) => Outcome::Confirmed,
                    Confirmation::Nack(_) | Confirmation::NotRequested => Outcome::Refused,
                });
            }
            Ok::<_, BrokerError>(outcomes)
        };
        tokio::time::timeout(ANSWER_TIMEOUT, publish)
            .await
            .map_err(|_| BrokerError::TimedOut(ANSWER_TIMEOUT))?
    }

    /// Closes the connection politely (at shutdown).
    pub async fn close(self) {
        let _ = tokio::time::timeout(
            Duration::from_secs(2),
            self.connection.close(200, "shutting down".into()),
        )
        .await;
    }
}

//! What h2load cannot see: how fast events leave a `rosterd` and reach
//! another process, and how fast a notification reaches every open
//! `Subscribe` stream. Each measurement runs here, in `roster-load`'s own
//! process, against the PostgreSQL + JetStream `rosterd`.

use std::str::FromStr as _;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context as _, ensure};
use futures::StreamExt as _;
use roster_core::events::{EventBus as _, NatsBus, new_event, outbox};
use roster_proto::v1::notification_service_client::NotificationServiceClient;
use roster_proto::v1::user_access_client::UserAccessClient;
use roster_proto::v1::{
    CreateUserApiKeyRequest, Event, Right, SubscribeNotificationsRequest, UserIdentifiers,
};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use tokio::sync::Barrier;
use tonic::transport::Channel;

/// Latencies in ascending order.
pub struct Spread(Vec<Duration>);

impl Spread {
    fn new(mut samples: Vec<Duration>) -> Self {
        samples.sort();
        Spread(samples)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The `p`th percentile (nearest rank); zero when there are no samples.
    pub fn percentile(&self, p: f64) -> Duration {
        if self.0.is_empty() {
            return Duration::ZERO;
        }
        let rank = ((p / 100.0) * self.0.len() as f64).ceil() as usize;
        self.0[rank.clamp(1, self.0.len()) - 1]
    }

    pub fn max(&self) -> Duration {
        self.0.last().copied().unwrap_or_default()
    }
}

/// When `event` was made, by the publishing process's clock (the same
/// host's as ours).
fn made_at(event: &Event) -> Option<SystemTime> {
    let time = event.time.as_ref()?;
    let since = Duration::new(
        u64::try_from(time.seconds).ok()?,
        u32::try_from(time.nanos).ok()?,
    );
    Some(SystemTime::UNIX_EPOCH + since)
}

fn with_token<T>(message: T, token: &str) -> anyhow::Result<tonic::Request<T>> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse()?);
    Ok(request)
}

fn admin_ids(admin: &str) -> UserIdentifiers {
    UserIdentifiers {
        user_id: admin.into(),
        email: String::new(),
    }
}

/// An API key for `admin`, made with `token`: a change that commits an
/// event (`user.api-key.create`) and, through the notifications service,
/// a notification to `admin`.
async fn create_key(channel: &Channel, token: &str, admin: &str, n: usize) -> anyhow::Result<()> {
    UserAccessClient::new(channel.clone())
        .create_api_key(with_token(
            CreateUserApiKeyRequest {
                user_ids: Some(admin_ids(admin)),
                name: format!("load {n}"),
                rights: vec![Right::UserInfo as i32],
                expires_at: None,
            },
            token,
        )?)
        .await
        .context("creating an API key")?;
    Ok(())
}

/// From the commit of a change in `rosterd` to its event in this process:
/// `samples` API keys made one after another, each `user.api-key.create`
/// received here through JetStream, timed from the event's own `time`
/// (stamped in the transaction that commits it).
pub async fn commit_to_consumer(
    bus: &NatsBus,
    channel: &Channel,
    token: &str,
    admin: &str,
    samples: usize,
) -> anyhow::Result<Spread> {
    let mut events = bus
        .subscribe(roster_core::events::names::API_KEY_CREATE)
        .await?;
    let mut latencies = Vec::with_capacity(samples);
    for n in 0..samples {
        create_key(channel, token, admin, n).await?;
        let event = tokio::time::timeout(Duration::from_secs(10), events.next())
            .await
            .context("no user.api-key.create within 10 s")?
            .context("the subscription ended")?;
        let received = SystemTime::now();
        let made = made_at(&event).context("an event without a time")?;
        latencies.push(received.duration_since(made).unwrap_or_default());
        // Spaced out, so each event finds the relay idle, as most do.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(Spread::new(latencies))
}

/// The outbox relay's rate: `count` events committed in one transaction to
/// the user registry's outbox, and the rate at which they arrive here
/// through JetStream, from the first to the last.
pub async fn relay_rate(bus: &NatsBus, db_url: &str, count: usize) -> anyhow::Result<f64> {
    const NAME: &str = "bench.relay";
    let mut events = bus.subscribe(NAME).await?;
    let options = PgConnectOptions::from_str(db_url)?.options([("search_path", "user_registry")]);
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await?;
    let mut tx = pool.begin().await?;
    for _ in 0..count {
        outbox::insert_pg(&mut tx, &new_event(NAME, vec![], None)).await?;
    }
    tx.commit().await?;
    pool.close().await;
    let first = tokio::time::timeout(Duration::from_secs(10), events.next())
        .await
        .context("the relay published nothing within 10 s")?
        .context("the subscription ended")?;
    drop(first);
    let started = Instant::now();
    for received in 1..count {
        tokio::time::timeout(Duration::from_secs(10), events.next())
            .await
            .with_context(|| format!("only {received} of {count} events arrived"))?
            .context("the subscription ended")?;
    }
    Ok((count - 1) as f64 / started.elapsed().as_secs_f64())
}

/// `streams` `Subscribe` streams of `admin` over `connections` HTTP/2
/// connections, then `rounds` notifications to `admin` (one API key
/// each): for every stream and round, the time from the change's answer
/// to the notification on that stream.
pub async fn fan_out(
    endpoint: &str,
    token: &str,
    admin: &str,
    streams: usize,
    connections: usize,
    rounds: usize,
) -> anyhow::Result<Spread> {
    let mut channels = Vec::with_capacity(connections);
    for _ in 0..connections {
        channels.push(
            tonic::transport::Endpoint::from_shared(endpoint.to_owned())?
                .connect()
                .await?,
        );
    }
    // Every stream open before the first round.
    let opened = Arc::new(Barrier::new(streams + 1));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Instant>();
    let mut tasks = Vec::with_capacity(streams);
    for n in 0..streams {
        let channel = channels[n % connections].clone();
        let request = with_token(
            SubscribeNotificationsRequest {
                receiver_ids: Some(admin_ids(admin)),
            },
            token,
        )?;
        let opened = Arc::clone(&opened);
        let tx = tx.clone();
        tasks.push(tokio::spawn(async move {
            let mut stream = NotificationServiceClient::new(channel)
                .subscribe(request)
                .await?
                .into_inner();
            opened.wait().await;
            for _ in 0..rounds {
                match stream.message().await? {
                    Some(_) => {
                        let _ = tx.send(Instant::now());
                    }
                    None => anyhow::bail!("a stream ended early"),
                }
            }
            Ok(())
        }));
    }
    drop(tx);
    opened.wait().await;
    let mut latencies = Vec::with_capacity(streams * rounds);
    for round in 0..rounds {
        create_key(&channels[0], token, admin, round).await?;
        let answered = Instant::now();
        for _ in 0..streams {
            let at = tokio::time::timeout(Duration::from_secs(30), rx.recv())
                .await
                .with_context(|| format!("round {round}: not every stream heard within 30 s"))?
                .context("every stream ended")?;
            latencies.push(at.saturating_duration_since(answered));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for task in tasks {
        task.await??;
    }
    ensure!(latencies.len() == streams * rounds);
    Ok(Spread::new(latencies))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let spread = Spread::new((1..=100).rev().map(Duration::from_millis).collect());
        assert_eq!(spread.percentile(50.0), Duration::from_millis(50));
        assert_eq!(spread.percentile(99.0), Duration::from_millis(99));
        assert_eq!(spread.max(), Duration::from_millis(100));
        assert_eq!(Spread::new(vec![]).percentile(99.0), Duration::ZERO);
    }
}

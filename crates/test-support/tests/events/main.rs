//! The outbox and both event buses against real parts: PostgreSQL, SQLite
//! and NATS JetStream. Every test has its own database and its own stream
//! and subject prefix, so the tests run in parallel.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use roster_core::db::Db;
use roster_core::events::{
    self, BusError, Event, EventBus, EventStream, EventsConfig, MemoryBus, OutboxRelay, outbox,
};
use roster_test_support::{TestBackend, TestNats, outbox_max_attempts};
use tokio::sync::{Notify, oneshot};
use tokio::task::JoinHandle;

/// How long a test waits for something that should happen at once.
const WAIT: Duration = Duration::from_secs(10);

/// A backend with the outbox table installed.
async fn backend(postgres: bool) -> TestBackend {
    let backend = if postgres {
        TestBackend::postgres().await
    } else {
        TestBackend::sqlite().await
    };
    outbox::install_schema(&backend.db).await.unwrap();
    backend
}

/// Writes `event` to the outbox in a transaction that is committed or
/// rolled back.
async fn insert(db: &Db, event: &Event, commit: bool) {
    match db {
        Db::Postgres(pool) => {
            let mut tx = pool.begin().await.unwrap();
            outbox::insert_pg(&mut tx, event).await.unwrap();
            if commit {
                tx.commit().await.unwrap();
            } else {
                tx.rollback().await.unwrap();
            }
        }
        Db::Sqlite(pool) => {
            let mut tx = pool.begin().await.unwrap();
            outbox::insert_sqlite(&mut tx, event).await.unwrap();
            if commit {
                tx.commit().await.unwrap();
            } else {
                tx.rollback().await.unwrap();
            }
        }
    }
}

/// The next event of `stream`, failing the test after [`WAIT`].
async fn next_event(stream: &mut EventStream) -> Event {
    tokio::time::timeout(WAIT, stream.next())
        .await
        .expect("no event within the timeout")
        .expect("event stream ended")
}

/// Polls `condition` until it holds, failing the test after [`WAIT`].
async fn eventually<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let poll = async {
        while !condition().await {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    if tokio::time::timeout(WAIT, poll).await.is_err() {
        panic!("timed out waiting until {what}");
    }
}

/// A relay running on its own task until stopped.
struct RunningRelay {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
    waker: Arc<Notify>,
}

impl RunningRelay {
    fn spawn(db: &Db, bus: Arc<dyn EventBus>, config: &EventsConfig) -> RunningRelay {
        let relay = OutboxRelay::new(db.clone(), bus, config);
        let waker = relay.waker();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(relay.run(async {
            let _ = stopped.await;
        }));
        RunningRelay { stop, task, waker }
    }

    fn wake(&self) {
        self.waker.notify_one();
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        tokio::time::timeout(WAIT, self.task)
            .await
            .expect("relay did not stop")
            .expect("relay panicked");
    }
}

mod delivery {
    //! Committed events reach subscribers; rolled-back ones never leave.

    use super::*;

    async fn committed_event_is_delivered(
        backend: TestBackend,
        bus: Arc<dyn EventBus>,
        config: &EventsConfig,
    ) {
        let mut subscription = bus.subscribe("user.>").await.unwrap();
        let relay = RunningRelay::spawn(&backend.db, bus.clone(), config);

        let event = events::new_event("user.create", vec![], None);
        insert(&backend.db, &event, true).await;
        relay.wake();

        assert_eq!(
            next_event(&mut subscription).await,
            event,
            "{}",
            backend.name
        );
        eventually("the outbox is empty", || async {
            outbox::pending(&backend.db).await.unwrap() == 0
        })
        .await;
        relay.stop().await;
    }

    #[tokio::test]
    async fn a_committed_event_reaches_a_jetstream_subscriber_from_postgres() {
        let nats = TestNats::new();
        let bus = Arc::new(nats.bus().await);
        committed_event_is_delivered(backend(true).await, bus, &nats.config).await;
        assert_eq!(nats.stream_messages().await, Some(1));
    }

    #[tokio::test]
    async fn a_committed_event_reaches_a_jetstream_subscriber_from_sqlite() {
        let nats = TestNats::new();
        let bus = Arc::new(nats.bus().await);
        committed_event_is_delivered(backend(false).await, bus, &nats.config).await;
        assert_eq!(nats.stream_messages().await, Some(1));
    }

    #[tokio::test]
    async fn a_committed_event_reaches_an_in_process_subscriber_from_postgres() {
        let config = EventsConfig::default();
        let bus = Arc::new(MemoryBus::new());
        committed_event_is_delivered(backend(true).await, bus, &config).await;
    }

    #[tokio::test]
    async fn a_committed_event_reaches_an_in_process_subscriber_from_sqlite() {
        let config = EventsConfig::default();
        let bus = Arc::new(MemoryBus::new());
        committed_event_is_delivered(backend(false).await, bus, &config).await;
    }

    /// The relay publishes in id order, so once an event committed after the
    /// rolled-back one has arrived, the rolled-back one will never come.
    async fn rolled_back_event_is_never_published(backend: TestBackend, nats: &TestNats) {
        let bus: Arc<dyn EventBus> = Arc::new(nats.bus().await);
        let mut subscription = bus.subscribe(">").await.unwrap();

        let rolled_back = events::new_event("user.create", vec![], None);
        insert(&backend.db, &rolled_back, false).await;
        let committed = events::new_event("user.update", vec![], None);
        insert(&backend.db, &committed, true).await;
        assert_eq!(outbox::pending(&backend.db).await.unwrap(), 1);

        let relay = RunningRelay::spawn(&backend.db, bus, &nats.config);
        relay.wake();
        let first = next_event(&mut subscription).await;
        assert_eq!(first.unique_id, committed.unique_id, "{}", backend.name);
        eventually("the outbox is empty", || async {
            outbox::pending(&backend.db).await.unwrap() == 0
        })
        .await;
        relay.stop().await;
        assert_eq!(nats.stream_messages().await, Some(1), "{}", backend.name);
    }

    #[tokio::test]
    async fn an_event_of_a_rolled_back_transaction_is_never_published_from_postgres() {
        let nats = TestNats::new();
        rolled_back_event_is_never_published(backend(true).await, &nats).await;
    }

    #[tokio::test]
    async fn an_event_of_a_rolled_back_transaction_is_never_published_from_sqlite() {
        let nats = TestNats::new();
        rolled_back_event_is_never_published(backend(false).await, &nats).await;
    }
}

mod outage {
    //! A failing publish delays an event but never loses it.
    //!
    //! Delivery is checked in the stream rather than with a core
    //! subscription: a core subscriber on the subject would itself answer
    //! the publish (so JetStream's "no stream" reply never comes) and would
    //! see the failed attempts, which is what fan-out subscribers accept.

    use super::*;

    async fn a_missing_stream_delays_but_never_loses(backend: TestBackend) {
        let mut nats = TestNats::new();
        nats.config.create_stream = false;
        let bus = nats.bus().await;
        assert_eq!(nats.stream_messages().await, None);

        let event = events::new_event("user.create", vec![], None);
        insert(&backend.db, &event, true).await;
        let relay = RunningRelay::spawn(&backend.db, Arc::new(bus.clone()), &nats.config);
        relay.wake();

        eventually("the relay has tried and failed", || async {
            outbox_max_attempts(&backend.db).await >= 1
        })
        .await;
        assert_eq!(
            outbox::pending(&backend.db).await.unwrap(),
            1,
            "{}",
            backend.name
        );
        assert_eq!(nats.stream_messages().await, None, "{}", backend.name);

        bus.ensure_stream().await.unwrap();
        eventually("the outbox is empty", || async {
            outbox::pending(&backend.db).await.unwrap() == 0
        })
        .await;
        relay.stop().await;

        assert_eq!(nats.stream_messages().await, Some(1), "{}", backend.name);
        let stream = bus
            .jetstream()
            .get_stream(&nats.config.stream)
            .await
            .unwrap();
        let stored = stream.get_raw_message(1).await.unwrap();
        let stored = <Event as prost::Message>::decode(stored.payload).unwrap();
        assert_eq!(stored, event, "{}", backend.name);
    }

    #[tokio::test]
    async fn a_failing_publish_delays_but_never_loses_an_event_from_postgres() {
        a_missing_stream_delays_but_never_loses(backend(true).await).await;
    }

    #[tokio::test]
    async fn a_failing_publish_delays_but_never_loses_an_event_from_sqlite() {
        a_missing_stream_delays_but_never_loses(backend(false).await).await;
    }
}

mod duplicates {
    //! JetStream drops what the outbox publishes twice.

    use super::*;

    #[tokio::test]
    async fn publishing_the_same_event_twice_stores_it_once() {
        let nats = TestNats::new();
        let bus = nats.bus().await;
        let event = events::new_event("user.create", vec![], None);
        bus.publish(&event).await.unwrap();
        bus.publish(&event).await.unwrap();
        assert_eq!(nats.stream_messages().await, Some(1));
    }

    #[tokio::test]
    async fn distinct_events_are_all_stored() {
        let nats = TestNats::new();
        let bus = nats.bus().await;
        bus.publish(&events::new_event("user.create", vec![], None))
            .await
            .unwrap();
        bus.publish(&events::new_event("user.create", vec![], None))
            .await
            .unwrap();
        assert_eq!(nats.stream_messages().await, Some(2));
    }
}

mod replicas {
    //! Several relays on one PostgreSQL outbox.

    use super::*;

    /// Records every event the inner bus acknowledged, so a row published
    /// by two relays shows up even though JetStream would hide it.
    struct CountingBus {
        inner: Arc<dyn EventBus>,
        published: Arc<Mutex<Vec<String>>>,
    }

    #[async_trait::async_trait]
    impl EventBus for CountingBus {
        async fn publish(&self, event: &Event) -> Result<(), BusError> {
            self.inner.publish(event).await?;
            self.published.lock().unwrap().push(event.unique_id.clone());
            Ok(())
        }

        async fn subscribe(&self, pattern: &str) -> Result<EventStream, BusError> {
            self.inner.subscribe(pattern).await
        }

        async fn consume(
            &self,
            durable: &str,
            patterns: &[&str],
        ) -> Result<roster_core::events::DeliveryStream, BusError> {
            self.inner.consume(durable, patterns).await
        }
    }

    #[tokio::test]
    async fn two_relays_on_one_postgres_database_publish_every_event_exactly_once() {
        const EVENTS: usize = 50;
        let backend = backend(true).await;
        let mut nats = TestNats::new();
        nats.config.relay_batch = 5;

        let mut inserted = Vec::with_capacity(EVENTS);
        for i in 0..EVENTS {
            let event = events::new_event(&format!("user.e{i}"), vec![], None);
            insert(&backend.db, &event, true).await;
            inserted.push(event.unique_id);
        }

        let published = Arc::new(Mutex::new(Vec::new()));
        let mut relays = Vec::new();
        for _ in 0..2 {
            let bus = CountingBus {
                inner: Arc::new(nats.bus().await),
                published: published.clone(),
            };
            // Each relay has its own pool, as replicas would.
            let db = Db::open_postgres(backend.postgres_url().unwrap(), 3)
                .await
                .unwrap();
            relays.push(RunningRelay::spawn(&db, Arc::new(bus), &nats.config));
        }
        for relay in &relays {
            relay.wake();
        }

        eventually("the outbox is empty", || async {
            outbox::pending(&backend.db).await.unwrap() == 0
        })
        .await;
        for relay in relays {
            relay.stop().await;
        }

        let mut published = published.lock().unwrap().clone();
        assert_eq!(published.len(), EVENTS, "some event was published twice");
        published.sort();
        inserted.sort();
        assert_eq!(published, inserted);
        assert_eq!(nats.stream_messages().await, Some(EVENTS as u64));
    }
}

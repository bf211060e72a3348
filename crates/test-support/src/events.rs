//! Reading the events a test caused.

use std::time::Duration;

use futures::StreamExt;
use prost::Message as _;
use roster_core::events::EventStream;
use roster_proto::v1::Event;

/// Decodes the data of an event.
#[track_caller]
pub fn event_data<M: prost::Name + Default>(event: &Event) -> M {
    event
        .data
        .as_ref()
        .expect("event data")
        .to_msg()
        .unwrap_or_else(|e| panic!("{} data: {e}", event.name))
}

/// Whether `needle` occurs anywhere in the encoded event (to show that a
/// secret does not).
pub fn event_contains(event: &Event, needle: &str) -> bool {
    let bytes = event.encode_to_vec();
    let needle = needle.as_bytes();
    !needle.is_empty() && bytes.windows(needle.len()).any(|w| w == needle)
}

/// The next event named `name` for which `matches` holds, skipping others;
/// `None` after `within`.
pub async fn next_event_where(
    stream: &mut EventStream,
    name: &str,
    within: Duration,
    mut matches: impl FnMut(&Event) -> bool,
) -> Option<Event> {
    tokio::time::timeout(within, async {
        while let Some(event) = stream.next().await {
            if event.name == name && matches(&event) {
                return Some(event);
            }
        }
        None
    })
    .await
    .ok()
    .flatten()
}

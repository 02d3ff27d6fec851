//! What happens, as it happens: `GET /v1/events` streams one JSON object a
//! line (chunked), `netd events` prints them. A broadcast channel carries
//! them: sending never waits, so a consumer that is slow or gone never
//! slows the daemon; one that falls more than `CAPACITY` events behind
//! skips them and is told how many (`events.skipped`).

use std::{
    convert::Infallible,
    fmt::Write as _,
    sync::Arc,
    time::{SystemTime, UNIX_EPOCH},
};

use axum::{
    Extension,
    body::Body,
    extract::{Query, State},
    http::header,
    response::{IntoResponse, Response},
};

use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, watch};

use super::{error::ServiceError, metrics::Telemetry};

/// Events a consumer may fall behind before it skips.
pub const CAPACITY: usize = 1024;

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// UTC, RFC 3339 with milliseconds: `2026-12-01T21:00:00.123Z`.
    pub time: String,
    /// `daemon.started`, `network.added`, `network.removed`, `guest.added`,
    /// `guest.removed`, `port.published`, `port.withdrawn`,
    /// `partition.set`, `partition.healed`, `partition.expired`,
    /// `drift.found`, `drift.repaired`, and for a consumer that fell
    /// behind, `events.skipped`.
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guest: Option<String>,
    /// What else there is to say: the port spec, the partition command,
    /// the drift found.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl Event {
    pub fn new(kind: &str) -> Event {
        Event {
            time: rfc3339_now(),
            kind: kind.to_owned(),
            network: None,
            guest: None,
            detail: None,
        }
    }

    pub fn network(mut self, network: &str) -> Event {
        self.network = Some(network.to_owned());
        self
    }

    pub fn guest(mut self, guest: &str) -> Event {
        self.guest = Some(guest.to_owned());
        self
    }

    pub fn detail(mut self, detail: impl Into<String>) -> Event {
        self.detail = Some(detail.into());
        self
    }

    /// Whether a consumer that asked for `network` (None: all) wants it.
    /// Events about no network in particular (the daemon, drift of the
    /// gateway, skipped events) go to everyone.
    pub fn wanted_by(&self, network: Option<&str>) -> bool {
        match (network, &self.network) {
            (None, _) | (_, None) => true,
            (Some(wanted), Some(mine)) => wanted == mine,
        }
    }

    /// One line for people: `TIME KIND [network/guest] [detail]`.
    pub fn human(&self) -> String {
        let mut line = format!("{} {:<18}", self.time, self.kind);
        match (&self.network, &self.guest) {
            (Some(n), Some(g)) => write!(line, " {n}/{g}").unwrap(),
            (Some(n), None) => write!(line, " {n}").unwrap(),
            (None, Some(g)) => write!(line, " {g}").unwrap(),
            (None, None) => {}
        }
        if let Some(detail) = &self.detail {
            write!(line, " {detail}").unwrap();
        }
        line.trim_end().to_owned()
    }
}

/// The daemon's end: cheap to clone, never blocks.
#[derive(Clone)]
pub struct Bus {
    sender: broadcast::Sender<Event>,
    /// True once the daemon stops: every stream ends, so that open
    /// `netd events` connections do not hold the shutdown up.
    closed: watch::Sender<bool>,
}

impl Default for Bus {
    fn default() -> Self {
        Bus {
            sender: broadcast::channel(CAPACITY).0,
            closed: watch::channel(false).0,
        }
    }
}

/// One consumer's end.
pub struct Subscription {
    receiver: broadcast::Receiver<Event>,
    closed: watch::Receiver<bool>,
}

impl Bus {
    /// Sends to every consumer there is (none: dropped).
    pub fn emit(&self, event: Event) {
        let _ = self.sender.send(event);
    }

    pub fn subscribe(&self) -> Subscription {
        Subscription {
            receiver: self.sender.subscribe(),
            closed: self.closed.subscribe(),
        }
    }

    /// Ends every stream (the daemon is stopping).
    pub fn close(&self) {
        self.closed.send_replace(true);
    }
}

/// The next line for a consumer of `network` (None: all), waiting for it;
/// None when the daemon is going away.
pub async fn next_line(subscription: &mut Subscription, network: Option<&str>) -> Option<String> {
    let Subscription { receiver, closed } = subscription;
    loop {
        if *closed.borrow() {
            return None;
        }
        let received = tokio::select! {
            received = receiver.recv() => received,
            _ = closed.changed() => return None,
        };
        let event = match received {
            Ok(event) if event.wanted_by(network) => event,
            Ok(_) => continue,
            Err(broadcast::error::RecvError::Lagged(skipped)) => Event::new("events.skipped")
                .detail(format!(
                    "this consumer fell {skipped} events behind: they were skipped"
                )),
            Err(broadcast::error::RecvError::Closed) => return None,
        };
        let mut line = serde_json::to_string(&event).expect("serializable");
        line.push('\n');
        return Some(line);
    }
}

fn rfc3339_now() -> String {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    rfc3339(since.as_secs(), since.subsec_millis())
}

/// Unix seconds as an RFC 3339 UTC time (civil-from-days, proleptic
/// Gregorian).
pub fn rfc3339(secs: u64, millis: u32) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// `GET /v1/events[?network=NAME]`'s query.
#[derive(Deserialize, Debug, Default)]
pub struct EventsQuery {
    #[serde(default)]
    pub network: Option<String>,
}

/// `GET /v1/events`: a chunked body of JSON lines, for as long as the
/// client reads and the daemon runs.
pub async fn stream(
    State(svc): State<super::service::Shared>,
    Extension(telemetry): Extension<Arc<Telemetry>>,
    Query(query): Query<EventsQuery>,
) -> Result<Response, ServiceError> {
    if let Some(network) = &query.network {
        svc.lock().await.network(network)?;
    }
    let subscription = telemetry.events.subscribe();
    let lines = futures::stream::unfold(
        (subscription, query.network),
        |(mut subscription, network)| async move {
            let line = next_line(&mut subscription, network.as_deref()).await?;
            Some((Ok::<_, Infallible>(line), (subscription, network)))
        },
    );
    Ok((
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(lines),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339_utc() {
        assert_eq!(rfc3339(0, 0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951_782_400, 5), "2000-02-29T00:00:00.005Z");
        assert_eq!(rfc3339(1_796_158_800, 999), "2026-12-01T21:00:00.999Z");
    }

    #[test]
    fn a_network_filter_keeps_its_network_and_global_events() {
        let guest = Event::new("guest.added").network("web").guest("a");
        assert!(guest.wanted_by(None));
        assert!(guest.wanted_by(Some("web")));
        assert!(!guest.wanted_by(Some("db")));
        assert!(Event::new("daemon.started").wanted_by(Some("db")));
    }

    #[test]
    fn events_print_as_one_line_each() {
        let mut e = Event::new("port.published")
            .network("web")
            .guest("a")
            .detail("8080:80/tcp");
        e.time = "T".into();
        assert_eq!(e.human(), "T port.published     web/a 8080:80/tcp");
        assert_eq!(
            serde_json::to_value(&e).unwrap(),
            serde_json::json!({"time": "T", "kind": "port.published", "network": "web", "guest": "a", "detail": "8080:80/tcp"})
        );
    }

    #[tokio::test]
    async fn a_consumer_that_falls_behind_skips_with_a_notice_and_never_blocks_the_sender() {
        let bus = Bus::default();
        let mut slow = bus.subscribe();
        let mut gone = bus.subscribe();
        for i in 0..CAPACITY + 10 {
            bus.emit(Event::new("guest.added").guest(&format!("g{i}")));
        }
        let notice = next_line(&mut slow, None).await.unwrap();
        assert!(notice.contains("events.skipped"), "{notice}");
        assert!(notice.contains("fell 10 events behind"), "{notice}");
        let next: Event = serde_json::from_str(&next_line(&mut slow, None).await.unwrap()).unwrap();
        assert_eq!(next.guest.as_deref(), Some("g10"));
        bus.close();
        assert_eq!(
            next_line(&mut gone, None).await,
            None,
            "closing ends every stream"
        );
    }
}

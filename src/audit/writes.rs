//! The audit's writes, off the watch loop: a queue that keeps a few writes in flight, one
//! at a time per target and in the order targets were first owed, coalesces repeated
//! writes of one target (what is written is read from the book when the write goes out, so
//! the latest verdict wins), backs off a target on 429 and 5xx (and everything on 429), and
//! drops what a terminating namespace refuses.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::stream::{FuturesUnordered, StreamExt};
use tokio::time::Instant;

use super::book::Uid;

/// Writes in flight at once: enough to keep up with a first start, few enough that the
/// API server's priority and fairness never has to push back.
pub const IN_FLIGHT: usize = 8;
const FIRST_RETRY: Duration = Duration::from_millis(200);
const LONGEST_RETRY: Duration = Duration::from_secs(30);

/// What a write is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    /// An object's status condition or Event.
    Object(Arc<str>, Uid),
    /// A namespace's Report (`""`: the ClusterReport).
    Report(Arc<str>),
    /// An exception's status.
    ExceptionStatus(Arc<str>, Arc<str>),
    /// The Event that says an exception expired.
    ExceptionExpired(Arc<str>, Arc<str>),
}

impl Target {
    pub fn namespace(&self) -> &str {
        match self {
            Target::Object(ns, _)
            | Target::Report(ns)
            | Target::ExceptionStatus(ns, _)
            | Target::ExceptionExpired(ns, _) => ns,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Target::Object(..) => "object",
            Target::Report(_) => "report",
            Target::ExceptionStatus(..) => "exception-status",
            Target::ExceptionExpired(..) => "exception-event",
        }
    }
}

/// How a write ended.
#[derive(Debug)]
pub enum Outcome<T> {
    /// Written; what was written, for the book.
    Done(T),
    /// Nothing needed writing after all.
    Skipped,
    /// Try again later (429, 5xx, no connection): `throttle` slows every write down.
    Retry {
        throttle: Option<Duration>,
        why: String,
    },
    /// The namespace is being deleted: nothing more can be created in it.
    Terminating,
    /// The target is gone (its object, namespace or CRD), or the write is refused for good.
    Dropped(String),
}

/// Sorts an API error into what to do next.
pub fn outcome_of<T>(error: &kube::Error) -> Outcome<T> {
    match error {
        kube::Error::Api(status) => {
            let terminating = status.code == 403
                && status
                    .details
                    .as_ref()
                    .is_some_and(|d| d.causes.iter().any(|c| c.reason == "NamespaceTerminating"));
            if terminating {
                return Outcome::Terminating;
            }
            match status.code {
                429 => Outcome::Retry {
                    throttle: Some(Duration::from_secs(
                        status
                            .details
                            .as_ref()
                            .map_or(1, |d| u64::from(d.retry_after_seconds.max(1))),
                    )),
                    why: status.message.clone(),
                },
                409 | 500.. => Outcome::Retry {
                    throttle: None,
                    why: format!("{} ({})", status.message, status.code),
                },
                _ => Outcome::Dropped(format!("{} ({})", status.message, status.code)),
            }
        }
        other => Outcome::Retry {
            throttle: None,
            why: other.to_string(),
        },
    }
}

/// The queue. `T` is what a finished write reports back.
pub struct Writes<T> {
    order: VecDeque<Target>,
    queued: HashSet<Target>,
    /// Targets that failed: how often, and not before when.
    retries: HashMap<Target, (u32, Instant)>,
    in_flight: HashSet<Target>,
    running: FuturesUnordered<BoxFuture<'static, (Target, Outcome<T>)>>,
    throttled_until: Option<Instant>,
}

impl<T> Default for Writes<T> {
    fn default() -> Self {
        Writes {
            order: VecDeque::new(),
            queued: HashSet::new(),
            retries: HashMap::new(),
            in_flight: HashSet::new(),
            running: FuturesUnordered::new(),
            throttled_until: None,
        }
    }
}

impl<T> std::fmt::Debug for Writes<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writes")
            .field("queued", &self.order.len())
            .field("in_flight", &self.in_flight.len())
            .finish_non_exhaustive()
    }
}

impl<T: Send + 'static> Writes<T> {
    /// `target` is owed a write (again): queued once, whatever how often it is owed.
    pub fn owe(&mut self, target: Target) {
        if self.queued.insert(target.clone()) {
            self.order.push_back(target);
        }
    }

    /// Forgets every write to `namespace` (being deleted).
    pub fn drop_namespace(&mut self, namespace: &str) {
        self.order.retain(|t| t.namespace() != namespace);
        self.queued.retain(|t| t.namespace() != namespace);
        self.retries.retain(|t, _| t.namespace() != namespace);
    }

    /// How many are waiting, and how many are in flight.
    pub fn len(&self) -> (usize, usize) {
        (self.order.len(), self.in_flight.len())
    }

    pub fn is_idle(&self) -> bool {
        self.order.is_empty() && self.in_flight.is_empty()
    }

    /// Starts what may start: `make` builds the write of a target from the current state,
    /// or says there is nothing to write (`None`).
    pub fn dispatch(
        &mut self,
        mut make: impl FnMut(&Target) -> Option<BoxFuture<'static, Outcome<T>>>,
    ) {
        let now = Instant::now();
        if self.throttled_until.is_some_and(|until| until > now) {
            return;
        }
        let mut waiting = VecDeque::new();
        while self.running.len() < IN_FLIGHT {
            let Some(target) = self.order.pop_front() else {
                break;
            };
            let later = self.retries.get(&target).is_some_and(|(_, at)| *at > now);
            if later || self.in_flight.contains(&target) {
                waiting.push_back(target);
                continue;
            }
            self.queued.remove(&target);
            let Some(write) = make(&target) else {
                self.retries.remove(&target);
                continue;
            };
            self.in_flight.insert(target.clone());
            self.running
                .push(Box::pin(async move { (target, write.await) }));
        }
        // What had to wait keeps its place ahead of what came after it.
        while let Some(target) = waiting.pop_back() {
            self.order.push_front(target);
        }
    }

    /// The next write to finish (pending forever while none runs). A target to retry is
    /// queued again here; its outcome is passed on for the book and the log.
    pub async fn finished(&mut self) -> (Target, Outcome<T>) {
        let Some((target, outcome)) = self.running.next().await else {
            return std::future::pending().await;
        };
        self.in_flight.remove(&target);
        match &outcome {
            Outcome::Retry { throttle, .. } => {
                let attempts = self.retries.get(&target).map_or(0, |(n, _)| *n) + 1;
                let wait = FIRST_RETRY
                    .saturating_mul(1 << attempts.min(8))
                    .min(LONGEST_RETRY);
                self.retries
                    .insert(target.clone(), (attempts, Instant::now() + wait));
                if let Some(throttle) = throttle {
                    self.throttled_until = Some(Instant::now() + *throttle);
                }
                self.owe(target.clone());
            }
            _ => {
                self.retries.remove(&target);
            }
        }
        (target, outcome)
    }

    /// When a write that had to wait may go: the loop wakes up then to start it.
    pub fn wake_at(&self) -> Option<Instant> {
        let retry = self
            .order
            .iter()
            .filter_map(|t| self.retries.get(t).map(|(_, at)| *at))
            .min();
        match (retry, self.throttled_until) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(ns: &str) -> Target {
        Target::Report(ns.into())
    }

    #[tokio::test]
    async fn a_target_owed_twice_is_written_once_and_a_few_at_a_time() {
        let mut writes: Writes<&'static str> = Writes::default();
        for ns in ["a", "b", "a", "c"] {
            writes.owe(report(ns));
        }
        assert_eq!(writes.len(), (3, 0));
        let mut started = Vec::new();
        writes.dispatch(|t| {
            started.push(t.clone());
            Some(Box::pin(async { Outcome::Done("ok") }))
        });
        assert_eq!(started, [report("a"), report("b"), report("c")]);
        for _ in 0..3 {
            let (_, outcome) = writes.finished().await;
            assert!(matches!(outcome, Outcome::Done("ok")));
        }
        assert!(writes.is_idle());

        for i in 0..20 {
            writes.owe(report(&i.to_string()));
        }
        let mut count = 0;
        writes.dispatch(|_| {
            count += 1;
            Some(Box::pin(std::future::pending()))
        });
        assert_eq!(count, IN_FLIGHT);
    }

    #[tokio::test]
    async fn a_target_in_flight_waits_and_a_failed_one_backs_off() {
        let mut writes: Writes<()> = Writes::default();
        writes.owe(report("a"));
        writes.dispatch(|_| {
            Some(Box::pin(async {
                Outcome::Retry {
                    throttle: None,
                    why: "etcd leader changed".into(),
                }
            }))
        });
        // Owed again while in flight: not started twice at once.
        writes.owe(report("a"));
        let mut started = 0;
        writes.dispatch(|_| {
            started += 1;
            None
        });
        assert_eq!(started, 0);
        let (_, outcome) = writes.finished().await;
        assert!(matches!(outcome, Outcome::Retry { .. }));
        // Queued again, but not before its backoff.
        writes.dispatch(|_| {
            started += 1;
            None
        });
        assert_eq!(started, 0);
        assert!(writes.wake_at().is_some());
        tokio::time::sleep(FIRST_RETRY * 2 + Duration::from_millis(50)).await;
        writes.dispatch(|_| {
            started += 1;
            None
        });
        assert_eq!(started, 1);
    }

    #[test]
    fn errors_are_sorted_into_what_to_do() {
        let status = |code: u16, reason: &str| {
            let mut body = serde_json::json!({"status": "Failure", "message": "m", "reason": "r", "code": code});
            if !reason.is_empty() {
                body["details"] = serde_json::json!({"causes": [{"reason": reason}]});
            }
            let status: kube::core::Status = serde_json::from_value(body).unwrap();
            kube::Error::Api(status.boxed())
        };
        assert!(matches!(
            outcome_of::<()>(&status(403, "NamespaceTerminating")),
            Outcome::Terminating
        ));
        assert!(matches!(
            outcome_of::<()>(&status(403, "")),
            Outcome::Dropped(_)
        ));
        assert!(matches!(
            outcome_of::<()>(&status(429, "")),
            Outcome::Retry {
                throttle: Some(_),
                ..
            }
        ));
        assert!(matches!(
            outcome_of::<()>(&status(503, "")),
            Outcome::Retry { throttle: None, .. }
        ));
        assert!(matches!(
            outcome_of::<()>(&status(404, "")),
            Outcome::Dropped(_)
        ));
    }
}

//! Fault injection: per route (and optionally per mailbox), at a chosen rate — 429 with or
//! without `Retry-After`, 503, 504, slow answers and dropped connections.

use std::time::Duration;

use rand::Rng;

/// What the server does instead of answering normally.
#[derive(Debug, Clone, PartialEq)]
pub enum GraphFault {
    /// 429 `TooManyRequests`, with `Retry-After` seconds when given.
    Throttle { retry_after: Option<u64> },
    /// 503 `ServiceUnavailable`; the connection it came on keeps failing (a new one works).
    Unavailable { retry_after: Option<u64> },
    /// 504 `GatewayTimeout`.
    GatewayTimeout,
    /// Answer normally, but only after this long.
    Slow(Duration),
    /// Start the answer and cut the connection.
    Drop,
    /// The mailbox's owner edits the event (this patch) just before the request is handled:
    /// an edit made while a sync run was under way.
    UserEditsFirst(serde_json::Value),
}

/// Which requests a fault applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultRoute {
    Any,
    Delta,
    /// GET of one event or a list of events.
    EventReads,
    /// POST, PATCH and DELETE of events.
    EventWrites,
    Instances,
    Subscriptions,
    Batch,
    Profile,
}

/// How often.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FaultRate {
    Always,
    /// The next `n` matching requests.
    Next(u32),
    /// Every n-th matching request (the n-th, 2n-th, ...).
    EveryNth(u32),
    /// Each matching request with this probability (0 to 1).
    Probability(f64),
}

#[derive(Debug, Clone, PartialEq)]
pub struct FaultRule {
    pub route: FaultRoute,
    /// Only requests for this mailbox (object id); None for any.
    pub mailbox: Option<String>,
    pub fault: GraphFault,
    pub rate: FaultRate,
}

impl FaultRule {
    pub fn new(route: FaultRoute, fault: GraphFault, rate: FaultRate) -> Self {
        Self {
            route,
            mailbox: None,
            fault,
            rate,
        }
    }

    pub fn for_mailbox(mut self, oid: &str) -> Self {
        self.mailbox = Some(oid.to_ascii_lowercase());
        self
    }
}

#[derive(Debug, Clone)]
pub(crate) struct ActiveFault {
    pub rule: FaultRule,
    pub matched: u64,
    pub fired: u64,
}

impl ActiveFault {
    fn applies(&self, route: FaultRoute, mailbox: Option<&str>) -> bool {
        let route_ok = self.rule.route == FaultRoute::Any || self.rule.route == route;
        let mailbox_ok = match (&self.rule.mailbox, mailbox) {
            (None, _) => true,
            (Some(want), Some(got)) => want.eq_ignore_ascii_case(got),
            (Some(_), None) => false,
        };
        route_ok && mailbox_ok
    }

    /// Counts a matching request and says whether the fault fires for it.
    fn fire(&mut self) -> bool {
        self.matched += 1;
        let fires = match self.rule.rate {
            FaultRate::Always => true,
            FaultRate::Next(n) => self.fired < u64::from(n),
            FaultRate::EveryNth(n) => n > 0 && self.matched.is_multiple_of(u64::from(n)),
            FaultRate::Probability(p) => rand::thread_rng().gen_bool(p.clamp(0.0, 1.0)),
        };
        if fires {
            self.fired += 1;
        }
        fires
    }

    fn spent(&self) -> bool {
        matches!(self.rule.rate, FaultRate::Next(n) if self.fired >= u64::from(n))
    }
}

/// The first rule that fires for the request, if any; spent rules are dropped.
pub(crate) fn pick(
    faults: &mut Vec<ActiveFault>,
    route: FaultRoute,
    mailbox: Option<&str>,
) -> Option<GraphFault> {
    let mut chosen = None;
    for fault in faults.iter_mut() {
        if fault.applies(route, mailbox) && fault.fire() {
            chosen = Some(fault.rule.fault.clone());
            break;
        }
    }
    faults.retain(|f| !f.spent());
    chosen
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_n_then_spent() {
        let rule = FaultRule::new(
            FaultRoute::Delta,
            GraphFault::Throttle {
                retry_after: Some(1),
            },
            FaultRate::Next(2),
        );
        let mut faults = vec![ActiveFault {
            rule,
            matched: 0,
            fired: 0,
        }];
        assert!(pick(&mut faults, FaultRoute::EventReads, None).is_none());
        assert!(pick(&mut faults, FaultRoute::Delta, None).is_some());
        assert!(pick(&mut faults, FaultRoute::Delta, None).is_some());
        assert!(pick(&mut faults, FaultRoute::Delta, None).is_none());
        assert!(faults.is_empty());
    }

    #[test]
    fn every_nth_and_mailbox_filter() {
        let rule = FaultRule::new(
            FaultRoute::Any,
            GraphFault::GatewayTimeout,
            FaultRate::EveryNth(3),
        )
        .for_mailbox("ABC");
        let mut faults = vec![ActiveFault {
            rule,
            matched: 0,
            fired: 0,
        }];
        let hits: Vec<bool> = (0..6)
            .map(|_| pick(&mut faults, FaultRoute::Batch, Some("abc")).is_some())
            .collect();
        assert_eq!(hits, [false, false, true, false, false, true]);
        assert!(pick(&mut faults, FaultRoute::Batch, Some("other")).is_none());
    }
}

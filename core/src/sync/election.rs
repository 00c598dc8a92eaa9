//! Who of a primary/backup pair is active (`[sync] gateway`,
//! `dead_after`): the appliance that answers ARP and NDP for the floating
//! gateway the NAT reals route through, announces its VIPs as primary,
//! and that the other hands its flows to. Decided by each appliance from
//! the peer's sync stream alone (every message's [`flags`] say where its
//! sender stands), with no third party, in the manner of keepalived's
//! VRRP with a preferred master:
//!
//! - The peer is alive while a valid message from it arrived within
//!   `dead_after`.
//! - A primary is active unless the peer is alive and active. Starting,
//!   it waits `dead_after` for the peer's word first: a backup that took
//!   over while the primary was away keeps the gateway until it has
//!   handed its flows over.
//! - A backup is standby while the primary is alive; it becomes active
//!   when it has heard nothing for `dead_after` (a takeover).
//! - An active backup that hears the primary alive and asking for the
//!   gateway back ([`flags::TAKEBACK`]) first sends it every flow it
//!   holds (a bulk pass, which the primary needs before any of their
//!   packets can reach it), then steps down; the primary takes over when
//!   it hears the backup standby. So the primary takes nothing over while
//!   the backup has flows the primary does not hold; between the step
//!   down and the primary's gratuitous ARP the backup, standby, still
//!   forwards what reaches it, with the same flows.
//! - Both active (a partition healed): the backup steps down at once; the
//!   flows it made meanwhile may break (the primary never heard of them).
//!
//! This module is the decision only, fed with times and flags; the sync
//! thread (`control::sync`) feeds it and acts on what it says.

use std::time::{Duration, Instant};

use lb_config::SyncRole;

pub use crate::wire::sync::flags;

/// A change of this appliance's state, for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Became active: nothing heard from the peer for `dead_after`.
    TookOver,
    /// Became active: the peer (the backup) is alive and standby.
    PeerStandby,
    /// Stepped down: the flows were handed over to the primary, which
    /// asked for the gateway back.
    HandedBack,
    /// Stepped down: the primary is active too (a partition healed).
    PrimaryActive,
}

impl Change {
    /// Whether this appliance is active after the change.
    pub fn active(self) -> bool {
        matches!(self, Change::TookOver | Change::PeerStandby)
    }

    /// Why, in words (the log line).
    pub fn reason(self) -> &'static str {
        match self {
            Change::TookOver => "nothing heard from the peer for dead_after",
            Change::PeerStandby => "the backup is alive and standby",
            Change::HandedBack => {
                "every flow was handed to the primary, which asked for the gateway back"
            }
            Change::PrimaryActive => "the primary is active too",
        }
    }
}

/// One appliance's view of the election.
#[derive(Debug, Clone)]
pub struct Election {
    role: SyncRole,
    dead_after: Duration,
    started: Instant,
    active: bool,
    /// The last valid message from the peer: when, and its flags.
    heard: Option<(Instant, u16)>,
}

impl Election {
    /// Standby, at `now`.
    pub fn new(role: SyncRole, dead_after: Duration, now: Instant) -> Election {
        Election {
            role,
            dead_after,
            started: now,
            active: false,
            heard: None,
        }
    }

    pub fn is_active(&self) -> bool {
        self.active
    }

    pub fn role(&self) -> SyncRole {
        self.role
    }

    /// Whether a valid message from the peer arrived within `dead_after`.
    pub fn peer_alive(&self, now: Instant) -> bool {
        self.heard
            .is_some_and(|(t, _)| now.saturating_duration_since(t) < self.dead_after)
    }

    /// The flags of the peer's last message, while it is alive.
    fn peer_flags(&self, now: Instant) -> Option<u16> {
        self.heard.filter(|_| self.peer_alive(now)).map(|(_, f)| f)
    }

    /// A valid message from the peer arrived with `flags`. True when the
    /// peer was not alive before it (it came back, or it is new): it holds
    /// none of our flows, and an active appliance should start a bulk pass.
    pub fn heard(&mut self, now: Instant, flags: u16) -> bool {
        let came_back = !self.peer_alive(now);
        self.heard = Some((now, flags));
        came_back
    }

    /// Whether an active backup owes the primary its flows before it steps
    /// down: the primary is alive, standby and asks for the gateway back.
    pub fn handover_wanted(&self, now: Instant) -> bool {
        self.active
            && self.role == SyncRole::Backup
            && self
                .peer_flags(now)
                .is_some_and(|f| f & flags::TAKEBACK != 0 && f & flags::ACTIVE == 0)
    }

    /// What this appliance's messages say of it.
    pub fn flags(&self, now: Instant) -> u16 {
        let mut f = 0;
        if self.role == SyncRole::Primary {
            f |= flags::PRIMARY;
            let backup_active = self.peer_flags(now).is_some_and(|f| f & flags::ACTIVE != 0);
            if !self.active && backup_active {
                f |= flags::TAKEBACK;
            }
        }
        if self.active {
            f |= flags::ACTIVE;
        }
        f
    }

    /// Decides again at `now`; `handed_over`: an active backup has sent
    /// every flow it holds since [`Self::handover_wanted`] began. Returns
    /// the change, if any.
    pub fn tick(&mut self, now: Instant, handed_over: bool) -> Option<Change> {
        let peer = self.peer_flags(now);
        let peer_active = peer.is_some_and(|f| f & flags::ACTIVE != 0);
        // Silent since we started or since its last word.
        let since = self
            .heard
            .map_or(self.started, |(t, _)| t.max(self.started));
        let silent = peer.is_none() && now.saturating_duration_since(since) >= self.dead_after;
        let change = match (self.role, self.active) {
            (SyncRole::Primary, false) if silent => Some(Change::TookOver),
            (SyncRole::Primary, false) if peer.is_some() && !peer_active => {
                Some(Change::PeerStandby)
            }
            (SyncRole::Backup, false) if silent => Some(Change::TookOver),
            (SyncRole::Backup, true) if peer_active => Some(Change::PrimaryActive),
            (SyncRole::Backup, true) if handed_over && self.handover_wanted(now) => {
                Some(Change::HandedBack)
            }
            _ => None,
        };
        if let Some(c) = change {
            self.active = c.active();
        }
        change
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEAD: Duration = Duration::from_millis(600);

    fn ms(t0: Instant, n: u64) -> Instant {
        t0 + Duration::from_millis(n)
    }

    #[test]
    fn a_primary_alone_waits_dead_after_then_takes_over() {
        let t0 = Instant::now();
        let mut p = Election::new(SyncRole::Primary, DEAD, t0);
        assert_eq!(p.tick(ms(t0, 599), false), None);
        assert!(!p.is_active());
        assert_eq!(p.tick(ms(t0, 600), false), Some(Change::TookOver));
        assert!(p.is_active());
        assert_eq!(p.flags(ms(t0, 600)), flags::PRIMARY | flags::ACTIVE);
    }

    #[test]
    fn a_primary_hearing_a_standby_backup_is_active_at_once() {
        let t0 = Instant::now();
        let mut p = Election::new(SyncRole::Primary, DEAD, t0);
        assert!(p.heard(ms(t0, 10), 0), "new peer");
        assert_eq!(p.tick(ms(t0, 10), false), Some(Change::PeerStandby));
        assert!(!p.heard(ms(t0, 210), 0), "not new any more");
        assert_eq!(p.tick(ms(t0, 210), false), None);
    }

    #[test]
    fn a_backup_takes_over_after_dead_after_of_silence_only() {
        let t0 = Instant::now();
        let mut b = Election::new(SyncRole::Backup, DEAD, t0);
        // The primary speaks every 200 ms: the backup stays standby.
        for i in 0..10 {
            b.heard(ms(t0, i * 200), flags::PRIMARY | flags::ACTIVE);
            assert_eq!(b.tick(ms(t0, i * 200 + 100), false), None);
        }
        assert_eq!(b.flags(ms(t0, 2000)), 0);
        // It dies after its message at 1800 ms.
        assert_eq!(b.tick(ms(t0, 2399), false), None);
        assert_eq!(b.tick(ms(t0, 2400), false), Some(Change::TookOver));
        assert!(b.is_active());
        assert_eq!(b.flags(ms(t0, 2400)), flags::ACTIVE);
    }

    #[test]
    fn a_returning_primary_waits_for_the_backups_flows_then_takes_back() {
        let t0 = Instant::now();
        let mut b = Election::new(SyncRole::Backup, DEAD, t0);
        assert_eq!(b.tick(ms(t0, 600), false), Some(Change::TookOver));
        // The primary restarts at 5 s: standby, it hears the backup active.
        let t = ms(t0, 5000);
        let mut p = Election::new(SyncRole::Primary, DEAD, t);
        p.heard(ms(t0, 5100), b.flags(ms(t0, 5100)));
        assert_eq!(p.tick(ms(t0, 5100), false), None, "the backup is active");
        // Long after dead_after, still standby while the backup speaks.
        for i in 0..20 {
            let now = ms(t0, 5200 + i * 200);
            p.heard(now, b.flags(now));
            assert_eq!(p.tick(now, false), None);
        }
        let now = ms(t0, 9200);
        let asks = p.flags(now);
        assert_eq!(asks, flags::PRIMARY | flags::TAKEBACK);
        // The backup hears it: a new peer (bulk pass), which wants its flows.
        assert!(b.heard(now, asks));
        assert!(b.handover_wanted(now));
        assert_eq!(b.tick(now, false), None, "not before the flows went");
        assert_eq!(b.tick(ms(t0, 9300), true), Some(Change::HandedBack));
        assert!(!b.is_active());
        assert!(!b.handover_wanted(ms(t0, 9300)));
        // The primary hears the backup standby and takes over.
        p.heard(ms(t0, 9400), b.flags(ms(t0, 9400)));
        assert_eq!(p.tick(ms(t0, 9400), false), Some(Change::PeerStandby));
        assert_eq!(p.flags(ms(t0, 9400)), flags::PRIMARY | flags::ACTIVE);
        // The backup, hearing it active, stays standby.
        b.heard(ms(t0, 9500), p.flags(ms(t0, 9500)));
        assert_eq!(b.tick(ms(t0, 9500), true), None);
    }

    #[test]
    fn the_backup_dying_during_the_handover_leaves_the_primary_to_take_over() {
        let t0 = Instant::now();
        let mut p = Election::new(SyncRole::Primary, DEAD, t0);
        p.heard(ms(t0, 100), flags::ACTIVE);
        assert_eq!(p.tick(ms(t0, 650), false), None);
        assert_eq!(p.tick(ms(t0, 700), false), Some(Change::TookOver));
    }

    #[test]
    fn two_active_after_a_partition_the_backup_steps_down() {
        let t0 = Instant::now();
        let mut b = Election::new(SyncRole::Backup, DEAD, t0);
        b.tick(ms(t0, 600), false);
        assert!(b.is_active());
        b.heard(ms(t0, 700), flags::PRIMARY | flags::ACTIVE);
        assert_eq!(b.tick(ms(t0, 700), false), Some(Change::PrimaryActive));
        // And an active primary hearing an active backup stays active.
        let mut p = Election::new(SyncRole::Primary, DEAD, t0);
        p.tick(ms(t0, 600), false);
        p.heard(ms(t0, 700), flags::ACTIVE);
        assert_eq!(p.tick(ms(t0, 700), false), None);
        assert!(p.is_active());
    }

    #[test]
    fn a_standby_primary_ignores_a_takeback_it_did_not_send() {
        // A backup never sends TAKEBACK; an active primary hearing one from
        // a misconfigured second primary keeps the gateway.
        let t0 = Instant::now();
        let mut p = Election::new(SyncRole::Primary, DEAD, t0);
        p.tick(ms(t0, 600), false);
        p.heard(ms(t0, 700), flags::PRIMARY | flags::TAKEBACK);
        assert_eq!(p.tick(ms(t0, 700), true), None);
        assert!(p.is_active());
        assert!(!p.handover_wanted(ms(t0, 700)));
    }
}

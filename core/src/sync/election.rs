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
//!   it waits [`STARTUP_WAIT`] (or `dead_after`) for the peer's word first: a backup that took
//!   over while the primary was away keeps the gateway until it has
//!   handed its flows over; a standby backup's flows (it may hold
//!   connections the primary, restarted within `dead_after`, lost) must
//!   arrive whole first too, or [`HOLD_DEAD_AFTERS`] × `dead_after` pass.
//! - A backup is standby while the primary is alive; it becomes active
//!   when it has heard nothing for `dead_after` (a takeover; just started,
//!   for [`STARTUP_WAIT`] at least).
//! - An active backup that hears the primary alive and asking for the
//!   gateway back ([`flags::TAKEBACK`]) first sends it every flow it
//!   holds (a bulk pass, which the primary needs before any of their
//!   packets can reach it), steps down only when the primary said the
//!   pass arrived whole (its `Status` acknowledges it; a damaged one is
//!   sent again), and the primary takes over when it hears the backup
//!   standby. So the primary takes nothing over while
//!   the backup has flows the primary does not hold; between the step
//!   down and the primary's gratuitous ARP the backup, standby, still
//!   forwards what reaches it, with the same flows.
//! - Both active (a partition healed): the backup steps down at once; the
//!   flows it made meanwhile may break (the primary never heard of them).
//!   Unless the primary's activity is a takeover by silence during its
//!   takeback (found in audit: a loss burst of `dead_after` both ways
//!   in the middle of the backup's bulk pass made the primary take over,
//!   and the backup stepped down when the link came back, with none of
//!   its flows handed over): a primary that took over by silence while
//!   it asked for the gateway back and held none of the backup's flows
//!   keeps saying [`flags::TAKEBACK`] while active. A backup hearing that
//!   keeps the gateway (for `dead_after` at most: a primary that does
//!   not hear it must not leave both active for longer), and the
//!   primary, hearing the backup active, goes back to standby
//!   ([`Change::TakebackResumed`]) and the takeback resumes, flows first.
//!   Either side decides from the primary's flags alone, so the two
//!   agree whatever crossed on the wire. A new life of the backup (a
//!   restart: new nonce, [`Election::peer_restarted`]) ends it: that one
//!   holds nothing worth taking back.
//! - An appliance that stops cleanly says goodbye ([`flags::GOODBYE`])
//!   once its workers no longer answer for the gateway. From then on the
//!   peer is not alive, until a normal status of it arrives that was sent
//!   after the goodbye (the sync thread tells which). If it was alive and
//!   active, and its goodbye says it was active, the other one takes over
//!   at once ([`Change::PeerLeft`]), or once `confirm` passed without a
//!   word from it (unkeyed sync: a forged goodbye must not outweigh the
//!   real peer's next heartbeat). A goodbye of a standby peer changes
//!   nothing but its liveness: the silence counts from its last normal
//!   message, as before.
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
    /// Became active: the peer (the backup) is alive and standby, and
    /// every flow it holds arrived here whole.
    PeerStandby,
    /// Became active: the backup is alive and standby, but its flows did
    /// not arrive whole within [`HOLD_DEAD_AFTERS`] × `dead_after`; nobody
    /// would answer for the gateway otherwise. At once when this primary
    /// yielded to the backup ([`Change::TakebackResumed`]) and the backup
    /// stepped down without handing its flows over (it stopped waiting
    /// for the primary to yield, or is of a version before that rule):
    /// the gateway is nobody's meanwhile.
    HoldExpired,
    /// Stepped down: the flows were handed over to the primary, which
    /// asked for the gateway back.
    HandedBack,
    /// Stepped down: the primary is active too (a partition healed).
    PrimaryActive,
    /// Became active: the peer, alive and active, said goodbye (it stops
    /// cleanly and no longer answers for the gateway).
    PeerLeft,
    /// Stepped down: a primary that took over by silence while it asked
    /// the active backup for the gateway back, without the backup's
    /// flows, hears the backup active again; the takeback resumes.
    TakebackResumed,
}

impl Change {
    /// Whether this appliance is active after the change.
    pub fn active(self) -> bool {
        matches!(
            self,
            Change::TookOver | Change::PeerStandby | Change::HoldExpired | Change::PeerLeft
        )
    }

    /// Why, in words (the log line).
    pub fn reason(self) -> &'static str {
        match self {
            Change::TookOver => "nothing heard from the peer for dead_after",
            Change::PeerStandby => "the backup is alive and standby, and its flows are here",
            Change::HoldExpired => "the backup is standby, but its flows never arrived whole",
            Change::HandedBack => {
                "every flow was handed to the primary, which asked for the gateway back"
            }
            Change::PrimaryActive => "the primary is active too",
            Change::PeerLeft => "the active peer said goodbye (it is stopping)",
            Change::TakebackResumed => {
                "the backup is active again and its flows are not here (the takeover by silence interrupted the takeback, which resumes)"
            }
        }
    }
}

/// How long an appliance that just started waits for the peer's first
/// word before it takes the peer for dead (`dead_after` if longer): the
/// peer's first messages may wait a second or two for the kernel to
/// resolve its address (an ARP entry that failed while this appliance was
/// down is retried after a second), and a backup that took over for that
/// would only have to hand back.
pub const STARTUP_WAIT: Duration = Duration::from_secs(3);

/// How many `dead_after`s a primary whose standby backup is alive waits
/// for the backup's flows before it takes over without them.
pub const HOLD_DEAD_AFTERS: u32 = 10;

/// What a message from the peer told, beside its flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Heard {
    /// The peer was not alive before (it came back, or it is new): it
    /// holds none of our flows.
    pub came_back: bool,
    /// The peer is not active while we are, and was active or was not
    /// heard (a partition healed: it may have answered for the gateway
    /// meanwhile, and stepped down before we heard it active): the hosts
    /// that followed it must be told the gateway is here again.
    pub stood_down: bool,
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
    /// Since when a primary on standby has heard the backup alive and
    /// standby without holding its flows.
    waiting: Option<Instant>,
    /// The peer said goodbye, and nothing normal came from it since.
    left: Option<Left>,
    /// A primary that took over by silence while it asked the active
    /// backup for the gateway back and held none of its flows: it says
    /// [`flags::TAKEBACK`] while active, and yields to the backup when it
    /// hears it active again.
    resumes: bool,
    /// Since when an active backup hears the primary active and asking
    /// for the gateway back (a takeover by silence during a takeback).
    claimed: Option<Instant>,
    /// A primary that yielded ([`Change::TakebackResumed`]) and has not
    /// held the backup's flows since: a standby backup then did not hand
    /// them over, and waiting for them leaves the gateway to nobody.
    yielded: bool,
}

/// A goodbye from the peer.
#[derive(Debug, Clone, Copy)]
struct Left {
    at: Instant,
    /// It was alive and active, and said so in its goodbye: the gateway
    /// is free once `confirm` has passed.
    active: bool,
    confirm: Duration,
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
            waiting: None,
            left: None,
            resumes: false,
            claimed: None,
            yielded: false,
        }
    }

    pub fn is_active(&self) -> bool {
        self.active
    }

    pub fn role(&self) -> SyncRole {
        self.role
    }

    /// Whether a valid message from the peer arrived within `dead_after`
    /// (and it has not said goodbye since).
    pub fn peer_alive(&self, now: Instant) -> bool {
        self.left.is_none()
            && self
                .heard
                .is_some_and(|(t, _)| now.saturating_duration_since(t) < self.dead_after)
    }

    /// The flags of the peer's last message, while it is alive.
    fn peer_flags(&self, now: Instant) -> Option<u16> {
        self.heard.filter(|_| self.peer_alive(now)).map(|(_, f)| f)
    }

    /// A valid message from the peer arrived with `flags`.
    pub fn heard(&mut self, now: Instant, flags: u16) -> Heard {
        let came_back = !self.peer_alive(now);
        let was_active = self.peer_flags(now).is_some_and(|f| f & flags::ACTIVE != 0);
        self.heard = Some((now, flags));
        self.left = None;
        let resuming = flags & flags::ACTIVE != 0 && flags & flags::TAKEBACK != 0;
        if resuming {
            // Counted from when it is heard so while this one is active
            // (not from before a silence, or from while standby).
            if came_back || !self.active {
                self.claimed = Some(now);
            } else {
                self.claimed.get_or_insert(now);
            }
        } else {
            self.claimed = None;
        }
        if flags & flags::ACTIVE == 0 {
            // The backup is standby: nothing to yield to.
            self.resumes = false;
        }
        Heard {
            came_back,
            // Found in audit: after a partition the backup, hearing the
            // primary first, stepped down at once, so its first message
            // here said standby, and nothing was announced again: the
            // reals kept the backup's MAC for the gateway.
            stood_down: self.active && (was_active || came_back) && flags & flags::ACTIVE == 0,
        }
    }

    /// The peer started a new life (its status has a nonce not heard
    /// before): whatever a takeback interrupted by silence was waiting
    /// for is gone with the old one, so an active primary keeps the
    /// gateway against it (the backup steps down, as after a partition).
    pub fn peer_restarted(&mut self) {
        self.resumes = false;
        self.yielded = false;
    }

    /// The peer said goodbye with `flags` (its last word: it stops
    /// cleanly). It is not alive from now on, until [`Self::heard`] is
    /// fed one of its normal messages sent after this. If it was alive
    /// and active and its goodbye says it was active, the next
    /// [`Self::tick`] from `confirm` on makes this appliance active
    /// ([`Change::PeerLeft`]); otherwise the silence counts from its last
    /// normal message, as without a goodbye. A repeat of the goodbye
    /// changes nothing. Returns whether the peer left the gateway to this
    /// appliance.
    pub fn goodbye(&mut self, now: Instant, flags: u16, confirm: Duration) -> bool {
        if self.left.is_none() {
            let was_active = self.peer_flags(now).is_some_and(|f| f & flags::ACTIVE != 0);
            self.left = Some(Left {
                at: now,
                active: was_active && flags & flags::ACTIVE != 0,
                confirm,
            });
        }
        self.left.is_some_and(|l| l.active)
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
            if (!self.active && backup_active) || (self.active && self.resumes) {
                f |= flags::TAKEBACK;
            }
        }
        if self.active {
            f |= flags::ACTIVE;
        }
        f
    }

    /// Decides again at `now`. `handed_over`: an active backup's bulk pass
    /// since the primary came back arrived there whole (the primary said
    /// so). `holding`: every flow the peer held when it last came back
    /// arrived here whole (its bulk pass). Returns the change, if any.
    pub fn tick(&mut self, now: Instant, handed_over: bool, holding: bool) -> Option<Change> {
        let peer = self.peer_flags(now);
        let peer_active = peer.is_some_and(|f| f & flags::ACTIVE != 0);
        // The active peer said goodbye (and, unkeyed, stayed silent for
        // `confirm` since).
        let left = self
            .left
            .is_some_and(|l| l.active && now.saturating_duration_since(l.at) >= l.confirm);
        // Silent since its last word, or since we started (then for
        // STARTUP_WAIT at least: the first messages may wait for ARP).
        let silent = peer.is_none()
            && match self.heard {
                Some((t, _)) => now.saturating_duration_since(t) >= self.dead_after,
                None => {
                    now.saturating_duration_since(self.started) >= self.dead_after.max(STARTUP_WAIT)
                }
            };
        let standby_peer = peer.is_some() && !peer_active;
        if holding {
            // The backup's flows are here: nothing to yield for.
            self.resumes = false;
            self.yielded = false;
        }
        // The primary, active, asks for the gateway back: it took over by
        // silence during its takeback, and yields once it hears us; for
        // `dead_after` at most (then it does not hear us: a partition one
        // way, and both would stay active).
        let claimed = peer_active
            && peer.is_some_and(|f| f & flags::TAKEBACK != 0)
            && self
                .claimed
                .is_some_and(|t| now.saturating_duration_since(t) < self.dead_after);
        let waits = self.role == SyncRole::Primary && !self.active && standby_peer && !holding;
        if !waits {
            self.waiting = None;
        }
        let change = match (self.role, self.active) {
            (_, false) if left => Some(Change::PeerLeft),
            (SyncRole::Primary, false) if silent => {
                // The backup was active at its last word, and this
                // primary asked for the gateway back without its flows.
                self.resumes =
                    !holding && !left && self.heard.is_some_and(|(_, f)| f & flags::ACTIVE != 0);
                Some(Change::TookOver)
            }
            (SyncRole::Primary, false) if standby_peer && holding => Some(Change::PeerStandby),
            (SyncRole::Primary, false) if standby_peer && self.yielded => Some(Change::HoldExpired),
            (SyncRole::Primary, false) if standby_peer => {
                let since = *self.waiting.get_or_insert(now);
                (now.saturating_duration_since(since) >= self.dead_after * HOLD_DEAD_AFTERS)
                    .then_some(Change::HoldExpired)
            }
            (SyncRole::Backup, false) if silent => Some(Change::TookOver),
            (SyncRole::Primary, true) if self.resumes && peer_active => {
                self.resumes = false;
                self.yielded = true;
                Some(Change::TakebackResumed)
            }
            (SyncRole::Backup, true) if peer_active && !claimed => Some(Change::PrimaryActive),
            (SyncRole::Backup, true) if handed_over && self.handover_wanted(now) => {
                Some(Change::HandedBack)
            }
            _ => None,
        };
        if let Some(c) = change {
            self.active = c.active();
            if c.active() {
                self.yielded = false;
            }
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
        assert_eq!(p.tick(ms(t0, 2999), false, true), None, "STARTUP_WAIT");
        assert!(!p.is_active());
        assert_eq!(p.tick(ms(t0, 3000), false, true), Some(Change::TookOver));
        assert!(p.is_active());
        assert_eq!(p.flags(ms(t0, 3000)), flags::PRIMARY | flags::ACTIVE);
    }

    #[test]
    fn a_primary_hearing_a_standby_backup_is_active_at_once() {
        let t0 = Instant::now();
        let mut p = Election::new(SyncRole::Primary, DEAD, t0);
        assert!(p.heard(ms(t0, 10), 0).came_back, "new peer");
        assert_eq!(p.tick(ms(t0, 10), false, true), Some(Change::PeerStandby));
        assert!(!p.heard(ms(t0, 210), 0).came_back, "not new any more");
        assert_eq!(p.tick(ms(t0, 210), false, true), None);
    }

    #[test]
    fn a_primary_waits_for_the_standby_backups_flows_but_not_forever() {
        let t0 = Instant::now();
        let mut p = Election::new(SyncRole::Primary, DEAD, t0);
        p.heard(ms(t0, 10), 0);
        assert_eq!(
            p.tick(ms(t0, 10), false, false),
            None,
            "its flows are not here yet"
        );
        for i in 1..30 {
            p.heard(ms(t0, i * 200), 0);
            assert_eq!(p.tick(ms(t0, i * 200), false, false), None);
        }
        assert_eq!(p.tick(ms(t0, 6000), false, true), Some(Change::PeerStandby));
        // Never whole: after HOLD_DEAD_AFTERS x dead_after it goes anyway.
        let mut p = Election::new(SyncRole::Primary, DEAD, t0);
        let hold = 600 * u64::from(HOLD_DEAD_AFTERS);
        let mut at = 10;
        while at < 10 + hold {
            p.heard(ms(t0, at), 0);
            assert_eq!(p.tick(ms(t0, at), false, false), None, "at {at}");
            at += 200;
        }
        p.heard(ms(t0, at), 0);
        assert_eq!(p.tick(ms(t0, at), false, false), Some(Change::HoldExpired));
        assert!(p.is_active());
    }

    #[test]
    fn a_backup_takes_over_after_dead_after_of_silence_only() {
        let t0 = Instant::now();
        let mut b = Election::new(SyncRole::Backup, DEAD, t0);
        // The primary speaks every 200 ms: the backup stays standby.
        for i in 0..10 {
            b.heard(ms(t0, i * 200), flags::PRIMARY | flags::ACTIVE);
            assert_eq!(b.tick(ms(t0, i * 200 + 100), false, true), None);
        }
        assert_eq!(b.flags(ms(t0, 2000)), 0);
        // It dies after its message at 1800 ms.
        assert_eq!(b.tick(ms(t0, 2399), false, true), None);
        assert_eq!(b.tick(ms(t0, 2400), false, true), Some(Change::TookOver));
        assert!(b.is_active());
        assert_eq!(b.flags(ms(t0, 2400)), flags::ACTIVE);
    }

    #[test]
    fn a_returning_primary_waits_for_the_backups_flows_then_takes_back() {
        let t0 = Instant::now();
        let mut b = Election::new(SyncRole::Backup, DEAD, t0);
        assert_eq!(b.tick(ms(t0, 3000), false, true), Some(Change::TookOver));
        // The primary restarts at 5 s: standby, it hears the backup active.
        let t = ms(t0, 5000);
        let mut p = Election::new(SyncRole::Primary, DEAD, t);
        p.heard(ms(t0, 5100), b.flags(ms(t0, 5100)));
        assert_eq!(
            p.tick(ms(t0, 5100), false, true),
            None,
            "the backup is active"
        );
        // Long after dead_after, still standby while the backup speaks.
        for i in 0..20 {
            let now = ms(t0, 5200 + i * 200);
            p.heard(now, b.flags(now));
            assert_eq!(p.tick(now, false, true), None);
        }
        let now = ms(t0, 9200);
        let asks = p.flags(now);
        assert_eq!(asks, flags::PRIMARY | flags::TAKEBACK);
        // The backup hears it: a new peer (bulk pass), which wants its flows.
        assert!(b.heard(now, asks).came_back);
        assert!(b.handover_wanted(now));
        assert_eq!(b.tick(now, false, true), None, "not before the flows went");
        assert_eq!(b.tick(ms(t0, 9300), true, true), Some(Change::HandedBack));
        assert!(!b.is_active());
        assert!(!b.handover_wanted(ms(t0, 9300)));
        // The primary hears the backup standby and takes over.
        p.heard(ms(t0, 9400), b.flags(ms(t0, 9400)));
        assert_eq!(p.tick(ms(t0, 9400), false, true), Some(Change::PeerStandby));
        assert_eq!(p.flags(ms(t0, 9400)), flags::PRIMARY | flags::ACTIVE);
        // The backup, hearing it active, stays standby.
        b.heard(ms(t0, 9500), p.flags(ms(t0, 9500)));
        assert_eq!(b.tick(ms(t0, 9500), true, true), None);
    }

    #[test]
    fn the_backup_dying_during_the_handover_leaves_the_primary_to_take_over() {
        let t0 = Instant::now();
        let mut p = Election::new(SyncRole::Primary, DEAD, t0);
        p.heard(ms(t0, 100), flags::ACTIVE);
        assert_eq!(p.tick(ms(t0, 650), false, true), None);
        assert_eq!(p.tick(ms(t0, 700), false, true), Some(Change::TookOver));
    }

    #[test]
    fn two_active_after_a_partition_the_backup_steps_down() {
        let t0 = Instant::now();
        let mut b = Election::new(SyncRole::Backup, DEAD, t0);
        b.tick(ms(t0, 3000), false, true);
        assert!(b.is_active());
        b.heard(ms(t0, 700), flags::PRIMARY | flags::ACTIVE);
        assert_eq!(
            b.tick(ms(t0, 700), false, true),
            Some(Change::PrimaryActive)
        );
        // And an active primary hearing an active backup stays active, and
        // learns when it stood down (to announce the gateway again).
        let mut p = Election::new(SyncRole::Primary, DEAD, t0);
        p.tick(ms(t0, 3000), false, true);
        assert!(p.is_active());
        assert!(!p.heard(ms(t0, 700), flags::ACTIVE).stood_down);
        assert_eq!(p.tick(ms(t0, 700), false, true), None);
        assert!(p.is_active());
        assert!(p.heard(ms(t0, 900), 0).stood_down);
        assert!(!p.heard(ms(t0, 1100), 0).stood_down, "once");
        // Found in audit: a backup that heard the primary first stepped
        // down before the primary heard it active; its first message after
        // the partition says standby, and the gateway is announced again
        // all the same.
        let later = ms(t0, 1100) + DEAD * 3;
        assert!(p.tick(later, false, true).is_none());
        let h = p.heard(later, 0);
        assert!(h.came_back && h.stood_down, "{h:?}");
        assert!(!p.heard(later + DEAD / 2, 0).stood_down, "once");
    }

    #[test]
    fn a_standby_primary_ignores_a_takeback_it_did_not_send() {
        // A backup never sends TAKEBACK; an active primary hearing one from
        // a misconfigured second primary keeps the gateway.
        let t0 = Instant::now();
        let mut p = Election::new(SyncRole::Primary, DEAD, t0);
        p.tick(ms(t0, 3000), false, true);
        p.heard(ms(t0, 700), flags::PRIMARY | flags::TAKEBACK);
        assert_eq!(p.tick(ms(t0, 700), true, true), None);
        assert!(p.is_active());
        assert!(!p.handover_wanted(ms(t0, 700)));
    }
    #[test]
    fn an_active_primarys_goodbye_makes_the_backup_active_at_once() {
        let t0 = Instant::now();
        let mut b = Election::new(SyncRole::Backup, DEAD, t0);
        let active = flags::PRIMARY | flags::ACTIVE;
        b.heard(ms(t0, 100), active);
        assert_eq!(b.tick(ms(t0, 100), false, true), None);
        assert!(b.goodbye(ms(t0, 150), active | flags::GOODBYE, Duration::ZERO));
        assert!(!b.peer_alive(ms(t0, 150)));
        assert_eq!(b.tick(ms(t0, 150), false, true), Some(Change::PeerLeft));
        assert!(b.is_active());
        assert_eq!(b.flags(ms(t0, 150)), flags::ACTIVE);
        // Its repeats change nothing, and it is not alive until it speaks.
        assert!(b.goodbye(ms(t0, 160), active | flags::GOODBYE, Duration::ZERO));
        assert_eq!(b.tick(ms(t0, 5000), false, true), None);
        assert!(!b.peer_alive(ms(t0, 5000)));
    }

    /// Unkeyed, a goodbye frees the gateway only once the peer stayed
    /// silent for `confirm`: a forged one is outweighed by the real
    /// primary's next heartbeat.
    #[test]
    fn an_unconfirmed_goodbye_is_outweighed_by_the_next_heartbeat() {
        let t0 = Instant::now();
        let confirm = Duration::from_millis(250);
        let active = flags::PRIMARY | flags::ACTIVE;
        let mut b = Election::new(SyncRole::Backup, DEAD, t0);
        b.heard(ms(t0, 3000), active);
        assert!(b.goodbye(ms(t0, 3050), active | flags::GOODBYE, confirm));
        assert_eq!(b.tick(ms(t0, 3299), false, true), None);
        // The primary's heartbeat: alive and active, the goodbye forgotten.
        assert!(b.heard(ms(t0, 3200), active).came_back);
        for at in [3300, 3400, 3799] {
            assert_eq!(b.tick(ms(t0, at), false, true), None, "at {at}");
        }
        assert!(!b.is_active());
        // A goodbye nothing outweighs: active once `confirm` has passed.
        b.heard(ms(t0, 3400), active);
        assert!(b.goodbye(ms(t0, 3450), active | flags::GOODBYE, confirm));
        assert_eq!(b.tick(ms(t0, 3699), false, true), None);
        assert_eq!(b.tick(ms(t0, 3700), false, true), Some(Change::PeerLeft));
    }

    /// A goodbye never makes the peer of a standby sender active: a
    /// backup stopping, a primary that was not active, or a goodbye that
    /// claims an activity the peer was not heard in.
    #[test]
    fn a_standby_appliances_goodbye_flips_nothing() {
        let t0 = Instant::now();
        // The active primary hears its standby backup leave.
        let mut p = Election::new(SyncRole::Primary, DEAD, t0);
        p.heard(ms(t0, 10), 0);
        assert_eq!(p.tick(ms(t0, 10), false, true), Some(Change::PeerStandby));
        assert!(!p.goodbye(ms(t0, 100), flags::GOODBYE, Duration::ZERO));
        assert_eq!(p.tick(ms(t0, 100), false, true), None);
        assert!(p.is_active() && !p.peer_alive(ms(t0, 100)));
        // A standby primary waiting for the backup's flows: the backup's
        // goodbye does not make it take over; dead_after of silence does.
        let mut p = Election::new(SyncRole::Primary, DEAD, t0);
        p.heard(ms(t0, 10), 0);
        assert_eq!(p.tick(ms(t0, 10), false, false), None);
        assert!(!p.goodbye(ms(t0, 100), flags::GOODBYE, Duration::ZERO));
        assert_eq!(p.tick(ms(t0, 100), false, false), None);
        assert_eq!(p.tick(ms(t0, 609), false, false), None);
        assert_eq!(p.tick(ms(t0, 610), false, false), Some(Change::TookOver));
        // A standby backup hears a primary that was standby say goodbye
        // claiming it was active: nothing before dead_after.
        let mut b = Election::new(SyncRole::Backup, DEAD, t0);
        b.heard(ms(t0, 3000), flags::PRIMARY | flags::TAKEBACK);
        let claims = flags::PRIMARY | flags::ACTIVE | flags::GOODBYE;
        assert!(!b.goodbye(ms(t0, 3100), claims, Duration::ZERO));
        assert_eq!(b.tick(ms(t0, 3100), false, true), None);
        // ... nor one from a primary never heard.
        let mut b = Election::new(SyncRole::Backup, DEAD, t0);
        assert!(!b.goodbye(ms(t0, 100), claims, Duration::ZERO));
        assert_eq!(b.tick(ms(t0, 100), false, true), None);
        assert_eq!(b.tick(ms(t0, 2999), false, true), None, "STARTUP_WAIT");
        // An active primary's goodbye saying standby: not its gateway to
        // give (it let it go before; the silence decides).
        let mut b = Election::new(SyncRole::Backup, DEAD, t0);
        b.heard(ms(t0, 3000), flags::PRIMARY | flags::ACTIVE);
        assert!(!b.goodbye(
            ms(t0, 3100),
            flags::PRIMARY | flags::GOODBYE,
            Duration::ZERO
        ));
        assert_eq!(b.tick(ms(t0, 3599), false, true), None);
        assert_eq!(b.tick(ms(t0, 3600), false, true), Some(Change::TookOver));
    }

    /// An active backup stopping hands the gateway to the standby primary
    /// at once; a primary that comes back after its goodbye finds the
    /// backup active and takes the gateway back as after a crash.
    #[test]
    fn goodbyes_both_ways_and_a_primary_coming_back() {
        let t0 = Instant::now();
        let mut b = Election::new(SyncRole::Backup, DEAD, t0);
        b.heard(ms(t0, 3000), flags::PRIMARY | flags::ACTIVE);
        let bye = flags::PRIMARY | flags::ACTIVE | flags::GOODBYE;
        assert!(b.goodbye(ms(t0, 3100), bye, Duration::ZERO));
        assert_eq!(b.tick(ms(t0, 3100), false, true), Some(Change::PeerLeft));
        // The primary restarts: standby, asking for the gateway back.
        let mut p = Election::new(SyncRole::Primary, DEAD, ms(t0, 4000));
        p.heard(ms(t0, 4010), b.flags(ms(t0, 4010)));
        assert_eq!(p.tick(ms(t0, 4010), false, true), None);
        let asks = p.flags(ms(t0, 4010));
        assert_eq!(asks, flags::PRIMARY | flags::TAKEBACK);
        assert!(b.heard(ms(t0, 4020), asks).came_back, "a bulk pass for it");
        assert!(b.handover_wanted(ms(t0, 4020)));
        assert_eq!(b.tick(ms(t0, 4030), true, true), Some(Change::HandedBack));
        // Now the backup, active again after a takeover, is stopped: the
        // standby primary (still waiting) takes over at once.
        let mut p = Election::new(SyncRole::Primary, DEAD, t0);
        p.heard(ms(t0, 100), flags::ACTIVE);
        assert_eq!(p.tick(ms(t0, 100), false, false), None);
        assert!(p.goodbye(ms(t0, 200), flags::ACTIVE | flags::GOODBYE, Duration::ZERO));
        assert!(!p.handover_wanted(ms(t0, 200)));
        assert_eq!(p.tick(ms(t0, 200), false, false), Some(Change::PeerLeft));
        assert_eq!(p.flags(ms(t0, 200)), flags::PRIMARY | flags::ACTIVE);
    }

    /// Found in audit (churn): a loss burst of `dead_after` (600 ms by default) on
    /// the sync link while an active backup hands its flows back to the
    /// returning primary ends the handover without the flows. The standby
    /// primary hears nothing for `dead_after` and takes over (it must: the
    /// backup might have died); when the link comes back the backup hears
    /// an active primary and steps down at once (`PrimaryActive`, the rule
    /// for a healed partition), though the primary never got the flows
    /// the backup made or took over while the primary was away: every
    /// such connection breaks, which the takeback exists to prevent. The
    /// larger the table the longer the pass, and every lost message of it
    /// sends it again, so the window stays open the longer the link is
    /// lossy. A primary that took over by silence from a backup it was
    /// taking back from (it asked TAKEBACK, the pass was not acked) should
    /// yield to it again and resume the takeback when it hears it active,
    /// or the backup keep the gateway until its pass is acked.
    #[test]
    fn a_loss_burst_during_the_takeback_does_not_cost_the_backups_flows() {
        let t0 = Instant::now();
        let mut b = Election::new(SyncRole::Backup, DEAD, t0);
        assert_eq!(b.tick(ms(t0, 3000), false, true), Some(Change::TookOver));
        // The primary restarts at 5 s; its takeback starts, the backup's
        // bulk pass (a big table: seconds) under way.
        let mut p = Election::new(SyncRole::Primary, DEAD, ms(t0, 5000));
        let lost = |t: u64| (6000..6700).contains(&t);
        let mut changes = Vec::new();
        let mut t = 5100;
        while t <= 8000 {
            let now = ms(t0, t);
            if !lost(t) {
                let (pf, bf) = (p.flags(now), b.flags(now));
                p.heard(now, bf);
                b.heard(now, pf);
            }
            // The pass is never acked within these 3 s; the primary holds
            // none of the backup's flows yet.
            if let Some(c) = p.tick(now, false, false) {
                changes.push(("primary", t, c));
            }
            if let Some(c) = b.tick(now, false, true) {
                changes.push(("backup", t, c));
            }
            t += 100;
        }
        assert!(
            !p.is_active() || b.is_active(),
            "the gateway went to the primary without the backup's flows: {changes:?}"
        );
    }

    /// The pair of the audit test at the end of its loss burst: the
    /// backup active since 3 s, the primary (started at 5 s) asked for the
    /// gateway back and got none of the backup's flows, then heard nothing
    /// from 5.9 s and took over by silence at 6.5 s. Returns them at 6.5 s.
    fn burst_during_the_takeback(t0: Instant) -> (Election, Election) {
        let mut b = Election::new(SyncRole::Backup, DEAD, t0);
        assert_eq!(b.tick(ms(t0, 3000), false, true), Some(Change::TookOver));
        let mut p = Election::new(SyncRole::Primary, DEAD, ms(t0, 5000));
        for t in (5100..=6500).step_by(100) {
            let now = ms(t0, t);
            if t < 6000 {
                let (pf, bf) = (p.flags(now), b.flags(now));
                p.heard(now, bf);
                b.heard(now, pf);
            }
            let c = p.tick(now, false, false);
            assert_eq!(c, (t == 6500).then_some(Change::TookOver), "at {t}");
            assert_eq!(b.tick(now, false, true), None, "at {t}");
        }
        (p, b)
    }

    /// The primary that took over by silence during its takeback says so
    /// (TAKEBACK while active); the backup keeps the gateway, the primary
    /// yields when it hears it, the backup announces the gateway again and
    /// hands its flows over as before the burst.
    #[test]
    fn after_a_loss_burst_the_primary_yields_and_the_takeback_resumes() {
        let t0 = Instant::now();
        let (mut p, mut b) = burst_during_the_takeback(t0);
        let now = ms(t0, 6500);
        assert_eq!(
            p.flags(now),
            flags::PRIMARY | flags::ACTIVE | flags::TAKEBACK
        );
        // The link is back: the backup hears the primary first.
        let now = ms(t0, 6700);
        let h = b.heard(now, p.flags(now));
        assert!(h.came_back && !h.stood_down);
        assert_eq!(b.tick(now, false, true), None, "the backup keeps it");
        assert!(!b.handover_wanted(now), "not to an active primary");
        assert!(p.heard(now, b.flags(now)).came_back);
        assert_eq!(p.tick(now, false, false), Some(Change::TakebackResumed));
        assert!(!p.is_active());
        assert!(!Change::TakebackResumed.active());
        assert_eq!(p.flags(now), flags::PRIMARY | flags::TAKEBACK);
        // The backup hears it stand down: it announces the gateway again,
        // and owes it its flows.
        let now = ms(t0, 6800);
        assert!(b.heard(now, p.flags(now)).stood_down);
        assert!(b.handover_wanted(now));
        assert_eq!(b.tick(now, false, true), None, "not before they went");
        // Long after dead_after: still nobody flips while the pass goes.
        for t in (6900..=9000).step_by(100) {
            let now = ms(t0, t);
            let (pf, bf) = (p.flags(now), b.flags(now));
            p.heard(now, bf);
            b.heard(now, pf);
            assert_eq!(p.tick(now, false, false), None, "at {t}");
            assert_eq!(b.tick(now, false, true), None, "at {t}");
        }
        // Acked: handed back, and the primary takes over with the flows.
        let now = ms(t0, 9100);
        assert_eq!(b.tick(now, true, true), Some(Change::HandedBack));
        p.heard(now, b.flags(now));
        assert_eq!(p.tick(now, false, true), Some(Change::PeerStandby));
        assert_eq!(p.flags(now), flags::PRIMARY | flags::ACTIVE);
    }

    /// Split brain resolves at the first exchange, whichever message
    /// crosses which: after a burst during the takeback the backup keeps
    /// the gateway; after a plain partition (the primary was active, the
    /// backup took over by silence) the primary does, as before.
    #[test]
    fn both_active_resolves_at_once_whatever_crosses() {
        let t0 = Instant::now();
        // 0: the backup hears first, 1: the primary, 2: both before either
        // decides.
        for order in 0..3 {
            let (mut p, mut b) = burst_during_the_takeback(t0);
            let now = ms(t0, 6700);
            let (pf, bf) = (p.flags(now), b.flags(now));
            match order {
                0 => {
                    b.heard(now, pf);
                    b.tick(now, false, true);
                    p.heard(now, b.flags(now));
                    p.tick(now, false, false);
                }
                1 => {
                    p.heard(now, bf);
                    p.tick(now, false, false);
                    b.heard(now, p.flags(now));
                    b.tick(now, false, true);
                }
                _ => {
                    p.heard(now, bf);
                    b.heard(now, pf);
                    p.tick(now, false, false);
                    b.tick(now, false, true);
                }
            }
            assert!(b.is_active() && !p.is_active(), "order {order}");
            for t in [6800, 6900, 7000] {
                let now = ms(t0, t);
                let (pf, bf) = (p.flags(now), b.flags(now));
                p.heard(now, bf);
                b.heard(now, pf);
                p.tick(now, false, false);
                b.tick(now, false, true);
                assert!(b.is_active() && !p.is_active(), "order {order} at {t}");
            }
        }
        // A plain partition: the primary was active all along.
        for order in 0..3 {
            let mut b = Election::new(SyncRole::Backup, DEAD, t0);
            b.heard(ms(t0, 100), flags::PRIMARY | flags::ACTIVE);
            let mut p = Election::new(SyncRole::Primary, DEAD, t0);
            p.heard(ms(t0, 100), 0);
            assert_eq!(p.tick(ms(t0, 100), false, true), Some(Change::PeerStandby));
            assert_eq!(b.tick(ms(t0, 700), false, true), Some(Change::TookOver));
            assert_eq!(p.tick(ms(t0, 700), false, true), None);
            let now = ms(t0, 2000);
            let (pf, bf) = (p.flags(now), b.flags(now));
            assert_eq!(pf, flags::PRIMARY | flags::ACTIVE, "no TAKEBACK");
            if order != 1 {
                b.heard(now, pf);
            }
            if order != 0 {
                p.heard(now, bf);
            }
            b.tick(now, false, true);
            p.tick(now, false, true);
            if order == 1 {
                b.heard(now, pf);
                b.tick(now, false, true);
            }
            assert!(p.is_active() && !b.is_active(), "order {order}");
        }
    }

    /// A primary that cannot hear the backup (the link works one way)
    /// never yields: the backup keeps the gateway against its TAKEBACK
    /// for `dead_after` only, then steps down as after a partition.
    #[test]
    fn the_backup_keeps_the_gateway_for_dead_after_at_most() {
        let t0 = Instant::now();
        let (mut p, mut b) = burst_during_the_takeback(t0);
        for t in (6700..=7300).step_by(100) {
            let now = ms(t0, t);
            b.heard(now, p.flags(now));
            assert_eq!(p.tick(now, false, false), None, "at {t}");
            let c = b.tick(now, false, true);
            assert_eq!(c, (t == 7300).then_some(Change::PrimaryActive), "at {t}");
        }
        assert!(p.is_active() && !b.is_active());
        // Heard again: the primary stays (the backup is standby).
        let now = ms(t0, 7400);
        p.heard(now, b.flags(now));
        assert_eq!(p.tick(now, false, false), None);
        assert_eq!(p.flags(now), flags::PRIMARY | flags::ACTIVE);
    }

    /// What ends the yield: the backup's new life (a restart: it holds
    /// nothing worth taking back), or its flows arriving here whole.
    #[test]
    fn a_restarted_backup_or_its_flows_here_end_the_yield() {
        let t0 = Instant::now();
        let (mut p, mut b) = burst_during_the_takeback(t0);
        p.peer_restarted();
        let now = ms(t0, 6700);
        assert_eq!(p.flags(now), flags::PRIMARY | flags::ACTIVE);
        p.heard(now, b.flags(now));
        assert_eq!(p.tick(now, false, false), None);
        b.heard(now, p.flags(now));
        assert_eq!(b.tick(now, false, true), Some(Change::PrimaryActive));
        // Its flows arrived whole meanwhile: nothing to yield for.
        let (mut p, mut b) = burst_during_the_takeback(t0);
        assert_eq!(p.tick(ms(t0, 6600), false, true), None);
        let now = ms(t0, 6700);
        assert_eq!(p.flags(now), flags::PRIMARY | flags::ACTIVE);
        p.heard(now, b.flags(now));
        assert_eq!(p.tick(now, false, true), None);
        b.heard(now, p.flags(now));
        assert_eq!(b.tick(now, false, true), Some(Change::PrimaryActive));
        // A primary that took over by silence from a standby backup, or
        // from its start, has nothing to take back.
        let mut p = Election::new(SyncRole::Primary, DEAD, t0);
        p.heard(ms(t0, 100), 0);
        assert_eq!(p.tick(ms(t0, 100), false, false), None);
        assert_eq!(p.tick(ms(t0, 700), false, false), Some(Change::TookOver));
        assert_eq!(p.flags(ms(t0, 700)), flags::PRIMARY | flags::ACTIVE);
    }

    /// A primary that yielded does not wait for the flows of a backup
    /// that then stepped down without handing them over (one that stopped
    /// waiting for it, or of a version before the yield): the gateway
    /// would be nobody's meanwhile.
    #[test]
    fn a_yielded_primary_takes_over_at_once_from_a_backup_that_stepped_down() {
        let t0 = Instant::now();
        let (mut p, _) = burst_during_the_takeback(t0);
        let now = ms(t0, 6700);
        p.heard(now, flags::ACTIVE);
        assert_eq!(p.tick(now, false, false), Some(Change::TakebackResumed));
        let now = ms(t0, 6800);
        p.heard(now, 0);
        assert_eq!(p.tick(now, false, false), Some(Change::HoldExpired));
        assert!(p.is_active());
    }

    /// The primary restarts (a new life) while the backup holds the
    /// gateway against its last life's TAKEBACK: the takeback starts over
    /// as after any restart.
    #[test]
    fn a_primary_restarting_after_the_burst_takes_back_as_usual() {
        let t0 = Instant::now();
        let (_, mut b) = burst_during_the_takeback(t0);
        let now = ms(t0, 6700);
        b.heard(now, flags::PRIMARY | flags::ACTIVE | flags::TAKEBACK);
        assert_eq!(b.tick(now, false, true), None);
        let mut p = Election::new(SyncRole::Primary, DEAD, ms(t0, 7000));
        let now = ms(t0, 7100);
        p.heard(now, b.flags(now));
        assert_eq!(p.tick(now, false, false), None);
        assert_eq!(p.flags(now), flags::PRIMARY | flags::TAKEBACK);
        assert!(!b.heard(now, p.flags(now)).came_back);
        assert!(b.handover_wanted(now));
        for t in [7500, 7900] {
            let now = ms(t0, t);
            let (pf, bf) = (p.flags(now), b.flags(now));
            p.heard(now, bf);
            b.heard(now, pf);
            assert_eq!(p.tick(now, false, false), None);
            assert_eq!(b.tick(now, false, true), None, "past dead_after");
        }
        assert_eq!(b.tick(ms(t0, 8100), true, true), Some(Change::HandedBack));
        p.heard(ms(t0, 8200), b.flags(ms(t0, 8200)));
        assert_eq!(p.tick(ms(t0, 8200), false, true), Some(Change::PeerStandby));
    }
}

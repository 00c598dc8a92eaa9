//! When an idle worker gives its CPU back (`[workers] poll = "adaptive"`).
//!
//! A pure state machine, told after every poll whether it found packets: it
//! keeps polling busily through short gaps ([`SPIN_POLLS`] empty polls),
//! then adds CPU pause hints between polls ([`PAUSE_POLLS`] more), then
//! sleeps between polls in steps that double from [`FIRST_SLEEP`] to
//! [`MAX_SLEEP`]; the first poll that finds packets makes it busy again. The
//! worker keeps running its whole loop between sleeps (reloads, neighbor
//! updates, hand-offs, held and deferred packets, the sweep, the stop flag),
//! so each of them waits at most one sleep longer than when busy. As DPVS
//! and VPP offer; in `busy` mode the machine always says [`Idle::Poll`].
//!
//! A sleeping worker is woken early by a worker that hands it packets (its
//! [`Doorbell`]): NAT replies often reach another worker than their flow's
//! owner, and would otherwise wait for the owner's sleep to end.
#![deny(unsafe_code)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::thread::Thread;
use std::time::Duration;

use lb_config::PollMode;

/// Empty polls in a row that are still polled busily: a gap between bursts
/// of a few microseconds (an empty poll takes about a microsecond or less)
/// never costs a pause or a sleep.
pub const SPIN_POLLS: u32 = 256;
/// Empty polls after those, each followed by [`PAUSES`] pause hints, before
/// the first sleep: a gap of up to a few hundred microseconds costs at most
/// one pause.
pub const PAUSE_POLLS: u32 = 256;
/// Pause hints (`std::hint::spin_loop`, the x86 `pause` instruction, which
/// `rte_pause` also is) between two polls of the pause phase: tens of
/// nanoseconds each, less power and no hammering of the queues' cache lines.
pub const PAUSES: u32 = 32;
/// The first sleep. Linux adds its timer slack (50 µs for an ordinary
/// thread) to every sleep, so the shortest real sleep is about 60 µs.
pub const FIRST_SLEEP: Duration = Duration::from_micros(10);
/// The longest sleep: what a packet, a hand-off from another worker or a
/// stop request waits at most (plus the timer slack) on an idle worker.
/// Held packets wait up to `HOLD_MS` (3 s) and deferred ones `DEFER_MS`
/// (2 s), so neither notices.
pub const MAX_SLEEP: Duration = Duration::from_millis(1);

/// What the worker does before its next poll.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Idle {
    /// Poll again at once.
    Poll,
    /// Issue this many pause hints, then poll.
    Pause(u32),
    /// Sleep this long, then poll.
    Sleep(Duration),
}

impl Idle {
    /// Does it: pauses, or sleeps on `bell` (the calling worker's own).
    pub fn wait(self, bell: &Doorbell) {
        match self {
            Idle::Poll => {}
            Idle::Pause(n) => {
                for _ in 0..n {
                    std::hint::spin_loop();
                }
            }
            Idle::Sleep(d) => bell.sleep(d),
        }
    }
}

/// How a worker that hands packets to a sleeping one wakes it. The sleeper
/// parks its thread (a futex wait with a timeout) with `sleeping` set; a
/// worker that has just handed it packets reads `sleeping` (one load of a
/// line that only changes when the sleeper sleeps or wakes) and unparks it
/// only then. A hand-off that races with the sleeper going to sleep (put in
/// the ring after the sleeper's last look at it, seen before `sleeping` is
/// set) waits for the sleep to end, as without a doorbell: at most
/// [`MAX_SLEEP`].
#[derive(Debug, Default)]
pub struct Doorbell {
    sleeping: AtomicBool,
    thread: OnceLock<Thread>,
}

impl Doorbell {
    /// Sleeps the calling thread for up to `d`, or until [`Doorbell::ring`].
    /// Only ever called by the one worker the bell belongs to.
    pub fn sleep(&self, d: Duration) {
        self.thread.get_or_init(std::thread::current);
        self.sleeping.store(true, Ordering::SeqCst);
        std::thread::park_timeout(d);
        self.sleeping.store(false, Ordering::SeqCst);
    }

    /// Wakes the bell's worker if it sleeps; costs one load otherwise.
    #[inline]
    pub fn ring(&self) {
        if self.sleeping.load(Ordering::SeqCst) {
            if let Some(t) = self.thread.get() {
                t.unpark();
            }
        }
    }
}

/// One worker's back-off state.
#[derive(Debug, Clone)]
pub struct Backoff {
    mode: PollMode,
    /// Empty polls since the last one with packets.
    empty: u32,
    /// The last sleep, zero before the first.
    sleep: Duration,
}

impl Backoff {
    pub fn new(mode: PollMode) -> Self {
        Backoff {
            mode,
            empty: 0,
            sleep: Duration::ZERO,
        }
    }

    /// After a poll: `work` says whether it found packets (on a queue or a
    /// hand-off ring). Returns what to do before the next poll.
    #[inline]
    pub fn after_poll(&mut self, work: bool) -> Idle {
        if self.mode == PollMode::Busy {
            return Idle::Poll;
        }
        if work {
            self.empty = 0;
            self.sleep = Duration::ZERO;
            return Idle::Poll;
        }
        self.empty = self.empty.saturating_add(1);
        if self.empty <= SPIN_POLLS {
            Idle::Poll
        } else if self.empty <= SPIN_POLLS + PAUSE_POLLS {
            Idle::Pause(PAUSES)
        } else {
            self.sleep = if self.sleep.is_zero() {
                FIRST_SLEEP
            } else {
                (self.sleep * 2).min(MAX_SLEEP)
            };
            Idle::Sleep(self.sleep)
        }
    }

    /// Whether the last poll was followed by a sleep (the worker then polls
    /// far less often; its sweep looks at more entries per poll).
    pub fn sleeping(&self) -> bool {
        !self.sleep.is_zero()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The actions of `n` empty polls in a row.
    fn empties(b: &mut Backoff, n: u32) -> Vec<Idle> {
        (0..n).map(|_| b.after_poll(false)).collect()
    }

    #[test]
    fn busy_mode_never_waits() {
        let mut b = Backoff::new(PollMode::Busy);
        assert!(empties(&mut b, 100_000).iter().all(|&i| i == Idle::Poll));
        assert!(!b.sleeping());
    }

    #[test]
    fn empty_polls_spin_then_pause_then_sleep() {
        let mut b = Backoff::new(PollMode::Adaptive);
        let first = empties(&mut b, SPIN_POLLS);
        assert!(
            first.iter().all(|&i| i == Idle::Poll),
            "a short gap stays busy"
        );
        let paused = empties(&mut b, PAUSE_POLLS);
        assert!(paused.iter().all(|&i| i == Idle::Pause(PAUSES)));
        assert!(!b.sleeping());
        let sleeps: Vec<Idle> = empties(&mut b, 9);
        let us = |n| Idle::Sleep(Duration::from_micros(n));
        assert_eq!(
            sleeps,
            [
                us(10),
                us(20),
                us(40),
                us(80),
                us(160),
                us(320),
                us(640),
                us(1000),
                us(1000)
            ]
        );
        assert!(b.sleeping());
    }

    #[test]
    fn sleeps_stay_bounded_however_long_it_is_idle() {
        let mut b = Backoff::new(PollMode::Adaptive);
        for i in empties(&mut b, 1_000_000) {
            if let Idle::Sleep(d) = i {
                assert!(d >= FIRST_SLEEP && d <= MAX_SLEEP, "{d:?}");
            }
        }
        // The count saturates instead of wrapping back to busy polling.
        b.empty = u32::MAX - 1;
        assert!(matches!(
            empties(&mut b, 3)[..],
            [Idle::Sleep(_), Idle::Sleep(_), Idle::Sleep(MAX_SLEEP)]
        ));
    }

    #[test]
    fn a_packet_makes_it_busy_again_at_once() {
        let mut b = Backoff::new(PollMode::Adaptive);
        empties(&mut b, SPIN_POLLS + PAUSE_POLLS + 20);
        assert!(b.sleeping());
        assert_eq!(b.after_poll(true), Idle::Poll);
        assert!(!b.sleeping());
        // And the whole run of busy polls starts over, sleeps from the
        // shortest.
        assert!(empties(&mut b, SPIN_POLLS).iter().all(|&i| i == Idle::Poll));
        assert_eq!(b.after_poll(false), Idle::Pause(PAUSES));
        empties(&mut b, PAUSE_POLLS - 1);
        assert_eq!(b.after_poll(false), Idle::Sleep(FIRST_SLEEP));
    }

    #[test]
    fn packets_during_the_pause_phase_reset_it() {
        let mut b = Backoff::new(PollMode::Adaptive);
        empties(&mut b, SPIN_POLLS + 5);
        assert_eq!(b.after_poll(true), Idle::Poll);
        assert!(empties(&mut b, SPIN_POLLS).iter().all(|&i| i == Idle::Poll));
    }

    #[test]
    fn waiting_pauses_or_sleeps() {
        let bell = Doorbell::default();
        Idle::Pause(PAUSES).wait(&bell);
        Idle::Poll.wait(&bell);
        Idle::Sleep(FIRST_SLEEP).wait(&bell);
        assert!(!bell.sleeping.load(Ordering::SeqCst));
        // Ringing a bell nobody sleeps on does nothing.
        bell.ring();
    }

    #[test]
    fn ringing_wakes_a_sleeper_early() {
        use std::sync::Arc;
        use std::time::Instant;
        let bell = Arc::new(Doorbell::default());
        let sleeper = {
            let bell = Arc::clone(&bell);
            std::thread::spawn(move || {
                let t = Instant::now();
                bell.sleep(Duration::from_secs(60));
                t.elapsed()
            })
        };
        while !bell.sleeping.load(Ordering::SeqCst) {
            std::thread::yield_now();
        }
        bell.ring();
        let slept = sleeper.join().unwrap();
        assert!(
            slept < Duration::from_secs(60),
            "not woken: slept {slept:?}"
        );
    }
}

//! The one chain clock: genesis, block time, height and settlement period, read from an
//! injected [`TimeSource`].
//!
//! Every block height in the node comes from [`ChainClock::height`]; nothing in protocol or
//! ledger code reads the wall clock itself (clippy's `disallowed-methods` enforces it outside
//! this module). A node uses [`WallClock`]; a simulator hands every peer the same
//! [`VirtualClock`] and advances it, so a 10 s block can pass in 100 ms of wall time (or in no
//! time at all) and the same scenario replays identically.

// The one module allowed to read the machine's clocks (see actors/clippy.toml).
#![allow(clippy::disallowed_methods)]

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::economics::Height;

/// Where the time comes from.
pub trait TimeSource: Send + Sync + fmt::Debug {
    /// Milliseconds since the Unix epoch (the chain's calendar: genesis, block heights,
    /// timestamps in signed records).
    fn now_ms(&self) -> u64;
    /// A monotonic reading in microseconds from an arbitrary origin, for durations (latency,
    /// timeouts, rate limits). Never goes backwards.
    fn monotonic_us(&self) -> u64;
    /// The wall-clock wait that lets `chain` pass on this source: what a real timer (actix,
    /// tokio) must be given for a protocol duration. The wall clock and a frozen clock return
    /// it unchanged; an accelerated clock divides it by its speed-up.
    fn wall_wait(&self, chain: Duration) -> Duration {
        chain
    }
}

/// The machine's clocks: `SystemTime` for the calendar, `Instant` for durations.
#[derive(Debug, Clone, Copy, Default)]
pub struct WallClock;

fn process_origin() -> Instant {
    static ORIGIN: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

impl TimeSource for WallClock {
    fn now_ms(&self) -> u64 {
        SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
    }
    fn monotonic_us(&self) -> u64 {
        process_origin().elapsed().as_micros() as u64
    }
}

/// A clock that moves only when told to, optionally scaled from wall time: shared by every
/// peer of a simulation.
///
/// Reading it gives `base_ms + offset`, where the offset is what [`VirtualClock::advance`]
/// added plus, when a `speedup` is set, the wall time since the clock was made times that
/// speed-up (so a 100× clock turns a 10 s block into 100 ms of wall time).
#[derive(Clone)]
pub struct VirtualClock {
    inner: Arc<VirtualInner>,
}

struct VirtualInner {
    base_ms: u64,
    /// Microseconds added by `advance` (or `set`).
    offset_us: AtomicU64,
    /// Wall-time speed-up (0 = frozen until advanced).
    speedup: u64,
    started: Instant,
    /// Microseconds after `started` at which the scaling began; `u64::MAX` while held.
    released_us: AtomicU64,
}

impl fmt::Debug for VirtualClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VirtualClock").field("now_ms", &self.now_ms()).field("speedup", &self.inner.speedup).finish()
    }
}

impl VirtualClock {
    /// A frozen clock that reads `start_ms` until advanced.
    pub fn frozen(start_ms: u64) -> Self {
        Self::accelerated(start_ms, 0)
    }

    /// A clock that starts at `start_ms` and runs `speedup` times faster than the wall clock
    /// (`speedup = 0`: frozen until advanced).
    pub fn accelerated(start_ms: u64, speedup: u64) -> Self {
        Self {
            inner: Arc::new(VirtualInner {
                base_ms: start_ms,
                offset_us: AtomicU64::new(0),
                speedup,
                started: Instant::now(),
                released_us: AtomicU64::new(0),
            }),
        }
    }

    /// An accelerated clock held at `start_ms` until [`VirtualClock::release`]: a simulator
    /// starts its peers on it, and chain time begins to run once they are all up.
    pub fn held(start_ms: u64, speedup: u64) -> Self {
        let c = Self::accelerated(start_ms, speedup);
        c.inner.released_us.store(u64::MAX, Ordering::SeqCst);
        c
    }

    /// Starts a held clock running (no effect on one already running).
    pub fn release(&self) {
        let now = self.inner.started.elapsed().as_micros() as u64;
        let _ = self.inner.released_us.compare_exchange(u64::MAX, now, Ordering::SeqCst, Ordering::SeqCst);
    }

    /// Moves the clock forward by `d` (every peer sharing it sees the jump at once).
    pub fn advance(&self, d: Duration) {
        self.inner.offset_us.fetch_add(d.as_micros() as u64, Ordering::SeqCst);
    }

    fn elapsed_us(&self) -> u64 {
        let released = self.inner.released_us.load(Ordering::SeqCst);
        let scaled = if self.inner.speedup == 0 || released == u64::MAX {
            0
        } else {
            (self.inner.started.elapsed().as_micros() as u64)
                .saturating_sub(released)
                .saturating_mul(self.inner.speedup)
        };
        self.inner.offset_us.load(Ordering::SeqCst).saturating_add(scaled)
    }
}

impl TimeSource for VirtualClock {
    fn now_ms(&self) -> u64 {
        self.inner.base_ms.saturating_add(self.elapsed_us() / 1000)
    }
    fn monotonic_us(&self) -> u64 {
        self.elapsed_us()
    }
    fn wall_wait(&self, chain: Duration) -> Duration {
        match self.inner.speedup {
            0 => chain,
            s => Duration::from_micros((chain.as_micros() as u64 / s).max(1)),
        }
    }
}

impl VirtualClock {
    /// The wall-time speed-up (0: frozen until advanced).
    pub fn speedup(&self) -> u64 {
        self.inner.speedup
    }
}

/// Genesis, block time and settlement period over a [`TimeSource`]: the only place a block
/// height is computed. Cheap to clone (the source is shared).
#[derive(Clone)]
pub struct ChainClock {
    genesis_ms: u64,
    block_time_ms: u64,
    source: Arc<dyn TimeSource>,
}

impl fmt::Debug for ChainClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChainClock")
            .field("genesis_ms", &self.genesis_ms)
            .field("block_time_ms", &self.block_time_ms)
            .field("source", &self.source)
            .finish()
    }
}

impl ChainClock {
    /// A clock with the given genesis (Unix ms) and block time (ms; 0 is read as 1).
    pub fn new(genesis_ms: u64, block_time_ms: u64, source: Arc<dyn TimeSource>) -> Self {
        Self { genesis_ms, block_time_ms: block_time_ms.max(1), source }
    }

    /// A clock on the machine's wall clock.
    pub fn wall(genesis_ms: u64, block_time_ms: u64) -> Self {
        Self::new(genesis_ms, block_time_ms, Arc::new(WallClock))
    }

    /// Block time in ms (at least 1).
    pub fn block_time_ms(&self) -> u64 {
        self.block_time_ms
    }

    /// Now, Unix ms.
    pub fn now_ms(&self) -> u64 {
        self.source.now_ms()
    }

    /// The block height at Unix time `ms` (0 before genesis).
    pub fn height_at(&self, ms: u64) -> Height {
        ms.saturating_sub(self.genesis_ms) / self.block_time_ms
    }

    /// The current block height.
    pub fn height(&self) -> Height {
        self.height_at(self.now_ms())
    }

    /// Unix ms at which block `h` starts.
    pub fn block_start_ms(&self, h: Height) -> u64 {
        self.genesis_ms.saturating_add(h.saturating_mul(self.block_time_ms))
    }

    /// How long until the next block starts (at least 1 ms).
    pub fn until_next_block(&self) -> Duration {
        let now = self.now_ms();
        let next = self.block_start_ms(self.height_at(now).saturating_add(1));
        Duration::from_millis(next.saturating_sub(now).max(1))
    }

    /// The wall-clock wait for a chain-time duration `d` (`d / speed-up` on an accelerated
    /// clock): every actor timer that stands for protocol time (block ticks, vote delays,
    /// heartbeats) goes through this, so an accelerated simulation keeps the protocol's rhythm.
    pub fn wall_wait(&self, d: Duration) -> Duration {
        self.source.wall_wait(d)
    }

    /// A monotonic instant on this clock's source, for measuring durations.
    pub fn instant(&self) -> ClockInstant {
        ClockInstant(self.source.monotonic_us())
    }

    /// Time elapsed since `since` (zero if the source went backwards, which it does not).
    pub fn elapsed(&self, since: ClockInstant) -> Duration {
        Duration::from_micros(self.source.monotonic_us().saturating_sub(since.0))
    }
}

/// A monotonic reading of a [`ChainClock`]'s source (microseconds from the source's origin).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ClockInstant(u64);

impl ClockInstant {
    /// An instant `us` microseconds from a source's origin (tests, replay).
    pub fn from_micros(us: u64) -> Self {
        Self(us)
    }

    /// Microseconds from the source's origin.
    pub fn as_micros(self) -> u64 {
        self.0
    }

    /// Time from `earlier` to `self` (zero if `earlier` is later).
    pub fn saturating_duration_since(self, earlier: ClockInstant) -> Duration {
        Duration::from_micros(self.0.saturating_sub(earlier.0))
    }
}

impl std::ops::Add<Duration> for ClockInstant {
    type Output = ClockInstant;
    fn add(self, d: Duration) -> ClockInstant {
        ClockInstant(self.0.saturating_add(d.as_micros() as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn height_counts_whole_blocks_since_genesis_and_is_zero_before_it() {
        let v = VirtualClock::frozen(10_000);
        let c = ChainClock::new(10_000, 1_000, Arc::new(v.clone()));
        assert_eq!(c.height(), 0);
        v.advance(Duration::from_millis(999));
        assert_eq!(c.height(), 0);
        v.advance(Duration::from_millis(1));
        assert_eq!(c.height(), 1);
        assert_eq!(c.height_at(5_000), 0, "before genesis");
        assert_eq!(c.block_start_ms(3), 13_000);
    }

    #[test]
    fn until_next_block_reaches_the_boundary() {
        let v = VirtualClock::frozen(0);
        let c = ChainClock::new(0, 1_000, Arc::new(v.clone()));
        v.advance(Duration::from_millis(250));
        assert_eq!(c.until_next_block(), Duration::from_millis(750));
        v.advance(Duration::from_millis(750));
        assert_eq!(c.height(), 1);
        assert_eq!(c.until_next_block(), Duration::from_millis(1_000));
    }

    #[test]
    fn a_shared_virtual_clock_moves_every_chain_clock_at_once() {
        let v = VirtualClock::frozen(0);
        let a = ChainClock::new(0, 100, Arc::new(v.clone()));
        let b = ChainClock::new(0, 100, Arc::new(v.clone()));
        let t0 = a.instant();
        v.advance(Duration::from_secs(10));
        assert_eq!((a.height(), b.height()), (100, 100));
        assert_eq!(a.elapsed(t0), Duration::from_secs(10));
    }

    #[test]
    fn a_held_clock_stands_still_until_released_then_runs() {
        let v = VirtualClock::held(5_000, 1_000);
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(v.now_ms(), 5_000);
        v.release();
        std::thread::sleep(Duration::from_millis(5));
        assert!(v.now_ms() >= 5_000 + 5_000, "{}", v.now_ms());
    }

    #[test]
    fn timers_wait_chain_time_divided_by_the_speed_up() {
        let fast = ChainClock::new(0, 10_000, Arc::new(VirtualClock::accelerated(0, 100)));
        assert_eq!(fast.wall_wait(Duration::from_secs(10)), Duration::from_millis(100));
        let wall = ChainClock::wall(0, 10_000);
        assert_eq!(wall.wall_wait(Duration::from_secs(10)), Duration::from_secs(10));
    }

    #[test]
    fn an_accelerated_clock_runs_faster_than_the_wall() {
        let v = VirtualClock::accelerated(0, 1_000);
        let w = WallClock;
        let (v0, w0) = (v.now_ms(), w.monotonic_us());
        std::thread::sleep(Duration::from_millis(20));
        let (v1, w1) = (v.now_ms(), w.monotonic_us());
        let wall_ms = (w1 - w0) / 1000;
        assert!(v1 - v0 >= wall_ms * 1000 / 2, "virtual {} ms vs wall {} ms", v1 - v0, wall_ms);
    }

    #[test]
    fn block_time_zero_is_read_as_one_ms() {
        let c = ChainClock::new(0, 0, Arc::new(VirtualClock::frozen(5)));
        assert_eq!(c.height(), 5);
    }
}

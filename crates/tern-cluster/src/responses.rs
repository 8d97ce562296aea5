//! The agent's publications to clients' response channels, and what waits for them: which stay
//! open, which are closed, what is queued until a publication can take it. Sans I/O (it takes
//! `now` and drives a [`Link`]), so the policy is tested without a media driver.
//!
//! - An open session's channel is *pinned*: its publication stays while a session uses it.
//! - Any other (a status request's, a refused or redirected connect's) is *cached*: at most
//!   [`Limits::max_cached`], the least recently used closed first, and closed after
//!   [`Limits::idle_ns`] unused. A session's channel goes to the cache when its last session
//!   closes.
//! - A response that the publication cannot take yet (being added, not connected, back
//!   pressured) is queued in order, at most [`Limits::max_queued`] per channel, for at most
//!   [`Limits::queue_ns`]; past either it is dropped and counted. Nothing waits: each duty cycle
//!   offers what is queued once.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// A response channel and stream.
pub type Key = (String, i32);

/// The bounds of [`Responses`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Publications kept for channels no open session uses.
    pub max_cached: usize,
    /// Such a publication is closed after this long unused.
    pub idle_ns: i64,
    /// Responses queued per channel while its publication cannot take them.
    pub max_queued: usize,
    /// A queued response not taken within this long is dropped.
    pub queue_ns: i64,
}

impl Default for Limits {
    /// 64 cached publications closed after 5 s unused; up to 64 responses queued per channel,
    /// for up to 1 s.
    fn default() -> Self {
        Self {
            max_cached: 64,
            idle_ns: 5_000_000_000,
            max_queued: 64,
            queue_ns: 1_000_000_000,
        }
    }
}

/// What an offer to a [`Link`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offered {
    /// Taken.
    Sent,
    /// Not now (not connected yet, back pressured): offer it again later.
    Later,
    /// Never (the publication is closed, the message too long): drop it.
    Refused,
}

/// A publication to a client as [`Responses`] drives it.
pub trait Link {
    /// Whether it takes offers yet (an add in flight may finish here). An error: it never will.
    ///
    /// # Errors
    /// Why the publication could not be made.
    fn ready(&mut self) -> Result<bool, String>;

    /// Offer one response.
    fn offer(&self, bytes: &[u8]) -> Offered;
}

struct Entry<L> {
    link: L,
    last_used_ns: i64,
    /// Responses and the time each is dropped at, oldest first.
    queue: VecDeque<(Vec<u8>, i64)>,
}

/// The response publications of one agent.
pub struct Responses<L> {
    limits: Limits,
    /// Channels open sessions use, with how many.
    pins: BTreeMap<Key, usize>,
    pinned: BTreeMap<Key, Entry<L>>,
    cached: BTreeMap<Key, Entry<L>>,
    /// Channels whose publication is not ready or whose queue is not empty.
    backlog: BTreeSet<Key>,
    dropped: u64,
}

impl<L: Link> Responses<L> {
    /// None yet.
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            pins: BTreeMap::new(),
            pinned: BTreeMap::new(),
            cached: BTreeMap::new(),
            backlog: BTreeSet::new(),
            dropped: 0,
        }
    }

    /// Whether there is no publication.
    pub fn is_empty(&self) -> bool {
        self.pinned.is_empty() && self.cached.is_empty()
    }

    /// Publications open or being added.
    pub fn len(&self) -> usize {
        self.pinned.len() + self.cached.len()
    }

    /// Publications for channels no open session uses.
    pub fn cached(&self) -> usize {
        self.cached.len()
    }

    /// Responses dropped so far (queue full, not taken in time, refused, no publication).
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// A session opened on `key`.
    pub fn pin(&mut self, key: &Key) {
        let count = self.pins.entry(key.clone()).or_insert(0);
        *count += 1;
        if *count == 1 {
            if let Some(entry) = self.cached.remove(key) {
                self.pinned.insert(key.clone(), entry);
            }
        }
    }

    /// A session on `key` closed: when it was the last, its publication goes to the cache.
    pub fn unpin(&mut self, key: &Key) {
        let Some(count) = self.pins.get_mut(key) else {
            return;
        };
        *count -= 1;
        if *count == 0 {
            self.pins.remove(key);
            if let Some(entry) = self.pinned.remove(key) {
                self.cached.insert(key.clone(), entry);
                self.evict_over_bound(key);
            }
        }
    }

    /// The channels of the open sessions, all of them (after a snapshot replaced the sessions,
    /// say): pins made or undone since are put right.
    pub fn repin(&mut self, keys: impl IntoIterator<Item = Key>) {
        let mut pins = BTreeMap::new();
        for key in keys {
            *pins.entry(key).or_insert(0) += 1;
        }
        let unpinned: Vec<Key> = self
            .pinned
            .keys()
            .filter(|key| !pins.contains_key(*key))
            .cloned()
            .collect();
        for key in unpinned {
            if let Some(entry) = self.pinned.remove(&key) {
                self.cached.insert(key, entry);
            }
        }
        let newly: Vec<Key> = self
            .cached
            .keys()
            .filter(|key| pins.contains_key(*key))
            .cloned()
            .collect();
        for key in newly {
            if let Some(entry) = self.cached.remove(&key) {
                self.pinned.insert(key, entry);
            }
        }
        self.pins = pins;
        while self.cached.len() > self.limits.max_cached {
            if !self.evict_least_recent(None) {
                break;
            }
        }
    }

    /// Send `bytes` on `channel` and `stream_id` at `now_ns`: at once when its publication takes
    /// it, else queued. A channel with no publication gets one from `open` (which must not
    /// wait for the driver).
    ///
    /// # Errors
    /// No publication could be made (from `open`, or its add failed): the response is dropped.
    pub fn send(
        &mut self,
        now_ns: i64,
        channel: &str,
        stream_id: i32,
        bytes: Vec<u8>,
        open: impl FnOnce() -> Result<L, String>,
    ) -> Result<(), String> {
        let key = (channel.to_string(), stream_id);
        if !self.pinned.contains_key(&key) && !self.cached.contains_key(&key) {
            let link = open().inspect_err(|_| self.dropped += 1)?;
            let entry = Entry {
                link,
                last_used_ns: now_ns,
                queue: VecDeque::new(),
            };
            self.backlog.insert(key.clone());
            if self.pins.contains_key(&key) {
                self.pinned.insert(key.clone(), entry);
            } else {
                self.cached.insert(key.clone(), entry);
                self.evict_over_bound(&key);
            }
        }
        let (max_queued, queue_ns) = (self.limits.max_queued, self.limits.queue_ns);
        let entry = match self.pinned.get_mut(&key) {
            Some(entry) => entry,
            None => self.cached.get_mut(&key).expect("made above"),
        };
        entry.last_used_ns = now_ns;
        if entry.queue.is_empty() {
            match entry.link.ready() {
                Ok(true) => match entry.link.offer(&bytes) {
                    Offered::Sent => return Ok(()),
                    Offered::Refused => {
                        self.dropped += 1;
                        return Ok(());
                    }
                    Offered::Later => {}
                },
                Ok(false) => {}
                Err(reason) => {
                    self.remove(&key);
                    self.dropped += 1;
                    return Err(reason);
                }
            }
        }
        if entry.queue.len() >= max_queued {
            self.dropped += 1;
        } else {
            entry.queue.push_back((bytes, now_ns + queue_ns));
            self.backlog.insert(key);
        }
        Ok(())
    }

    /// Offer `bytes` on `channel` and `stream_id` now, never queued: whether the publication took
    /// it (a caller that offers again later from the same message, such as a catch-up, keeps
    /// its own place). A channel with no publication gets one from `open`, and the answer is
    /// no until it is ready; one with responses queued says no until they went.
    pub fn offer_now(
        &mut self,
        now_ns: i64,
        channel: &str,
        stream_id: i32,
        bytes: &[u8],
        open: impl FnOnce() -> Result<L, String>,
    ) -> bool {
        let key = (channel.to_string(), stream_id);
        if !self.pinned.contains_key(&key) && !self.cached.contains_key(&key) {
            let Ok(link) = open() else {
                return false;
            };
            let entry = Entry {
                link,
                last_used_ns: now_ns,
                queue: VecDeque::new(),
            };
            if self.pins.contains_key(&key) {
                self.pinned.insert(key, entry);
            } else {
                self.cached.insert(key.clone(), entry);
                self.evict_over_bound(&key);
            }
            return false;
        }
        let entry = match self.pinned.get_mut(&key) {
            Some(entry) => entry,
            None => self.cached.get_mut(&key).expect("present"),
        };
        entry.last_used_ns = now_ns;
        if !entry.queue.is_empty() {
            return false;
        }
        match entry.link.ready() {
            Ok(true) => entry.link.offer(bytes) == Offered::Sent,
            Ok(false) => false,
            Err(_) => {
                // The add failed: the next offer tries a new publication.
                self.remove(&key);
                false
            }
        }
    }

    /// Offer what is queued, drop what waited too long, close idle cached publications. Returns
    /// the work done (responses sent, publications that became ready or were closed).
    pub fn do_work(&mut self, now_ns: i64) -> usize {
        let mut work = 0;
        if !self.backlog.is_empty() {
            for key in std::mem::take(&mut self.backlog) {
                let entry = match self.pinned.get_mut(&key) {
                    Some(entry) => entry,
                    None => match self.cached.get_mut(&key) {
                        Some(entry) => entry,
                        None => continue,
                    },
                };
                let ready = match entry.link.ready() {
                    Ok(ready) => ready,
                    Err(reason) => {
                        tracing::warn!("cannot answer on {} stream {}: {reason}", key.0, key.1);
                        self.dropped += entry.queue.len() as u64;
                        self.remove(&key);
                        work += 1;
                        continue;
                    }
                };
                if ready {
                    while let Some((bytes, _)) = entry.queue.front() {
                        match entry.link.offer(bytes) {
                            Offered::Sent => work += 1,
                            Offered::Refused => self.dropped += 1,
                            Offered::Later => break,
                        }
                        entry.queue.pop_front();
                    }
                }
                while entry
                    .queue
                    .front()
                    .is_some_and(|(_, deadline)| *deadline <= now_ns)
                {
                    entry.queue.pop_front();
                    self.dropped += 1;
                }
                if !ready || !entry.queue.is_empty() {
                    self.backlog.insert(key);
                }
            }
        }
        let idle_ns = self.limits.idle_ns;
        let before = self.cached.len();
        let dropped = &mut self.dropped;
        self.cached.retain(|_, entry| {
            let keep = now_ns - entry.last_used_ns < idle_ns;
            if !keep {
                *dropped += entry.queue.len() as u64;
            }
            keep
        });
        work + (before - self.cached.len())
    }

    fn remove(&mut self, key: &Key) {
        self.pinned.remove(key);
        self.cached.remove(key);
        self.backlog.remove(key);
    }

    /// Close the least recently used cached publications past the bound, never `keep`.
    fn evict_over_bound(&mut self, keep: &Key) {
        while self.cached.len() > self.limits.max_cached {
            if !self.evict_least_recent(Some(keep)) {
                break;
            }
        }
    }

    fn evict_least_recent(&mut self, keep: Option<&Key>) -> bool {
        let oldest = self
            .cached
            .iter()
            .filter(|(key, _)| Some(*key) != keep)
            .min_by_key(|(_, entry)| entry.last_used_ns)
            .map(|(key, _)| key.clone());
        let Some(oldest) = oldest else {
            return false;
        };
        if let Some(entry) = self.cached.remove(&oldest) {
            self.dropped += entry.queue.len() as u64;
        }
        self.backlog.remove(&oldest);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::rc::Rc;

    const MS: i64 = 1_000_000;

    /// What a fake publication does, shared with the test.
    #[derive(Debug, Default)]
    struct Wire {
        ready: bool,
        connected: bool,
        fail: bool,
        sent: Vec<Vec<u8>>,
    }

    struct Fake(Rc<RefCell<Wire>>);

    impl Link for Fake {
        fn ready(&mut self) -> Result<bool, String> {
            let wire = self.0.borrow();
            if wire.fail {
                return Err("refused".into());
            }
            Ok(wire.ready)
        }

        fn offer(&self, bytes: &[u8]) -> Offered {
            let mut wire = self.0.borrow_mut();
            if !wire.connected {
                return Offered::Later;
            }
            wire.sent.push(bytes.to_vec());
            Offered::Sent
        }
    }

    fn up() -> Rc<RefCell<Wire>> {
        Rc::new(RefCell::new(Wire {
            ready: true,
            connected: true,
            ..Wire::default()
        }))
    }

    fn key(port: u16) -> Key {
        (format!("aeron:udp?endpoint=localhost:{port}"), 102)
    }

    fn send(responses: &mut Responses<Fake>, now: i64, key: &Key, wire: &Rc<RefCell<Wire>>) {
        let wire = wire.clone();
        responses
            .send(now, &key.0, key.1, b"status".to_vec(), move || {
                Ok(Fake(wire))
            })
            .expect("sent");
    }

    #[test]
    fn status_channels_are_bounded_and_closed_when_idle_session_channels_stay() {
        let mut responses = Responses::new(Limits::default());
        let wire = up();
        let session = key(1);
        responses.pin(&session);
        send(&mut responses, 0, &session, &wire);
        // A status request a millisecond from a new channel each time.
        for i in 0..200 {
            send(&mut responses, i * MS, &key(1000 + i as u16), &wire);
            responses.do_work(i * MS);
            assert!(responses.cached() <= 64, "{}", responses.cached());
        }
        assert_eq!(responses.len(), 65);
        assert_eq!(wire.borrow().sent.len(), 201, "every answer went");
        // The least recently used went first: the last 64 are kept.
        assert!(responses.cached.contains_key(&key(1199)));
        assert!(!responses.cached.contains_key(&key(1135)));
        // Idle for 5 s: closed; the session's channel stays.
        responses.do_work(200 * MS + 5_000 * MS);
        assert_eq!((responses.len(), responses.cached()), (1, 0));
        assert!(responses.pinned.contains_key(&session));
        // Its session closed: cached, then closed when idle.
        responses.unpin(&session);
        assert_eq!(responses.cached(), 1);
        responses.do_work(20_000 * MS);
        assert_eq!(responses.len(), 0);
        assert_eq!(responses.dropped(), 0);
    }

    #[test]
    fn responses_wait_in_order_for_a_publication_and_are_dropped_past_a_bound_or_a_deadline() {
        let mut responses = Responses::new(Limits::default());
        let wire = Rc::new(RefCell::new(Wire::default()));
        let channel = key(7);
        for i in 0..70u8 {
            let link = wire.clone();
            responses
                .send(0, &channel.0, channel.1, vec![i], move || Ok(Fake(link)))
                .expect("queued");
        }
        assert_eq!(responses.dropped(), 6, "past 64 queued");
        responses.do_work(MS);
        assert!(wire.borrow().sent.is_empty());
        // The add finishes, the client connects: all of it goes, in order.
        wire.borrow_mut().ready = true;
        responses.do_work(2 * MS);
        assert!(wire.borrow().sent.is_empty(), "not connected yet");
        wire.borrow_mut().connected = true;
        assert_eq!(responses.do_work(3 * MS), 64);
        let sent: Vec<u8> = wire.borrow().sent.iter().map(|bytes| bytes[0]).collect();
        assert_eq!(sent, (0..64).collect::<Vec<u8>>());
        // A client gone: what is queued is dropped after a second.
        wire.borrow_mut().connected = false;
        send(&mut responses, 10 * MS, &channel, &wire);
        send(&mut responses, 20 * MS, &channel, &wire);
        responses.do_work(1_009 * MS);
        assert_eq!(responses.dropped(), 6);
        responses.do_work(1_010 * MS);
        assert_eq!(responses.dropped(), 7);
        responses.do_work(1_020 * MS);
        assert_eq!(responses.dropped(), 8);
        assert!(responses.backlog.is_empty());
    }

    #[test]
    fn a_publication_that_cannot_be_made_drops_its_responses_and_is_made_again() {
        let mut responses = Responses::new(Limits::default());
        let wire = Rc::new(RefCell::new(Wire::default()));
        let channel = key(9);
        send(&mut responses, 0, &channel, &wire);
        send(&mut responses, 0, &channel, &wire);
        wire.borrow_mut().fail = true;
        responses.do_work(MS);
        assert_eq!((responses.len(), responses.dropped()), (0, 2));
        let error = responses
            .send(2 * MS, &channel.0, channel.1, b"x".to_vec(), || {
                Err("invalid channel".to_string())
            })
            .expect_err("no publication");
        assert_eq!(error, "invalid channel");
        assert_eq!(responses.dropped(), 3);
        let fresh = up();
        send(&mut responses, 3 * MS, &channel, &fresh);
        assert_eq!(fresh.borrow().sent.len(), 1);
    }

    #[test]
    fn repinning_puts_right_the_pins_after_the_sessions_were_replaced() {
        let mut responses = Responses::new(Limits::default());
        let wire = up();
        let (old, new) = (key(1), key(2));
        responses.pin(&old);
        send(&mut responses, 0, &old, &wire);
        send(&mut responses, 0, &new, &wire);
        assert_eq!(responses.cached(), 1);
        responses.repin([new.clone(), new.clone()]);
        assert!(responses.pinned.contains_key(&new) && responses.cached.contains_key(&old));
        responses.unpin(&new);
        assert!(
            responses.pinned.contains_key(&new),
            "one session left on it"
        );
        responses.unpin(&new);
        assert_eq!(responses.cached(), 2);
    }
}

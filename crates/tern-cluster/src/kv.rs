//! The example service: a key-value store with per-session replies, and an echo mode for the
//! benchmark. Used by the tests, the simulation, `tern cluster node` and the benchmark.
//!
//! Requests are text (one per message), replies too:
//!
//! | request                 | reply                         |
//! |-------------------------|-------------------------------|
//! | `put <key> <value>`     | `ok <key>`                    |
//! | `get <key>`             | `value <value>` or `none`     |
//! | `del <key>`             | `deleted` or `none`           |
//! | `expire <key> <ms>`     | `ok` (the key goes `ms` of cluster time later) or `none` |
//! | `count`                 | `count <keys>`                |
//! | `pub <text>`            | `published <sequence>`; `<text>` goes to the shared output stream |
//! | anything else           | the same bytes (echo)         |

use crate::bytes::{put_bytes, Reader};
use crate::service::{Cluster, ClusteredService};
use std::collections::BTreeMap;

/// The example key-value service.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct KvService {
    entries: BTreeMap<Vec<u8>, Vec<u8>>,
    /// Timer correlation id to the key it expires.
    expiries: BTreeMap<i64, Vec<u8>>,
    next_timer: i64,
    /// Messages applied (all kinds).
    applied: u64,
    /// A hash chain over everything applied, in order (FNV-1a): equal on two nodes that applied
    /// the same messages and timers in the same order.
    digest: u64,
}

impl KvService {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// The value of `key`.
    pub fn get(&self, key: &[u8]) -> Option<&[u8]> {
        self.entries.get(key).map(Vec::as_slice)
    }

    /// How many keys it holds.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether it holds no key.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Messages applied so far.
    pub fn applied(&self) -> u64 {
        self.applied
    }

    /// The hash chain over everything applied (see the field).
    pub fn digest(&self) -> u64 {
        self.digest
    }

    fn chain(&mut self, session_id: i64, bytes: &[u8]) {
        let mut hash = if self.digest == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.digest
        };
        for byte in session_id.to_le_bytes().iter().chain(bytes) {
            hash = (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3);
        }
        self.digest = hash;
    }

    fn handle(&mut self, cluster: &mut Cluster<'_>, payload: &[u8]) -> Vec<u8> {
        if let Some(text) = payload.strip_prefix(b"pub ") {
            let sequence = cluster.offer_shared(text);
            return format!("published {sequence}").into_bytes();
        }
        let mut words = payload.splitn(3, |byte| *byte == b' ');
        let verb = words.next().unwrap_or_default();
        let first = words.next();
        let rest = words.next();
        match (verb, first, rest) {
            (b"put", Some(key), Some(value)) => {
                self.entries.insert(key.to_vec(), value.to_vec());
                [b"ok ".as_slice(), key].concat()
            }
            (b"get", Some(key), None) => match self.entries.get(key) {
                Some(value) => [b"value ".as_slice(), value].concat(),
                None => b"none".to_vec(),
            },
            (b"del", Some(key), None) => match self.entries.remove(key) {
                Some(_) => b"deleted".to_vec(),
                None => b"none".to_vec(),
            },
            (b"expire", Some(key), Some(millis)) => {
                let millis = std::str::from_utf8(millis)
                    .ok()
                    .and_then(|text| text.parse::<i64>().ok());
                match millis {
                    Some(millis) if millis >= 0 && self.entries.contains_key(key) => {
                        self.next_timer += 1;
                        self.expiries.insert(self.next_timer, key.to_vec());
                        cluster.schedule_timer(
                            self.next_timer,
                            cluster
                                .time_ns()
                                .saturating_add(millis.saturating_mul(1_000_000)),
                        );
                        b"ok".to_vec()
                    }
                    _ => b"none".to_vec(),
                }
            }
            (b"count", None, None) => format!("count {}", self.entries.len()).into_bytes(),
            _ => payload.to_vec(),
        }
    }
}

impl ClusteredService for KvService {
    fn on_start(
        &mut self,
        _cluster: &mut Cluster<'_>,
        snapshot: Option<&[u8]>,
    ) -> Result<(), String> {
        *self = Self::default();
        let Some(bytes) = snapshot else {
            return Ok(());
        };
        let mut reader = Reader::new(bytes, 0, "the kv snapshot");
        let header = reader.bytes(usize::MAX)?;
        if header.len() != 32 {
            return Err("kv snapshot header".into());
        }
        let mut fields = Reader::new(header, 0, "the kv snapshot header");
        let count = fields.u64()?;
        self.next_timer = fields.i64()?;
        self.applied = fields.u64()?;
        self.digest = fields.u64()?;
        for _ in 0..count {
            let key = reader.bytes(usize::MAX)?.to_vec();
            let value = reader.bytes(usize::MAX)?.to_vec();
            self.entries.insert(key, value);
        }
        while !reader.is_empty() {
            let id = reader.bytes(usize::MAX)?;
            let id = i64::from_le_bytes(id.try_into().map_err(|_| "kv snapshot timer id")?);
            let key = reader.bytes(usize::MAX)?.to_vec();
            self.expiries.insert(id, key);
        }
        Ok(())
    }

    fn on_session_message(&mut self, cluster: &mut Cluster<'_>, session_id: i64, payload: &[u8]) {
        self.applied += 1;
        self.chain(session_id, payload);
        let reply = self.handle(cluster, payload);
        // The session is open (the container checked): the offer cannot fail.
        let _ = cluster.offer(session_id, &reply);
    }

    fn on_timer(&mut self, _cluster: &mut Cluster<'_>, correlation_id: i64) {
        self.chain(-1, &correlation_id.to_le_bytes());
        if let Some(key) = self.expiries.remove(&correlation_id) {
            self.entries.remove(&key);
        }
    }

    fn on_take_snapshot(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        let mut header = Vec::with_capacity(32);
        header.extend_from_slice(&(self.entries.len() as u64).to_le_bytes());
        header.extend_from_slice(&self.next_timer.to_le_bytes());
        header.extend_from_slice(&self.applied.to_le_bytes());
        header.extend_from_slice(&self.digest.to_le_bytes());
        put_bytes(&mut out, &header);
        for (key, value) in &self.entries {
            put_bytes(&mut out, key);
            put_bytes(&mut out, value);
        }
        for (id, key) in &self.expiries {
            put_bytes(&mut out, &id.to_le_bytes());
            put_bytes(&mut out, key);
        }
        out
    }
}

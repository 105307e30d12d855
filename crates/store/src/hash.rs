//! A stable 64-bit content hash of an observation, stored beside it so an upsert can tell
//! "same as stored" with one integer comparison.
//!
//! Stable means the same bytes in, the same number out, across processes, versions and
//! machines: it is persisted, so it must never depend on a random seed or on `std`'s
//! unspecified `Hasher`s. Changing the function is a schema change (every stored row would
//! look changed once, which is harmless but rewrites the table). It is not cryptographic: a
//! collision can only hide a change a source made to its own item, which that source
//! could equally have not made.

use tibridge_core::Observation;

const SEED: u64 = 0xa076_1d64_78bd_642f;
const MULT: u64 = 0xe703_7ed1_a0b4_28db;
const FINAL: u64 = 0x8ebc_6af0_9c88_c6e3;

/// Folded 128-bit multiply (the "mum" mix of wyhash): fast and well spread.
#[inline]
fn mum(a: u64, b: u64) -> u64 {
    let r = u128::from(a).wrapping_mul(u128::from(b));
    (r as u64) ^ ((r >> 64) as u64)
}

/// Streaming form of the content hash, eight bytes at a time.
#[derive(Debug, Clone)]
pub struct StableHasher {
    state: u64,
}

impl Default for StableHasher {
    fn default() -> Self {
        StableHasher { state: SEED }
    }
}

impl StableHasher {
    #[inline]
    pub fn write_u64(&mut self, word: u64) {
        // The rotated old state keeps the chain from collapsing when `state == word`.
        self.state = mum(self.state ^ word, MULT) ^ self.state.rotate_left(29);
    }

    #[inline]
    pub fn write_i64(&mut self, v: i64) {
        self.write_u64(v as u64);
    }

    /// Length-prefixed, so ("ab","c") and ("a","bc") differ.
    pub fn write_bytes(&mut self, bytes: &[u8]) {
        self.write_u64(bytes.len() as u64);
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.write_u64(u64::from_le_bytes(word));
        }
    }

    pub fn write_str(&mut self, s: &str) {
        self.write_bytes(s.as_bytes());
    }

    /// A tag word before every optional, so `None` and `Some(0)` differ.
    pub fn write_opt_i64(&mut self, v: Option<i64>) {
        match v {
            None => self.write_u64(0x6e6f_6e65),
            Some(v) => {
                self.write_u64(0x736f_6d65);
                self.write_i64(v);
            }
        }
    }

    pub fn write_opt_str(&mut self, v: Option<&str>) {
        match v {
            None => self.write_u64(0x6e6f_6e65),
            Some(s) => {
                self.write_u64(0x736f_6d65);
                self.write_str(s);
            }
        }
    }

    pub fn finish(&self) -> u64 {
        mum(self.state ^ FINAL, MULT ^ FINAL)
    }
}

/// The hash of everything an observation says apart from its key's source fields:
/// indicator (kind and value), context, tags, TLP, confidence, flags and times.
/// `tags_json` is the exact text stored, so hashing it covers tag order and content.
pub fn content_hash(obs: &Observation, tags_json: &str) -> i64 {
    let mut h = StableHasher::default();
    h.write_str(obs.indicator.kind.as_str());
    h.write_str(&obs.indicator.value);
    h.write_opt_str(obs.event_ref.as_deref());
    h.write_opt_str(obs.event_info.as_deref());
    h.write_str(tags_json);
    h.write_opt_str(obs.tlp.map(|t| t.as_str()));
    h.write_opt_i64(obs.confidence.map(i64::from));
    h.write_u64(u64::from(obs.to_ids));
    h.write_opt_i64(obs.first_seen);
    h.write_opt_i64(obs.last_seen);
    h.write_opt_i64(obs.valid_until);
    h.write_opt_i64(obs.modified);
    h.write_u64(u64::from(obs.deleted));
    h.finish() as i64
}

#[cfg(test)]
mod tests {
    use super::*;
    use tibridge_core::{Indicator, IndicatorKind, Tlp};

    const PIN_ABC: u64 = 0x7c28_3c19_04c2_4e62;
    const PIN_OBS: i64 = -1_708_597_735_964_496_307;

    fn obs() -> Observation {
        let mut o = Observation::new(Indicator::from_canonical(IndicatorKind::Domain, "example.org"), "misp", "u-1");
        o.tlp = Some(Tlp::Green);
        o.confidence = Some(80);
        o
    }

    #[test]
    fn the_hash_is_pinned_so_stored_hashes_stay_valid() {
        // If this changes, every stored row looks changed once: change it only on purpose.
        let mut h = StableHasher::default();
        h.write_str("abc");
        assert_eq!(h.finish(), PIN_ABC);
        assert_eq!(content_hash(&obs(), "[]"), PIN_OBS);
    }

    #[test]
    fn every_content_field_changes_the_hash() {
        let base = obs();
        let h0 = content_hash(&base, "[]");
        let mut variants = Vec::new();
        let mut o = base.clone();
        o.indicator.value = "example.com".into();
        variants.push((o, "[]"));
        let mut o = base.clone();
        o.indicator.kind = IndicatorKind::Url;
        variants.push((o, "[]"));
        let mut o = base.clone();
        o.event_ref = Some("e".into());
        variants.push((o, "[]"));
        let mut o = base.clone();
        o.event_info = Some(String::new());
        variants.push((o, "[]"));
        variants.push((base.clone(), "[\"a\"]"));
        let mut o = base.clone();
        o.tlp = None;
        variants.push((o, "[]"));
        let mut o = base.clone();
        o.confidence = Some(81);
        variants.push((o, "[]"));
        let mut o = base.clone();
        o.to_ids = false;
        variants.push((o, "[]"));
        let mut o = base.clone();
        o.first_seen = Some(0);
        variants.push((o, "[]"));
        let mut o = base.clone();
        o.last_seen = Some(0);
        variants.push((o, "[]"));
        let mut o = base.clone();
        o.valid_until = Some(0);
        variants.push((o, "[]"));
        let mut o = base.clone();
        o.modified = Some(0);
        variants.push((o, "[]"));
        let mut o = base.clone();
        o.deleted = true;
        variants.push((o, "[]"));
        let mut seen = std::collections::HashSet::new();
        seen.insert(h0);
        for (o, tags) in &variants {
            assert!(seen.insert(content_hash(o, tags)), "collision for {o:?} {tags}");
        }
    }

    #[test]
    fn field_boundaries_matter() {
        let mut a = obs();
        a.event_ref = Some("ab".into());
        a.event_info = Some("c".into());
        let mut b = obs();
        b.event_ref = Some("a".into());
        b.event_info = Some("bc".into());
        assert_ne!(content_hash(&a, "[]"), content_hash(&b, "[]"));
    }
}

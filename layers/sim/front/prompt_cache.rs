//! The front's prompt cache: which part of a request Bedrock would cache, and whether that
//! part is already cached.
//!
//! A request marks the end of its cacheable prefix with a cache point: a Converse
//! `{"cachePoint": {"type": "default"}}` content or system block (the prefix is everything
//! before it), or an Anthropic block carrying `"cache_control": {"type": "ephemeral"}` (the
//! prefix ends with that block). The last mark counts. The prefix is the system prompt's and
//! the messages' text up to the mark, in that order; its tokens are estimated like all input
//! text (one per four characters).
//!
//! The first call with a prefix writes it (`cacheWriteInputTokens`); a call within the entry's
//! time to live reads it (`cacheReadInputTokens`) and renews it. The time to live is 5 minutes,
//! or 1 hour for a mark with `"ttl": "1h"` ("Prompt caching for faster model inference",
//! Amazon Bedrock User Guide: a cache checkpoint expires after 5 minutes without a hit, 1 hour
//! where the model supports it). Bedrock's minimum tokens per checkpoint (1,024 for Claude
//! Sonnet) are not checked: any marked prefix is cached. The input tokens the simulator
//! charges are the request's other tokens.
//!
//! Entries are keyed by model, region and a 64-bit hash of the prefix's text; the text itself
//! is never kept. At most [`MAX_ENTRIES`] are kept: when full, expired entries go first, then
//! the least recently used.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};
use tokio::time::Instant;

use super::bedrock_wire::estimate_tokens;

/// The most prefixes the front remembers.
pub(crate) const MAX_ENTRIES: usize = 4_096;
/// A cache checkpoint's default time to live.
const DEFAULT_TTL: Duration = Duration::from_secs(5 * 60);
/// The time to live of a checkpoint marked `"ttl": "1h"`.
const LONG_TTL: Duration = Duration::from_secs(60 * 60);

/// A request's cacheable prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct CachePrefix {
    /// Its estimated tokens.
    pub tokens: u64,
    /// A hash of its text.
    pub fingerprint: u64,
    /// How long an entry lives without a hit.
    pub ttl: Duration,
}

/// One piece of a request in reading order: text, or a cache mark.
enum Piece<'a> {
    Text(&'a str),
    Mark(Duration),
}

/// The texts inside `value`, as the token estimate counts them: a string itself, else every
/// `text` field found recursively.
fn texts<'a>(value: &'a Value, out: &mut Vec<Piece<'a>>) {
    fn blocks<'a>(value: &'a Value, out: &mut Vec<Piece<'a>>) {
        match value {
            Value::Array(items) => items.iter().for_each(|v| blocks(v, out)),
            Value::Object(map) => {
                for (key, v) in map {
                    match v {
                        Value::String(s) if key == "text" => out.push(Piece::Text(s)),
                        _ => blocks(v, out),
                    }
                }
            }
            _ => {}
        }
    }
    match value {
        Value::String(s) => out.push(Piece::Text(s)),
        other => blocks(other, out),
    }
}

fn ttl_of(mark: &Value) -> Duration {
    match mark.get("ttl").and_then(Value::as_str) {
        Some("1h") => LONG_TTL,
        _ => DEFAULT_TTL,
    }
}

/// A list of content (or system) blocks, or a plain string, in reading order with its marks.
fn section<'a>(value: &'a Value, out: &mut Vec<Piece<'a>>) {
    let Value::Array(items) = value else {
        texts(value, out);
        return;
    };
    for block in items {
        if let Some(point) = block.get("cachePoint") {
            // Converse: the mark is a block of its own, after the prefix.
            out.push(Piece::Mark(ttl_of(point)));
            continue;
        }
        texts(block, out);
        if let Some(control) = block.get("cache_control") {
            // Anthropic: the block carrying the mark ends the prefix.
            out.push(Piece::Mark(ttl_of(control)));
        }
    }
}

/// The cacheable prefix of a Converse or Anthropic messages body, if it marks one.
pub(crate) fn prefix(map: &Map<String, Value>) -> Option<CachePrefix> {
    let mut pieces = Vec::new();
    if let Some(system) = map.get("system") {
        section(system, &mut pieces);
    }
    if let Some(Value::Array(messages)) = map.get("messages") {
        for message in messages {
            if let Some(content) = message.get("content") {
                section(content, &mut pieces);
            }
        }
    }
    let end = pieces.iter().rposition(|p| matches!(p, Piece::Mark(_)))?;
    let Piece::Mark(ttl) = pieces[end] else {
        return None;
    };
    let mut hasher = DefaultHasher::new();
    let mut chars = 0u64;
    for piece in &pieces[..end] {
        if let Piece::Text(text) = piece {
            chars += text.chars().count() as u64;
            text.hash(&mut hasher);
        }
    }
    (chars > 0).then(|| CachePrefix {
        tokens: estimate_tokens(chars),
        fingerprint: hasher.finish(),
        ttl,
    })
}

/// What a call does with the cache: read its prefix or write it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CacheUse {
    /// The prefix is cached: its tokens are read.
    Read(u64),
    /// The prefix is not cached: its tokens are written.
    Write(u64),
}

type Key = (Arc<str>, Arc<str>, u64);

/// The cached prefixes per model and region, with when each expires.
#[derive(Debug, Default)]
pub(crate) struct PromptCache {
    entries: HashMap<Key, Instant>,
}

impl PromptCache {
    /// Whether `prefix` is cached for `model` in `region` at `now`.
    pub(crate) fn lookup(
        &self,
        model: &Arc<str>,
        region: &Arc<str>,
        prefix: &CachePrefix,
        now: Instant,
    ) -> CacheUse {
        let key = (model.clone(), region.clone(), prefix.fingerprint);
        match self.entries.get(&key) {
            Some(&expires) if now < expires => CacheUse::Read(prefix.tokens),
            _ => CacheUse::Write(prefix.tokens),
        }
    }

    /// Records that a served call read or wrote `prefix` at `now`: the entry lives another
    /// time to live.
    pub(crate) fn touch(
        &mut self,
        model: &Arc<str>,
        region: &Arc<str>,
        prefix: &CachePrefix,
        now: Instant,
    ) {
        let key = (model.clone(), region.clone(), prefix.fingerprint);
        if !self.entries.contains_key(&key) && self.entries.len() >= MAX_ENTRIES {
            self.entries.retain(|_, &mut expires| expires > now);
            if self.entries.len() >= MAX_ENTRIES {
                let oldest = self
                    .entries
                    .iter()
                    .min_by_key(|(_, expires)| **expires)
                    .map(|(k, _)| k.clone());
                if let Some(oldest) = oldest {
                    self.entries.remove(&oldest);
                }
            }
        }
        self.entries.insert(key, now + prefix.ttl);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => unreachable!(),
        }
    }

    #[test]
    fn converse_marks_end_the_prefix_before_them() {
        let body = map(json!({
            "system": [{"text": "0123456789abcdef"}, {"cachePoint": {"type": "default"}}],
            "messages": [{"role": "user", "content": [{"text": "tail"}]}],
        }));
        let p = prefix(&body).unwrap();
        assert_eq!((p.tokens, p.ttl), (4, DEFAULT_TTL));
        // The same prefix with another tail hashes the same; another prefix does not.
        let other_tail = map(json!({
            "system": [{"text": "0123456789abcdef"}, {"cachePoint": {"type": "default", "ttl": "1h"}}],
            "messages": [{"role": "user", "content": [{"text": "another tail"}]}],
        }));
        let q = prefix(&other_tail).unwrap();
        assert_eq!((q.fingerprint, q.ttl), (p.fingerprint, LONG_TTL));
        let changed = map(json!({
            "system": [{"text": "0123456789abcdeF"}, {"cachePoint": {"type": "default"}}],
            "messages": [{"role": "user", "content": [{"text": "tail"}]}],
        }));
        assert_ne!(prefix(&changed).unwrap().fingerprint, p.fingerprint);
        let unmarked = map(json!({"messages": [{"role": "user", "content": [{"text": "x"}]}]}));
        assert_eq!(prefix(&unmarked), None);
    }

    #[test]
    fn anthropic_marks_include_their_block() {
        let body = map(json!({
            "system": [{"type": "text", "text": "12345678", "cache_control": {"type": "ephemeral"}}],
            "messages": [
                {"role": "user", "content": [
                    {"type": "text", "text": "abcdefgh", "cache_control": {"type": "ephemeral"}},
                    {"type": "text", "text": "not cached"}
                ]}
            ],
        }));
        // The last mark: system and the first message block, 16 characters.
        assert_eq!(prefix(&body).unwrap().tokens, 4);
    }

    #[test]
    fn entries_expire_renew_and_stay_bounded() {
        let (model, region): (Arc<str>, Arc<str>) = ("m".into(), "r".into());
        let p = CachePrefix {
            tokens: 100,
            fingerprint: 7,
            ttl: DEFAULT_TTL,
        };
        let t0 = Instant::now();
        let mut cache = PromptCache::default();
        assert_eq!(cache.lookup(&model, &region, &p, t0), CacheUse::Write(100));
        cache.touch(&model, &region, &p, t0);
        let later = t0 + Duration::from_secs(299);
        assert_eq!(
            cache.lookup(&model, &region, &p, later),
            CacheUse::Read(100)
        );
        cache.touch(&model, &region, &p, later);
        // Renewed by the hit: still cached 5 minutes after the first write.
        let renewed = t0 + Duration::from_secs(400);
        assert_eq!(
            cache.lookup(&model, &region, &p, renewed),
            CacheUse::Read(100)
        );
        let expired = later + DEFAULT_TTL;
        assert_eq!(
            cache.lookup(&model, &region, &p, expired),
            CacheUse::Write(100)
        );
        let other: Arc<str> = "other-region".into();
        assert_eq!(
            cache.lookup(&model, &other, &p, later),
            CacheUse::Write(100)
        );
        for i in 0..(MAX_ENTRIES as u64 + 10) {
            let p = CachePrefix {
                fingerprint: 1_000 + i,
                ..p
            };
            cache.touch(&model, &region, &p, t0 + Duration::from_millis(i));
        }
        assert_eq!(cache.len(), MAX_ENTRIES);
    }
}

//! The restSearch filter vocabulary of contract A.2/A.3, parsed from a JSON body and matched
//! against the data set.
//!
//! Parsing must never panic and never silently ignore a malformed value of a filter tibridge
//! relies on (a bad timestamp or limit is a 400 naming the key), because a filter read wrong
//! here would make a client look correct when it is not.

use serde_json::Value;

use super::dataset::{flag, num, MispAttribute, MispEvent, MispTag};

/// A bad filter, reported to the client as a 400 naming the key.
#[derive(Debug, thiserror::Error)]
#[error("invalid restSearch parameter {key}: {why}")]
pub struct QueryError {
    pub key: String,
    pub why: String,
}

fn bad(key: &str, why: impl Into<String>) -> QueryError {
    QueryError { key: key.to_owned(), why: why.into() }
}

/// `OR` / `NOT` / `AND` lists of terms; `%` is a wildcard, matching ignores ASCII case.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Terms {
    pub or: Vec<String>,
    pub not: Vec<String>,
    pub and: Vec<String>,
}

impl Terms {
    pub fn is_empty(&self) -> bool {
        self.or.is_empty() && self.not.is_empty() && self.and.is_empty()
    }

    /// Parse a value, a list (OR; `!x` = NOT x), or `{"OR":[..],"NOT":[..],"AND":[..]}`.
    pub fn parse(key: &str, v: Option<&Value>) -> Result<Terms, QueryError> {
        let mut t = Terms::default();
        let Some(v) = v else { return Ok(t) };
        match v {
            Value::Null => {}
            Value::Object(map) => {
                for (k, list) in map {
                    let target = match k.to_ascii_uppercase().as_str() {
                        "OR" => &mut t.or,
                        "NOT" => &mut t.not,
                        "AND" => &mut t.and,
                        other => return Err(bad(key, format!("unknown operator {other:?} (use OR, NOT, AND)"))),
                    };
                    for term in list_of(key, list)? {
                        target.push(term);
                    }
                }
            }
            _ => {
                for term in list_of(key, v)? {
                    match term.strip_prefix('!') {
                        Some(negated) => t.not.push(negated.to_owned()),
                        None => t.or.push(term),
                    }
                }
            }
        }
        Ok(t)
    }

    /// Does a single-valued field pass? (`values` are the field's spellings, e.g. both parts
    /// of a composite value.)
    pub fn matches_any_of(&self, values: &[&str]) -> bool {
        let hit = |term: &String| values.iter().any(|v| like(term, v));
        (self.or.is_empty() || self.or.iter().any(hit)) && !self.not.iter().any(hit) && self.and.iter().all(hit)
    }
}

fn list_of(key: &str, v: &Value) -> Result<Vec<String>, QueryError> {
    match v {
        Value::String(s) => Ok(vec![s.clone()]),
        Value::Number(n) => Ok(vec![n.to_string()]),
        Value::Array(items) => items
            .iter()
            .map(|i| match i {
                Value::String(s) => Ok(s.clone()),
                Value::Number(n) => Ok(n.to_string()),
                other => Err(bad(key, format!("list items must be strings, got {other}"))),
            })
            .collect(),
        other => Err(bad(key, format!("expected a string or a list, got {other}"))),
    }
}

/// SQL `LIKE` with `%` only, ignoring ASCII case.
pub fn like(pattern: &str, text: &str) -> bool {
    if !pattern.contains('%') {
        return pattern.eq_ignore_ascii_case(text);
    }
    let p = pattern.to_ascii_lowercase();
    let t = text.to_ascii_lowercase();
    let pieces: Vec<&str> = p.split('%').collect();
    let mut rest = t.as_str();
    for (i, piece) in pieces.iter().enumerate() {
        if piece.is_empty() {
            continue;
        }
        if i == 0 {
            match rest.strip_prefix(piece) {
                Some(r) => rest = r,
                None => return false,
            }
        } else if i == pieces.len() - 1 {
            return rest.ends_with(piece);
        } else {
            match rest.find(piece) {
                Some(pos) => rest = &rest[pos + piece.len()..],
                None => return false,
            }
        }
    }
    true
}

/// A time bound: `[from, to]` in epoch seconds, either side open.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct TimeRange {
    pub from: Option<i64>,
    pub to: Option<i64>,
}

impl TimeRange {
    pub fn contains(&self, t: i64) -> bool {
        !matches!(self.from, Some(f) if t < f) && !matches!(self.to, Some(to) if t > to)
    }
}

/// One time value: epoch seconds (number or digit string) or relative `"7d"`, `"24h"`,
/// `"30m"`, `"90s"`, `"2w"` meaning that long before `now`.
fn time_point(key: &str, v: &Value, now: i64) -> Result<i64, QueryError> {
    if let Some(n) = num(Some(v)) {
        return Ok(n);
    }
    let s = v.as_str().ok_or_else(|| bad(key, format!("expected epoch seconds or a relative time, got {v}")))?;
    let s = s.trim();
    let split = s.len().saturating_sub(1);
    let (digits, unit) = (s.get(..split).unwrap_or(""), s.get(split..).unwrap_or(""));
    let n: i64 = digits.parse().map_err(|_| bad(key, format!("{s:?} is neither epoch seconds nor like \"7d\"")))?;
    let secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 604_800,
        _ => return Err(bad(key, format!("{s:?}: unknown unit {unit:?} (use s, m, h, d, w)"))),
    };
    Ok(now.saturating_sub(n.saturating_mul(secs)))
}

fn time_range(key: &str, v: Option<&Value>, now: i64) -> Result<Option<TimeRange>, QueryError> {
    let Some(v) = v else { return Ok(None) };
    match v {
        Value::Null => Ok(None),
        Value::Array(items) => match items.as_slice() {
            [from, to] => {
                Ok(Some(TimeRange { from: Some(time_point(key, from, now)?), to: Some(time_point(key, to, now)?) }))
            }
            [from] => Ok(Some(TimeRange { from: Some(time_point(key, from, now)?), to: None })),
            _ => Err(bad(key, "a range must have two elements [from, to]")),
        },
        _ => Ok(Some(TimeRange { from: Some(time_point(key, v, now)?), to: None })),
    }
}

/// Which of live and soft-deleted attributes a query wants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Deleted {
    pub live: bool,
    pub deleted: bool,
}

/// Sort key of `order`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OrderField {
    Id,
    EventId,
    Timestamp,
    Type,
    Category,
    Value,
    PublishTimestamp,
}

/// Every filter of an attributes or events restSearch.
#[derive(Clone, Debug, PartialEq)]
pub struct Query {
    pub types: Terms,
    pub categories: Terms,
    pub values: Terms,
    pub uuids: Terms,
    pub eventids: Terms,
    pub orgs: Terms,
    pub tags: Terms,
    /// `Some(true)` only IDS, `Some(false)` only non-IDS.
    pub to_ids: Option<bool>,
    pub published: Option<bool>,
    pub deleted: Deleted,
    pub attribute_time: Option<TimeRange>,
    pub event_time: Option<TimeRange>,
    pub publish_time: Option<TimeRange>,
    pub date_from: Option<String>,
    pub date_to: Option<String>,
    pub enforce_warninglist: bool,
    pub include_warninglist_hits: bool,
    pub include_event_tags: bool,
    pub include_event_uuid: bool,
    pub include_context: bool,
    pub metadata: bool,
    pub limit: Option<usize>,
    pub page: usize,
    pub order: Option<(OrderField, bool)>,
}

fn usize_of(key: &str, v: Option<&Value>) -> Result<Option<usize>, QueryError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(v) => num(Some(v))
            .and_then(|n| usize::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| bad(key, format!("expected a non-negative integer, got {v}"))),
    }
}

fn bool_of(key: &str, v: Option<&Value>) -> Result<bool, QueryError> {
    match v {
        None | Some(Value::Null) => Ok(false),
        Some(v) => flag(Some(v)).ok_or_else(|| bad(key, format!("expected 0/1 or a boolean, got {v}"))),
    }
}

impl Query {
    /// Parse a restSearch body (a JSON object, optionally wrapped in `{"request": {...}}`).
    /// `events_scope` selects what `timestamp` means (event vs attribute last edit).
    pub fn parse(body: &Value, now: i64, events_scope: bool) -> Result<Query, QueryError> {
        let body = body.get("request").filter(|r| r.is_object()).unwrap_or(body);
        let obj = body.as_object().ok_or_else(|| bad("body", "expected a JSON object"))?;
        let get = |k: &str| obj.get(k);

        if let Some(fmt) = get("returnFormat").and_then(Value::as_str) {
            if !fmt.eq_ignore_ascii_case("json") {
                return Err(bad("returnFormat", format!("{fmt:?} is not served by the lab (only json)")));
            }
        }
        let to_ids = match get("to_ids") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.eq_ignore_ascii_case("exclude") => Some(false),
            Some(v) => match flag(Some(v)) {
                Some(true) => Some(true),
                Some(false) => None,
                None => return Err(bad("to_ids", format!("expected 0, 1 or \"exclude\", got {v}"))),
            },
        };
        let published = match get("published") {
            None | Some(Value::Null) => None,
            Some(Value::Array(items)) if items.len() > 1 => None,
            Some(v) => {
                let v = v.as_array().and_then(|a| a.first()).unwrap_or(v);
                Some(flag(Some(v)).ok_or_else(|| bad("published", format!("expected a boolean, got {v}")))?)
            }
        };
        let deleted = match get("deleted") {
            None | Some(Value::Null) => Deleted { live: true, deleted: false },
            Some(Value::Array(items)) => {
                let mut d = Deleted { live: false, deleted: false };
                for i in items {
                    match flag(Some(i)) {
                        Some(true) => d.deleted = true,
                        Some(false) => d.live = true,
                        None => return Err(bad("deleted", format!("list items must be 0 or 1, got {i}"))),
                    }
                }
                d
            }
            Some(Value::String(s)) if s.eq_ignore_ascii_case("only") => Deleted { live: false, deleted: true },
            Some(v) => match flag(Some(v)) {
                Some(true) => Deleted { live: false, deleted: true },
                Some(false) => Deleted { live: true, deleted: false },
                None => return Err(bad("deleted", format!("expected 0, 1 or [0,1], got {v}"))),
            },
        };
        let ts = time_range("timestamp", get("timestamp"), now)?;
        let (attribute_time, event_time) = if events_scope {
            (
                time_range("attribute_timestamp", get("attribute_timestamp"), now)?,
                ts.or(time_range("event_timestamp", get("event_timestamp"), now)?),
            )
        } else {
            (
                ts.or(time_range("attribute_timestamp", get("attribute_timestamp"), now)?),
                time_range("event_timestamp", get("event_timestamp"), now)?,
            )
        };
        let publish_time = match time_range("publish_timestamp", get("publish_timestamp"), now)? {
            Some(r) => Some(r),
            None => time_range("last", get("last"), now)?,
        };
        let order = match get("order").and_then(Value::as_str) {
            None => None,
            Some(o) => Some(parse_order(o)?),
        };
        let page = usize_of("page", get("page"))?.unwrap_or(1).max(1);
        let date = |k: &str| -> Result<Option<String>, QueryError> {
            match get(k) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) if s.len() == 10 && s.as_bytes().get(4) == Some(&b'-') => Ok(Some(s.clone())),
                Some(v) => Err(bad(k, format!("expected a date YYYY-MM-DD, got {v}"))),
            }
        };
        Ok(Query {
            types: Terms::parse("type", get("type"))?,
            categories: Terms::parse("category", get("category"))?,
            values: Terms::parse("value", get("value"))?,
            uuids: Terms::parse("uuid", get("uuid"))?,
            eventids: Terms::parse("eventid", get("eventid"))?,
            orgs: Terms::parse("org", get("org"))?,
            tags: Terms::parse("tags", get("tags").or(get("tag")).or(get("event_tags")))?,
            to_ids,
            published,
            deleted,
            attribute_time,
            event_time,
            publish_time,
            date_from: date("from")?,
            date_to: date("to")?,
            enforce_warninglist: bool_of("enforceWarninglist", get("enforceWarninglist"))?,
            include_warninglist_hits: bool_of("includeWarninglistHits", get("includeWarninglistHits"))?,
            include_event_tags: bool_of("includeEventTags", get("includeEventTags"))?,
            include_event_uuid: bool_of("includeEventUuid", get("includeEventUuid"))?,
            include_context: bool_of("includeContext", get("includeContext"))?,
            metadata: bool_of("metadata", get("metadata"))?,
            // MISP reads `limit: 0` as no limit, not as an empty page.
            limit: usize_of("limit", get("limit"))?.filter(|l| *l > 0),
            page,
            order,
        })
    }

    /// Whether the query has filters that look inside attributes (for events restSearch).
    pub fn has_attribute_filters(&self) -> bool {
        !self.types.is_empty()
            || !self.categories.is_empty()
            || !self.values.is_empty()
            || self.to_ids.is_some()
            || self.attribute_time.is_some()
    }

    /// Event-level filters (both scopes).
    pub fn event_matches(&self, e: &MispEvent, check_tags: bool) -> bool {
        if let Some(p) = self.published {
            if e.published != p {
                return false;
            }
        }
        if let Some(r) = &self.event_time {
            if !r.contains(e.timestamp) {
                return false;
            }
        }
        if let Some(r) = &self.publish_time {
            if !r.contains(e.publish_timestamp) {
                return false;
            }
        }
        if let Some(from) = &self.date_from {
            if e.date.as_str() < from.as_str() {
                return false;
            }
        }
        if let Some(to) = &self.date_to {
            if e.date.as_str() > to.as_str() {
                return false;
            }
        }
        if !self.eventids.is_empty() && !self.eventids.matches_any_of(&[&e.id.to_string(), &e.uuid]) {
            return false;
        }
        if !self.orgs.is_empty() && !self.orgs.matches_any_of(&[&e.orgc.name, &e.orgc.id.to_string(), &e.orgc.uuid]) {
            return false;
        }
        if check_tags && !tags_match(&self.tags, e.tags.iter()) {
            return false;
        }
        true
    }

    /// Attribute-level filters; `event_tags` joins the attribute's own tags for `tags`.
    pub fn attribute_matches(&self, a: &MispAttribute, event: &MispEvent, uuid_also_event: bool) -> bool {
        if a.deleted && !self.deleted.deleted || !a.deleted && !self.deleted.live {
            return false;
        }
        if let Some(ids) = self.to_ids {
            if a.to_ids != ids {
                return false;
            }
        }
        if let Some(r) = &self.attribute_time {
            if !r.contains(a.timestamp) {
                return false;
            }
        }
        if !self.types.matches_any_of(&[&a.attr_type]) || !self.categories.matches_any_of(&[&a.category]) {
            return false;
        }
        if !self.values.is_empty() {
            let mut spellings = a.parts();
            spellings.push(&a.value);
            if !self.values.matches_any_of(&spellings) {
                return false;
            }
        }
        if !self.uuids.is_empty() {
            let spellings: Vec<&str> = if uuid_also_event { vec![&a.uuid, &event.uuid] } else { vec![&a.uuid] };
            if !self.uuids.matches_any_of(&spellings) {
                return false;
            }
        }
        tags_match(&self.tags, a.tags.iter().chain(event.tags.iter()))
    }
}

/// Tags of a set: OR = at least one tag matches one term, NOT = no tag matches any term,
/// AND = every term matches some tag.
fn tags_match<'a>(terms: &Terms, tags: impl Iterator<Item = &'a MispTag> + Clone) -> bool {
    let hit = |term: &String| tags.clone().any(|t| like(term, &t.name));
    (terms.or.is_empty() || terms.or.iter().any(hit)) && !terms.not.iter().any(hit) && terms.and.iter().all(hit)
}

fn parse_order(o: &str) -> Result<(OrderField, bool), QueryError> {
    let mut words = o.split_whitespace();
    let field = words.next().unwrap_or("");
    let dir = words.next().unwrap_or("asc");
    let asc = match dir.to_ascii_lowercase().as_str() {
        "asc" => true,
        "desc" => false,
        other => return Err(bad("order", format!("direction {other:?} is neither asc nor desc"))),
    };
    let name = field.strip_prefix("Attribute.").unwrap_or(field);
    let f = match name {
        "id" => OrderField::Id,
        "event_id" => OrderField::EventId,
        "timestamp" => OrderField::Timestamp,
        "type" => OrderField::Type,
        "category" => OrderField::Category,
        "value" => OrderField::Value,
        "Event.publish_timestamp" => OrderField::PublishTimestamp,
        "Event.id" => OrderField::EventId,
        "Event.timestamp" => OrderField::Timestamp,
        _ => return Err(bad("order", format!("cannot order by {field:?}"))),
    };
    Ok((f, asc))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn like_handles_wildcards_and_case() {
        assert!(like("tlp:%", "TLP:RED"));
        assert!(like("%red", "tlp:red"));
        assert!(like("%:r%d", "tlp:red"));
        assert!(!like("tlp:%", "type:osint"));
        assert!(like("sha1", "SHA1"));
        assert!(!like("sha1", "sha12"));
        assert!(like("%", ""));
    }

    #[test]
    fn terms_read_every_form() {
        let t = Terms::parse("tags", Some(&json!(["a", "!b"]))).unwrap();
        assert_eq!((t.or, t.not), (vec!["a".to_owned()], vec!["b".to_owned()]));
        let t = Terms::parse("tags", Some(&json!({"NOT": ["tlp:red"], "OR": "x"}))).unwrap();
        assert_eq!((t.or, t.not), (vec!["x".to_owned()], vec!["tlp:red".to_owned()]));
        assert!(Terms::parse("tags", Some(&json!({"XOR": []}))).is_err());
        assert!(Terms::parse("tags", Some(&json!([{"a": 1}]))).is_err());
    }

    #[test]
    fn relative_and_absolute_times() {
        let now = 1_000_000;
        assert_eq!(time_point("t", &json!("7d"), now).unwrap(), now - 7 * 86_400);
        assert_eq!(time_point("t", &json!("30m"), now).unwrap(), now - 1800);
        assert_eq!(time_point("t", &json!("1617056037"), now).unwrap(), 1617056037);
        assert_eq!(time_point("t", &json!(5), now).unwrap(), 5);
        for bad_value in [json!("7y"), json!("d"), json!(""), json!(true), json!("é")] {
            assert!(time_point("t", &bad_value, now).is_err(), "{bad_value}");
        }
        let r = time_range("t", Some(&json!(["14d", "7d"])), now).unwrap().unwrap();
        assert!(r.contains(now - 10 * 86_400) && !r.contains(now - 86_400));
    }

    #[test]
    fn parses_the_body_pymisp_sends() {
        // Body recorded from PyMISP 2.5.34.4 in contract A.2.
        let body = json!({"returnFormat":"json","page":1,"limit":500,"type":["sha1","domain"],"tags":{"NOT":["tlp:red"]},
            "withAttachments":0,"metadata":0,"timestamp":1705312800,"published":true,"enforceWarninglist":1,
            "to_ids":1,"deleted":[0,1],"includeEventUuid":0,"includeEventTags":1,"sgReferenceOnly":0,
            "includeContext":0,"headerless":0,"includeSightings":0,"includeDecayScore":0,
            "includeCorrelations":0,"excludeDecayed":0});
        let q = Query::parse(&body, 2_000_000_000, false).unwrap();
        assert_eq!(q.limit, Some(500));
        assert_eq!(q.to_ids, Some(true));
        assert_eq!(q.published, Some(true));
        assert_eq!(q.deleted, Deleted { live: true, deleted: true });
        assert!(q.enforce_warninglist && q.include_event_tags && !q.include_context);
        assert_eq!(q.attribute_time, Some(TimeRange { from: Some(1705312800), to: None }));
        assert_eq!(q.types.or.len(), 2);
    }

    #[test]
    fn rejects_bad_values_by_name() {
        for (body, key) in [
            (json!({"limit": "many"}), "limit"),
            (json!({"limit": -1}), "limit"),
            (json!({"to_ids": "maybe"}), "to_ids"),
            (json!({"deleted": [0, "x"]}), "deleted"),
            (json!({"order": "Attribute.secret asc"}), "order"),
            (json!({"timestamp": "soon"}), "timestamp"),
            (json!({"returnFormat": "csv"}), "returnFormat"),
            (json!([1]), "body"),
        ] {
            let err = Query::parse(&body, 0, false).unwrap_err();
            assert_eq!(err.key, key, "{body}");
        }
        let q = Query::parse(&json!({"to_ids": "exclude", "deleted": 1}), 0, false).unwrap();
        assert_eq!(q.to_ids, Some(false));
        assert_eq!(q.deleted, Deleted { live: false, deleted: true });
    }
}

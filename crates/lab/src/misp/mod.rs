//! MISP simulator: the REST endpoints tibridge and PyMISP use (contract A.1–A.5, plus
//! `events/index` and `events/view` for PyMISP's feed generator) and a MISP feed directory over
//! HTTP (A.6), over an in-memory data set tests can change.
//!
//! It follows the contract to the letter where clients can trip: ids and epoch times as
//! strings, `{"response":{"Attribute":[..]}}` vs `{"response":[{"Event":..}]}`, the paging
//! headers, and pages shortened by `enforceWarninglist` AFTER the page was sliced (so a short
//! page is not the end). It must never answer an API call without a valid key (the feed under
//! `/feed/` is keyless, like a real feed), and never panic on a hostile body: bad input is a
//! 400 JSON error naming the parameter.
//!
//! Choices where the contract is silent (documented so tests can rely on them):
//! - the `tags` filter of attributes restSearch looks at the attribute's tags and its event's
//!   tags together (NOT excludes the attribute if either carries the tag);
//! - `uuid` matches the attribute uuid or its event's uuid; `value` matches the whole value or
//!   either part of a composite;
//! - without `order`, results come in attribute id order;
//! - the warninglist is a set of exact values (case-insensitive); a composite matches if
//!   either part is listed; `includeWarninglistHits` marks to_ids hits with one `warnings`
//!   entry naming the list "tibridge lab warninglist";
//! - the feed holds published events only (PyMISP's feed generator default) and live
//!   attributes only;
//! - a sighting matching nothing is a 400 `{"message":"Could not add the Sighting. Reason: ..."}`.

pub mod dataset;
pub mod describe;
pub mod query;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

use axum::body::{Body, Bytes};
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::Serialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

pub use dataset::{
    generate_dataset, DatasetError, MispAttribute, MispDataset, MispEvent, MispObject, MispOrg, MispTag,
};
use query::{OrderField, Query};

/// A change a test asked for that the data set cannot make.
#[derive(Debug, thiserror::Error)]
pub enum MispError {
    #[error("MISP lab: no event with id {0}")]
    NoSuchEvent(u64),
    #[error("MISP lab: no attribute with id or uuid {0:?}")]
    NoSuchAttribute(String),
}

/// One sighting the simulator recorded (`POST /sightings/add`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Sighting {
    pub id: u64,
    pub attribute_id: u64,
    pub attribute_uuid: String,
    pub event_id: u64,
    pub uuid: String,
    pub source: String,
    /// "0" sighting, "1" false positive, "2" expiration.
    pub sighting_type: String,
    pub date_sighting: i64,
}

#[derive(Debug)]
struct Inner {
    data: MispDataset,
    api_keys: Vec<String>,
    warninglist: HashSet<String>,
    down: bool,
    sightings: Vec<Sighting>,
}

/// The sorted matches of the last restSearch, so paging through a large data set costs one
/// filter-and-sort, not one per page. Valid while the data set's generation is unchanged.
#[derive(Debug)]
struct HitCache {
    query: Query,
    generation: u64,
    hits: Arc<Vec<(usize, usize)>>,
}

/// Shared state of the MISP simulator; tests hold an `Arc` and change or inspect it while the
/// server runs.
#[derive(Debug)]
pub struct MispState {
    inner: RwLock<Inner>,
    /// Bumped by every change to the state (any write lock).
    generation: AtomicU64,
    cache: Mutex<Option<HitCache>>,
    search_bodies: Mutex<VecDeque<Value>>,
}

const MAX_RECORDED_BODIES: usize = 1000;

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

impl MispState {
    /// A simulator serving `data`, accepting `api_key` (raw, in `Authorization` or
    /// `X-MISP-AUTH`).
    pub fn new(mut data: MispDataset, api_key: impl Into<String>) -> Arc<MispState> {
        data.attributes.sort_by_key(|a| a.id);
        Arc::new(MispState {
            inner: RwLock::new(Inner {
                data,
                api_keys: vec![api_key.into()],
                warninglist: HashSet::new(),
                down: false,
                sightings: Vec::new(),
            }),
            generation: AtomicU64::new(0),
            cache: Mutex::new(None),
            search_bodies: Mutex::new(VecDeque::new()),
        })
    }

    fn read(&self) -> RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Inner> {
        let guard = self.inner.write().unwrap_or_else(|e| e.into_inner());
        self.generation.fetch_add(1, Ordering::SeqCst);
        guard
    }

    /// Indices (attribute, event) of every attribute matching `q` in `q`'s order, paging
    /// aside. `g` must be a read guard of this state.
    fn hits(&self, g: &Inner, q: &Query) -> Arc<Vec<(usize, usize)>> {
        let generation = self.generation.load(Ordering::SeqCst);
        let mut key = q.clone();
        key.page = 1;
        {
            let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(c) = cache.as_ref().filter(|c| c.generation == generation && c.query == key) {
                return c.hits.clone();
            }
        }
        // Event-level filters once per event, not once per attribute.
        let events: HashMap<u64, (usize, &MispEvent)> = g
            .data
            .events
            .iter()
            .enumerate()
            .filter(|(_, e)| q.event_matches(e, false))
            .map(|(i, e)| (e.id, (i, e)))
            .collect();
        let mut found: Vec<(&MispAttribute, &MispEvent, (usize, usize))> = g
            .data
            .attributes
            .iter()
            .enumerate()
            .filter_map(|(ai, a)| {
                let (ei, e) = *events.get(&a.event_id)?;
                q.attribute_matches(a, e, true).then_some((a, e, (ai, ei)))
            })
            .collect();
        if let Some((field, asc)) = q.order {
            sort_attributes(&mut found, field);
            if !asc {
                found.reverse();
            }
        }
        let hits = Arc::new(found.into_iter().map(|(_, _, idx)| idx).collect::<Vec<_>>());
        *self.cache.lock().unwrap_or_else(|e| e.into_inner()) =
            Some(HitCache { query: key, generation, hits: hits.clone() });
        hits
    }

    /// Accept another key too (e.g. a second user).
    pub fn add_api_key(&self, key: impl Into<String>) {
        self.write().api_keys.push(key.into());
    }

    /// While down, every request gets a 500 (a broken MISP, not a network fault).
    pub fn set_down(&self, down: bool) {
        self.write().down = down;
    }

    /// Values dropped by `enforceWarninglist` (compared case-insensitively).
    pub fn set_warninglist<I: IntoIterator<Item = S>, S: AsRef<str>>(&self, values: I) {
        self.write().warninglist = values.into_iter().map(|v| v.as_ref().to_ascii_lowercase()).collect();
    }

    /// A copy of the whole data set.
    pub fn dataset(&self) -> MispDataset {
        self.read().data.clone()
    }

    /// Replace the whole data set.
    pub fn replace_dataset(&self, mut data: MispDataset) {
        data.attributes.sort_by_key(|a| a.id);
        self.write().data = data;
    }

    pub fn attribute_count(&self) -> usize {
        self.read().data.attributes.len()
    }

    pub fn attribute(&self, id_or_uuid: &str) -> Option<MispAttribute> {
        let g = self.read();
        g.data.attributes.iter().find(|a| matches_key(a, id_or_uuid)).cloned()
    }

    pub fn sightings(&self) -> Vec<Sighting> {
        self.read().sightings.clone()
    }

    /// The restSearch bodies received, oldest first (the last 1000).
    pub fn search_bodies(&self) -> Vec<Value> {
        self.search_bodies.lock().unwrap_or_else(|e| e.into_inner()).iter().cloned().collect()
    }

    /// Add an event; returns its id. Its timestamp is now.
    pub fn add_event(&self, info: &str, tags: &[&str], published: bool) -> u64 {
        let mut g = self.write();
        let t = now();
        let id = g.data.next_event_id();
        let tags = tags.iter().map(|n| g.data.tag(n)).collect();
        let org = MispOrg { id: 1, name: "ORGNAME".into(), uuid: "5d9f1a5e-6a00-4d3f-8c55-24b2a4c0b0f1".into() };
        g.data.events.push(MispEvent {
            id,
            uuid: uuid::Uuid::new_v4().to_string(),
            info: info.to_owned(),
            date: dataset::date_of(t),
            threat_level_id: 2,
            analysis: 2,
            published,
            timestamp: t,
            publish_timestamp: if published { t } else { 0 },
            distribution: 1,
            orgc: org.clone(),
            org,
            tags,
            objects: Vec::new(),
        });
        id
    }

    /// Add an attribute to event `event_id` with the type's default category; its timestamp
    /// is now (or one past the newest, so a cursor always sees it). Returns the attribute.
    pub fn add_attribute(
        &self,
        event_id: u64,
        attr_type: &str,
        value: &str,
        to_ids: bool,
        tags: &[&str],
    ) -> Result<MispAttribute, MispError> {
        let mut g = self.write();
        if g.data.event(event_id).is_none() {
            return Err(MispError::NoSuchEvent(event_id));
        }
        let ts = fresh_timestamp(&g.data);
        let tags = tags.iter().map(|n| g.data.tag(n)).collect();
        let attr = MispAttribute {
            id: g.data.next_attribute_id(),
            event_id,
            object_id: 0,
            object_relation: None,
            uuid: uuid::Uuid::new_v4().to_string(),
            attr_type: attr_type.to_owned(),
            category: dataset::default_category(attr_type).to_owned(),
            value: value.to_owned(),
            to_ids,
            deleted: false,
            disable_correlation: false,
            timestamp: ts,
            distribution: 5,
            comment: String::new(),
            first_seen: None,
            last_seen: None,
            tags,
        };
        g.data.attributes.push(attr.clone());
        touch_event(&mut g.data, event_id, ts);
        Ok(attr)
    }

    /// Change an attribute (by id or uuid) and bump its timestamp, as an edit in MISP does.
    pub fn edit_attribute(
        &self,
        id_or_uuid: &str,
        change: impl FnOnce(&mut MispAttribute),
    ) -> Result<MispAttribute, MispError> {
        let mut g = self.write();
        let ts = fresh_timestamp(&g.data);
        let attr = g
            .data
            .attributes
            .iter_mut()
            .find(|a| matches_key(a, id_or_uuid))
            .ok_or_else(|| MispError::NoSuchAttribute(id_or_uuid.to_owned()))?;
        change(attr);
        attr.timestamp = ts;
        let (out, event_id) = (attr.clone(), attr.event_id);
        touch_event(&mut g.data, event_id, ts);
        Ok(out)
    }

    /// Soft delete: `deleted: true` and a bumped timestamp, so an incremental poll sees it.
    pub fn soft_delete_attribute(&self, id_or_uuid: &str) -> Result<MispAttribute, MispError> {
        self.edit_attribute(id_or_uuid, |a| a.deleted = true)
    }

    /// Hard delete: the attribute vanishes without a trace in restSearch.
    pub fn hard_delete_attribute(&self, id_or_uuid: &str) -> Result<MispAttribute, MispError> {
        let mut g = self.write();
        let pos = g
            .data
            .attributes
            .iter()
            .position(|a| matches_key(a, id_or_uuid))
            .ok_or_else(|| MispError::NoSuchAttribute(id_or_uuid.to_owned()))?;
        Ok(g.data.attributes.remove(pos))
    }

    /// Publish (or unpublish) an event; publishing sets `publish_timestamp` to now.
    pub fn set_published(&self, event_id: u64, published: bool) -> Result<(), MispError> {
        let mut g = self.write();
        let t = fresh_timestamp(&g.data);
        let e = g.data.events.iter_mut().find(|e| e.id == event_id).ok_or(MispError::NoSuchEvent(event_id))?;
        e.published = published;
        if published {
            e.publish_timestamp = t;
        }
        e.timestamp = t;
        Ok(())
    }
}

fn matches_key(a: &MispAttribute, key: &str) -> bool {
    a.uuid.eq_ignore_ascii_case(key) || key.parse::<u64>().map(|id| id == a.id).unwrap_or(false)
}

/// Now, or one second past the newest timestamp in the data set if that is later, so edits
/// made within one second are still strictly newer than what a client saw.
fn fresh_timestamp(data: &MispDataset) -> i64 {
    let newest = data.attributes.iter().map(|a| a.timestamp).max().unwrap_or(0);
    now().max(newest + 1)
}

fn touch_event(data: &mut MispDataset, event_id: u64, ts: i64) {
    if let Some(e) = data.events.iter_mut().find(|e| e.id == event_id) {
        e.timestamp = e.timestamp.max(ts);
    }
}

/// The MISP simulator's routes. Wrap with [`crate::serve`] (which adds fault injection).
pub fn router(state: Arc<MispState>) -> Router {
    let api = Router::new()
        .route("/servers/getVersion", get(get_version))
        .route("/servers/getVersion.json", get(get_version))
        .route("/users/view/me", get(view_me))
        .route("/users/view/me.json", get(view_me))
        .route("/attributes/describeTypes", get(describe_types))
        .route("/attributes/describeTypes.json", get(describe_types))
        .route("/attributes/restSearch", get(attributes_search).post(attributes_search))
        .route("/attributes/restSearch.json", get(attributes_search).post(attributes_search))
        .route("/events/restSearch", get(events_search).post(events_search))
        .route("/events/restSearch.json", get(events_search).post(events_search))
        .route("/events/index", post(events_index))
        .route("/events/index.json", post(events_index))
        .route("/events/view/{id}", get(event_view).post(event_view))
        .route("/sightings/add", post(add_sighting))
        .route("/sightings/add/{id}", post(add_sighting_for))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), require_key));
    let feed = Router::new()
        .route("/feed/manifest.json", get(feed_manifest))
        .route("/feed/hashes.csv", get(feed_hashes))
        .route("/feed/{file}", get(feed_event))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), require_up));
    api.merge(feed).fallback(not_found).with_state(state)
}

fn error(status: StatusCode, name: &str, message: &str, url: &str) -> Response {
    (status, axum::Json(json!({"name": name, "message": message, "url": url}))).into_response()
}

async fn not_found(uri: Uri) -> Response {
    error(StatusCode::NOT_FOUND, "Not Found", "The requested address was not found on this server.", uri.path())
}

fn down_response(uri: &Uri) -> Response {
    error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "An Internal Error Has Occurred.",
        "An Internal Error Has Occurred.",
        uri.path(),
    )
}

async fn require_up(State(state): State<Arc<MispState>>, req: Request, next: Next) -> Response {
    if state.read().down {
        return down_response(req.uri());
    }
    next.run(req).await
}

async fn require_key(State(state): State<Arc<MispState>>, req: Request, next: Next) -> Response {
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .or_else(|| req.headers().get("x-misp-auth"))
        .and_then(|v| v.to_str().ok())
        .map(str::trim);
    let (ok, down) = {
        let g = state.read();
        (presented.is_some_and(|k| !k.is_empty() && g.api_keys.iter().any(|a| a == k)), g.down)
    };
    if !ok {
        let msg = "Authentication failed. Please make sure you pass the API key of an API enabled user along in the Authorization header.";
        return error(StatusCode::FORBIDDEN, msg, msg, req.uri().path());
    }
    if down {
        return down_response(req.uri());
    }
    next.run(req).await
}

async fn get_version() -> Response {
    axum::Json(json!({
        "version": "2.5.2",
        "pymisp_recommended_version": "2.5.34.4",
        "perm_sync": false,
        "perm_sighting": true,
        "perm_galaxy_editor": false,
        "request_encoding": [],
        "filter_sightings": true,
    }))
    .into_response()
}

async fn view_me() -> Response {
    axum::Json(json!({
        "User": {"id": "1", "org_id": "1", "email": "lab@tibridge.invalid", "autoalert": false,
                 "invited_by": "0", "gpgkey": null, "certif_public": "", "nids_sid": "4000000",
                 "termsaccepted": true, "newsread": "0", "role_id": "3", "change_pw": false,
                 "contactalert": false, "disabled": false, "expiration": null, "current_login": "0",
                 "last_login": "0", "force_logout": false, "date_created": "0", "date_modified": "0",
                 "sub": null, "external_auth_required": false, "external_auth_key": null,
                 "last_api_access": "0", "notification_daily": false, "notification_weekly": false,
                 "notification_monthly": false, "totp": null, "hotp_counter": null, "last_pw_change": "0"},
        "Role": {"id": "3", "name": "User", "created": "2024-01-01 00:00:00", "modified": "2024-01-01 00:00:00",
                 "perm_add": true, "perm_modify": true, "perm_modify_org": true, "perm_publish": false,
                 "perm_delegate": false, "perm_sync": false, "perm_admin": false, "perm_audit": false,
                 "perm_full": false, "perm_auth": true, "perm_site_admin": false, "perm_regexp_access": false,
                 "perm_tagger": true, "perm_template": false, "perm_sharing_group": false,
                 "perm_tag_editor": false, "perm_sighting": true, "perm_object_template": false,
                 "default_role": true, "memory_limit": "", "max_execution_time": "",
                 "restricted_to_site_admin": false, "perm_publish_zmq": false, "perm_publish_kafka": false,
                 "perm_decaying": true, "enforce_rate_limit": false, "rate_limit_count": "0",
                 "perm_galaxy_editor": false, "perm_warninglist": false, "perm_view_feed_correlations": false,
                 "perm_analyst_data": false, "permission": "3", "permission_description": "publish"},
        "UserSetting": [],
        "Organisation": {"id": "1", "name": "ORGNAME", "uuid": "5d9f1a5e-6a00-4d3f-8c55-24b2a4c0b0f1", "local": true},
    }))
    .into_response()
}

async fn describe_types() -> Response {
    axum::Json(json!({"result": describe::describe_types()})).into_response()
}

/// The body of a restSearch: JSON for POST; for GET the query string as an object of strings
/// (a GET without parameters is refused, as MISP does).
// The error is the HTTP answer itself, built at most once per request.
#[allow(clippy::result_large_err)]
fn search_body(method: &Method, uri: &Uri, body: &Bytes) -> Result<Value, Response> {
    if method == Method::GET {
        let q = uri.query().unwrap_or("");
        if q.is_empty() {
            let msg = "Restsearch queries using GET and no parameters are not allowed. If you have passed parameters via a JSON body, make sure you use POST requests.";
            return Err(error(StatusCode::BAD_REQUEST, msg, msg, uri.path()));
        }
        let map: serde_json::Map<String, Value> = url::form_urlencoded::parse(q.as_bytes())
            .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
            .collect();
        return Ok(Value::Object(map));
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(json!({}));
    }
    serde_json::from_slice(body).map_err(|e| {
        error(
            StatusCode::BAD_REQUEST,
            "Invalid JSON body.",
            &format!("The request body is not valid JSON: {e}"),
            uri.path(),
        )
    })
}

fn json_response(value: &Value, count: usize, skipped: usize) -> Response {
    json_bytes_response(serde_json::to_vec(value).unwrap_or_default(), count, skipped)
}

fn json_bytes_response(bytes: Vec<u8>, count: usize, skipped: usize) -> Response {
    let mut resp = Response::new(Body::from(bytes));
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert("x-result-count", HeaderValue::from(count));
    h.insert("x-skipped-elements-count", HeaderValue::from(skipped));
    h.insert("x-export-module-used", HeaderValue::from_static("json"));
    h.insert("x-response-format", HeaderValue::from_static("json"));
    resp
}

fn record(state: &MispState, body: &Value) {
    let mut bodies = state.search_bodies.lock().unwrap_or_else(|e| e.into_inner());
    if bodies.len() >= MAX_RECORDED_BODIES {
        bodies.pop_front();
    }
    bodies.push_back(body.clone());
}

/// Slice page `page` (1-based) of `limit` items; no limit = everything.
fn page_of<T>(items: Vec<T>, limit: Option<usize>, page: usize) -> Vec<T> {
    match limit {
        None => items,
        Some(limit) => {
            let start = page.saturating_sub(1).saturating_mul(limit);
            items.into_iter().skip(start).take(limit).collect()
        }
    }
}

fn warninglisted(list: &HashSet<String>, a: &MispAttribute) -> bool {
    !list.is_empty()
        && (list.contains(&a.value.to_ascii_lowercase())
            || a.parts().iter().any(|p| list.contains(&p.to_ascii_lowercase())))
}

async fn attributes_search(State(state): State<Arc<MispState>>, method: Method, uri: Uri, body: Bytes) -> Response {
    let body = match search_body(&method, &uri, &body) {
        Ok(b) => b,
        Err(resp) => return resp,
    };
    record(&state, &body);
    let q = match Query::parse(&body, now(), false) {
        Ok(q) => q,
        Err(e) => return error(StatusCode::BAD_REQUEST, "Invalid parameter.", &e.to_string(), uri.path()),
    };
    let g = state.read();
    let hits = state.hits(&g, &q);
    let page: &[(usize, usize)] = match q.limit {
        None => &hits,
        Some(limit) => {
            let start = q.page.saturating_sub(1).saturating_mul(limit).min(hits.len());
            let end = start.saturating_add(limit).min(hits.len());
            hits.get(start..end).unwrap_or_default()
        }
    };
    let before = page.len();
    // Warninglist hits are dropped AFTER the page was cut, so the page comes back short.
    let page: Vec<&(usize, usize)> = page
        .iter()
        .filter(|(ai, _)| {
            !(q.enforce_warninglist && g.data.attributes.get(*ai).is_some_and(|a| warninglisted(&g.warninglist, a)))
        })
        .collect();
    let skipped = before - page.len();
    let out: Vec<AttrOut<'_>> = page
        .iter()
        .filter_map(|(ai, ei)| {
            let a = g.data.attributes.get(*ai)?;
            // Warnings are computed for to_ids attributes only (MISP `checkForWarning`).
            let warned = q.include_warninglist_hits && a.to_ids && warninglisted(&g.warninglist, a);
            Some(AttrOut::new(a, g.data.events.get(*ei)?, &q, warned))
        })
        .collect();
    let count = out.len();
    let bytes = serde_json::to_vec(&AttributesReply { response: AttributeList { attribute: out } }).unwrap_or_default();
    json_bytes_response(bytes, count, skipped)
}

/// `{"response":{"Attribute":[...]}}`, serialized straight from the data set.
#[derive(Serialize)]
struct AttributesReply<'a> {
    response: AttributeList<'a>,
}

#[derive(Serialize)]
struct AttributeList<'a> {
    #[serde(rename = "Attribute")]
    attribute: Vec<AttrOut<'a>>,
}

/// One attribute as restSearch shows it: ids and times as strings, flags as booleans.
#[derive(Serialize)]
struct AttrOut<'a> {
    id: String,
    event_id: String,
    object_id: String,
    object_relation: &'a Option<String>,
    category: &'a str,
    #[serde(rename = "type")]
    attr_type: &'a str,
    to_ids: bool,
    uuid: &'a str,
    timestamp: String,
    distribution: String,
    sharing_group_id: &'static str,
    comment: &'a str,
    deleted: bool,
    disable_correlation: bool,
    first_seen: &'a Option<String>,
    last_seen: &'a Option<String>,
    value: &'a str,
    #[serde(rename = "Event")]
    event: EventOut<'a>,
    #[serde(rename = "Object", skip_serializing_if = "Option::is_none")]
    object: Option<Value>,
    #[serde(rename = "Tag", skip_serializing_if = "Vec::is_empty")]
    tags: Vec<TagOut<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    event_uuid: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    warnings: Option<Value>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum EventOut<'a> {
    Short {
        org_id: String,
        distribution: String,
        id: String,
        info: &'a str,
        orgc_id: String,
        uuid: &'a str,
        publish_timestamp: String,
    },
    Context(Value),
}

#[derive(Serialize)]
struct TagOut<'a> {
    id: String,
    name: &'a str,
    colour: &'a str,
    exportable: bool,
    numerical_value: Option<i64>,
    local: u8,
    #[serde(skip_serializing_if = "Option::is_none")]
    inherited: Option<u8>,
}

impl<'a> TagOut<'a> {
    fn new(t: &'a MispTag, inherited: bool) -> Self {
        TagOut {
            id: t.id.to_string(),
            name: &t.name,
            colour: &t.colour,
            exportable: true,
            numerical_value: None,
            local: u8::from(t.local),
            inherited: inherited.then_some(1),
        }
    }
}

impl<'a> AttrOut<'a> {
    fn new(a: &'a MispAttribute, e: &'a MispEvent, q: &Query, warned: bool) -> Self {
        let event = if q.include_context {
            EventOut::Context(
                json!({"id": e.id.to_string(), "org_id": e.org.id.to_string(), "orgc_id": e.orgc.id.to_string(),
               "date": e.date, "threat_level_id": e.threat_level_id.to_string(), "info": e.info,
               "published": e.published, "uuid": e.uuid, "analysis": e.analysis.to_string(),
               "timestamp": e.timestamp.to_string(), "distribution": e.distribution.to_string(),
               "publish_timestamp": e.publish_timestamp.to_string(), "sharing_group_id": "0",
               "Orgc": {"id": e.orgc.id.to_string(), "name": e.orgc.name, "uuid": e.orgc.uuid},
               "Tag": e.tags.iter().map(dataset::tag_json).collect::<Vec<_>>()}),
            )
        } else {
            EventOut::Short {
                org_id: e.org.id.to_string(),
                distribution: e.distribution.to_string(),
                id: e.id.to_string(),
                info: &e.info,
                orgc_id: e.orgc.id.to_string(),
                uuid: &e.uuid,
                publish_timestamp: e.publish_timestamp.to_string(),
            }
        };
        let object = if a.object_id == 0 {
            None
        } else {
            e.objects.iter().find(|o| o.id == a.object_id).map(|o| {
                json!({"id": o.id.to_string(), "distribution": "5", "sharing_group_id": "0",
                       "name": o.name, "meta-category": o.meta_category, "uuid": o.uuid})
            })
        };
        let mut tags: Vec<TagOut<'a>> = a.tags.iter().map(|t| TagOut::new(t, false)).collect();
        if q.include_event_tags {
            tags.extend(e.tags.iter().map(|t| TagOut::new(t, true)));
        }
        AttrOut {
            id: a.id.to_string(),
            event_id: a.event_id.to_string(),
            object_id: a.object_id.to_string(),
            object_relation: &a.object_relation,
            category: &a.category,
            attr_type: &a.attr_type,
            to_ids: a.to_ids,
            uuid: &a.uuid,
            timestamp: a.timestamp.to_string(),
            distribution: a.distribution.to_string(),
            sharing_group_id: "0",
            comment: &a.comment,
            deleted: a.deleted,
            disable_correlation: a.disable_correlation,
            first_seen: &a.first_seen,
            last_seen: &a.last_seen,
            value: &a.value,
            event,
            object,
            tags,
            event_uuid: q.include_event_uuid.then_some(e.uuid.as_str()),
            warnings: warned.then(|| {
                json!([{"match": a.value, "value": a.value, "warninglist_id": "1",
                        "warninglist_name": "tibridge lab warninglist", "warninglist_category": "false_positive"}])
            }),
        }
    }
}

fn sort_attributes(hits: &mut [(&MispAttribute, &MispEvent, (usize, usize))], field: OrderField) {
    match field {
        OrderField::Id => hits.sort_by_key(|(a, _, _)| a.id),
        OrderField::EventId => hits.sort_by_key(|(a, _, _)| (a.event_id, a.id)),
        OrderField::Timestamp => hits.sort_by_key(|(a, _, _)| (a.timestamp, a.id)),
        OrderField::Type => hits.sort_by(|x, y| (&x.0.attr_type, x.0.id).cmp(&(&y.0.attr_type, y.0.id))),
        OrderField::Category => hits.sort_by(|x, y| (&x.0.category, x.0.id).cmp(&(&y.0.category, y.0.id))),
        OrderField::Value => hits.sort_by(|x, y| (&x.0.value, x.0.id).cmp(&(&y.0.value, y.0.id))),
        OrderField::PublishTimestamp => hits.sort_by_key(|(a, e, _)| (e.publish_timestamp, a.id)),
    }
}

async fn events_search(State(state): State<Arc<MispState>>, method: Method, uri: Uri, body: Bytes) -> Response {
    let body = match search_body(&method, &uri, &body) {
        Ok(b) => b,
        Err(resp) => return resp,
    };
    record(&state, &body);
    let q = match Query::parse(&body, now(), true) {
        Ok(q) => q,
        Err(e) => return error(StatusCode::BAD_REQUEST, "Invalid parameter.", &e.to_string(), uri.path()),
    };
    let g = state.read();
    let attr_filtered = q.has_attribute_filters();
    // Event tags decide for events; attribute-level tags do not hide attributes here.
    let mut attr_q = q.clone();
    attr_q.tags = query::Terms::default();
    // `uuid` names the event in this scope, not its attributes.
    attr_q.uuids = query::Terms::default();
    let mut by_event: HashMap<u64, usize> = HashMap::new();
    for a in &g.data.attributes {
        if let Some(e) = g.data.event(a.event_id) {
            if attr_q.attribute_matches(a, e, false) {
                *by_event.entry(a.event_id).or_default() += 1;
            }
        }
    }
    let mut hits: Vec<&MispEvent> = g
        .data
        .events
        .iter()
        .filter(|e| q.event_matches(e, true))
        .filter(|e| q.uuids.matches_any_of(&[&e.uuid]))
        .filter(|e| !attr_filtered || by_event.get(&e.id).copied().unwrap_or(0) > 0)
        .collect();
    match q.order {
        Some((OrderField::Timestamp, _)) => hits.sort_by_key(|e| (e.timestamp, e.id)),
        Some((OrderField::PublishTimestamp, _)) => hits.sort_by_key(|e| (e.publish_timestamp, e.id)),
        _ => hits.sort_by_key(|e| e.id),
    }
    if matches!(q.order, Some((_, false))) {
        hits.reverse();
    }
    let page = page_of(hits, q.limit, q.page);
    let keep = |a: &MispAttribute| g.data.event(a.event_id).is_some_and(|e| attr_q.attribute_matches(a, e, false));
    let rendered: Vec<Value> = page.iter().map(|e| g.data.api_event_json(e, &keep, q.metadata)).collect();
    let count = rendered.len();
    json_response(&json!({"response": rendered}), count, 0)
}

/// `POST /events/index` (PyMISP `search_index`, used by its feed generator): event summaries
/// with `EventTag`, or with `minimal` only id, uuid, timestamps, published and orgc_uuid.
async fn events_index(State(state): State<Arc<MispState>>, uri: Uri, body: Bytes) -> Response {
    let body = match search_body(&Method::POST, &uri, &body) {
        Ok(b) => b,
        Err(resp) => return resp,
    };
    let q = match Query::parse(&body, now(), true) {
        Ok(q) => q,
        Err(e) => return error(StatusCode::BAD_REQUEST, "Invalid parameter.", &e.to_string(), uri.path()),
    };
    let minimal = dataset::flag(body.get("minimal")).unwrap_or(false);
    let g = state.read();
    let mut counts: HashMap<u64, usize> = HashMap::new();
    for a in g.data.attributes.iter().filter(|a| !a.deleted) {
        *counts.entry(a.event_id).or_default() += 1;
    }
    let hits: Vec<&MispEvent> =
        g.data.events.iter().filter(|e| q.event_matches(e, true) && q.uuids.matches_any_of(&[&e.uuid])).collect();
    let page = page_of(hits, q.limit, q.page);
    let out: Vec<Value> = page
        .iter()
        .map(|e| {
            if minimal {
                return json!({"id": e.id.to_string(), "timestamp": e.timestamp.to_string(), "sighting_timestamp": "0",
                              "published": e.published, "uuid": e.uuid, "orgc_uuid": e.orgc.uuid});
            }
            let tags: Vec<Value> = e
                .tags
                .iter()
                .map(|t| json!({"id": t.id.to_string(), "event_id": e.id.to_string(), "tag_id": t.id.to_string(),
                                "local": t.local, "relationship_type": "",
                                "Tag": {"id": t.id.to_string(), "name": t.name, "colour": t.colour, "is_galaxy": false}}))
                .collect();
            json!({"id": e.id.to_string(), "org_id": e.org.id.to_string(), "date": e.date, "info": e.info,
                   "uuid": e.uuid, "published": e.published, "analysis": e.analysis.to_string(),
                   "attribute_count": counts.get(&e.id).copied().unwrap_or(0).to_string(),
                   "orgc_id": e.orgc.id.to_string(), "timestamp": e.timestamp.to_string(),
                   "distribution": e.distribution.to_string(), "sharing_group_id": "0",
                   "proposal_email_lock": false, "locked": false, "threat_level_id": e.threat_level_id.to_string(),
                   "publish_timestamp": e.publish_timestamp.to_string(), "sighting_timestamp": "0",
                   "disable_correlation": false, "extends_uuid": "", "protected": null,
                   "Org": {"id": e.org.id.to_string(), "name": e.org.name, "uuid": e.org.uuid},
                   "Orgc": {"id": e.orgc.id.to_string(), "name": e.orgc.name, "uuid": e.orgc.uuid},
                   "EventTag": tags})
        })
        .collect();
    let count = out.len();
    json_response(&Value::Array(out), count, 0)
}

/// `GET /events/view/{id or uuid}` (POST with `{"deleted": 1}` also shows soft-deleted
/// attributes), as PyMISP `get_event` calls it.
async fn event_view(State(state): State<Arc<MispState>>, Path(id): Path<String>, uri: Uri, body: Bytes) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let with_deleted = dataset::flag(body.get("deleted")).unwrap_or(false);
    let g = state.read();
    let key = id.trim_end_matches(".json");
    let found = g
        .data
        .events
        .iter()
        .find(|e| e.uuid.eq_ignore_ascii_case(key) || key.parse::<u64>().map(|n| n == e.id).unwrap_or(false));
    match found {
        Some(e) => {
            let keep = |a: &MispAttribute| with_deleted || !a.deleted;
            axum::Json(g.data.api_event_json(e, &keep, false)).into_response()
        }
        None => error(StatusCode::NOT_FOUND, "Invalid event", "Invalid event", uri.path()),
    }
}

async fn add_sighting(State(state): State<Arc<MispState>>, uri: Uri, body: Bytes) -> Response {
    sighting(&state, &uri, None, &body)
}

async fn add_sighting_for(
    State(state): State<Arc<MispState>>,
    Path(id): Path<String>,
    uri: Uri,
    body: Bytes,
) -> Response {
    sighting(&state, &uri, Some(id), &body)
}

fn sighting(state: &MispState, uri: &Uri, path_id: Option<String>, body: &Bytes) -> Response {
    let fail = |reason: &str| {
        (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"saved": false, "name": "Could not add the Sighting",
                              "message": format!("Could not add the Sighting. Reason: {reason}"),
                              "url": uri.path()})),
        )
            .into_response()
    };
    let body: Value = if body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(e) => return fail(&format!("the body is not valid JSON: {e}")),
        }
    };
    let body = body.get("Sighting").cloned().unwrap_or(body);
    let mut keys: Vec<String> = path_id.into_iter().collect();
    for k in ["id", "uuid"] {
        if let Some(v) = dataset::text(body.get(k)) {
            keys.push(v);
        }
    }
    let mut values: Vec<String> = dataset::text(body.get("value")).into_iter().collect();
    if let Some(list) = body.get("values").and_then(Value::as_array) {
        values.extend(list.iter().filter_map(|v| v.as_str().map(str::to_owned)));
    }
    let kind = dataset::text(body.get("type")).unwrap_or_else(|| "0".into());
    if !matches!(kind.as_str(), "0" | "1" | "2") {
        return fail(&format!("invalid sighting type {kind:?} (0, 1 or 2)"));
    }
    let ts = dataset::num(body.get("timestamp")).unwrap_or_else(now);
    let source = dataset::text(body.get("source")).unwrap_or_default();
    let mut g = state.write();
    let targets: Vec<(u64, String, u64)> = g
        .data
        .attributes
        .iter()
        .filter(|a| !a.deleted)
        .filter(|a| {
            keys.iter().any(|k| matches_key(a, k))
                || values
                    .iter()
                    .any(|v| a.value.eq_ignore_ascii_case(v) || a.parts().iter().any(|p| p.eq_ignore_ascii_case(v)))
        })
        .map(|a| (a.id, a.uuid.clone(), a.event_id))
        .collect();
    if keys.is_empty() && values.is_empty() {
        return fail("no attribute id, uuid, value or values given");
    }
    if targets.is_empty() {
        return fail("No valid attributes found that match the criteria.");
    }
    let mut first = None;
    for (attribute_id, attribute_uuid, event_id) in targets {
        let s = Sighting {
            id: g.sightings.len() as u64 + 1,
            attribute_id,
            attribute_uuid,
            event_id,
            uuid: uuid::Uuid::new_v4().to_string(),
            source: source.clone(),
            sighting_type: kind.clone(),
            date_sighting: ts,
        };
        first.get_or_insert_with(|| s.clone());
        g.sightings.push(s);
    }
    let Some(s) = first else {
        return fail("nothing recorded");
    };
    axum::Json(json!({"Sighting": {
        "id": s.id.to_string(), "attribute_id": s.attribute_id.to_string(), "event_id": s.event_id.to_string(),
        "org_id": "1", "date_sighting": s.date_sighting.to_string(), "uuid": s.uuid, "source": s.source,
        "type": s.sighting_type, "attribute_uuid": s.attribute_uuid,
    }}))
    .into_response()
}

/// Serve `bytes` with a strong ETag; `If-None-Match` with that tag (or `*`) gets a 304.
fn with_etag(headers: &HeaderMap, bytes: Vec<u8>, content_type: &'static str) -> Response {
    let digest = Sha256::digest(&bytes);
    let tag: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
    let etag = format!("\"{tag}\"");
    let fresh = headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()).is_some_and(|v| {
        v.split(',').any(|t| t.trim() == etag || t.trim() == "*" || t.trim().trim_start_matches("W/") == etag)
    });
    let mut resp = if fresh {
        let mut r = Response::new(Body::empty());
        *r.status_mut() = StatusCode::NOT_MODIFIED;
        r
    } else {
        let mut r = Response::new(Body::from(bytes));
        r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        r
    };
    if let Ok(v) = HeaderValue::from_str(&etag) {
        resp.headers_mut().insert(header::ETAG, v);
    }
    resp
}

async fn feed_manifest(State(state): State<Arc<MispState>>, headers: HeaderMap) -> Response {
    let bytes = serde_json::to_vec(&state.read().data.feed_manifest()).unwrap_or_default();
    with_etag(&headers, bytes, "application/json")
}

async fn feed_hashes(State(state): State<Arc<MispState>>, headers: HeaderMap) -> Response {
    let text = state.read().data.feed_hashes_csv();
    with_etag(&headers, text.into_bytes(), "text/csv")
}

async fn feed_event(
    State(state): State<Arc<MispState>>,
    Path(file): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let event = file.strip_suffix(".json").and_then(|uuid| state.read().data.feed_event(uuid));
    match event {
        Some(v) => with_etag(&headers, serde_json::to_vec(&v).unwrap_or_default(), "application/json"),
        None => not_found(uri).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::ServiceExt;

    const KEY: &str = "0123456789012345678901234567890123456789";

    async fn call(
        state: &Arc<MispState>,
        method: &str,
        path: &str,
        key: Option<&str>,
        body: &str,
    ) -> (StatusCode, HeaderMap, Value) {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(k) = key {
            req = req.header("Authorization", k);
        }
        let resp = router(state.clone()).oneshot(req.body(Body::from(body.to_owned())).unwrap()).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap();
        let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (status, headers, value)
    }

    fn small_state() -> (Arc<MispState>, u64) {
        let state = MispState::new(MispDataset::new(), KEY);
        let e = state.add_event("test", &["tlp:green"], true);
        state.add_attribute(e, "sha1", "3395856ce81f2b7382dee72602f798b642f14140", true, &[]).unwrap();
        state.add_attribute(e, "domain", "evil.example", true, &["tlp:red"]).unwrap();
        state.add_attribute(e, "url", "https://evil.example/x", false, &[]).unwrap();
        (state, e)
    }

    #[tokio::test]
    async fn key_is_required_except_for_the_feed() {
        let (state, _) = small_state();
        let (s, _, v) = call(&state, "POST", "/attributes/restSearch", None, "{}").await;
        assert_eq!(s, StatusCode::FORBIDDEN);
        assert!(v["message"].as_str().unwrap().contains("Authentication failed"));
        let (s, _, _) = call(&state, "POST", "/attributes/restSearch", Some("wrong"), "{}").await;
        assert_eq!(s, StatusCode::FORBIDDEN);
        let (s, _, _) = call(&state, "GET", "/feed/manifest.json", None, "").await;
        assert_eq!(s, StatusCode::OK);
        let (s, _, v) = call(&state, "GET", "/nope", Some(KEY), "").await;
        assert_eq!((s, v["url"].as_str()), (StatusCode::NOT_FOUND, Some("/nope")));
    }

    #[tokio::test]
    async fn rest_search_shapes_and_headers() {
        let (state, _) = small_state();
        let (s, h, v) = call(
            &state,
            "POST",
            "/attributes/restSearch",
            Some(KEY),
            r#"{"returnFormat":"json","includeEventTags":1}"#,
        )
        .await;
        assert_eq!(s, StatusCode::OK);
        let attrs = v["response"]["Attribute"].as_array().unwrap();
        assert_eq!(attrs.len(), 3);
        assert_eq!(h["x-result-count"], "3");
        assert_eq!(h["x-skipped-elements-count"], "0");
        assert_eq!(h["x-export-module-used"], "json");
        assert!(attrs[0]["id"].is_string() && attrs[0]["timestamp"].is_string() && attrs[0]["to_ids"].is_boolean());
        let inherited = attrs[0]["Tag"].as_array().unwrap().iter().find(|t| t["name"] == "tlp:green").unwrap();
        assert_eq!(inherited["inherited"], 1);

        let (_, _, v) =
            call(&state, "POST", "/attributes/restSearch", Some(KEY), r#"{"tags":["!tlp:red"],"to_ids":1}"#).await;
        assert_eq!(v["response"]["Attribute"].as_array().unwrap().len(), 1);
        state.set_warninglist(["EVIL.example"]);
        let body = r#"{"includeWarninglistHits":1}"#;
        let (_, h, v) = call(&state, "POST", "/attributes/restSearch", Some(KEY), body).await;
        assert_eq!(h["x-result-count"], "3");
        let warned: Vec<&Value> =
            v["response"]["Attribute"].as_array().unwrap().iter().filter(|a| a.get("warnings").is_some()).collect();
        assert_eq!(warned.len(), 1);
        assert_eq!(warned[0]["value"], "evil.example");
        let body = r#"{"enforceWarninglist":1,"limit":2,"order":"Attribute.id"}"#;
        let (_, h, v) = call(&state, "POST", "/attributes/restSearch", Some(KEY), body).await;
        assert_eq!(
            (h["x-result-count"].to_str().unwrap(), h["x-skipped-elements-count"].to_str().unwrap()),
            ("1", "1")
        );
        assert_eq!(v["response"]["Attribute"][0]["type"], "sha1");
        state.set_warninglist(Vec::<String>::new());
        let (_, _, v) = call(&state, "POST", "/attributes/restSearch", Some(KEY), r#"{"to_ids":"exclude"}"#).await;
        assert_eq!(v["response"]["Attribute"][0]["type"], "url");
        let (_, _, v) = call(
            &state,
            "POST",
            "/attributes/restSearch",
            Some(KEY),
            r#"{"type":{"OR":["sha1","url"]},"order":"Attribute.id desc"}"#,
        )
        .await;
        assert_eq!(v["response"]["Attribute"][0]["type"], "url");

        let (s, _, v) = call(&state, "GET", "/attributes/restSearch", Some(KEY), "").await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        assert!(v["message"].as_str().unwrap().contains("GET and no parameters"));
        let (s, _, v) = call(&state, "POST", "/attributes/restSearch", Some(KEY), "{not json").await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
        let (s, _, v) = call(&state, "POST", "/attributes/restSearch", Some(KEY), r#"{"limit":"x"}"#).await;
        assert!(s == StatusCode::BAD_REQUEST && v["message"].as_str().unwrap().contains("limit"));
    }

    #[tokio::test]
    async fn events_search_is_a_list_and_deletes_show_up() {
        let (state, e) = small_state();
        let (_, _, v) = call(&state, "POST", "/events/restSearch", Some(KEY), "{}").await;
        assert_eq!(v["response"].as_array().unwrap().len(), 1);
        assert_eq!(v["response"][0]["Event"]["Attribute"].as_array().unwrap().len(), 3);
        assert_eq!(v["response"][0]["Event"]["id"], e.to_string());
        let event_uuid = state.dataset().events[0].uuid.clone();
        let body = json!({"uuid": event_uuid, "limit": 0}).to_string();
        let (_, _, v) = call(&state, "POST", "/events/restSearch", Some(KEY), &body).await;
        assert_eq!(v["response"][0]["Event"]["Attribute"].as_array().unwrap().len(), 3, "{v}");
        let (_, _, v) = call(&state, "POST", "/events/restSearch", Some(KEY), r#"{"metadata":1,"type":"url"}"#).await;
        assert!(v["response"][0]["Event"].get("Attribute").is_none());
        let (_, _, v) = call(&state, "POST", "/events/restSearch", Some(KEY), r#"{"type":"ip-dst"}"#).await;
        assert_eq!(v["response"].as_array().unwrap().len(), 0);
        let (_, _, v) = call(&state, "POST", "/attributes/restSearch", Some(KEY), r#"{"limit":0,"page":3}"#).await;
        assert_eq!(v["response"]["Attribute"].as_array().unwrap().len(), 3);
        let uuid = state.dataset().attributes[0].uuid.clone();
        let before = state.attribute(&uuid).unwrap().timestamp;
        let after = state.soft_delete_attribute(&uuid).unwrap();
        assert!(after.timestamp > before && after.deleted);
        let (_, _, v) = call(&state, "POST", "/attributes/restSearch", Some(KEY), "{}").await;
        assert_eq!(v["response"]["Attribute"].as_array().unwrap().len(), 2);
        let (_, _, v) = call(&state, "POST", "/attributes/restSearch", Some(KEY), r#"{"deleted":1}"#).await;
        assert_eq!(v["response"]["Attribute"][0]["uuid"], uuid.as_str());
        state.hard_delete_attribute(&uuid).unwrap();
        let (_, _, v) = call(&state, "POST", "/attributes/restSearch", Some(KEY), r#"{"deleted":[0,1]}"#).await;
        assert_eq!(v["response"]["Attribute"].as_array().unwrap().len(), 2);
        assert!(state.hard_delete_attribute(&uuid).is_err());
    }

    #[tokio::test]
    async fn events_index_and_view_for_the_feed_generator() {
        let (state, e) = small_state();
        let (s, _, v) = call(&state, "POST", "/events/index", Some(KEY), r#"{"published":1}"#).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(v[0]["attribute_count"], "3");
        assert_eq!(v[0]["EventTag"][0]["Tag"]["name"], "tlp:green");
        let (_, _, v) = call(&state, "POST", "/events/index", Some(KEY), r#"{"published":0,"minimal":1}"#).await;
        assert_eq!(v.as_array().unwrap().len(), 0);
        let uuid = state.dataset().events[0].uuid.clone();
        let (s, _, v) = call(&state, "GET", &format!("/events/view/{uuid}"), Some(KEY), "").await;
        assert_eq!((s, &v["Event"]["id"]), (StatusCode::OK, &json!(e.to_string())));
        let (s, _, _) = call(&state, "GET", "/events/view/999", Some(KEY), "").await;
        assert_eq!(s, StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn hostile_bodies_get_answers_not_panics() {
        let (state, _) = small_state();
        let weird = [
            json!(null),
            json!([]),
            json!("x"),
            json!(1e308),
            json!({"limit": 1e20}),
            json!({"page": -3}),
            json!({"limit": 18446744073709551615u64, "page": 18446744073709551615u64}),
            json!({"type": {"OR": [null]}}),
            json!({"tags": {"NOT": "%%%%"}}),
            json!({"tags": ["%é%", "!"]}),
            json!({"timestamp": ["1d"]}),
            json!({"timestamp": ["1d", "2d", "3d"]}),
            json!({"timestamp": "99999999999999999999d"}),
            json!({"timestamp": "-5d"}),
            json!({"deleted": {"a": 1}}),
            json!({"order": ""}),
            json!({"order": "Attribute.id sideways"}),
            json!({"request": {"limit": 1}}),
            json!({"from": "2024-13-45"}),
            json!({"eventid": [1, "2", {"x": 1}]}),
            json!({"value": "ü|ö", "uuid": "%"}),
            json!({"published": [true, false]}),
            json!({"to_ids": []}),
        ];
        for body in weird {
            for path in ["/attributes/restSearch", "/events/restSearch", "/sightings/add"] {
                let (s, _, v) = call(&state, "POST", path, Some(KEY), &body.to_string()).await;
                assert!(s == StatusCode::OK || s == StatusCode::BAD_REQUEST, "{path} {body} -> {s} {v}");
            }
        }
        for raw in ["\u{0}", "{\"limit\":", "[[[[[[[[", "\u{feff}{}"] {
            let (s, _, _) = call(&state, "POST", "/attributes/restSearch", Some(KEY), raw).await;
            assert_eq!(s, StatusCode::BAD_REQUEST, "{raw}");
        }
    }

    #[tokio::test]
    async fn sightings_and_down_and_etag() {
        let (state, _) = small_state();
        let (s, _, v) = call(
            &state,
            "POST",
            "/sightings/add",
            Some(KEY),
            r#"{"values":["EVIL.example"],"source":"tibridge","type":"0","timestamp":1705312800}"#,
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(v["Sighting"]["source"], "tibridge");
        assert_eq!(state.sightings()[0].date_sighting, 1705312800);
        let (s, _, _) = call(&state, "POST", "/sightings/add/999", Some(KEY), "").await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        let (s, _, _) = call(&state, "POST", "/sightings/add/1", Some(KEY), "").await;
        assert_eq!(s, StatusCode::OK);

        let (_, h, _) = call(&state, "GET", "/feed/manifest.json", None, "").await;
        let etag = h[header::ETAG].to_str().unwrap().to_owned();
        let resp = router(state.clone())
            .oneshot(
                Request::builder()
                    .uri("/feed/manifest.json")
                    .header("If-None-Match", &etag)
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::NOT_MODIFIED);

        state.set_down(true);
        let (s, _, _) = call(&state, "POST", "/attributes/restSearch", Some(KEY), "{}").await;
        assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR);
        state.set_down(false);
        let (s, _, _) = call(&state, "GET", "/servers/getVersion", Some(KEY), "").await;
        assert_eq!(s, StatusCode::OK);
    }
}

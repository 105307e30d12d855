//! The MISP simulator's data set: events, objects and attributes, loaded from MISP JSON,
//! built by tests, or generated; and its renderings as MISP API JSON and as a MISP feed.
//!
//! Renderings follow contract A exactly: in API JSON ids and epoch times are strings and flags
//! are JSON booleans; in feed manifests the numbers are ints. Loading accepts both spellings
//! (numbers or digit strings, booleans or 0/1) because real files mix them.
//!
//! Loading must never panic on a malformed file: every problem becomes a [`DatasetError`] that
//! names the file and the item.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use md5::{Digest, Md5};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

/// Why a data set could not be loaded or written.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    #[error("cannot read MISP data set {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write MISP feed file {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("MISP data set {path} is not JSON: {source}")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("MISP data set {path}: {item}: {why}")]
    Shape { path: String, item: String, why: String },
}

/// A tag as MISP shows it on events and attributes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MispTag {
    pub id: u64,
    pub name: String,
    pub colour: String,
    #[serde(default)]
    pub local: bool,
}

/// An organisation (creator `Orgc` or owner `Org`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MispOrg {
    pub id: u64,
    pub name: String,
    pub uuid: String,
}

/// A MISP object (e.g. `file`) grouping attributes of one event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MispObject {
    pub id: u64,
    pub event_id: u64,
    pub uuid: String,
    pub name: String,
    pub meta_category: String,
    pub description: String,
    pub template_uuid: String,
    pub template_version: String,
    pub timestamp: i64,
    pub comment: String,
    pub deleted: bool,
}

/// An event, without its attributes (those live in [`MispDataset::attributes`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MispEvent {
    pub id: u64,
    pub uuid: String,
    pub info: String,
    /// `YYYY-MM-DD`.
    pub date: String,
    /// 1 high .. 4 undefined.
    pub threat_level_id: u8,
    /// 0 initial, 1 ongoing, 2 complete.
    pub analysis: u8,
    pub published: bool,
    pub timestamp: i64,
    pub publish_timestamp: i64,
    pub distribution: u8,
    pub orgc: MispOrg,
    pub org: MispOrg,
    pub tags: Vec<MispTag>,
    pub objects: Vec<MispObject>,
}

/// An attribute, flattened as `/attributes/restSearch` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MispAttribute {
    pub id: u64,
    pub event_id: u64,
    /// 0 = not in an object.
    pub object_id: u64,
    pub object_relation: Option<String>,
    pub uuid: String,
    #[serde(rename = "type")]
    pub attr_type: String,
    pub category: String,
    pub value: String,
    pub to_ids: bool,
    pub deleted: bool,
    pub disable_correlation: bool,
    pub timestamp: i64,
    pub distribution: u8,
    pub comment: String,
    pub first_seen: Option<String>,
    pub last_seen: Option<String>,
    pub tags: Vec<MispTag>,
}

impl MispAttribute {
    /// The value split on the first `|` for composite types (MISP does `explode('|', v, 2)`).
    pub fn parts(&self) -> Vec<&str> {
        if self.attr_type.contains('|') || self.attr_type == "malware-sample" {
            match self.value.split_once('|') {
                Some((a, b)) => vec![a, b],
                None => vec![self.value.as_str()],
            }
        } else {
            vec![self.value.as_str()]
        }
    }
}

/// Everything the MISP simulator serves.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MispDataset {
    pub events: Vec<MispEvent>,
    pub attributes: Vec<MispAttribute>,
    /// Tag name → id, so one name always gets one id.
    #[serde(default)]
    pub tag_ids: BTreeMap<String, u64>,
}

/// The colour MISP shows for well-known tags, or a stable one derived from the name.
pub fn tag_colour(name: &str) -> String {
    match name.to_ascii_lowercase().as_str() {
        "tlp:red" => "#CC0033".into(),
        "tlp:amber" | "tlp:amber+strict" => "#FFC000".into(),
        "tlp:green" => "#339900".into(),
        "tlp:white" | "tlp:clear" => "#ffffff".into(),
        _ => {
            let digest = Md5::digest(name.as_bytes());
            format!("#{:02x}{:02x}{:02x}", digest[0], digest[1], digest[2])
        }
    }
}

/// Default category of the MISP types the lab knows (from describeTypes `sane_defaults`).
pub fn default_category(attr_type: &str) -> &'static str {
    crate::misp::describe::sane_default(attr_type).map(|(c, _)| c).unwrap_or("Other")
}

impl MispDataset {
    pub fn new() -> Self {
        MispDataset::default()
    }

    /// The tag called `name`, with the id this data set uses for it.
    pub fn tag(&mut self, name: &str) -> MispTag {
        let next = self.tag_ids.len() as u64 + 1;
        let id = *self.tag_ids.entry(name.to_owned()).or_insert(next);
        MispTag { id, name: name.to_owned(), colour: tag_colour(name), local: false }
    }

    pub fn next_event_id(&self) -> u64 {
        self.events.iter().map(|e| e.id).max().unwrap_or(0) + 1
    }

    pub fn next_attribute_id(&self) -> u64 {
        self.attributes.iter().map(|a| a.id).max().unwrap_or(0) + 1
    }

    pub fn next_object_id(&self) -> u64 {
        self.events.iter().flat_map(|e| e.objects.iter().map(|o| o.id)).max().unwrap_or(0) + 1
    }

    pub fn event(&self, id: u64) -> Option<&MispEvent> {
        self.events.iter().find(|e| e.id == id)
    }

    /// Read a data set from a file or a directory of `*.json` files. Each file holds one event
    /// `{"Event":{...}}`, a list of them, an events restSearch reply `{"response":[...]}`, or a
    /// saved [`MispDataset`]. A feed directory works too (`manifest.json` is skipped).
    pub fn load_path(path: &Path) -> Result<MispDataset, DatasetError> {
        let mut dataset = MispDataset::new();
        let meta = std::fs::metadata(path).map_err(|source| DatasetError::Read { path: path.to_owned(), source })?;
        let mut files = Vec::new();
        if meta.is_dir() {
            let entries =
                std::fs::read_dir(path).map_err(|source| DatasetError::Read { path: path.to_owned(), source })?;
            for entry in entries {
                let entry = entry.map_err(|source| DatasetError::Read { path: path.to_owned(), source })?;
                let p = entry.path();
                let is_json = p.extension().and_then(|e| e.to_str()) == Some("json");
                let is_manifest = p.file_name().and_then(|n| n.to_str()) == Some("manifest.json");
                if is_json && !is_manifest {
                    files.push(p);
                }
            }
            files.sort();
        } else {
            files.push(path.to_owned());
        }
        for file in files {
            let text =
                std::fs::read_to_string(&file).map_err(|source| DatasetError::Read { path: file.clone(), source })?;
            let value: Value =
                serde_json::from_str(&text).map_err(|source| DatasetError::Json { path: file.clone(), source })?;
            dataset.add_json(&file.display().to_string(), &value)?;
        }
        Ok(dataset)
    }

    /// Add whatever MISP JSON `value` holds (see [`MispDataset::load_path`]); `origin` names
    /// it in errors.
    pub fn add_json(&mut self, origin: &str, value: &Value) -> Result<(), DatasetError> {
        if value.get("events").is_some() && value.get("attributes").is_some() {
            let saved: MispDataset = serde_json::from_value(value.clone()).map_err(|e| DatasetError::Shape {
                path: origin.to_owned(),
                item: "saved data set".into(),
                why: e.to_string(),
            })?;
            for event in saved.events {
                let attrs: Vec<MispAttribute> =
                    saved.attributes.iter().filter(|a| a.event_id == event.id).cloned().collect();
                self.insert_event_with_attributes(event, attrs);
            }
            return Ok(());
        }
        match value {
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    self.add_event_json(origin, i, item)?;
                }
                Ok(())
            }
            Value::Object(map) => {
                if let Some(resp) = map.get("response") {
                    return self.add_json(origin, resp);
                }
                self.add_event_json(origin, 0, value)
            }
            _ => Err(DatasetError::Shape {
                path: origin.to_owned(),
                item: "top level".into(),
                why: "expected an object or a list of MISP events".into(),
            }),
        }
    }

    /// Keep ids unique: an event or attribute whose id is already taken gets a fresh one.
    fn insert_event_with_attributes(&mut self, mut event: MispEvent, mut attrs: Vec<MispAttribute>) {
        if event.id == 0 || self.events.iter().any(|e| e.id == event.id) {
            event.id = self.next_event_id();
        }
        let first_obj = self.next_object_id();
        let mut object_map = BTreeMap::new();
        for (i, obj) in event.objects.iter_mut().enumerate() {
            let old = obj.id;
            obj.id = first_obj + i as u64;
            obj.event_id = event.id;
            object_map.insert(old, obj.id);
        }
        for tag in &mut event.tags {
            *tag = self.tag(&tag.name);
        }
        let mut taken: HashSet<u64> = self.attributes.iter().map(|a| a.id).collect();
        let mut next_attr = self.next_attribute_id();
        for attr in &mut attrs {
            attr.event_id = event.id;
            if attr.object_id != 0 {
                attr.object_id = object_map.get(&attr.object_id).copied().unwrap_or(0);
            }
            if attr.id == 0 || taken.contains(&attr.id) {
                attr.id = next_attr;
                next_attr += 1;
            }
            next_attr = next_attr.max(attr.id + 1);
            taken.insert(attr.id);
            let names: Vec<String> = attr.tags.iter().map(|t| t.name.clone()).collect();
            attr.tags = names.iter().map(|n| self.tag(n)).collect();
        }
        self.events.push(event);
        self.attributes.extend(attrs);
    }

    fn add_event_json(&mut self, origin: &str, index: usize, value: &Value) -> Result<(), DatasetError> {
        let shape = |why: &str| DatasetError::Shape {
            path: origin.to_owned(),
            item: format!("event #{index}"),
            why: why.to_owned(),
        };
        let ev = value.get("Event").unwrap_or(value);
        let ev = ev.as_object().ok_or_else(|| shape("the event is not a JSON object"))?;
        let uuid = text(ev.get("uuid")).ok_or_else(|| shape("the event has no uuid"))?;
        let item =
            |what: String| DatasetError::Shape { path: origin.to_owned(), item: format!("event {uuid}"), why: what };
        let timestamp = num(ev.get("timestamp")).unwrap_or(0);
        let orgc = org(ev.get("Orgc")).unwrap_or_else(default_org);
        let org_ = org(ev.get("Org")).unwrap_or_else(|| orgc.clone());
        let event = MispEvent {
            id: num(ev.get("id")).and_then(|n| u64::try_from(n).ok()).unwrap_or(0),
            uuid: uuid.clone(),
            info: text(ev.get("info")).unwrap_or_default(),
            date: text(ev.get("date")).unwrap_or_else(|| date_of(timestamp)),
            threat_level_id: small(ev.get("threat_level_id"), 4),
            analysis: small(ev.get("analysis"), 0),
            published: flag(ev.get("published")).unwrap_or(false),
            timestamp,
            publish_timestamp: num(ev.get("publish_timestamp")).unwrap_or(0),
            distribution: small(ev.get("distribution"), 0),
            orgc,
            org: org_,
            tags: tags_of(ev.get("Tag")),
            objects: Vec::new(),
        };
        let mut event = event;
        let mut attrs = Vec::new();
        if let Some(list) = ev.get("Attribute") {
            let list = list.as_array().ok_or_else(|| item("Attribute is not a list".into()))?;
            for (i, a) in list.iter().enumerate() {
                attrs.push(attribute_of(a, 0, None).map_err(|why| item(format!("attribute #{i}: {why}")))?);
            }
        }
        if let Some(list) = ev.get("Object") {
            let list = list.as_array().ok_or_else(|| item("Object is not a list".into()))?;
            for (i, o) in list.iter().enumerate() {
                let obj_id = i as u64 + 1;
                let o = o.as_object().ok_or_else(|| item(format!("object #{i} is not a JSON object")))?;
                let obj = MispObject {
                    id: obj_id,
                    event_id: 0,
                    uuid: text(o.get("uuid")).ok_or_else(|| item(format!("object #{i} has no uuid")))?,
                    name: text(o.get("name")).unwrap_or_else(|| "unknown".into()),
                    meta_category: text(o.get("meta-category")).unwrap_or_default(),
                    description: text(o.get("description")).unwrap_or_default(),
                    template_uuid: text(o.get("template_uuid")).unwrap_or_default(),
                    template_version: text(o.get("template_version")).unwrap_or_default(),
                    timestamp: num(o.get("timestamp")).unwrap_or(timestamp),
                    comment: text(o.get("comment")).unwrap_or_default(),
                    deleted: flag(o.get("deleted")).unwrap_or(false),
                };
                if let Some(oattrs) = o.get("Attribute").and_then(Value::as_array) {
                    for (j, a) in oattrs.iter().enumerate() {
                        let rel = a.get("object_relation").and_then(Value::as_str).map(str::to_owned);
                        attrs.push(
                            attribute_of(a, obj_id, rel)
                                .map_err(|why| item(format!("object #{i} attribute #{j}: {why}")))?,
                        );
                    }
                }
                event.objects.push(obj);
            }
        }
        self.insert_event_with_attributes(event, attrs);
        Ok(())
    }

    /// JSON `{"Event": {...}}` of one event as the API returns it (ids as strings), with its
    /// attributes chosen by `keep`; `metadata` leaves attributes and objects out.
    pub fn api_event_json(&self, event: &MispEvent, keep: &dyn Fn(&MispAttribute) -> bool, metadata: bool) -> Value {
        let mut e = Map::new();
        e.insert("id".into(), json!(event.id.to_string()));
        e.insert("orgc_id".into(), json!(event.orgc.id.to_string()));
        e.insert("org_id".into(), json!(event.org.id.to_string()));
        e.insert("date".into(), json!(event.date));
        e.insert("threat_level_id".into(), json!(event.threat_level_id.to_string()));
        e.insert("info".into(), json!(event.info));
        e.insert("published".into(), json!(event.published));
        e.insert("uuid".into(), json!(event.uuid));
        let attrs: Vec<&MispAttribute> = self.attributes.iter().filter(|a| a.event_id == event.id && keep(a)).collect();
        e.insert("attribute_count".into(), json!(attrs.len().to_string()));
        e.insert("analysis".into(), json!(event.analysis.to_string()));
        e.insert("timestamp".into(), json!(event.timestamp.to_string()));
        e.insert("distribution".into(), json!(event.distribution.to_string()));
        e.insert("proposal_email_lock".into(), json!(false));
        e.insert("locked".into(), json!(false));
        e.insert("publish_timestamp".into(), json!(event.publish_timestamp.to_string()));
        e.insert("sharing_group_id".into(), json!("0"));
        e.insert("disable_correlation".into(), json!(false));
        e.insert("extends_uuid".into(), json!(""));
        e.insert("Org".into(), org_json(&event.org));
        e.insert("Orgc".into(), org_json(&event.orgc));
        if !metadata {
            let flat: Vec<Value> = attrs.iter().filter(|a| a.object_id == 0).map(|a| api_attribute_core(a)).collect();
            e.insert("Attribute".into(), Value::Array(flat));
            let objects: Vec<Value> = event
                .objects
                .iter()
                .map(|o| {
                    let oattrs: Vec<Value> =
                        attrs.iter().filter(|a| a.object_id == o.id).map(|a| api_attribute_core(a)).collect();
                    json!({
                        "id": o.id.to_string(), "name": o.name, "meta-category": o.meta_category,
                        "description": o.description, "template_uuid": o.template_uuid,
                        "template_version": o.template_version, "event_id": event.id.to_string(),
                        "uuid": o.uuid, "timestamp": o.timestamp.to_string(), "distribution": "5",
                        "sharing_group_id": "0", "comment": o.comment, "deleted": o.deleted,
                        "first_seen": null, "last_seen": null, "ObjectReference": [], "Attribute": oattrs,
                    })
                })
                .collect();
            e.insert("Object".into(), Value::Array(objects));
        }
        e.insert("ShadowAttribute".into(), json!([]));
        e.insert("RelatedEvent".into(), json!([]));
        e.insert("Galaxy".into(), json!([]));
        e.insert("EventReport".into(), json!([]));
        e.insert("Tag".into(), Value::Array(event.tags.iter().map(tag_json).collect()));
        json!({ "Event": Value::Object(e) })
    }

    /// The events a MISP feed generated from this data set holds: published ones, as PyMISP's
    /// feed generator exports by default.
    pub fn feed_events(&self) -> impl Iterator<Item = &MispEvent> {
        self.events.iter().filter(|e| e.published)
    }

    /// `manifest.json` of the feed: event uuid → summary, numbers as ints.
    pub fn feed_manifest(&self) -> Value {
        let mut m = Map::new();
        for e in self.feed_events() {
            m.insert(
                e.uuid.clone(),
                json!({
                    "Orgc": {"name": e.orgc.name, "uuid": e.orgc.uuid},
                    "Tag": e.tags.iter().map(feed_tag_json).collect::<Vec<_>>(),
                    "info": e.info,
                    "date": e.date,
                    "analysis": e.analysis,
                    "threat_level_id": e.threat_level_id,
                    "timestamp": e.timestamp,
                }),
            );
        }
        Value::Object(m)
    }

    /// `<uuid>.json` of the feed: no numeric ids, numbers as strings, live attributes only.
    pub fn feed_event(&self, uuid: &str) -> Option<Value> {
        let e = self.feed_events().find(|e| e.uuid.eq_ignore_ascii_case(uuid))?;
        let live: Vec<&MispAttribute> = self.attributes.iter().filter(|a| a.event_id == e.id && !a.deleted).collect();
        Some(Self::feed_event_json(e, &live))
    }

    fn feed_event_json(e: &MispEvent, live: &[&MispAttribute]) -> Value {
        let flat: Vec<Value> = live.iter().filter(|a| a.object_id == 0).map(|a| feed_attribute(a)).collect();
        let objects: Vec<Value> = e
            .objects
            .iter()
            .filter(|o| !o.deleted)
            .map(|o| {
                json!({
                    "name": o.name, "meta-category": o.meta_category, "description": o.description,
                    "template_uuid": o.template_uuid, "template_version": o.template_version,
                    "uuid": o.uuid, "timestamp": o.timestamp.to_string(), "comment": o.comment,
                    "deleted": o.deleted,
                    "Attribute": live.iter().filter(|a| a.object_id == o.id).map(|a| feed_attribute(a)).collect::<Vec<_>>(),
                })
            })
            .collect();
        json!({"Event": {
            "uuid": e.uuid, "info": e.info, "threat_level_id": e.threat_level_id.to_string(),
            "analysis": e.analysis.to_string(), "timestamp": e.timestamp.to_string(),
            "publish_timestamp": e.publish_timestamp.to_string(), "published": e.published,
            "date": e.date, "extends_uuid": "", "protected": null,
            "Orgc": {"name": e.orgc.name, "uuid": e.orgc.uuid},
            "Tag": e.tags.iter().map(feed_tag_json).collect::<Vec<_>>(),
            "Attribute": flat, "Object": objects,
        }})
    }

    /// Live attributes of every event, grouped once (feeds of large data sets would otherwise
    /// rescan every attribute per event).
    fn live_by_event(&self) -> HashMap<u64, Vec<&MispAttribute>> {
        let mut by_event: HashMap<u64, Vec<&MispAttribute>> = HashMap::new();
        for a in self.attributes.iter().filter(|a| !a.deleted) {
            by_event.entry(a.event_id).or_default().push(a);
        }
        by_event
    }

    /// `hashes.csv` of the feed: `<md5 of value>,<event uuid>`, one line per composite part.
    pub fn feed_hashes_csv(&self) -> String {
        let mut out = String::new();
        let by_event = self.live_by_event();
        for e in self.feed_events() {
            for a in by_event.get(&e.id).map(Vec::as_slice).unwrap_or_default() {
                for part in a.parts() {
                    let digest = Md5::digest(part.as_bytes());
                    for b in digest {
                        let _ = write!(out, "{b:02x}");
                    }
                    let _ = writeln!(out, ",{}", e.uuid);
                }
            }
        }
        out
    }

    /// Write this data set as a MISP feed directory, in the layout of PyMISP's feed generator:
    /// `manifest.json`, `<event uuid>.json` per event, `hashes.csv`.
    pub fn write_feed_dir(&self, dir: &Path) -> Result<(), DatasetError> {
        let write = |name: &str, bytes: &[u8]| {
            let path = dir.join(name);
            std::fs::write(&path, bytes).map_err(|source| DatasetError::Write { path, source })
        };
        std::fs::create_dir_all(dir).map_err(|source| DatasetError::Write { path: dir.to_owned(), source })?;
        let by_event = self.live_by_event();
        for e in self.feed_events() {
            let live = by_event.get(&e.id).map(Vec::as_slice).unwrap_or_default();
            write(&format!("{}.json", e.uuid), Self::feed_event_json(e, live).to_string().as_bytes())?;
        }
        write("manifest.json", self.feed_manifest().to_string().as_bytes())?;
        write("hashes.csv", self.feed_hashes_csv().as_bytes())
    }
}

/// Flattened attribute JSON fields common to every rendering of the API.
pub fn api_attribute_core(a: &MispAttribute) -> Value {
    let mut m = Map::new();
    m.insert("id".into(), json!(a.id.to_string()));
    m.insert("event_id".into(), json!(a.event_id.to_string()));
    m.insert("object_id".into(), json!(a.object_id.to_string()));
    m.insert("object_relation".into(), json!(a.object_relation));
    m.insert("category".into(), json!(a.category));
    m.insert("type".into(), json!(a.attr_type));
    m.insert("to_ids".into(), json!(a.to_ids));
    m.insert("uuid".into(), json!(a.uuid));
    m.insert("timestamp".into(), json!(a.timestamp.to_string()));
    m.insert("distribution".into(), json!(a.distribution.to_string()));
    m.insert("sharing_group_id".into(), json!("0"));
    m.insert("comment".into(), json!(a.comment));
    m.insert("deleted".into(), json!(a.deleted));
    m.insert("disable_correlation".into(), json!(a.disable_correlation));
    m.insert("first_seen".into(), json!(a.first_seen));
    m.insert("last_seen".into(), json!(a.last_seen));
    m.insert("value".into(), json!(a.value));
    if !a.tags.is_empty() {
        m.insert("Tag".into(), Value::Array(a.tags.iter().map(tag_json).collect()));
    }
    Value::Object(m)
}

pub fn tag_json(t: &MispTag) -> Value {
    json!({"id": t.id.to_string(), "name": t.name, "colour": t.colour, "exportable": true,
           "numerical_value": null, "local": if t.local { 1 } else { 0 }})
}

fn feed_tag_json(t: &MispTag) -> Value {
    json!({"name": t.name, "colour": t.colour, "local": t.local, "relationship_type": ""})
}

pub fn org_json(o: &MispOrg) -> Value {
    json!({"id": o.id.to_string(), "name": o.name, "uuid": o.uuid, "local": true})
}

fn feed_attribute(a: &MispAttribute) -> Value {
    let mut m = Map::new();
    m.insert("uuid".into(), json!(a.uuid));
    m.insert("value".into(), json!(a.value));
    m.insert("category".into(), json!(a.category));
    m.insert("type".into(), json!(a.attr_type));
    m.insert("comment".into(), json!(a.comment));
    m.insert("deleted".into(), json!(a.deleted));
    m.insert("timestamp".into(), json!(a.timestamp.to_string()));
    m.insert("to_ids".into(), json!(a.to_ids));
    m.insert("disable_correlation".into(), json!(a.disable_correlation));
    if let Some(rel) = &a.object_relation {
        m.insert("object_relation".into(), json!(rel));
    }
    if let Some(fs) = &a.first_seen {
        m.insert("first_seen".into(), json!(fs));
    }
    if let Some(ls) = &a.last_seen {
        m.insert("last_seen".into(), json!(ls));
    }
    if !a.tags.is_empty() {
        m.insert("Tag".into(), Value::Array(a.tags.iter().map(feed_tag_json).collect()));
    }
    Value::Object(m)
}

// ---- lenient readers: numbers or digit strings, booleans or 0/1 ----

pub(crate) fn num(v: Option<&Value>) -> Option<i64> {
    match v? {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().filter(|f| f.is_finite()).map(|f| f as i64)),
        Value::String(s) => s.trim().parse::<i64>().ok(),
        _ => None,
    }
}

pub(crate) fn flag(v: Option<&Value>) -> Option<bool> {
    match v? {
        Value::Bool(b) => Some(*b),
        Value::Number(n) => n.as_i64().map(|i| i != 0),
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "1" | "true" => Some(true),
            "0" | "false" | "" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

pub(crate) fn text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn small(v: Option<&Value>, default: u8) -> u8 {
    num(v).and_then(|n| u8::try_from(n).ok()).unwrap_or(default)
}

fn default_org() -> MispOrg {
    MispOrg { id: 1, name: "ORGNAME".into(), uuid: "5d9f1a5e-6a00-4d3f-8c55-24b2a4c0b0f1".into() }
}

fn org(v: Option<&Value>) -> Option<MispOrg> {
    let o = v?.as_object()?;
    Some(MispOrg {
        id: num(o.get("id")).and_then(|n| u64::try_from(n).ok()).unwrap_or(1),
        name: text(o.get("name"))?,
        uuid: text(o.get("uuid")).unwrap_or_default(),
    })
}

fn tags_of(v: Option<&Value>) -> Vec<MispTag> {
    v.and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter_map(|t| {
                    let name = text(t.get("name"))?;
                    Some(MispTag {
                        id: 0,
                        colour: text(t.get("colour")).unwrap_or_else(|| tag_colour(&name)),
                        local: flag(t.get("local")).unwrap_or(false),
                        name,
                    })
                })
                .collect()
        })
        .unwrap_or_default()
}

fn attribute_of(a: &Value, object_id: u64, relation: Option<String>) -> Result<MispAttribute, String> {
    let a = a.as_object().ok_or("not a JSON object")?;
    let attr_type = text(a.get("type")).ok_or("no type")?;
    let value = text(a.get("value")).ok_or("no value")?;
    Ok(MispAttribute {
        id: num(a.get("id")).and_then(|n| u64::try_from(n).ok()).unwrap_or(0),
        event_id: 0,
        object_id,
        object_relation: relation,
        uuid: text(a.get("uuid")).ok_or("no uuid")?,
        category: text(a.get("category")).unwrap_or_else(|| default_category(&attr_type).to_owned()),
        attr_type,
        value,
        to_ids: flag(a.get("to_ids")).unwrap_or(false),
        deleted: flag(a.get("deleted")).unwrap_or(false),
        disable_correlation: flag(a.get("disable_correlation")).unwrap_or(false),
        timestamp: num(a.get("timestamp")).unwrap_or(0),
        distribution: small(a.get("distribution"), 5),
        comment: text(a.get("comment")).unwrap_or_default(),
        first_seen: text(a.get("first_seen")),
        last_seen: text(a.get("last_seen")),
        tags: tags_of(a.get("Tag")),
    })
}

/// `YYYY-MM-DD` of an epoch second (UTC).
pub fn date_of(epoch: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(epoch)
        .map(|t| format!("{:04}-{:02}-{:02}", t.year(), u8::from(t.month()), t.day()))
        .unwrap_or_else(|_| "1970-01-01".into())
}

/// A random version-4 UUID from `rng`, so a seed reproduces the same data set.
fn uuid_from(rng: &mut StdRng) -> String {
    let bytes: [u8; 16] = rng.gen();
    uuid::Builder::from_random_bytes(bytes).into_uuid().to_string()
}

fn hex(rng: &mut StdRng, len: usize) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    (0..len).map(|_| DIGITS[rng.gen_range(0..16)] as char).collect()
}

const WORDS: &[&str] = &[
    "update", "secure", "login", "cdn", "mail", "cloud", "files", "drive", "account", "verify", "portal", "static",
    "api", "sync", "office", "support", "invoice", "track", "pay", "wallet",
];
const TLDS: &[&str] = &["com", "net", "org", "info", "top", "xyz", "ru", "io", "biz", "online"];

fn domain(rng: &mut StdRng) -> String {
    let a = WORDS[rng.gen_range(0..WORDS.len())];
    let b = WORDS[rng.gen_range(0..WORDS.len())];
    let n: u32 = rng.gen_range(0..100_000);
    let tld = TLDS[rng.gen_range(0..TLDS.len())];
    if rng.gen_bool(0.3) {
        format!("{a}.{b}-{n}.{tld}")
    } else {
        format!("{a}-{b}{n}.{tld}")
    }
}

fn public_ipv4(rng: &mut StdRng) -> String {
    loop {
        let a: u8 = rng.gen_range(1..=223);
        if matches!(a, 10 | 100 | 127 | 169 | 172 | 192) {
            continue;
        }
        return format!("{a}.{}.{}.{}", rng.gen::<u8>(), rng.gen::<u8>(), rng.gen_range(1..=254u8));
    }
}

/// One generated value of `attr_type`; with `invalid`, a value a strict parser must reject.
fn value_for(rng: &mut StdRng, attr_type: &str, invalid: bool) -> String {
    if invalid {
        return match attr_type {
            "sha1" => hex(rng, 39),
            "sha256" => format!("{}zz", hex(rng, 62)),
            "md5" => hex(rng, 31),
            "domain" => "not a domain..".into(),
            "url" => "notascheme//".into(),
            "ip-dst" => format!("{}.1.2.3", rng.gen_range(256..999)),
            "email-src" => "nobody-at-nowhere".into(),
            "filename|sha1" => "dropper.exe|xyz".into(),
            _ => "|".into(),
        };
    }
    match attr_type {
        "sha1" => hex(rng, 40),
        "sha256" => hex(rng, 64),
        "md5" => hex(rng, 32),
        "domain" => domain(rng),
        "url" => {
            let path = WORDS[rng.gen_range(0..WORDS.len())];
            let scheme = if rng.gen_bool(0.7) { "https" } else { "http" };
            format!("{scheme}://{}/{path}/{}.php?id={}", domain(rng), hex(rng, 6), rng.gen_range(1..10_000))
        }
        "ip-dst" => public_ipv4(rng),
        "email-src" => format!("{}.{}@{}", WORDS[rng.gen_range(0..WORDS.len())], rng.gen_range(1..999), domain(rng)),
        "filename|sha1" => {
            format!("{}_{}.exe|{}", WORDS[rng.gen_range(0..WORDS.len())], rng.gen_range(1..99), hex(rng, 40))
        }
        "domain|ip" => format!("{}|{}", domain(rng), public_ipv4(rng)),
        _ => hex(rng, 16),
    }
}

const GENERATED_TYPES: &[&str] =
    &["sha1", "sha256", "md5", "domain", "url", "ip-dst", "filename|sha1", "domain|ip", "email-src"];

/// A realistic data set of `events` events with `attrs_per_event` attributes each, the same
/// for the same `seed`. About 80% of events are published, each carries one TLP tag
/// (white/green/amber/red), 15% of attributes are not to_ids, 2% have an invalid value, 1%
/// are soft-deleted, and a fifth of the events hold their first four hashes and file name
/// in a `file` object. Timestamps go up with ids, ending one hour before now.
pub fn generate_dataset(events: usize, attrs_per_event: usize, seed: u64) -> MispDataset {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut ds = MispDataset::new();
    ds.attributes.reserve(events.saturating_mul(attrs_per_event));
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let total = (events.saturating_mul(attrs_per_event)) as i64;
    let start = now - 3600 - total;
    let orgs = [
        MispOrg { id: 1, name: "CIRCL".into(), uuid: "55f6ea5e-2c60-40e5-964f-47a8950d210f".into() },
        MispOrg { id: 2, name: "CERT-EXAMPLE".into(), uuid: "5c9b1d6e-8f0e-4a55-9b1f-3a4f2d0c9e11".into() },
    ];
    let mut ts = start;
    let mut next_attr: u64 = 1;
    for e in 0..events {
        let event_id = e as u64 + 1;
        let orgc = orgs[rng.gen_range(0..orgs.len())].clone();
        let tlp = match rng.gen_range(0..100) {
            0..=29 => "tlp:white",
            30..=69 => "tlp:green",
            70..=94 => "tlp:amber",
            _ => "tlp:red",
        };
        let mut tags = vec![ds.tag(tlp)];
        if rng.gen_bool(0.5) {
            tags.push(ds.tag("type:OSINT"));
        }
        if rng.gen_bool(0.3) {
            tags.push(ds.tag("misp-galaxy:threat-actor=\"APT-EXAMPLE\""));
        }
        let published = rng.gen_bool(0.8);
        let event_start = ts;
        let mut objects = Vec::new();
        let in_object = attrs_per_event >= 6 && rng.gen_bool(0.2);
        let object_id = event_id;
        if in_object {
            objects.push(MispObject {
                id: object_id,
                event_id,
                uuid: uuid_from(&mut rng),
                name: "file".into(),
                meta_category: "file".into(),
                description: "File object describing a file with meta-information".into(),
                template_uuid: "688c46fb-5edb-40a3-8273-1af7923e2215".into(),
                template_version: "24".into(),
                timestamp: event_start,
                comment: String::new(),
                deleted: false,
            });
        }
        for i in 0..attrs_per_event {
            ts += 1;
            let (attr_type, relation, obj) = if in_object && i < 4 {
                let (t, r) = [("sha256", "sha256"), ("sha1", "sha1"), ("md5", "md5"), ("filename", "filename")][i];
                (t, Some(r.to_owned()), object_id)
            } else {
                (GENERATED_TYPES[rng.gen_range(0..GENERATED_TYPES.len())], None, 0)
            };
            let invalid = rng.gen_bool(0.02) && attr_type != "filename";
            let value = if attr_type == "filename" {
                format!("{}_{}.dll", WORDS[rng.gen_range(0..WORDS.len())], rng.gen_range(1..99))
            } else {
                value_for(&mut rng, attr_type, invalid)
            };
            let mut attr_tags = Vec::new();
            if rng.gen_bool(0.05) {
                attr_tags.push(ds.tag("tlp:red"));
            }
            if rng.gen_bool(0.05) {
                attr_tags.push(ds.tag("kill-chain:Command and Control"));
            }
            ds.attributes.push(MispAttribute {
                id: next_attr,
                event_id,
                object_id: obj,
                object_relation: relation,
                uuid: uuid_from(&mut rng),
                attr_type: attr_type.to_owned(),
                category: default_category(attr_type).to_owned(),
                value,
                to_ids: attr_type != "filename" && !rng.gen_bool(0.15),
                deleted: rng.gen_bool(0.01),
                disable_correlation: false,
                timestamp: ts,
                distribution: 5,
                comment: if rng.gen_bool(0.1) { "seen in phishing wave".into() } else { String::new() },
                first_seen: None,
                last_seen: None,
                tags: attr_tags,
            });
            next_attr += 1;
        }
        ds.events.push(MispEvent {
            id: event_id,
            uuid: uuid_from(&mut rng),
            info: format!("Generated campaign #{event_id}: {} infrastructure", WORDS[rng.gen_range(0..WORDS.len())]),
            date: date_of(event_start),
            threat_level_id: rng.gen_range(1..=4),
            analysis: rng.gen_range(0..=2),
            published,
            timestamp: ts.max(event_start),
            publish_timestamp: if published { ts } else { 0 },
            distribution: 1,
            org: orgs[0].clone(),
            orgc,
            tags,
            objects,
        });
    }
    ds
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generator_is_deterministic_and_sized() {
        let a = generate_dataset(10, 20, 7);
        let b = generate_dataset(10, 20, 7);
        assert_eq!(a, b);
        assert_eq!(a.events.len(), 10);
        assert_eq!(a.attributes.len(), 200);
        let c = generate_dataset(10, 20, 8);
        assert_ne!(a.attributes[0].value, c.attributes[0].value);
        let ids: HashSet<u64> = a.attributes.iter().map(|x| x.id).collect();
        assert_eq!(ids.len(), 200);
        assert!(a.attributes.iter().any(|x| !x.to_ids));
        assert!(a.events.iter().all(|e| e.tags.iter().any(|t| t.name.starts_with("tlp:"))));
    }

    #[test]
    fn feed_round_trips_through_the_loader() {
        let ds = generate_dataset(5, 10, 1);
        let dir = tempfile::tempdir().unwrap();
        ds.write_feed_dir(dir.path()).unwrap();
        let manifest: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.path().join("manifest.json")).unwrap()).unwrap();
        let published = ds.events.iter().filter(|e| e.published).count();
        assert_eq!(manifest.as_object().unwrap().len(), published);
        for (_, entry) in manifest.as_object().unwrap() {
            assert!(entry["timestamp"].is_i64());
            assert!(entry["threat_level_id"].is_u64());
        }
        let loaded = MispDataset::load_path(dir.path()).unwrap();
        assert_eq!(loaded.events.len(), published);
        let live: usize = ds
            .attributes
            .iter()
            .filter(|a| !a.deleted && ds.event(a.event_id).map(|e| e.published).unwrap_or(false))
            .count();
        assert_eq!(loaded.attributes.len(), live);
        let csv = std::fs::read_to_string(dir.path().join("hashes.csv")).unwrap();
        let parts: usize = ds
            .attributes
            .iter()
            .filter(|a| !a.deleted && ds.event(a.event_id).map(|e| e.published).unwrap_or(false))
            .map(|a| a.parts().len())
            .sum();
        assert_eq!(csv.lines().count(), parts);
    }

    #[test]
    fn loader_reports_the_bad_item_and_never_panics() {
        let mut ds = MispDataset::new();
        let err = ds.add_json("x.json", &json!({"Event": {"info": "no uuid"}})).unwrap_err();
        assert!(err.to_string().contains("no uuid"), "{err}");
        let err =
            ds.add_json("x.json", &json!({"Event": {"uuid": "u1", "Attribute": [{"type": "sha1"}]}})).unwrap_err();
        assert!(err.to_string().contains("attribute #0: no value"), "{err}");
        assert!(ds.add_json("x.json", &json!(42)).is_err());
        for garbage in [json!(null), json!([1, 2]), json!({"Event": []}), json!({"response": "x"})] {
            let _ = ds.add_json("g.json", &garbage);
        }
    }

    #[test]
    fn loader_accepts_numbers_or_strings() {
        // Shape from contract A.2's real example (misp-book automation/README.md).
        let mut ds = MispDataset::new();
        ds.add_json(
            "inline",
            &json!([{"Event": {"id": "30", "uuid": "8cca0000-0000-4000-8000-000000000001", "info": "Correlation 1",
                "timestamp": 1617056037, "published": "1", "threat_level_id": 2,
                "Tag": [{"name": "tlp:amber"}],
                "Attribute": [{"id": "44", "type": "comment", "category": "Other", "to_ids": false,
                   "uuid": "7a5d0000-0000-4000-8000-000000000002", "timestamp": "1617056037", "value": "foobar",
                   "deleted": 0}]}}]),
        )
        .unwrap();
        assert_eq!(ds.events[0].id, 30);
        assert!(ds.events[0].published);
        assert_eq!(ds.attributes[0].id, 44);
        assert_eq!(ds.attributes[0].timestamp, 1617056037);
        assert_eq!(ds.events[0].tags[0].colour, "#FFC000");
    }
}

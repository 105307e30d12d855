//! Typed, borrowing serde model of MISP JSON: events, attributes, objects, tags, and every
//! envelope they arrive in (a single event, a list, an events or attributes restSearch reply).
//!
//! MISP is not consistent about JSON types: the REST API writes ids and epoch times as digit
//! strings, feed manifests write them as numbers, and flags appear as `true`, `1` or `"1"`
//! (contract A.2 "Parser advice"). Every field here is therefore *loose*: it accepts each of
//! those spellings and turns anything else (a wrong type, `null`) into "absent" instead of an
//! error. The only errors left are JSON syntax errors, so one odd attribute can never cost the
//! rest of its file. This module must never panic on input and never allocate a string it can
//! borrow from the input buffer (1M attributes is ~300 MB of JSON).

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

/// A tag as MISP attaches it to an event or an attribute.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Tag<'a> {
    #[serde(default, borrow, deserialize_with = "loose_str")]
    pub name: Option<Cow<'a, str>>,
    /// Set by MISP for taxonomy tags that carry a number (e.g. estimative-language).
    #[serde(default, deserialize_with = "loose_i64")]
    pub numerical_value: Option<i64>,
    /// `1` when the tag was copied from the event (`includeEventTags`).
    #[serde(default, deserialize_with = "loose_bool")]
    pub inherited: bool,
    #[serde(default, deserialize_with = "loose_bool")]
    pub local: bool,
}

/// An organisation reference (`Orgc`, `Org`).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Org<'a> {
    #[serde(default, borrow, deserialize_with = "loose_str")]
    pub name: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "loose_str")]
    pub uuid: Option<Cow<'a, str>>,
}

/// One MISP attribute, either inside an event (`Event.Attribute[]`, `Event.Object[].Attribute[]`)
/// or flattened in an attributes restSearch reply, where it carries its own `Event` context.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Attribute<'a> {
    #[serde(default, deserialize_with = "loose_i64")]
    pub id: Option<i64>,
    #[serde(default, deserialize_with = "loose_i64")]
    pub event_id: Option<i64>,
    #[serde(default, deserialize_with = "loose_i64")]
    pub object_id: Option<i64>,
    #[serde(default, borrow, deserialize_with = "loose_str")]
    pub uuid: Option<Cow<'a, str>>,
    #[serde(default, borrow, rename = "type", deserialize_with = "loose_str")]
    pub kind: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "loose_str")]
    pub category: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "loose_str")]
    pub value: Option<Cow<'a, str>>,
    /// `None` when the producer left the flag out (hand-written feeds).
    #[serde(default, deserialize_with = "loose_opt_bool")]
    pub to_ids: Option<bool>,
    #[serde(default, deserialize_with = "loose_bool")]
    pub deleted: bool,
    /// Last edit, epoch seconds.
    #[serde(default, deserialize_with = "loose_i64")]
    pub timestamp: Option<i64>,
    #[serde(default, borrow, deserialize_with = "loose_str")]
    pub comment: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "loose_str")]
    pub object_relation: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "loose_str")]
    pub first_seen: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "loose_str")]
    pub last_seen: Option<Cow<'a, str>>,
    #[serde(default, borrow, rename = "Tag", deserialize_with = "loose_list")]
    pub tags: Vec<Tag<'a>>,
    /// The parent event's context (attributes restSearch only).
    #[serde(default, borrow, rename = "Event", deserialize_with = "loose_struct")]
    pub event: Option<AttributeEvent<'a>>,
    /// The parent object (attributes restSearch only, when `object_id != 0`).
    #[serde(default, borrow, rename = "Object", deserialize_with = "loose_struct")]
    pub object: Option<AttributeObject<'a>>,
    /// Present with `includeEventUuid`.
    #[serde(default, borrow, deserialize_with = "loose_str")]
    pub event_uuid: Option<Cow<'a, str>>,
}

/// The `Event` sub-object of an attribute in an attributes restSearch reply.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct AttributeEvent<'a> {
    #[serde(default, deserialize_with = "loose_i64")]
    pub id: Option<i64>,
    #[serde(default, borrow, deserialize_with = "loose_str")]
    pub uuid: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "loose_str")]
    pub info: Option<Cow<'a, str>>,
    #[serde(default, deserialize_with = "loose_opt_bool")]
    pub published: Option<bool>,
    #[serde(default, deserialize_with = "loose_i64")]
    pub orgc_id: Option<i64>,
    /// Present with `includeContext`.
    #[serde(default, borrow, rename = "Orgc", deserialize_with = "loose_struct")]
    pub orgc: Option<Org<'a>>,
    /// Present with `includeContext`.
    #[serde(default, borrow, rename = "Tag", deserialize_with = "loose_list")]
    pub tags: Vec<Tag<'a>>,
}

/// The `Object` sub-object of an attribute in an attributes restSearch reply.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct AttributeObject<'a> {
    #[serde(default, borrow, deserialize_with = "loose_str")]
    pub uuid: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "loose_str")]
    pub name: Option<Cow<'a, str>>,
    #[serde(default, deserialize_with = "loose_bool")]
    pub deleted: bool,
}

/// A MISP object (`file`, `domain-ip`, ...) inside an event, grouping attributes.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct MispObject<'a> {
    #[serde(default, borrow, deserialize_with = "loose_str")]
    pub uuid: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "loose_str")]
    pub name: Option<Cow<'a, str>>,
    #[serde(default, borrow, rename = "meta-category", deserialize_with = "loose_str")]
    pub meta_category: Option<Cow<'a, str>>,
    #[serde(default, deserialize_with = "loose_i64")]
    pub timestamp: Option<i64>,
    #[serde(default, deserialize_with = "loose_bool")]
    pub deleted: bool,
    #[serde(default, borrow, rename = "Attribute", deserialize_with = "loose_list")]
    pub attributes: Vec<Attribute<'a>>,
}

/// A MISP event (the value under `"Event"`).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Event<'a> {
    #[serde(default, deserialize_with = "loose_i64")]
    pub id: Option<i64>,
    #[serde(default, borrow, deserialize_with = "loose_str")]
    pub uuid: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "loose_str")]
    pub info: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "loose_str")]
    pub date: Option<Cow<'a, str>>,
    #[serde(default, deserialize_with = "loose_i64")]
    pub threat_level_id: Option<i64>,
    #[serde(default, deserialize_with = "loose_i64")]
    pub analysis: Option<i64>,
    #[serde(default, deserialize_with = "loose_i64")]
    pub timestamp: Option<i64>,
    #[serde(default, deserialize_with = "loose_i64")]
    pub publish_timestamp: Option<i64>,
    #[serde(default, deserialize_with = "loose_opt_bool")]
    pub published: Option<bool>,
    #[serde(default, borrow, rename = "Orgc", deserialize_with = "loose_struct")]
    pub orgc: Option<Org<'a>>,
    #[serde(default, borrow, rename = "Tag", deserialize_with = "loose_list")]
    pub tags: Vec<Tag<'a>>,
    #[serde(default, borrow, rename = "Attribute", deserialize_with = "loose_list")]
    pub attributes: Vec<Attribute<'a>>,
    #[serde(default, borrow, rename = "Object", deserialize_with = "loose_list")]
    pub objects: Vec<MispObject<'a>>,
}

/// `{"Event": {...}}`: how MISP wraps an event in files, lists and replies.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct EventWrapper<'a> {
    #[serde(default, borrow, rename = "Event", deserialize_with = "loose_struct")]
    pub event: Option<Event<'a>>,
}

/// One entry of a feed's `manifest.json` (keyed by event UUID).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ManifestEntry<'a> {
    #[serde(default, borrow, deserialize_with = "loose_str")]
    pub info: Option<Cow<'a, str>>,
    #[serde(default, deserialize_with = "loose_i64")]
    pub timestamp: Option<i64>,
    #[serde(default, borrow, rename = "Tag", deserialize_with = "loose_list")]
    pub tags: Vec<Tag<'a>>,
    #[serde(default, borrow, rename = "Orgc", deserialize_with = "loose_struct")]
    pub orgc: Option<Org<'a>>,
}

/// One item of a MISP document, handed out as soon as it is parsed so a large document never
/// has to exist as a whole in memory.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // handed over once by value; boxing would cost an allocation per attribute
pub enum Item<'a> {
    Event(Event<'a>),
    /// A flattened attribute from an attributes restSearch reply.
    Attribute(Attribute<'a>),
}

/// Parses any MISP JSON document and calls `each` for every event or attribute in it, in order.
///
/// Accepted shapes: `{"Event":{..}}`, `[{"Event":{..}}, ..]`, `{"response":[{"Event":{..}}, ..]}`
/// (events restSearch), `{"response":{"Attribute":[..]}}` (attributes restSearch) and
/// `{"Attribute":[..]}` (the same, unwrapped as PyMISP returns it). Unknown keys are ignored.
/// `Err` only for JSON that is not well-formed or not one of these shapes; items already handed
/// to `each` before the error stay handed out.
pub fn parse_document<'a>(bytes: &'a [u8], each: &mut dyn FnMut(Item<'a>)) -> Result<(), serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    DocumentSeed { each }.deserialize(&mut de)?;
    de.end()
}

struct DocumentSeed<'f, 'a> {
    each: &'f mut dyn FnMut(Item<'a>),
}

impl<'de, 'f> DeserializeSeed<'de> for DocumentSeed<'f, 'de> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de, 'f> Visitor<'de> for DocumentSeed<'f, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a MISP event, a list of events, or a restSearch reply")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(WrappedEventSeed { each: &mut *self.each })?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut recognised = false;
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            match key.as_ref() {
                "Event" => {
                    recognised = true;
                    if let Some(event) = map.next_value_seed(OptionalStruct::<Event<'de>>(PhantomData))? {
                        (self.each)(Item::Event(event));
                    }
                }
                "response" => {
                    recognised = true;
                    map.next_value_seed(ResponseSeed { each: &mut *self.each })?;
                }
                "Attribute" => {
                    recognised = true;
                    map.next_value_seed(AttributeListSeed { each: &mut *self.each })?;
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        if recognised {
            Ok(())
        } else {
            Err(de::Error::custom("no Event, response or Attribute key: not a MISP document"))
        }
    }
}

/// `response`: a list of wrapped events (events scope) or `{"Attribute":[..]}` (attributes scope).
struct ResponseSeed<'f, 'a> {
    each: &'f mut dyn FnMut(Item<'a>),
}

impl<'de, 'f> DeserializeSeed<'de> for ResponseSeed<'f, 'de> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de, 'f> Visitor<'de> for ResponseSeed<'f, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of events or an object with an Attribute list")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(WrappedEventSeed { each: &mut *self.each })?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            if key == "Attribute" {
                map.next_value_seed(AttributeListSeed { each: &mut *self.each })?;
            } else if key == "Event" {
                if let Some(event) = map.next_value_seed(OptionalStruct::<Event<'de>>(PhantomData))? {
                    (self.each)(Item::Event(event));
                }
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
}

/// One element of an event list: `{"Event":{..}}`; anything else is passed over.
struct WrappedEventSeed<'f, 'a> {
    each: &'f mut dyn FnMut(Item<'a>),
}

impl<'de, 'f> DeserializeSeed<'de> for WrappedEventSeed<'f, 'de> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        if let Some(wrapper) = OptionalStruct::<EventWrapper<'de>>(PhantomData).deserialize(deserializer)? {
            if let Some(event) = wrapper.event {
                (self.each)(Item::Event(event));
            }
        }
        Ok(())
    }
}

/// `Attribute: [..]` in an attributes reply: each attribute is handed out as it is parsed.
struct AttributeListSeed<'f, 'a> {
    each: &'f mut dyn FnMut(Item<'a>),
}

impl<'de, 'f> DeserializeSeed<'de> for AttributeListSeed<'f, 'de> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de, 'f> Visitor<'de> for AttributeListSeed<'f, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of attributes")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(attribute) = seq.next_element_seed(OptionalStruct::<Attribute<'de>>(PhantomData))? {
            if let Some(attribute) = attribute {
                (self.each)(Item::Attribute(attribute));
            }
        }
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(())
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Loose field readers.

/// Reads a JSON object into `T`; any other JSON value (null, a string, a list) becomes `None`.
struct OptionalStruct<T>(PhantomData<T>);

impl<'de, T: Deserialize<'de>> DeserializeSeed<'de> for OptionalStruct<T> {
    type Value = Option<T>;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Option<T>, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de, T: Deserialize<'de>> Visitor<'de> for OptionalStruct<T> {
    type Value = Option<T>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Option<T>, A::Error> {
        T::deserialize(de::value::MapAccessDeserializer::new(map)).map(Some)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Option<T>, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(None)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Option<T>, E> {
        Ok(None)
    }
    fn visit_none<E: de::Error>(self) -> Result<Option<T>, E> {
        Ok(None)
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Option<T>, E> {
        Ok(None)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Option<T>, E> {
        Ok(None)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Option<T>, E> {
        Ok(None)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Option<T>, E> {
        Ok(None)
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Option<T>, E> {
        Ok(None)
    }
}

fn loose_struct<'de, D: Deserializer<'de>, T: Deserialize<'de>>(deserializer: D) -> Result<Option<T>, D::Error> {
    OptionalStruct::<T>(PhantomData).deserialize(deserializer)
}

/// A list whose non-object elements are dropped; `null` or a non-list is an empty list.
fn loose_list<'de, D: Deserializer<'de>, T: Deserialize<'de>>(deserializer: D) -> Result<Vec<T>, D::Error> {
    struct ListVisitor<T>(PhantomData<T>);

    impl<'de, T: Deserialize<'de>> Visitor<'de> for ListVisitor<T> {
        type Value = Vec<T>;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a list")
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
            let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
            while let Some(item) = seq.next_element_seed(OptionalStruct::<T>(PhantomData))? {
                if let Some(item) = item {
                    items.push(item);
                }
            }
            Ok(items)
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Vec<T>, A::Error> {
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            Ok(Vec::new())
        }

        fn visit_unit<E: de::Error>(self) -> Result<Vec<T>, E> {
            Ok(Vec::new())
        }
        fn visit_none<E: de::Error>(self) -> Result<Vec<T>, E> {
            Ok(Vec::new())
        }
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<Vec<T>, E> {
            Ok(Vec::new())
        }
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<Vec<T>, E> {
            Ok(Vec::new())
        }
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<Vec<T>, E> {
            Ok(Vec::new())
        }
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<Vec<T>, E> {
            Ok(Vec::new())
        }
        fn visit_str<E: de::Error>(self, _: &str) -> Result<Vec<T>, E> {
            Ok(Vec::new())
        }
    }

    deserializer.deserialize_any(ListVisitor(PhantomData))
}

/// A string, borrowed from the input when it has no escapes; numbers and booleans become their
/// text (ids written as numbers); null, lists and objects become `None`.
fn loose_str<'de, 'a, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Cow<'a, str>>, D::Error>
where
    'de: 'a,
{
    struct StrVisitor;

    impl<'de> Visitor<'de> for StrVisitor {
        type Value = Option<Cow<'de, str>>;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a string")
        }

        fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
            Ok(Some(Cow::Borrowed(v)))
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Some(Cow::Owned(v.to_owned())))
        }
        fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
            Ok(Some(Cow::Owned(v)))
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
            Ok(Some(Cow::Owned(v.to_string())))
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            Ok(Some(Cow::Owned(v.to_string())))
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
            Ok(Some(Cow::Owned(v.to_string())))
        }
        fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
            Ok(Some(Cow::Borrowed(if v { "true" } else { "false" })))
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            Ok(None)
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            Ok(None)
        }
    }

    deserializer.deserialize_any(StrVisitor)
}

/// What a loose scalar turned out to be.
enum Scalar {
    Int(i64),
    Bool(bool),
    Absent,
}

struct ScalarVisitor;

impl ScalarVisitor {
    fn from_text(v: &str) -> Scalar {
        let v = v.trim();
        if let Ok(n) = v.parse::<i64>() {
            return Scalar::Int(n);
        }
        if v.eq_ignore_ascii_case("true") {
            Scalar::Bool(true)
        } else if v.eq_ignore_ascii_case("false") {
            Scalar::Bool(false)
        } else {
            Scalar::Absent
        }
    }
}

impl<'de> Visitor<'de> for ScalarVisitor {
    type Value = Scalar;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a number, a digit string or a boolean")
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar, E> {
        Ok(Scalar::Int(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
        Ok(i64::try_from(v).map(Scalar::Int).unwrap_or(Scalar::Absent))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Scalar, E> {
        // Only whole numbers in range: a fractional id is nonsense, a fractional epoch is a
        // float `iat`-style time that we round down.
        if v.is_finite() && v >= i64::MIN as f64 && v <= i64::MAX as f64 {
            Ok(Scalar::Int(v.floor() as i64))
        } else {
            Ok(Scalar::Absent)
        }
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Scalar, E> {
        Ok(Scalar::Bool(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar, E> {
        Ok(ScalarVisitor::from_text(v))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Scalar, E> {
        Ok(Scalar::Absent)
    }
    fn visit_none<E: de::Error>(self) -> Result<Scalar, E> {
        Ok(Scalar::Absent)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Scalar, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Scalar::Absent)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Scalar, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Scalar::Absent)
    }
}

/// An integer written as a number or a digit string; anything else is `None`.
fn loose_i64<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<i64>, D::Error> {
    Ok(match deserializer.deserialize_any(ScalarVisitor)? {
        Scalar::Int(n) => Some(n),
        Scalar::Bool(_) | Scalar::Absent => None,
    })
}

/// A flag written as a boolean, 0/1 or "0"/"1"/"true"/"false"; anything else is `None`.
fn loose_opt_bool<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<bool>, D::Error> {
    Ok(match deserializer.deserialize_any(ScalarVisitor)? {
        Scalar::Int(n) => Some(n != 0),
        Scalar::Bool(b) => Some(b),
        Scalar::Absent => None,
    })
}

/// Like [`loose_opt_bool`], absent meaning `false`.
fn loose_bool<'de, D: Deserializer<'de>>(deserializer: D) -> Result<bool, D::Error> {
    Ok(loose_opt_bool(deserializer)?.unwrap_or(false))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(json: &str) -> Result<Vec<String>, serde_json::Error> {
        let mut seen = Vec::new();
        parse_document(json.as_bytes(), &mut |item| match item {
            Item::Event(e) => seen.push(format!("event:{}", e.uuid.as_deref().unwrap_or("?"))),
            Item::Attribute(a) => seen.push(format!("attribute:{}", a.uuid.as_deref().unwrap_or("?"))),
        })?;
        Ok(seen)
    }

    #[test]
    fn every_envelope_is_recognised() {
        assert_eq!(items(r#"{"Event":{"uuid":"e1"}}"#).unwrap(), ["event:e1"]);
        assert_eq!(items(r#"[{"Event":{"uuid":"e1"}},{"Event":{"uuid":"e2"}}]"#).unwrap(), ["event:e1", "event:e2"]);
        assert_eq!(items(r#"{"response":[{"Event":{"uuid":"e1"}}]}"#).unwrap(), ["event:e1"]);
        assert_eq!(
            items(r#"{"response":{"Attribute":[{"uuid":"a1"},{"uuid":"a2"}]}}"#).unwrap(),
            ["attribute:a1", "attribute:a2"]
        );
        assert_eq!(items(r#"{"Attribute":[{"uuid":"a1"}]}"#).unwrap(), ["attribute:a1"]);
        assert_eq!(items(r#"{"response":{"Attribute":[]}}"#).unwrap(), Vec::<String>::new());
        assert_eq!(items(r#"[]"#).unwrap(), Vec::<String>::new());
    }

    #[test]
    fn foreign_or_broken_documents_are_errors_not_panics() {
        assert!(items(r#"{"hello":1}"#).is_err());
        assert!(items(r#""Event""#).is_err());
        assert!(items(r#"{"Event":{"uuid":"e1""#).is_err());
        assert!(items(r#"{"Event":{}} trailing"#).is_err());
        assert!(items("").is_err());
    }

    #[test]
    fn numbers_and_strings_and_flags_are_all_accepted() {
        let json = r#"{"Attribute":[
            {"uuid":"a","id":"12","timestamp":"1617056037","to_ids":"1","deleted":0},
            {"uuid":"b","id":12,"timestamp":1617056037,"to_ids":1,"deleted":"true"},
            {"uuid":"c","id":null,"timestamp":"soon","to_ids":false,"deleted":{"x":1},"Tag":null},
            {"uuid":"d","to_ids":"0","Tag":"tlp:red","value":42,"Event":"e"}
        ]}"#;
        let mut attrs = Vec::new();
        parse_document(json.as_bytes(), &mut |item| {
            if let Item::Attribute(a) = item {
                attrs.push((a.id, a.timestamp, a.to_ids, a.deleted, a.tags.len(), a.value.map(|v| v.into_owned())));
            }
        })
        .unwrap();
        assert_eq!(attrs[0], (Some(12), Some(1_617_056_037), Some(true), false, 0, None));
        assert_eq!(attrs[1], (Some(12), Some(1_617_056_037), Some(true), true, 0, None));
        assert_eq!(attrs[2], (None, None, Some(false), false, 0, None));
        assert_eq!(attrs[3], (None, None, Some(false), false, 0, Some("42".to_string())));
    }

    #[test]
    fn strings_without_escapes_are_borrowed() {
        let json = br#"{"Event":{"uuid":"e1","info":"plain","Attribute":[{"value":"a\/b","uuid":"x"}]}}"#;
        let mut checked = false;
        parse_document(json, &mut |item| {
            if let Item::Event(e) = item {
                assert!(matches!(e.info, Some(Cow::Borrowed("plain"))));
                let value = e.attributes.first().and_then(|a| a.value.clone());
                assert_eq!(value.as_deref(), Some("a/b"));
                checked = true;
            }
        })
        .unwrap();
        assert!(checked);
    }

    #[test]
    fn odd_list_elements_are_dropped_not_fatal() {
        let json = r#"{"Event":{"uuid":"e","Attribute":[1,"x",null,{"uuid":"ok"}],"Object":{"not":"a list"}}}"#;
        let mut n = 0;
        parse_document(json.as_bytes(), &mut |item| {
            if let Item::Event(e) = item {
                n = e.attributes.len();
                assert!(e.objects.is_empty());
            }
        })
        .unwrap();
        assert_eq!(n, 1);
    }

    #[test]
    fn truncated_and_corrupted_documents_never_panic() {
        let fixtures = [
            include_bytes!("../../testdata/misp/event.json").as_slice(),
            include_bytes!("../../testdata/misp/attributes_restsearch.json").as_slice(),
            include_bytes!("../../testdata/misp/events_restsearch.json").as_slice(),
        ];
        for doc in fixtures {
            for cut in 0..doc.len() {
                let _ = parse_document(&doc[..cut], &mut |_| {});
            }
            // Deterministic byte corruption: every 7th position set to each of a few hostile bytes.
            for (step, byte) in [(7usize, b'"'), (11, b'{'), (13, b']'), (17, 0xff), (19, b'\\')] {
                let mut bad = doc.to_vec();
                for i in (0..bad.len()).step_by(step) {
                    bad[i] = byte;
                }
                let _ = parse_document(&bad, &mut |_| {});
            }
        }
        // Deep nesting in any field is skipped without recursion (serde_json ignores values
        // iteratively) or refused by its recursion limit: either way, no stack overflow.
        for (open, close) in [("[", "]"), ("{\"x\":", "}")] {
            let deep = format!(
                "{{\"Event\":{{\"Attribute\":{}1{}, \"info\":{}1{}}}}}",
                open.repeat(100_000),
                close.repeat(100_000),
                open.repeat(100_000),
                close.repeat(100_000)
            );
            let _ = parse_document(deep.as_bytes(), &mut |_| {});
        }
    }
}

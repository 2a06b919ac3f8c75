//! CAP 1.2 (OASIS, 2010) parsed and validated with a namespace-aware XML
//! DOM (roxmltree): required elements and cardinalities, the exact
//! enumerations, times with a numeric offset, `identifier`/`sender`
//! characters, `restriction`/`addresses` by scope, `references` triples,
//! polygons, circles and value pairs. Element text is trimmed. Element order
//! is not enforced (the XSD's sequence; real feeds are not always in order).
//!
//! Every refusal is a [`CapError`] that names its rule ([`CapError::rule`]),
//! in English ([`std::fmt::Display`]) and Vietnamese
//! ([`CapError::message_vi`]).

use chrono::{DateTime, FixedOffset};
use roxmltree::{Document, Node, ParsingOptions};
use serde::{Deserialize, Serialize};

use crate::vocab::LevelError;

/// The CAP 1.2 namespace.
pub const CAP_NS: &str = "urn:oasis:names:tc:emergency:cap:1.2";

/// Most XML nodes a bulletin may have (a second bound besides the size).
const NODES_LIMIT: u32 = 100_000;

/// `status` values.
pub const STATUS: &[&str] = &["Actual", "Exercise", "System", "Test", "Draft"];
/// `msgType` values.
pub const MSG_TYPE: &[&str] = &["Alert", "Update", "Cancel", "Ack", "Error"];
/// `scope` values.
pub const SCOPE: &[&str] = &["Public", "Restricted", "Private"];
/// `category` values.
pub const CATEGORY: &[&str] = &[
    "Geo",
    "Met",
    "Safety",
    "Security",
    "Rescue",
    "Fire",
    "Health",
    "Env",
    "Transport",
    "Infra",
    "CBRNE",
    "Other",
];
/// `responseType` values.
pub const RESPONSE_TYPE: &[&str] = &[
    "Shelter", "Evacuate", "Prepare", "Execute", "Avoid", "Monitor", "Assess", "AllClear", "None",
];
/// `urgency` values.
pub const URGENCY: &[&str] = &["Immediate", "Expected", "Future", "Past", "Unknown"];
/// `severity` values.
pub const SEVERITY: &[&str] = &["Extreme", "Severe", "Moderate", "Minor", "Unknown"];
/// `certainty` values.
pub const CERTAINTY: &[&str] = &["Observed", "Likely", "Possible", "Unlikely", "Unknown"];

/// Why a bulletin is refused. Each variant is one rule.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CapError {
    /// Larger than the configured maximum.
    #[error("bulletin is {size} bytes, the limit (warnings.max_bytes) is {max}")]
    TooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// Not UTF-8 text.
    #[error("bulletin is not UTF-8 text")]
    NotUtf8,
    /// Not well-formed XML, or XML this parser refuses (a DTD, entity
    /// expansion, too many nodes).
    #[error("not well-formed XML: {0}")]
    Xml(String),
    /// The root is not `<alert>` in the CAP 1.2 namespace.
    #[error("the root element is {found}, not <alert> in namespace {CAP_NS}")]
    NotCap {
        /// What it is (`{namespace}name`).
        found: String,
    },
    /// A required element is missing.
    #[error("<{parent}> lacks the required <{element}>")]
    Missing {
        /// The missing element.
        element: &'static str,
        /// Where.
        parent: &'static str,
    },
    /// An element that may appear once appears more often.
    #[error("<{parent}> has more than one <{element}>")]
    Repeated {
        /// The element.
        element: &'static str,
        /// Where.
        parent: &'static str,
    },
    /// An element CAP 1.2 does not define there.
    #[error("<{parent}> has an element CAP 1.2 does not define there: <{element}>")]
    Unexpected {
        /// The element.
        element: String,
        /// Where.
        parent: &'static str,
    },
    /// A required element is empty.
    #[error("<{element}> is empty")]
    Empty {
        /// The element.
        element: &'static str,
    },
    /// A value not in the element's enumeration (case-sensitive).
    #[error("<{element}> is `{value}`, not one of {allowed}")]
    Enumeration {
        /// The element.
        element: &'static str,
        /// The value.
        value: String,
        /// The allowed values, comma-separated.
        allowed: String,
    },
    /// A time that is not `YYYY-MM-DDThh:mm:ss±hh:mm`.
    #[error("<{element}> `{value}` is not a CAP 1.2 time (YYYY-MM-DDThh:mm:ss±hh:mm; \"Z\" and fractions are not allowed)")]
    Time {
        /// The element.
        element: &'static str,
        /// The value.
        value: String,
    },
    /// `identifier` or `sender` with a space, comma, `<` or `&`.
    #[error("<{element}> `{value}` contains a space, comma, '<' or '&'")]
    IdCharacters {
        /// The element.
        element: &'static str,
        /// The value.
        value: String,
    },
    /// `restriction` (Restricted) or `addresses` (Private) missing.
    #[error("scope {scope} requires <{element}>")]
    ScopeNeeds {
        /// The scope.
        scope: String,
        /// The element it needs.
        element: &'static str,
    },
    /// `references` not whitespace-separated `sender,identifier,sent` triples.
    #[error("<references> item `{item}` is not sender,identifier,sent ({why})")]
    References {
        /// The item.
        item: String,
        /// What is wrong.
        why: &'static str,
    },
    /// An Update or Cancel without `references`.
    #[error("msgType {msg_type} requires <references> to the bulletins it changes")]
    ReferencesRequired {
        /// The msgType.
        msg_type: String,
    },
    /// A polygon that is not ≥ 4 closed `lat,lon` pairs.
    #[error("<polygon> `{value}` is invalid: {why}")]
    Polygon {
        /// The value (shortened).
        value: String,
        /// What is wrong.
        why: &'static str,
    },
    /// A circle that is not `lat,lon radius`.
    #[error("<circle> `{value}` is invalid: {why}")]
    Circle {
        /// The value.
        value: String,
        /// What is wrong.
        why: &'static str,
    },
    /// A number that does not parse (altitude, ceiling, size).
    #[error("<{element}> `{value}` is not a number")]
    Number {
        /// The element.
        element: &'static str,
        /// The value.
        value: String,
    },
    /// The risk level parameter is not a whole number 1–5.
    #[error("parameter {name} is `{value}`, not a risk level 1–5")]
    LevelValue {
        /// The parameter's valueName.
        name: String,
        /// The value.
        value: String,
    },
    /// The risk level is outside its hazard's legal range.
    #[error(transparent)]
    Level(#[from] LevelError),
}

impl CapError {
    /// The stable code of the rule broken (API `rule`, dead-letter detail).
    pub fn rule(&self) -> &'static str {
        match self {
            CapError::TooLarge { .. } => "too_large",
            CapError::NotUtf8 => "not_utf8",
            CapError::Xml(_) => "xml",
            CapError::NotCap { .. } => "not_cap_1_2",
            CapError::Missing { .. } => "required_element",
            CapError::Repeated { .. } => "cardinality",
            CapError::Unexpected { .. } => "unexpected_element",
            CapError::Empty { .. } => "empty_element",
            CapError::Enumeration { .. } => "enumeration",
            CapError::Time { .. } => "time_format",
            CapError::IdCharacters { .. } => "id_characters",
            CapError::ScopeNeeds { .. } => "scope_requires",
            CapError::References { .. } => "references_syntax",
            CapError::ReferencesRequired { .. } => "references_required",
            CapError::Polygon { .. } => "polygon",
            CapError::Circle { .. } => "circle",
            CapError::Number { .. } => "number",
            CapError::LevelValue { .. } => "risk_level_value",
            CapError::Level(_) => "risk_level_range",
        }
    }

    /// The same, in Vietnamese (API answers, the screen).
    pub fn message_vi(&self) -> String {
        match self {
            CapError::TooLarge { size, max } => {
                format!("Bản tin dài {size} byte, vượt giới hạn {max} byte (warnings.max_bytes)")
            }
            CapError::NotUtf8 => "Bản tin không phải văn bản UTF-8".into(),
            CapError::Xml(e) => format!("Bản tin không phải XML hợp lệ: {e}"),
            CapError::NotCap { found } => format!(
                "Phần tử gốc là {found}, không phải <alert> thuộc không gian tên CAP 1.2 ({CAP_NS})"
            ),
            CapError::Missing { element, parent } => {
                format!("<{parent}> thiếu phần tử bắt buộc <{element}>")
            }
            CapError::Repeated { element, parent } => {
                format!("<{parent}> chỉ được có một <{element}>")
            }
            CapError::Unexpected { element, parent } => {
                format!("<{parent}> có phần tử <{element}> mà CAP 1.2 không định nghĩa ở đó")
            }
            CapError::Empty { element } => format!("<{element}> để trống"),
            CapError::Enumeration {
                element,
                value,
                allowed,
            } => format!("<{element}> là `{value}`, không thuộc các giá trị cho phép: {allowed}"),
            CapError::Time { element, value } => format!(
                "<{element}> `{value}` không đúng định dạng thời gian CAP 1.2 (YYYY-MM-DDThh:mm:ss±hh:mm; không dùng \"Z\" hay phần lẻ giây)"
            ),
            CapError::IdCharacters { element, value } => format!(
                "<{element}> `{value}` chứa dấu cách, dấu phẩy, '<' hoặc '&'"
            ),
            CapError::ScopeNeeds { scope, element } => {
                format!("Phạm vi {scope} bắt buộc có <{element}>")
            }
            CapError::References { item, why } => format!(
                "Mục `{item}` trong <references> không phải dạng sender,identifier,sent ({why})"
            ),
            CapError::ReferencesRequired { msg_type } => format!(
                "Bản tin loại {msg_type} phải có <references> chỉ tới bản tin mà nó thay đổi"
            ),
            CapError::Polygon { value, why } => format!("<polygon> `{value}` không hợp lệ: {why}"),
            CapError::Circle { value, why } => format!("<circle> `{value}` không hợp lệ: {why}"),
            CapError::Number { element, value } => format!("<{element}> `{value}` không phải số"),
            CapError::LevelValue { name, value } => format!(
                "Tham số {name} là `{value}`, không phải cấp độ rủi ro thiên tai từ 1 đến 5"
            ),
            CapError::Level(e) => e.message_vi(),
        }
    }
}

/// A reference to an earlier bulletin (`sender,identifier,sent`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reference {
    /// Its sender.
    pub sender: String,
    /// Its identifier.
    pub identifier: String,
    /// Its `sent`, as written.
    pub sent: String,
}

impl Reference {
    /// The warning id it names (`sender|identifier|sent`).
    pub fn id(&self) -> String {
        warning_id(&self.sender, &self.identifier, &self.sent)
    }
}

/// The id of a bulletin: its CAP triple joined by `|`.
pub fn warning_id(sender: &str, identifier: &str, sent: &str) -> String {
    format!("{sender}|{identifier}|{sent}")
}

/// A `valueName`/`value` pair (eventCode, parameter, geocode).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pair {
    /// `valueName`.
    pub name: String,
    /// `value`.
    pub value: String,
}

/// A circle: centre and radius in kilometres.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Circle {
    /// Latitude of the centre.
    pub lat: f64,
    /// Longitude of the centre.
    pub lon: f64,
    /// Radius, km.
    pub radius_km: f64,
}

/// An `<area>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Area {
    /// `areaDesc`.
    pub desc: String,
    /// Polygons, each a closed ring of `(lat, lon)`.
    pub polygons: Vec<Vec<(f64, f64)>>,
    /// Circles.
    pub circles: Vec<Circle>,
    /// Geocodes.
    pub geocodes: Vec<Pair>,
    /// Altitude (feet, as CAP says).
    pub altitude: Option<f64>,
    /// Ceiling.
    pub ceiling: Option<f64>,
}

/// A `<resource>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Resource {
    /// `resourceDesc`.
    pub desc: String,
    /// `mimeType`.
    pub mime_type: String,
    /// `uri`.
    pub uri: Option<String>,
}

/// An `<info>` block.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Info {
    /// `language` (default `en-US`).
    pub language: String,
    /// `category` (1..n).
    pub categories: Vec<String>,
    /// `event`.
    pub event: String,
    /// `responseType` (0..n).
    pub response_types: Vec<String>,
    /// `urgency`.
    pub urgency: String,
    /// `severity`.
    pub severity: String,
    /// `certainty`.
    pub certainty: String,
    /// `audience`.
    pub audience: Option<String>,
    /// `eventCode` (0..n).
    pub event_codes: Vec<Pair>,
    /// `effective`.
    pub effective: Option<DateTime<FixedOffset>>,
    /// `onset`.
    pub onset: Option<DateTime<FixedOffset>>,
    /// `expires`.
    pub expires: Option<DateTime<FixedOffset>>,
    /// `senderName`.
    pub sender_name: Option<String>,
    /// `headline`.
    pub headline: Option<String>,
    /// `description`.
    pub description: Option<String>,
    /// `instruction`.
    pub instruction: Option<String>,
    /// `web`.
    pub web: Option<String>,
    /// `contact`.
    pub contact: Option<String>,
    /// `parameter` (0..n).
    pub parameters: Vec<Pair>,
    /// `resource` (0..n).
    pub resources: Vec<Resource>,
    /// `area` (0..n).
    pub areas: Vec<Area>,
}

impl Info {
    /// Whether the block is in Vietnamese (`vi`, `vi-VN`, any case).
    pub fn is_vietnamese(&self) -> bool {
        let l = self.language.to_ascii_lowercase();
        l == "vi" || l.starts_with("vi-")
    }

    /// The value of the first parameter named `name`.
    pub fn parameter(&self, name: &str) -> Option<&str> {
        self.parameters
            .iter()
            .find(|p| p.name == name)
            .map(|p| p.value.as_str())
    }
}

/// A validated CAP 1.2 `<alert>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// `identifier`.
    pub identifier: String,
    /// `sender`.
    pub sender: String,
    /// `sent`, parsed.
    pub sent: DateTime<FixedOffset>,
    /// `sent` as written (part of the bulletin's key).
    pub sent_text: String,
    /// `status`.
    pub status: String,
    /// `msgType`.
    pub msg_type: String,
    /// `source`.
    pub source: Option<String>,
    /// `scope`.
    pub scope: String,
    /// `restriction`.
    pub restriction: Option<String>,
    /// `addresses`.
    pub addresses: Option<String>,
    /// `code` (0..n).
    pub codes: Vec<String>,
    /// `note`.
    pub note: Option<String>,
    /// `references`, parsed.
    pub references: Vec<Reference>,
    /// `incidents`.
    pub incidents: Option<String>,
    /// `info` blocks, in document order.
    pub infos: Vec<Info>,
}

impl Alert {
    /// `sender|identifier|sent`.
    pub fn id(&self) -> String {
        warning_id(&self.sender, &self.identifier, &self.sent_text)
    }

    /// The block to show: the first Vietnamese one, else the first.
    pub fn display_info(&self) -> Option<&Info> {
        self.infos
            .iter()
            .find(|i| i.is_vietnamese())
            .or(self.infos.first())
    }

    /// The info blocks, Vietnamese first (stable otherwise).
    pub fn infos_vi_first(&self) -> Vec<&Info> {
        let mut v: Vec<&Info> = self.infos.iter().collect();
        v.sort_by_key(|i| !i.is_vietnamese());
        v
    }
}

/// Parse and validate a CAP 1.2 bulletin of at most `max_bytes`.
pub fn parse(bytes: &[u8], max_bytes: usize) -> Result<Alert, CapError> {
    if bytes.len() > max_bytes {
        return Err(CapError::TooLarge {
            size: bytes.len(),
            max: max_bytes,
        });
    }
    let text = std::str::from_utf8(bytes).map_err(|_| CapError::NotUtf8)?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let doc = Document::parse_with_options(
        text,
        ParsingOptions {
            allow_dtd: false,
            nodes_limit: NODES_LIMIT,
        },
    )
    .map_err(|e| CapError::Xml(e.to_string()))?;
    alert(doc.root_element())
}

/// Validate an `<alert>` element already parsed (a feed may embed one).
pub fn alert(root: Node<'_, '_>) -> Result<Alert, CapError> {
    if root.tag_name().name() != "alert" || root.tag_name().namespace() != Some(CAP_NS) {
        return Err(CapError::NotCap {
            found: expanded(root),
        });
    }
    let e = Children::of(root, "alert")?;
    e.only(&[
        "identifier",
        "sender",
        "sent",
        "status",
        "msgType",
        "source",
        "scope",
        "restriction",
        "addresses",
        "code",
        "note",
        "references",
        "incidents",
        "info",
    ])?;
    let identifier = e.one("identifier")?;
    check_id("identifier", &identifier)?;
    let sender = e.one("sender")?;
    check_id("sender", &sender)?;
    let sent_text = e.one("sent")?;
    let sent = time("sent", &sent_text)?;
    let status = enumerated("status", e.one("status")?, STATUS)?;
    let msg_type = enumerated("msgType", e.one("msgType")?, MSG_TYPE)?;
    let scope = enumerated("scope", e.one("scope")?, SCOPE)?;
    let restriction = e.opt("restriction")?;
    let addresses = e.opt("addresses")?;
    if scope == "Restricted" && restriction.is_none() {
        return Err(CapError::ScopeNeeds {
            scope,
            element: "restriction",
        });
    }
    if scope == "Private" && addresses.is_none() {
        return Err(CapError::ScopeNeeds {
            scope,
            element: "addresses",
        });
    }
    let references = match e.opt("references")? {
        Some(r) => references(&r)?,
        None => Vec::new(),
    };
    if references.is_empty() && matches!(msg_type.as_str(), "Update" | "Cancel") {
        return Err(CapError::ReferencesRequired { msg_type });
    }
    let infos = e
        .all("info")
        .map(info)
        .collect::<Result<Vec<_>, CapError>>()?;
    Ok(Alert {
        identifier,
        sender,
        sent,
        sent_text,
        status,
        msg_type,
        source: e.opt("source")?,
        scope,
        restriction,
        addresses,
        codes: e.texts("code"),
        note: e.opt("note")?,
        references,
        incidents: e.opt("incidents")?,
        infos,
    })
}

fn info(node: Node<'_, '_>) -> Result<Info, CapError> {
    let e = Children::of(node, "info")?;
    e.only(&[
        "language",
        "category",
        "event",
        "responseType",
        "urgency",
        "severity",
        "certainty",
        "audience",
        "eventCode",
        "effective",
        "onset",
        "expires",
        "senderName",
        "headline",
        "description",
        "instruction",
        "web",
        "contact",
        "parameter",
        "resource",
        "area",
    ])?;
    let categories = e.texts("category");
    if categories.is_empty() {
        return Err(CapError::Missing {
            element: "category",
            parent: "info",
        });
    }
    let categories = categories
        .into_iter()
        .map(|c| enumerated("category", c, CATEGORY))
        .collect::<Result<Vec<_>, _>>()?;
    let response_types = e
        .texts("responseType")
        .into_iter()
        .map(|c| enumerated("responseType", c, RESPONSE_TYPE))
        .collect::<Result<Vec<_>, _>>()?;
    let opt_time = |name: &'static str| -> Result<Option<DateTime<FixedOffset>>, CapError> {
        e.opt(name)?.map(|t| time(name, &t)).transpose()
    };
    Ok(Info {
        language: e.opt("language")?.unwrap_or_else(|| "en-US".into()),
        categories,
        event: e.one("event")?,
        response_types,
        urgency: enumerated("urgency", e.one("urgency")?, URGENCY)?,
        severity: enumerated("severity", e.one("severity")?, SEVERITY)?,
        certainty: enumerated("certainty", e.one("certainty")?, CERTAINTY)?,
        audience: e.opt("audience")?,
        event_codes: e
            .all("eventCode")
            .map(|n| pair(n, "eventCode"))
            .collect::<Result<_, _>>()?,
        effective: opt_time("effective")?,
        onset: opt_time("onset")?,
        expires: opt_time("expires")?,
        sender_name: e.opt("senderName")?,
        headline: e.opt("headline")?,
        description: e.opt("description")?,
        instruction: e.opt("instruction")?,
        web: e.opt("web")?,
        contact: e.opt("contact")?,
        parameters: e
            .all("parameter")
            .map(|n| pair(n, "parameter"))
            .collect::<Result<_, _>>()?,
        resources: e.all("resource").map(resource).collect::<Result<_, _>>()?,
        areas: e.all("area").map(area).collect::<Result<_, _>>()?,
    })
}

fn resource(node: Node<'_, '_>) -> Result<Resource, CapError> {
    let e = Children::of(node, "resource")?;
    e.only(&[
        "resourceDesc",
        "mimeType",
        "size",
        "uri",
        "derefUri",
        "digest",
    ])?;
    if let Some(size) = e.opt("size")? {
        if size.parse::<u64>().is_err() {
            return Err(CapError::Number {
                element: "size",
                value: size,
            });
        }
    }
    e.opt("derefUri")?;
    e.opt("digest")?;
    Ok(Resource {
        desc: e.one("resourceDesc")?,
        mime_type: e.one("mimeType")?,
        uri: e.opt("uri")?,
    })
}

fn area(node: Node<'_, '_>) -> Result<Area, CapError> {
    let e = Children::of(node, "area")?;
    e.only(&[
        "areaDesc", "polygon", "circle", "geocode", "altitude", "ceiling",
    ])?;
    let number = |name: &'static str| -> Result<Option<f64>, CapError> {
        e.opt(name)?
            .map(|v| {
                v.parse::<f64>()
                    .ok()
                    .filter(|x| x.is_finite())
                    .ok_or(CapError::Number {
                        element: name,
                        value: v,
                    })
            })
            .transpose()
    };
    let altitude = number("altitude")?;
    let ceiling = number("ceiling")?;
    if ceiling.is_some() && altitude.is_none() {
        return Err(CapError::Missing {
            element: "altitude",
            parent: "area",
        });
    }
    Ok(Area {
        desc: e.one("areaDesc")?,
        polygons: e
            .texts("polygon")
            .iter()
            .map(|p| polygon(p))
            .collect::<Result<_, _>>()?,
        circles: e
            .texts("circle")
            .iter()
            .map(|c| circle(c))
            .collect::<Result<_, _>>()?,
        geocodes: e
            .all("geocode")
            .map(|n| pair(n, "geocode"))
            .collect::<Result<_, _>>()?,
        altitude,
        ceiling,
    })
}

fn pair(node: Node<'_, '_>, parent: &'static str) -> Result<Pair, CapError> {
    let e = Children::of(node, parent)?;
    e.only(&["valueName", "value"])?;
    Ok(Pair {
        name: e.one("valueName")?,
        value: e.opt("value")?.ok_or(CapError::Missing {
            element: "value",
            parent,
        })?,
    })
}

/// `lat,lon` with both in range.
fn point(s: &str) -> Option<(f64, f64)> {
    let (lat, lon) = s.split_once(',')?;
    let lat: f64 = lat.trim().parse().ok()?;
    let lon: f64 = lon.trim().parse().ok()?;
    ((-90.0..=90.0).contains(&lat) && (-180.0..=180.0).contains(&lon)).then_some((lat, lon))
}

fn short(s: &str) -> String {
    if s.chars().count() > 80 {
        let mut t: String = s.chars().take(77).collect();
        t.push_str("...");
        t
    } else {
        s.to_owned()
    }
}

/// A polygon: whitespace-separated `lat,lon` pairs, ≥ 4, first = last.
pub fn polygon(s: &str) -> Result<Vec<(f64, f64)>, CapError> {
    let fail = |why| CapError::Polygon {
        value: short(s),
        why,
    };
    let points = s
        .split_whitespace()
        .map(|p| point(p).ok_or(fail("a point is not lat,lon within -90..90, -180..180")))
        .collect::<Result<Vec<_>, _>>()?;
    if points.len() < 4 {
        return Err(fail("fewer than 4 points"));
    }
    if points.first() != points.last() {
        return Err(fail("not closed (the first and last points differ)"));
    }
    Ok(points)
}

/// A circle: `lat,lon radius` (radius in km, ≥ 0).
pub fn circle(s: &str) -> Result<Circle, CapError> {
    let fail = |why| CapError::Circle {
        value: short(s),
        why,
    };
    let mut parts = s.split_whitespace();
    let (Some(centre), Some(radius), None) = (parts.next(), parts.next(), parts.next()) else {
        return Err(fail("not `lat,lon radius`"));
    };
    let (lat, lon) = point(centre).ok_or(fail("the centre is not lat,lon within range"))?;
    let radius_km: f64 = radius
        .parse()
        .ok()
        .filter(|r: &f64| r.is_finite() && *r >= 0.0)
        .ok_or(fail("the radius is not a number ≥ 0"))?;
    Ok(Circle {
        lat,
        lon,
        radius_km,
    })
}

/// `references`: whitespace-separated `sender,identifier,sent` triples.
pub fn references(s: &str) -> Result<Vec<Reference>, CapError> {
    s.split_whitespace()
        .map(|item| {
            let fail = |why| CapError::References {
                item: short(item),
                why,
            };
            let parts: Vec<&str> = item.split(',').collect();
            let [sender, identifier, sent] = parts[..] else {
                return Err(fail("not three comma-separated parts"));
            };
            if sender.is_empty() || identifier.is_empty() {
                return Err(fail("an empty sender or identifier"));
            }
            if time("references", sent).is_err() {
                return Err(fail("the sent part is not a CAP 1.2 time"));
            }
            Ok(Reference {
                sender: sender.into(),
                identifier: identifier.into(),
                sent: sent.into(),
            })
        })
        .collect()
}

/// A CAP 1.2 time: `YYYY-MM-DDThh:mm:ss±hh:mm`, nothing else.
pub fn time(element: &'static str, s: &str) -> Result<DateTime<FixedOffset>, CapError> {
    let fail = || CapError::Time {
        element,
        value: short(s),
    };
    let b = s.as_bytes();
    let shape = b.len() == 25
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b'T',
            13 | 16 | 22 => *c == b':',
            19 => *c == b'+' || *c == b'-',
            _ => c.is_ascii_digit(),
        });
    if !shape {
        return Err(fail());
    }
    DateTime::parse_from_rfc3339(s).map_err(|_| fail())
}

fn check_id(element: &'static str, v: &str) -> Result<(), CapError> {
    if v.chars()
        .any(|c| c.is_whitespace() || c == ',' || c == '<' || c == '&')
    {
        return Err(CapError::IdCharacters {
            element,
            value: short(v),
        });
    }
    Ok(())
}

fn enumerated(element: &'static str, v: String, allowed: &[&str]) -> Result<String, CapError> {
    if allowed.contains(&v.as_str()) {
        Ok(v)
    } else {
        Err(CapError::Enumeration {
            element,
            value: short(&v),
            allowed: allowed.join(", "),
        })
    }
}

fn expanded(n: Node<'_, '_>) -> String {
    match n.tag_name().namespace() {
        Some(ns) => format!("<{}> in namespace {ns}", n.tag_name().name()),
        None => format!("<{}> in no namespace", n.tag_name().name()),
    }
}

/// The CAP-namespace element children of one element.
struct Children<'a, 'i> {
    parent: &'static str,
    nodes: Vec<Node<'a, 'i>>,
}

impl<'a, 'i> Children<'a, 'i> {
    /// The element children of `node`; a child in another namespace is
    /// allowed only on `<alert>` (XML signatures), and ignored.
    fn of(node: Node<'a, 'i>, parent: &'static str) -> Result<Self, CapError> {
        let mut nodes = Vec::new();
        for c in node.children().filter(Node::is_element) {
            if c.tag_name().namespace() == Some(CAP_NS) {
                nodes.push(c);
            } else if parent != "alert" {
                return Err(CapError::Unexpected {
                    element: expanded(c),
                    parent,
                });
            }
        }
        Ok(Children { parent, nodes })
    }

    fn only(&self, known: &[&str]) -> Result<(), CapError> {
        match self
            .nodes
            .iter()
            .find(|n| !known.contains(&n.tag_name().name()))
        {
            Some(n) => Err(CapError::Unexpected {
                element: n.tag_name().name().to_owned(),
                parent: self.parent,
            }),
            None => Ok(()),
        }
    }

    fn all(&self, name: &'static str) -> impl Iterator<Item = Node<'a, 'i>> + '_ {
        self.nodes
            .iter()
            .copied()
            .filter(move |n| n.tag_name().name() == name)
    }

    /// 0..1, trimmed; an empty element counts as absent.
    fn opt(&self, name: &'static str) -> Result<Option<String>, CapError> {
        let mut it = self.all(name);
        let first = it.next();
        if it.next().is_some() {
            return Err(CapError::Repeated {
                element: name,
                parent: self.parent,
            });
        }
        Ok(first.map(text).filter(|t| !t.is_empty()))
    }

    /// Exactly 1, trimmed, not empty.
    fn one(&self, name: &'static str) -> Result<String, CapError> {
        let mut it = self.all(name);
        let Some(first) = it.next() else {
            return Err(CapError::Missing {
                element: name,
                parent: self.parent,
            });
        };
        if it.next().is_some() {
            return Err(CapError::Repeated {
                element: name,
                parent: self.parent,
            });
        }
        let t = text(first);
        if t.is_empty() {
            return Err(CapError::Empty { element: name });
        }
        Ok(t)
    }

    /// 0..n texts, trimmed, empty ones dropped.
    fn texts(&self, name: &'static str) -> Vec<String> {
        self.all(name).map(text).filter(|t| !t.is_empty()).collect()
    }
}

/// The trimmed text of a leaf element (text and CDATA children joined).
fn text(n: Node<'_, '_>) -> String {
    let mut s = String::new();
    for c in n.children().filter(Node::is_text) {
        s.push_str(c.text().unwrap_or(""));
    }
    s.trim().to_owned()
}

//! The small XML documents infrastructure messages carry (a
//! registration, its answer, a heartbeat's status, a control message),
//! read through the messages' guard (no DTD, no entities, bounded depth)
//! and at most [`MAX_XML`] bytes; and the escaping of what rs writes into
//! them. Every field is optional as read: each kind uses its own.

use super::Error;

/// Most bytes of the XML in a registration, answer or heartbeat.
const MAX_XML: usize = 256 * 1024;

/// What a registration, heartbeat or answer says, as read (every field
/// optional: each kind uses its own).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Deserialize)]
pub(super) struct Said {
    #[serde(rename = "@component")]
    pub(super) component: Option<String>,
    #[serde(rename = "@site")]
    pub(super) site: Option<String>,
    #[serde(rename = "@status")]
    pub(super) status: Option<String>,
    #[serde(rename = "@reason")]
    pub(super) reason: Option<String>,
    #[serde(rename = "@outbound")]
    pub(super) outbound: Option<String>,
    #[serde(rename = "@action")]
    pub(super) action: Option<String>,
    #[serde(rename = "@registration-id")]
    pub(super) registration_id: Option<String>,
    /// A heartbeat's children, as last heard by the relay.
    #[serde(rename = "component", default)]
    pub(super) nested: Vec<Child>,
    /// An answer's default configuration.
    #[serde(rename = "$text", default)]
    pub(super) text: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Deserialize)]
pub(super) struct Child {
    #[serde(rename = "@id")]
    pub(super) id: String,
    #[serde(rename = "@heard")]
    pub(super) heard: String,
    #[serde(rename = "@outbound")]
    pub(super) outbound: Option<String>,
}

impl Said {
    pub(super) fn get(&self, k: &str) -> Option<&str> {
        match k {
            "component" => self.component.as_deref(),
            "site" => self.site.as_deref(),
            "status" => self.status.as_deref(),
            "reason" => self.reason.as_deref(),
            "outbound" => self.outbound.as_deref(),
            "action" => self.action.as_deref(),
            "registration-id" => self.registration_id.as_deref(),
            _ => None,
        }
    }
}

/// Reads the small XML document of an infrastructure message, through the
/// messages' guard (no DTD, no entities, bounded).
pub(super) fn read(bytes: &[u8]) -> Result<Said, Error> {
    if bytes.len() > MAX_XML {
        return Err(Error::TooLarge { limit: MAX_XML });
    }
    let text = crate::message::xml::guard(bytes, 10_000)?;
    Ok(quick_xml::de::from_str(text)?)
}

/// Whether `bytes` reads as the document of an infrastructure message
/// (for the fuzz target `infra_xml`): the reason when it does not.
pub fn read_document(bytes: &[u8]) -> Result<(), Error> {
    read(bytes).map(|_| ())
}

pub(super) fn xml_attr(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

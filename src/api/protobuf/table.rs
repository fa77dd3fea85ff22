//! The shape of the generated protobuf schema table ([`super::schema`]).

/// The type of a field's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ty {
    String,
    /// Bytes; JSON carries them as standard base64.
    Bytes,
    Bool,
    Int32,
    Int64,
    Double,
    /// A message of the table, by index into [`super::schema::MESSAGES`].
    Message(u16),
    /// `resource.Quantity`: a JSON string.
    Quantity,
    /// `intstr.IntOrString`: a JSON number or string.
    IntOrString,
    /// `meta.v1.Time`: RFC 3339 with seconds precision.
    Time,
    /// `meta.v1.MicroTime`: RFC 3339 with microseconds.
    MicroTime,
    /// `meta.v1.Duration`: a Go duration string such as `1h2m3s`.
    Duration,
    /// `runtime.RawExtension`: embedded JSON.
    RawExtension,
    /// `meta.v1.FieldsV1`: embedded JSON.
    FieldsV1,
}

/// How a field occurs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Label {
    /// At most one value (the last one read wins).
    Optional,
    /// A JSON array; scalars may be packed or not.
    Repeated,
    /// A JSON object keyed by string: repeated entry messages (1 key, 2 value).
    Map,
    /// An embedded Go struct with `json:",inline"`: the message's fields join the parent object.
    Inline,
}

/// One field of a message.
#[derive(Debug, Clone, Copy)]
pub struct Field {
    pub tag: u32,
    /// The JSON property name; empty for [`Label::Inline`].
    pub json: &'static str,
    pub ty: Ty,
    pub label: Label,
    /// The Go field is a non-pointer `omitempty` one: Go's protobuf encoder always writes it, but
    /// its JSON form leaves a zero value out, so the decoder does too.
    pub omit_zero: bool,
}

/// One message type.
#[derive(Debug, Clone, Copy)]
pub struct Message {
    /// Full proto name, e.g. `k8s.io.api.core.v1.Pod`.
    pub name: &'static str,
    /// A Go named slice (`type ExtraValue []string`): the JSON form is the bare array of the
    /// message's only field, `items`.
    pub array_wrapper: bool,
    /// Sorted by tag.
    pub fields: &'static [Field],
}

impl Message {
    pub fn field(&self, tag: u32) -> Option<&'static Field> {
        self.fields
            .binary_search_by_key(&tag, |f| f.tag)
            .ok()
            .map(|i| &self.fields[i])
    }
}

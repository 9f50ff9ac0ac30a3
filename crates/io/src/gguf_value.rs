//! GGUF metadata values: the 13 value types of the format and their encoding.

use std::io::Write;

/// The type tag of a GGUF metadata value (`enum gguf_type`).
///
/// ```
/// use modelopt_io::GgufType;
/// assert_eq!(GgufType::from_id(8), Some(GgufType::String));
/// assert_eq!(GgufType::F64.id(), 12);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum GgufType {
    /// `u8`
    U8,
    /// `i8`
    I8,
    /// `u16`
    U16,
    /// `i16`
    I16,
    /// `u32`
    U32,
    /// `i32`
    I32,
    /// `f32`
    F32,
    /// `bool` (one byte, 0 or 1)
    Bool,
    /// UTF-8 string (u64 length + bytes)
    String,
    /// Array (item type + u64 count + items)
    Array,
    /// `u64`
    U64,
    /// `i64`
    I64,
    /// `f64`
    F64,
}

impl GgufType {
    const ALL: [GgufType; 13] = [
        GgufType::U8,
        GgufType::I8,
        GgufType::U16,
        GgufType::I16,
        GgufType::U32,
        GgufType::I32,
        GgufType::F32,
        GgufType::Bool,
        GgufType::String,
        GgufType::Array,
        GgufType::U64,
        GgufType::I64,
        GgufType::F64,
    ];

    /// The numeric tag in the file.
    ///
    /// ```
    /// assert_eq!(modelopt_io::GgufType::Bool.id(), 7);
    /// ```
    pub fn id(self) -> u32 {
        Self::ALL.iter().position(|t| *t == self).unwrap_or(0) as u32 // ok: every variant is in ALL
    }

    /// The type with tag `id`.
    ///
    /// ```
    /// assert_eq!(modelopt_io::GgufType::from_id(13), None);
    /// ```
    pub fn from_id(id: u32) -> Option<Self> {
        Self::ALL.get(id as usize).copied()
    }

    /// Fewest bytes a value of this type takes in a file (bounds counts read from hostile files).
    pub(crate) fn min_bytes(self) -> usize {
        match self {
            GgufType::U8 | GgufType::I8 | GgufType::Bool => 1,
            GgufType::U16 | GgufType::I16 => 2,
            GgufType::U32 | GgufType::I32 | GgufType::F32 => 4,
            GgufType::U64 | GgufType::I64 | GgufType::F64 | GgufType::String => 8,
            GgufType::Array => 12,
        }
    }
}

/// A GGUF metadata value.
///
/// ```
/// use modelopt_io::{GgufType, GgufValue};
/// let v = GgufValue::array(GgufType::String, vec!["a".into(), "b".into()])?;
/// assert_eq!(v.value_type(), GgufType::Array);
/// assert_eq!(GgufValue::from(2u32).as_u64(), Some(2));
/// assert_eq!(GgufValue::from("llama").as_str(), Some("llama"));
/// # Ok::<(), modelopt_io::IoError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum GgufValue {
    /// `u8`
    U8(u8),
    /// `i8`
    I8(i8),
    /// `u16`
    U16(u16),
    /// `i16`
    I16(i16),
    /// `u32`
    U32(u32),
    /// `i32`
    I32(i32),
    /// `f32`
    F32(f32),
    /// `bool`
    Bool(bool),
    /// A string.
    String(String),
    /// An array whose items all have `item_type`.
    Array {
        /// Type of every item.
        item_type: GgufType,
        /// The items.
        items: Vec<GgufValue>,
    },
    /// `u64`
    U64(u64),
    /// `i64`
    I64(i64),
    /// `f64`
    F64(f64),
}

impl GgufValue {
    /// An array value; an error if an item's type differs from `item_type`.
    ///
    /// ```
    /// use modelopt_io::{GgufType, GgufValue};
    /// assert!(GgufValue::array(GgufType::U8, vec![GgufValue::I8(1)]).is_err());
    /// ```
    pub fn array(item_type: GgufType, items: Vec<GgufValue>) -> crate::Result<Self> {
        if let Some(bad) = items.iter().find(|v| v.value_type() != item_type) {
            return Err(crate::IoError::Usage(format!(
                "GGUF array of {item_type:?} holds a {:?}",
                bad.value_type()
            )));
        }
        Ok(GgufValue::Array { item_type, items })
    }

    /// This value's type tag.
    ///
    /// ```
    /// assert_eq!(modelopt_io::GgufValue::F64(1.0).value_type(), modelopt_io::GgufType::F64);
    /// ```
    pub fn value_type(&self) -> GgufType {
        match self {
            GgufValue::U8(_) => GgufType::U8,
            GgufValue::I8(_) => GgufType::I8,
            GgufValue::U16(_) => GgufType::U16,
            GgufValue::I16(_) => GgufType::I16,
            GgufValue::U32(_) => GgufType::U32,
            GgufValue::I32(_) => GgufType::I32,
            GgufValue::F32(_) => GgufType::F32,
            GgufValue::Bool(_) => GgufType::Bool,
            GgufValue::String(_) => GgufType::String,
            GgufValue::Array { .. } => GgufType::Array,
            GgufValue::U64(_) => GgufType::U64,
            GgufValue::I64(_) => GgufType::I64,
            GgufValue::F64(_) => GgufType::F64,
        }
    }

    /// The value as an unsigned integer, if it is a non-negative integer of any width.
    ///
    /// ```
    /// assert_eq!(modelopt_io::GgufValue::I32(-1).as_u64(), None);
    /// ```
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            GgufValue::U8(v) => Some(v.into()),
            GgufValue::U16(v) => Some(v.into()),
            GgufValue::U32(v) => Some(v.into()),
            GgufValue::U64(v) => Some(v),
            GgufValue::I8(v) => u64::try_from(v).ok(),
            GgufValue::I16(v) => u64::try_from(v).ok(),
            GgufValue::I32(v) => u64::try_from(v).ok(),
            GgufValue::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    /// The value as a string slice, if it is a string.
    ///
    /// ```
    /// assert_eq!(modelopt_io::GgufValue::U8(1).as_str(), None);
    /// ```
    pub fn as_str(&self) -> Option<&str> {
        match self {
            GgufValue::String(s) => Some(s),
            _ => None,
        }
    }

    /// Appends the payload (without the type tag) in GGUF encoding.
    pub(crate) fn write_payload(&self, out: &mut impl Write) -> std::io::Result<()> {
        match self {
            GgufValue::U8(v) => out.write_all(&v.to_le_bytes()),
            GgufValue::I8(v) => out.write_all(&v.to_le_bytes()),
            GgufValue::U16(v) => out.write_all(&v.to_le_bytes()),
            GgufValue::I16(v) => out.write_all(&v.to_le_bytes()),
            GgufValue::U32(v) => out.write_all(&v.to_le_bytes()),
            GgufValue::I32(v) => out.write_all(&v.to_le_bytes()),
            GgufValue::F32(v) => out.write_all(&v.to_le_bytes()),
            GgufValue::Bool(v) => out.write_all(&[u8::from(*v)]),
            GgufValue::String(s) => write_string(out, s),
            GgufValue::Array { item_type, items } => {
                out.write_all(&item_type.id().to_le_bytes())?;
                out.write_all(&(items.len() as u64).to_le_bytes())?;
                items.iter().try_for_each(|v| v.write_payload(out))
            }
            GgufValue::U64(v) => out.write_all(&v.to_le_bytes()),
            GgufValue::I64(v) => out.write_all(&v.to_le_bytes()),
            GgufValue::F64(v) => out.write_all(&v.to_le_bytes()),
        }
    }
}

pub(crate) fn write_string(out: &mut impl Write, s: &str) -> std::io::Result<()> {
    out.write_all(&(s.len() as u64).to_le_bytes())?;
    out.write_all(s.as_bytes())
}

macro_rules! from_scalar {
    ($($t:ty => $v:ident),*) => {$(
        impl From<$t> for GgufValue {
            fn from(x: $t) -> Self { GgufValue::$v(x) }
        }
    )*};
}
from_scalar!(u8 => U8, i8 => I8, u16 => U16, i16 => I16, u32 => U32, i32 => I32, f32 => F32,
    bool => Bool, String => String, u64 => U64, i64 => I64, f64 => F64);

impl From<&str> for GgufValue {
    fn from(s: &str) -> Self {
        GgufValue::String(s.to_owned())
    }
}

//! What a key holds.

use super::Tunables;
use crate::bytes::SmallBytes;

/// A stored value.
pub enum Value {
    Str(SmallBytes),
    Hash(Box<crate::types::Hash>),
    List(Box<crate::types::List>),
    Set(Box<crate::types::Set>),
    ZSet(Box<crate::types::ZSet>),
    Stream(Box<crate::types::stream::Stream>),
}

impl Value {
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Str(_) => "string",
            Value::Hash(_) => "hash",
            Value::List(_) => "list",
            Value::Set(_) => "set",
            Value::ZSet(_) => "zset",
            Value::Stream(_) => "stream",
        }
    }

    /// The encoding OBJECT ENCODING names, given the thresholds in `t`.
    pub fn encoding_with(&self, _t: &Tunables) -> &'static str {
        self.encoding()
    }

    pub fn encoding(&self) -> &'static str {
        match self {
            Value::Str(s) if s.len() <= 20 && crate::num::parse_i64(s).is_some() => "int",
            Value::Str(s) if s.len() <= 44 => "embstr",
            Value::Str(_) => "raw",
            Value::Hash(h) => h.encoding(),
            // A deque of elements: the indexed encoding (compact encodings come with issue 4).
            Value::List(l) => l.encoding(),
            Value::Set(s) => s.encoding(),
            Value::ZSet(z) => z.encoding(),
            Value::Stream(_) => "stream",
        }
    }

    /// Whether this is a collection with no elements left (which Redis removes).
    pub fn is_empty_collection(&self) -> bool {
        match self {
            Value::Str(_) => false,
            Value::Hash(h) => h.is_empty(),
            Value::List(l) => l.is_empty(),
            Value::Set(s) => s.is_empty(),
            Value::ZSet(z) => z.is_empty(),
            // Redis keeps empty streams (they carry ids and groups).
            Value::Stream(_) => false,
        }
    }

    /// A copy that shares nothing with `self` (COPY).
    pub fn deep_clone(&self) -> Value {
        match self {
            Value::Str(s) => Value::Str(s.clone()),
            Value::Hash(h) => Value::Hash(h.clone()),
            Value::List(l) => Value::List(l.clone()),
            Value::Set(s) => Value::Set(s.clone()),
            Value::ZSet(z) => Value::ZSet(Box::new(z.deep_clone())),
            Value::Stream(s) => Value::Stream(s.clone()),
        }
    }

    /// Estimated bytes owned by this value outside its table slot.
    pub fn heap_bytes(&self) -> usize {
        match self {
            Value::Str(s) => s.heap_bytes(),
            Value::Hash(h) => {
                crate::mem::alloc_size(std::mem::size_of::<crate::types::Hash>()) + h.heap_bytes()
            }
            Value::List(l) => l.heap_bytes(),
            Value::Set(s) => s.heap_bytes(),
            Value::ZSet(z) => z.table_bytes(),
            Value::Stream(s) => s.heap_bytes(),
        }
    }
}

//! The canonical JSON form a plan's digest is computed over, written by one serializer
//! from any `Serialize` value: members of every object sorted by key (byte order), no
//! whitespace, strings and numbers exactly as serde_json writes them. A leaf: std, serde
//! and serde_json only.
//!
//! It streams: bytes leave through the sink in chunks as they are final. Struct members
//! arrive in declaration order, so a struct is walked once to learn its keys (values
//! untouched), then once to write: a member whose turn has come is written straight
//! through (a long list streams), one that comes early waits in a small buffer. Maps,
//! whose size comes from outside, are written in one pass when their keys already come
//! sorted (serde_json's `Map`), and buffered and sorted otherwise.

use std::fmt::{self, Display};
use std::io::{self, Write};

use serde::ser::{self, Impossible, Serialize};

/// Bytes held before they are handed to the sink.
const CHUNK: usize = 60 * 1024;

/// The most members a struct may have (derived structs: fixed at compile time).
const MAX_STRUCT_MEMBERS: usize = 24;

/// Why a value has no canonical form, or the sink failed.
#[derive(Debug)]
pub struct Error(String);

impl Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl ser::Error for Error {
    fn custom<T: Display>(msg: T) -> Self {
        Error(msg.to_string())
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Error(e.to_string())
    }
}

impl From<Error> for io::Error {
    fn from(e: Error) -> Self {
        io::Error::other(e.0)
    }
}

/// Write the canonical form of `value` to `sink`. `omit` names a top-level struct member
/// left out (the plan's own `digest`).
pub fn write<T: Serialize + ?Sized>(
    value: &T,
    omit: Option<&str>,
    sink: &mut dyn Write,
) -> Result<(), Error> {
    let mut buf = Vec::with_capacity(CHUNK + 4 * 1024);
    write_into(&mut buf, sink, value, omit)?;
    sink.write_all(&buf)?;
    Ok(())
}

/// Append the canonical form of `value` to `buf`, handing `buf` over to `sink` (and
/// clearing it) whenever it holds a full chunk; the caller writes what is left.
pub fn write_into<T: Serialize + ?Sized>(
    buf: &mut Vec<u8>,
    sink: &mut dyn Write,
    value: &T,
    omit: Option<&str>,
) -> Result<(), Error> {
    let mut out = Out {
        buf: std::mem::take(buf),
        sink: Some(sink),
        spare: Vec::new(),
        keys: Vec::new(),
    };
    let result = write_value(&mut out, value, omit);
    *buf = out.buf;
    result
}

/// The canonical form in memory (small values: map entries being sorted, tests).
pub fn to_vec<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, Error> {
    let mut out = Out {
        buf: Vec::new(),
        sink: None,
        spare: Vec::new(),
        keys: Vec::new(),
    };
    write_value(&mut out, value, None)?;
    Ok(out.buf)
}

/// Serializer methods of one argument that all answer alike:
/// `each! { |self, v| body; serialize_i8(i8), serialize_i16(i16) }`.
macro_rules! each {
    (|$self:ident, $v:ident| $body:expr; $($name:ident($ty:ty)),* $(,)?) => {
        $(fn $name($self, $v: $ty) -> Result<Self::Ok, Error> {
            $body
        })*
    };
}

/// The compound starts a serializer refuses, each answering `$err`.
macro_rules! refuse_compounds {
    ($err:expr) => {
        fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, Error> {
            $err
        }
        fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, Error> {
            $err
        }
        fn serialize_tuple_struct(
            self,
            _: &'static str,
            _: usize,
        ) -> Result<Self::SerializeTupleStruct, Error> {
            $err
        }
        fn serialize_tuple_variant(
            self,
            _: &'static str,
            _: u32,
            _: &'static str,
            _: usize,
        ) -> Result<Self::SerializeTupleVariant, Error> {
            $err
        }
        fn serialize_struct_variant(
            self,
            _: &'static str,
            _: u32,
            _: &'static str,
            _: usize,
        ) -> Result<Self::SerializeStructVariant, Error> {
            $err
        }
    };
}

struct Out<'a> {
    buf: Vec<u8>,
    sink: Option<&'a mut dyn Write>,
    /// Emptied buffers for members that come early, kept to save allocations.
    spare: Vec<Vec<u8>>,
    /// The member keys of the structs being written, innermost last.
    keys: Vec<&'static str>,
}

impl Out<'_> {
    fn borrow_scratch(&mut self) -> Vec<u8> {
        self.spare.pop().unwrap_or_default()
    }

    fn give_back(&mut self, mut scratch: Vec<u8>) {
        // Keep small buffers only: one big member must not pin its size for the rest.
        if scratch.capacity() <= CHUNK && self.spare.len() < 64 {
            scratch.clear();
            self.spare.push(scratch);
        }
    }

    fn flush_full(&mut self) -> Result<(), Error> {
        if self.buf.len() >= CHUNK
            && let Some(sink) = self.sink.as_mut()
        {
            sink.write_all(&self.buf)?;
            self.buf.clear();
        }
        Ok(())
    }

    fn string(&mut self, s: &str) -> Result<(), Error> {
        serde_json::to_writer(&mut self.buf, s).map_err(|e| Error(e.to_string()))
    }

    fn display_number<N: Serialize>(&mut self, n: N) -> Result<(), Error> {
        serde_json::to_writer(&mut self.buf, &n).map_err(|e| Error(e.to_string()))
    }
}

/// The value's shape as far as ordering goes.
enum Shape {
    /// A struct; its keys were pushed onto the list the probe was given.
    Struct,
    /// A map whose keys come strictly ascending: written as it comes.
    SortedMap,
    /// A map to buffer and sort.
    Map,
    Other,
}

fn write_value<T: Serialize + ?Sized>(
    out: &mut Out<'_>,
    value: &T,
    omit: Option<&str>,
) -> Result<(), Error> {
    out.flush_full()?;
    // A failure while probing is the value's own; the writing pass reports it.
    let base = out.keys.len();
    let shape = value
        .serialize(Probe(&mut out.keys))
        .unwrap_or(Shape::Other);
    match shape {
        Shape::Struct => {
            // Small and on the stack: this runs once per user in a 100k-user plan.
            let keys = &out.keys[base..];
            if keys.len() > MAX_STRUCT_MEMBERS {
                return Err(unsupported("a struct of more than 24 members"));
            }
            let mut order = [0u8; MAX_STRUCT_MEMBERS];
            let mut members = 0;
            for (index, key) in (0u8..).zip(keys) {
                if Some(*key) != omit {
                    order[members] = index;
                    members += 1;
                }
            }
            order[..members].sort_unstable_by(|a, b| {
                let key = |i: &u8| keys[usize::from(*i)].as_bytes();
                key(a).cmp(key(b))
            });
            let mut rank = [OMITTED; MAX_STRUCT_MEMBERS];
            for (position, index) in (0u8..).zip(&order[..members]) {
                rank[usize::from(*index)] = position;
            }
            out.buf.push(b'{');
            let len = keys.len();
            let scratch = out.borrow_scratch();
            value.serialize(Merge {
                out: &mut *out,
                base,
                len,
                order,
                members,
                rank,
                next: 0,
                arrived: 0,
                scratch,
                held: 0,
                spans: [(0, 0); MAX_STRUCT_MEMBERS],
            })?;
            out.buf.push(b'}');
            out.keys.truncate(base);
            Ok(())
        }
        Shape::SortedMap => value.serialize(Plain {
            out,
            sorted_map: true,
        }),
        Shape::Map | Shape::Other => value.serialize(Plain {
            out,
            sorted_map: false,
        }),
    }
}

fn unsupported(what: &str) -> Error {
    Error(format!("{what} has no canonical JSON form here"))
}

// ---- Probe: what shape is this value? Never writes, never serialises member values ----

struct Probe<'k>(&'k mut Vec<&'static str>);

/// Not a struct or map: stop at once (a 100k-element list is not walked).
fn other<T>() -> Result<T, Error> {
    Err(Error(String::new()))
}

impl<'k> ser::Serializer for Probe<'k> {
    type Ok = Shape;
    type Error = Error;
    type SerializeSeq = Impossible<Shape, Error>;
    type SerializeTuple = Impossible<Shape, Error>;
    type SerializeTupleStruct = Impossible<Shape, Error>;
    type SerializeTupleVariant = Impossible<Shape, Error>;
    type SerializeMap = ProbeMap;
    type SerializeStruct = ProbeStruct<'k>;
    type SerializeStructVariant = Impossible<Shape, Error>;

    fn serialize_struct(self, _: &'static str, _: usize) -> Result<ProbeStruct<'k>, Error> {
        Ok(ProbeStruct(self.0))
    }

    fn serialize_map(self, _: Option<usize>) -> Result<ProbeMap, Error> {
        Ok(ProbeMap {
            previous: String::new(),
            current: String::new(),
            first: true,
            sorted: true,
        })
    }

    each! { |self, _v| Ok(Shape::Other);
        serialize_bool(bool), serialize_i8(i8), serialize_i16(i16), serialize_i32(i32),
        serialize_i64(i64), serialize_u8(u8), serialize_u16(u16), serialize_u32(u32),
        serialize_u64(u64), serialize_f32(f32), serialize_f64(f64), serialize_char(char),
        serialize_str(&str), serialize_bytes(&[u8]),
    }
    fn serialize_none(self) -> Result<Shape, Error> {
        Ok(Shape::Other)
    }
    fn serialize_some<T: Serialize + ?Sized>(self, _: &T) -> Result<Shape, Error> {
        Ok(Shape::Other)
    }
    fn serialize_unit(self) -> Result<Shape, Error> {
        Ok(Shape::Other)
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<Shape, Error> {
        Ok(Shape::Other)
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
    ) -> Result<Shape, Error> {
        Ok(Shape::Other)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: &T,
    ) -> Result<Shape, Error> {
        Ok(Shape::Other)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<Shape, Error> {
        Ok(Shape::Other)
    }
    refuse_compounds!(other());
}

struct ProbeStruct<'k>(&'k mut Vec<&'static str>);

impl ser::SerializeStruct for ProbeStruct<'_> {
    type Ok = Shape;
    type Error = Error;

    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        _: &T,
    ) -> Result<(), Error> {
        self.0.push(key);
        Ok(())
    }

    fn end(self) -> Result<Shape, Error> {
        Ok(Shape::Struct)
    }
}

/// Checks that the keys ascend, holding two of them at a time.
struct ProbeMap {
    previous: String,
    current: String,
    first: bool,
    sorted: bool,
}

impl ser::SerializeMap for ProbeMap {
    type Ok = Shape;
    type Error = Error;

    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), Error> {
        if !self.sorted {
            return Ok(());
        }
        self.current.clear();
        key.serialize(KeyText(&mut self.current))?;
        if !self.first && self.previous.as_bytes() >= self.current.as_bytes() {
            self.sorted = false;
        }
        self.first = false;
        std::mem::swap(&mut self.previous, &mut self.current);
        Ok(())
    }

    fn serialize_value<T: Serialize + ?Sized>(&mut self, _: &T) -> Result<(), Error> {
        Ok(())
    }

    fn end(self) -> Result<Shape, Error> {
        Ok(if self.sorted {
            Shape::SortedMap
        } else {
            Shape::Map
        })
    }
}

// ---- Merge: write a struct's members in key order in one pass ----
//
// Members arrive in declaration order. One that is next in key order is written straight
// through (so a long list streams); one that comes early is buffered until its turn.

struct Merge<'o, 'a> {
    out: &'o mut Out<'a>,
    /// The struct's keys are `out.keys[base..base + len]`.
    base: usize,
    len: usize,
    /// Declaration indices in key order (omitted members left out).
    order: [u8; MAX_STRUCT_MEMBERS],
    /// How many of `order` are written.
    members: usize,
    /// Position in key order of each declaration index (`OMITTED`: left out).
    rank: [u8; MAX_STRUCT_MEMBERS],
    /// The next position in key order to write.
    next: usize,
    /// The declaration index of the next member to arrive.
    arrived: usize,
    /// Members that came early, and where each sits in `scratch`.
    scratch: Vec<u8>,
    /// Bit i: declaration index i is held, at `spans[i]`.
    held: u32,
    spans: [(u32, u32); MAX_STRUCT_MEMBERS],
}

/// `rank` of a member left out.
const OMITTED: u8 = u8::MAX;

fn changed_shape() -> Error {
    Error("a value changed shape between passes".into())
}

impl Merge<'_, '_> {
    fn member_head(&mut self, index: usize) -> Result<(), Error> {
        if self.next > 0 {
            self.out.buf.push(b',');
        }
        let key = self.out.keys[self.base + index];
        self.out.string(key)?;
        self.out.buf.push(b':');
        Ok(())
    }

    /// Write the held members whose turn has come.
    fn release(&mut self) -> Result<(), Error> {
        while self.next < self.members {
            let index = usize::from(self.order[self.next]);
            if self.held & (1 << index) == 0 {
                break;
            }
            self.held &= !(1 << index);
            let (start, end) = self.spans[index];
            self.member_head(index)?;
            let bytes = self
                .scratch
                .get(start as usize..end as usize)
                .ok_or_else(changed_shape)?;
            self.out.buf.extend_from_slice(bytes);
            self.next += 1;
            self.out.flush_full()?;
        }
        Ok(())
    }
}

impl ser::SerializeStruct for Merge<'_, '_> {
    type Ok = ();
    type Error = Error;

    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        let index = self.arrived;
        self.arrived += 1;
        if index >= self.len || self.out.keys[self.base + index] != key {
            return Err(changed_shape());
        }
        let rank = self.rank[index];
        if rank == OMITTED {
            return Ok(());
        }
        if usize::from(rank) == self.next {
            self.member_head(index)?;
            write_value(self.out, value, None)?;
            self.next += 1;
            return self.release();
        }
        // Early: write it into `scratch` for now.
        let start = self.scratch.len();
        std::mem::swap(&mut self.out.buf, &mut self.scratch);
        let sink = self.out.sink.take();
        let written = write_value(self.out, value, None);
        self.out.sink = sink;
        std::mem::swap(&mut self.out.buf, &mut self.scratch);
        written?;
        let span = (u32::try_from(start), u32::try_from(self.scratch.len()));
        let (Ok(start), Ok(end)) = span else {
            return Err(unsupported("a struct member of more than 4 GiB"));
        };
        self.spans[index] = (start, end);
        self.held |= 1 << index;
        Ok(())
    }

    fn end(mut self) -> Result<(), Error> {
        self.release()?;
        let scratch = std::mem::take(&mut self.scratch);
        self.out.give_back(scratch);
        if self.next == self.members && self.arrived == self.len {
            Ok(())
        } else {
            Err(changed_shape())
        }
    }
}

impl<'o, 'a> ser::Serializer for Merge<'o, 'a> {
    type Ok = ();
    type Error = Error;
    type SerializeSeq = Impossible<(), Error>;
    type SerializeTuple = Impossible<(), Error>;
    type SerializeTupleStruct = Impossible<(), Error>;
    type SerializeTupleVariant = Impossible<(), Error>;
    type SerializeMap = Impossible<(), Error>;
    type SerializeStruct = Self;
    type SerializeStructVariant = Impossible<(), Error>;

    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self, Error> {
        Ok(self)
    }

    each! { |self, _v| Err(changed_shape());
        serialize_bool(bool), serialize_i8(i8), serialize_i16(i16), serialize_i32(i32),
        serialize_i64(i64), serialize_u8(u8), serialize_u16(u16), serialize_u32(u32),
        serialize_u64(u64), serialize_f32(f32), serialize_f64(f64), serialize_char(char),
        serialize_str(&str), serialize_bytes(&[u8]), serialize_unit_struct(&'static str),
    }
    fn serialize_none(self) -> Result<(), Error> {
        Err(changed_shape())
    }
    fn serialize_unit(self) -> Result<(), Error> {
        Err(changed_shape())
    }
    fn serialize_unit_variant(self, _: &'static str, _: u32, _: &'static str) -> Result<(), Error> {
        Err(changed_shape())
    }

    fn serialize_some<T: Serialize + ?Sized>(self, _: &T) -> Result<(), Error> {
        Err(changed_shape())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: &T,
    ) -> Result<(), Error> {
        Err(changed_shape())
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<(), Error> {
        Err(changed_shape())
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, Error> {
        Err(changed_shape())
    }
    refuse_compounds!(Err(changed_shape()));
}

// ---- Plain: everything but a struct's member order ----

struct Plain<'o, 'a> {
    out: &'o mut Out<'a>,
    /// The map being written comes with its keys ascending.
    sorted_map: bool,
}

impl<'o, 'a> ser::Serializer for Plain<'o, 'a> {
    type Ok = ();
    type Error = Error;
    type SerializeSeq = Seq<'o, 'a>;
    type SerializeTuple = Impossible<(), Error>;
    type SerializeTupleStruct = Impossible<(), Error>;
    type SerializeTupleVariant = Impossible<(), Error>;
    type SerializeMap = Map<'o, 'a>;
    type SerializeStruct = Impossible<(), Error>;
    type SerializeStructVariant = Impossible<(), Error>;

    fn serialize_bool(self, v: bool) -> Result<(), Error> {
        self.out
            .buf
            .extend_from_slice(if v { b"true" } else { b"false" });
        Ok(())
    }
    each! { |self, v| self.out.display_number(v);
        serialize_i8(i8), serialize_i16(i16), serialize_i32(i32), serialize_i64(i64),
        serialize_u8(u8), serialize_u16(u16), serialize_u32(u32), serialize_u64(u64),
        serialize_f32(f32), serialize_f64(f64),
    }
    fn serialize_char(self, v: char) -> Result<(), Error> {
        self.out.string(v.encode_utf8(&mut [0; 4]))
    }
    fn serialize_str(self, v: &str) -> Result<(), Error> {
        self.out.string(v)
    }
    fn serialize_bytes(self, _: &[u8]) -> Result<(), Error> {
        Err(unsupported("a byte string"))
    }
    fn serialize_none(self) -> Result<(), Error> {
        self.out.buf.extend_from_slice(b"null");
        Ok(())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), Error> {
        write_value(self.out, value, None)
    }
    fn serialize_unit(self) -> Result<(), Error> {
        self.serialize_none()
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<(), Error> {
        self.serialize_none()
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
    ) -> Result<(), Error> {
        self.out.string(variant)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        write_value(self.out, value, None)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        self.out.buf.push(b'{');
        self.out.string(variant)?;
        self.out.buf.push(b':');
        write_value(self.out, value, None)?;
        self.out.buf.push(b'}');
        Ok(())
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Seq<'o, 'a>, Error> {
        self.out.buf.push(b'[');
        Ok(Seq {
            out: self.out,
            first: true,
        })
    }
    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, Error> {
        Err(unsupported("a tuple"))
    }
    fn serialize_tuple_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleStruct, Error> {
        Err(unsupported("a tuple struct"))
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, Error> {
        Err(unsupported("a tuple variant"))
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Map<'o, 'a>, Error> {
        if self.sorted_map {
            self.out.buf.push(b'{');
        }
        Ok(Map {
            out: self.out,
            sorted: self.sorted_map,
            first: true,
            entries: Vec::new(),
            key: String::new(),
        })
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self::SerializeStruct, Error> {
        // Structs are ordered by `write_value` before they get here.
        Err(Error("a value changed shape between passes".into()))
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, Error> {
        Err(unsupported("a struct variant"))
    }
}

struct Seq<'o, 'a> {
    out: &'o mut Out<'a>,
    first: bool,
}

impl ser::SerializeSeq for Seq<'_, '_> {
    type Ok = ();
    type Error = Error;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        if !self.first {
            self.out.buf.push(b',');
        }
        self.first = false;
        write_value(self.out, value, None)
    }
    fn end(self) -> Result<(), Error> {
        self.out.buf.push(b']');
        Ok(())
    }
}

/// A map: streamed when its keys ascend, else each entry buffered, then sorted.
struct Map<'o, 'a> {
    out: &'o mut Out<'a>,
    sorted: bool,
    first: bool,
    /// (key, canonical bytes of `"key":value`), when not `sorted`.
    entries: Vec<(String, Vec<u8>)>,
    key: String,
}

impl ser::SerializeMap for Map<'_, '_> {
    type Ok = ();
    type Error = Error;

    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), Error> {
        self.key.clear();
        key.serialize(KeyText(&mut self.key))?;
        if self.sorted {
            if !self.first {
                self.out.buf.push(b',');
            }
            self.first = false;
            self.out.string(&self.key)?;
            self.out.buf.push(b':');
        }
        Ok(())
    }

    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        if self.sorted {
            return write_value(self.out, value, None);
        }
        let mut entry = Out {
            buf: Vec::new(),
            sink: None,
            spare: std::mem::take(&mut self.out.spare),
            keys: std::mem::take(&mut self.out.keys),
        };
        entry.string(&self.key)?;
        entry.buf.push(b':');
        let written = write_value(&mut entry, value, None);
        self.out.spare = std::mem::take(&mut entry.spare);
        self.out.keys = std::mem::take(&mut entry.keys);
        written?;
        self.entries
            .push((std::mem::take(&mut self.key), entry.buf));
        Ok(())
    }

    fn end(mut self) -> Result<(), Error> {
        if self.sorted {
            self.out.buf.push(b'}');
            return Ok(());
        }
        self.entries
            .sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        self.out.buf.push(b'{');
        for (i, (_, bytes)) in self.entries.iter().enumerate() {
            if i > 0 {
                self.out.buf.push(b',');
            }
            self.out.buf.extend_from_slice(bytes);
            self.out.flush_full()?;
        }
        self.out.buf.push(b'}');
        Ok(())
    }
}

// ---- KeyText: a map key, which must be a string ----

struct KeyText<'s>(&'s mut String);

impl ser::Serializer for KeyText<'_> {
    type Ok = ();
    type Error = Error;
    type SerializeSeq = Impossible<(), Error>;
    type SerializeTuple = Impossible<(), Error>;
    type SerializeTupleStruct = Impossible<(), Error>;
    type SerializeTupleVariant = Impossible<(), Error>;
    type SerializeMap = Impossible<(), Error>;
    type SerializeStruct = Impossible<(), Error>;
    type SerializeStructVariant = Impossible<(), Error>;

    fn serialize_str(self, v: &str) -> Result<(), Error> {
        self.0.push_str(v);
        Ok(())
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        value.serialize(self)
    }

    each! { |self, _v| Err(unsupported("a map key that is not a string"));
        serialize_bool(bool), serialize_i8(i8), serialize_i16(i16), serialize_i32(i32),
        serialize_i64(i64), serialize_u8(u8), serialize_u16(u16), serialize_u32(u32),
        serialize_u64(u64), serialize_f32(f32), serialize_f64(f64), serialize_bytes(&[u8]),
    }
    fn serialize_char(self, v: char) -> Result<(), Error> {
        self.0.push(v);
        Ok(())
    }
    fn serialize_none(self) -> Result<(), Error> {
        Err(unsupported("a map key that is not a string"))
    }
    fn serialize_some<T: Serialize + ?Sized>(self, _: &T) -> Result<(), Error> {
        Err(unsupported("a map key that is not a string"))
    }
    fn serialize_unit(self) -> Result<(), Error> {
        Err(unsupported("a map key that is not a string"))
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<(), Error> {
        Err(unsupported("a map key that is not a string"))
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
    ) -> Result<(), Error> {
        self.0.push_str(variant);
        Ok(())
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<(), Error> {
        Err(unsupported("a map key that is not a string"))
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, Error> {
        Err(unsupported("a map key that is not a string"))
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self::SerializeStruct, Error> {
        Err(unsupported("a map key that is not a string"))
    }
    refuse_compounds!(Err(unsupported("a map key that is not a string")));
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Serialize;
    use serde_json::{Value, json};
    use std::collections::BTreeMap;

    #[derive(Serialize)]
    struct Inner {
        zeta: u32,
        #[serde(skip_serializing_if = "Option::is_none")]
        maybe: Option<&'static str>,
        alpha: Vec<Option<i64>>,
    }

    #[derive(Serialize)]
    struct Outer {
        name: String,
        inner: Inner,
        digest: &'static str,
        tags: BTreeMap<String, bool>,
        unit: (),
    }

    fn text<T: Serialize>(v: &T) -> String {
        String::from_utf8(to_vec(v).unwrap()).unwrap()
    }

    #[test]
    fn struct_members_are_sorted_and_skipped_members_stay_out() {
        let v = Outer {
            name: "é\"\u{1}".into(),
            inner: Inner {
                zeta: 7,
                maybe: None,
                alpha: vec![Some(-1), None],
            },
            digest: "x",
            tags: BTreeMap::from([("b".into(), true), ("a".into(), false)]),
            unit: (),
        };
        assert_eq!(
            text(&v),
            r#"{"digest":"x","inner":{"alpha":[-1,null],"zeta":7},"name":"é\"\u0001","tags":{"a":false,"b":true},"unit":null}"#
        );
        let mut out = Vec::new();
        write(&v, Some("digest"), &mut out).unwrap();
        assert!(String::from_utf8(out).unwrap().starts_with(r#"{"inner":"#));
    }

    #[test]
    fn a_struct_is_written_like_the_same_json_value() {
        let v = Outer {
            name: "n".into(),
            inner: Inner {
                zeta: 1,
                maybe: Some("m"),
                alpha: vec![],
            },
            digest: "d",
            tags: BTreeMap::new(),
            unit: (),
        };
        let as_value = serde_json::to_value(&v).unwrap();
        assert_eq!(text(&v), text(&as_value));
        // serde_json's own compact form of a Value (its Map is sorted) is the same bytes.
        assert_eq!(text(&v), serde_json::to_string(&as_value).unwrap());
    }

    /// Keys arriving out of order (a map that is not sorted) are sorted by byte order,
    /// upper case before lower case.
    #[test]
    fn unsorted_map_keys_are_sorted_by_bytes() {
        struct Unsorted;
        impl Serialize for Unsorted {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                use serde::ser::SerializeMap;
                let mut m = s.serialize_map(None)?;
                for (k, v) in [
                    ("b", json!([1, {"z": 1, "a": 2}])),
                    ("B", json!(-3)),
                    ("a", json!("x")),
                ] {
                    m.serialize_entry(k, &v)?;
                }
                m.end()
            }
        }
        assert_eq!(text(&Unsorted), r#"{"B":-3,"a":"x","b":[1,{"a":2,"z":1}]}"#);
    }

    #[test]
    fn long_output_streams_through_the_sink_in_chunks() {
        let v: Vec<Value> = (0..20_000).map(|i| json!({"id": i, "e": "x"})).collect();
        struct Counting(Vec<u8>, usize);
        impl Write for Counting {
            fn write(&mut self, b: &[u8]) -> io::Result<usize> {
                self.1 += 1;
                self.0.extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let mut sink = Counting(Vec::new(), 0);
        write(&v, None, &mut sink).unwrap();
        assert_eq!(sink.0, serde_json::to_vec(&v).unwrap());
        assert!(sink.1 > 3, "written in {} pieces", sink.1);
    }

    #[test]
    fn values_without_a_json_form_are_errors_not_panics() {
        let bytes = serde_bytes_like();
        assert!(to_vec(&bytes).is_err());
        let map = BTreeMap::from([(1u8, 2u8)]);
        assert!(to_vec(&map).is_err());
    }

    fn serde_bytes_like() -> impl Serialize {
        struct B;
        impl Serialize for B {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_bytes(b"ab")
            }
        }
        B
    }
}

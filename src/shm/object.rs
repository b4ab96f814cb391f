//! A typed object: a segment whose header has been written (by us) or validated (for a segment
//! someone else created), and the payload after it.

use super::header::{Header, Spec};
use super::segment::{Segment, ShmOptions};
use crate::error::{Error, Result};
use std::ptr::NonNull;

/// A validated typed segment. Cheap to clone; clones share the mapping.
#[derive(Clone, Debug)]
pub(crate) struct Object {
    segment: Segment,
    payload: NonNull<u8>,
    payload_len: usize,
}

// SAFETY: `payload` points into the mapping owned (through an `Arc`) by `segment`, which is valid
// for as long as this value lives in any thread; all access to the bytes goes through atomics or
// the object's lock protocol, never through unsynchronised `&mut`.
unsafe impl Send for Object {}
// SAFETY: as for `Send`: shared access is mediated by atomics and locks in the payload.
unsafe impl Sync for Object {}

/// Largest element alignment an object accepts (the header occupies the first 256 bytes).
const MAX_ALIGN: usize = 4096;

impl Object {
    /// Creates a named (or, with `None`, anonymous) object of `payload_len` bytes: writes the
    /// header, lets `init` fill the zeroed payload, then publishes.
    ///
    /// `init` receives a pointer to `payload_len` writable, zeroed bytes aligned for `spec`.
    pub(crate) fn create(
        name: Option<&str>,
        spec: &Spec,
        payload_len: usize,
        opts: &ShmOptions,
        init: impl FnOnce(NonNull<u8>),
    ) -> Result<Object> {
        if spec.elem_align > MAX_ALIGN {
            return Err(Error::InvalidSize {
                reason: "element alignment above 4096",
            });
        }
        let total = spec
            .payload_offset()
            .checked_add(payload_len)
            .ok_or(Error::InvalidSize {
                reason: "length overflows",
            })?;
        let fill = |segment: &Segment| {
            let header = header_of(segment);
            header.write(spec, payload_len);
            init(payload_ptr(segment, spec));
            header.publish();
        };
        let segment = match name {
            Some(name) => Segment::create_initialised(name, total, opts, fill)?,
            None => {
                let segment = Segment::anonymous_with(total, opts)?;
                fill(&segment);
                segment
            }
        };
        let payload = payload_ptr(&segment, spec);
        Ok(Object {
            segment,
            payload,
            payload_len,
        })
    }

    /// A new object: [`open_or_create`](Self::open_or_create) for a `name` and `open_existing`,
    /// else [`create`](Self::create) (anonymous for no `name`).
    pub(crate) fn make(
        name: Option<&str>,
        open_existing: bool,
        spec: &Spec,
        payload_len: usize,
        opts: &ShmOptions,
        init: impl FnOnce(NonNull<u8>),
    ) -> Result<Object> {
        match (name, open_existing) {
            (Some(name), true) => Self::open_or_create(name, spec, payload_len, opts, init),
            (name, _) => Self::create(name, spec, payload_len, opts, init),
        }
    }

    /// Opens the named object and validates it against `spec`.
    pub(crate) fn open(name: &str, spec: &Spec, opts: &ShmOptions) -> Result<Object> {
        Self::from_segment(Segment::open_with(name, opts)?, spec, opts)
    }

    /// Opens the named object if it exists, else creates it. Safe when several processes race:
    /// exactly one creates, the others open what it published.
    pub(crate) fn open_or_create(
        name: &str,
        spec: &Spec,
        payload_len: usize,
        opts: &ShmOptions,
        init: impl FnOnce(NonNull<u8>),
    ) -> Result<Object> {
        let mut init = Some(init);
        for _ in 0..100 {
            match Self::open(name, spec, opts) {
                Err(Error::NotFound { .. }) => {}
                other => return other,
            }
            let Some(f) = init.take() else { break };
            let mut f = Some(f);
            match Self::create(Some(name), spec, payload_len, opts, |p| {
                if let Some(f) = f.take() {
                    f(p)
                }
            }) {
                Err(Error::AlreadyExists { .. }) => init = f,
                other => return other,
            }
        }
        Err(Error::Corrupted(
            "the name kept appearing and vanishing while opening or creating it",
        ))
    }

    /// Validates a mapped segment (opened by name or inherited) against `spec`.
    pub(crate) fn from_segment(segment: Segment, spec: &Spec, opts: &ShmOptions) -> Result<Object> {
        if segment.len() < spec.payload_offset() {
            return Err(Error::Corrupted("segment is smaller than an object header"));
        }
        let payload_len = header_of(&segment).validate(spec, segment.len(), opts.init_timeout)?;
        let payload = payload_ptr(&segment, spec);
        Ok(Object {
            segment,
            payload,
            payload_len,
        })
    }

    /// The payload: `payload_len` bytes aligned for the spec's element type.
    pub(crate) fn payload(&self) -> NonNull<u8> {
        self.payload
    }

    /// Length of the payload in bytes, as validated against the mapping.
    pub(crate) fn payload_len(&self) -> usize {
        self.payload_len
    }

    /// Keeps the name after the creator's handles drop, and tells stale-segment cleanup so.
    pub(crate) fn persist(&self) {
        header_of(&self.segment).mark_persisted();
        self.segment.persist();
    }

    /// The segment underneath.
    pub(crate) fn segment(&self) -> &Segment {
        &self.segment
    }
}

/// Refuses a zero-sized element type, and a `count` of zero elements (saying `zero_count`).
pub(crate) fn check_count(elem_size: usize, count: usize, zero_count: &'static str) -> Result<()> {
    let reason = match (elem_size, count) {
        (0, _) => "zero-sized element type",
        (_, 0) => zero_count,
        _ => return Ok(()),
    };
    Err(Error::InvalidSize { reason })
}

pub(crate) fn header_of(segment: &Segment) -> &Header {
    // SAFETY: every segment holding an object is at least `HEADER_LEN` bytes (checked by the
    // callers), page-aligned by mmap (so aligned for `Header`), and `Header` is made of atomics,
    // valid for any bit pattern and safe to access concurrently from any process.
    unsafe { &*segment.as_ptr().cast::<Header>() }
}

fn payload_ptr(segment: &Segment, spec: &Spec) -> NonNull<u8> {
    // SAFETY: callers checked `segment.len() >= payload_offset`, so the offset stays inside the
    // mapping (or one past its end for an empty payload), and the mapping pointer is non-null.
    unsafe { NonNull::new_unchecked(segment.as_ptr().add(spec.payload_offset())) }
}

/// `Serialize` and `Deserialize` for the handle `$ty<T>` (bounds `$bound`) of one object in its
/// `object` field: it travels as its segment, and arrives validated against `Self::spec()` and
/// rebuilt by `Self::from_object`.
macro_rules! object_serde {
    ($ty:ident, $($bound:tt)+) => {
        impl<T: $($bound)+> serde::Serialize for $ty<T> {
            fn serialize<S: serde::Serializer>(
                &self,
                s: S,
            ) -> std::result::Result<S::Ok, S::Error> {
                serde::Serialize::serialize(self.object.segment(), s)
            }
        }

        impl<'de, T: $($bound)+> serde::Deserialize<'de> for $ty<T> {
            fn deserialize<D: serde::Deserializer<'de>>(
                d: D,
            ) -> std::result::Result<Self, D::Error> {
                let segment = <super::Segment as serde::Deserialize>::deserialize(d)?;
                let opts = super::ShmOptions::default();
                super::object::Object::from_segment(segment, &Self::spec(), &opts)
                    .and_then(Self::from_object)
                    .map_err(serde::de::Error::custom)
            }
        }
    };
}
pub(crate) use object_serde;

/// The constructor family of a shared object `$ty`: `new` (or another name given for the
/// anonymous one), `create`, `open`, `open_or_create` and their `_with` forms, which take
/// [`ShmOptions`] (the others pass the defaults).
///
/// Every form but `open` comes down to the type's own
/// `make(name: Option<&str>, open_existing: bool, $args.., opts) -> Result<Self>`: a new object,
/// anonymous for no `name`, or the existing one under `name` if `open_existing`. `open_with` is
/// the expression given after `=>`. Each entry's docs go to the plain form; the `_with` form's
/// read "`base` with options.", then the docs after the entry's `with:` if any, then
/// "# Errors: as `base`".
macro_rules! shared_constructors {
    (
        $ty:ident($($arg:ident: $arg_ty:ty),*);
        $(#[$new_doc:meta])* $(with: $(#[$new_with_doc:meta])*)? fn $new:ident, $new_with:ident;
        $(#[$create_doc:meta])* $(with: $(#[$create_with_doc:meta])*)? fn create;
        $(#[$open_doc:meta])* $(with: $(#[$open_with_doc:meta])*)?
        fn open($name:ident, $opts:ident) => $open_with:expr;
        $(#[$ooc_doc:meta])* $(with: $(#[$ooc_with_doc:meta])*)? fn open_or_create;
    ) => {
        $(#[$new_doc])*
        pub fn $new($($arg: $arg_ty),*) -> $crate::error::Result<Self> {
            Self::$new_with($($arg,)* &$crate::shm::ShmOptions::default())
        }

        $crate::shm::object::shared_constructors!(@with $ty, $new, $($(#[$new_with_doc])*)?;
            pub fn $new_with($($arg: $arg_ty,)* opts: &$crate::shm::ShmOptions) {
                Self::make(None, false, $($arg,)* opts)
            }
        );

        $(#[$create_doc])*
        pub fn create(name: &str $(, $arg: $arg_ty)*) -> $crate::error::Result<Self> {
            Self::create_with(name, $($arg,)* &$crate::shm::ShmOptions::default())
        }

        $crate::shm::object::shared_constructors!(@with $ty, create, $($(#[$create_with_doc])*)?;
            pub fn create_with(name: &str, $($arg: $arg_ty,)* opts: &$crate::shm::ShmOptions) {
                Self::make(Some(name), false, $($arg,)* opts)
            }
        );

        $(#[$open_doc])*
        pub fn open(name: &str) -> $crate::error::Result<Self> {
            Self::open_with(name, &$crate::shm::ShmOptions::default())
        }

        $crate::shm::object::shared_constructors!(@with $ty, open, $($(#[$open_with_doc])*)?;
            pub fn open_with($name: &str, $opts: &$crate::shm::ShmOptions) {
                $open_with
            }
        );

        $(#[$ooc_doc])*
        pub fn open_or_create(name: &str $(, $arg: $arg_ty)*) -> $crate::error::Result<Self> {
            Self::open_or_create_with(name, $($arg,)* &$crate::shm::ShmOptions::default())
        }

        $crate::shm::object::shared_constructors!(@with $ty, open_or_create,
            #[doc = "Used for both the open and the create."] $($(#[$ooc_with_doc])*)?;
            pub fn open_or_create_with(
                name: &str,
                $($arg: $arg_ty,)*
                opts: &$crate::shm::ShmOptions
            ) {
                Self::make(Some(name), true, $($arg,)* opts)
            }
        );
    };
    // A `_with` form of `$base`: its docs, then `$body` as a `Result<Self>`.
    (@with $ty:ident, $base:ident, $(#[$doc:meta])*;
        pub fn $name:ident($($params:tt)*) $body:block
    ) => {
        #[doc = concat!(
            "[`", stringify!($ty), "::", stringify!($base), "`](Self::", stringify!($base), ") ",
            "with options."
        )]
        $(#[$doc])*
        ///
        /// # Errors
        #[doc = concat!(
            "As [`", stringify!($ty), "::", stringify!($base), "`](Self::", stringify!($base), ")."
        )]
        pub fn $name($($params)*) -> $crate::error::Result<Self> $body
    };
}
pub(crate) use shared_constructors;

/// `name` and `persist` for a handle whose [`Object`] is `self.$field` (a path of fields);
/// `$what` names the handle in the docs.
macro_rules! name_and_persist {
    ($($field:ident).+, $what:literal) => {
        #[doc = concat!("The name, or `None` for an anonymous ", $what, ".")]
        pub fn name(&self) -> Option<&str> {
            self.$($field).+.segment().name()
        }

        /// Keeps the name after the creator's handles drop.
        pub fn persist(&self) {
            self.$($field).+.persist()
        }
    };
}
pub(crate) use name_and_persist;

//! How every C handle is owned, and the only conversions between handles and Rust values.
//!
//! Each type that crosses the boundary behind a pointer implements [`Handle`] with exactly one
//! ownership kind, and the functions below are the only ones that turn such a pointer into a
//! reference, a `Box` or an `Arc` (or back):
//!
//! - [`Owned`]: made with `Box`; the caller owns the one pointer and releases it with the type's
//!   `_free` function ([`to_owned_ptr`], [`borrow`], [`borrow_mut`], [`take_owned`]).
//! - [`Shared`]: made with `Arc`; the caller's pointer is one strong reference and the library
//!   may hold others, so the value lives until the last of them is gone ([`to_shared_ptr`],
//!   [`clone_shared`], [`release_shared`], [`shared_ptr`]).
//! - [`Borrowed`]: the caller's structs that the library reads (or fills) during a call, and the
//!   library's values it lends to a callback or an accessor; never freed through the pointer
//!   ([`borrow`], [`borrow_mut`], [`copy_of`], [`lent_ptr`]).
//!
//! The application's opaque pointers (contexts, user arguments) are not handles: the library
//! never dereferences them and carries them as [`UserPointer`].

use std::ffi::c_void;
use std::sync::Arc;

/// A type handed to C behind a pointer, with its ownership kind.
pub(crate) trait Handle {
    /// [`Owned`], [`Shared`] or [`Borrowed`].
    type Ownership;
}

/// Ownership kind: one `Box`, owned by the caller until its `_free` function.
pub(crate) enum Owned {}
/// Ownership kind: an `Arc` whose strong references the caller and the library hold.
pub(crate) enum Shared {}
/// Ownership kind: valid during a call (or as long as its owner documents), never freed by C.
pub(crate) enum Borrowed {}

/// The kinds whose values may be changed through the pointer: nothing else refers to them.
pub(crate) trait Exclusive {}
impl Exclusive for Owned {}
impl Exclusive for Borrowed {}

/// Implements [`Handle`] for types with their ownership kind.
macro_rules! handles {
    ($($kind:ident: $($ty:ty),+;)+) => {
        $($(impl $crate::ffi::handle::Handle for $ty {
            type Ownership = $crate::ffi::handle::$kind;
        })+)+
    };
}
pub(crate) use handles;

/// Moves `value` into a new box owned by the caller.
pub(crate) fn to_owned_ptr<T: Handle<Ownership = Owned>>(value: T) -> *mut T {
    Box::into_raw(Box::new(value))
}

/// Takes back the caller's box, for its `_free` function; `None` for NULL.
///
/// # Safety
/// `ptr` is NULL or came from [`to_owned_ptr`] and has not been taken back.
pub(crate) unsafe fn take_owned<T: Handle<Ownership = Owned>>(ptr: *mut T) -> Option<Box<T>> {
    (!ptr.is_null()).then(|| Box::from_raw(ptr))
}

/// Borrows a handle of any kind for the length of a call; `None` for NULL.
///
/// # Safety
/// `ptr` is NULL or points to a live value of its kind for at least `'a`.
pub(crate) unsafe fn borrow<'a, T: Handle>(ptr: *const T) -> Option<&'a T> {
    ptr.as_ref()
}

/// Borrows an owned or borrowed handle mutably for the length of a call; `None` for NULL.
///
/// # Safety
/// As [`borrow`], and nothing else refers to the value during `'a`.
pub(crate) unsafe fn borrow_mut<'a, T: Handle>(ptr: *mut T) -> Option<&'a mut T>
where
    T::Ownership: Exclusive,
{
    ptr.as_mut()
}

/// A copy of the caller's struct; `None` for NULL.
///
/// # Safety
/// As [`borrow`].
pub(crate) unsafe fn copy_of<T: Handle<Ownership = Borrowed> + Copy>(ptr: *const T) -> Option<T> {
    borrow(ptr).copied()
}

/// Writes the value that `make` returns into the caller's struct at `out`, without reading what
/// is there (it may be uninitialised); for NULL does nothing and makes nothing, so that nothing
/// allocated for the caller is left unowned.
///
/// # Safety
/// `out` is NULL or points to writable memory for a `T`.
pub(crate) unsafe fn fill<T: Handle<Ownership = Borrowed>>(out: *mut T, make: impl FnOnce() -> T) {
    if !out.is_null() {
        out.write(make());
    }
}

/// Borrows the caller's array of `count` values for the length of a call: empty when `count` is
/// 0 (whatever `ptr` is), `None` when `ptr` is NULL with a non-zero `count`.
///
/// # Safety
/// `ptr` is NULL or points to `count` initialised values that live for `'a`.
pub(crate) unsafe fn array<'a, T>(ptr: *const T, count: usize) -> Option<&'a [T]> {
    match (ptr.is_null(), count) {
        (_, 0) => Some(&[]),
        (true, _) => None,
        (false, n) => Some(std::slice::from_raw_parts(ptr, n)),
    }
}

/// A pointer to a value the library lends to C (a callback's argument, an accessor's result).
pub(crate) fn lent_ptr<T: Handle<Ownership = Borrowed>>(value: &T) -> *const T {
    value
}

/// The caller's pointer for a new shared value: one strong reference, given to the caller.
pub(crate) fn to_shared_ptr<T: Handle<Ownership = Shared>>(value: Arc<T>) -> *mut T {
    Arc::into_raw(value).cast_mut()
}

/// The pointer C sees for a shared value the library holds (the same as the caller's).
pub(crate) fn shared_ptr<T: Handle<Ownership = Shared>>(value: &Arc<T>) -> *mut T {
    Arc::as_ptr(value).cast_mut()
}

/// A strong reference of the library's own to a shared value, so that it stays alive whatever
/// the caller frees meanwhile; `None` for NULL.
///
/// # Safety
/// `ptr` is NULL or came from [`to_shared_ptr`] or [`shared_ptr`] and its value is alive.
pub(crate) unsafe fn clone_shared<T: Handle<Ownership = Shared>>(ptr: *const T) -> Option<Arc<T>> {
    if ptr.is_null() {
        return None;
    }
    Arc::increment_strong_count(ptr);
    Some(Arc::from_raw(ptr))
}

/// Takes the caller's strong reference back (its `_free` function); `None` for NULL.
///
/// # Safety
/// `ptr` is NULL or came from [`to_shared_ptr`], and the caller's reference has not been
/// released before.
pub(crate) unsafe fn release_shared<T: Handle<Ownership = Shared>>(ptr: *const T) -> Option<Arc<T>> {
    (!ptr.is_null()).then(|| Arc::from_raw(ptr))
}

/// An application's opaque pointer (a context, a user argument): only handed back to the
/// application's own functions, never dereferenced by the library.
#[derive(Clone, Copy, Debug)]
pub(crate) struct UserPointer(*mut c_void);

// SAFETY: the library never dereferences the pointer; the API documents on which threads the
// application's functions receive it.
unsafe impl Send for UserPointer {}
unsafe impl Sync for UserPointer {}

impl UserPointer {
    pub(crate) fn new(ptr: *mut c_void) -> Self {
        UserPointer(ptr)
    }

    pub(crate) fn get(self) -> *mut c_void {
        self.0
    }
}

impl Default for UserPointer {
    fn default() -> Self {
        UserPointer(std::ptr::null_mut())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Counted {
        _token: Arc<()>,
    }
    struct Boxed(u32);
    handles! { Shared: Counted; Owned: Boxed; }

    #[test]
    fn a_shared_handle_lives_while_any_reference_does() {
        let token = Arc::new(());
        let ptr = to_shared_ptr(Arc::new(Counted { _token: token.clone() }));
        let ours = unsafe { clone_shared(ptr) }.unwrap();
        drop(unsafe { release_shared(ptr) });
        assert_eq!(Arc::strong_count(&token), 2, "the library's reference keeps the value");
        assert_eq!(shared_ptr(&ours), ptr);
        drop(ours);
        assert_eq!(Arc::strong_count(&token), 1, "the last reference releases it");
    }

    #[test]
    fn null_is_none_for_every_conversion() {
        unsafe {
            assert!(clone_shared::<Counted>(std::ptr::null()).is_none());
            assert!(release_shared::<Counted>(std::ptr::null()).is_none());
            assert!(take_owned::<Boxed>(std::ptr::null_mut()).is_none());
            assert!(borrow::<Boxed>(std::ptr::null()).is_none());
        }
    }

    #[test]
    fn an_owned_handle_round_trips() {
        let ptr = to_owned_ptr(Boxed(7));
        unsafe {
            borrow_mut(ptr).unwrap().0 += 1;
            assert_eq!(take_owned(ptr).unwrap().0, 8);
        }
    }
}

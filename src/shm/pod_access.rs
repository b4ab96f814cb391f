//! Typed copies in and out of a raw [`Segment`]: the way to share a plain block of numbers with a
//! process that knows nothing of multiproc's headers, such as Python's
//! `multiprocessing.shared_memory.SharedMemory` (a raw file in `/dev/shm`, by name).
//!
//! Access rules, stated plainly: such a peer writes without any lock this crate knows about, so
//! the bytes may change at any time. Copies are therefore the safe interface: an element may be
//! torn (half old, half new) if the peer writes it during the copy, but since `T: Pod` every bit
//! pattern is a valid `T`, so a torn read gives a wrong number, never undefined behaviour. Hand
//! out slices only when the two sides agree by other means that nobody writes meanwhile
//! ([`Segment::pod_slice`], `unsafe`).

use super::Segment;
use crate::error::{Error, Result};
use bytemuck::Pod;

impl Segment {
    /// Checks that `count` elements of `T` starting at byte `offset` lie inside the mapping and
    /// are aligned for `T`; returns the first element's address.
    fn pod_range<T: Pod>(&self, offset: usize, count: usize) -> Result<*mut T> {
        let bytes = count
            .checked_mul(size_of::<T>())
            .and_then(|n| n.checked_add(offset))
            .ok_or(Error::InvalidSize {
                reason: "offset + length overflows",
            })?;
        if bytes > self.len() {
            return Err(Error::InvalidSize {
                reason: "the range ends past the end of the segment",
            });
        }
        let ptr = self.as_ptr().wrapping_add(offset);
        if (ptr as usize) % align_of::<T>() != 0 {
            return Err(Error::InvalidSize {
                reason: "the offset is not aligned for the element type",
            });
        }
        Ok(ptr.cast())
    }

    /// Copies `dst.len()` elements of `T` from byte `offset` of the segment into `dst`.
    ///
    /// ```
    /// let seg = multiproc::Segment::anonymous(64)?;
    /// seg.write_pod(8, &[1u64, 2, 3])?;
    /// let mut out = [0u64; 3];
    /// seg.read_pod(8, &mut out)?;
    /// assert_eq!(out, [1, 2, 3]);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidSize`] if the range is outside the segment or `offset` is misaligned for `T`.
    pub fn read_pod<T: Pod>(&self, offset: usize, dst: &mut [T]) -> Result<()> {
        let src = self.pod_range::<T>(offset, dst.len())?;
        // SAFETY: `pod_range` checked that the `dst.len()` elements at `src` are inside the
        // mapping (alive as long as `self`) and aligned; `dst` is a distinct Rust buffer. A peer
        // writing meanwhile can only tear elements, and every bit pattern is a valid `T: Pod`.
        unsafe { std::ptr::copy_nonoverlapping(src, dst.as_mut_ptr(), dst.len()) };
        Ok(())
    }

    /// Copies `src` into the segment at byte `offset`.
    ///
    /// # Errors
    /// [`Error::InvalidSize`] as for [`read_pod`](Segment::read_pod);
    /// [`Error::PermissionDenied`] if the segment was opened read-only.
    pub fn write_pod<T: Pod>(&self, offset: usize, src: &[T]) -> Result<()> {
        if !self.is_writable() {
            return Err(Error::PermissionDenied {
                reason: "the segment was opened read-only",
            });
        }
        let dst = self.pod_range::<T>(offset, src.len())?;
        // SAFETY: `pod_range` checked that the `src.len()` elements at `dst` are inside the
        // mapping and aligned, and the mapping is writable; `src` is a distinct Rust buffer.
        unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), dst, src.len()) };
        Ok(())
    }

    /// The whole segment as a slice of `T` (its length rounded down to whole elements).
    ///
    /// # Errors
    /// [`Error::InvalidSize`] if the mapping is not aligned for `T` (never for `T` of alignment
    /// up to the page size).
    ///
    /// # Safety
    /// - No process (this one included) may write the segment while the slice lives: the two
    ///   sides must agree on that by other means (a barrier, an event, a message).
    pub unsafe fn pod_slice<T: Pod>(&self) -> Result<&[T]> {
        let count = self.len() / size_of::<T>().max(1);
        let ptr = self.pod_range::<T>(0, count)?;
        // SAFETY: the range is inside the mapping, aligned, and lives as long as `&self`;
        // the caller guarantees nobody writes it meanwhile, and any bits are a valid `T: Pod`.
        Ok(unsafe { std::slice::from_raw_parts(ptr, count) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_are_bounds_and_alignment_checked() {
        let seg = Segment::anonymous(64).unwrap();
        seg.write_pod(0, &[7u32; 16]).unwrap();
        let mut all = [0u32; 16];
        seg.read_pod(0, &mut all).unwrap();
        assert_eq!(all, [7; 16]);
        let mut one = [0u32; 1];
        assert!(matches!(
            seg.read_pod(62, &mut one),
            Err(Error::InvalidSize { .. })
        ));
        assert!(matches!(
            seg.read_pod(2, &mut one),
            Err(Error::InvalidSize { .. })
        ));
        assert!(matches!(
            seg.write_pod(usize::MAX, &[1u64]),
            Err(Error::InvalidSize { .. })
        ));
        // SAFETY: this test's segment is written by nobody while the slice lives.
        let slice = unsafe { seg.pod_slice::<u64>() }.unwrap();
        assert_eq!(slice.len(), 8);
        assert_eq!(slice[0], 0x0000_0007_0000_0007);
    }
}

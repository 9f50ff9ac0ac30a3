//! Packed weights on cache-line boundaries. A 512-bit load that straddles two cache lines costs
//! two loads on Intel cores; large `Vec` allocations start 16 bytes past a page boundary, so
//! without this every weight load of a panel would straddle.

use std::fmt;

/// Bytes (`u8` or `i8`) whose first element sits on a 64-byte boundary, in safe code: the
/// vector holds 63 spare elements and the data starts at the first aligned one. Clones are
/// realigned.
pub(crate) struct Aligned<T> {
    buf: Vec<T>,
    off: usize,
    len: usize,
}

impl<T: Copy + Default> Aligned<T> {
    /// `len` zeros (`T::default()`), aligned.
    pub(crate) fn zeroed(len: usize) -> Self {
        let buf = vec![T::default(); len + 63];
        // One-byte elements: the offset is always computable and below 64.
        let off = buf.as_ptr().align_offset(64).min(63);
        Aligned { buf, off, len }
    }

    pub(crate) fn as_slice(&self) -> &[T] {
        &self.buf[self.off..self.off + self.len]
    }

    pub(crate) fn as_mut_slice(&mut self) -> &mut [T] {
        &mut self.buf[self.off..self.off + self.len]
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }
}

impl<T: Copy + Default> Clone for Aligned<T> {
    fn clone(&self) -> Self {
        let mut c = Aligned::zeroed(self.len);
        c.as_mut_slice().copy_from_slice(self.as_slice());
        c
    }
}

impl<T: Copy + Default + PartialEq> PartialEq for Aligned<T> {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl<T> fmt::Debug for Aligned<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Aligned({} elements)", self.len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_and_clones_start_on_a_cache_line() {
        for len in [0, 1, 100, 1 << 20] {
            let mut a = Aligned::<i8>::zeroed(len);
            assert_eq!(a.as_slice().as_ptr() as usize % 64, 0);
            assert_eq!(a.len(), len);
            if len > 0 {
                a.as_mut_slice()[len - 1] = 7;
            }
            let b = a.clone();
            assert_eq!(b.as_slice().as_ptr() as usize % 64, 0);
            assert_eq!(a, b);
        }
    }
}

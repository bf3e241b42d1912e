//! CPU hints shared by the lookup structures.

/// A prefetch hint for the cache line holding `address` (any address: the CPU
/// does not fault on a prefetch).
#[inline]
pub fn prefetch(address: usize) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch reads nothing the program sees and cannot fault, for
    // any address.
    #[allow(unsafe_code, reason = "the prefetch intrinsic; see SAFETY")]
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch::<_MM_HINT_T0>(address as *const i8);
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = address;
}

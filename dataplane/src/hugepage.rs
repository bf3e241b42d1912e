//! Memory for the large per-worker tables in 2 MiB transparent huge pages.
//!
//! A connection table of a million entries spans over 100 MiB; with 4 KiB pages
//! nearly every lookup also misses the TLB, and under virtualisation a TLB miss
//! is a two-level page walk. [`HugePages`] maps such tables anonymously, aligned
//! to 2 MiB, asks the kernel for transparent huge pages (`MADV_HUGEPAGE`, which
//! works when `/sys/kernel/mm/transparent_hugepage/enabled` is `always` or
//! `madvise`) and touches every page at allocation time, so that no page fault
//! (and no 2 MiB zeroing) ever happens on the hot path. Allocations under 2 MiB
//! go to the global allocator. Where huge pages are unavailable the memory is
//! ordinary pages, and only slower.
//!
//! `unsafe` is allowed here because implementing an allocator and calling
//! `mmap`/`madvise`/`munmap` cannot be done otherwise (the crate root lists
//! the other modules that need it).

#![allow(
    unsafe_code,
    reason = "an allocator over mmap; each block states its safety argument"
)]

use std::ptr::{self, NonNull};

use allocator_api2::alloc::{AllocError, Allocator, Global, Layout};

/// 2 MiB, the x86-64 huge page.
pub const HUGE_PAGE: usize = 2 << 20;

/// An allocator that backs large allocations with transparent huge pages.
#[derive(Clone, Copy, Debug, Default)]
pub struct HugePages;

fn mapped(layout: Layout) -> bool {
    layout.size() >= HUGE_PAGE && layout.align() <= HUGE_PAGE
}

// SAFETY: `allocate` returns a fresh mapping of at least `layout.size()` bytes,
// aligned to 2 MiB (so to any `layout.align()` it accepts), valid until
// `deallocate` unmaps exactly that range; small layouts are delegated whole to
// `Global`, and `deallocate` tells the two apart by the same `layout` test.
unsafe impl Allocator for HugePages {
    fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        if !mapped(layout) {
            return Global.allocate(layout);
        }
        let len = layout.size().next_multiple_of(HUGE_PAGE);
        let span = len + HUGE_PAGE;
        // SAFETY: a new private anonymous mapping; no existing memory is touched.
        let raw = unsafe {
            libc::mmap(
                ptr::null_mut(),
                span,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if raw == libc::MAP_FAILED {
            return Err(AllocError);
        }
        let raw = raw.cast::<u8>();
        let head = raw.align_offset(HUGE_PAGE);
        // SAFETY: `head < HUGE_PAGE`, so `raw + head .. raw + head + len` lies in
        // the `span`-byte mapping; the unmapped head and tail are parts of that
        // mapping outside it, at page granularity (mmap returns page-aligned
        // memory and both lengths are multiples of the page size).
        let start = unsafe {
            let start = raw.add(head);
            if head > 0 {
                libc::munmap(raw.cast(), head);
            }
            let tail = span - head - len;
            if tail > 0 {
                libc::munmap(start.add(len).cast(), tail);
            }
            // Advice only: if refused, the range stays in ordinary pages.
            libc::madvise(start.cast(), len, libc::MADV_HUGEPAGE);
            // Fault every page in now, not on the hot path.
            for offset in (0..len).step_by(4096) {
                start.add(offset).write_volatile(0);
            }
            start
        };
        NonNull::new(start)
            .map(|p| NonNull::slice_from_raw_parts(p, len))
            .ok_or(AllocError)
    }

    unsafe fn deallocate(&self, ptr: NonNull<u8>, layout: Layout) {
        if !mapped(layout) {
            // SAFETY: allocated by `Global` with this layout (see `allocate`).
            unsafe { Global.deallocate(ptr, layout) };
            return;
        }
        // SAFETY: `ptr` starts a mapping of exactly this rounded length made by
        // `allocate` for the same layout, and the caller no longer uses it.
        unsafe { libc::munmap(ptr.as_ptr().cast(), layout.size().next_multiple_of(HUGE_PAGE)) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_allocations_are_huge_page_aligned_and_usable() {
        let layout = Layout::from_size_align(3 * HUGE_PAGE + 100, 64).expect("valid layout");
        let block = HugePages.allocate(layout).expect("allocates");
        let p = block.cast::<u8>();
        assert_eq!(p.as_ptr() as usize % HUGE_PAGE, 0);
        assert!(block.len() >= layout.size());
        // SAFETY: the block is ours, `layout.size()` bytes long, and freed once.
        unsafe {
            p.as_ptr().add(layout.size() - 1).write(7);
            assert_eq!(p.as_ptr().add(layout.size() - 1).read(), 7);
            HugePages.deallocate(p, layout);
        }
        let small = Layout::from_size_align(100, 8).expect("valid layout");
        let block = HugePages.allocate(small).expect("allocates");
        // SAFETY: as above.
        unsafe { HugePages.deallocate(block.cast(), small) };
    }
}

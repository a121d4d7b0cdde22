//! The server's allocator: the system allocator, except that blocks made of whole pages (8 KiB
//! or more, a multiple of 4 KiB) start on a page boundary. `livefeed serve` installs it.
//!
//! Why: hyper gives every connection two 8 KiB buffers (read and write), and a waiting long-poll
//! or event stream has written a few hundred bytes into one and nothing into the other. glibc's
//! malloc puts a chunk header in front of each block, so each buffer touches a page it does not
//! use: about 12 KiB resident per waiting connection. Page-aligned, an untouched buffer costs no
//! resident page and a barely used one costs one: about 9 KiB (measured in BENCHMARKS.md).

use std::alloc::{GlobalAlloc, Layout, System};

const PAGE: usize = 4096;

/// See the module documentation.
pub struct PageAligned;

/// The layout actually asked of the system: the same size, page alignment for page-sized blocks.
/// A pure function of the caller's layout, so a block is always freed with the layout it was
/// allocated with.
fn system_layout(layout: Layout) -> Layout {
    if layout.size() >= 2 * PAGE && layout.size() % PAGE == 0 && layout.align() <= PAGE {
        Layout::from_size_align(layout.size(), PAGE).unwrap_or(layout)
    } else {
        layout
    }
}

// SAFETY: every call is forwarded to `System` with `system_layout` of the caller's layout, which
// has the same size and an alignment at least as strict, so the caller's requirements hold; and
// since `system_layout` is deterministic, `dealloc` and `realloc` always hand `System` the
// layout the block was allocated with.
unsafe impl GlobalAlloc for PageAligned {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: `layout` has a non-zero size (the caller's contract) and so has ours.
        unsafe { System.alloc(system_layout(layout)) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(system_layout(layout)) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `alloc` with `layout`, so from `System` with this layout.
        unsafe { System.dealloc(ptr, system_layout(layout)) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let old = system_layout(layout);
        // SAFETY: the caller guarantees `new_size`, rounded up to `layout.align()`, fits isize.
        let new =
            system_layout(unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) });
        if old.align() == new.align() {
            // SAFETY: `ptr` was allocated by `System` with `old`; same alignment either side.
            return unsafe { System.realloc(ptr, old, new_size) };
        }
        // Into or out of page alignment: a new block, the bytes copied, the old block freed.
        // SAFETY: `new` is a valid non-zero layout; both blocks are live and distinct while
        // copying the smaller size; `ptr` is freed with the layout it was allocated with.
        unsafe {
            let fresh = System.alloc(new);
            if !fresh.is_null() {
                std::ptr::copy_nonoverlapping(ptr, fresh, layout.size().min(new_size));
                System.dealloc(ptr, old);
            }
            fresh
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_sized_blocks_are_page_aligned_and_survive_resizing() {
        let a = PageAligned;
        for size in [8192usize, 12288, 65536] {
            let layout = Layout::from_size_align(size, 1).unwrap();
            // SAFETY: a valid non-zero layout; the block is written within bounds, resized with
            // the layout it has, and freed once with its final layout.
            unsafe {
                let p = a.alloc(layout);
                assert!(!p.is_null());
                assert_eq!(p as usize % PAGE, 0, "{size}");
                p.write_bytes(7, size);
                // Out of page alignment (100 bytes) and back in (16 KiB).
                let q = a.realloc(p, layout, 100);
                assert_eq!(*q.add(99), 7);
                let small = Layout::from_size_align(100, 1).unwrap();
                let r = a.realloc(q, small, 16384);
                assert_eq!(r as usize % PAGE, 0);
                assert_eq!(*r.add(99), 7);
                a.dealloc(r, Layout::from_size_align(16384, 1).unwrap());
            }
        }
        let odd = Layout::from_size_align(5000, 8).unwrap();
        assert_eq!(system_layout(odd), odd, "other sizes are left alone");
    }
}

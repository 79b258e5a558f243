/*!
Emulated device memory: one `mmap` region per buffer, with `PROT_NONE` guard pages on both sides and
the data placed flush against the trailing guard page (Electric Fence style), so that reading or
writing even one element past the end is a real SIGSEGV, as on the server this project comes from.

In the checked mode a region also carries a [`Shadow`]: one byte per 4-byte word saying whether
anything wrote it since the allocation (the initcheck analog), and its fresh bytes are poisoned
(all ones: `u32::MAX`, a NaN as `f32`) so that a read of never-written memory that slips through is
conspicuous rather than a plausible zero.

A process may ask for freed regions to be recycled ([`recycle_freed_regions`]): kept, guard pages and
all, and handed out again, zeroed, for a region of the same mapping length, instead of unmapped and
mapped anew. A worker running several cases at once does: its threads' shadow engines map and unmap
regions all the time, and `munmap` takes the process's address-space lock and interrupts every
other core running one of its threads (a TLB shootdown), so eight threads went little faster than
one. Out-of-bounds accesses still hit a guard page; a region that is reused reads as zeroes, like
a fresh mapping.
*/

use std::collections::HashMap;
use std::ffi::c_void;
use std::num::NonZeroUsize;
use std::ops::Range;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Mutex, OnceLock};

use nix::sys::mman::{mmap_anonymous, mprotect, munmap, MapFlags, ProtFlags};

use crate::buffer_name::BufferName;

/// The byte every fresh byte of a checked allocation holds.
pub const POISON_BYTE: u8 = 0xFF;

/// One guarded allocation.
#[derive(Debug)]
pub struct GuardedRegion {
    map: NonNull<c_void>,
    map_len: usize,
    data: *mut u8,
    len: usize,
    shadow: Option<Shadow>,
}

/// The checked mode's record of a region: whose it is, and which 4-byte words were written since
/// the allocation, one byte per word (0: never written). Bytes rather than bits: a kernel write is
/// then one plain store, with no read-modify-write on a word other threads write too, and a read
/// one load and compare. They are atomics because kernel threads write neighbouring words at once.
#[derive(Debug)]
pub struct Shadow {
    buffer: BufferName,
    written: Box<[AtomicU8]>,
}

impl Shadow {
    fn new(buffer: BufferName, words: usize) -> Self {
        Shadow {
            buffer,
            written: (0..words).map(|_| AtomicU8::new(0)).collect(),
        }
    }

    /// The buffer the region was allocated for.
    pub fn buffer(&self) -> BufferName {
        self.buffer
    }

    /// The written-bytes of the words from `first` on, for a checked accessor whose element 0 is
    /// word `first`.
    pub fn from_word(&self, first: usize) -> ShadowView<'_> {
        ShadowView {
            written: self.written.get(first..).unwrap_or_default(),
        }
    }

    /// Whether word `w` was written.
    pub fn is_set(&self, w: usize) -> bool {
        self.from_word(0).is_set(w)
    }

    /// Marks word `w` written.
    pub fn set(&self, w: usize) {
        self.from_word(0).set(w)
    }

    /// Marks words `words` written (clamped to the region).
    pub fn set_range(&self, words: Range<usize>) {
        let end = words.end.min(self.written.len());
        for b in self.written.get(words.start..end).unwrap_or_default() {
            b.store(1, Ordering::Relaxed);
        }
    }

    /// The first word of `words` that was never written.
    pub fn first_unset(&self, words: Range<usize>) -> Option<usize> {
        words.into_iter().find(|&w| !self.is_set(w))
    }

    /// Copies the written-state of `count` words from `src` (from word `src_at`) to this shadow
    /// (from word `dst_at`): a device copy moves never-written words without writing them.
    pub fn copy_from(&self, dst_at: usize, src: &Shadow, src_at: usize, count: usize) {
        let to = self.written.iter().skip(dst_at);
        let from = src.written.iter().skip(src_at);
        for (t, f) in to.zip(from).take(count) {
            t.store(f.load(Ordering::Relaxed), Ordering::Relaxed);
        }
    }
}

// SAFETY: the region is plain memory owned by this value; access is coordinated by the backend.
unsafe impl Send for GuardedRegion {}
// SAFETY: every `&self` method reads fields that never change after construction, or the shadow's
// atomics; the data bytes are reached only through raw device pointers, as on a GPU.
unsafe impl Sync for GuardedRegion {}

/// The page size.
pub fn page_size() -> usize {
    nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .map(|p| p as usize)
        .unwrap_or(4096)
}

/// A borrowed view of a [`Shadow`]'s written-bytes, from a checked accessor's first word on.
#[derive(Clone, Copy, Debug)]
pub struct ShadowView<'a> {
    written: &'a [AtomicU8],
}

impl ShadowView<'_> {
    /// Whether word `w` was written (a word past the region never was).
    #[inline(always)]
    pub fn is_set(self, w: usize) -> bool {
        self.written
            .get(w)
            .is_some_and(|b| b.load(Ordering::Relaxed) != 0)
    }

    /// Marks word `w` written.
    #[inline(always)]
    pub fn set(self, w: usize) {
        if let Some(b) = self.written.get(w) {
            b.store(1, Ordering::Relaxed);
        }
    }
}

/// Whether freed regions are recycled in this process (see the module's documentation).
static RECYCLING: AtomicBool = AtomicBool::new(false);

/// The most bytes of mappings the recycling cache keeps; past it, freed regions are unmapped.
const RECYCLED_BYTES_MAX: usize = 256 << 20;

/// From now on, regions freed in this process are kept for reuse (up to 256 MiB of mappings)
/// instead of unmapped; see the module's documentation.
pub fn recycle_freed_regions() {
    RECYCLING.store(true, Ordering::Relaxed);
}

/// Freed mappings by length, for reuse.
#[derive(Debug, Default)]
struct RegionCache {
    /// Mapping addresses by mapping length.
    by_len: HashMap<usize, Vec<usize>>,
    /// Bytes of the mappings held.
    bytes: usize,
}

impl RegionCache {
    /// A mapping of `map_len` bytes, if one is held.
    fn take(&mut self, map_len: usize) -> Option<usize> {
        let map = self.by_len.get_mut(&map_len)?.pop()?;
        self.bytes -= map_len;
        Some(map)
    }

    /// Keeps the mapping at `map` unless that would pass `max` bytes; whether it was kept.
    fn keep(&mut self, map: usize, map_len: usize, max: usize) -> bool {
        if self.bytes + map_len > max {
            return false;
        }
        self.bytes += map_len;
        self.by_len.entry(map_len).or_default().push(map);
        true
    }
}

/// The process's cache, when recycling is on.
fn recycled() -> Option<std::sync::MutexGuard<'static, RegionCache>> {
    static CACHE: OnceLock<Mutex<RegionCache>> = OnceLock::new();
    if !RECYCLING.load(Ordering::Relaxed) {
        return None;
    }
    let cache = CACHE.get_or_init(|| Mutex::new(RegionCache::default()));
    Some(cache.lock().unwrap_or_else(|e| e.into_inner()))
}

impl GuardedRegion {
    /// Maps `len` readable and writable bytes between two guard pages; `len` may be 0.
    pub fn new(len: usize) -> nix::Result<Self> {
        let page = page_size();
        let data_pages = len.div_ceil(page);
        let map_len = (data_pages + 2) * page;
        if let Some(map) = recycled().and_then(|mut c| c.take(map_len)) {
            return Ok(Self::reused(map, map_len, len));
        }
        let map_len_nz = NonZeroUsize::new(map_len).ok_or(nix::errno::Errno::EINVAL)?;
        // SAFETY: a fresh anonymous private mapping; nothing else refers to it.
        let map = unsafe {
            mmap_anonymous(
                None,
                map_len_nz,
                ProtFlags::PROT_NONE,
                MapFlags::MAP_PRIVATE | MapFlags::MAP_NORESERVE,
            )?
        };
        if data_pages > 0 {
            // SAFETY: the range lies inside the mapping just created.
            let inner = unsafe { NonNull::new_unchecked(map.as_ptr().cast::<u8>().add(page)) };
            let res = unsafe {
                mprotect(
                    inner.cast(),
                    data_pages * page,
                    ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                )
            };
            if let Err(e) = res {
                // SAFETY: unmapping what we mapped.
                let _ = unsafe { munmap(map, map_len) };
                return Err(e);
            }
        }
        // SAFETY: `page + data_pages * page - len` is inside the mapping.
        let data = unsafe {
            map.as_ptr()
                .cast::<u8>()
                .add(page + data_pages * page - len)
        };
        Ok(GuardedRegion {
            map,
            map_len,
            data,
            len,
            shadow: None,
        })
    }

    /// A recycled mapping of `map_len` bytes (its guard pages and data pages as [`Self::new`] made
    /// them) as a region of `len` bytes, its data pages zeroed like a fresh mapping's.
    fn reused(map: usize, map_len: usize, len: usize) -> Self {
        let page = page_size();
        let data_bytes = map_len - 2 * page;
        // SAFETY: `map` is a live mapping of `map_len` bytes that nothing else refers to (it left
        // the cache); its data pages, `page..map_len - page`, are readable and writable.
        let data_start = unsafe { (map as *mut u8).add(page) };
        unsafe { std::ptr::write_bytes(data_start, 0, data_bytes) };
        GuardedRegion {
            // SAFETY: a mapping's address is not null.
            map: unsafe { NonNull::new_unchecked(map as *mut c_void) },
            map_len,
            // SAFETY: inside the data pages, flush against the trailing guard page.
            data: unsafe { data_start.add(data_bytes - len) },
            len,
            shadow: None,
        }
    }

    /// [`Self::new`] for the checked mode: every byte poisoned, nothing marked written.
    pub fn new_checked(len: usize, buffer: BufferName) -> nix::Result<Self> {
        let mut region = Self::new(len)?;
        // SAFETY: the `len` data bytes were just mapped readable and writable.
        unsafe { std::ptr::write_bytes(region.data, POISON_BYTE, len) };
        region.shadow = Some(Shadow::new(buffer, len.div_ceil(4)));
        Ok(region)
    }

    /// The checked mode's shadow, if the region was made by [`Self::new_checked`].
    pub fn shadow(&self) -> Option<&Shadow> {
        self.shadow.as_ref()
    }

    /// The byte offset of `addr` into the data when `[addr, addr + bytes)` lies inside it.
    pub fn offset_of(&self, addr: u64, bytes: usize) -> Option<usize> {
        let offset = usize::try_from(addr.checked_sub(self.addr())?).ok()?;
        (offset.checked_add(bytes)? <= self.len).then_some(offset)
    }

    /// Address of the first data byte.
    pub fn addr(&self) -> u64 {
        self.data as u64
    }

    /// Data length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the region holds no data bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Drop for GuardedRegion {
    fn drop(&mut self) {
        let map = self.map.as_ptr() as usize;
        if recycled().is_some_and(|mut c| c.keep(map, self.map_len, RECYCLED_BYTES_MAX)) {
            return;
        }
        // SAFETY: unmapping the mapping this value owns, once.
        let _ = unsafe { munmap(self.map, self.map_len) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checked_region_is_poisoned_and_shadowed() {
        let r = GuardedRegion::new_checked(10, BufferName::Mass).unwrap();
        // SAFETY: the region's 10 data bytes are mapped.
        let bytes = unsafe { std::slice::from_raw_parts(r.addr() as *const u8, r.len()) };
        assert!(bytes.iter().all(|&b| b == POISON_BYTE));
        let shadow = r.shadow().unwrap();
        assert_eq!(shadow.buffer(), BufferName::Mass);
        assert_eq!(shadow.first_unset(0..3), Some(0), "3 words, none written");
        assert!(GuardedRegion::new(10).unwrap().shadow().is_none());
        assert_eq!(r.offset_of(r.addr() + 4, 6), Some(4));
        assert_eq!(r.offset_of(r.addr() + 4, 7), None);
        assert_eq!(r.offset_of(r.addr() - 1, 0), None);
    }

    #[test]
    fn a_recycled_mapping_is_reused_zeroed_for_the_same_length_only_up_to_the_cap() {
        let page = page_size();
        let mut cache = RegionCache::default();
        let first = GuardedRegion::new(10).unwrap();
        // SAFETY: the region's 10 data bytes are mapped.
        unsafe { std::ptr::write_bytes(first.addr() as *mut u8, 7, 10) };
        let (map, map_len) = (first.map.as_ptr() as usize, first.map_len);
        assert_eq!(map_len, 3 * page);
        std::mem::forget(first);
        assert!(cache.keep(map, map_len, 3 * page));
        assert!(!cache.keep(map + 1, map_len, 3 * page), "past the cap");
        assert_eq!(cache.take(4 * page), None, "another length");
        let reused = GuardedRegion::reused(cache.take(map_len).unwrap(), map_len, 12);
        assert_eq!(cache.bytes, 0);
        assert_eq!(reused.map.as_ptr() as usize, map);
        assert_eq!(
            reused.addr() as usize,
            map + 2 * page - 12,
            "flush against the guard"
        );
        // SAFETY: the region's 12 data bytes are mapped.
        let bytes = unsafe { std::slice::from_raw_parts(reused.addr() as *const u8, 12) };
        assert!(bytes.iter().all(|&b| b == 0), "zeroed like a fresh mapping");
    }

    #[test]
    fn ranges_and_copies_of_written_words_are_exact() {
        let s = Shadow::new(BufferName::CellStart, 300);
        s.set_range(3..130);
        assert!(!s.is_set(2) && s.is_set(3) && s.is_set(63) && s.is_set(64));
        assert!(s.is_set(127) && s.is_set(129) && !s.is_set(130));
        assert_eq!(s.first_unset(3..200), Some(130));
        s.set_range(130..130);
        assert!(!s.is_set(130), "an empty range writes nothing");
        s.set_range(250..1000);
        assert!(
            s.is_set(299) && !s.is_set(300),
            "clamped to the region, not past it"
        );
        assert!(s.from_word(250).is_set(49) && !s.from_word(2).is_set(0));

        let t = Shadow::new(BufferName::CellEnd, 300);
        t.set_range(0..300);
        t.copy_from(10, &s, 0, 5);
        assert!(!t.is_set(10) && !t.is_set(12) && t.is_set(13) && t.is_set(14) && t.is_set(15));
    }
}
